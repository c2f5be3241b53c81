"""Right-sizing: nodes whose jobs never needed the whole machine, and the cheapest catalog type that fits.

Demand is what the scheduler handed out on the node: the ``rightsizing_quantile_percent`` quantile of
``raylens_ray_node_resource_used`` (CPU, GPU, memory) over ``rightsizing_window``, as a share of the
node's Ray capacity, scaled to the instance's shape in the catalog (vCPUs, GPUs, GiB) and raised by
``rightsizing_headroom_percent`` (GPUs are rounded up to whole cards instead). A candidate is any
catalog row of the same cloud priced in the node's region, for the node's market (spot nodes are
compared at spot prices), with at least that shape and, if GPUs are needed, the same GPU model. The
saving is the node's current price minus the cheapest candidate's. Nodes younger than the window,
nodes nothing held, unpriced nodes and types missing from the catalog are left out.

Per-job right-sizing needs per-job usage, which Ray's state API does not report; idle GPUs held by
jobs are the ``idle_gpu`` kind.
"""

from __future__ import annotations

import math

from raylens.config import RecommendationsConfig
from raylens.cost.catalog import CatalogEntry, PriceCatalog
from raylens.recommend.model import Evidence, Recommendation
from raylens.recommend.nodes import NodeFacts
from raylens.recommend.readings import Readings, duration_seconds, narrowed

RESOURCES = ("CPU", "GPU", "memory")


def queries(config: RecommendationsConfig) -> dict[str, str]:
    quantile = config.rightsizing_quantile_percent / 100
    window = config.rightsizing_window
    return {
        "demand": f"max by (node_id, resource) (quantile_over_time({quantile:g}, "
        f'raylens_ray_node_resource_used{{resource=~"CPU|GPU|memory"{{m}}}}[{window}]))',
        "capacity": 'max by (node_id, resource) (raylens_ray_node_resource_capacity{resource=~"CPU|GPU|memory"{m}})',
    }


def _amount(resource: str, value: float) -> str:
    return f"{value / 2**30:.1f} GiB" if resource == "memory" else f"{value:g}"


def price(entry: CatalogEntry, market: str) -> float | None:
    return entry.spot_usd_per_hour if market == "spot" else entry.usd_per_hour


def _region_rows(catalog: PriceCatalog, cloud: str, region: str) -> list[CatalogEntry]:
    rows = []
    for entries in catalog.entries.values():
        chosen = next((row for row in entries if row.region == region), None)
        chosen = chosen or next((row for row in entries if row.region is None), None)
        if chosen is not None and chosen.cloud == cloud:
            rows.append(chosen)
    return rows


def cheapest_fit(
    catalog: PriceCatalog, current: CatalogEntry, region: str, market: str, vcpus: float, gpus: float, memory_gib: float
) -> tuple[CatalogEntry, float] | None:
    """The cheapest catalog type with at least this shape, in the region and market; ties: fewer vCPUs."""
    best: tuple[CatalogEntry, float] | None = None
    for row in _region_rows(catalog, current.cloud, region):
        cost = price(row, market)
        if cost is None or row.vcpus < vcpus or row.gpus < gpus or row.memory_gib < memory_gib:
            continue
        if gpus > 0 and row.gpu_model != current.gpu_model:
            continue
        if best is None or (cost, row.vcpus) < (best[1], best[0].vcpus):
            best = (row, cost)
    return best


def recommend_rightsizing(
    readings: Readings,
    config: RecommendationsConfig,
    nodes: dict[str, NodeFacts],
    catalog: PriceCatalog,
) -> list[Recommendation]:
    templates = queries(config)
    demand = readings.by(templates["demand"], "node_id", "resource")
    capacity = readings.by(templates["capacity"], "node_id", "resource")
    window_seconds = duration_seconds(config.rightsizing_window)
    headroom = 1 + config.rightsizing_headroom_percent / 100
    found = []
    for node_id, node in nodes.items():
        if node.age(readings.at) < window_seconds or not node.instance_type:
            continue
        looked_up = catalog.lookup(node.instance_type, node.region or None)
        if looked_up is None:
            continue
        current = looked_up[0]
        shares = {}
        for resource in RESOURCES:
            offered = capacity.get((node_id, resource), 0.0)
            shares[resource] = demand.get((node_id, resource), 0.0) / offered if offered > 0 else 0.0
        if not any(shares.values()):
            continue  # nothing held: idle, a matter for auto-termination, not a smaller machine
        vcpus = shares["CPU"] * current.vcpus * headroom
        gpus = math.ceil(round(shares["GPU"] * current.gpus, 6))
        memory = shares["memory"] * current.memory_gib * headroom
        region = node.region or (current.region or "")
        fit = cheapest_fit(catalog, current, region, node.market, vcpus, gpus, memory)
        if fit is None or fit[0].instance_type == current.instance_type:
            continue
        alternative, alternative_price = fit
        savings = node.dollars_per_hour - alternative_price
        if savings <= 0:
            continue
        market = "spot" if node.market == "spot" else "on-demand"
        quantile = f"{config.rightsizing_quantile_percent:g}th percentile"
        evidence = [
            Evidence(
                f"{resource}: {quantile} held over {config.rightsizing_window} (capacity "
                + _amount(resource, capacity.get((node_id, resource), 0.0))
                + ")",
                narrowed(templates["demand"], [("node_id", node_id), ("resource", resource)]),
                demand.get((node_id, resource), 0.0),
            )
            for resource in RESOURCES
        ]
        evidence.append(
            Evidence(
                "node price now, US dollars per hour",
                f'sum(raylens_cost_node_dollars_per_second{{cost_kind="compute", node_id="{node_id}"}}) * 3600',
                node.dollars_per_hour,
            )
        )
        found.append(
            Recommendation(
                kind="rightsizing",
                target=node_id,
                target_type="node",
                summary=f"Node {node_id} ({node.described}, {current.vcpus:g} vCPU, {current.gpus:g} GPU, "
                f"{current.memory_gib:g} GiB) needed at most {vcpus:.1f} vCPU, {gpus} GPU and {memory:.1f} GiB with "
                f"{config.rightsizing_headroom_percent:g} % headroom over {config.rightsizing_window}: "
                f"{alternative.instance_type} ({alternative.vcpus:g} vCPU, {alternative.gpus:g} GPU, "
                f"{alternative.memory_gib:g} GiB) fits at ${alternative_price:.4g}/h {market} instead of "
                f"${node.dollars_per_hour:.4g}/h.",
                action=f"Use {alternative.instance_type} for this node type (autoscaler node config or KubeRay worker "
                "group), or pack more work onto fewer nodes.",
                savings_dollars_per_hour=savings,
                evidence=tuple(evidence),
                instance_type=node.instance_type,
                alternative=alternative.instance_type,
                details={
                    "needed": {"vcpus": round(vcpus, 3), "gpus": gpus, "memory_gib": round(memory, 3)},
                    "alternative_dollars_per_hour": alternative_price,
                    "alternative_price_source": alternative.spot_source
                    if node.market == "spot"
                    else alternative.source,
                    "current_dollars_per_hour": node.dollars_per_hour,
                },
            )
        )
    return found
