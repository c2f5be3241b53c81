"""The cost collector through a fresh registry, as Prometheus sees it: golden exposition, promtool lint,
state persisted before counters are shown, restarts, failure isolation, `raylens cost explain`, and the
adapter from Ray's ClusterSnapshot."""

from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
from pathlib import Path
from types import MappingProxyType
from typing import Any

import pytest
import yaml
from exposition_check import scrape
from prometheus_client import CollectorRegistry

from raylens.collectors.base import ScrapeHealthCollector
from raylens.collectors.cost import CostCollector
from raylens.config import CostConfig, load_config
from raylens.cost.loading import load_cost_setup
from raylens.cost.model import Allocation, JobInfo, NodeSpan, Observation, Resources
from raylens.cost.ray_source import IncompleteSnapshot, held_resources, observation_from_snapshot
from raylens.ray.snapshot import SourceStatus

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO / "tests" / "fixtures" / "cost"
GOLDEN = FIXTURES / "exposition.prom"
GIB = float(1 << 30)
CLUSTER = yaml.safe_load((FIXTURES / "cluster.yaml").read_text())


def observation(time: float, cluster: dict[str, Any] = CLUSTER) -> Observation:
    nodes = [
        NodeSpan(
            node["node_id"],
            float(node["start"]),
            float(node["end"]) if node.get("end") and node["end"] <= time else None,
            Resources(node["cpu"], node["gpu"], node["memory_gib"] * GIB),
            labels=node.get("labels", {}),
            ip=node["ip"],
            is_head=node.get("is_head", False),
            instance_type=node.get("instance_type", ""),
            market=node.get("market", ""),
        )
        for node in cluster["nodes"]
        if node["start"] <= time
    ]
    jobs = [
        JobInfo(job["job_id"], job.get("submission_id", ""), job["metadata"], float(job["start"]))
        for job in cluster["jobs"]
        if job["start"] <= time
    ]
    allocations = [
        Allocation(
            item["id"],
            item["job_id"],
            item["node_id"],
            Resources(item["cpu"], item.get("gpu", 0), item.get("memory_gib", 0) * GIB),
            start_time=item.get("start"),
            end_time=item["end"] if item.get("end") and item["end"] <= time else None,
            kind=item.get("kind", "task"),
            name=item.get("name", ""),
        )
        for item in cluster["allocations"]
        if item.get("start", 0) <= time and not (item.get("end") and time - item["end"] > 600)
    ]
    return Observation(time, nodes, jobs, allocations)


class Clock:
    def __init__(self, time: float) -> None:
        self.time = time

    def observe(self) -> Observation:
        return observation(self.time)


def config_file(tmp_path: Path, **cost: Any) -> Path:
    budgets = tmp_path / "budgets.yaml"
    budgets.write_text(
        yaml.safe_dump(
            {
                "budgets": [
                    {"name": "org", "scope": "org", "amount_usd": 500},
                    {"name": "vision-daily", "scope": "project", "match": "vision", "amount_usd": 2, "period": "day"},
                ]
            }
        )
    )
    quotas = tmp_path / "quotas.yaml"
    quotas.write_text(
        yaml.safe_dump(
            {
                "quotas": [
                    {"name": "gpus-per-user", "scope": "user", "match": "*", "resource": "gpus", "limit": 4},
                    {
                        "name": "spot-cpus",
                        "scope": "global",
                        "resource": "cpus",
                        "instance_type": "m5.4xlarge",
                        "limit": 64,
                    },
                ]
            }
        )
    )
    settings = {
        "state_dir": str(tmp_path / "state"),
        "budgets_file": str(budgets),
        "quotas_file": str(quotas),
        "export_node_labels": ["ray.io/node-group"],
        "timezone": "UTC",
        **cost,
    }
    path = tmp_path / "raylens.yaml"
    path.write_text(yaml.safe_dump({"cost": settings}))
    return path


