"""Impact figures of an incident, each with the PromQL that reproduces it.

Computed from Prometheus when an incident resolves and stored with it, so a post-mortem written
weeks later does not depend on retention. Every query pins its evaluation time with ``@`` and its
range to the incident, so pasting it into Prometheus gives the same number.

- Serve applications in scope: the share of the 30-day error budget of the availability SLO
  (``alerts.serve_availability_slo_percent``) the incident consumed, from the SLO recording rule
  ``application:ray_serve_http_errors_per_requests:ratio_rate5m``:
  mean error ratio during the incident / (1 - SLO) x incident duration / 30 days (the SRE workbook's
  burn rate times elapsed share of the window); and the 5xx answers over the same span. The rule's
  ratio at the opening covers the 5 minutes before it, and burn-rate alerts fire after the errors
  that trip them, so the 5xx count starts 5 minutes before the opening too: both figures cover
  the errors that opened the incident.
- Projects, teams and users in scope: dollars they were charged during the incident.
- Budgets in scope: the share of the budget spent when the incident resolved.
"""

from __future__ import annotations

from typing import Any

from raylens.remediation.prometheus import Prometheus, PrometheusError, selector

SLO_WINDOW_SECONDS = 30 * 86400
RULE_WINDOW_SECONDS = 300  # the 5m of ratio_rate5m


def figure_queries(incident: dict[str, Any], slo_percent: str, end: float) -> list[dict[str, Any]]:
    """What to compute for this incident's scope: name, unit and PromQL of each figure."""
    scope: dict[str, list[str]] = incident["scope"]
    duration = max(1, round(end - incident["opened_at"]))
    at = f"{end:.0f}"
    window = f"[{duration}s] @ {at}"
    figures = []
    for application in scope.get("application", []):
        match = selector({"application": application})
        figures.append(
            {
                "name": f"Error budget consumed, Serve application {application}",
                "unit": "budget",
                "promql": f"avg_over_time(application:ray_serve_http_errors_per_requests:ratio_rate5m{match}{window})"
                f" / (1 - {slo_percent} / 100) * {duration} / {SLO_WINDOW_SECONDS}",
            }
        )
        errors = selector({"application": application})[:-1] + ', status_code=~"5.."}'
        figures.append(
            {
                "name": f"Failed requests (5xx) from 5m before opening, Serve application {application}",
                "unit": "requests",
                "promql": f"sum(increase(ray_serve_num_http_requests_total{errors}[{duration + RULE_WINDOW_SECONDS}s]"
                f" @ {at}))",
            }
        )
    for label in ("project", "team", "user"):
        for value in scope.get(label, []):
            figures.append(
                {
                    "name": f"Spend during the incident, {label} {value}",
                    "unit": "dollars",
                    "promql": f"sum(increase(raylens_cost_allocation_dollars_total{selector({label: value})}{window}))",
                }
            )
    for budget in scope.get("budget", []):
        figures.append(
            {
                "name": f"Budget {budget} used at resolution",
                "unit": "ratio",
                "promql": f"max(budget:raylens_budget_spend:ratio{selector({'budget': budget})} @ {at})",
            }
        )
    return figures


def compute_impact(
    incident: dict[str, Any], prometheus: Prometheus | None, slo_percent: str, end: float
) -> list[dict[str, Any]]:
    figures = figure_queries(incident, slo_percent, end)
    for figure in figures:
        figure["value"] = None
        if prometheus is None:
            figure["note"] = "no remediation.prometheus_url configured"
            continue
        try:
            figure["value"] = prometheus.value(figure["promql"])
        except PrometheusError as error:
            figure["note"] = f"Prometheus did not answer: {error}"
            continue
        if figure["value"] is None:
            figure["note"] = "no data in Prometheus for this range"
    return figures


def format_figure(figure: dict[str, Any]) -> str:
    value = figure.get("value")
    if value is None:
        return f"unknown ({figure.get('note', 'not computed')})"
    unit = figure["unit"]
    if unit == "budget":
        return f"{value * 100:.3g} % of the 30-day error budget"
    if unit == "ratio":
        return f"{value * 100:.1f} %"
    if unit == "dollars":
        return f"${value:,.2f}"
    return f"{value:,.0f} {unit}"
