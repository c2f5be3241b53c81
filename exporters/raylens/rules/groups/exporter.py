"""Alerts on raylens itself: monitoring the monitoring."""

from __future__ import annotations

from raylens.rules.model import Alert, AlertGroup

EXPORTER = AlertGroup(
    "raylens-exporter",
    (
        Alert(
            name="RaylensExporterDown",
            expr="up{%(exporter_selector)s} == 0",
            for_="%(exporter_down_for)s",
            severity="warning",
            summary="A raylens exporter cannot be scraped.",
            description="Prometheus has not scraped {{ $labels.instance }} ({{ $labels.job }}) for "
            "%(exporter_down_for)s; its node, GPU, Ray and cost series are missing.",
        ),
        Alert(
            name="RaylensCollectorFailing",
            expr="raylens_scrape_collector_success{%(exporter_selector)s} == 0",
            for_="%(collector_failing_for)s",
            severity="warning",
            summary="A raylens collector keeps failing.",
            description="The {{ $labels.collector }} collector on {{ $labels.instance }} has failed every scrape "
            "for %(collector_failing_for)s; its series are incomplete. The exporter log names the section "
            "and the error.",
        ),
    ),
)
