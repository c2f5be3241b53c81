"""The ray collector without a cluster: parsers, counters, grace period, cardinality, and the state
source against a fake dashboard (slow, truncated, down). The real-cluster tests are in
test_ray_cluster.py; the JSON shapes here are the ones Ray 2.60 returned there."""

from __future__ import annotations

import contextlib
import json
import re
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import MappingProxyType
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from raylens.collectors.base import ScrapeHealthCollector
from raylens.collectors.ray import RayCollector
from raylens.config import RayConfig
from raylens.ray.address import RayUnavailable
from raylens.ray.refresher import SourceHealth, StateRefresher
from raylens.ray.snapshot import (
    ActorSnapshot,
    ClusterSnapshot,
    JobSnapshot,
    NodeSnapshot,
    ObjectStoreStats,
    SourceStatus,
    TaskSnapshot,
    actor_from_api,
    job_from_api,
    node_from_api,
    normalise_market,
    task_from_api,
)
from raylens.ray.sources import SOURCES, SourceResult
from raylens.ray.state import ALL_SOURCES, RayStateSource, compose
from raylens.stack.ports import free_port

SESSION = "session_2026-01-01_00-00-00_000000_1"
NOW = 1_800_000_000.0
# Ray's label names, kept on purpose so our series join with Ray's (docs/ray.md); promtool's lint
# calls them camelCase, and that is the only finding allowed.
RAY_LABEL_NAMES = ("SessionName", "NodeAddress")


# --- sample data -------------------------------------------------------------------------------


def store(**overrides: float) -> ObjectStoreStats:
    values: dict[str, Any] = {
        "used_bytes": 40e6,
        "capacity_bytes": 100e6,
        "primary_copy_bytes": 30e6,
        "fallback_bytes": 0.0,
        "local_objects": 4,
        "primary_copies": 3,
        "pulls_queued": 0,
        "spilled_bytes_total": 20e6,
        "spilled_objects_total": 2,
        "spill_seconds_total": 0.1,
        "restored_bytes_total": 10e6,
        "restored_objects_total": 1,
        "restore_seconds_total": 0.05,
    }
    values.update(overrides)
    return ObjectStoreStats(**values)


def node(node_id: str = "n1", ip: str = "10.0.0.1", **overrides: Any) -> NodeSnapshot:
    values: dict[str, Any] = {
        "node_id": node_id,
        "ip": ip,
        "is_head": node_id == "n1",
        "state": "ALIVE",
        "node_name": ip,
        "node_type": "head" if node_id == "n1" else "worker",
        "market": "on_demand",
        "resources_total": MappingProxyType({"CPU": 2.0, "memory": 8e9, "object_store_memory": 1e8}),
        "resources_used": MappingProxyType({"CPU": 1.5, "memory": 0.0, "object_store_memory": 4e7}),
        "start_time": NOW - 3600,
        "metrics_export_port": 8080,
        "node_manager_port": 9000,
        "object_store": store(),
    }
    values.update(overrides)
    return NodeSnapshot(**values)


def job(submission_id: str, job_id: str, status: str = "RUNNING", **overrides: Any) -> JobSnapshot:
    values: dict[str, Any] = {
        "job_id": job_id,
        "submission_id": submission_id,
        "type": "SUBMISSION",
        "status": status,
        "entrypoint": "python train.py --epochs 3",
        "metadata": MappingProxyType({"user": "alice", "project": "vision", "team": "ml"}),
        "start_time": NOW - 100,
        "end_time": NOW - 10 if status in ("SUCCEEDED", "FAILED", "STOPPED") else None,
    }
    values.update(overrides)
    return JobSnapshot(**values)


def task(task_id: str, name: str = "preprocess", state: str = "FINISHED", job_id: str = "02000000", **kw: Any):
    values: dict[str, Any] = {
        "task_id": task_id,
        "attempt_number": 0,
        "name": name,
        "func_or_class_name": name,
        "state": state,
        "job_id": job_id,
        "type": "NORMAL_TASK",
        "required_resources": MappingProxyType({"CPU": 1.0}),
    }
    values.update(kw)
    return TaskSnapshot(**values)


def actor(actor_id: str, class_name: str = "Worker", state: str = "ALIVE", job_id: str = "02000000", **kw: Any):
    values: dict[str, Any] = {
        "actor_id": actor_id,
        "class_name": class_name,
        "state": state,
        "job_id": job_id,
        "required_resources": MappingProxyType({"CPU": 0.5}),
    }
    values.update(kw)
    return ActorSnapshot(**values)


