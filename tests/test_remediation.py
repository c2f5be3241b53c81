"""The remediation service's parts in-process, on a real SQLite file: payloads, incidents, the safety
rails of the policy, escalation and the post-mortem draft (golden)."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from remediation_service import alert, notification

from raylens.config import ConfigError, RemediationConfig, load_config
from raylens.remediation.escalation import Escalator, rfc3339
from raylens.remediation.impact import figure_queries
from raylens.remediation.incidents import apply_notification, incident_durations
from raylens.remediation.payload import PayloadError, parse_notification
from raylens.remediation.policy import Policy, restart_root
from raylens.remediation.postmortem import postmortem_markdown
from raylens.remediation.store import Store

GOLDEN = Path(__file__).parent / "fixtures" / "remediation" / "postmortem.md"
T0 = 1_795_600_800.0  # 2026-11-25 10:00:00 UTC
CLUSTER = {"name": "prod", "dashboard_url": "http://127.0.0.1:8265", "match": [{"instance": "10.0.0.5:9965"}]}


class Clock:
    def __init__(self, now: float):
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store(tmp_path / "incidents.sqlite")


def parsed(alerts: list[dict[str, Any]], **kwargs: Any):
    return parse_notification(notification(alerts, **kwargs))


# --- payloads ---


def test_a_real_shaped_payload_parses_with_times_and_the_rule_expression() -> None:
    firing = alert({"alertname": "RaylensClusterIdle", "severity": "warning"}, T0, expr='up{job="raylens"} == 0')
    result = parsed([firing])
    assert result.status == "firing" and result.alerts[0].starts_at == pytest.approx(T0)
    assert result.alerts[0].ends_at is None
    assert result.alerts[0].expression == 'up{job="raylens"} == 0'


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"version": "3"}, "version"),
        ({"groupKey": ""}, "groupKey"),
        ({"alerts": []}, "alerts"),
        ({"status": "pending"}, "status"),
    ],
)
def test_a_malformed_payload_names_its_bad_field(change: dict[str, Any], expected: str) -> None:
    payload = {**notification([alert({"alertname": "A"}, T0)]), **change}
    with pytest.raises(PayloadError, match=expected):
        parse_notification(payload)


def test_an_alert_without_alertname_or_start_is_refused() -> None:
    payload = notification([alert({"alertname": "A"}, T0)])
    payload["alerts"][0]["labels"] = {"severity": "critical"}
    with pytest.raises(PayloadError, match="alertname"):
        parse_notification(payload)
    payload = notification([alert({"alertname": "A"}, T0)])
    payload["alerts"][0]["startsAt"] = "yesterday"
    with pytest.raises(PayloadError, match="startsAt"):
        parse_notification(payload)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20,
)


@settings(max_examples=300)
@given(json_values)
def test_any_json_either_parses_or_is_refused_with_a_reason(value: Any) -> None:
    try:
        parse_notification(value)
    except PayloadError as error:
        assert str(error)


@settings(max_examples=100)
@given(st.dictionaries(st.sampled_from(["version", "status", "alerts", "groupKey", "receiver"]), json_values))
def test_a_payload_with_bad_fields_is_refused_never_crashes(overrides: dict[str, Any]) -> None:
    payload = {**notification([alert({"alertname": "A"}, T0)]), **overrides}
    with contextlib.suppress(PayloadError):
        parse_notification(payload)


# --- incidents ---


def test_a_fired_then_resolved_alert_is_one_incident_with_durations_from_the_alert(store: Store) -> None:
    labels = {"alertname": "RaylensServeErrorBudgetBurn", "severity": "critical", "application": "classifier"}
    first = apply_notification(store, parsed([alert(labels, T0)]), received_at=T0 + 31)
    again = apply_notification(store, parsed([alert(labels, T0)]), received_at=T0 + 300)
    done = apply_notification(store, parsed([alert(labels, T0, ends_at=T0 + 1020)]), received_at=T0 + 1100)
    repeated = apply_notification(store, parsed([alert(labels, T0, ends_at=T0 + 1020)]), received_at=T0 + 1200)
    assert first.opened and not again.opened and done.resolved and repeated.duplicate
    assert first.incident_id == again.incident_id == done.incident_id == repeated.incident_id
    incidents = store.incidents()
    assert len(incidents) == 1
    incident = incidents[0]
    assert (incident["status"], incident["severity"], incident["scope"]) == (
        "resolved",
        "critical",
        {"application": ["classifier"]},
    )
    store.acknowledge(incident["id"], "alice", T0 + 250)
    durations = incident_durations(store.incidents()[0], now=T0 + 99999)
    assert durations == {"time_to_acknowledge": 250.0, "time_to_resolve": 1020.0, "open_for": 1020.0}
    kinds = [event["kind"] for event in store.events(incident["id"])]
    assert kinds == [
        "opened",
        "alert_firing",
        "notified",
        "acknowledged",
        "notified",
        "alert_resolved",
        "resolved",
        "notified",
    ]


def test_a_group_that_fires_again_opens_a_new_incident_and_joining_alerts_widen_the_scope(store: Store) -> None:
    one = {"alertname": "RaylensBudgetThresholdCrossed", "severity": "warning", "budget": "a", "project": "vision"}
    two = {**one, "budget": "b", "severity": "critical"}
    key = "{}/{}:{alertname=RaylensBudgetThresholdCrossed}"
    apply_notification(store, parsed([alert(one, T0)], group_key=key), T0 + 10)
    apply_notification(store, parsed([alert(one, T0), alert(two, T0 + 60)], group_key=key), T0 + 70)
    incident = store.incidents()[0]
    assert incident["severity"] == "critical"
    assert incident["scope"] == {"project": ["vision"], "budget": ["a", "b"]}
    apply_notification(
        store, parsed([alert(one, T0, T0 + 100), alert(two, T0 + 60, T0 + 100)], group_key=key), T0 + 110
    )
    refired = apply_notification(store, parsed([alert(one, T0 + 500)], group_key=key), T0 + 510)
    assert refired.opened and refired.incident_id != incident["id"]
    assert [row["status"] for row in store.incidents()] == ["open", "resolved"]


def test_a_budget_alert_names_the_project_team_or_user_it_covers(store: Store) -> None:
    labels = {"alertname": "RaylensBudgetThresholdCrossed", "budget": "ml", "scope": "team", "match": "ml"}
    update = apply_notification(store, parsed([alert(labels, T0)]), T0 + 1)
    assert store.incident(update.incident_id)["scope"] == {"team": ["ml"], "budget": ["ml"]}


def test_a_resolution_for_a_group_never_seen_firing_is_recorded_as_an_incident(store: Store) -> None:
    update = apply_notification(store, parsed([alert({"alertname": "A"}, T0, ends_at=T0 + 60)]), T0 + 70)
    assert update.opened and update.resolved
    assert incident_durations(store.incident(update.incident_id), T0 + 70)["time_to_resolve"] == 60.0


def test_the_store_survives_a_reopen(tmp_path: Path) -> None:
    path = tmp_path / "incidents.sqlite"
    first = Store(path)
    apply_notification(first, parsed([alert({"alertname": "A"}, T0)]), T0 + 1)
    first.close()
    reopened = Store(path)
    assert [incident["title"] for incident in reopened.incidents()] == ["A"]
    assert reopened.query("PRAGMA journal_mode")[0]["journal_mode"] == "wal"


# --- policy: the safety rails ---


def policy_for(store: Store, clock: Clock, **remediation: Any) -> Policy:
    config = RemediationConfig.model_validate({"clusters": [CLUSTER], "dry_run": False, **remediation})
    return Policy(config, store, clock)


def decide(policy: Policy, labels: dict[str, str], starts_at: float = T0, group_key: str | None = None):
    payload = parsed([alert(labels, starts_at)], group_key=group_key)
    return policy.decide(payload, payload.alerts[0], None)


IDLE = {
    "alertname": "RaylensClusterIdle",
    "severity": "warning",
    "remediation": "scale-down",
    "instance": "10.0.0.5:9965",
}


def test_alerts_no_rule_maps_are_not_ours_and_unknown_remediations_are_refused(store: Store) -> None:
    policy = policy_for(store, Clock(T0))
    assert decide(policy, {"alertname": "RaylensNodeDown", "severity": "warning"}) is None
    unknown = decide(policy, {**IDLE, "remediation": "reboot-the-world"})
    assert unknown is not None and "no rule maps remediation='reboot-the-world'" in unknown.skip_reason


def test_only_allow_listed_clusters_and_opted_in_budgets_are_acted_on(store: Store) -> None:
    policy = policy_for(store, Clock(T0), over_budget_budgets=["search-daily"])
    elsewhere = decide(policy, {**IDLE, "instance": "10.9.9.9:9965"})
    assert "no allow-listed cluster" in elsewhere.skip_reason
    budget = {"alertname": "RaylensBudgetThresholdCrossed", "threshold": "100", "instance": "10.0.0.5:9965"}
    assert "has not opted in" in decide(policy, {**budget, "budget": "vision-daily"}).skip_reason
    allowed = decide(policy, {**budget, "budget": "search-daily"})
    assert allowed.runs and allowed.action == "stop-over-budget-jobs" and allowed.target == "prod/budget/search-daily"


def test_a_redelivered_alert_is_decided_once_and_a_new_episode_again(store: Store) -> None:
    policy = policy_for(store, Clock(T0))
    first = decide(policy, IDLE)
    policy.release(first)
    again = decide(policy, IDLE)
    assert first.runs and again.duplicate_of["id"] == first.action_id and not again.runs
    new_episode = decide(policy, IDLE, starts_at=T0 + 7200)
    assert new_episode.runs


def test_one_action_at_a_time_per_target_and_cluster_wide_actions_exclude_inner_ones(store: Store) -> None:
    policy = policy_for(store, Clock(T0))
    serve = {"alertname": "Slow", "remediation": "restart-serve-deployment", "instance": "10.0.0.5:9965"}
    running = decide(policy, {**serve, "application": "a"})
    assert running.runs and running.target == "prod/serve/a/*"
    other_app = decide(policy, {**serve, "application": "b"})
    cluster_wide = decide(policy, IDLE)
    assert other_app.runs
    assert "in progress" in cluster_wide.skip_reason
    policy.release(running)
    policy.release(other_app)
    assert decide(policy, IDLE, starts_at=T0 + 1).runs


def test_actions_per_hour_are_capped(store: Store) -> None:
    clock = Clock(T0)
    policy = policy_for(store, clock, max_actions_per_hour=2)
    for index in range(2):
        decision = decide(policy, {**IDLE, "n": str(index)})
        store.update_action(decision.action_id, "acted", clock.now)
        policy.release(decision)
    assert "rate limit: 2 actions" in decide(policy, {**IDLE, "n": "late"}).skip_reason
    clock.now += 3601
    assert decide(policy, {**IDLE, "n": "next hour"}).runs


def test_restarts_back_off_doubling_and_stop_at_the_hourly_cap(store: Store) -> None:
    clock = Clock(T0)
    policy = policy_for(store, clock, restart_backoff_seconds=60, max_restarts_per_hour=3)
    job = {"alertname": "JobFailed", "remediation": "restart-failed-job", "instance": "10.0.0.5:9965"}

    def restart(submission_id: str):
        decision = decide(policy, {**job, "submission_id": submission_id}, starts_at=clock.now)
        return decision

    first = restart("train-7")
    assert first.runs and first.target == "prod/job/train-7"
    store.update_action(first.action_id, "acted", clock.now)
    policy.release(first)
    clock.now += 10
    second = restart("train-7-restart-1")  # the same chain: one target
    assert second.defer_until == pytest.approx(T0 + 60)
    clock.now = second.defer_until
    policy.recheck(second)
    assert second.runs
    store.update_action(second.action_id, "acted", clock.now)
    policy.release(second)
    clock.now += 30
    third = restart("train-7-restart-2")
    assert third.defer_until == pytest.approx(T0 + 60 + 120)  # doubled
    clock.now = third.defer_until
    assert policy.recheck(third).runs
    store.update_action(third.action_id, "acted", clock.now)
    policy.release(third)
    clock.now += 1000
    assert "3 restarts of prod/job/train-7 in the last hour" in restart("train-7-restart-3").skip_reason
    assert restart_root("a-restart-1-restart-2") == "a"


def test_a_dry_run_is_never_rate_limited_and_records_nothing_as_acted(store: Store) -> None:
    policy = Policy(RemediationConfig.model_validate({"clusters": [CLUSTER], "max_actions_per_hour": 1}), store)
    for index in range(3):
        decision = decide(policy, {**IDLE, "n": str(index)})
        assert decision.runs
        store.update_action(decision.action_id, "dry_run", T0)
        policy.release(decision)
    assert store.acted_since(0) == []


# --- configuration ---


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ({"rules": [{"match": {"a": "b"}, "action": "run-command", "command": "x"}]}, "rule 0 runs command 'x'"),
        ({"rules": [{"match": {"a": "("}, "action": "scale-down"}]}, "valid regular expression"),
        ({"rules": [{"match": {"a": "b"}, "action": "reboot"}]}, "scale-down"),
        ({"dry_run": False, "allow_unauthenticated": True}, "allow_unauthenticated: got True"),
        ({"escalation_levels": [{"name": "a", "after": "1h"}, {"name": "b", "after": "30m"}]}, "increasing"),
        ({"clusters": [{**CLUSTER, "dashboard_url": "ftp://x"}]}, "dashboard_url"),
    ],
)
def test_bad_remediation_config_names_the_field(tmp_path: Path, section: dict[str, Any], message: str) -> None:
    path = tmp_path / "raylens.yaml"
    path.write_text(json.dumps({"remediation": section}))
    with pytest.raises(ConfigError, match=message) as error:
        load_config(path)
    assert str(path) in str(error.value) and "remediation" in str(error.value)


# --- escalation ---


def critical_incident(store: Store, received_at: float = T0 + 20) -> int:
    labels = {"alertname": "RaylensServeErrorBudgetBurn", "severity": "critical", "team": "search"}
    return apply_notification(store, parsed([alert(labels, T0)]), received_at).incident_id


def escalator(store: Store, clock: Clock) -> Escalator:
    config = RemediationConfig.model_validate(
        {
            "escalation_levels": [
                {"name": "secondary-oncall", "after": "30m"},
                {"name": "head-of-platform", "after": "2h"},
            ]
        }
    )
    return Escalator(config, "https://runbooks/", store, clock=clock)


def test_an_unacknowledged_critical_incident_climbs_the_levels_and_a_warning_does_not(store: Store) -> None:
    clock = Clock(T0 + 60)
    incident = critical_incident(store)
    apply_notification(store, parsed([alert({"alertname": "W", "severity": "warning"}, T0)]), T0 + 5)
    levels = escalator(store, clock)
    assert levels.check() == []
    clock.now = T0 + 1800
    posted = levels.check()
    assert [(a["labels"]["escalation_level"], a["labels"]["incident"]) for a in posted] == [
        ("secondary-oncall", str(incident))
    ]
    assert posted[0]["labels"]["team"] == "search"
    assert posted[0]["annotations"]["runbook_url"] == "https://runbooks/RaylensIncidentEscalated.md"
    clock.now = T0 + 7200
    ends = {a["labels"]["escalation_level"]: a["endsAt"] for a in levels.check()}
    # The lower level's alert ends now; the new level's holds until the next checks renew it.
    assert ends == {"secondary-oncall": rfc3339(T0 + 7200), "head-of-platform": rfc3339(T0 + 7200 + 90)}
    assert store.incident(incident)["escalation_level"] == "head-of-platform"
    assert [e["kind"] for e in store.events(incident)].count("escalated") == 2


def test_an_acknowledged_incident_does_not_escalate(store: Store) -> None:
    clock = Clock(T0 + 7200)
    incident = critical_incident(store)
    store.acknowledge(incident, "bob", T0 + 100)
    assert escalator(store, clock).check() == []


# --- post-mortem ---


def golden_store(tmp_path: Path) -> tuple[Store, int]:
    store = Store(tmp_path / "golden.sqlite")
    labels = {
        "alertname": "RaylensServeErrorBudgetBurn",
        "severity": "critical",
        "application": "classifier",
        "team": "search",
        "SessionName": "session_2026",
        "remediation": "restart-serve-deployment",
    }
    annotations = {
        "summary": "A Ray Serve application is burning its error budget fast.",
        "description": "classifier answered 2.5% of its HTTP requests with 5xx.",
        "runbook_url": "https://github.com/raylens/raylens/blob/main/docs/runbooks/RaylensServeErrorBudgetBurn.md",
    }
    expr = 'application:ray_serve_http_errors_per_requests:ratio_rate1h{application!=""} > 14.4 * (1 - 99.9 / 100)'
    key = '{}/{remediation=""}:{alertname="RaylensServeErrorBudgetBurn"}'
    payload = parsed([alert(labels, T0, annotations=annotations, expr=expr)], group_key=key)
    incident = apply_notification(store, payload, T0 + 12).incident_id
    cluster = {**CLUSTER, "match": [{"team": "search"}]}
    policy = Policy(RemediationConfig.model_validate({"clusters": [cluster]}), store, Clock(T0 + 13))
    decision = policy.decide(payload, payload.alerts[0], incident)
    store.update_action(
        decision.action_id,
        "acted",
        T0 + 15,
        steps=["roll deployment Classifier, Tokenizer of Serve application classifier (1 new replicas running)"],
    )
    store.acknowledge(incident, "alice", T0 + 250, "looking at the replica logs")
    apply_notification(
        store,
        parsed([alert(labels, T0, ends_at=T0 + 1020, annotations=annotations, expr=expr)], group_key=key),
        T0 + 1030,
    )
    # The figures' queries as the service builds them; the values stand in for Prometheus' answers.
    figures = figure_queries(store.incident(incident), "99.9", T0 + 1020)
    figures[0]["value"] = 0.00984
    figures[1].update(value=None, note="no data in Prometheus for this range")
    figures[2]["value"] = 1.53
    assert [figure["name"] for figure in figures] == [
        "Error budget consumed, Serve application classifier",
        "Failed requests (5xx) from 5m before opening, Serve application classifier",
        "Spend during the incident, team search",
    ]
    store.set_impact(incident, figures)
    return store, incident


def test_the_postmortem_draft_matches_the_golden_file(tmp_path: Path) -> None:
    store, incident = golden_store(tmp_path)
    rendered = postmortem_markdown(store, incident, now=T0 + 99999)
    # After an intended change: render it with this function, review the diff, commit.
    assert rendered == GOLDEN.read_text()
