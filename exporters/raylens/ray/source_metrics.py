"""The ray collector's own health: whether Ray answered, and how each state source's reads fare.

Sample::

    raylens_ray_up 1.0
    raylens_ray_state_age_seconds 1.2
    raylens_ray_state_fetches_total{source="tasks"} 42.0
    raylens_ray_state_source_success{source="tasks"} 1.0
    raylens_ray_state_truncated_rows{source="tasks"} 0.0
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from raylens.ray.address import RayUnavailable
from raylens.ray.refresher import SourceHealth
from raylens.ray.snapshot import ClusterSnapshot


def state_families(
    snapshot: ClusterSnapshot | None, health: Mapping[str, SourceHealth], now: float
) -> Iterator[Metric]:
    """``raylens_ray_up``, the age of the answers served, and per-source read counts and timings."""
    nodes = health.get("nodes")
    reached = nodes is not None and nodes.last_attempt is not None and nodes.last_attempt.ok
    yield GaugeMetricFamily(
        "raylens_ray_up",
        "1 when the last read of Ray's node table answered, else 0 (Ray unreachable, or not yet read).",
        value=1.0 if reached else 0.0,
    )
    if snapshot is not None:
        yield GaugeMetricFamily(
            "raylens_ray_state_age_seconds",
            "Age of the newest Ray answer behind this scrape (grows while Ray is unreachable).",
            value=max(0.0, now - snapshot.taken_at),
        )
    families = {
        "fetches": CounterMetricFamily(
            "raylens_ray_state_fetches",
            "Reads of each Ray state source since the exporter started (in the background, never in a scrape).",
            labels=["source"],
        ),
        "errors": CounterMetricFamily(
            "raylens_ray_state_fetch_errors",
            "Reads of each source that failed (timeout, refused, bad or oversized answer).",
            labels=["source"],
        ),
        "success": GaugeMetricFamily(
            "raylens_ray_state_source_success",
            "1 when the source's last read succeeded, else 0.",
            labels=["source"],
        ),
        "duration": GaugeMetricFamily(
            "raylens_ray_state_source_duration_seconds", "Time the source's last read took.", labels=["source"]
        ),
        "age": GaugeMetricFamily(
            "raylens_ray_state_source_age_seconds",
            "Age of the source's answer being served (from when it was asked for).",
            labels=["source"],
        ),
        "interval": GaugeMetricFamily(
            "raylens_ray_state_source_interval_seconds",
            "Configured seconds between reads of the source (before jitter and backoff).",
            labels=["source"],
        ),
        "rows": GaugeMetricFamily(
            "raylens_ray_state_rows", "Rows in the source's answer being served.", labels=["source"]
        ),
        "truncated": GaugeMetricFamily(
            "raylens_ray_state_truncated_rows",
            "Rows Ray had but did not return (limit reached or data missing): counts below are low.",
            labels=["source"],
        ),
    }
    for name, source_health in sorted(health.items()):
        families["fetches"].add_metric([name], source_health.attempts)
        families["errors"].add_metric([name], source_health.errors)
        families["interval"].add_metric([name], source_health.interval_seconds)
        attempt = source_health.last_attempt
        if attempt is not None:
            families["success"].add_metric([name], 1.0 if attempt.ok else 0.0)
            families["duration"].add_metric([name], attempt.seconds)
    if snapshot is not None:
        for name, fetched in sorted(snapshot.fetched_at.items()):
            families["age"].add_metric([name], max(0.0, now - fetched))
        for name, status in sorted(snapshot.sources.items()):
            if name == "object_store" and name not in health:
                families["success"].add_metric([name], 1.0 if status.ok else 0.0)
            if status.total or status.returned:
                families["rows"].add_metric([name], status.returned)
                families["truncated"].add_metric([name], status.truncated)
    yield from families.values()


def raise_for_failed_sources(health: Mapping[str, SourceHealth]) -> Iterator[Metric]:
    """Fails the collector's health while a source's last read failed (its data may still be
    served, see ray.max_state_age_seconds)."""
    failed = {
        name: h.last_attempt.error
        for name, h in sorted(health.items())
        if h.last_attempt is not None and not h.last_attempt.ok
    }
    if failed:
        raise RayUnavailable("; ".join(f"{name}: {error}" for name, error in failed.items()))
    yield from ()