def sample_snapshot(taken_at: float = NOW, session: str = SESSION, **overrides: Any) -> ClusterSnapshot:
    """A cluster with something in every family the collector emits."""
    values: dict[str, Any] = {
        "taken_at": taken_at,
        "duration_seconds": 0.05,
        "dashboard_url": "http://10.0.0.1:8265",
        "session_name": session,
        "ray_version": "2.60.0",
        "nodes": (
            node(),
            node("n2", "10.0.0.2", market="spot"),
            node("n3", "10.0.0.3", state="DEAD", end_time=NOW - 60, death_reason="UNEXPECTED_TERMINATION"),
        ),
        "jobs": (
            job("raysubmit_a", "02000000"),
            job("raysubmit_b", "03000000", status="FAILED"),
        ),
        "actors": (
            actor("a1"),
            actor("a2", state="DEAD", death_reason="WORKER_DIED", death_exit_type="SYSTEM_ERROR"),
        ),
        "tasks": (
            task("t1", state="RUNNING"),
            task("t2"),
            task("t3", "train", state="FAILED", error_type="TASK_EXECUTION_EXCEPTION"),
        ),
        "sources": MappingProxyType({name: SourceStatus(ok=True, returned=1, total=1) for name in ALL_SOURCES}),
    }
    values.update(overrides)
    return ClusterSnapshot(**values)


class StubSource:
    """Stands in for the background refresher: ``current()`` is the newest pushed snapshot; pushing
    an exception marks every source's last read as failed (the last snapshot is still served, as the
    refresher serves its last answers). Subscribers get each pushed snapshot at once."""

    def __init__(self, current: ClusterSnapshot | Exception):
        self._current: ClusterSnapshot | None = None
        self._failure: Exception | None = None
        self._subscribers: list[Callable[[ClusterSnapshot], None]] = []
        self.generation = 0
        self.push(current)

    def push(self, item: ClusterSnapshot | Exception) -> None:
        if isinstance(item, Exception):
            self._failure = item
            return
        self._failure = None
        self.generation += 1
        self._current = replace(item, generation=self.generation)
        for handle in self._subscribers:
            handle(self._current)

    def current(self) -> ClusterSnapshot | None:
        return self._current

    def subscribe(self, name: str, handle: Callable[[ClusterSnapshot], None]) -> None:
        self._subscribers.append(handle)
        if self._current is not None:
            handle(self._current)

    def health(self) -> dict[str, SourceHealth]:
        health = {}
        statuses = self._current.sources if self._current is not None else {}
        for name in SOURCES:
            status = statuses.get(name, SourceStatus(ok=True))
            error = str(self._failure) if self._failure is not None else status.error
            attempt = SourceResult(name, NOW, 0.01, error=error, connection_failed=self._failure is not None)
            health[name] = SourceHealth(5.0, 5.0, attempts=1, errors=0 if attempt.ok else 1, last_attempt=attempt)
        return health


def scrape(collector: RayCollector) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ScrapeHealthCollector([collector]))
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in registry.collect()
        for sample in family.samples
    }


def values(samples: dict, metric: str, /, **labels: str) -> list[float]:
    return [
        found
        for (sample_name, sample_labels), found in samples.items()
        if sample_name == metric and all(dict(sample_labels).get(k) == v for k, v in labels.items())
    ]


def value(samples: dict, metric: str, /, **labels: str) -> float:
    found = values(samples, metric, **labels)
    assert len(found) == 1, f"{metric}{labels}: {found}"
    return found[0]


def collector_for(source: StubSource, clock: float = NOW, **config: Any) -> RayCollector:
    return RayCollector(RayConfig(**config), source=source, clock=lambda: clock)  # type: ignore[arg-type]


# --- parsers -----------------------------------------------------------------------------------


