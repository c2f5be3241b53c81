"""Docs generated from code are fresh, and every exported metric is documented."""

from __future__ import annotations

import re
from pathlib import Path

from prometheus_client import CollectorRegistry

from raylens.collectors.base import ScrapeHealthCollector
from raylens.collectors.node import NodeCollector
from raylens.config import NodeConfig
from raylens.exporter import BuildInfoCollector
from raylens.reference import CONFIG_REFERENCE_PATH, config_reference_markdown

REPO = Path(__file__).resolve().parents[1]


def test_config_reference_is_fresh() -> None:
    committed = (REPO / CONFIG_REFERENCE_PATH).read_text()
    assert committed == config_reference_markdown(), "stale: run `raylens docs build` and commit the result"


def documented_metric_names() -> set[str]:
    text = (REPO / "docs" / "metrics.md").read_text()
    return set(re.findall(r"`(raylens_[a-z0-9_]+)`", text))


def test_every_node_and_health_metric_is_documented() -> None:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ScrapeHealthCollector([NodeCollector(NodeConfig())]))
    registry.register(BuildInfoCollector())
    emitted = {sample.name for family in registry.collect() for sample in family.samples}
    emitted |= {family.name for family in registry.collect() if not family.samples}
    assert emitted, "the collectors emitted nothing"
    assert emitted - documented_metric_names() == set()


def test_every_gpu_metric_is_documented() -> None:
    from raylens.collectors.gpu import METRICS, GpuCollector
    from raylens.config import GpuConfig
    from raylens.gpu.attribution import ProcAttributor
    from raylens.gpu.fake_nvml import load_fake_nvml

    emitted: set[str] = set()
    for fixture in sorted((REPO / "tests" / "fixtures" / "nvml").glob("*.json")):
        nvml = load_fake_nvml(fixture)
        collector = GpuCollector(GpuConfig(), nvml=nvml, attribute=ProcAttributor(nvml.process_reader()))
        registry = CollectorRegistry(auto_describe=False)
        registry.register(ScrapeHealthCollector([collector]))
        emitted |= {sample.name for family in registry.collect() for sample in family.samples}
    suffix = {"counter": "_total", "info": "_info", "gauge": ""}
    emitted |= {spec.name + suffix[spec.kind] for spec in METRICS.values()}  # incl. any no fixture reaches
    assert emitted - documented_metric_names() == set()


def test_every_ray_metric_is_documented() -> None:
    from dataclasses import replace

    from test_ray_collector import NOW, StubSource, actor, collector_for, job, node, sample_snapshot, task

    source = StubSource(sample_snapshot())
    collector = collector_for(source)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ScrapeHealthCollector([collector]))
    list(registry.collect())  # the baseline; the next snapshot brings one of every counted event
    first = sample_snapshot()
    source.push(
        replace(
            first,
            taken_at=NOW + 15,
            nodes=(*first.nodes[:1], replace(first.nodes[1], state="DEAD", end_time=NOW), node("n4", "10.0.0.4")),
            jobs=(*first.jobs, job("raysubmit_c", "06000000", status="SUCCEEDED")),
            tasks=(*first.tasks, task("t9", state="FAILED", error_type="OUT_OF_MEMORY")),
            actors=(*first.actors, actor("a9", state="DEAD", death_reason="NODE_DIED")),
        )
    )
    emitted = {sample.name for family in registry.collect() for sample in family.samples}
    ray_names = {name for name in emitted if name.startswith("raylens_ray_")}
    assert {"raylens_ray_jobs_finished_total", "raylens_ray_node_removals_total"} <= ray_names
    assert ray_names - documented_metric_names() == set()


def test_every_cost_metric_is_documented(tmp_path: Path) -> None:
    from test_cost_collector import CLUSTER, Clock, collector_for, config_file

    clock = Clock(CLUSTER["scrapes"][0])
    path = config_file(tmp_path, volumes=[{"name": "root", "size_gib": 100, "usd_per_gib_month": 0.08}])
    registry = CollectorRegistry(auto_describe=False)
    collector = collector_for(path, clock)
    registry.register(ScrapeHealthCollector([collector]))
    emitted: set[str] = set()
    for time in CLUSTER["scrapes"]:
        clock.time = time
        collector.account(clock.observe())
        emitted |= {sample.name for family in registry.collect() for sample in family.samples}
    cost_names = {name for name in emitted if name.startswith(("raylens_cost_", "raylens_budget_", "raylens_quota_"))}
    assert {"raylens_cost_node_dollars_total", "raylens_budget_spend_dollars", "raylens_quota_limit"} <= cost_names
    assert cost_names - documented_metric_names() == set()


def test_every_remediation_metric_is_documented() -> None:
    from raylens.remediation.metrics import RemediationMetrics

    metrics = RemediationMetrics(dry_run=True, count_open=lambda: {"critical": 1})
    metrics.actions.labels("scale-down", "dry_run").inc()
    metrics.duration.labels("scale-down").observe(1.0)
    metrics.escalations.labels("secondary-oncall").inc()
    # Counters as exposed (with _total); histograms by their family name.
    emitted = {family.name + ("_total" if family.type == "counter" else "") for family in metrics.registry.collect()}
    assert {"raylens_remediation_actions_total", "raylens_incidents_open"} <= emitted
    assert emitted - documented_metric_names() == set()
