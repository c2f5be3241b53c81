"""Alerts on Serve routes probed from outside (blackbox exporter, targets from ``raylens sd``)."""

from __future__ import annotations

from raylens.rules.model import Alert, AlertGroup

# Availability over a window (recording-rules/uptime.yml) below the SLO.
_BELOW_SLO = "instance:probe_success:avg_over_time%s{%%(serve_probe_selector)s} < %%(serve_uptime_slo_percent)s / 100"

UPTIME = AlertGroup(
    "raylens-uptime",
    (
        Alert(
            name="RaylensServeEndpointDown",
            expr="probe_success{%(serve_probe_selector)s} == 0",
            for_="%(serve_probe_down_for)s",
            severity="critical",
            summary="A Ray Serve route does not answer.",
            description="{{ $labels.instance }} (application {{ $labels.application }}{{ with $labels.cluster }}, "
            "cluster {{ . }}{{ end }}) has failed every probe for %(serve_probe_down_for)s: no 2xx answer within "
            "the timeout. Users of the route get errors or nothing.",
        ),
        Alert(
            name="RaylensServeUptimeBelowSLO",
            expr=f"{_BELOW_SLO % '30d'}\nand\n{_BELOW_SLO % '1d'}",
            for_="%(serve_uptime_for)s",
            severity="warning",
            summary="A Ray Serve route is below its uptime SLO.",
            description="{{ $labels.instance }} (application {{ $labels.application }}{{ with $labels.cluster }}, "
            "cluster {{ . }}{{ end }}) answered {{ $value | humanizePercentage }} of its probes over 30 days, below "
            "its %(serve_uptime_slo_percent)s%% SLO, and the last day was below it too: the budget is still "
            "being spent.",
        ),
    ),
)
