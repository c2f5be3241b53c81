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
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from types import ModuleType
from typing import Any

from prometheus_client.core import Metric

from raylens.collectors.base import Collector, Section
from raylens.config import GpuConfig, RaylensConfig
from raylens.gpu.attribution import (
    Attributor,
    LayeredAttributor,
    ProcAttributor,
    ProcessReader,
    RayStateAttributor,
    http_state_fetcher,
    procfs_reader,
)
from raylens.gpu.device import (
    Gpu,
    GpuLost,
    GpuReader,
    LogOnce,
    NvmlUnavailable,
    decode_nvml_string,
    describe_error,
)
from raylens.gpu.metric_specs import METRICS, MetricSpec, empty_family
from raylens.gpu.nvml_codes import ERROR_NAMES, NVML_GONE_ERRORS
from raylens.gpu.processes import ProcessSeries
from raylens.gpu.readings import device_families
from raylens.gpu.xid import XidCounts, register_xid_events

# This module stays the public import path of the GPU collector; its parts live in raylens.gpu.
__all__ = [
    "ERROR_NAMES",
    "FAKE_NVML_VARIABLE",
    "METRICS",
    "GpuCollector",
    "MetricSpec",
    "NvmlUnavailable",
    "build_gpu_collector",
    "decode_nvml_string",
    "describe_error",
]

log = logging.getLogger("raylens.gpu")

# Test and demo aid: the exporter reads NVML answers from this fixture instead of the driver.
FAKE_NVML_VARIABLE = "RAYLENS_FAKE_NVML"


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
        attribute = attribute or ProcAttributor(
            procfs_reader(config.proc_root), config.attribution_cache_seconds, clock
        )
        self._clock = clock
        self._lock = threading.RLock()
        self._gpus: list[Gpu] | None = None  # None: NVML not initialised
        self._reason = "not tried yet"
        self._driver_version = ""
        self._nvml_version = ""
        self._failed_attempts = 0
        self._next_attempt = float("-inf")
        self._log_once = LogOnce(self.name)
        self._processes = ProcessSeries(attribute, self._log_once)
        self._xids = XidCounts(wall_clock)

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

    def _reader(self, nvml: Any) -> GpuReader:
        return GpuReader(nvml, self._log_once)

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

    def _initialise(self, nvml: Any) -> list[Gpu]:
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
            reader = self._reader(nvml)
            return [self._open(reader, index) for index in range(count)]
        except BaseException:
            self._shutdown_quietly(nvml, [])
            raise

    def _open(self, reader: GpuReader, index: int) -> Gpu:
        nvml = reader.nvml
        try:
            handle = nvml.nvmlDeviceGetHandleByIndex(index)
        except nvml.NVMLError as error:
            if error.value in NVML_GONE_ERRORS:
                raise
            gpu = Gpu(index, None, lost_reason=describe_error(error))
            log.warning(
                "GPU unreadable; reported with raylens_gpu_up 0",
                extra={"collector": self.name, "gpu": index, "error": gpu.lost_reason},
            )
            return gpu
        gpu = Gpu(index, handle)
        try:
            gpu.uuid = decode_nvml_string(nvml.nvmlDeviceGetUUID(handle))
            gpu.name = decode_nvml_string(nvml.nvmlDeviceGetName(handle))
            gpu.pci_bus_id = decode_nvml_string(nvml.nvmlDeviceGetPciInfo(handle).busId)
            supported = reader.read(gpu, "supported_clock_event_reasons", nvml.nvmlDeviceGetSupportedClocksEventReasons)
            if supported is None:
                supported = reader.read(
                    gpu, "supported_clock_throttle_reasons", nvml.nvmlDeviceGetSupportedClocksThrottleReasons
                )
            if supported is not None:
                gpu.supported_reasons = int(supported)
        except GpuLost as lost:
            reader.mark_lost(gpu, lost.reason)
            return gpu
        except nvml.NVMLError as error:
            if error.value in NVML_GONE_ERRORS:
                raise
            reader.mark_lost(gpu, describe_error(error))
            return gpu
        gpu.event_set = register_xid_events(reader, gpu)
        return gpu

    def _shutdown_quietly(self, nvml: Any, gpus: list[Gpu]) -> None:
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

    # Sections -----------------------------------------------------------------------------------

    def _unavailable(self) -> Iterator[Metric]:
        raise NvmlUnavailable(self._reason)

    def _nvml_status(self) -> Iterator[Metric]:
        status = empty_family(METRICS["nvml"])
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
            try:
                families = device_families(self._reader(nvml), self._gpus, self._driver_version)
            except nvml.NVMLError as error:
                raise self._nvml_gone(error) from None
            yield from families

    def _processes_section(self) -> Iterator[Metric]:
        with self._lock:
            if self._gpus is None:
                return  # NVML failed earlier in this scrape; the devices section reported it
            nvml = self._module()
            try:
                families = self._processes.families(self._reader(nvml), self._gpus, self._config.max_process_series)
            except nvml.NVMLError as error:
                raise self._nvml_gone(error) from None
            yield from families

    def _xid_section(self) -> Iterator[Metric]:
        with self._lock:
            if self._gpus is None:
                return
            nvml = self._module()
            try:
                self._xids.drain(self._reader(nvml), self._gpus)
            except nvml.NVMLError as error:
                raise self._nvml_gone(error) from None
            yield from self._xids.families()


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
