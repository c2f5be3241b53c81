"""Every metric family the GPU collector can emit: name, type, HELP text and labels.

One table, so docs/metrics.md (checked by tests/test_docs.py) and the sections that fill the families
read the same names.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily, Metric

GPU_LABELS = ("gpu", "UUID", "model_name", "pci_bus_id")
MIG_LABELS = ("GPU_I_ID", "GPU_I_PROFILE")
PROCESS_LABELS = (
    "gpu",
    "UUID",
    "GPU_I_ID",
    "pid",
    "process_type",
    "job_id",
    "actor_id",
    "actor_class",
    "task_name",
    "ray_worker",
)


@dataclass(frozen=True)
class MetricSpec:
    """One exported family. ``name`` is the exposition name; counters gain ``_total`` on the wire."""

    name: str
    kind: str  # gauge | counter | info
    help: str
    labels: tuple[str, ...] = GPU_LABELS


def _gauge(name: str, help_text: str, labels: tuple[str, ...] = GPU_LABELS) -> MetricSpec:
    return MetricSpec(name, "gauge", help_text, labels)


def _counter(name: str, help_text: str, labels: tuple[str, ...] = GPU_LABELS) -> MetricSpec:
    return MetricSpec(name, "counter", help_text, labels)


# Every family the collector can emit, by key; docs/metrics.md lists each with its NVML call.
METRICS: Mapping[str, MetricSpec] = {
    "info": MetricSpec(
        "raylens_gpu",
        "info",
        "GPU identity, value 1; joins with DCGM exporter series on gpu, UUID, model_name, pci_bus_id.",
        (*GPU_LABELS, "driver_version", "mig_mode"),
    ),
    "up": _gauge("raylens_gpu_up", "1 if NVML answers for this GPU, 0 if it is lost or unreadable."),
    "devices": _gauge("raylens_gpu_devices", "GPUs NVML reports on this host.", ()),
    "utilisation": _gauge(
        "raylens_gpu_utilisation_ratio",
        "Share of the last sample period (1/6 s to 1 s) in which a kernel ran (0-1).",
    ),
    "memory_copy_utilisation": _gauge(
        "raylens_gpu_memory_copy_utilisation_ratio",
        "Share of the last sample period in which device memory was read or written (0-1).",
    ),
    "memory_used": _gauge(
        "raylens_gpu_memory_used_bytes",
        "Framebuffer memory allocated (reserved memory excluded where the driver reports it).",
        GPU_LABELS + MIG_LABELS,
    ),
    "memory_free": _gauge("raylens_gpu_memory_free_bytes", "Framebuffer memory free.", GPU_LABELS + MIG_LABELS),
    "memory_total": _gauge("raylens_gpu_memory_total_bytes", "Framebuffer memory installed.", GPU_LABELS + MIG_LABELS),
    "memory_reserved": _gauge(
        "raylens_gpu_memory_reserved_bytes",
        "Framebuffer memory the driver and firmware reserve.",
        GPU_LABELS + MIG_LABELS,
    ),
    "power_usage": _gauge("raylens_gpu_power_usage_watts", "Power draw of the board."),
    "power_limit": _gauge(
        "raylens_gpu_power_limit_watts", "Power limit the driver enforces (the lowest of all limits)."
    ),
    "energy": _counter("raylens_gpu_energy_joules", "Energy consumed since the driver was loaded."),
    "temperature": _gauge("raylens_gpu_temperature_celsius", "GPU die temperature."),
    "sm_clock": _gauge("raylens_gpu_sm_clock_hertz", "Streaming multiprocessor clock."),
    "memory_clock": _gauge("raylens_gpu_memory_clock_hertz", "Memory clock."),
    "fan_speed": _gauge(
        "raylens_gpu_fan_speed_ratio", "Fan speed as a share of its maximum (0-1); absent on passive cards."
    ),
    "pcie_transmit": _gauge(
        "raylens_gpu_pcie_transmit_bytes_per_second", "PCIe bytes per second sent by the GPU (20 ms sample)."
    ),
    "pcie_receive": _gauge(
        "raylens_gpu_pcie_receive_bytes_per_second",
        "PCIe bytes per second received by the GPU (20 ms sample).",
    ),
    "performance_state": _gauge(
        "raylens_gpu_performance_state", "Performance state: 0 (P0, maximum) to 15 (P15, minimum)."
    ),
    "clocks_event_reason": _gauge(
        "raylens_gpu_clocks_event_reason",
        "1 while this reason holds clocks down (a 'throttle reason'), else 0; only reasons the GPU supports.",
        (*GPU_LABELS, "reason"),
    ),
    "ecc_enabled": _gauge("raylens_gpu_ecc_enabled", "1 if ECC is on, 0 if off; absent without ECC."),
    "ecc_errors": _counter(
        "raylens_gpu_ecc_errors",
        "ECC errors since the driver was loaded (volatile counters).",
        (*GPU_LABELS, "error_type"),
    ),
    "ecc_aggregate_errors": _counter(
        "raylens_gpu_ecc_aggregate_errors",
        "ECC errors over the GPU's lifetime (aggregate counters, kept in the infoROM).",
        (*GPU_LABELS, "error_type"),
    ),
    "remapped_rows": _counter(
        "raylens_gpu_remapped_rows",
        "Memory rows remapped, by the kind of error that caused it (HBM GPUs: A100, H100 and later).",
        (*GPU_LABELS, "error_type"),
    ),
    "row_remap_pending": _gauge("raylens_gpu_row_remap_pending", "1 if a row remap waits for the next GPU reset."),
    "row_remap_failed": _gauge("raylens_gpu_row_remap_failed", "1 if a row remap failed: the GPU needs servicing."),
    "retired_pages": _counter(
        "raylens_gpu_retired_pages",
        "Framebuffer pages retired, by cause (GPUs before Ampere HBM, and GDDR cards).",
        (*GPU_LABELS, "cause"),
    ),
    "retired_pages_pending": _gauge(
        "raylens_gpu_retired_pages_pending", "1 if a page retirement waits for the next driver reload."
    ),
    "mig_instance": MetricSpec(
        "raylens_gpu_mig_instance",
        "info",
        "A MIG GPU instance on this GPU, value 1.",
        (*GPU_LABELS, *MIG_LABELS, "compute_instance_id", "mig_uuid"),
    ),
    "xid_errors": _counter(
        "raylens_gpu_xid_errors",
        "XID errors seen since the exporter started, by XID code (DCGM keeps only the last code).",
        (*GPU_LABELS, "xid"),
    ),
    "xid_last_seen": _gauge(
        "raylens_gpu_xid_last_seen_timestamp_seconds",
        "When the exporter last read this XID code from NVML (Unix time; within one scrape of the event).",
        (*GPU_LABELS, "xid"),
    ),
    "processes": _gauge(
        "raylens_gpu_processes", "Processes with a context on this GPU (compute or graphics), uncapped."
    ),
    "process_memory_used": _gauge(
        "raylens_gpu_process_memory_used_bytes",
        "GPU memory a process holds, with the Ray job, actor and task it belongs to.",
        PROCESS_LABELS,
    ),
    "process_series_dropped": _counter(
        "raylens_gpu_process_series_dropped",
        "Process series left out because a scrape exceeded gpu.max_process_series (smallest first).",
        (),
    ),
    "nvml": MetricSpec(
        "raylens_gpu_nvml",
        "info",
        "Whether NVML is usable (status ok|unavailable), why not, and its versions; value 1.",
        ("status", "reason", "driver_version", "nvml_version"),
    ),
}


def empty_family(spec: MetricSpec) -> Metric:
    """A fresh, empty family for ``spec``; collectors build new ones on every scrape."""
    if spec.kind == "counter":
        return CounterMetricFamily(spec.name, spec.help, labels=list(spec.labels))
    if spec.kind == "info":
        return InfoMetricFamily(spec.name, spec.help, labels=list(spec.labels))
    return GaugeMetricFamily(spec.name, spec.help, labels=list(spec.labels))


# The families the devices section builds; the other sections build their own.
DEVICE_FAMILIES = frozenset(METRICS) - {
    "xid_errors",
    "xid_last_seen",
    "processes",
    "process_memory_used",
    "process_series_dropped",
    "nvml",
}
