"""The budget series of the cost collector: each budget's amount, thresholds, current period and the
spend in it. Sample::

    raylens_budget_spend_dollars{budget="vision",match="vision",period="month",scope="project"} 1234.5
    raylens_budget_period_start_timestamp_seconds{budget="vision",...} 1.7829e+09
"""

from __future__ import annotations

from collections.abc import Iterator
from zoneinfo import ZoneInfo

from prometheus_client.core import GaugeMetricFamily, Metric

from raylens.cost.budgets import Budget
from raylens.cost.engine import CostEngine
from raylens.cost.periods import period_end

BUDGET_LABELS = ["budget", "scope", "match", "period"]


def budget_labels(budget: Budget) -> list[str]:
    return [budget.name, budget.scope, budget.match or "", budget.period]


def budget_families(engine: CostEngine, zone: ZoneInfo) -> Iterator[Metric]:
    """The budgets as ``engine`` stands; its caller holds the collector's lock, right after accounting
    (or before the first step, when no period has started: amounts and thresholds only)."""
    amount = GaugeMetricFamily(
        "raylens_budget_amount_dollars", "The budget for one period, US dollars.", labels=BUDGET_LABELS
    )
    spend = GaugeMetricFamily(
        "raylens_budget_spend_dollars",
        "Spend in the budget's scope since its current period started (period to date), US dollars; "
        "resets exactly at the period boundary in cost.timezone.",
        labels=BUDGET_LABELS,
    )
    start = GaugeMetricFamily(
        "raylens_budget_period_start_timestamp_seconds",
        "Start of the budget's current period (day, ISO week or month in cost.timezone), Unix seconds.",
        labels=BUDGET_LABELS,
    )
    end = GaugeMetricFamily(
        "raylens_budget_period_end_timestamp_seconds",
        "End of the budget's current period (the next period's start), Unix seconds.",
        labels=BUDGET_LABELS,
    )
    thresholds = GaugeMetricFamily(
        "raylens_budget_threshold_ratio",
        "Alert thresholds of the budget as a fraction of its amount (threshold label: the percent).",
        labels=[*BUDGET_LABELS, "threshold"],
    )
    periods = {name: record.start for name, record in engine.state.periods.items()}
    spent = {budget.name: engine.budget_spend(budget) for budget in engine.budgets}
    for budget in engine.budgets:
        labels = budget_labels(budget)
        amount.add_metric(labels, budget.amount_usd)
        if budget.period in periods:
            begins = periods[budget.period]
            spend.add_metric(labels, spent[budget.name])
            start.add_metric(labels, begins)
            end.add_metric(labels, period_end(budget.period, begins, zone))
        for percent in budget.thresholds_percent:
            thresholds.add_metric([*labels, f"{percent:g}"], percent / 100.0)
    yield from (amount, spend, start, end, thresholds)
