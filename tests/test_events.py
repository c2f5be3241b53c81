"""Workspace events from hand-built snapshots: derive_events is pure, the recorder writes, counts,
prunes and survives restarts without repeating or losing events. The real-cluster half is in
test_logs_events_ray.py."""

from __future__ import annotations

import json
import time
from dataclasses import replace
from pathlib import Path
from types import MappingProxyType

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily

from raylens.config import EventsConfig, load_config
from raylens.jsonl import rfc3339
from raylens.ray.event_log import EventRecorder, event_counter_family
from raylens.ray.events import EVENT_KINDS, KNOWN_CAUSES, derive_events, derive_serve_events
from raylens.ray.serve_status import ServeStatusUnavailable, serve_snapshot_from_api
from raylens.ray.snapshot import ClusterSnapshot, JobSnapshot, NodeSnapshot, SourceStatus

# Ray's own times in these snapshots: an hour ago, so the recorder's 30-day retention keeps them.
T0 = float(int(time.time()) - 3600)
OK = MappingProxyType({"nodes": SourceStatus(True), "jobs": SourceStatus(True), "version": SourceStatus(True)})


def node(node_id: str, state: str = "ALIVE", reason: str = "", message: str = "", **extra) -> NodeSnapshot:
    return NodeSnapshot(
        node_id=node_id,
        ip=f"10.0.0.{len(node_id)}",
        is_head=node_id == "head",
        state=state,
        start_time=T0 + 1000,
        end_time=T0 + 2000 if state == "DEAD" else None,
        death_reason=reason,
        state_message=message,
        **extra,
    )


def job(key: str, status: str, **extra) -> JobSnapshot:
    values = {"job_id": "02000000", "start_time": T0 + 1100} | extra
    if status in ("SUCCEEDED", "FAILED", "STOPPED"):
        values.setdefault("end_time", T0 + 1200)
    return JobSnapshot(submission_id=key, type="SUBMISSION", status=status, entrypoint="python x.py", **values)


def snap(taken_at: float, nodes=(), jobs=(), session: str = "s1", sources=OK) -> ClusterSnapshot:
    return ClusterSnapshot(
        taken_at, 0.1, "http://ray:8265", session, "2.60.0", tuple(nodes), tuple(jobs), sources=sources
    )


def kinds(events) -> list[tuple[str, str]]:
    return [(event.kind, event.cause_label) for event in events]


def test_nothing_is_news_without_a_previous_snapshot() -> None:
    assert derive_events(None, snap(1, [node("head"), node("w", "DEAD", "UNEXPECTED_TERMINATION")])) == []


@pytest.mark.parametrize(
    ("reason", "kind", "cause"),
    [
        ("UNEXPECTED_TERMINATION", "node_died", "unexpected_termination"),
        ("UNSPECIFIED", "node_died", "unspecified"),
        ("EXPECTED_TERMINATION", "node_left", "expected_termination"),
        ("AUTOSCALER_DRAIN_PREEMPTED", "node_preempted", "preempted"),
        ("AUTOSCALER_DRAIN_IDLE", "node_scaled_down", "idle_terminated"),
    ],
)
def test_node_deaths_by_reason(reason, kind, cause) -> None:
    before = snap(1, [node("head"), node("worker1")])
    after = snap(2, [node("head"), node("worker1", "DEAD", reason, "Terminated …")])
    events = derive_events(before, after)
    assert kinds(events) == [(kind, cause)]
    assert events[0].time == T0 + 2000 and events[0].details["node_id"] == "worker1"
    assert events[0].severity == ("warning" if kind in ("node_died", "node_preempted") else "info")
    assert derive_events(after, replace(after, taken_at=3)) == []  # seen dead already


