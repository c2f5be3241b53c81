"""Alerts on savings recommendations: one per kind, from the recommend collector's metrics.

The evidence, thresholds and windows live in the ``recommendations`` config section and the engine
(docs/reports.md); these rules only say when a recommendation is worth telling someone about: it
saves at least ``alerts.recommendation_min_dollars_per_month`` and has stood for
``alerts.recommendation_for``. The info series is joined in so the alert carries the summary (with
its figures) and the action. Idle clusters warn (money is spent on nothing); the rest are info, for
the dashboard's Savings row and the weekly review.
"""

from __future__ import annotations

from raylens.rules.model import Alert, AlertGroup


def _savings(kind: str) -> str:
    return (
        "(\n"
        f'  raylens_recommendation_savings_dollars_per_hour{{%(exporter_selector)s, kind="{kind}"}} * 730\n'
        "  * on (job, instance, kind, target) group_left (summary, action, alternative)\n"
        "  raylens_recommendation_info{%(exporter_selector)s}\n"
        ") > %(recommendation_min_dollars_per_month)s"
    )


_SAVES = ' Acting on it saves about ${{ $value | printf "%%.0f" }} a month. {{ $labels.action }}'

RECOMMENDATIONS = AlertGroup(
    "raylens-recommendations",
    (
        Alert(
            name="RaylensSavingsIdleGpus",
            expr=_savings("idle_gpu"),
            for_="%(recommendation_for)s",
            severity="info",
            summary="GPUs are held by Ray jobs but barely used.",
            description="{{ $labels.summary }}" + _SAVES,
        ),
        Alert(
            name="RaylensSavingsRightSizing",
            expr=_savings("rightsizing"),
            for_="%(recommendation_for)s",
            severity="info",
            summary="A Ray node is larger than its work; a cheaper instance type fits.",
            description="{{ $labels.summary }}" + _SAVES,
        ),
        Alert(
            name="RaylensSavingsSpot",
            expr=_savings("spot"),
            for_="%(recommendation_for)s",
            severity="info",
            summary="An on-demand Ray node runs only interruption-tolerant work; spot is cheaper.",
            description="{{ $labels.summary }}" + _SAVES,
        ),
        Alert(
            name="RaylensSavingsIdleCluster",
            expr=_savings("auto_termination"),
            for_="%(recommendation_for)s",
            severity="warning",
            summary="A Ray cluster has run no work for hours and still costs money.",
            description="{{ $labels.summary }}" + _SAVES,
        ),
        Alert(
            name="RaylensSavingsServeReplicas",
            expr=_savings("serve_overprovisioned"),
            for_="%(recommendation_for)s",
            severity="info",
            summary="A Ray Serve deployment runs more replicas than its load needs.",
            description="{{ $labels.summary }}" + _SAVES,
        ),
    ),
)