def collector_for(path: Path, clock: Clock) -> CostCollector:
    config = load_config(path, environ={}).cost
    setup = load_cost_setup(config)
    return CostCollector(
        config,
        setup.engine,
        quotas=setup.quotas,
        state_dir=setup.state_dir,
        clock=lambda: clock.time,  # the explain log is saved once a minute of this clock
        wall_clock=lambda: clock.time,
    )


def observe_then_scrape(collector: CostCollector, registry: CollectorRegistry, clock: Clock) -> str:
    """A new Ray snapshot arrives (in the exporter, on the refresher's thread), then a scrape."""
    collector.account(clock.observe())
    return exposition(registry)


def registry_for(collector: CostCollector) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ScrapeHealthCollector([collector]))
    return registry


def exposition(registry: CollectorRegistry) -> str:
    """Through the exporter's renderer, checked byte for byte against prometheus_client."""
    return scrape(registry)


def stable(text: str) -> str:
    """Scrape durations vary from run to run."""
    return re.sub(r"(raylens_scrape_collector_duration_seconds\{[^}]*\}) .*", r"\1 <duration>", text)


@pytest.fixture
def scraped(tmp_path: Path) -> tuple[CollectorRegistry, Clock, Path]:
    clock = Clock(CLUSTER["scrapes"][0])
    path = config_file(tmp_path)
    collector = collector_for(path, clock)
    registry = registry_for(collector)
    for time in CLUSTER["scrapes"]:
        clock.time = time
        text = observe_then_scrape(collector, registry, clock)
    collector.flush()  # the explain log is written in the background
    return registry, clock, path, text  # type: ignore[return-value]


def test_exposition_matches_the_golden_file(scraped: tuple) -> None:
    text = stable(scraped[3])
    if os.environ.get("RAYLENS_UPDATE_GOLDEN"):
        GOLDEN.write_text(text)
    assert text == GOLDEN.read_text(), "regenerate with RAYLENS_UPDATE_GOLDEN=1 and review the diff"


def test_exposition_passes_promtool_lint(scraped: tuple) -> None:
    result = subprocess.run(
        ["promtool", "check", "metrics"], input=scraped[3].encode(), capture_output=True, timeout=30
    )
    assert result.returncode == 0, result.stdout.decode() + result.stderr.decode()
    assert result.stdout.decode().strip() == "" and result.stderr.decode().strip() == ""