def test_join_and_vanish_and_truncated_listings_prove_nothing() -> None:
    before = snap(1, [node("head"), node("gone")])
    after = snap(2, [node("head"), node("new", node_type="gpu", market="spot")])
    events = {event.kind: event for event in derive_events(before, after)}
    assert sorted((kind, event.cause_label) for kind, event in events.items()) == [
        ("node_died", "vanished"),
        ("node_joined", ""),
    ]
    assert events["node_joined"].details["node_type"] == "gpu" and events["node_joined"].details["market"] == "spot"
    assert events["node_died"].time == 2  # when it was found missing
    truncated = replace(after, sources=MappingProxyType({**OK, "nodes": SourceStatus(True, returned=2, total=3)}))
    assert kinds(derive_events(before, truncated)) == [("node_joined", "")]


def test_failed_sources_are_not_compared() -> None:
    failed = MappingProxyType({**OK, "nodes": SourceStatus(False, "timeout"), "jobs": SourceStatus(False, "x")})
    before = snap(1, [node("head"), node("w")], [job("a", "RUNNING")])
    assert derive_events(before, snap(2, [], [], sources=failed)) == []


def test_job_lifecycle() -> None:
    pending = snap(1, jobs=[job("a", "PENDING", job_id=None, start_time=None)])
    running = snap(2, jobs=[job("a", "RUNNING")])
    failed = snap(3, jobs=[job("a", "FAILED", error_type="JOB_ENTRYPOINT_COMMAND_ERROR")])
    assert derive_events(snap(0), pending) == []
    assert kinds(derive_events(pending, running)) == [("job_started", "")]
    events = derive_events(running, failed)
    assert kinds(events) == [("job_failed", "job_entrypoint_command_error")]
    assert events[0].time == T0 + 1200 and events[0].details["submission_id"] == "a"
    # A job that ran entirely between two snapshots: both events, in time order.
    quick = derive_events(snap(1), snap(2, jobs=[job("b", "SUCCEEDED")]))
    assert kinds(quick) == [("job_started", ""), ("job_succeeded", "")]
    never_ran = derive_events(snap(1), snap(2, jobs=[job("c", "STOPPED", job_id=None, start_time=None)]))
    assert kinds(never_ran) == [("job_stopped", "")]


def test_a_new_session_is_an_event_and_its_nodes_are_new() -> None:
    before = snap(1, [node("head")], session="s1")
    after = snap(2, [node("head2")], session="s2")
    assert kinds(derive_events(before, after)) == [("cluster_session_started", ""), ("node_joined", "")]
    # A round whose version call failed has no session name: not a new session.
    assert derive_events(before, replace(before, taken_at=2, session_name="")) == []


def test_serve_status_changes() -> None:
    def serve(app_status: str, deployment_status: str):
        return serve_snapshot_from_api(
            {
                "applications": {
                    "app": {
                        "status": app_status,
                        "last_deployed_time_s": 50.0,
                        "deployments": {"D": {"status": deployment_status, "status_trigger": "CONFIG_UPDATE_STARTED"}},
                    }
                }
            }
        )

    assert derive_serve_events(None, serve("RUNNING", "HEALTHY"), "s", 1) == []
    empty = serve_snapshot_from_api({"applications": {}})
    deploying = derive_serve_events(empty, serve("DEPLOYING", "UPDATING"), "s", 1)
    assert kinds(deploying) == [("serve_application_status", "deploying"), ("serve_deployment_status", "updating")]
    failed = derive_serve_events(serve("DEPLOYING", "UPDATING"), serve("DEPLOY_FAILED", "DEPLOY_FAILED"), "s", 2)
    assert [event.severity for event in failed] == ["warning", "warning"]
    assert derive_serve_events(serve("RUNNING", "HEALTHY"), serve("RUNNING", "HEALTHY"), "s", 3) == []


def test_known_causes_cover_every_kind() -> None:
    assert set(KNOWN_CAUSES) == set(EVENT_KINDS)


