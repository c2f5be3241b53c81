"""Alerts on raylens itself: monitoring the monitoring."""

from __future__ import annotations

from raylens.rules.model import Alert, AlertGroup

EXPORTER = AlertGroup(
    "raylens-exporter",
    (
        Alert(
            name="RaylensExporterDown",
            # `ip` (the target's host) lets Alertmanager inhibit this when RaylensNodeDown names that node.
            expr='label_replace(up{%(exporter_selector)s} == 0, "ip", "$1", "instance", "(.+):[0-9]+")',
            for_="%(exporter_down_for)s",
            severity="warning",
            summary="A raylens exporter cannot be scraped.",
            description="Prometheus has not scraped {{ $labels.instance }} ({{ $labels.job }}) for "
            "%(exporter_down_for)s; its node, GPU, Ray and cost series are missing.",
        ),
        Alert(
            name="RaylensCollectorFailing",
            expr='label_replace(raylens_scrape_collector_success{%(exporter_selector)s} == 0, "ip", "$1", "instance", '
            '"(.+):[0-9]+")',
            for_="%(collector_failing_for)s",
            severity="warning",
            summary="A raylens collector keeps failing.",
            description="The {{ $labels.collector }} collector on {{ $labels.instance }} has failed every scrape "
            "for %(collector_failing_for)s; its series are incomplete. The exporter log names the section "
            "and the error.",
        ),
    ),
)
