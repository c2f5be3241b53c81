"""Scrape a registry the way the exporter's ``/metrics`` does (``raylens.web.exposition``), checking both
formats byte for byte against prometheus_client on the same collection.

One renderer per registry is kept, as the exporter keeps one, so a test that scrapes a registry again
goes through the warm cache.
"""

from __future__ import annotations

from collections.abc import Iterable
from weakref import WeakKeyDictionary

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics

from raylens.web.exposition import ExpositionRenderer

_RENDERERS: WeakKeyDictionary[CollectorRegistry, ExpositionRenderer] = WeakKeyDictionary()


class Frozen:
    """One collection, rendered as often as needed (collecting again would move durations and counters)."""

    def __init__(self, families: Iterable[Metric]) -> None:
        self.families = list(families)

    def collect(self) -> list[Metric]:
        return self.families


def scrape(registry: CollectorRegistry) -> str:
    """Text 0.0.4 as the exporter serves it, after checking it and OpenMetrics against prometheus_client."""
    frozen = Frozen(registry.collect())
    renderer = _RENDERERS.setdefault(registry, ExpositionRenderer())
    text = renderer.text(frozen)
    assert text == generate_latest(frozen)
    assert renderer.openmetrics(frozen) == generate_openmetrics(frozen)
    return text.decode()
