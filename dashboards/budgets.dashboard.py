"""Budgets & quotas: for each budget, spend so far this period, the projection to period end, the burn
rate against the pace that would exactly use the budget, and its alert thresholds; then quota usage."""

from vocabulary import (
    BUDGET_SHARE,
    COUNT,
    DATASOURCE,
    DOLLARS,
    HALF,
    NONE,
    RATIO,
    SATURATION,
    THIRD,
    TIMESTAMP,
    Board,
    Query,
    Row,
    Variable,
    bargauge,
    steps,
    table,
    timeseries,
)

# Published by the cost collector per budget, all with labels budget, scope, match, period.
BUDGET = Variable("budget", "Budget", "label_values(raylens_budget_amount_dollars, budget)")
SELECTED = 'budget=~"$budget"'
AMOUNT = f"raylens_budget_amount_dollars{{{SELECTED}}}"
SPEND = f"raylens_budget_spend_dollars{{{SELECTED}}}"
START = f"raylens_budget_period_start_timestamp_seconds{{{SELECTED}}}"
END = f"raylens_budget_period_end_timestamp_seconds{{{SELECTED}}}"
# Share of the period gone; at least a minute so a budget is not projected from its first seconds.
ELAPSED = f"(clamp_min(time() - {START}, 60) / ({END} - {START}))"
PROJECTED = f"({SPEND} / {ELAPSED})"
# 1.0: on pace to spend exactly the budget by the period's end; 2.0: twice too fast.
BURN = f"({SPEND} / {AMOUNT}) / {ELAPSED}"
ON_PACE = steps("green", (1.0, "orange"), (1.5, "red"))
QUOTA = "raylens_quota_usage / raylens_quota_limit"

dashboard = Board(
    key="budgets",
    description="Budgets and quotas from the raylens cost engine: period-to-date spend, projected spend at "
    "period end, burn rate and alert thresholds per budget, and usage of each quota against its limit.",
    variables=[DATASOURCE, BUDGET],
    time_from="now-7d",
    rows=[
        Row(
            "Budgets",
            [
                bargauge(
                    "Period-to-date share of budget",
                    "How much of each budget has been spent so far this period?",
                    Query(f"{SPEND} / {AMOUNT}", "{{budget}} ({{period}})"),
                    RATIO,
                    maximum=1,
                    thresholds=BUDGET_SHARE,
                    width=THIRD,
                ),
                bargauge(
                    "Projected share at period end",
                    "At the current pace, how much of each budget will be spent when the period ends?",
                    Query(f"{PROJECTED} / {AMOUNT}", "{{budget}} ({{period}})"),
                    RATIO,
                    maximum=1.5,
                    thresholds=BUDGET_SHARE,
                    width=THIRD,
                ),
                bargauge(
                    "Burn rate",
                    "Is each budget being spent faster than the pace that would use it up exactly (1.0)?",
                    Query(BURN, "{{budget}}"),
                    NONE,
                    maximum=2,
                    decimals=2,
                    thresholds=ON_PACE,
                    width=THIRD,
                ),
                table(
                    "Budgets",
                    "For each budget: scope, amount, spent so far, projected at period end, and when the period ends?",
                    [Query(AMOUNT), Query(SPEND), Query(PROJECTED), Query(END)],
                    DOLLARS,
                    decimals=2,
                    columns={
                        "budget": "Budget",
                        "scope": "Scope",
                        "match": "Matches",
                        "period": "Period",
                        "Value #A": "Amount",
                        "Value #B": "Spent",
                        "Value #C": "Projected",
                        "Value #D": "Period ends",
                    },
                    units={"Value #D": TIMESTAMP},
                    hide=("__name__", "job", "instance"),
                    width=HALF,
                ),
                table(
                    "Alert thresholds",
                    "At which spend does each budget alert (thresholds in dollars)?",
                    Query(
                        f"raylens_budget_threshold_ratio{{{SELECTED}}}"
                        f" * on (budget, scope, match, period) group_left () {AMOUNT}"
                    ),
                    DOLLARS,
                    decimals=2,
                    columns={"budget": "Budget", "threshold": "Threshold (%)", "Value": "Alerts at"},
                    hide=("__name__", "job", "instance", "scope", "match", "period"),
                    width=HALF,
                ),
                timeseries(
                    "Spend against budget and thresholds",
                    "How did spend accumulate over the period, against the budget and its alert thresholds?",
                    [
                        Query(SPEND, "spent {{budget}}"),
                        Query(AMOUNT, "budget {{budget}}"),
                        Query(
                            f"raylens_budget_threshold_ratio{{{SELECTED}}}"
                            f" * on (budget, scope, match, period) group_left () {AMOUNT}",
                            "{{threshold}}% of {{budget}}",
                        ),
                    ],
                    DOLLARS,
                    width=HALF,
                ),
                timeseries(
                    "Burn rate over time",
                    "When did spending run ahead of the budget's pace?",
                    Query(BURN, "{{budget}}"),
                    NONE,
                    decimals=2,
                    thresholds=ON_PACE,
                    show_thresholds=True,
                    width=HALF,
                ),
            ],
        ),
        Row(
            "Quotas",
            [
                bargauge(
                    "Quota usage",
                    "How close is each user, project or team to its quota right now?",
                    Query(QUOTA, "{{quota}} {{match}} ({{resource}})"),
                    RATIO,
                    maximum=1,
                    thresholds=SATURATION,
                    width=THIRD,
                ),
                timeseries(
                    "Quota usage over time",
                    "When did usage approach or exceed a quota?",
                    Query(QUOTA, "{{quota}} {{match}} ({{resource}})"),
                    RATIO,
                    minimum=0,
                    thresholds=SATURATION,
                    show_thresholds=True,
                    width=THIRD,
                ),
                table(
                    "Quotas",
                    "What is each active quota's limit, and how much of it is held?",
                    [Query("raylens_quota_limit"), Query("raylens_quota_usage")],
                    COUNT,
                    columns={
                        "quota": "Quota",
                        "scope": "Scope",
                        "match": "Who",
                        "resource": "Resource",
                        "instance_type": "Instance type",
                        "Value #A": "Limit",
                        "Value #B": "Held",
                    },
                    hide=("__name__", "job", "instance"),
                    width=THIRD,
                ),
            ],
        ),
    ],
)