def test_every_derived_kind_is_declared() -> None:
    before = snap(1, [node("head"), node("a"), node("b"), node("c"), node("d")], [job("x", "PENDING", job_id=None)])
    after = snap(
        2,
        [
            node("head"),
            node("a", "DEAD", "UNEXPECTED_TERMINATION"),
            node("b", "DEAD", "EXPECTED_TERMINATION"),
            node("c", "DEAD", "AUTOSCALER_DRAIN_PREEMPTED"),
            node("d", "DEAD", "AUTOSCALER_DRAIN_IDLE"),
            node("e"),
        ],
        [job("x", "SUCCEEDED"), job("y", "FAILED"), job("z", "STOPPED")],
    )
    assert {event.kind for event in derive_events(before, after)} <= set(EVENT_KINDS)


# --- the recorder --------------------------------------------------------------------------------


def no_serve(url: str, timeout: float):
    raise ServeStatusUnavailable("no serve here")


def recorder(tmp_path: Path, **config) -> EventRecorder:
    return EventRecorder(EventsConfig(log_file=tmp_path / "events.jsonl", **config), serve_fetcher=no_serve)


def log_lines(tmp_path: Path) -> list[dict]:
    path = tmp_path / "events.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_recorder_writes_counts_and_survives_restarts(tmp_path: Path) -> None:
    first = recorder(tmp_path)
    assert first.observe(snap(1, [node("head"), node("w")], [job("a", "RUNNING")])) == []  # baseline
    dead = node("w", "DEAD", "UNEXPECTED_TERMINATION", "health check failed")
    first.observe(snap(2, [node("head"), dead], [job("a", "RUNNING")]))
    lines = log_lines(tmp_path)
    assert [line["kind"] for line in lines] == ["node_died"]
    assert lines[0]["cause"] == "unexpected_termination" and lines[0]["ts"] == rfc3339(T0 + 2000)
    assert lines[0]["details"]["state_message"] == "health check failed"
    assert {key: value for key, value in first.counts().items() if value} == {
        ("s1", "node_died", "unexpected_termination"): 1
    }
    assert first.counts()[("s1", "job_failed", "")] == 0  # known causes start at 0

    # Restart: the job failed while the exporter was down; the dead node is old news.
    first.close()
    second = recorder(tmp_path)
    down = snap(10, [node("head"), node("w", "DEAD", "UNEXPECTED_TERMINATION")], [job("a", "FAILED")])
    assert kinds(second.observe(down)) == [("job_failed", "")]
    assert [line["kind"] for line in log_lines(tmp_path)] == ["node_died", "job_failed"]
    assert {key: value for key, value in second.counts().items() if value} == {("s1", "job_failed", ""): 1}

    # A crash after writing the log but before saving the state: the same events are derived
    # again at the next start, and recognised in the log's tail.
    state = tmp_path / "events.jsonl.state.json"
    before_crash = state.read_text()
    second.close()
    third = recorder(tmp_path)
    assert kinds(third.observe(snap(20, [node("head")], [job("a", "FAILED"), job("b", "SUCCEEDED")]))) == [
        ("job_started", ""),
        ("job_succeeded", ""),
    ]
    state.write_text(before_crash)
    third.close()
    fourth = recorder(tmp_path)
    assert fourth.observe(snap(21, [node("head")], [job("a", "FAILED"), job("b", "SUCCEEDED")])) == []
    assert [line["kind"] for line in log_lines(tmp_path)] == ["node_died", "job_failed", "job_started", "job_succeeded"]


