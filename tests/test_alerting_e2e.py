"""Real metrics → real Prometheus with our rules → real Alertmanager with our routing → the sink.

Only the timers are shortened (`for`, group_wait); the rules, routes and receivers are the shipped ones.
"""

from __future__ import annotations

import contextlib
import shutil
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from ray_cluster import FAST_RAY_SOURCES, RayHead, kill_node, running_ray_head, short_temp_dir, start_worker_node

from raylens.config import AlertsConfig
from raylens.rules.budgets import load_budgets_file
from services import (
    RunningAlertmanager,
    RunningExporter,
    RunningPrometheus,
    RunningSink,
    running_alertmanager,
    running_exporter,
    running_prometheus,
    running_sink,
    write_dollar_per_second_pricing,
)

FAST_ALERTS = AlertsConfig(exporter_down_for="3s", collector_failing_for="3s", resource_alert_for="3s")


def wait_for_notifications(sink, predicate, timeout: float = 60.0) -> list[dict]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        matching = [notification for notification in sink.notifications() if predicate(notification)]
        if matching:
            return matching
        time.sleep(0.5)
    raise AssertionError(f"no matching notification after {timeout}s; got {sink.notifications()}")


def alertnames(notification: dict) -> set[str]:
    return {alert["labels"]["alertname"] for alert in notification["alerts"]}


@pytest.mark.slow
def test_an_exporter_that_dies_pages_nobody_but_reaches_the_platform_channel(tmp_path: Path) -> None:
    with (
        running_sink(tmp_path) as sink,
        running_alertmanager(tmp_path, sink.address) as alertmanager,
        running_exporter(tmp_path) as healthy,
        running_exporter(tmp_path) as doomed,
        running_prometheus(
            tmp_path,
            [healthy.address, doomed.address],
            alertmanager_targets=[alertmanager.address],
            alerts_config=FAST_ALERTS,
        ) as prometheus,
    ):
        prometheus.wait_for('count(up{job="raylens"} == 1) == 2')
        doomed.process.stop()

        notifications = wait_for_notifications(
            sink, lambda n: "RaylensExporterDown" in alertnames(n) and n["status"] == "firing"
        )
        # Give routing a moment to deliver anything else it (wrongly) would.
        time.sleep(3)
        down = [n for n in sink.notifications() if "RaylensExporterDown" in alertnames(n)]
        # remediation: the incident record every warning and critical alert gets
        assert {n["receiver"] for n in down} == {"platform-channel", "remediation"}, down
        alert = notifications[0]["alerts"][0]
        assert alert["labels"]["instance"] == doomed.address
        assert alert["labels"]["severity"] == "warning"
        assert alert["annotations"]["summary"] == "A raylens exporter cannot be scraped."
        assert doomed.address in alert["annotations"]["description"]
        assert alert["annotations"]["runbook_url"].endswith("/RaylensExporterDown.md")
        firing_instances = {
            a["labels"]["instance"] for n in sink.notifications() for a in n["alerts"] if a["status"] == "firing"
        }
        assert healthy.address not in firing_instances
        # The same alert is visible through Alertmanager's API, as `raylens status` reads it.
        assert any(a["labels"]["alertname"] == "RaylensExporterDown" for a in alertmanager.alerts())


# --- Cost and Ray: a budget breach and a dead node, through a real Ray cluster and the cost collector ---

HOLD_JOB = Path(__file__).parent / "fixtures" / "cost" / "ray_job"
# Nodes describe themselves as cloud nodes do; the pricing file prices the type at $1/s so spend moves in
# seconds.
NODE_LABELS = {"raylens.io/instance-type": "e2e-node", "ray.io/market-type": "on-demand"}
BUDGET = "ml-e2e"
# The ml job holds 1 of the head's 2 CPUs and so pays half of it, $0.5/s: 50 % of this after 25 s,
# 80 % after 40 s, 100 % after 50 s. Monthly, so a day boundary during the test changes nothing.
BUDGET_USD = 25
# Spend is accounted when Ray's answers arrive: at the default task-listing interval (15 s) one step moves
# this budget by 30 %, enough to cross 80 % and 100 % together (then 80 % is rightly inhibited and never
# notified). FAST_RAY_SOURCES keeps the steps at 2 %.
COST_ALERTS = AlertsConfig(budget_threshold_for="2s", budget_projection_for="2s", node_down_for="2s")
# The GCS declares a node dead after this many missed health checks; Ray's defaults take ~30 s.
FAST_NODE_DEATH = {
    "RAY_health_check_initial_delay_ms": "1000",
    "RAY_health_check_period_ms": "1000",
    "RAY_health_check_timeout_ms": "1000",
    "RAY_health_check_failure_threshold": "3",
}