def test_values_nodes_jobs_budgets_quotas(scraped: tuple) -> None:
    registry = scraped[0]
    value = registry.get_sample_value
    head = {
        "node_id": "head0001",
        "instance_type": "m5.xlarge",
        "market": "on_demand",
        "label_ray_io_node_group": "head",
        "cost_kind": "compute",
    }
    # Alive since 1782774000, last scrape 1782781200: two hours at 0.192.
    assert value("raylens_cost_node_dollars_total", head) == pytest.approx(0.384)
    assert value("raylens_cost_node_dollars_per_second", head) == pytest.approx(0.192 / 3600)
    spot = {
        "node_id": "spot0002",
        "instance_type": "m5.4xlarge",
        "market": "spot",
        "label_ray_io_node_group": "cpu",
        "cost_kind": "compute",
    }
    assert value("raylens_cost_node_dollars_total", spot) == pytest.approx(0.322 / 2)  # half an hour
    assert value("raylens_cost_node_dollars_per_second", spot) is None  # ended: no current rate
    assert value("raylens_cost_unpriced_nodes") == 1
    assert (
        value("raylens_cost_node_unpriced", {"node_id": "mystery1", "instance_type": "", "reason": pytest.approx})
        is None
    )
    text = scraped[3]
    assert 'raylens_cost_node_unpriced{instance_type="",node_id="mystery1",reason="instance type unknown' in text
    # bob's job: 8 of 16 CPUs and 32 of 64 GiB for 1300 s on the spot node.
    bob = {"job_id": "02000000", "submission_id": "raysubmit_b", "user": "bob", "project": "nlp", "team": "ml"}
    assert value("raylens_cost_job_dollars_total", bob) == pytest.approx(0.322 / 3600 * 1300 / 2)
    assert (
        value(
            "raylens_cost_job_info",
            {
                "job_id": "02000000",
                "submission_id": "raysubmit_b",
                "workload": "batch-inference",
                "workload_source": "metadata",
            },
        )
        == 1
    )
    assert (
        value(
            "raylens_cost_job_info",
            {"job_id": "01000000", "submission_id": "raysubmit_a", "workload": "serve", "workload_source": "inferred"},
        )
        == 1
    )
    assert value("raylens_cost_serve_deployment_dollars_total", {"application": "detector", "deployment": "Model"}) > 0
    idle = {
        "user": "__idle__",
        "project": "__idle__",
        "team": "__idle__",
        "workload": "__idle__",
        "cost_kind": "compute",
    }
    assert value("raylens_cost_allocation_dollars_total", idle) > 0
    labels = {"budget": "vision-daily", "scope": "project", "match": "vision", "period": "day"}
    assert value("raylens_budget_amount_dollars", labels) == 2
    assert value("raylens_budget_period_start_timestamp_seconds", labels) == 1782777600
    assert value("raylens_budget_period_end_timestamp_seconds", labels) == 1782777600 + 86400
    assert value("raylens_budget_threshold_ratio", {**labels, "threshold": "80"}) == 0.8
    vision_today = sum(
        sample.value
        for family in registry.collect()
        if family.name == "raylens_cost_allocation_dollars"
        for sample in family.samples
        if sample.labels["project"] == "vision"
    )
    # Vision spent before midnight too (the head task since 1782775100); the day budget counts today only.
    assert 0 < value("raylens_budget_spend_dollars", labels) < vision_today
    quota = {"quota": "gpus-per-user", "scope": "user", "match": "alice", "resource": "gpus", "instance_type": ""}
    assert value("raylens_quota_usage", quota) == 1 and value("raylens_quota_limit", quota) == 4
    assert (
        value(
            "raylens_quota_usage",
            {"quota": "spot-cpus", "scope": "global", "match": "", "resource": "cpus", "instance_type": "m5.4xlarge"},
        )
        == 0
    )
    assert value("raylens_scrape_collector_success", {"collector": "cost"}) == 1


def test_sum_of_allocation_series_is_the_total(scraped: tuple) -> None:
    registry = scraped[0]
    totals = {}
    for family in registry.collect():
        if family.name in ("raylens_cost_allocation_dollars", "raylens_cost_node_dollars"):
            totals[family.name] = sum(s.value for s in family.samples if s.name.endswith("_total"))
    assert totals["raylens_cost_allocation_dollars"] == pytest.approx(totals["raylens_cost_node_dollars"], rel=1e-12)


def test_state_is_saved_and_a_restart_continues_the_counters(scraped: tuple, tmp_path: Path) -> None:
    registry, clock, path = scraped[:3]
    head = {
        "node_id": "head0001",
        "instance_type": "m5.xlarge",
        "market": "on_demand",
        "label_ray_io_node_group": "head",
        "cost_kind": "compute",
    }
    before = registry.get_sample_value("raylens_cost_node_dollars_total", head)
    assert (tmp_path / "state" / "cost-state.json").exists()
    assert not list((tmp_path / "state").glob(".*.tmp"))
    clock.time += 600  # down ten minutes, then a new process
    collector = collector_for(path, clock)
    restarted = registry_for(collector)
    observe_then_scrape(collector, restarted, clock)
    after = restarted.get_sample_value("raylens_cost_node_dollars_total", head)
    assert after == pytest.approx(before + 0.192 / 6)  # nothing lost, nothing counted twice
    bob = {"job_id": "02000000", "submission_id": "raysubmit_b", "user": "bob", "project": "nlp", "team": "ml"}
    assert restarted.get_sample_value("raylens_cost_job_dollars_total", bob) == registry.get_sample_value(
        "raylens_cost_job_dollars_total", bob
    )


