"""What the node-based kinds (idle GPUs, right-sizing, spot) share: each alive node's pricing facts.

From the cost exporter: ``raylens_cost_node_info`` (instance type, market, cloud, region),
``raylens_cost_node_dollars_per_second`` (what it costs now); from the ray collector:
``raylens_ray_node_start_time_seconds`` (its age) and ``raylens_ray_node_info`` (head or worker).
"""

from __future__ import annotations

from dataclasses import dataclass

from raylens.recommend.readings import Readings

NODE_INFO = "raylens_cost_node_info{{m}}"
NODE_RATE = 'sum by (node_id) (raylens_cost_node_dollars_per_second{cost_kind="compute"{m}})'
NODE_START = "max by (node_id) (raylens_ray_node_start_time_seconds{{m}})"
HEADS = 'max by (node_id) (raylens_ray_node_info{is_head="true"{m}})'


@dataclass(frozen=True)
class NodeFacts:
    node_id: str
    instance_type: str
    market: str
    cloud: str
    region: str
    dollars_per_hour: float
    started: float | None
    is_head: bool

    def age(self, now: float) -> float:
        return now - self.started if self.started is not None else 0.0

    @property
    def described(self) -> str:
        return f"{self.instance_type or 'unknown type'}, {self.market.replace('_', '-') or 'unknown market'}"


def node_facts(readings: Readings) -> dict[str, NodeFacts]:
    info = readings.labelled(NODE_INFO, "node_id")
    rates = readings.by(NODE_RATE, "node_id")
    starts = readings.by(NODE_START, "node_id")
    heads = readings.by(HEADS, "node_id")
    facts = {}
    for node_id, labels in info.items():
        if not node_id or labels.get("pricing_source") == "unpriced":
            continue
        facts[node_id] = NodeFacts(
            node_id,
            labels.get("instance_type", ""),
            labels.get("market", ""),
            labels.get("cloud", ""),
            labels.get("region", ""),
            rates.get((node_id,), 0.0) * 3600,
            starts.get((node_id,)),
            (node_id,) in heads,
        )
    return facts
