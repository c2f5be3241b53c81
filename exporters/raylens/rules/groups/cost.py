"""Alerts on spend: budgets heading for an overrun, spend bursts, quotas, and costs nobody needs.

Budget *thresholds* are generated per budget from budgets.yaml (``rules/budgets.py``); everything here
is written once over every budget and quota the exporter publishes, since none needs a per-item
parameter. Quotas in particular carry their limit as a series (published only while the quota is
active), so ``usage > limit`` covers every quota, every `match: "*"` expansion and every time window
without generating anything from quotas.yaml.

Budget and quota alerts of a team-scoped budget or quota get ``team=<match>``, so Alertmanager sends
them to that team's channel; the others reach the platform channel.

Burn rates follow the multi-window scheme of the SRE workbook (ch. 5), with even pace (the amount
spread evenly over the period) in place of the error budget: 14.4 times even pace over the last hour
and the last 5 minutes spends 2 % of a 30-day budget in an hour (critical); 6 times over 6 hours and
30 minutes, 5 % in 6 hours (warning). The short window lets the alert resolve soon after the burst.
"""

from __future__ import annotations

from raylens.rules.model import Alert, AlertGroup


def _with_owning_team(expression: str) -> str:
    """``expression`` with ``team="<match>"`` added for team-scoped budgets and quotas.

    ``SCOPE`` in the expression marks where its selectors name the scope.
    """
    team = expression.replace("SCOPE", 'scope="team"').replace("\n", "\n  ")
    others = expression.replace("SCOPE", 'scope!="team"').replace("\n", "\n  ")
    return f'label_replace(\n  {team},\n  "team", "$1", "match", "(.+)"\n)\nor\n(\n  {others}\n)'


_BUDGET = "Budget {{ $labels.budget }} ({{ $labels.scope }}{{ with $labels.match }} {{ . }}{{ end }})"
# "User alice", "Team ml", "Global".
_QUOTA_HOLDER = "{{ $labels.scope | title }}{{ with $labels.match }} {{ . }}{{ end }}"
_OF_TYPE = "{{ with $labels.instance_type }} of {{ . }}{{ end }}"


def _burn(long: str, short: str, factor: str) -> str:
    return _with_owning_team(
        f"budget:raylens_budget_spend:burn_rate{long}{{%(exporter_selector)s, SCOPE}} > {factor}\n"
        "and\n"
        f"budget:raylens_budget_spend:burn_rate{short}{{%(exporter_selector)s, SCOPE}} > {factor}"
    )


def _burn_description(long: str, short: str, factor: str, share: str) -> str:
    return (
        f'{_BUDGET} has spent {{{{ $value | printf "%%.1f" }}}} times faster than even pace over the last {long} '
        f"and still over the last {short}: at {factor} times even pace {share} of a 30-day budget goes in that "
        "time, and a whole {{ $labels.period }}'s amount in 1/" + factor + " of the {{ $labels.period }}."
    )


COST = AlertGroup(
    "raylens-cost",
    (
        Alert(
            name="RaylensBudgetProjectedOverrun",
            expr=_with_owning_team(
                "budget:raylens_budget_spend_projected:ratio{%(exporter_selector)s, SCOPE} > 1\n"
                "unless\n"
                "budget:raylens_budget_spend:ratio{%(exporter_selector)s, SCOPE} >= 1"
            ),
            for_="%(budget_projection_for)s",
            severity="warning",
            summary="A budget is projected to overrun by the end of its period.",
            description=f"{_BUDGET} will have spent {{{{ $value | humanizePercentage }}}} of its amount by the end "
            "of this {{ $labels.period }} if spend goes on at the last hour's rate; the projection has stayed above "
            "the amount for %(budget_projection_for)s.",
        ),
        Alert(
            name="RaylensBudgetBurnRateHigh",
            expr=_burn("1h", "5m", "14.4"),
            for_="2m",
            severity="critical",
            summary="A budget is being spent very fast.",
            description=_burn_description("hour", "5 minutes", "14.4", "2 %%"),
        ),
        Alert(
            name="RaylensBudgetBurnRateHigh",
            expr=_burn("6h", "30m", "6"),
            for_="15m",
            severity="warning",
            summary="A budget is being spent fast.",
            description=_burn_description("6 hours", "30 minutes", "6", "5 %%"),
        ),
        Alert(
            name="RaylensCostAnomaly",
            expr="(\n"
            "  project:raylens_cost_allocation_dollars:rate1h * 3600\n"
            "  >\n"
            "  (1 + %(cost_anomaly_percent)s / 100)\n"
            "  * avg_over_time(project:raylens_cost_allocation_dollars:rate1h[7d:1h]) * 3600\n"
            ")\n"
            "> %(cost_alert_min_dollars_per_hour)s",
            for_="%(cost_anomaly_for)s",
            severity="warning",
            summary="A project's spend rate jumped above its usual level.",
            description='Project {{ $labels.project }} has cost ${{ $value | printf "%%.2f" }} an hour over the '
            "last hour, more than %(cost_anomaly_percent)s%% above its average hourly spend of the past 7 days, "
            "for %(cost_anomaly_for)s.",
        ),
        Alert(
            name="RaylensQuotaExceeded",
            expr=_with_owning_team(
                "(\n"
                "  raylens_quota_usage{%(exporter_selector)s, SCOPE}\n"
                "  - raylens_quota_limit{%(exporter_selector)s, SCOPE}\n"
                ") > 0"
            ),
            # Holdings change with every task; a quarter of an hour over the limit is no blip.
            for_="15m",
            severity="warning",
            summary="A quota is exceeded.",
            description=_QUOTA_HOLDER + " has held {{ $value }} {{ $labels.resource }}" + _OF_TYPE + " more than quota "
            "{{ $labels.quota }} allows, for 15 minutes.",
        ),
        Alert(
            name="RaylensQuotaReached",
            expr=_with_owning_team(
                "(\n"
                "  raylens_quota_usage{%(exporter_selector)s, SCOPE}\n"
                "  == raylens_quota_limit{%(exporter_selector)s, SCOPE}\n"
                ") > 0"
            ),
            for_="15m",
            severity="info",
            summary="A quota is fully used.",
            description=_QUOTA_HOLDER + " holds {{ $value }} {{ $labels.resource }}" + _OF_TYPE + ", all that quota "
            "{{ $labels.quota }} allows; anything more goes over the quota.",
        ),
        Alert(
            name="RaylensCostUnpricedNodes",
            expr="raylens_cost_unpriced_nodes{%(exporter_selector)s} > 0",
            # A node whose labels arrive a moment after it joins is unpriced briefly.
            for_="15m",
            severity="warning",
            summary="Ray nodes have no price, so their cost is missing.",
            description='{{ $value | printf "%%.0f" }} alive Ray nodes seen by {{ $labels.instance }} have no '
            "price: their cost is missing from every total, budget and dashboard (not counted as $0). "
            "raylens_cost_node_unpriced names them and the reason.",
        ),
    ),
)

