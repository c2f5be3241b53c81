"""The spend series of the cost collector, built from one accounting step: what each node, job,
attribution key and Serve deployment has cost (counters) and costs now (rates), and how nodes are priced.

Sample (labels shortened)::

    raylens_cost_node_dollars_total{cost_kind="compute",instance_type="g5.xlarge",market="spot",node_id="ab12"} 12.5
    raylens_cost_node_dollars_per_second{cost_kind="compute",instance_type="g5.xlarge",...} 0.000125
    raylens_cost_node_unpriced{node_id="cd34",reason="instance type unknown: ..."} 1.0
    raylens_cost_allocation_dollars_total{cost_kind="compute",project="vision",user="alice",...} 40.2
    raylens_cost_job_dollars_total{job_id="02000000",project="vision",user="alice",...} 3.2
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily, Metric

from raylens.config import CostConfig
from raylens.cost.engine import KIND_NAMES, CostEngine, Report

NODE_LABELS = ["node_id", "instance_type", "market"]
KEY_LABELS = ["user", "project", "team", "workload", "cost_kind"]
JOB_LABELS = ["job_id", "submission_id", "user", "project", "team"]
_LABEL_CHARACTERS = re.compile(r"[^a-zA-Z0-9_]")


def exported_label_name(key: str) -> str:
    """``label_<key>`` with characters Prometheus does not allow replaced by ``_``."""
    return "label_" + _LABEL_CHARACTERS.sub("_", key)


def node_label_names(config: CostConfig) -> list[str]:
    """Labels of the per-node spend series: ``NODE_LABELS`` plus one per ``cost.export_node_labels``."""
    return NODE_LABELS + [exported_label_name(key) for key in config.export_node_labels]


def exported_kinds(config: CostConfig) -> list[int]:
    """Cost kinds (indices into ``KIND_NAMES``) with series: compute always, storage and network
    only when something in the config prices them."""
    kinds = [0]
    if config.volumes or config.spill_usd_per_gib_month:
        kinds.append(1)
    if config.egress_usd_per_gib:
        kinds.append(2)
    return kinds


def spend_families(
    report: Report, engine: CostEngine, config: CostConfig, kinds: Sequence[int], node_labels: Sequence[str]
) -> Iterator[Metric]:
    """Every spend family after the accounting step that produced ``report`` (``engine.state`` is
    that step's state); ``kinds`` and ``node_labels`` from ``exported_kinds`` and ``node_label_names``."""
    state = engine.state
    retention = config.finished_retention_seconds
    now = report.time

    node_total = CounterMetricFamily(
        "raylens_cost_node_dollars",
        "US dollars this node has cost since it started, by cost kind: compute (instance price x time "
        "alive), storage (volumes, spill), network (egress).",
        labels=[*node_labels, "cost_kind"],
    )
    node_rate = GaugeMetricFamily(
        "raylens_cost_node_dollars_per_second",
        "What this node costs now, US dollars per second (x 3600 for the hourly price).",
        labels=[*node_labels, "cost_kind"],
    )
    for node_id, record in sorted(state.nodes.items()):
        if record.end is not None and now - record.end > retention:
            continue
        values = [node_id, *(record.labels or ["", ""]), *[""] * len(config.export_node_labels)]
        values = values[: len(node_labels)]
        rates = report.node_rates.get(node_id)
        for kind in kinds:
            node_total.add_metric([*values, KIND_NAMES[kind]], record.dollars[kind])
            if rates is not None:
                node_rate.add_metric([*values, KIND_NAMES[kind]], rates[kind])
    yield node_total
    yield node_rate

    resource_rate = GaugeMetricFamily(
        "raylens_cost_node_resource_dollars_per_second",
        "What all of a node's CPUs, all its GPUs or all its memory cost now (the node price split); "
        "summed over resource it is the node's compute rate.",
        labels=["node_id", "resource"],
    )
    # Few labels on purpose: per-node series dominate exposition time on large clusters, and where
    # each fact came from is what `raylens cost explain node` prints.
    info = InfoMetricFamily(
        "raylens_cost_node",
        "How each alive node is priced (pricing_source: catalog, override, spot_estimate, resource_rates, "
        "unpriced); `raylens cost explain node ID` says where each fact came from.",
        labels=["node_id", "instance_type", "market", "cloud", "region", "pricing_source"],
    )
    unpriced = GaugeMetricFamily(
        "raylens_cost_node_unpriced",
        "1 for each alive node raylens cannot price (its cost is missing, not zero); see reason.",
        labels=["node_id", "instance_type", "reason"],
    )
    unpriced_count = 0
    for node_id in sorted(report.alive):
        price = report.prices[node_id]
        for resource, rate in zip(("cpu", "gpu", "memory"), price.component_dollars_per_second(), strict=True):
            resource_rate.add_metric([node_id, resource], rate)
        info.add_metric(
            [],
            {
                "node_id": node_id,
                "instance_type": price.instance_type,
                "market": price.market,
                "cloud": price.cloud,
                "region": price.region,
                "pricing_source": price.pricing_source,
            },
        )
        if not price.priced:
            unpriced_count += 1
            unpriced.add_metric([node_id, price.instance_type, price.unpriced_reason], 1.0)
    yield resource_rate
    yield info
    yield unpriced
    yield GaugeMetricFamily(
        "raylens_cost_unpriced_nodes",
        "Alive nodes raylens cannot price; their cost is missing from every total. Alert when above 0.",
        value=unpriced_count,
    )

    allocation_total = CounterMetricFamily(
        "raylens_cost_allocation_dollars",
        "US dollars spent, by who held the resources (job metadata; __unallocated__ when missing) and "
        "cost kind; __idle__ is what nobody held. Summed over all series it is the cluster's total.",
        labels=KEY_LABELS,
    )
    for key, dollars in sorted(state.allocation.items()):
        allocation_total.add_metric(list(key), dollars)
    yield allocation_total
    allocation_rate = GaugeMetricFamily(
        "raylens_cost_allocation_dollars_per_second",
        "Current spend rate by attribution key and cost kind, US dollars per second (__idle__ included).",
        labels=KEY_LABELS,
    )
    for key, rate in sorted(report.key_rates.items()):
        allocation_rate.add_metric(list(key), rate)
    yield allocation_rate

    job_total = CounterMetricFamily(
        "raylens_cost_job_dollars",
        "US dollars this Ray job's tasks and actors have cost, all kinds.",
        labels=JOB_LABELS,
    )
    job_rate = GaugeMetricFamily(
        "raylens_cost_job_dollars_per_second",
        "What this Ray job costs now, US dollars per second.",
        labels=JOB_LABELS,
    )
    job_info = InfoMetricFamily(
        "raylens_cost_job",
        "A job's workload type and whether it came from job metadata, was inferred from its tasks and "
        "actors (Serve, Train, Data), or is the default (tasks).",
        labels=["job_id", "submission_id", "workload", "workload_source"],
    )
    for job_id, record in sorted(state.jobs.items()):
        values = [job_id, record.submission_id, record.user, record.project, record.team]
        job_total.add_metric(values, record.dollars)
        if job_id in report.job_rates:
            job_rate.add_metric(values, report.job_rates[job_id])
        job_info.add_metric(
            [],
            {
                "job_id": job_id,
                "submission_id": record.submission_id,
                "workload": record.workload,
                "workload_source": record.workload_source,
            },
        )
    yield job_total
    yield job_rate
    yield job_info

    serve_total = CounterMetricFamily(
        "raylens_cost_serve_deployment_dollars",
        "US dollars the replicas of this Ray Serve deployment have cost.",
        labels=["application", "deployment"],
    )
    for key, dollars in sorted(state.serve.items()):
        serve_total.add_metric(list(key), dollars)
    yield serve_total
    serve_rate = GaugeMetricFamily(
        "raylens_cost_serve_deployment_dollars_per_second",
        "What this Ray Serve deployment's replicas cost now, US dollars per second.",
        labels=["application", "deployment"],
    )
    for key, rate in sorted(report.serve_rates.items()):
        serve_rate.add_metric(list(key), rate)
    yield serve_rate

    ratios = engine.pricer.catalog.split_ratios
    split = GaugeMetricFamily(
        "raylens_cost_split_ratio_to_memory",
        "Price weight of one vCPU or one GPU relative to one GiB of memory, used to split a whole-"
        "instance price when the catalog gives no split.",
        labels=["resource"],
    )
    split.add_metric(["cpu"], ratios.cpu_to_memory_gib)
    split.add_metric(["gpu"], ratios.gpu_to_memory_gib)
    yield split
    yield GaugeMetricFamily(
        "raylens_cost_accounted_until_timestamp_seconds",
        "Spend is accounted up to this time (the last observation of the cluster), Unix seconds.",
        value=state.time or 0.0,
    )
