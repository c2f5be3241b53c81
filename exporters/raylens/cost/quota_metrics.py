"""The quota series of the cost collector: each quota's usage by scope, its limit while active, and
whether it is active now. Sample::

    raylens_quota_usage{instance_type="",match="alice",quota="gpus-per-user",resource="gpus",scope="user"} 4.0
"""

from __future__ import annotations

from collections.abc import Iterator
from zoneinfo import ZoneInfo

from prometheus_client.core import GaugeMetricFamily, Metric

from raylens.cost.quotas import Quotas, evaluate_quotas
from raylens.cost.rates import Report

QUOTA_LABELS = ["quota", "scope", "match", "resource", "instance_type"]


def quota_families(quotas: Quotas, report: Report, zone: ZoneInfo) -> Iterator[Metric]:
    """Quota readings as of ``report.time``, from what the accounting step found held."""
    limit = GaugeMetricFamily(
        "raylens_quota_limit",
        "The quota's limit, published only while the quota is active (inside its time windows).",
        labels=QUOTA_LABELS,
    )
    usage = GaugeMetricFamily(
        "raylens_quota_usage",
        "What the quota's scope holds now: instances, GPUs or CPUs (Ray's logical resources).",
        labels=QUOTA_LABELS,
    )
    active = GaugeMetricFamily(
        "raylens_quota_active", "1 while the quota is inside one of its time windows, else 0.", labels=["quota"]
    )
    listed = quotas.quotas
    holdings = report.holdings(with_nodes=any(q.resource == "instances" for q in listed)) if listed else []
    readings = evaluate_quotas(quotas, report.time, zone, report.capacities, holdings)
    seen_active: dict[str, bool] = {}
    for reading in readings:
        quota = reading.quota
        labels = [quota.name, quota.scope, reading.match, quota.resource, quota.instance_type or ""]
        usage.add_metric(labels, reading.usage)
        if reading.active:
            limit.add_metric(labels, quota.limit)
        seen_active[quota.name] = reading.active
    for quota in quotas.quotas:
        active.add_metric([quota.name], 1.0 if seen_active.get(quota.name, quota.active(report.time, zone)) else 0.0)
    yield from (limit, usage, active)
