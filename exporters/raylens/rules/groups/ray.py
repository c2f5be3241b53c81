"""Alerts on the Ray cluster itself: reachability, nodes, the object store and memory kills."""

from __future__ import annotations

from raylens.rules.model import Alert, AlertGroup


def _events(series: str, window: str, indent: str) -> str:
    """Events of a counter in the window: its increase, or its whole value when the series is new.

    A counter series that appears with its first event (Ray's and raylens' lifecycle counters start
    at 1, not 0) has no earlier sample for increase() to compare with, and an increase of 0 would
    hide the new series from `or`: only positive increases are kept.
    """
    lines = [
        f"increase({series}[{window}]) > 0",
        "or",
        "(",
        f"  {series}",
        "  unless",
        f"  {series} offset {window}",
        ")",
    ]
    return "\n".join(indent + line for line in lines)


# Node deaths nobody asked for; expected terminations and idle scale-downs stay quiet.
_UNEXPECTED_REMOVALS = (
    'raylens_ray_node_removals_total{%(exporter_selector)s, reason=~"unexpected_termination|unspecified"}'
)
_PREEMPTIONS = 'raylens_ray_node_removals_total{%(exporter_selector)s, reason="preempted"}'
_EVICTIONS = "ray_memory_manager_worker_eviction_total"

RAY = AlertGroup(
    "raylens-ray",
    (
        Alert(
            name="RaylensRayUnreachable",
            expr="raylens_ray_up{%(exporter_selector)s} == 0",
            for_="%(ray_unreachable_for)s",
            severity="critical",
            summary="The exporter cannot reach the Ray cluster.",
            description="{{ $labels.instance }} has not reached Ray's dashboard API for %(ray_unreachable_for)s: "
            "the head node, its GCS or its dashboard is down, and every Ray, job and cost series from it is "
            "missing.",
        ),
        Alert(
            name="RaylensNodeDown",
            # Labels name the Ray node; the exporter's `instance` is dropped because it is the head's
            # exporter, not the dead node's, and would wrongly match inhibitions keyed on instance.
            expr="(max by (SessionName, node_id, ip, NodeAddress) (raylens_ray_node_up{%(exporter_selector)s}) == 0)\n"
            "and on (SessionName)\n"
            "(\n"
            "  sum by (SessionName) (\n"
            f"{_events(_UNEXPECTED_REMOVALS, '%(event_alert_window)s', '    ')}\n"
            "  ) > 0\n"
            ")",
            for_="%(node_down_for)s",
            severity="warning",
            summary="A Ray node died unexpectedly.",
            description="Ray node {{ $labels.node_id }} ({{ $labels.ip }}) of {{ $labels.SessionName }} is dead "
            "and the cluster lost a node unexpectedly (crash or lost heartbeat) within %(event_alert_window)s; "
            "tasks and actors on it failed or were retried elsewhere.",
        ),
        Alert(
            name="RaylensNodesPreempted",
            expr="sum by (SessionName, node_type, market) (\n"
            f"{_events(_PREEMPTIONS, '%(event_alert_window)s', '  ')}\n"
            ") > 0",
            for_="0m",
            severity="info",
            summary="Ray nodes were preempted.",
            description="The cloud reclaimed {{ $labels.node_type }} nodes ({{ $labels.market }}) of "
            '{{ $labels.SessionName }} within %(event_alert_window)s (preemptions: {{ printf "%%.0f" $value }}); '
            "their tasks were retried and their actors restarted elsewhere, if allowed to.",
        ),
        Alert(
            name="RaylensObjectStorePressure",
            expr="raylens_ray_object_store_pressure_ratio{%(exporter_selector)s} "
            "> %(object_store_pressure_warning_percent)s / 100",
            severity="warning",
            summary="A Ray object store is nearly full.",
            description="The object store of Ray node {{ $labels.node_id }} ({{ $labels.ip }}) has been "
            "{{ $value | humanizePercentage }} full for %(resource_alert_for)s (threshold "
            "%(object_store_pressure_warning_percent)s%%); new objects spill to disk or fall back to slow "
            "allocations.",
        ),
        Alert(
            name="RaylensObjectStoreSpilling",
            expr="node:raylens_ray_object_store_spilled_bytes:rate5m{%(exporter_selector)s} "
            "> %(object_store_spill_warning_mib_per_second)s * 1024 * 1024",
            severity="warning",
            summary="A Ray node keeps spilling objects to disk.",
            description="Ray node {{ $labels.node_id }} ({{ $labels.ip }}) has spilled {{ $value | humanize1024 }}B/s "
            "of objects to external storage for %(resource_alert_for)s (threshold "
            "%(object_store_spill_warning_mib_per_second)s MiB/s); tasks wait on disk instead of memory.",
        ),
        Alert(
            name="RaylensWorkersOOMKilled",
            expr=f"sum by (SessionName, NodeAddress) (\n{_events(_EVICTIONS, '%(event_alert_window)s', '  ')}\n) > 0",
            for_="0m",
            severity="warning",
            summary="Ray killed workers to avoid running out of memory.",
            description="Ray's memory monitor on {{ $labels.NodeAddress }} ({{ $labels.SessionName }}) killed workers "
            'to free memory within %(event_alert_window)s (kills: {{ printf "%%.0f" $value }}); their tasks fail '
            "with OutOfMemoryError or are retried.",
        ),
    ),
)