def test_an_incomplete_snapshot_is_reported_and_budgets_still_show(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from test_ray_collector import sample_snapshot

    statuses = dict(sample_snapshot().sources)
    statuses["tasks"] = SourceStatus(ok=False, error="timed out after 10.0s")
    fetched = MappingProxyType({name: 100.0 for name in statuses if name != "tasks"})
    never_listed_tasks = sample_snapshot(sources=MappingProxyType(statuses), fetched_at=fetched)
    clock = Clock(CLUSTER["scrapes"][0])
    collector = collector_for(config_file(tmp_path), clock)
    registry = registry_for(collector)
    collector.account_snapshot(never_listed_tasks)
    with caplog.at_level(logging.WARNING, logger="raylens.scrape"):
        text = exposition(registry)
    assert 'raylens_scrape_collector_success{collector="cost"} 0.0' in text
    assert 'raylens_scrape_collector_errors_total{collector="cost"} 1.0' in text  # the accounting section
    assert "raylens_budget_amount_dollars{" in text
    assert "raylens_cost_node_dollars_total{" not in text
    assert any("tasks: timed out" in getattr(record, "error", "") for record in caplog.records)


def test_ended_nodes_leave_the_exposition_after_retention(tmp_path: Path) -> None:
    clock = Clock(CLUSTER["scrapes"][0])
    collector = collector_for(config_file(tmp_path, finished_retention_seconds=60), clock)
    registry = registry_for(collector)
    for time in (*CLUSTER["scrapes"], CLUSTER["scrapes"][-1] + 120):
        clock.time = time
        text = observe_then_scrape(collector, registry, clock)
    assert 'node_id="spot0002"' not in text
    assert 'node_id="head0001"' in text


def test_cost_explain_command(scraped: tuple, tmp_path: Path) -> None:
    path = scraped[2]
    common = [sys.executable, "-m", "raylens", "cost", "explain"]
    node = subprocess.run(
        [*common, "node", "gpu00001", f"--config.file={path}"], capture_output=True, text=True, timeout=60
    )
    assert node.returncode == 0, node.stderr
    for expected in (
        "instance type:  g5.xlarge (from label node.kubernetes.io/instance-type)",
        "market:         spot (from ray)",
        "price:          0.451 USD/h",
        "pricing source: catalog",
        "[skypilot]",
        "derived by ratios: 4 vCPU x 7.5 : 1 GPU x 224 : 16 GiB x 1",
    ):
        assert expected in node.stdout, node.stdout
    job = subprocess.run(
        [*common, "job", "01000000", f"--config.file={path}"], capture_output=True, text=True, timeout=60
    )
    assert job.returncode == 0, job.stderr
    for expected in (
        "user:           alice",
        "project:        vision",
        "workload:       serve (inferred",
        "on node head0001",
    ):
        assert expected in job.stdout, job.stdout
    # The head task holds 2 of 4 CPUs from its start (23:18:20) to the last scrape, in one coalesced segment.
    assert re.search(r"2026-06-29 23:18:20 UTC +2026-06-30 01:00:00 UTC +50\.0% +0\.0% +50\.0%", job.stdout), job.stdout
    missing = subprocess.run(
        [*common, "job", "ffffffff", f"--config.file={path}"], capture_output=True, text=True, timeout=60
    )
    assert missing.returncode == 1 and "not in the cost state" in missing.stdout


# ----------------------------------------------------------------------------- the Ray adapter


def test_placement_group_resources_count_once() -> None:
    held = held_resources({"CPU_group_0_abc123": 2.0, "CPU_group_abc123": 2.0, "GPU_group_abc123": 1.0, "memory": 1e9})
    assert held == Resources(2.0, 1.0, 1e9)


def test_observation_from_a_cluster_snapshot() -> None:
    from raylens.ray.snapshot import (
        ActorSnapshot,
        ClusterSnapshot,
        JobSnapshot,
        NodeSnapshot,
        SourceStatus,
        TaskSnapshot,
    )

    ok = SourceStatus(ok=True)
    snapshot = ClusterSnapshot(
        taken_at=2000.0,
        duration_seconds=0.1,
        dashboard_url="http://127.0.0.1:8265",
        session_name="s",
        ray_version="2.60.0",
        nodes=(
            NodeSnapshot(
                "n1",
                "10.0.0.1",
                True,
                "ALIVE",
                instance_type="m5.xlarge",
                market="spot",
                resources_total=MappingProxyType({"CPU": 4.0, "memory": 8e9, "accelerator_type:A10G": 1.0}),
                start_time=1000.0,
            ),
            NodeSnapshot("n2", "10.0.0.2", False, "DEAD", start_time=1000.0, end_time=1500.0),
        ),
        jobs=(
            JobSnapshot(
                "01000000",
                "raysubmit_x",
                "SUBMISSION",
                "RUNNING",
                metadata=MappingProxyType({"user": "a"}),
                start_time=1100.0,
            ),
            JobSnapshot(None, "raysubmit_y", "SUBMISSION", "PENDING"),
        ),
        actors=(
            ActorSnapshot(
                "a1",
                "ServeReplica:app:dep",
                "ALIVE",
                "01000000",
                node_id="n1",
                required_resources=MappingProxyType({"CPU": 1.0}),
            ),
            ActorSnapshot("a2", "Gone", "DEAD", "01000000", node_id="n1"),
        ),
        tasks=(
            TaskSnapshot(
                "t1",
                0,
                "f",
                "f",
                "RUNNING",
                "01000000",
                "NORMAL_TASK",
                node_id="n1",
                required_resources=MappingProxyType({"CPU": 1.0}),
                start_time=1200.0,
            ),
            TaskSnapshot(
                "t2",
                0,
                "g",
                "g",
                "FINISHED",
                "01000000",
                "NORMAL_TASK",
                node_id="n1",
                start_time=1200.0,
                end_time=1300.0,
            ),
            TaskSnapshot("t3", 0, "m", "m", "RUNNING", "01000000", "ACTOR_TASK", node_id="n1"),
            TaskSnapshot("t4", 0, "p", "p", "PENDING_NODE_ASSIGNMENT", "01000000", "NORMAL_TASK"),
        ),
        sources=MappingProxyType({name: ok for name in ("nodes", "jobs", "actors", "tasks")}),
    )
    observed = observation_from_snapshot(snapshot)
    assert observed.time == 2000.0
    head, dead = observed.nodes
    assert (head.instance_type, head.market, head.accelerator_type, head.capacity) == (
        "m5.xlarge",
        "spot",
        "A10G",
        Resources(4.0, 0.0, 8e9),
    )
    assert dead.end_time == 1500.0
    assert [job.job_id for job in observed.jobs] == ["01000000"]
    assert {a.allocation_id: (a.kind, a.start_time, a.end_time) for a in observed.allocations} == {
        "actor:a1": ("actor", None, None),
        "task:t1:0": ("task", 1200.0, None),
        "task:t2:0": ("task", 1200.0, 1300.0),
    }
    failed = ClusterSnapshot(
        2000.0, 0.1, "u", "s", "2.60.0", sources=MappingProxyType({"tasks": SourceStatus(ok=False, error="timeout")})
    )
    with pytest.raises(IncompleteSnapshot, match="tasks: timeout"):
        observation_from_snapshot(failed)


def test_collector_runs_without_a_state_dir_in_memory() -> None:
    from raylens.cost.catalog import load_catalog
    from raylens.cost.engine import CostEngine
    from raylens.cost.pricing import NodePricer

    config = CostConfig()
    collector = CostCollector(config, CostEngine(config, NodePricer(config, load_catalog())))
    assert collector.account(observation(CLUSTER["scrapes"][0]))
    assert not collector.account(observation(CLUSTER["scrapes"][0]))  # nothing newer: nothing to do
    assert registry_for(collector).get_sample_value("raylens_scrape_collector_success", {"collector": "cost"}) == 1
