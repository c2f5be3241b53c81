"""``budgets.yaml``: spend limits per scope and calendar period, with alert thresholds.

Sample::

    budgets:
      - name: org-monthly
        scope: org                 # org | cloud | project | team | user
        amount_usd: 50000
        period: month              # day | week | month, in cost.timezone
      - name: ml-research
        scope: project
        match: ml-research         # the project name (job metadata `project`)
        amount_usd: 8000
        thresholds_percent: [50, 80, 100]   # the default
      - name: prod-gpu
        scope: org
        clusters: [prod-us-east]   # only the exporter of this cluster publishes it; default: every cluster
        amount_usd: 20000

The exporter publishes each budget's amount, its period's start and end timestamps, its thresholds and
its **period-to-date spend**; alerting rules only compare them. Spend is the spend of the exporter's own
cluster (its ``cluster`` label): one budgets.yaml can serve every cluster, each budget limited to some
with ``clusters``.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from raylens.config import ConfigError, ConfigProblem, problems_from_validation, read_yaml_mapping
from raylens.config.limits import MAX_BUDGETS, at_most

BudgetScope = Literal["org", "cloud", "project", "team", "user"]
DEFAULT_THRESHOLDS_PERCENT = (50.0, 80.0, 100.0)


class Budget(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1)
    scope: BudgetScope
    match: str | None = None
    amount_usd: float = Field(gt=0, allow_inf_nan=False)
    period: Literal["day", "week", "month"] = "month"
    thresholds_percent: tuple[float, ...] = Field(DEFAULT_THRESHOLDS_PERCENT, min_length=1)
    clusters: tuple[str, ...] = ()
    """Cluster names (``cluster.name``) whose exporters publish this budget; empty: every cluster."""

    def applies_to(self, cluster: str) -> bool:
        return not self.clusters or cluster in self.clusters

    @field_validator("thresholds_percent")
    @classmethod
    def _thresholds(cls, value: tuple[float, ...]) -> tuple[float, ...]:
        for threshold in value:
            if not 0 < threshold <= 1000:
                raise ValueError(f"expected percents above 0 and at most 1000, got {threshold:g}")
        if list(value) != sorted(set(value)):
            raise ValueError("expected distinct percents in increasing order, e.g. [50, 80, 100]")
        return value

    @model_validator(mode="after")
    def _match(self) -> Budget:
        if self.scope == "org" and self.match is not None:
            raise ValueError("an org budget covers everything; leave `match` out")
        if self.scope != "org" and not (self.match or "").strip():
            raise ValueError(f"a {self.scope} budget needs `match`: the {self.scope} it covers")
        return self

    @property
    def key(self) -> str:
        """The spend accumulator this budget reads (see ``CostEngine``)."""
        return "org" if self.scope == "org" else f"{self.scope}:{self.match}"


class BudgetsFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    budgets: list[Budget] = Field(default_factory=list)

    _count = field_validator("budgets", mode="before")(at_most(MAX_BUDGETS, "budgets"))


def validate_budgets(data: dict[str, Any], source: str, clouds: Iterable[str]) -> tuple[Budget, ...]:
    try:
        parsed = BudgetsFile.model_validate(data)
    except ValidationError as error:
        raise ConfigError(problems_from_validation(error, BudgetsFile, source)) from None
    problems = []
    seen: dict[str, int] = {}
    known_clouds = sorted(set(clouds))
    for index, budget in enumerate(parsed.budgets):
        if budget.name in seen:
            problems.append(
                ConfigProblem(
                    source,
                    f"budgets.{index}.name",
                    budget.name,
                    f"duplicate name; first at budgets.{seen[budget.name]}",
                )
            )
        seen.setdefault(budget.name, index)
        if budget.scope == "cloud" and budget.match not in known_clouds:
            problems.append(
                ConfigProblem(
                    source,
                    f"budgets.{index}.match",
                    budget.match,
                    "unknown cloud; expected one of: " + ", ".join(known_clouds),
                )
            )
    if problems:
        raise ConfigError(problems)
    return tuple(parsed.budgets)


def load_budgets(path: Path, clouds: Iterable[str]) -> tuple[Budget, ...]:
    return validate_budgets(read_yaml_mapping(path), str(path), clouds)
