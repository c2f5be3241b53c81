"""Alerts on node resources, over the node collector's recording rules."""

from __future__ import annotations

from raylens.rules.model import Alert, AlertGroup

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
