"""Run the recommendation kinds against Prometheus and keep the largest savings per kind.

Every kind reads its evidence as PromQL at one instant and prices it with the catalog the cost
collector uses (the shipped catalog plus ``cost.pricing_files``). A kind whose queries fail is
reported in ``Outcome.errors`` and the others still run.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from raylens.config import RaylensConfig
from raylens.cost.catalog import PriceCatalog, load_catalog
from raylens.prometheus_api import PrometheusApi, PrometheusError
from raylens.recommend.auto_termination import recommend_auto_termination
from raylens.recommend.idle_gpus import recommend_idle_gpus
from raylens.recommend.model import Recommendation
from raylens.recommend.nodes import NodeFacts, node_facts
from raylens.recommend.readings import Readings
from raylens.recommend.rightsizing import recommend_rightsizing
from raylens.recommend.serve import recommend_serve
from raylens.recommend.spot import recommend_spot

log = logging.getLogger("raylens.recommend")


@dataclass
class Outcome:
    at: float
    # Per kind, largest savings first, at most recommendations.top_per_kind.
    recommendations: dict[str, list[Recommendation]] = field(default_factory=dict)
    found: dict[str, int] = field(default_factory=dict)  # before the top-N cut and the minimum
    errors: dict[str, str] = field(default_factory=dict)
    queries: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def all(self) -> list[Recommendation]:
        return sorted(
            (item for items in self.recommendations.values() for item in items),
            key=lambda item: -item.savings_dollars_per_hour,
        )


def run_recommendations(
    api: PrometheusApi,
    config: RaylensConfig,
    at: float | None = None,
    catalog: PriceCatalog | None = None,
    clock: Callable[[], float] = time.time,
) -> Outcome:
    started = time.perf_counter()
    at = clock() if at is None else at
    settings = config.recommendations
    catalog = catalog or load_catalog(config.cost.pricing_files)
    readings = Readings(api, at)
    outcome = Outcome(at)
    nodes: dict[str, NodeFacts] | None = None

    def node_list() -> dict[str, NodeFacts]:
        nonlocal nodes
        if nodes is None:
            nodes = node_facts(readings)
        return nodes

    kinds: dict[str, Callable[[], list[Recommendation]]] = {
        "idle_gpu": lambda: recommend_idle_gpus(readings, settings, node_list()),
        "rightsizing": lambda: recommend_rightsizing(readings, settings, node_list(), catalog),
        "spot": lambda: recommend_spot(readings, settings, config.cost, node_list(), catalog),
        "auto_termination": lambda: recommend_auto_termination(readings, settings),
        "serve_overprovisioned": lambda: recommend_serve(readings, settings),
    }
    minimum = settings.min_savings_dollars_per_month
    for kind in settings.kinds:
        try:
            found = kinds[kind]()
        except PrometheusError as error:
            outcome.errors[kind] = str(error)
            log.warning("recommendation kind failed", extra={"kind": kind, "error": str(error)})
            continue
        outcome.found[kind] = len(found)
        kept = [item for item in found if item.savings_dollars_per_month >= minimum]
        kept.sort(key=lambda item: (-item.savings_dollars_per_hour, item.target))
        outcome.recommendations[kind] = kept[: settings.top_per_kind]
    outcome.queries = readings.ran
    outcome.seconds = time.perf_counter() - started
    return outcome
