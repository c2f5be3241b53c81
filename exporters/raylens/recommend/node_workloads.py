"""Evidence the spot recommendation needs from the cost collector: what each node's jobs hold, by workload.

Only the cost engine knows which job holds what on which node and each job's workload type, so the
cost collector publishes it (a ``node_workloads`` section, one marked line in collectors/cost.py).
Sample::

    raylens_cost_node_workload_resources_held{node_id="ab12",resource="cpu",workload="data"} 6.0
    raylens_cost_node_workload_resources_held{node_id="ab12",resource="gpu",workload="train"} 1.0

Series exist only for what is held now (no zero series for every workload), so cardinality is at most
alive nodes x workload types x 2.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import GaugeMetricFamily, Metric

from raylens.cost.holdings import CPU_NOW, GPU_NOW, HELD_NOW
from raylens.cost.rates import Report


def node_workload_metrics(report: Report | None) -> Iterator[Metric]:
    if report is None:
        return  # the spend section failed this scrape and already counts and logs the fault
    held = GaugeMetricFamily(
        "raylens_cost_node_workload_resources_held",
        "CPUs and GPUs (Ray's logical units) the jobs of each workload type hold on each node now; the "
        "evidence of the spot recommendation.",
        labels=["node_id", "workload", "resource"],
    )
    totals: dict[tuple[str, str], list[float]] = {}
    for node_id, holdings in report.held_now.items():
        for key, entry in holdings.items():
            if not entry[HELD_NOW]:
                continue
            workload = report.labels[key[0]][3]
            amounts = totals.setdefault((node_id, workload), [0.0, 0.0])
            amounts[0] += entry[CPU_NOW]
            amounts[1] += entry[GPU_NOW]
    for (node_id, workload), (cpu, gpu) in sorted(totals.items()):
        if cpu:
            held.add_metric([node_id, workload, "cpu"], cpu)
        if gpu:
            held.add_metric([node_id, workload, "gpu"], gpu)
    yield held
