"""Our exporter → a real Prometheus with the shipped config and rules → PromQL answers."""

from __future__ import annotations

import pytest
import yaml

from services import REPO, running_exporter, running_prometheus


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory):
    tmp = tmp_path_factory.mktemp("e2e")
    with running_exporter(tmp) as exporter, running_prometheus(tmp, [exporter.address]) as prometheus:
        yield exporter, prometheus


def test_prometheus_scrapes_the_exporter(stack) -> None:
    exporter, prometheus = stack
    up = prometheus.wait_for('up{job="raylens"} == 1')
    assert up[0]["metric"]["instance"] == exporter.address
    health = prometheus.wait_for('raylens_scrape_collector_success{collector="node"}')
    assert health[0]["value"][1] == "1"


def test_node_series_arrive_with_their_labels(stack) -> None:
    _, prometheus = stack
    cpus = prometheus.wait_for('raylens_node_cpu_seconds_total{mode="idle"}')
    assert {series["metric"]["cpu"] for series in cpus} >= {"0"}
    modes = prometheus.query("count by (mode) (raylens_node_cpu_seconds_total)")
    assert {series["metric"]["mode"] for series in modes} >= {"user", "system", "idle", "iowait"}
    root = prometheus.wait_for('raylens_node_filesystem_size_bytes{mountpoint="/"}')
    assert float(root[0]["value"][1]) > 0 and root[0]["metric"]["fstype"]
    assert prometheus.query('raylens_node_filesystem_size_bytes{mountpoint=~"/proc|/sys"}') == []


def test_recording_rules_are_loaded_and_evaluate(stack) -> None:
    _, prometheus = stack
    memory = prometheus.wait_for("instance:raylens_node_memory_utilisation:ratio")
    direct = prometheus.query("1 - raylens_node_memory_available_bytes / raylens_node_memory_total_bytes")
    assert 0 < float(memory[0]["value"][1]) < 1
    assert abs(float(memory[0]["value"][1]) - float(direct[0]["value"][1])) < 0.05
    # rate() needs two scrapes; with a 1 s interval this arrives within seconds.
    cpu = prometheus.wait_for("instance:raylens_node_cpu_utilisation:rate5m", timeout=30)
    assert 0 <= float(cpu[0]["value"][1]) <= 1
    cpus = prometheus.wait_for("instance:raylens_node_num_cpu:sum")
    assert int(float(cpus[0]["value"][1])) == len(prometheus.query('raylens_node_cpu_seconds_total{mode="idle"}'))
    # The rule reads the per-node gauge; the count it replaced gives the same labels (or the subtraction
    # matches nothing) and value.
    counted = 'count without (cpu, mode) (raylens_node_cpu_seconds_total{mode="idle"})'
    (difference,) = prometheus.query(f"instance:raylens_node_num_cpu:sum - {counted}")
    assert [difference["metric"]] == [series["metric"] for series in prometheus.query(counted)]
    assert float(difference["value"][1]) == 0


def test_cpu_utilisation_rule_equals_the_per_cpu_expression_it_replaced(stack) -> None:
    """The shipped rule's expression, over the per-node counter, against the per-CPU expression on the
    same scrapes in one query: same labels (or the subtraction matches nothing), same value."""
    _, prometheus = stack
    (rule,) = [
        rule
        for group in yaml.safe_load((REPO / "recording-rules" / "node.yml").read_text())["groups"]
        for rule in group["rules"]
        if rule.get("record") == "instance:raylens_node_cpu_utilisation:rate5m"
    ]
    not_busy = 'sum without (mode) (rate(raylens_node_cpu_seconds_total{mode=~"idle|iowait|steal"}[5m]))'
    per_cpu = f"1 - avg without (cpu) ({not_busy})"
    prometheus.wait_for("instance:raylens_node_cpu_utilisation:rate5m", timeout=30)
    (difference,) = prometheus.wait_for(f"({rule['expr']}) - ({per_cpu})")
    assert [difference["metric"]] == [series["metric"] for series in prometheus.query(per_cpu)]
    assert abs(float(difference["value"][1])) < 1e-6  # float rounding of counters summed since boot