OPTIMISATION = AlertGroup(
    "raylens-optimisation",
    (
        Alert(
            name="RaylensClusterIdle",
            expr="(\n"
            "  cluster:raylens_cost_idle:ratio_rate5m{%(exporter_selector)s} > %(cluster_idle_percent)s / 100\n"
            ")\n"
            "and\n"
            "(\n"
            "  cluster:raylens_cost_allocation_dollars:rate5m{%(exporter_selector)s} * 3600\n"
            "  > %(cost_alert_min_dollars_per_hour)s\n"
            ")",
            for_="%(cluster_idle_for)s",
            severity="warning",
            labels={"remediation": "scale-down"},
            summary="A Ray cluster is paid for but mostly idle.",
            description="{{ $value | humanizePercentage }} of what the Ray cluster behind {{ $labels.instance }} "
            "costs has paid for resources no job holds, continuously for %(cluster_idle_for)s (threshold "
            "%(cluster_idle_percent)s%%): a candidate for scaling down or terminating. Also sent to the "
            "remediation webhook.",
        ),
        Alert(
            name="RaylensNodeOverProvisioned",
            # GPU nodes are judged by their GPUs, nodes without GPUs by their CPUs. Nodes holding nothing
            # are idle, not over-provisioned; nodes younger than the window, or gone, are left out.
            expr="(\n"
            "  (\n"
            "    (\n"
            "      max_over_time(node_resource:raylens_ray_node_resource_used:ratio{%(exporter_selector)s, "
            'resource="GPU"}[%(node_overprovisioned_window)s])\n'
            "      or on (node_id)\n"
            "      max_over_time(node_resource:raylens_ray_node_resource_used:ratio{%(exporter_selector)s, "
            'resource="CPU"}[%(node_overprovisioned_window)s])\n'
            "    ) < %(node_overprovisioned_percent)s / 100\n"
            "  ) > 0\n"
            "  and on (node_id)\n"
            "  node_resource:raylens_ray_node_resource_used:ratio{%(exporter_selector)s}\n"
            "  and on (node_id)\n"
            "  node_resource:raylens_ray_node_resource_used:ratio{%(exporter_selector)s} "
            "offset %(node_overprovisioned_window)s\n"
            ")\n"
            "* on (node_id) group_left (instance_type, market)\n"
            "max by (node_id, instance_type, market) (raylens_cost_node_info{%(exporter_selector)s})",
            for_="15m",
            severity="info",
            summary="A Ray node is bigger than what runs on it.",
            description="Ray node {{ $labels.node_id }} ({{ $labels.ip }}, {{ $labels.instance_type }}, "
            "{{ $labels.market }}) had at most {{ $value | humanizePercentage }} of its {{ $labels.resource }}s "
            "held by tasks and actors over the last %(node_overprovisioned_window)s (threshold "
            "%(node_overprovisioned_percent)s%%): a smaller instance type would run the same work for less.",
        ),
    ),
)