def test_parsers_read_the_rows_ray_returns() -> None:
    dead = node_from_api(
        {
            "node_id": "ab",
            "node_ip": "10.0.0.9",
            "is_head_node": False,
            "state": "DEAD",
            "state_message": "Terminated due to preemption: spot reclaimed",
            "resources_total": {"CPU": 4.0, "node:10.0.0.9": 1.0, "node:__internal_head__": 1.0, "GPU": 1},
            "labels": {"ray.io/market-type": "SPOT"},
            "start_time_ms": 1795634519926,
            "end_time_ms": 0,
        }
    )
    assert dead.death_reason == "AUTOSCALER_DRAIN_PREEMPTED"
    assert dict(dead.resources_total) == {"CPU": 4.0, "GPU": 1.0}
    assert dead.start_time == pytest.approx(1795634519.926) and dead.end_time is None

    parsed = job_from_api(
        {
            "type": "SUBMISSION",
            "job_id": None,
            "submission_id": "probe-1",
            "status": "FAILED",
            "entrypoint": "python probe.py",
            "error_type": "JOB_ENTRYPOINT_COMMAND_ERROR",
            "start_time": 1795634551519,
            "end_time": 1795634553174,
            "metadata": {"user": "alice"},
            "driver_exit_code": 1,
        }
    )
    assert parsed.job_id is None and parsed.key == "probe-1" and parsed.finished
    assert parsed.duration(0) == pytest.approx(1.655)

    def death(reason: str, message: str) -> dict:
        return {"actor_died_error_context": {"reason": reason, "error_message": message}}

    owner_exit = "Owner worker exit type: INTENDED_USER_EXIT Worker exit detail: Owner's worker process has crashed."
    cases = {
        ("OWNER_DIED", owner_exit): False,
        ("WORKER_DIED", "Worker exit type: INTENDED_USER_EXIT Worker exit detail: exit_actor() is called."): False,
        ("WORKER_DIED", "Worker exit type: SYSTEM_ERROR Worker exit detail: Worker unexpectedly exits"): True,
        ("RAY_KILL", "ray.kill was called"): False,
        ("NODE_DIED", "The node died"): True,
    }
    for (reason, message), failed in cases.items():
        row = {
            "actor_id": "x",
            "class_name": "C",
            "state": "DEAD",
            "job_id": "02",
            "death_cause": death(reason, message),
        }
        assert actor_from_api(row).failed is failed, (reason, message)
    creation = actor_from_api({"state": "DEAD", "death_cause": {"creation_task_failure_context": {}}})
    assert creation.death_reason == "ACTOR_CREATION_FAILED" and creation.failed

    parsed_task = task_from_api(
        {"task_id": "t", "attempt_number": 1, "name": "boom", "state": "FAILED", "job_id": "02000000",
         "type": "NORMAL_TASK", "required_resources": {"CPU": 0.5}, "start_time_ms": 1000.0,
         "end_time_ms": 3000.0, "error_type": "TASK_EXECUTION_EXCEPTION"}
    )  # fmt: skip
    assert parsed_task.key == ("t", 1) and parsed_task.end_time == 3.0

    assert [normalise_market(v) for v in ("SPOT", "on-demand", "ON_DEMAND", "preemptible", "", "x")] == [
        "spot", "on_demand", "on_demand", "spot", "", ""
    ]  # fmt: skip


# --- exposition --------------------------------------------------------------------------------


def test_every_family_from_one_snapshot() -> None:
    samples = scrape(collector_for(StubSource(sample_snapshot())))
    assert value(samples, "raylens_scrape_collector_success", collector="ray") == 1
    assert value(samples, "raylens_ray_up") == 1
    n1 = {"SessionName": SESSION, "node_id": "n1", "ip": "10.0.0.1", "NodeAddress": "10.0.0.1"}
    assert value(samples, "raylens_ray_object_store_pressure_ratio", **n1) == pytest.approx(0.4)
    assert value(samples, "raylens_ray_object_store_spilled_bytes_total", **n1) == 20e6
    assert value(samples, "raylens_ray_node_resource_used", resource="CPU", **n1) == 1.5
    assert value(samples, "raylens_ray_nodes", state="ALIVE", market="spot") == 1
    assert value(samples, "raylens_ray_node_up", node_id="n3") == 0
    info = value(
        samples,
        "raylens_ray_job_info",
        job_id="02000000",
        submission_id="raysubmit_a",
        user="alice",
        project="vision",
        team="ml",
        workload="",
        entrypoint="python train.py --epochs 3",
    )
    assert info == 1
    assert value(samples, "raylens_ray_job_duration_seconds", job_id="03000000") == pytest.approx(90)
    assert value(samples, "raylens_ray_jobs", status="FAILED") == 1
    # Running normal tasks and alive actors: 1 CPU + 0.5 CPU.
    assert value(samples, "raylens_ray_job_resources_held", job_id="02000000", resource="CPU") == 1.5
    assert value(samples, "raylens_ray_tasks", name="train", state="FAILED") == 1
    assert value(samples, "raylens_ray_job_tasks", job_id="02000000", state="FINISHED") == 1