def test_recorder_retention_and_unwritable_log(tmp_path: Path) -> None:
    old = {"ts": rfc3339(time.time() - 40 * 86400), "kind": "node_joined"}
    new = {"ts": rfc3339(time.time() - 86400), "kind": "node_joined"}
    (tmp_path / "events.jsonl").write_text(json.dumps(old) + "\n" + json.dumps(new) + "\n")
    fresh = recorder(tmp_path, retention_days=30)
    fresh.observe(snap(1))
    assert log_lines(tmp_path) == [new]

    blocked = tmp_path / "blocked"
    blocked.write_text("a file where a directory should be")
    unplaceable = EventRecorder(EventsConfig(log_file=blocked / "events.jsonl"), serve_fetcher=no_serve)
    assert "cannot lock" in unplaceable.disabled_reason and unplaceable.observe(snap(1)) == []

    (tmp_path / "dir" / "events.jsonl").mkdir(parents=True)  # a directory where the log should be
    broken = EventRecorder(EventsConfig(log_file=tmp_path / "dir" / "events.jsonl"), serve_fetcher=no_serve)
    broken.observe(snap(1, [node("head")]))
    errors = broken.write_errors
    assert broken.observe(snap(2, [node("head"), node("new")])) == []  # logged, not raised
    assert broken.write_errors == errors + 1
    assert broken.observe(snap(3, [node("head"), node("new")])) == []  # derived again, still unwritable
    assert broken.write_errors == errors + 2


def test_a_second_recorder_on_the_same_log_stands_down(tmp_path: Path) -> None:
    first = recorder(tmp_path)
    second = recorder(tmp_path)
    assert not first.disabled_reason and "another exporter" in second.disabled_reason
    second.observe(snap(1, [node("head")]))
    assert second.observe(snap(2, [node("head"), node("new")])) == []
    first.observe(snap(1, [node("head")]))
    assert kinds(first.observe(snap(2, [node("head"), node("new")]))) == [("node_joined", "")]


def test_counter_family_is_valid_exposition() -> None:
    family = event_counter_family({("s1", "node_died", "unexpected_termination"): 2})
    assert isinstance(family, CounterMetricFamily)
    registry = CollectorRegistry()

    class One:
        def collect(self):
            yield family

    registry.register(One())
    assert (
        registry.get_sample_value(
            "raylens_ray_events_total", {"SessionName": "s1", "kind": "node_died", "cause": "unexpected_termination"}
        )
        == 2
    )


def test_events_config_section(tmp_path: Path) -> None:
    path = tmp_path / "raylens.yaml"
    path.write_text("events:\n  retention_days: 7\n  log_file: /var/lib/raylens/events.jsonl\n")
    config = load_config(path)
    assert config.events.retention_days == 7 and str(config.events.log_file) == "/var/lib/raylens/events.jsonl"
    path.write_text("events:\n  retention_days: 0\n")
    with pytest.raises(Exception, match="retention_days"):
        load_config(path)


STATES = st.sampled_from(["ALIVE", "DEAD"])
REASONS = st.sampled_from(["", "UNEXPECTED_TERMINATION", "EXPECTED_TERMINATION", "AUTOSCALER_DRAIN_PREEMPTED"])
JOB_STATUSES = st.sampled_from(["PENDING", "RUNNING", "SUCCEEDED", "FAILED", "STOPPED"])


@st.composite
def snapshots(draw, taken_at: float) -> ClusterSnapshot:
    nodes = [
        node(f"n{index}", state, reason if state == "DEAD" else "")
        for index, (state, reason) in enumerate(draw(st.lists(st.tuples(STATES, REASONS), max_size=6)))
    ]
    jobs = [job(f"j{index}", status) for index, status in enumerate(draw(st.lists(JOB_STATUSES, max_size=6)))]
    return snap(taken_at, nodes, jobs, session=draw(st.sampled_from(["s1", "s2"])))


@settings(deadline=None)
@given(snapshots(1.0), snapshots(2.0))
def test_derived_events_are_unique_declared_and_not_repeated(previous, current) -> None:
    events = derive_events(previous, current)
    assert len({event.id for event in events}) == len(events)
    assert {event.kind for event in events} <= set(EVENT_KINDS)
    assert all(event.cause_label in KNOWN_CAUSES[event.kind] or event.kind == "job_failed" for event in events)
    # Nothing changed between a snapshot and itself.
    assert derive_events(current, replace(current, taken_at=3.0)) == []
