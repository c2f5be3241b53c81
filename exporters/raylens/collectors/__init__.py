"""Collectors, one per concern, chosen by name with ``--collectors`` or ``exporter.collectors``."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from raylens.collectors.base import Collector, ScrapeHealthCollector
from raylens.collectors.node import NodeCollector
from raylens.config import RaylensConfig

COLLECTOR_FACTORIES: Mapping[str, Callable[[RaylensConfig], Collector]] = {
    "node": lambda config: NodeCollector(config.node),
}


def build_collectors(config: RaylensConfig) -> list[Collector]:
    return [COLLECTOR_FACTORIES[name](config) for name in config.exporter.collectors]


__all__ = ["COLLECTOR_FACTORIES", "Collector", "ScrapeHealthCollector", "build_collectors"]