def test_attribution_labels_and_entrypoint_length_follow_the_config() -> None:
    long_entrypoint = job("raysubmit_c", "04000000", entrypoint="python " + "x" * 300, metadata={"cost_center": "42"})
    snapshot = sample_snapshot(jobs=(long_entrypoint,))
    samples = scrape(
        collector_for(StubSource(snapshot), job_attribution_labels=("cost_center",), entrypoint_max_length=20)
    )
    [(labels, _)] = [(dict(k[1]), v) for k, v in samples.items() if k[0] == "raylens_ray_job_info"]
    assert labels["cost_center"] == "42" and "user" not in labels
    assert len(labels["entrypoint"]) == 20 and labels["entrypoint"].endswith("…")


def test_names_beyond_top_n_fold_into_other() -> None:
    tasks = (*(task(f"t{i}", name=f"fn{i % 5}") for i in range(50)), task("rare", name="rare_fn"))
    samples = scrape(collector_for(StubSource(sample_snapshot(tasks=tasks)), top_names=3))
    names = {dict(k[1])["name"] for k in samples if k[0] == "raylens_ray_tasks"}
    assert names == {"fn0", "fn1", "fn2", "other"}
    assert value(samples, "raylens_ray_tasks", name="other", state="FINISHED") == 21
    assert sum(values(samples, "raylens_ray_tasks")) == 51


def test_finished_jobs_leave_after_grace_and_counters_stay_exact() -> None:
    running = job("raysubmit_a", "02000000")
    start = sample_snapshot(jobs=(running,), tasks=(), actors=())
    source = StubSource(start)
    clock = [NOW]
    collector = RayCollector(RayConfig(finished_grace_seconds=60), source=source, clock=lambda: clock[0])  # type: ignore[arg-type]
    assert values(scrape(collector), "raylens_ray_jobs_finished_total") == []

    finished = replace(running, status="SUCCEEDED", end_time=NOW + 5)
    for step in range(1, 6):  # the same finished job seen on five scrapes, before and after the grace
        clock[0] = NOW + step * 30
        source.push(sample_snapshot(taken_at=clock[0], jobs=(finished,), tasks=(task("t", state="FINISHED"),)))
        samples = scrape(collector)
        assert value(samples, "raylens_ray_jobs_finished_total", status="SUCCEEDED", SessionName=SESSION) == 1
        visible = values(samples, "raylens_ray_job_info", job_id="02000000")
        assert visible == ([1.0] if clock[0] - finished.end_time <= 60 else []), step
        per_job = values(samples, "raylens_ray_job_tasks", job_id="02000000")
        assert per_job == ([1.0] if visible else [])
    assert value(samples, "raylens_ray_jobs", status="SUCCEEDED") == 1  # the count keeps it


def test_history_at_start_is_a_baseline_not_a_burst() -> None:
    history = sample_snapshot()  # a failed job, a failed task, a failed actor, a dead node: all old
    source = StubSource(history)
    collector = collector_for(source)
    samples = scrape(collector)
    for name in ("jobs_finished", "task_failures", "actor_failures", "node_joins", "node_removals"):
        assert values(samples, f"raylens_ray_{name}_total") == [], name

    later = sample_snapshot(
        taken_at=NOW + 15,
        tasks=(*history.tasks, task("t4", state="FAILED", error_type="WORKER_DIED")),
        actors=(*history.actors, actor("a3", state="DEAD", death_reason="NODE_DIED")),
        jobs=(*history.jobs, job("raysubmit_c", "05000000", status="STOPPED")),
    )
    source.push(later)
    samples = scrape(collector)
    assert value(samples, "raylens_ray_task_failures_total", error_type="WORKER_DIED") == 1
    assert values(samples, "raylens_ray_task_failures_total", error_type="TASK_EXECUTION_EXCEPTION") == []
    assert value(samples, "raylens_ray_actor_failures_total", error_type="NODE_DIED") == 1
    assert value(samples, "raylens_ray_jobs_finished_total", status="STOPPED") == 1
    # A retry of the same task is a new failure; the same attempt seen again is not.
    retry = task("t4", state="FAILED", error_type="WORKER_DIED", attempt_number=1)
    source.push(replace(later, taken_at=NOW + 30, tasks=(*later.tasks, retry)))
    scrape(collector)
    source.push(replace(later, taken_at=NOW + 45, tasks=(*later.tasks, retry)))
    assert value(scrape(collector), "raylens_ray_task_failures_total", error_type="WORKER_DIED") == 2


