"""Budget threshold alerts generated from ``budgets.yaml``: one ``RaylensBudgetThresholdCrossed`` per
budget and threshold.

The exporter publishes each budget's spend and amount; the rules compare their ratio with each of the
budget's ``thresholds_percent`` (default 50, 80, 100). Severity follows the threshold: below
``alerts.budget_warning_percent`` (80) info, dashboards only; from there warning, the owning team's
channel; from ``alerts.budget_critical_percent`` (100) critical, the team's channel and on-call. A
team-scoped budget's alerts carry ``team=<match>`` so Alertmanager routes them to that team; other
budgets have no owner in budgets.yaml and reach the platform channel. The ``threshold`` label is the
percent as the exporter spells it (``80``), which Alertmanager's inhibitions match on.

Projection, burn-rate and quota alerts need no per-budget parameter and are written once over every
budget the exporter publishes (``groups/cost.py``). Thresholds do differ per budget, hence this file:
``raylens rules build --budgets FILE`` renders it (default: the config's ``cost.budgets_file``, else
``examples/budgets.yaml``), ``raylens up`` renders it from the budgets file its exporter reads, and
the mixin takes the budgets as ``_config.budgets``::

    (import 'mixin.libsonnet') + { _config+:: { budgets: [
      { name: 'ml', scope: 'team', match: 'ml', thresholds_percent: ['50', '80', '100'] },
    ] } }
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from raylens.config import AlertsConfig, CostConfig
from raylens.cost.budgets import Budget
from raylens.rules.model import Alert
from raylens.rules.render import _jsonnet_alert

GROUP_NAME = "raylens-budgets"
SAMPLE_BUDGETS = Path("examples") / "budgets.yaml"

THRESHOLD_ALERT = Alert(
    name="RaylensBudgetThresholdCrossed",
    expr="budget:raylens_budget_spend:ratio{%(exporter_selector)s, budget=%(budget_string)s} >= %(threshold)s / 100",
    for_="%(budget_threshold_for)s",
    severity="info",  # set per threshold, see threshold_severity()
    summary="A budget has crossed %(threshold)s%% of its amount.",
    description="Budget {{ $labels.budget }} ({{ $labels.scope }}{{ with $labels.match }} {{ . }}{{ end }}) has "
    "spent {{ $value | humanizePercentage }} of its amount this {{ $labels.period }}, past its %(threshold)s%% "
    "threshold.",
    # `budget` repeats the series' own label: without it two budgets' rules for one threshold would be
    # the same rule to promtool's duplicate check (same name and labels).
    labels={"budget": "%(budget)s", "threshold": "%(threshold)s"},
)


@dataclass(frozen=True)
class BudgetRules:
    """What the rules need of one budget: its name, who it belongs to, and its thresholds as labels."""

    name: str
    scope: str
    match: str | None
    thresholds_percent: tuple[str, ...]

    @classmethod
    def of(cls, budget: Budget) -> BudgetRules:
        return cls(budget.name, budget.scope, budget.match, tuple(map(threshold_label, budget.thresholds_percent)))


def threshold_label(percent: float) -> str:
    """The percent as the exporter writes raylens_budget_threshold_ratio's ``threshold`` label."""
    return f"{percent:g}"


def threshold_severity(percent: float, config: AlertsConfig) -> str:
    if percent >= config.budget_critical_percent:
        return "critical"
    if percent >= config.budget_warning_percent:
        return "warning"
    return "info"


@dataclass(frozen=True)
class BudgetThresholdAlerts:
    """The generated group (a ``GeneratedAlertGroup``): thresholds of every budget, in file order."""

    budgets: tuple[BudgetRules, ...] = ()
    name: str = GROUP_NAME

    @classmethod
    def from_budgets(cls, budgets: Iterable[Budget]) -> BudgetThresholdAlerts:
        return cls(tuple(BudgetRules.of(budget) for budget in budgets))

    def instances(self, config: AlertsConfig) -> Iterator[tuple[Alert, Mapping[str, str]]]:
        for budget in self.budgets:
            for threshold in budget.thresholds_percent:
                params = {
                    "budget": budget.name,
                    "budget_string": json.dumps(budget.name, ensure_ascii=False),
                    "threshold": threshold,
                }
                labels = dict(THRESHOLD_ALERT.labels)
                if budget.scope == "team" and budget.match:
                    labels["team"] = "%(team)s"
                    params["team"] = budget.match
                severity = threshold_severity(float(threshold), config)
                yield replace(THRESHOLD_ALERT, severity=severity, labels=labels), params

    def jsonnet_config(self) -> Mapping[str, Any]:
        return {
            "budgets": [
                {
                    "name": budget.name,
                    "scope": budget.scope,
                    "match": budget.match,
                    "thresholds_percent": list(budget.thresholds_percent),
                }
                for budget in self.budgets
            ]
        }

    def jsonnet_rules(self) -> str:
        # The same templates as instances(): std.escapeStringJson quotes the name as json.dumps does,
        # and the severity rule is threshold_severity()'s.
        alert = _jsonnet_alert(
            THRESHOLD_ALERT,
            params="params",
            severity="severity",
            labels_extension=' + (if budget.scope == "team" then { team: ("%(team)s" % params) } else {})',
        )
        return (
            "[\n"
            "          local threshold = std.toString(percent);\n"
            "          local value = std.parseJson(threshold);\n"
            "          local params = $._config + {\n"
            "            budget: budget.name,\n"
            "            budget_string: std.escapeStringJson(budget.name),\n"
            "            threshold: threshold,\n"
            '            team: if budget.scope == "team" then budget.match else "",\n'
            "          };\n"
            "          local severity =\n"
            '            if value >= $._config.budget_critical_percent then "critical"\n'
            '            else if value >= $._config.budget_warning_percent then "warning"\n'
            '            else "info";\n'
            f"          {alert}\n"
            "          for budget in $._config.budgets\n"
            "          for percent in budget.thresholds_percent\n"
            "        ]"
        )


def budgets_for(cost: CostConfig) -> tuple[Budget, ...]:
    """The budgets the exporter would publish with this ``cost`` section (none without a budgets file)."""
    if cost.budgets_file is None:
        return ()
    return load_budgets_file(cost.budgets_file, cost.pricing_files)


def load_budgets_file(path: Path, pricing_files: Sequence[Path] = ()) -> tuple[Budget, ...]:
    """Load and validate a budgets.yaml, with the clouds of the catalog and ``pricing_files``."""
    from raylens.cost.budgets import load_budgets
    from raylens.cost.catalog import load_catalog

    return load_budgets(path, load_catalog(tuple(pricing_files)).clouds())