@dataclass
class CostStack:
    tmp: Path
    head: RayHead
    sink: RunningSink
    alertmanager: RunningAlertmanager
    exporter: RunningExporter
    prometheus: RunningPrometheus


def _cost_files(tmp: Path, head: RayHead) -> tuple[Path, Path]:
    pricing = tmp / "pricing.yaml"
    write_dollar_per_second_pricing(pricing)
    budgets = tmp / "budgets.yaml"
    budgets.write_text(
        yaml.safe_dump(
            {"budgets": [{"name": BUDGET, "scope": "team", "match": "ml", "amount_usd": BUDGET_USD, "period": "month"}]}
        )
    )
    config = tmp / "raylens.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "exporter": {"collectors": ["ray", "cost"]},
                "ray": {"address": head.dashboard_url, "timeout_seconds": 10, "sources": FAST_RAY_SOURCES},
                "cost": {"pricing_files": [str(pricing)], "budgets_file": str(budgets), "state_dir": str(tmp / "cost")},
            }
        )
    )
    return config, budgets


@pytest.fixture(scope="module")
def cost_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CostStack]:
    """A Ray head priced by a pricing file, an exporter with the ray and cost collectors, Prometheus
    with the rules (budget thresholds generated from the exporter's budgets file, short `for`), and
    Alertmanager with the shipped routing sending to the sink."""
    tmp = tmp_path_factory.mktemp("alerting-cost")
    with pytest.MonkeyPatch.context() as env, contextlib.ExitStack() as stack:
        for name, value in FAST_NODE_DEATH.items():
            env.setenv(name, value)
        head = stack.enter_context(running_ray_head(tmp, num_cpus=2, labels=NODE_LABELS))
        config, budgets = _cost_files(tmp, head)
        sink = stack.enter_context(running_sink(tmp))
        alertmanager = stack.enter_context(running_alertmanager(tmp, sink.address))
        exporter = stack.enter_context(running_exporter(tmp, f"--config.file={config}"))
        prometheus = stack.enter_context(
            running_prometheus(
                tmp,
                [exporter.address],
                alertmanager_targets=[alertmanager.address],
                alerts_config=COST_ALERTS,
                budgets=load_budgets_file(budgets, [tmp / "pricing.yaml"]),
            )
        )
        prometheus.wait_for('raylens_scrape_collector_success{collector="cost"} == 1', timeout=60)
        yield CostStack(tmp, head, sink, alertmanager, exporter, prometheus)


def firing(notification: dict, alertname: str) -> list[dict]:
    return [
        alert
        for alert in notification["alerts"]
        if alert["status"] == "firing" and alert["labels"]["alertname"] == alertname
    ]


def thresholds(notification: dict) -> set[str]:
    return {alert["labels"]["threshold"] for alert in firing(notification, "RaylensBudgetThresholdCrossed")}