def test_node_lifecycle_counts_joins_deaths_and_a_lost_session() -> None:
    source = StubSource(sample_snapshot(nodes=(node(),)))
    collector = collector_for(source)
    scrape(collector)
    spot = node("n2", "10.0.0.2", market="spot", node_type="gpu")
    source.push(sample_snapshot(taken_at=NOW + 1, nodes=(node(), spot)))
    samples = scrape(collector)
    assert value(samples, "raylens_ray_node_joins_total", node_type="gpu", market="spot") == 1
    preempted = replace(spot, state="DEAD", end_time=NOW + 2, death_reason="AUTOSCALER_DRAIN_PREEMPTED")
    source.push(sample_snapshot(taken_at=NOW + 2, nodes=(node(), preempted)))
    samples = scrape(collector)
    assert value(samples, "raylens_ray_node_removals_total", reason="preempted", market="spot") == 1
    # The head restarts: a new session, a new head node; the old one vanished without a death record.
    new_session = "session_2026-01-01_01-00-00_000000_2"
    source.push(sample_snapshot(taken_at=NOW + 3, session=new_session, nodes=(node("n9", "10.0.0.1"),)))
    samples = scrape(collector)
    assert value(samples, "raylens_ray_node_removals_total", reason="vanished", SessionName=SESSION) == 1
    assert value(samples, "raylens_ray_node_joins_total", SessionName=new_session) == 1
    assert value(samples, "raylens_ray_node_removals_total", reason="preempted") == 1  # old counters stay


def test_nodes_answering_before_the_session_is_known_are_no_joins_or_removals() -> None:
    """At start-up the node table can answer before /api/version names the session."""
    source = StubSource(sample_snapshot(session="", nodes=(node(),)))
    collector = collector_for(source)
    scrape(collector)
    source.push(sample_snapshot(taken_at=NOW + 1, nodes=(node(),)))
    samples = scrape(collector)
    assert values(samples, "raylens_ray_node_joins_total") == []
    assert values(samples, "raylens_ray_node_removals_total") == []
    source.push(sample_snapshot(taken_at=NOW + 2, nodes=(node(), node("n2", "10.0.0.2"))))
    assert value(scrape(collector), "raylens_ray_node_joins_total", SessionName=SESSION) == 1


def test_ray_down_reports_failure_serves_the_last_answers_and_recovers() -> None:
    first = sample_snapshot(jobs=(job("raysubmit_a", "02000000"),))
    source = StubSource(first)
    clock = [NOW]
    collector = RayCollector(RayConfig(), source=source, clock=lambda: clock[0])  # type: ignore[arg-type]
    scrape(collector)
    source.push(replace(first, taken_at=NOW + 1, jobs=(job("raysubmit_a", "02000000", status="FAILED"),)))
    scrape(collector)
    source.push(RayUnavailable("Ray dashboard unreachable: connection refused"))
    clock[0] = NOW + 31
    down = scrape(collector)
    assert value(down, "raylens_scrape_collector_success", collector="ray") == 0
    assert value(down, "raylens_ray_up") == 0
    assert value(down, "raylens_ray_state_source_success", source="nodes") == 0
    # The last answers are still served (until ray.max_state_age_seconds), and say how old they are.
    assert value(down, "raylens_ray_node_up", node_id="n1") == 1
    assert value(down, "raylens_ray_state_age_seconds") == 30
    assert value(down, "raylens_ray_jobs_finished_total", status="FAILED") == 1  # still exported
    assert value(down, "raylens_scrape_collector_errors_total", collector="ray") == 1  # one fault, one error
    source.push(replace(first, taken_at=NOW + 33))
    up = scrape(collector)
    assert value(up, "raylens_scrape_collector_success", collector="ray") == 1
    assert value(up, "raylens_ray_up") == 1
    assert value(up, "raylens_ray_jobs_finished_total", status="FAILED") == 1


