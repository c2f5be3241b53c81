"""Collectors, one per concern, chosen by name with ``--collectors`` or ``exporter.collectors``."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from raylens.collectors.base import Collector, ScrapeHealthCollector
from raylens.collectors.cost import build_cost_collector
from raylens.collectors.gpu import build_gpu_collector
from raylens.collectors.node import NodeCollector
from raylens.collectors.ray import RayCollector
from raylens.config import RaylensConfig
from raylens.ray.event_log import EventRecorder
from raylens.ray.state import shared_refresher

COLLECTOR_FACTORIES: Mapping[str, Callable[[RaylensConfig], Collector]] = {
    "node": lambda config: NodeCollector(config.node),
    # Shares the background reader of the cluster with the cost collector: one set of Ray calls.
    "ray": lambda config: RayCollector(
        config.ray,
        source=shared_refresher(config.ray),
        events=EventRecorder(config.events) if config.events.enabled else None,
    ),
    "gpu": build_gpu_collector,
    "cost": build_cost_collector,
    # Reads Prometheus (the `prometheus` section), not Ray: savings recommendations (issue #11).
    "recommend": lambda config: _recommend(config),
}


def _recommend(config: RaylensConfig) -> Collector:
    from raylens.recommend.collector import build_recommend_collector

    return build_recommend_collector(config)


def build_collectors(config: RaylensConfig) -> list[Collector]:
    return [COLLECTOR_FACTORIES[name](config) for name in config.exporter.collectors]


__all__ = ["COLLECTOR_FACTORIES", "Collector", "ScrapeHealthCollector", "build_collectors"]
