"""Spot: on-demand worker nodes that ran only interruption-tolerant work, and the catalog's spot price.

The cost collector publishes what each node's jobs hold by workload type
(``raylens_cost_node_workload_resources_held``). A node qualifies when, over ``spot_window``, workloads
in ``recommendations.spot_tolerant_workloads`` held something on it and nothing else ever did, it is
on-demand, not the head (losing the head loses the cluster) and at least as old as the window. The
saving is its current price minus the spot price of its type in its region from the catalog (your
pricing files included); where the row has no spot price, ``cost.spot_discount`` estimates one, else
no recommendation is made.
"""

from __future__ import annotations

from raylens.config import CostConfig, RecommendationsConfig
from raylens.cost.catalog import PriceCatalog
from raylens.recommend.model import Evidence, Recommendation
from raylens.recommend.nodes import NodeFacts
from raylens.recommend.readings import Readings, duration_seconds, narrowed

HELD = "raylens_cost_node_workload_resources_held"


def _regex(values: tuple[str, ...]) -> str:
    return "|".join(value.replace(".", "\\\\.") for value in values)


def queries(config: RecommendationsConfig) -> dict[str, str]:
    tolerant = _regex(config.spot_tolerant_workloads)
    window = config.spot_window
    return {
        "tolerant": f'max by (node_id) (max_over_time({HELD}{{workload=~"{tolerant}"{{m}}}}[{window}]))',
        "other": f'max by (node_id) (max_over_time({HELD}{{workload!~"{tolerant}"{{m}}}}[{window}]))',
    }


def spot_price(catalog: PriceCatalog, node: NodeFacts, cost: CostConfig) -> tuple[float, str] | None:
    looked_up = catalog.lookup(node.instance_type, node.region or None)
    if looked_up is None:
        return None
    entry = looked_up[0]
    if entry.spot_usd_per_hour is not None:
        return entry.spot_usd_per_hour, entry.spot_source or "catalog"
    if cost.spot_discount is not None:
        return entry.usd_per_hour * (
            1 - cost.spot_discount
        ), f"estimate: on-demand less cost.spot_discount {cost.spot_discount:g}"
    return None


def recommend_spot(
    readings: Readings,
    config: RecommendationsConfig,
    cost: CostConfig,
    nodes: dict[str, NodeFacts],
    catalog: PriceCatalog,
) -> list[Recommendation]:
    templates = queries(config)
    tolerant = readings.by(templates["tolerant"], "node_id")
    other = readings.by(templates["other"], "node_id")
    window_seconds = duration_seconds(config.spot_window)
    found = []
    for node_id, node in nodes.items():
        if node.market != "on_demand" or node.is_head or node.age(readings.at) < window_seconds:
            continue
        if tolerant.get((node_id,), 0.0) <= 0 or other.get((node_id,), 0.0) > 0:
            continue
        priced = spot_price(catalog, node, cost)
        if priced is None:
            continue
        spot, source = priced
        savings = node.dollars_per_hour - spot
        if savings <= 0:
            continue
        workloads = ", ".join(config.spot_tolerant_workloads)
        evidence = (
            Evidence(
                f"most resources held by tolerant workloads ({workloads}) over {config.spot_window}",
                narrowed(templates["tolerant"], [("node_id", node_id)]),
                tolerant[(node_id,)],
            ),
            Evidence(
                f"most resources held by any other workload over {config.spot_window}",
                narrowed(templates["other"], [("node_id", node_id)]),
                other.get((node_id,), 0.0),
            ),
            Evidence(
                "node price now, US dollars per hour",
                f'sum(raylens_cost_node_dollars_per_second{{cost_kind="compute", node_id="{node_id}"}}) * 3600',
                node.dollars_per_hour,
            ),
        )
        found.append(
            Recommendation(
                kind="spot",
                target=node_id,
                target_type="node",
                summary=f"On-demand node {node_id} ({node.instance_type}) ran only {workloads} work for "
                f"{config.spot_window}; as spot it would cost ${spot:.4g}/h instead of ${node.dollars_per_hour:.4g}/h.",
                action="Run this node type on spot capacity (a spot worker group, or `ray.io/market-type: spot` node "
                "labels), keeping Train checkpoints and task retries on; keep the head and Serve on on-demand.",
                savings_dollars_per_hour=savings,
                evidence=evidence,
                instance_type=node.instance_type,
                alternative=f"{node.instance_type} spot",
                details={"spot_dollars_per_hour": spot, "spot_price_source": source},
            )
        )
    return found