def test_a_source_that_never_answered_leaves_only_its_section_empty() -> None:
    sources = dict(sample_snapshot().sources)
    sources["tasks"] = SourceStatus(ok=False, error="timed out after 10.0s")
    fetched = MappingProxyType({name: NOW for name in ALL_SOURCES if name != "tasks"})
    snapshot = sample_snapshot(tasks=(), sources=MappingProxyType(sources), fetched_at=fetched)
    samples = scrape(collector_for(StubSource(snapshot)))
    assert value(samples, "raylens_scrape_collector_success", collector="ray") == 0
    assert value(samples, "raylens_ray_state_source_success", source="tasks") == 0
    assert values(samples, "raylens_ray_tasks") == []
    assert values(samples, "raylens_ray_job_resources_held") == []  # needs tasks
    assert value(samples, "raylens_ray_node_up", node_id="n1") == 1
    assert value(samples, "raylens_ray_state_source_age_seconds", source="nodes") == 0


def test_exposition_is_promtool_clean_apart_from_rays_label_names() -> None:
    registry = CollectorRegistry(auto_describe=False)
    source = StubSource(sample_snapshot())
    collector = collector_for(source)
    registry.register(ScrapeHealthCollector([collector]))
    generate_latest(registry)  # baseline scrape, so the counters below have values
    source.push(sample_snapshot(taken_at=NOW + 1, tasks=(task("t9", state="FAILED", error_type="OUT_OF_MEMORY"),)))
    text = generate_latest(registry).decode()
    assert "raylens_ray_task_failures_total" in text
    assert promtool_problems(text) == ""


def promtool_problems(exposition: str) -> str:
    """``promtool check metrics`` findings, Ray's own label names (kept on purpose) aside."""
    for name in RAY_LABEL_NAMES:
        exposition = exposition.replace(f"{name}=", f"{re.sub(r'(?<!^)(?=[A-Z])', '_', name).lower()}=")
    result = subprocess.run(
        ["promtool", "check", "metrics"], input=exposition.encode(), capture_output=True, timeout=30
    )
    return "" if result.returncode == 0 else result.stdout.decode() + result.stderr.decode()


# --- the state source against a fake dashboard -------------------------------------------------


def listing(rows: list[dict], total: int | None = None) -> dict:
    result = {
        "total": len(rows) if total is None else total,
        "num_after_truncation": len(rows),
        "num_filtered": len(rows),
        "result": rows,
        "partial_failure_warning": "",
        "warnings": None,
    }
    return {"result": True, "msg": "", "data": {"result": result}}


NODE_ROW = {
    "node_id": "n1",
    "node_ip": "10.0.0.1",
    "is_head_node": True,
    "state": "ALIVE",
    "resources_total": {"CPU": 2.0, "object_store_memory": 1e8, "my_accelerator": 1.0},
    "labels": {"ray.io/market-type": "spot"},
    "start_time_ms": 1_700_000_000_000,
    "end_time_ms": 0,
}


def dashboard_routes() -> dict[str, Any]:
    return {
        "/api/version": {"version": "4", "ray_version": "2.60.0", "session_name": SESSION},
        # Ray 2.60's answer while Serve is not running.
        "/api/serve/applications/": {"controller_info": {}, "proxies": {}, "applications": {}, "target_capacity": None},
        "/api/v0/nodes": listing([NODE_ROW]),
        "/nodes": {
            "result": True,
            "data": {
                "summary": [
                    {
                        "raylet": {
                            "nodeId": "n1",
                            "nodeManagerPort": 9000,
                            "metricsExportPort": 8080,
                            "coreWorkersStats": [{"pid": 1}],  # per-worker detail raylens drops
                            # Protobuf JSON: camelCase, int64 as strings, zeros left out.
                            "storeStats": {
                                "objectStoreBytesUsed": "40000000",
                                "objectStoreBytesAvail": "100000000",
                                "objectStoreBytesPrimaryCopy": "30000000",
                                "numLocalObjects": 4,
                                "numObjectStorePrimaryCopies": "3",
                                "spilledBytesTotal": "20000000",
                                "spilledObjectsTotal": "2",
                                "spillTimeTotalS": 0.1,
                                "restoredBytesTotal": "10000000",
                                "restoredObjectsTotal": "1",
                                "restoreTimeTotalS": 0.05,
                            },
                        }
                    }
                ]
            },
        },
        "/api/cluster_status": {
            "result": True,
            "data": {
                "clusterStatus": {
                    "loadMetricsReport": {
                        # The dashboard camel-cases resource names here; raylens maps them back.
                        "usageByNode": {
                            "n1": {"CPU": [1.0, 2.0], "objectStoreMemory": [5e7, 1e8], "myAccelerator": [1, 1]}
                        }
                    }
                }
            },
        },
        "/api/jobs/": [
            {
                "type": "SUBMISSION",
                "job_id": "02000000",
                "submission_id": "s",
                "status": "RUNNING",
                "entrypoint": "python x.py",
                "start_time": 1_700_000_000_000,
                "metadata": {"user": "alice"},
            }
        ],
        "/api/v0/actors": listing([]),
        "/api/v0/tasks": listing([]),
    }


