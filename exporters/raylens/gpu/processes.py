"""The processes section: how many processes hold a context on each GPU, and the memory each holds,
labelled with the Ray job, actor and task it belongs to, under a cap on the number of series."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from prometheus_client.core import Metric

from raylens.gpu.attribution import Attributor, ProcessAttribution
from raylens.gpu.device import Gpu, GpuLost, GpuReader, LogOnce
from raylens.gpu.metric_specs import METRICS, empty_family
from raylens.gpu.nvml_codes import NVML_VALUE_NOT_AVAILABLE


class ProcessSeries:
    """Builds the processes section's families; keeps the count of series the cap has dropped."""

    def __init__(self, attribute: Attributor, log_once: LogOnce):
        self._attribute = attribute
        self._log_once = log_once
        self.dropped = 0

    def families(self, reader: GpuReader, gpus: Sequence[Gpu], max_series: int) -> list[Metric]:
        """A GPU lost while being read is marked lost and skipped; an NVML-wide ``NVMLError`` propagates."""
        counts = empty_family(METRICS["processes"])
        entries: list[tuple[float, int, int, str, str, str]] = []
        for gpu in gpus:
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
                    for pid, (kinds, used) in sorted(gpu_processes(reader, gpu, handle).items()):
                        found += 1
                        if used is not None:
                            entries.append((float(used), gpu.index, pid, instance_id, "+".join(kinds), gpu.uuid))
            except GpuLost as lost:
                reader.mark_lost(gpu, lost.reason)
                continue
            counts.add_metric(gpu.labels, float(found))

        # Biggest holders first: under the cap, the series that explain the memory survive.
        entries.sort(key=lambda entry: (-entry[0], entry[1], entry[2], entry[3]))
        kept, dropped = entries[:max_series], entries[max_series:]
        if dropped:
            self.dropped += len(dropped)
            self._log_once(
                ("cap",),
                logging.WARNING,
                "more GPU processes than gpu.max_process_series; the smallest are left out",
                processes=len(entries),
                max_process_series=max_series,
            )
        memory = empty_family(METRICS["process_memory_used"])
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
        dropped_family = empty_family(METRICS["process_series_dropped"])
        dropped_family.add_metric([], float(self.dropped))
        return [family for family in (counts, memory, dropped_family) if family.samples]

    def _attribute_safely(self, pid: int) -> ProcessAttribution:
        try:
            return self._attribute(pid)
        except Exception as error:  # attribution is a nicety; the memory figure must still go out
            self._log_once(
                ("attribution", type(error).__name__),
                logging.WARNING,
                "GPU process attribution failed; series go out without Ray labels",
                error=f"{type(error).__name__}: {error}",
            )
            return ProcessAttribution()


def gpu_processes(reader: GpuReader, gpu: Gpu, handle: Any) -> dict[int, tuple[list[str], int | None]]:
    """PID -> (["compute", "graphics"] as found, bytes used or None when NVML cannot tell)."""
    nvml = reader.nvml
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
            listing = reader.read_on(gpu, handle, capability, call)
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
