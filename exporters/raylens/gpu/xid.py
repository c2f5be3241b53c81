"""XID errors: registering each GPU for critical XID events, draining them on every scrape without
waiting, and counting them by XID code for the life of the exporter (DCGM keeps only the last code)."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Sequence
from typing import Any

from prometheus_client.core import Metric

from raylens.gpu.device import Gpu, GpuReader, describe_error
from raylens.gpu.metric_specs import METRICS, empty_family
from raylens.gpu.nvml_codes import (
    GPU_LOST_ERRORS,
    NVML_ERROR_TIMEOUT,
    NVML_EVENT_TYPE_XID_CRITICAL_ERROR,
    NVML_GONE_ERRORS,
)

# Events read per GPU per scrape; a storm beyond this waits in NVML's queue for the next scrape.
MAX_EVENTS_PER_SCRAPE = 1000


def register_xid_events(reader: GpuReader, gpu: Gpu) -> Any | None:
    """An event set listening for ``gpu``'s XID errors, or None where the GPU offers none (logged once)."""
    nvml = reader.nvml
    event_set = None
    try:
        event_set = nvml.nvmlEventSetCreate()
        nvml.nvmlDeviceRegisterEvents(gpu.handle, NVML_EVENT_TYPE_XID_CRITICAL_ERROR, event_set)
        return event_set
    except nvml.NVMLError as error:
        if error.value in NVML_GONE_ERRORS:
            raise
        reader.log_failure_once(
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


class XidCounts:
    """XID errors by GPU UUID and code; they outlive an NVML restart and a lost GPU."""

    def __init__(self, wall_clock: Callable[[], float]):
        self._wall_clock = wall_clock
        self._counts: dict[str, dict[int, int]] = {}
        self._last_seen: dict[str, dict[int, float]] = {}
        self._labels: dict[str, list[str]] = {}

    def drain(self, reader: GpuReader, gpus: Sequence[Gpu]) -> None:
        """Counts the events queued for each GPU. A lost GPU is marked lost; an NVML-wide
        ``NVMLError`` propagates (the events counted before it stay counted)."""
        nvml = reader.nvml
        for gpu in gpus:
            if gpu.event_set is None or gpu.lost:
                continue
            self._labels[gpu.uuid] = gpu.labels
            counts = self._counts.setdefault(gpu.uuid, {})
            last_seen = self._last_seen.setdefault(gpu.uuid, {})
            for _ in range(MAX_EVENTS_PER_SCRAPE):
                try:
                    # Timeout 0: take what is queued, never wait inside a scrape.
                    event = nvml.nvmlEventSetWait_v2(gpu.event_set, 0)
                except nvml.NVMLError as error:
                    if error.value == NVML_ERROR_TIMEOUT:
                        break
                    if error.value in GPU_LOST_ERRORS:
                        reader.mark_lost(gpu, describe_error(error))
                    elif error.value in NVML_GONE_ERRORS:
                        raise
                    else:
                        reader.log_failure_once(
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

    def families(self) -> list[Metric]:
        errors = empty_family(METRICS["xid_errors"])
        seen = empty_family(METRICS["xid_last_seen"])
        for uuid, counts in sorted(self._counts.items()):
            labels = self._labels[uuid]
            for xid, count in sorted(counts.items()):
                errors.add_metric([*labels, str(xid)], float(count))
                seen.add_metric([*labels, str(xid)], self._last_seen[uuid][xid])
        return [family for family in (errors, seen) if family.samples]