class FakeDashboard:
    def __init__(self, port: int | None = None):
        self.routes = dashboard_routes()
        self.delays: dict[str, float] = {}
        self.hits: dict[str, int] = {}
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                path = self.path.split("?")[0]
                fake.hits[path] = fake.hits.get(path, 0) + 1
                time.sleep(fake.delays.get(path, 0))
                body = fake.routes.get(path)
                data = json.dumps(body).encode()
                self.send_response(200 if body is not None else 404)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                with contextlib.suppress(OSError):  # the client gave up (deadline)
                    self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port or 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    @contextmanager
    def running(self) -> Iterator[FakeDashboard]:
        thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self.server.shutdown()
            self.server.server_close()


def test_one_round_per_cache_period_and_camel_cased_resources_mapped_back() -> None:
    now = [100.0]
    with FakeDashboard().running() as fake:
        source = RayStateSource(RayConfig(address=fake.url, cache_seconds=10), monotonic=lambda: now[0])
        first = source.snapshot()
        for _ in range(5):
            assert source.snapshot() is first
        assert source.rounds == 1 and set(fake.hits.values()) == {1}
        now[0] += 11
        assert source.snapshot() is not first and source.rounds == 2
        assert set(fake.hits.values()) == {2}
        source.close()
    [head] = first.nodes
    assert dict(head.resources_used or {}) == {"CPU": 1.0, "object_store_memory": 5e7, "my_accelerator": 1.0}
    assert head.market == "spot" and head.node_type == "head" and head.object_store == store()
    assert first.session_name == SESSION and first.jobs[0].metadata["user"] == "alice"


def refresher_for(config: RayConfig) -> StateRefresher:
    return StateRefresher(config, rng=__import__("random").Random(1))


def test_truncated_answers_are_counted_not_fatal() -> None:
    with FakeDashboard().running() as fake:
        fake.routes["/api/v0/tasks"] = listing([{"task_id": "t", "state": "RUNNING", "job_id": "02"}], total=5000)
        refresher = refresher_for(RayConfig(address=fake.url))
        refresher.refresh_now()
        samples = scrape(RayCollector(RayConfig(address=fake.url), source=refresher))
        refresher.stop()
    assert value(samples, "raylens_scrape_collector_success", collector="ray") == 1
    assert value(samples, "raylens_ray_state_truncated_rows", source="tasks") == 4999
    assert value(samples, "raylens_ray_state_rows", source="tasks") == 1


