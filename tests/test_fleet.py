"""The synthetic fleet (benchmarks/fleet.py) is honest data, and every panel reads something from it.

A small fleet (20 nodes, 2 hours at a 60 s scrape interval: lean enough for CI) is backfilled with
promtool into a real TSDB, its recording rules with ``promtool tsdb create-blocks-from rules``; then
every target of every dashboard panel, and every variable, must return data from Prometheus serving
it. Its series must have the live exporters' names and label names: a generated GPU node against a
live scrape of ``raylens exporter --collectors=node,gpu`` (fake NVML), the generated cluster-level
series against the real ``ray`` and ``cost`` collectors fed a synthetic Ray snapshot. Not timed: the
figures come from ``benchmarks/panels.py`` on a large fleet (docs/benchmarks.md).
"""

from __future__ import annotations

import contextlib
import random
import re
import sys
from collections import defaultdict
from dataclasses import replace
from pathlib import Path
from types import MappingProxyType

import pytest
import requests
import yaml
from prometheus_client.parser import text_string_to_metric_families

from services import REPO, running_exporter

sys.path.insert(0, str(REPO / "benchmarks"))

import fleet
import fleet_cluster
import fleet_model
import panels
from prometheus_tsdb import serving_prometheus

pytestmark = pytest.mark.slow

# Prometheus writes ALERTS itself while it evaluates alerting rules; promtool backfills recording
# rules only, so a backfilled TSDB has none.
NOT_BACKFILLED = {"overview / Firing alerts / A"}
TARGET_LABELS = {"instance", "job"}


