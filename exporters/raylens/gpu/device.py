"""One GPU as the collector knows it, and asking it for one value.

``Gpu`` is a device handle with its identity labels and what the collector learnt about it: capabilities
it lacks, whether it fell off the bus, its MIG instances. ``GpuReader`` makes one NVML call and sorts a
failure: a capability the card lacks is logged once and never asked again, a lost GPU raises
``GpuLost``, and NVML failing as a whole propagates as ``NVMLError`` to the collector, which starts over.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from raylens.gpu.nvml_codes import (
    ALL_CLOCK_EVENT_REASONS,
    ERROR_NAMES,
    GPU_LOST_ERRORS,
    NVML_GONE_ERRORS,
    UNSUPPORTED_ERRORS,
)

# The collector's one logger: every GPU module logs under it, so a filter on "raylens.gpu" sees all.
log = logging.getLogger("raylens.gpu")


class NvmlUnavailable(Exception):
    """NVML cannot be used at all; the message is the reason reported on every scrape."""


class GpuLost(Exception):
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


MIG_PROFILE = re.compile(r"\bMIG\s+(\S+)\s*$")


@dataclass(frozen=True)
class MigInstance:
    handle: Any
    gpu_instance_id: int
    compute_instance_id: int
    profile: str
    uuid: str


@dataclass
class Gpu:
    index: int
    handle: Any | None
    uuid: str = ""
    name: str = ""
    pci_bus_id: str = ""
    lost_reason: str = ""
    unsupported: set[str] = field(default_factory=set)
    supported_reasons: int = ALL_CLOCK_EVENT_REASONS
    event_set: Any | None = None
    mig_mode: str = ""
    mig_instances: list[MigInstance] = field(default_factory=list)

    @property
    def labels(self) -> list[str]:
        return [str(self.index), self.uuid, self.name, self.pci_bus_id]

    @property
    def lost(self) -> bool:
        return bool(self.lost_reason)


class LogOnce:
    """Logs each condition the first time it happens: a scrape every few seconds would repeat it forever."""

    def __init__(self, collector: str):
        self.collector = collector
        self._seen: set[tuple[Any, ...]] = set()

    def __call__(self, key: tuple[Any, ...], level: int, message: str, **fields: Any) -> None:
        if key in self._seen:
            return
        self._seen.add(key)
        log.log(level, message, extra={"collector": self.collector, **fields})


class GpuReader:
    """NVML calls on a GPU, each failure sorted by what it means for the GPU and for NVML."""

    def __init__(self, nvml: Any, log_once: LogOnce):
        self.nvml = nvml
        self.log_once = log_once

    def read(self, gpu: Gpu, capability: str, call: Callable[..., Any], *arguments: Any) -> Any:
        """``call(gpu.handle, *arguments)``, or None when the GPU cannot answer it (logged once,
        never asked again if it never will). Raises ``GpuLost``; NVML-wide errors propagate."""
        return self.read_on(gpu, gpu.handle, capability, call, *arguments)

    def read_on(self, gpu: Gpu, handle: Any, capability: str, call: Callable[..., Any], *arguments: Any) -> Any:
        """As ``read``, on ``handle``: the GPU's own or one of its MIG instances'."""
        if capability in gpu.unsupported:
            return None
        try:
            return call(handle, *arguments)
        except self.nvml.NVMLError as error:
            code = error.value
            if code in NVML_GONE_ERRORS:
                raise
            if code in GPU_LOST_ERRORS:
                raise GpuLost(describe_error(error)) from None
            if code in UNSUPPORTED_ERRORS:
                gpu.unsupported.add(capability)
                self.log_failure_once(
                    ("unsupported", gpu.uuid, capability),
                    logging.INFO,
                    "GPU capability not available; skipped",
                    gpu,
                    capability,
                    error,
                )
            else:
                self.log_failure_once(
                    ("failed", gpu.uuid, capability, code),
                    logging.WARNING,
                    "GPU reading failed; skipped on this scrape",
                    gpu,
                    capability,
                    error,
                )
            return None

    def log_failure_once(
        self, key: tuple[Any, ...], level: int, message: str, gpu: Gpu, call: str, error: BaseException
    ) -> None:
        self.log_once(key, level, message, gpu=gpu.index, uuid=gpu.uuid, call=call, error=describe_error(error))

    def mark_lost(self, gpu: Gpu, reason: str) -> None:
        if not gpu.lost:
            log.warning(
                "GPU lost; reported with raylens_gpu_up 0 until it is reset",
                extra={"collector": self.log_once.collector, "gpu": gpu.index, "uuid": gpu.uuid, "error": reason},
            )
        gpu.lost_reason = reason
        gpu.mig_instances = []