def wait_until(condition: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = condition()
        if result:
            return result
        time.sleep(0.05)
    raise AssertionError(f"not within {timeout}s: {what}")


def test_a_slow_source_never_delays_a_scrape_and_fails_at_its_own_deadline() -> None:
    with FakeDashboard().running() as fake:
        fake.delays["/api/v0/tasks"] = 3.0
        config = RayConfig(address=fake.url, timeout_seconds=1.0)
        refresher = refresher_for(config)
        collector = RayCollector(config, source=refresher)
        refresher.start()
        wait_until(lambda: (refresher.current() or sample_snapshot(nodes=())).nodes, 5, "nodes answered")
        started = time.monotonic()
        samples = scrape(collector)  # the task listing is still in flight
        assert time.monotonic() - started < 0.5
        assert value(samples, "raylens_ray_node_up", node_id="n1") == 1
        assert values(samples, "raylens_ray_tasks") == []  # not answered yet
        health = wait_until(
            lambda: (h := refresher.health()["tasks"]).last_attempt is not None and h, 5, "tasks failed"
        )
        assert "timed out" in health.last_attempt.error and health.last_attempt.seconds < 1.5
        samples = scrape(collector)
        refresher.stop()
    assert value(samples, "raylens_scrape_collector_success", collector="ray") == 0
    assert value(samples, "raylens_ray_state_source_success", source="tasks") == 0
    assert value(samples, "raylens_ray_state_fetch_errors_total", source="tasks") >= 1
    assert value(samples, "raylens_ray_state_source_success", source="nodes") == 1


def test_sources_run_on_their_own_intervals_and_back_off_when_failing() -> None:
    with FakeDashboard().running() as fake:
        del fake.routes["/api/cluster_status"]  # answers 404: resource_usage fails every time
        schedule = {"interval_seconds": 0.5}
        config = RayConfig(
            address=fake.url,
            refresh_jitter_ratio=0.0,
            backoff_max_seconds=2.0,
            sources={"nodes": schedule, "resource_usage": schedule, "tasks": {"interval_seconds": 60}},
        )
        refresher = refresher_for(config)
        refresher.start()
        time.sleep(3.2)
        refresher.stop()
        hits = dict(fake.hits)
    # nodes: at 0, 0.5, …, 3.0 → about 7 reads; tasks once; resource_usage backs off 0.5, 1, 2, 2 s.
    assert 5 <= hits["/api/v0/nodes"] <= 8, hits
    assert hits["/api/v0/tasks"] == 1, hits
    assert 2 <= hits["/api/cluster_status"] <= 4, hits
    health = refresher.health()["resource_usage"]
    assert health.consecutive_failures == hits["/api/cluster_status"] and "HTTP 404" in health.last_attempt.error


def test_answers_past_their_max_age_are_no_longer_served() -> None:
    fresh = SourceResult("nodes", 1000.0, 0.01, value=({**NODE_ROW},), returned=1, total=1)
    jobs = SourceResult("jobs", 700.0, 0.01, value=(), returned=0, total=0)
    failed = SourceResult("jobs", 1290.0, 5.0, error="timed out after 5.0s")
    config = RayConfig(max_state_age_seconds=500)
    snapshot = compose(config, {"nodes": fresh, "jobs": jobs}, {"nodes": fresh, "jobs": failed}, "u", now=1300.0)
    assert snapshot.has("nodes") and not snapshot.has("jobs")  # the jobs answer is 600 s old
    assert snapshot.as_of(["nodes"]) == 1000.0 and snapshot.as_of(["nodes", "jobs"]) is None
    assert snapshot.sources["jobs"].error == "timed out after 5.0s"
    patient = RayConfig(max_state_age_seconds=900)
    assert compose(patient, {"jobs": jobs}, {"jobs": failed}, "u", now=1300.0).as_of(["jobs"]) == 700.0


def test_ray_down_fails_fast_is_not_hammered_and_recovers(caplog: pytest.LogCaptureFixture) -> None:
    port = free_port()
    config = RayConfig(
        address=f"http://127.0.0.1:{port}",
        timeout_seconds=2.0,
        refresh_jitter_ratio=0.0,
        backoff_max_seconds=1.0,
        sources={name: {"interval_seconds": 0.5} for name in SOURCES},
    )
    refresher = refresher_for(config)
    collector = RayCollector(config, source=refresher)
    refresher.start()
    health = wait_until(lambda: (h := refresher.health()["nodes"]).last_attempt is not None and h, 5, "nodes tried")
    assert health.last_attempt.connection_failed and health.last_attempt.seconds < 1.0
    down = scrape(collector)
    assert value(down, "raylens_ray_up") == 0
    assert value(down, "raylens_scrape_collector_success", collector="ray") == 0
    assert any("connection failed" in str(getattr(record, "error", "")) for record in caplog.records)
    time.sleep(2.0)
    attempts = refresher.health()["nodes"].attempts
    assert attempts <= 4, attempts  # 0.5 s, then 1 s (the backoff cap): not a tight loop
    with FakeDashboard(port).running():
        wait_until(lambda: refresher.health()["nodes"].consecutive_failures == 0, 5, "recovered")
        wait_until(lambda: (refresher.current() or sample_snapshot(nodes=())).nodes, 5, "nodes served")
        up = scrape(collector)
    refresher.stop()
    assert value(up, "raylens_ray_up") == 1
    assert value(up, "raylens_ray_node_up", node_id="n1") == 1