@pytest.mark.slow
def test_a_team_budget_breach_reaches_the_team_and_oncall_and_silences_its_lower_thresholds(
    cost_stack: CostStack,
) -> None:
    from ray.job_submission import JobSubmissionClient

    stack = cost_stack
    stack.prometheus.wait_for(f'budget:raylens_budget_spend:ratio{{budget="{BUDGET}"}}', timeout=30)
    release = stack.tmp / "release"
    client = JobSubmissionClient(stack.head.dashboard_url)
    submission = client.submit_job(
        entrypoint=f"{sys.executable} hold.py {release} 300",
        runtime_env={"working_dir": str(HOLD_JOB)},
        metadata={"user": "alice", "project": "vision", "team": "ml"},
    )
    try:
        paged = wait_for_notifications(
            stack.sink, lambda n: n["receiver"] == "oncall" and thresholds(n) == {"100"}, timeout=180
        )
        time.sleep(4)  # anything else routing would (wrongly) deliver arrives within two group intervals
    finally:
        release.touch()
    ratio = float(stack.prometheus.query(f'budget:raylens_budget_spend:ratio{{budget="{BUDGET}"}}')[0]["value"][1])
    assert ratio >= 1, ratio

    budget_notifications = [
        n for n in stack.sink.notifications() if any(a["labels"].get("budget") == BUDGET for a in n["alerts"])
    ]
    crossed = [n for n in budget_notifications if "RaylensBudgetThresholdCrossed" in alertnames(n)]
    # 50 % is info: dashboards only. 80 % (warning) goes to the team's channel; 100 % (critical) to the
    # team's channel and on-call; nothing reaches the platform channel, since the budget has a team.
    assert {n["receiver"] for n in crossed} == {"team-channel", "oncall", "remediation"}, crossed
    assert all(thresholds(n) == {"100"} for n in crossed if n["receiver"] == "oncall"), crossed
    team = [thresholds(n) for n in crossed if n["receiver"] == "team-channel"]
    assert team[0] == {"80"} and team[-1] == {"100"}, team
    # Inhibition: once 100 % fires, 80 % is not notified again (nor together with it).
    first_spent = team.index({"100"})
    assert all(sent == {"80"} for sent in team[:first_spent]) and all(sent == {"100"} for sent in team[first_spent:])
    assert all(a["status"] == "firing" for n in crossed for a in n["alerts"]), crossed
    suppressed = {
        a["labels"]["threshold"]: a["status"]
        for a in stack.alertmanager.alerts()
        if a["labels"]["alertname"] == "RaylensBudgetThresholdCrossed"
    }
    assert set(suppressed) == {"50", "80", "100"}, suppressed
    assert suppressed["100"]["state"] == "active"
    assert suppressed["80"]["state"] == "suppressed" and suppressed["80"]["inhibitedBy"], suppressed
    assert suppressed["50"]["state"] == "suppressed" and suppressed["50"]["inhibitedBy"], suppressed

    alert = firing(paged[0], "RaylensBudgetThresholdCrossed")[0]
    # The exporter names its cluster (here the head's session: no cluster.name is configured).
    assert alert["labels"].pop("cluster").startswith("session_")
    assert alert["labels"] == {
        "alertname": "RaylensBudgetThresholdCrossed",
        "budget": BUDGET,
        "instance": stack.exporter.address,
        "job": "raylens",
        "match": "ml",
        "period": "month",
        "scope": "team",
        "severity": "critical",
        "team": "ml",
        "threshold": "100",
    }
    assert alert["annotations"]["summary"] == "A budget has crossed 100% of its amount."
    description = alert["annotations"]["description"]
    assert description.startswith(f"Budget {BUDGET} (team ml) has spent "), description
    assert description.endswith("of its amount this month, past its 100% threshold."), description
    assert alert["annotations"]["runbook_url"].endswith("/RaylensBudgetThresholdCrossed.md")
    warned = next(n for n in crossed if thresholds(n) == {"80"})
    assert firing(warned, "RaylensBudgetThresholdCrossed")[0]["labels"]["severity"] == "warning"

    # At $0.5/s a $25 monthly budget is projected far past its amount: a warning for the team.
    projected = [n for n in budget_notifications if "RaylensBudgetProjectedOverrun" in alertnames(n)]
    assert projected and {n["receiver"] for n in projected} == {"team-channel", "remediation"}, projected
    assert firing(projected[0], "RaylensBudgetProjectedOverrun")[0]["labels"]["team"] == "ml"
    client.stop_job(submission)


@pytest.mark.slow
def test_a_ray_node_that_dies_reaches_the_platform_channel(cost_stack: CostStack, tmp_path: Path) -> None:
    stack = cost_stack
    temp_dir = short_temp_dir()
    worker = start_worker_node(stack.head, temp_dir, tmp_path, NODE_LABELS)
    try:
        rows = stack.prometheus.wait_for(
            'raylens_ray_node_up == 1 unless on (node_id) raylens_ray_node_info{is_head="true"}', timeout=90
        )
        node = rows[0]["metric"]
        kill_node(temp_dir, worker.pid)

        notifications = wait_for_notifications(
            stack.sink, lambda n: bool(firing(n, "RaylensNodeDown")) and n["status"] == "firing", timeout=90
        )
        time.sleep(3)  # anything else routing would (wrongly) deliver
        down = [n for n in stack.sink.notifications() if "RaylensNodeDown" in alertnames(n)]
        # warning, owned by no team: the platform channel only (and remediate's incident record).
        assert {n["receiver"] for n in down} == {"platform-channel", "remediation"}, down
        alert = firing(notifications[0], "RaylensNodeDown")[0]
        assert alert["labels"] == {
            "alertname": "RaylensNodeDown",
            "severity": "warning",
            "SessionName": node["SessionName"],
            "node_id": node["node_id"],
            "ip": node["ip"],
            "NodeAddress": node["NodeAddress"],
            "cluster": node["cluster"],  # the exporter's cluster (here the head's session)
        }
        assert alert["annotations"]["summary"] == "A Ray node died unexpectedly."
        assert node["node_id"] in alert["annotations"]["description"]
        assert alert["annotations"]["runbook_url"].endswith("/RaylensNodeDown.md")
        removals = stack.prometheus.query('raylens_ray_node_removals_total{reason="unexpected_termination"}')
        assert removals and float(removals[0]["value"][1]) >= 1, removals
    finally:
        kill_node(temp_dir, worker.pid)
        worker.stop()
        shutil.rmtree(temp_dir, ignore_errors=True)
