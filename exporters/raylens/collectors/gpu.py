"""NVIDIA GPUs through NVML, under DCGM exporter's label names, each GPU process attributed to Ray.

Per GPU: utilisation, framebuffer, power and energy, temperature, clocks, fan, PCIe throughput,
performance state, clock event (throttle) reasons, ECC, remapped rows and retired pages, and XID
errors counted by code. MIG instances get their own framebuffer series with ``GPU_I_ID`` and
``GPU_I_PROFILE``. Every GPU series carries DCGM's ``gpu``, ``UUID``, ``model_name`` and
``pci_bus_id`` so PromQL joins with ``DCGM_FI_*`` series on the same labels. Values are in base units
(NVML's mW, mJ, MHz, KB/s and percents are converted). Sample (labels abridged to ``…``)::

    raylens_gpu_info{UUID="GPU-5d2b…",driver_version="550.90.07",gpu="0",mig_mode="disabled",
                     model_name="NVIDIA H100 80GB HBM3",pci_bus_id="00000000:18:00.0"} 1.0
    raylens_gpu_up{…} 1.0
    raylens_gpu_utilisation_ratio{…} 0.97
    raylens_gpu_memory_used_bytes{GPU_I_ID="",GPU_I_PROFILE="",…} 7.5e+10
    raylens_gpu_power_usage_watts{…} 645.123
    raylens_gpu_energy_joules_total{…} 4.3e+06
    raylens_gpu_clocks_event_reason{…,reason="sw_power_cap"} 1.0
    raylens_gpu_xid_errors_total{…,xid="79"} 1.0
    raylens_gpu_process_memory_used_bytes{GPU_I_ID="",UUID="GPU-5d2b…",actor_class="LLMServer",actor_id="",
        gpu="0",job_id="02000000",pid="48213",process_type="compute",ray_worker="actor",
        task_name="LLMServer.generate"} 7.4e+10

A capability a card lacks (fan on a passive card, ECC on a GeForce, utilisation on a MIG-enabled GPU)
is logged once and skipped, never an error, and not asked again. Without NVML (no library, no GPU,
driver gone) every scrape reports ``raylens_scrape_collector_success{collector="gpu"} 0`` with the
reason in ``raylens_gpu_nvml_info`` and the log, the other collectors carry on, and NVML is tried again
with exponential backoff so the collector recovers by itself. A GPU that falls off the bus
(``NVML_ERROR_GPU_IS_LOST``) is reported by ``raylens_gpu_up 0``; the others keep reporting.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily, Metric

from raylens.collectors.base import Collector, Section
from raylens.config import GpuConfig, RaylensConfig
from raylens.gpu.attribution import (
    Attributor,
    LayeredAttributor,
    ProcAttributor,
    ProcessAttribution,
    ProcessReader,
    RayStateAttributor,
    http_state_fetcher,
    procfs_reader,
)

log = logging.getLogger("raylens.gpu")

# Test and demo aid: the exporter reads NVML answers from this fixture instead of the driver.
FAKE_NVML_VARIABLE = "RAYLENS_FAKE_NVML"

# NVML ABI values (nvml.h). They have not changed across driver branches, so the collector needs
# only functions and NVMLError from the module it is given.
NVML_ERROR_UNINITIALIZED = 1
NVML_ERROR_INVALID_ARGUMENT = 2
NVML_ERROR_NOT_SUPPORTED = 3
NVML_ERROR_NO_PERMISSION = 4
NVML_ERROR_NOT_FOUND = 6
NVML_ERROR_DRIVER_NOT_LOADED = 9
NVML_ERROR_TIMEOUT = 10
NVML_ERROR_LIBRARY_NOT_FOUND = 12
NVML_ERROR_FUNCTION_NOT_FOUND = 13
NVML_ERROR_GPU_IS_LOST = 15
NVML_ERROR_RESET_REQUIRED = 16
NVML_ERROR_LIB_RM_VERSION_MISMATCH = 18
NVML_ERROR_VGPU_ECC_NOT_SUPPORTED = 22
NVML_ERROR_ARGUMENT_VERSION_MISMATCH = 25
NVML_ERROR_DEPRECATED = 26
NVML_ERROR_GPU_NOT_FOUND = 28
ERROR_NAMES = {
    1: "NVML_ERROR_UNINITIALIZED",
    2: "NVML_ERROR_INVALID_ARGUMENT",
    3: "NVML_ERROR_NOT_SUPPORTED",
    4: "NVML_ERROR_NO_PERMISSION",
    5: "NVML_ERROR_ALREADY_INITIALIZED",
    6: "NVML_ERROR_NOT_FOUND",
    7: "NVML_ERROR_INSUFFICIENT_SIZE",
    8: "NVML_ERROR_INSUFFICIENT_POWER",
    9: "NVML_ERROR_DRIVER_NOT_LOADED",
    10: "NVML_ERROR_TIMEOUT",
    11: "NVML_ERROR_IRQ_ISSUE",
    12: "NVML_ERROR_LIBRARY_NOT_FOUND",
    13: "NVML_ERROR_FUNCTION_NOT_FOUND",
    14: "NVML_ERROR_CORRUPTED_INFOROM",
    15: "NVML_ERROR_GPU_IS_LOST",
    16: "NVML_ERROR_RESET_REQUIRED",
    17: "NVML_ERROR_OPERATING_SYSTEM",
    18: "NVML_ERROR_LIB_RM_VERSION_MISMATCH",
    19: "NVML_ERROR_IN_USE",
    20: "NVML_ERROR_MEMORY",
    21: "NVML_ERROR_NO_DATA",
    22: "NVML_ERROR_VGPU_ECC_NOT_SUPPORTED",
    23: "NVML_ERROR_INSUFFICIENT_RESOURCES",
    24: "NVML_ERROR_FREQ_NOT_SUPPORTED",
    25: "NVML_ERROR_ARGUMENT_VERSION_MISMATCH",
    26: "NVML_ERROR_DEPRECATED",
    27: "NVML_ERROR_NOT_READY",
    28: "NVML_ERROR_GPU_NOT_FOUND",
    29: "NVML_ERROR_INVALID_STATE",
    30: "NVML_ERROR_RESET_TYPE_NOT_SUPPORTED",
    999: "NVML_ERROR_UNKNOWN",
}
# The card or driver cannot answer this call, now or later: skip it for good.
_UNSUPPORTED = frozenset(
    {
        NVML_ERROR_NOT_SUPPORTED,
        NVML_ERROR_NO_PERMISSION,
        NVML_ERROR_INVALID_ARGUMENT,
        NVML_ERROR_FUNCTION_NOT_FOUND,
        NVML_ERROR_VGPU_ECC_NOT_SUPPORTED,
        NVML_ERROR_ARGUMENT_VERSION_MISMATCH,
        NVML_ERROR_DEPRECATED,
    }
)
# The GPU itself is gone until a reset.
_LOST = frozenset({NVML_ERROR_GPU_IS_LOST, NVML_ERROR_RESET_REQUIRED, NVML_ERROR_GPU_NOT_FOUND})
# NVML as a whole stopped working (driver unloaded or upgraded under us): start over.
_NVML_GONE = frozenset(
    {
        NVML_ERROR_UNINITIALIZED,
        NVML_ERROR_DRIVER_NOT_LOADED,
        NVML_ERROR_LIBRARY_NOT_FOUND,
        NVML_ERROR_LIB_RM_VERSION_MISMATCH,
    }
)

NVML_TEMPERATURE_GPU = 0
NVML_CLOCK_SM = 1
NVML_CLOCK_MEM = 2
NVML_PCIE_UTIL_TX_BYTES = 0
NVML_PCIE_UTIL_RX_BYTES = 1
NVML_MEMORY_ERROR_TYPE_CORRECTED = 0
NVML_MEMORY_ERROR_TYPE_UNCORRECTED = 1
NVML_VOLATILE_ECC = 0
NVML_AGGREGATE_ECC = 1
NVML_PAGE_RETIREMENT_CAUSE_MULTIPLE_SINGLE_BIT_ECC_ERRORS = 0
NVML_PAGE_RETIREMENT_CAUSE_DOUBLE_BIT_ECC_ERROR = 1
NVML_DEVICE_MIG_ENABLE = 1
NVML_MEMORY_V2 = 0x02000028  # nvmlMemory_v2: adds `reserved`, and `used` no longer includes it
NVML_EVENT_TYPE_XID_CRITICAL_ERROR = 0x8
NVML_VALUE_NOT_AVAILABLE = 0xFFFFFFFFFFFFFFFF

# nvmlClocksEventReason* bits (called ThrottleReason before driver 535), in nvidia-smi's order.
CLOCK_EVENT_REASONS = (
    (0x001, "gpu_idle"),
    (0x002, "applications_clocks_setting"),
    (0x004, "sw_power_cap"),
    (0x008, "hw_slowdown"),
    (0x010, "sync_boost"),
    (0x020, "sw_thermal_slowdown"),
    (0x040, "hw_thermal_slowdown"),
    (0x080, "hw_power_brake_slowdown"),
    (0x100, "display_clock_setting"),
)
_ALL_CLOCK_EVENT_REASONS = sum(bit for bit, _ in CLOCK_EVENT_REASONS)
# Events read per GPU per scrape; a storm beyond this waits in NVML's queue for the next scrape.
MAX_EVENTS_PER_SCRAPE = 1000
MEGAHERTZ = 1_000_000
KILOBYTE = 1024  # NVML's PCIe throughput is in KB/s of 1024 bytes

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


def _family(spec: MetricSpec) -> Metric:
    if spec.kind == "counter":
        return CounterMetricFamily(spec.name, spec.help, labels=list(spec.labels))
    if spec.kind == "info":
        return InfoMetricFamily(spec.name, spec.help, labels=list(spec.labels))
    return GaugeMetricFamily(spec.name, spec.help, labels=list(spec.labels))


class NvmlUnavailable(Exception):
    """NVML cannot be used at all; the message is the reason reported on every scrape."""


class _GpuLost(Exception):
    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def describe_error(error: BaseException) -> str:
    code = getattr(error, "value", None)
    if isinstance(code, int):
        return f"{ERROR_NAMES.get(code, f'NVML error {code}')}: {error}"
    return f"{type(error).__name__}: {error}"


def decode_nvml_string(value: Any) -> str:
    # pynvml decodes strings it returns, but struct fields such as PciInfo.busId stay bytes.
    if isinstance(value, bytes):
        return value.decode(errors="replace").rstrip("\0")
    return str(value)


_MIG_PROFILE = re.compile(r"\bMIG\s+(\S+)\s*$")


@dataclass(frozen=True)
class _MigInstance:
    handle: Any
    gpu_instance_id: int
    compute_instance_id: int
    profile: str
    uuid: str


@dataclass
class _Gpu:
    index: int
    handle: Any | None
    uuid: str = ""
    name: str = ""
    pci_bus_id: str = ""
    lost_reason: str = ""
    unsupported: set[str] = field(default_factory=set)
    supported_reasons: int = _ALL_CLOCK_EVENT_REASONS
    event_set: Any | None = None
    mig_mode: str = ""
    mig_instances: list[_MigInstance] = field(default_factory=list)

    @property
    def labels(self) -> list[str]:
        return [str(self.index), self.uuid, self.name, self.pci_bus_id]

    @property
    def lost(self) -> bool:
        return bool(self.lost_reason)


class GpuCollector(Collector):
    name = "gpu"

    def __init__(
        self,
        config: GpuConfig,
        nvml: ModuleType | Any | None = None,
        attribute: Attributor | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ):
        """``nvml``: the ``pynvml`` module or a fake with the same functions; default: ``pynvml``,
        imported on first use so a host without nvidia-ml-py still serves the other collectors.
        ``attribute``: ``pid -> ProcessAttribution``; default: ``/proc`` under ``config.proc_root``."""
        self._config = config
        self._nvml = nvml
        self._attribute = attribute or ProcAttributor(
            procfs_reader(config.proc_root), config.attribution_cache_seconds, clock
        )
        self._clock = clock
        self._wall_clock = wall_clock
        self._lock = threading.RLock()
        self._gpus: list[_Gpu] | None = None  # None: NVML not initialised
        self._reason = "not tried yet"
        self._driver_version = ""
        self._nvml_version = ""
        self._failed_attempts = 0
        self._next_attempt = float("-inf")
        self._logged: set[tuple[Any, ...]] = set()
        self._xid_counts: dict[str, dict[int, int]] = {}
        self._xid_last_seen: dict[str, dict[int, float]] = {}
        self._xid_labels: dict[str, list[str]] = {}
        self._dropped_process_series = 0

    # The collector contract ---------------------------------------------------------------------

    def sections(self) -> Mapping[str, Section]:
        with self._lock:
            available = self._ensure_initialised()
        if not available:
            return {"devices": self._unavailable, "nvml": self._nvml_status}
        return {
            "devices": self._devices_section,
            "processes": self._processes_section,
            "xid": self._xid_section,
            "nvml": self._nvml_status,
        }

    # NVML lifetime ------------------------------------------------------------------------------

    def _module(self) -> Any:
        if self._nvml is None:
            try:
                self._nvml = importlib.import_module("pynvml")
            except ImportError as error:
                raise NvmlUnavailable(f"nvidia-ml-py is not installed ({error})") from None
        return self._nvml

    def _ensure_initialised(self) -> bool:
        if self._gpus is not None:
            return True
        now = self._clock()
        if now < self._next_attempt:
            return False
        try:
            nvml = self._module()
        except NvmlUnavailable as error:
            self._schedule_retry(str(error), now)
            return False
        try:
            self._gpus = self._initialise(nvml)
        except NvmlUnavailable as error:
            self._schedule_retry(str(error), now)
            return False
        except nvml.NVMLError as error:
            self._schedule_retry(describe_error(error), now)
            return False
        if self._failed_attempts:
            log.info("NVML available again; GPU metrics resume", extra={"collector": self.name})
        self._failed_attempts = 0
        self._reason = ""
        return True

    def _schedule_retry(self, reason: str, now: float) -> None:
        self._failed_attempts += 1
        delay = min(
            self._config.nvml_retry_initial_seconds * 2 ** (self._failed_attempts - 1),
            self._config.nvml_retry_max_seconds,
        )
        self._next_attempt = now + delay
        self._reason = reason
        log.warning(
            "NVML unavailable; GPU metrics are off until it recovers",
            extra={"collector": self.name, "reason": reason, "retry_in_seconds": delay},
        )

    def _initialise(self, nvml: Any) -> list[_Gpu]:
        nvml.nvmlInit()
        try:
            self._driver_version = decode_nvml_string(nvml.nvmlSystemGetDriverVersion())
            try:
                self._nvml_version = decode_nvml_string(nvml.nvmlSystemGetNVMLVersion())
            except nvml.NVMLError:
                self._nvml_version = ""
            count = nvml.nvmlDeviceGetCount()
            if count == 0:
                raise NvmlUnavailable("NVML reports no GPU on this host")
            return [self._open(nvml, index) for index in range(count)]
        except BaseException:
            self._shutdown_quietly(nvml, [])
            raise

    def _open(self, nvml: Any, index: int) -> _Gpu:
        try:
            handle = nvml.nvmlDeviceGetHandleByIndex(index)
        except nvml.NVMLError as error:
            if error.value in _NVML_GONE:
                raise
            gpu = _Gpu(index, None, lost_reason=describe_error(error))
            log.warning(
                "GPU unreadable; reported with raylens_gpu_up 0",
                extra={"collector": self.name, "gpu": index, "error": gpu.lost_reason},
            )
            return gpu
        gpu = _Gpu(index, handle)
        try:
            gpu.uuid = decode_nvml_string(nvml.nvmlDeviceGetUUID(handle))
            gpu.name = decode_nvml_string(nvml.nvmlDeviceGetName(handle))
            gpu.pci_bus_id = decode_nvml_string(nvml.nvmlDeviceGetPciInfo(handle).busId)
            supported = self._read(gpu, "supported_clock_event_reasons", nvml.nvmlDeviceGetSupportedClocksEventReasons)
            if supported is None:
                supported = self._read(
                    gpu, "supported_clock_throttle_reasons", nvml.nvmlDeviceGetSupportedClocksThrottleReasons
                )
            if supported is not None:
                gpu.supported_reasons = int(supported)
        except _GpuLost as lost:
            self._mark_lost(gpu, lost.reason)
            return gpu
        except nvml.NVMLError as error:
            if error.value in _NVML_GONE:
                raise
            self._mark_lost(gpu, describe_error(error))
            return gpu
        gpu.event_set = self._register_xid_events(nvml, gpu)
        return gpu

    def _register_xid_events(self, nvml: Any, gpu: _Gpu) -> Any | None:
        event_set = None
        try:
            event_set = nvml.nvmlEventSetCreate()
            nvml.nvmlDeviceRegisterEvents(gpu.handle, NVML_EVENT_TYPE_XID_CRITICAL_ERROR, event_set)
            return event_set
        except nvml.NVMLError as error:
            if error.value in _NVML_GONE:
                raise
            self._log_once(
                ("xid", gpu.uuid),
                logging.INFO,
                "XID events not available on this GPU; raylens_gpu_xid_errors_total stays absent",
                gpu,
                "nvmlDeviceRegisterEvents",
                error,
            )
            if event_set is not None:
                with contextlib.suppress(nvml.NVMLError):
                    nvml.nvmlEventSetFree(event_set)
            return None

    def _shutdown_quietly(self, nvml: Any, gpus: list[_Gpu]) -> None:
        # Best effort: the driver may already be gone, which is why we are here.
        for gpu in gpus:
            if gpu.event_set is not None:
                with contextlib.suppress(Exception):
                    nvml.nvmlEventSetFree(gpu.event_set)
        with contextlib.suppress(Exception):
            nvml.nvmlShutdown()

    def _nvml_gone(self, error: BaseException) -> NvmlUnavailable:
        """NVML failed as a whole mid-run: release it and try again later, backing off."""
        reason = describe_error(error)
        self._shutdown_quietly(self._module(), self._gpus or [])
        self._gpus = None
        self._schedule_retry(reason, self._clock())
        return NvmlUnavailable(reason)

    # Reading one value --------------------------------------------------------------------------

    def _read(self, gpu: _Gpu, capability: str, call: Callable[..., Any], *arguments: Any) -> Any:
        """``call(gpu.handle, *arguments)``, or None when the GPU cannot answer it (logged once,
        never asked again if it never will). Raises ``_GpuLost``; NVML-wide errors propagate."""
        return self._read_on(gpu, gpu.handle, capability, call, *arguments)

    def _read_on(self, gpu: _Gpu, handle: Any, capability: str, call: Callable[..., Any], *arguments: Any) -> Any:
        if capability in gpu.unsupported:
            return None
        nvml = self._module()
        try:
            return call(handle, *arguments)
        except nvml.NVMLError as error:
            code = error.value
            if code in _NVML_GONE:
                raise
            if code in _LOST:
                raise _GpuLost(describe_error(error)) from None
            if code in _UNSUPPORTED:
                gpu.unsupported.add(capability)
                self._log_once(
                    ("unsupported", gpu.uuid, capability),
                    logging.INFO,
                    "GPU capability not available; skipped",
                    gpu,
                    capability,
                    error,
                )
            else:
                self._log_once(
                    ("failed", gpu.uuid, capability, code),
                    logging.WARNING,
                    "GPU reading failed; skipped on this scrape",
                    gpu,
                    capability,
                    error,
                )
            return None

    def _log_once(
        self, key: tuple[Any, ...], level: int, message: str, gpu: _Gpu, call: str, error: BaseException
    ) -> None:
        if key in self._logged:
            return
        self._logged.add(key)
        log.log(
            level,
            message,
            extra={
                "collector": self.name,
                "gpu": gpu.index,
                "uuid": gpu.uuid,
                "call": call,
                "error": describe_error(error),
            },
        )

    def _mark_lost(self, gpu: _Gpu, reason: str) -> None:
        if not gpu.lost:
            log.warning(
                "GPU lost; reported with raylens_gpu_up 0 until it is reset",
                extra={"collector": self.name, "gpu": gpu.index, "uuid": gpu.uuid, "error": reason},
            )
        gpu.lost_reason = reason
        gpu.mig_instances = []

    # Sections -----------------------------------------------------------------------------------

    def _unavailable(self) -> Iterator[Metric]:
        raise NvmlUnavailable(self._reason)

    def _nvml_status(self) -> Iterator[Metric]:
        status = _family(METRICS["nvml"])
        with self._lock:
            ok = self._gpus is not None
            status.add_metric(
                [
                    "ok" if ok else "unavailable",
                    "" if ok else self._reason,
                    self._driver_version,
                    self._nvml_version,
                ],
                {},
            )
        yield status

    def _devices_section(self) -> Iterator[Metric]:
        with self._lock:
            if self._gpus is None:  # a concurrent scrape lost NVML after this one started
                raise NvmlUnavailable(self._reason)
            nvml = self._module()
            families = {key: _family(spec) for key, spec in METRICS.items() if key in _DEVICE_FAMILIES}
            families["devices"].add_metric([], float(len(self._gpus)))
            for gpu in self._gpus:
                readings: list[tuple[str, list[str], float]] = []
                if not gpu.lost:
                    try:
                        self._read_gpu(nvml, gpu, readings)
                    except _GpuLost as lost:
                        self._mark_lost(gpu, lost.reason)
                        readings = []
                    except nvml.NVMLError as error:
                        raise self._nvml_gone(error) from None
                for key, labels, value in readings:
                    families[key].add_metric(labels, value)
                for instance in gpu.mig_instances:
                    families["mig_instance"].add_metric(
                        [
                            *gpu.labels,
                            str(instance.gpu_instance_id),
                            instance.profile,
                            str(instance.compute_instance_id),
                            instance.uuid,
                        ],
                        {},
                    )
                families["info"].add_metric([*gpu.labels, self._driver_version, gpu.mig_mode], {})
                families["up"].add_metric(gpu.labels, 0.0 if gpu.lost else 1.0)
            yield from (family for family in families.values() if family.samples)

    def _read_gpu(self, nvml: Any, gpu: _Gpu, out: list[tuple[str, list[str], float]]) -> None:
        labels = gpu.labels

        def add(key: str, value: float, *extra: str) -> None:
            out.append((key, [*labels, *extra], float(value)))

        mig_mode = self._read(gpu, "mig_mode", nvml.nvmlDeviceGetMigMode)
        mig_enabled = mig_mode is not None and int(mig_mode[0]) == NVML_DEVICE_MIG_ENABLE
        gpu.mig_mode = "" if mig_mode is None else ("enabled" if mig_enabled else "disabled")

        utilisation = self._read(gpu, "utilisation", nvml.nvmlDeviceGetUtilizationRates)
        if utilisation is not None:
            add("utilisation", utilisation.gpu / 100.0)
            add("memory_copy_utilisation", utilisation.memory / 100.0)

        if mig_enabled:
            # Framebuffer belongs to the instances; the parent's own figure would double count.
            gpu.mig_instances = self._mig_instances(nvml, gpu)
            for instance in gpu.mig_instances:
                self._read_memory(
                    nvml, gpu, instance.handle, "mig_", add, str(instance.gpu_instance_id), instance.profile
                )
        else:
            gpu.mig_instances = []
            self._read_memory(nvml, gpu, gpu.handle, "", add, "", "")

        power = self._read(gpu, "power_usage", nvml.nvmlDeviceGetPowerUsage)
        if power is not None:
            add("power_usage", power / 1000.0)
        limit = self._read(gpu, "power_limit", nvml.nvmlDeviceGetEnforcedPowerLimit)
        if limit is not None:
            add("power_limit", limit / 1000.0)
        energy = self._read(gpu, "energy", nvml.nvmlDeviceGetTotalEnergyConsumption)
        if energy is not None:
            add("energy", energy / 1000.0)
        temperature = self._read(gpu, "temperature", nvml.nvmlDeviceGetTemperature, NVML_TEMPERATURE_GPU)
        if temperature is not None:
            add("temperature", temperature)
        sm_clock = self._read(gpu, "sm_clock", nvml.nvmlDeviceGetClockInfo, NVML_CLOCK_SM)
        if sm_clock is not None:
            add("sm_clock", sm_clock * MEGAHERTZ)
        memory_clock = self._read(gpu, "memory_clock", nvml.nvmlDeviceGetClockInfo, NVML_CLOCK_MEM)
        if memory_clock is not None:
            add("memory_clock", memory_clock * MEGAHERTZ)
        fan = self._read(gpu, "fan_speed", nvml.nvmlDeviceGetFanSpeed)
        if fan is not None:
            add("fan_speed", fan / 100.0)
        transmit = self._read(gpu, "pcie_transmit", nvml.nvmlDeviceGetPcieThroughput, NVML_PCIE_UTIL_TX_BYTES)
        if transmit is not None:
            add("pcie_transmit", transmit * KILOBYTE)
        receive = self._read(gpu, "pcie_receive", nvml.nvmlDeviceGetPcieThroughput, NVML_PCIE_UTIL_RX_BYTES)
        if receive is not None:
            add("pcie_receive", receive * KILOBYTE)
        pstate = self._read(gpu, "performance_state", nvml.nvmlDeviceGetPerformanceState)
        if pstate is not None and 0 <= pstate <= 15:  # 32 is NVML_PSTATE_UNKNOWN
            add("performance_state", pstate)

        reasons = self._read(gpu, "clock_event_reasons", nvml.nvmlDeviceGetCurrentClocksEventReasons)
        if reasons is None and "clock_event_reasons" in gpu.unsupported:
            # Drivers before 535 know only the older name of the same call.
            reasons = self._read(gpu, "clock_throttle_reasons", nvml.nvmlDeviceGetCurrentClocksThrottleReasons)
        if reasons is not None:
            for bit, reason in CLOCK_EVENT_REASONS:
                if gpu.supported_reasons & bit:
                    add("clocks_event_reason", 1.0 if int(reasons) & bit else 0.0, reason)

        self._read_memory_errors(nvml, gpu, add)

    def _read_memory(
        self,
        nvml: Any,
        gpu: _Gpu,
        handle: Any,
        prefix: str,
        add: Callable[..., None],
        instance_id: str,
        profile: str,
    ) -> None:
        memory = self._read_on(gpu, handle, prefix + "memory_v2", nvml.nvmlDeviceGetMemoryInfo, NVML_MEMORY_V2)
        if memory is None and prefix + "memory_v2" in gpu.unsupported:
            memory = self._read_on(gpu, handle, prefix + "memory", nvml.nvmlDeviceGetMemoryInfo)
        if memory is None:
            return
        add("memory_used", memory.used, instance_id, profile)
        add("memory_free", memory.free, instance_id, profile)
        add("memory_total", memory.total, instance_id, profile)
        reserved = getattr(memory, "reserved", None)
        if reserved is not None:
            add("memory_reserved", reserved, instance_id, profile)

    def _mig_instances(self, nvml: Any, gpu: _Gpu) -> list[_MigInstance]:
        slots = self._read(gpu, "mig_device_count", nvml.nvmlDeviceGetMaxMigDeviceCount) or 0
        instances = []
        for slot in range(int(slots)):
            try:
                handle = nvml.nvmlDeviceGetMigDeviceHandleByIndex(gpu.handle, slot)
            except nvml.NVMLError as error:
                if error.value in (NVML_ERROR_NOT_FOUND, NVML_ERROR_INVALID_ARGUMENT):
                    continue  # an empty slot
                if error.value in _LOST:
                    raise _GpuLost(describe_error(error)) from None
                if error.value in _NVML_GONE:
                    raise
                self._log_once(
                    ("mig-slot", gpu.uuid, slot, error.value),
                    logging.WARNING,
                    "MIG instance unreadable; skipped",
                    gpu,
                    "nvmlDeviceGetMigDeviceHandleByIndex",
                    error,
                )
                continue
            gpu_instance = self._read_on(gpu, handle, "mig_gpu_instance_id", nvml.nvmlDeviceGetGpuInstanceId)
            if gpu_instance is None:
                continue
            compute_instance = self._read_on(
                gpu, handle, "mig_compute_instance_id", nvml.nvmlDeviceGetComputeInstanceId
            )
            name = decode_nvml_string(self._read_on(gpu, handle, "mig_name", nvml.nvmlDeviceGetName) or "")
            match = _MIG_PROFILE.search(name)
            instances.append(
                _MigInstance(
                    handle=handle,
                    gpu_instance_id=int(gpu_instance),
                    compute_instance_id=-1 if compute_instance is None else int(compute_instance),
                    profile=match.group(1) if match else "",
                    uuid=decode_nvml_string(self._read_on(gpu, handle, "mig_uuid", nvml.nvmlDeviceGetUUID) or ""),
                )
            )
        return instances

    def _read_memory_errors(self, nvml: Any, gpu: _Gpu, add: Callable[..., None]) -> None:
        ecc_mode = self._read(gpu, "ecc_mode", nvml.nvmlDeviceGetEccMode)
        if ecc_mode is not None:
            ecc_enabled = int(ecc_mode[0]) == 1
            add("ecc_enabled", 1.0 if ecc_enabled else 0.0)
            if ecc_enabled:
                for error_type, code in (
                    ("corrected", NVML_MEMORY_ERROR_TYPE_CORRECTED),
                    ("uncorrected", NVML_MEMORY_ERROR_TYPE_UNCORRECTED),
                ):
                    for key, counter in (
                        ("ecc_errors", NVML_VOLATILE_ECC),
                        ("ecc_aggregate_errors", NVML_AGGREGATE_ECC),
                    ):
                        count = self._read(gpu, f"{key}_{error_type}", nvml.nvmlDeviceGetTotalEccErrors, code, counter)
                        if count is not None:
                            add(key, count, error_type)
        rows = self._read(gpu, "remapped_rows", nvml.nvmlDeviceGetRemappedRows)
        if rows is not None:
            correctable, uncorrectable, pending, failed = (int(value) for value in rows)
            add("remapped_rows", correctable, "correctable")
            add("remapped_rows", uncorrectable, "uncorrectable")
            add("row_remap_pending", 1.0 if pending else 0.0)
            add("row_remap_failed", 1.0 if failed else 0.0)
        for cause, code in (
            ("multiple_single_bit_ecc", NVML_PAGE_RETIREMENT_CAUSE_MULTIPLE_SINGLE_BIT_ECC_ERRORS),
            ("double_bit_ecc", NVML_PAGE_RETIREMENT_CAUSE_DOUBLE_BIT_ECC_ERROR),
        ):
            pages = self._read(gpu, f"retired_pages_{cause}", nvml.nvmlDeviceGetRetiredPages, code)
            if pages is not None:
                add("retired_pages", len(pages), cause)
        pending_retirement = self._read(gpu, "retired_pages_pending", nvml.nvmlDeviceGetRetiredPagesPendingStatus)
        if pending_retirement is not None:
            add("retired_pages_pending", 1.0 if pending_retirement else 0.0)

    def _processes_section(self) -> Iterator[Metric]:
        with self._lock:
            if self._gpus is None:
                return  # NVML failed earlier in this scrape; the devices section reported it
            nvml = self._module()
            counts = _family(METRICS["processes"])
            entries: list[tuple[float, int, int, str, str, str]] = []
            for gpu in self._gpus:
                if gpu.lost:
                    continue
                targets = (
                    [(instance.handle, str(instance.gpu_instance_id)) for instance in gpu.mig_instances]
                    if gpu.mig_mode == "enabled"
                    else [(gpu.handle, "")]
                )
                try:
                    found = 0
                    for handle, instance_id in targets:
                        for pid, (kinds, used) in sorted(self._gpu_processes(nvml, gpu, handle).items()):
                            found += 1
                            if used is not None:
                                entries.append((float(used), gpu.index, pid, instance_id, "+".join(kinds), gpu.uuid))
                except _GpuLost as lost:
                    self._mark_lost(gpu, lost.reason)
                    continue
                except nvml.NVMLError as error:
                    raise self._nvml_gone(error) from None
                counts.add_metric(gpu.labels, float(found))

            # Biggest holders first: under the cap, the series that explain the memory survive.
            entries.sort(key=lambda entry: (-entry[0], entry[1], entry[2], entry[3]))
            cap = self._config.max_process_series
            kept, dropped = entries[:cap], entries[cap:]
            if dropped:
                self._dropped_process_series += len(dropped)
                self._log_cap_once(len(entries), cap)
            memory = _family(METRICS["process_memory_used"])
            attributions: dict[int, ProcessAttribution] = {}
            for used, index, pid, instance_id, kinds, uuid in kept:
                attribution = attributions.get(pid)
                if attribution is None:
                    attribution = attributions[pid] = self._attribute_safely(pid)
                memory.add_metric(
                    [
                        str(index),
                        uuid,
                        instance_id,
                        str(pid),
                        kinds,
                        attribution.job_id,
                        attribution.actor_id,
                        attribution.actor_class,
                        attribution.task_name,
                        attribution.ray_worker,
                    ],
                    used,
                )
            dropped_family = _family(METRICS["process_series_dropped"])
            dropped_family.add_metric([], float(self._dropped_process_series))
            yield from (family for family in (counts, memory, dropped_family) if family.samples)

    def _gpu_processes(self, nvml: Any, gpu: _Gpu, handle: Any) -> dict[int, tuple[list[str], int | None]]:
        """PID -> (["compute", "graphics"] as found, bytes used or None when NVML cannot tell)."""
        found: dict[int, tuple[list[str], int | None]] = {}
        for kind, calls in (
            (
                "compute",
                (nvml.nvmlDeviceGetComputeRunningProcesses_v3, nvml.nvmlDeviceGetComputeRunningProcesses_v2),
            ),
            (
                "graphics",
                (nvml.nvmlDeviceGetGraphicsRunningProcesses_v3, nvml.nvmlDeviceGetGraphicsRunningProcesses_v2),
            ),
        ):
            listing = None
            for version, call in zip(("v3", "v2"), calls, strict=True):
                capability = f"{kind}_processes_{version}"
                listing = self._read_on(gpu, handle, capability, call)
                if listing is not None or capability not in gpu.unsupported:
                    break
            for process in listing or []:
                used = process.usedGpuMemory
                if used is not None and int(used) >= NVML_VALUE_NOT_AVAILABLE:
                    used = None
                pid = int(process.pid)
                kinds, previous = found.get(pid, ([], None))
                # A process with both contexts appears in both lists with the same total.
                best = max((value for value in (used, previous) if value is not None), default=None)
                found[pid] = (kinds if kind in kinds else [*kinds, kind], best)
        return found

    def _attribute_safely(self, pid: int) -> ProcessAttribution:
        try:
            return self._attribute(pid)
        except Exception as error:  # attribution is a nicety; the memory figure must still go out
            self._logged_attribution_error(error)
            return ProcessAttribution()

    def _logged_attribution_error(self, error: BaseException) -> None:
        key = ("attribution", type(error).__name__)
        if key not in self._logged:
            self._logged.add(key)
            log.warning(
                "GPU process attribution failed; series go out without Ray labels",
                extra={"collector": self.name, "error": f"{type(error).__name__}: {error}"},
            )

    def _log_cap_once(self, total: int, cap: int) -> None:
        if ("cap",) not in self._logged:
            self._logged.add(("cap",))
            log.warning(
                "more GPU processes than gpu.max_process_series; the smallest are left out",
                extra={"collector": self.name, "processes": total, "max_process_series": cap},
            )

    def _xid_section(self) -> Iterator[Metric]:
        with self._lock:
            if self._gpus is None:
                return
            nvml = self._module()
            for gpu in self._gpus:
                if gpu.event_set is None or gpu.lost:
                    continue
                self._xid_labels[gpu.uuid] = gpu.labels
                counts = self._xid_counts.setdefault(gpu.uuid, {})
                last_seen = self._xid_last_seen.setdefault(gpu.uuid, {})
                for _ in range(MAX_EVENTS_PER_SCRAPE):
                    try:
                        # Timeout 0: take what is queued, never wait inside a scrape.
                        event = nvml.nvmlEventSetWait_v2(gpu.event_set, 0)
                    except nvml.NVMLError as error:
                        if error.value == NVML_ERROR_TIMEOUT:
                            break
                        if error.value in _LOST:
                            self._mark_lost(gpu, describe_error(error))
                        elif error.value in _NVML_GONE:
                            raise self._nvml_gone(error) from None
                        else:
                            self._log_once(
                                ("xid-wait", gpu.uuid, error.value),
                                logging.WARNING,
                                "reading XID events failed; trying again next scrape",
                                gpu,
                                "nvmlEventSetWait_v2",
                                error,
                            )
                        break
                    if int(event.eventType) & NVML_EVENT_TYPE_XID_CRITICAL_ERROR:
                        xid = int(event.eventData)
                        counts[xid] = counts.get(xid, 0) + 1
                        last_seen[xid] = self._wall_clock()
            errors = _family(METRICS["xid_errors"])
            seen = _family(METRICS["xid_last_seen"])
            for uuid, counts in sorted(self._xid_counts.items()):
                labels = self._xid_labels[uuid]
                for xid, count in sorted(counts.items()):
                    errors.add_metric([*labels, str(xid)], float(count))
                    seen.add_metric([*labels, str(xid)], self._xid_last_seen[uuid][xid])
            yield from (family for family in (errors, seen) if family.samples)


_DEVICE_FAMILIES = frozenset(METRICS) - {
    "xid_errors",
    "xid_last_seen",
    "processes",
    "process_memory_used",
    "process_series_dropped",
    "nvml",
}


def build_gpu_collector(config: RaylensConfig, environ: Mapping[str, str] | None = None) -> GpuCollector:
    """The collector as the exporter runs it: real NVML, or the fake named by ``RAYLENS_FAKE_NVML``."""
    environ = os.environ if environ is None else environ
    gpu_config = config.gpu
    nvml: Any = None
    reader: ProcessReader = procfs_reader(gpu_config.proc_root)
    fixture = environ.get(FAKE_NVML_VARIABLE)
    if fixture:
        from raylens.gpu.fake_nvml import load_fake_nvml

        nvml = load_fake_nvml(Path(fixture))
        reader = nvml.process_reader()
        log.warning(
            "GPU collector reads a fake NVML fixture, not the driver (testing and demos only)",
            extra={"collector": "gpu", "fixture": fixture, "variable": FAKE_NVML_VARIABLE},
        )
    state = None
    if gpu_config.ray_dashboard_url:
        if config.node.ray_node_id:
            state = RayStateAttributor(
                http_state_fetcher(gpu_config.ray_dashboard_url, gpu_config.ray_state_timeout_seconds),
                config.node.ray_node_id,
                ttl_seconds=gpu_config.attribution_cache_seconds,
                timeout_seconds=gpu_config.ray_state_timeout_seconds,
                background=True,  # a scrape never waits on the dashboard
            )
        else:
            # PIDs are per node: without the node id, another node's actor could claim our PID.
            log.warning(
                "gpu.ray_dashboard_url is set but node.ray_node_id is not; attributing from /proc only",
                extra={"collector": "gpu"},
            )
    proc = ProcAttributor(reader, gpu_config.attribution_cache_seconds)
    return GpuCollector(gpu_config, nvml=nvml, attribute=LayeredAttributor(proc, state))
