"""A recommendation: what to change, on what, why (the evidence, as PromQL), and what it saves."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from raylens.cost.catalog import HOURS_PER_MONTH


@dataclass(frozen=True)
class Evidence:
    """One reading behind a recommendation: the instant query (narrowed to the target) and its value."""

    what: str
    query: str
    value: float

    def as_dict(self) -> dict[str, Any]:
        return {"what": self.what, "query": self.query, "value": self.value}


@dataclass(frozen=True)
class Recommendation:
    kind: str  # idle_gpu, rightsizing, spot, auto_termination, serve_overprovisioned
    target: str  # node id, cluster (exporter instance), application/deployment
    target_type: str  # node, cluster, deployment
    summary: str  # one sentence with the figures
    action: str  # what to do
    savings_dollars_per_hour: float
    evidence: tuple[Evidence, ...] = ()
    instance_type: str = ""  # of the target node, where there is one
    alternative: str = ""  # the cheaper instance type or market, where there is one
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def savings_dollars_per_month(self) -> float:
        """At the clouds' 730 hours a month, the unit of the catalog's monthly figures."""
        return self.savings_dollars_per_hour * HOURS_PER_MONTH

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "target": self.target,
            "target_type": self.target_type,
            "summary": self.summary,
            "action": self.action,
            "savings_dollars_per_hour": round(self.savings_dollars_per_hour, 6),
            "savings_dollars_per_month": round(self.savings_dollars_per_month, 6),
            "instance_type": self.instance_type,
            "alternative": self.alternative,
            "evidence": [item.as_dict() for item in self.evidence],
            "details": self.details,
        }
