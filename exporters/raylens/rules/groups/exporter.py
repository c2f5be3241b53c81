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
        Alert(
            name="RaylensCostStateSetAside",
            # A set-aside file stays until someone restores or deletes it, so this needs no `for` to
            # ride out noise; it resolves when the operator has dealt with the file.
            expr="raylens_cost_state_set_aside_files{%(exporter_selector)s} > 0",
            for_="0m",
            severity="warning",
            summary="The cost state was unreadable and has been set aside; spend history restarted.",
            description="{{ $value }} unreadable cost state file(s) sit in cost.state_dir of {{ $labels.instance }}. "
            "The exporter started afresh: node spend was re-derived from what Ray still knows; attribution "
            "(users, projects, jobs) and budget spend to date restarted at 0 until the file is restored.",
        ),
        Alert(
            name="RaylensCostStatePersistFailing",
            expr="increase(raylens_cost_state_save_errors_total{%(exporter_selector)s}[5m]) > 0",
            for_="%(collector_failing_for)s",
            severity="warning",
            summary="The exporter cannot save its cost state.",
            description="Saving the cost state on {{ $labels.instance }} has failed for "
            "%(collector_failing_for)s (disk full, read-only or I/O errors); spend counters are held at their "
            "last saved values until a save succeeds, and a restart now would lose the spend since then.",
        ),
    ),
)
