"""Every raylens alert that is not generated from budgets or quotas.

Add an alert here, run ``raylens rules build``, write ``docs/runbooks/<AlertName>.md`` and a firing
and a not-firing case in ``tests/rules/``; the tests insist on all three.
"""

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

NODE = AlertGroup(
    "raylens-node",
    (
        Alert(
            name="RaylensNodeMemoryPressure",
            expr="instance:raylens_node_memory_utilisation:ratio{%(exporter_selector)s} "
            "> %(memory_utilisation_warning_percent)s / 100",
            severity="warning",
            summary="A node is running out of memory.",
            description="{{ $labels.instance }} has used {{ $value | humanizePercentage }} of its memory for "
            "%(resource_alert_for)s (threshold %(memory_utilisation_warning_percent)s%%); Ray may start "
            "killing workers.",
        ),
        Alert(
            name="RaylensNodeFilesystemAlmostFull",
            expr="instance_mountpoint:raylens_node_filesystem_used:ratio{%(exporter_selector)s} "
            "> %(filesystem_used_warning_percent)s / 100",
            severity="warning",
            summary="A filesystem is almost full.",
            description="{{ $labels.mountpoint }} ({{ $labels.device }}) on {{ $labels.instance }} is "
            "{{ $value | humanizePercentage }} full (threshold %(filesystem_used_warning_percent)s%%); object "
            "spilling and logs will fail when it fills.",
        ),
    ),
)

GROUPS: tuple[AlertGroup, ...] = (EXPORTER, NODE)