@pytest.fixture(scope="module")
def backfilled(tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("fleet")
    report = fleet.generate(out, nodes=20, hours=2, interval=60, window_minutes=120, eval_interval="1m")
    with serving_prometheus(out / "data", out / "prometheus") as url:
        yield url, report


def _query_range(url: str, expr: str, start: float, end: float) -> list:
    params = {"query": expr, "start": start, "end": end, "step": 60}
    body = requests.get(f"{url}/api/v1/query_range", params=params, timeout=120).json()
    assert body["status"] == "success", f"{expr}: {body}"
    return body["data"]["result"]


def test_every_panel_and_variable_returns_data(backfilled) -> None:
    url, report = backfilled
    start, end = float(report["start"]), float(report["end"])
    range_seconds = end - start
    # Windows of two scrape intervals at least, so that rate() and increase() have two samples.
    builtins = {"__interval": "120s", "__rate_interval": "240s", "__range": f"{int(range_seconds / 2)}s"}
    empty = []
    for where, expr, instant, _default, _points in panels.panel_queries():
        text = panels.substitute(expr, builtins)
        if instant:
            body = requests.get(f"{url}/api/v1/query", params={"query": text, "time": end}, timeout=120).json()
            assert body["status"] == "success", f"{where}: {body}"
            result = body["data"]["result"]
        else:
            result = _query_range(url, text, start, end)
        if not result and where not in NOT_BACKFILLED:
            empty.append(f"{where}: {text}")
    for dashboard, name, expr in panels.variable_queries():
        if not _query_range(url, expr, start, end):
            empty.append(f"{dashboard} variable ${name}: {expr}")
    assert not empty, "no data from the backfilled fleet:\n" + "\n".join(empty)
    raw = report["raw"]
    assert raw["samples"] > 500_000 and report["tsdb_bytes"] > report["raw_tsdb_bytes"]  # rules were added


def _label_names(families: dict[str, list[set[str]]], ignored: set[str]) -> dict[str, set[frozenset[str]]]:
    return {name: {frozenset(labels - ignored) for labels in sets} for name, sets in families.items()}


def _generated(source) -> dict[str, list[set[str]]]:
    found: dict[str, list[set[str]]] = defaultdict(list)
    for name, series in source:
        found[name].append(set(re.findall(r'([A-Za-z_][A-Za-z0-9_]*)="', series.labels)))
    return found


def _scraped(text: str) -> dict[str, list[set[str]]]:
    found: dict[str, list[set[str]]] = defaultdict(list)
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[sample.name].append(set(sample.labels))
    return found


def _read_by_dashboards_and_rules() -> set[str]:
    """Every metric name a dashboard panel, variable or rule reads."""
    texts = [expr for _where, expr, _instant, _default, _points in panels.panel_queries()]
    texts += [expr for _dashboard, _name, expr in panels.variable_queries()]
    for path in [*REPO.glob("recording-rules/*.yml"), *REPO.glob("alerting-rules/*.yml")]:
        texts += [rule["expr"] for group in yaml.safe_load(path.read_text())["groups"] for rule in group["rules"]]
    return {name for text in texts for name in re.findall(r"(?<![:\w])(raylens_[a-zA-Z0-9_]+)", text)}


def _compare(
    generated: dict, live: dict, collector_prefixes: tuple[str, ...], ignored: set[str] = TARGET_LABELS
) -> list[str]:
    problems = []
    generated_names, live_names = _label_names(generated, ignored), _label_names(live, ignored)
    for name, label_sets in sorted(generated_names.items()):
        if name not in live_names:
            problems.append(f"{name}: generated, not exported")
        elif label_sets != live_names[name]:
            wanted = sorted(map(sorted, live_names[name]))
            problems.append(f"{name}: generated labels {sorted(map(sorted, label_sets))}, live {wanted}")
    for name in sorted(_read_by_dashboards_and_rules() & set(live_names) - set(generated_names)):
        if name.startswith(collector_prefixes):
            problems.append(f"{name}: read by a dashboard or rule and exported, but not generated")
    return problems


def test_generated_node_matches_a_live_scrape(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A generated GPU node (one with an XID) against live exporters: an H100 node serving and training,
    and an H100 right after an XID burst (the two fixtures together hold every GPU family)."""
    live: dict[str, list[set[str]]] = defaultdict(list)
    with contextlib.ExitStack() as stack:
        exporters = []
        # Named like the fleet's cluster: the exporter then labels every series with it.
        config = tmp_path / "raylens.yaml"
        config.write_text(yaml.safe_dump({"cluster": {"name": fleet.CLUSTER}}))
        for fixture in ("h100-sxm-80gb.json", "h100-sxm-80gb-xid-burst.json"):
            monkeypatch.setenv("RAYLENS_FAKE_NVML", str(REPO / "tests/fixtures/nvml" / fixture))
            args = ("--collectors=node,gpu", f"--config.file={config}")
            exporters.append(stack.enter_context(running_exporter(tmp_path, *args)))
        for exporter in exporters:
            for name, label_sets in _scraped(exporter.scrape()).items():
                live[name] += label_sets
    gpu_type = next(node_type for node_type in fleet_model.NODE_TYPES if node_type.gpus)
    node = fleet_model.Node(slot=3, incarnation=0, type=gpu_type, market="spot", start=0, end=1)
    # The fleet adds the cluster label to every series it collects (fleet.fleet_families).
    generated = _generated(
        (name, replace(series, labels=f'cluster="{fleet.CLUSTER}",{series.labels}'))
        for name, series in fleet_model.node_exporter_series(node, random.Random(1))
    )
    # Generated per GPU and per CPU like the live scrape: same families, same label names.
    problems = _compare(generated, live, ("raylens_node_", "raylens_gpu_"))
    assert not problems, "\n".join(problems)


def test_generated_per_node_cpu_series_agree_with_the_per_cpu_series() -> None:
    """The per-node counter agrees with the per-CPU series it sums, and the CPU count with the CPUs they
    name, as the node collector's do, so the recording rules give the same CPU count and utilisation over
    generated data as the expressions they replaced."""
    node_type = next(node_type for node_type in fleet_model.NODE_TYPES if node_type.cpus >= 48)
    node = fleet_model.Node(
        slot=7, incarnation=2, type=node_type, market="spot", start=fleet.END - 86400, end=fleet.END
    )
    generated = list(fleet_model.node_exporter_series(node, random.Random(3)))
    for _name, series in generated:
        series.labels = f'cluster="{fleet.CLUSTER}",{series.labels}'  # as fleet.fleet_families does
    (total,) = [series for name, series in generated if name == "raylens_node_cpu_not_busy_seconds_total"]
    per_cpu = [
        series
        for name, series in generated
        if name == "raylens_node_cpu_seconds_total" and re.search(r'mode="(idle|iowait|steal)"', series.labels)
    ]
    assert len(per_cpu) == 3 * node_type.cpus
    assert [id(part) for part in total.parts] == [id(series) for series in per_cpu]
    times = [node.start + 15.0 * step for step in range(0, 5760, 97)]
    summed = [
        sum(column)
        for column in zip(*(fleet_model.series_values(series, times, fleet._phase) for series in per_cpu), strict=True)
    ]
    assert list(fleet_model.series_values(total, times, fleet._phase)) == pytest.approx(summed, rel=1e-12)
    # The CPU count, like the collector's, is the number of CPUs the per-CPU series name.
    (cpus,) = [series for name, series in generated if name == "raylens_node_cpus"]
    cpu_labels = {
        re.search(r'cpu="(\d+)"', series.labels).group(1)
        for name, series in generated
        if name == "raylens_node_cpu_seconds_total"
    }
    assert cpus.shape == ("k", len(cpu_labels), 0) and cpus.labels == total.labels


def _synthetic_snapshot():
    """cost_scale's synthetic cluster (priced nodes, jobs with metadata, tasks, actors, Serve replicas)
    with object-store answers, as the refresher would hold it."""
    from cost_scale import synthetic_snapshot

    from raylens.ray.snapshot import ObjectStoreStats, SourceStatus

    snapshot = synthetic_snapshot(5, 50)
    store = ObjectStoreStats(2e9, 8e9, 1e9, 0.0, 100, 50, 0, 1e8, 10, 1.0, 5e7, 5, 0.5)
    nodes = tuple(replace(node, object_store=store, resources_used=node.resources_total) for node in snapshot.nodes)
    sources = {**snapshot.sources, "object_store": SourceStatus(ok=True), "version": SourceStatus(ok=True)}
    return replace(snapshot, nodes=nodes, sources=MappingProxyType(sources))


def test_generated_cluster_series_match_the_collectors(tmp_path: Path) -> None:
    """The cluster exporter's series against the real ``ray`` and ``cost`` collectors."""
    from prometheus_client import CollectorRegistry, generate_latest

    from raylens.collectors.base import ScrapeHealthCollector
    from raylens.collectors.cost import CostCollector
    from raylens.collectors.ray import RayCollector
    from raylens.config import CostConfig, RayConfig
    from raylens.cost.budgets import validate_budgets
    from raylens.cost.catalog import load_catalog
    from raylens.cost.engine import CostEngine
    from raylens.cost.pricing import NodePricer
    from raylens.cost.quotas import validate_quotas
    from raylens.cost.ray_source import observation_from_snapshot

    snapshot = _synthetic_snapshot()

    class Snapshots:
        def current(self):
            return snapshot

        def health(self):
            return {}

        def subscribe(self, _name, handle) -> None:
            handle(snapshot)

    catalog, config = load_catalog(), CostConfig()
    budgets = validate_budgets(
        {"budgets": [{"name": "org-monthly", "scope": "org", "amount_usd": 1e5}]}, "test", catalog.clouds()
    )
    quotas = validate_quotas(
        {"quotas": [{"name": "gpus", "scope": "user", "match": "*", "resource": "gpus", "limit": 8}]},
        "test",
        catalog.instance_types(),
    )
    # tmp_path outlives the test, so the collector's background state writes never race its removal.
    cost = CostCollector(config, CostEngine(config, NodePricer(config, catalog), budgets), quotas, tmp_path)
    cost.account(observation_from_snapshot(snapshot))
    registry = CollectorRegistry(auto_describe=False)
    ray = RayCollector(RayConfig(), source=Snapshots(), clock=lambda: snapshot.taken_at)  # type: ignore[arg-type]
    registry.register(ScrapeHealthCollector([cost, ray]))
    live = _scraped(generate_latest(registry).decode())
    small = fleet_model.build_fleet(5, 0.0, 7200.0)
    generated = _generated(fleet_cluster.cluster_series(small, random.Random(1)))
    # Lifecycle counters appear with their first event, which one snapshot does not have; events come
    # from the exporter's events recorder and recommendations from the recommend collector (which
    # reads Prometheus), not from these two collectors.
    not_compared = ("raylens_ray_node_removals_total", "raylens_ray_task_failures_total", "raylens_ray_events_total")
    for name in [*not_compared, "raylens_recommendation_savings_dollars_per_hour", "raylens_recommendation_info"]:
        generated.pop(name, None)
    # Built without the exporter's cluster wrapper, so `cluster` is left out like a target label.
    prefixes = ("raylens_ray_", "raylens_cost_", "raylens_budget_", "raylens_quota_")
    problems = _compare(generated, live, prefixes, ignored=TARGET_LABELS | {"cluster"})
    assert not problems, "\n".join(problems)
