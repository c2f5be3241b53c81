"""Alerts on GPU health (NVML via the gpu collector) and on GPUs that Ray jobs hold without using."""

from __future__ import annotations

from raylens.rules.model import Alert, AlertGroup

# Clock-event reasons that mean the GPU is being slowed against its will. sw_power_cap is left out:
# a busy GPU sits at its power cap by design.
_THROTTLE_REASONS = "hw_slowdown|hw_thermal_slowdown|hw_power_brake_slowdown|sw_thermal_slowdown"

# An XID event in the window: the last-seen timestamp moved, or its series is new (the first event of
# a code creates the series, which changes() and increase() cannot see).
_XID_SEEN = (
    "changes(raylens_gpu_xid_last_seen_timestamp_seconds{{{selector}}}[%(gpu_xid_window)s]) > 0\n"
    "or\n"
    "(\n"
    "  raylens_gpu_xid_last_seen_timestamp_seconds{{{selector}}}\n"
    "  unless\n"
    "  raylens_gpu_xid_last_seen_timestamp_seconds{{{selector}}} offset %(gpu_xid_window)s\n"
    ")"
)

_XID_DESCRIPTION = (
    "GPU {{ $labels.gpu }} ({{ $labels.model_name }}, {{ $labels.UUID }}) on {{ $labels.instance }} reported "
    "XID {{ $labels.xid }} within the last %(gpu_xid_window)s."
)

GPU = AlertGroup(
    "raylens-gpu",
    (
        Alert(
            name="RaylensGpuLost",
            expr="raylens_gpu_up{%(exporter_selector)s} == 0",
            for_="%(gpu_hardware_alert_for)s",
            severity="critical",
            summary="A GPU fell off the bus.",
            description="GPU {{ $labels.gpu }} ({{ $labels.model_name }}, {{ $labels.UUID }}, PCI "
            "{{ $labels.pci_bus_id }}) on {{ $labels.instance }} no longer answers NVML; work scheduled on it "
            "fails until the GPU is reset or the node replaced.",
        ),
        Alert(
            name="RaylensGpuXidError",
            expr=_XID_SEEN.format(selector='%(exporter_selector)s, xid=~"%(gpu_xid_critical_codes)s"'),
            for_="0m",
            severity="critical",
            summary="A GPU reported a critical XID error.",
            description=_XID_DESCRIPTION + " This code means a hardware, firmware or driver fault: drain the "
            "node and reset the GPU.",
        ),
        Alert(
            name="RaylensGpuXidError",
            expr=_XID_SEEN.format(
                selector='%(exporter_selector)s, xid!~"%(gpu_xid_critical_codes)s", xid!~"%(gpu_xid_ignored_codes)s"'
            ),
            for_="0m",
            severity="warning",
            summary="A GPU reported an XID error.",
            description=_XID_DESCRIPTION + " Usually an application fault (bad memory access, killed "
            "kernel); repeated codes on one GPU point at the hardware.",
        ),
        Alert(
            name="RaylensGpuEccUncorrectableErrors",
            expr='raylens_gpu_ecc_errors_total{%(exporter_selector)s, error_type="uncorrected"} > 0',
            for_="%(gpu_hardware_alert_for)s",
            severity="critical",
            summary="A GPU has uncorrectable memory errors.",
            description="GPU {{ $labels.gpu }} ({{ $labels.model_name }}, {{ $labels.UUID }}) on "
            "{{ $labels.instance }} has counted {{ $value }} uncorrectable ECC errors since its driver loaded; "
            "the processes using that memory got corrupt data or were killed.",
        ),
        Alert(
            name="RaylensGpuRowRemapFailed",
            expr="raylens_gpu_row_remap_failed{%(exporter_selector)s} == 1",
            for_="%(gpu_hardware_alert_for)s",
            severity="critical",
            summary="A GPU ran out of spare memory rows.",
            description="GPU {{ $labels.gpu }} ({{ $labels.model_name }}, {{ $labels.UUID }}) on "
            "{{ $labels.instance }} failed to remap a faulty memory row; it needs servicing or replacing.",
        ),
        Alert(
            name="RaylensGpuMemoryRepairPending",
            expr="raylens_gpu_row_remap_pending{%(exporter_selector)s} == 1\n"
            "or\n"
            "raylens_gpu_retired_pages_pending{%(exporter_selector)s} == 1",
            for_="%(gpu_hardware_alert_for)s",
            severity="warning",
            summary="A GPU needs a reset to repair its memory.",
            description="GPU {{ $labels.gpu }} ({{ $labels.model_name }}, {{ $labels.UUID }}) on "
            "{{ $labels.instance }} has a row remap or page retirement waiting for the next GPU reset; until "
            "then the faulty memory can fail again.",
        ),
        Alert(
            name="RaylensGpuThrottled",
            expr="max_over_time(raylens_gpu_clocks_event_reason"
            f'{{%(exporter_selector)s, reason=~"{_THROTTLE_REASONS}"}}[5m]) == 1',
            for_="%(gpu_throttling_for)s",
            severity="warning",
            summary="A GPU is being slowed down by heat or power.",
            description="GPU {{ $labels.gpu }} ({{ $labels.model_name }}) on {{ $labels.instance }} has had its "
            "clocks cut ({{ $labels.reason }}) in every 5 minutes for %(gpu_throttling_for)s; its kernels run "
            "slower than the same job elsewhere.",
        ),
        Alert(
            name="RaylensGpuIdleWhileHeld",
            expr="instance_gpu_job:raylens_gpu_utilisation:avg5m{%(exporter_selector)s} < %(gpu_idle_percent)s / 100",
            for_="%(gpu_idle_for)s",
            severity="warning",
            summary="A Ray job holds a GPU it does not use.",
            description="Ray job {{ $labels.job_id }} holds memory on GPU {{ $labels.gpu }} ({{ $labels.model_name }}) "
            "on {{ $labels.instance }}, but the GPU has stayed below %(gpu_idle_percent)s%% utilisation for "
            "%(gpu_idle_for)s (now {{ $value | humanizePercentage }}); it is paid for and unavailable to others.",
        ),
    ),
)
