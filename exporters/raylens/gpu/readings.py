"""What the devices section reports for each GPU on a scrape: identity, up, utilisation, framebuffer
(``raylens.gpu.memory``), power and energy, temperature, clocks, fan, PCIe, performance state and
clock event reasons, converted from NVML's units to base units."""

from __future__ import annotations

from collections.abc import Sequence

from prometheus_client.core import Metric

from raylens.gpu.device import Gpu, GpuLost, GpuReader
from raylens.gpu.memory import mig_instances, read_memory, read_memory_errors
from raylens.gpu.metric_specs import DEVICE_FAMILIES, METRICS, empty_family
from raylens.gpu.nvml_codes import (
    CLOCK_EVENT_REASONS,
    KILOBYTE,
    MEGAHERTZ,
    NVML_CLOCK_MEM,
    NVML_CLOCK_SM,
    NVML_DEVICE_MIG_ENABLE,
    NVML_PCIE_UTIL_RX_BYTES,
    NVML_PCIE_UTIL_TX_BYTES,
    NVML_TEMPERATURE_GPU,
)


def device_families(reader: GpuReader, gpus: Sequence[Gpu], driver_version: str) -> list[Metric]:
    """The devices section's families. A GPU lost while being read is marked lost and reported with
    ``raylens_gpu_up 0``; an NVML-wide ``NVMLError`` propagates to the collector."""
    families = {key: empty_family(spec) for key, spec in METRICS.items() if key in DEVICE_FAMILIES}
    families["devices"].add_metric([], float(len(gpus)))
    for gpu in gpus:
        readings: list[tuple[str, list[str], float]] = []
        if not gpu.lost:
            try:
                read_gpu(reader, gpu, readings)
            except GpuLost as lost:
                reader.mark_lost(gpu, lost.reason)
                readings = []
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
        families["info"].add_metric([*gpu.labels, driver_version, gpu.mig_mode], {})
        families["up"].add_metric(gpu.labels, 0.0 if gpu.lost else 1.0)
    return [family for family in families.values() if family.samples]


def read_gpu(reader: GpuReader, gpu: Gpu, out: list[tuple[str, list[str], float]]) -> None:
    """Appends ``(metric key, labels, value)`` for every reading ``gpu`` answers; updates its MIG state."""
    nvml = reader.nvml
    labels = gpu.labels

    def add(key: str, value: float, *extra: str) -> None:
        out.append((key, [*labels, *extra], float(value)))

    mig_mode = reader.read(gpu, "mig_mode", nvml.nvmlDeviceGetMigMode)
    mig_enabled = mig_mode is not None and int(mig_mode[0]) == NVML_DEVICE_MIG_ENABLE
    gpu.mig_mode = "" if mig_mode is None else ("enabled" if mig_enabled else "disabled")

    utilisation = reader.read(gpu, "utilisation", nvml.nvmlDeviceGetUtilizationRates)
    if utilisation is not None:
        add("utilisation", utilisation.gpu / 100.0)
        add("memory_copy_utilisation", utilisation.memory / 100.0)

    if mig_enabled:
        # Framebuffer belongs to the instances; the parent's own figure would double count.
        gpu.mig_instances = mig_instances(reader, gpu)
        for instance in gpu.mig_instances:
            read_memory(reader, gpu, instance.handle, "mig_", add, str(instance.gpu_instance_id), instance.profile)
    else:
        gpu.mig_instances = []
        read_memory(reader, gpu, gpu.handle, "", add, "", "")

    power = reader.read(gpu, "power_usage", nvml.nvmlDeviceGetPowerUsage)
    if power is not None:
        add("power_usage", power / 1000.0)
    limit = reader.read(gpu, "power_limit", nvml.nvmlDeviceGetEnforcedPowerLimit)
    if limit is not None:
        add("power_limit", limit / 1000.0)
    energy = reader.read(gpu, "energy", nvml.nvmlDeviceGetTotalEnergyConsumption)
    if energy is not None:
        add("energy", energy / 1000.0)
    temperature = reader.read(gpu, "temperature", nvml.nvmlDeviceGetTemperature, NVML_TEMPERATURE_GPU)
    if temperature is not None:
        add("temperature", temperature)
    sm_clock = reader.read(gpu, "sm_clock", nvml.nvmlDeviceGetClockInfo, NVML_CLOCK_SM)
    if sm_clock is not None:
        add("sm_clock", sm_clock * MEGAHERTZ)
    memory_clock = reader.read(gpu, "memory_clock", nvml.nvmlDeviceGetClockInfo, NVML_CLOCK_MEM)
    if memory_clock is not None:
        add("memory_clock", memory_clock * MEGAHERTZ)
    fan = reader.read(gpu, "fan_speed", nvml.nvmlDeviceGetFanSpeed)
    if fan is not None:
        add("fan_speed", fan / 100.0)
    transmit = reader.read(gpu, "pcie_transmit", nvml.nvmlDeviceGetPcieThroughput, NVML_PCIE_UTIL_TX_BYTES)
    if transmit is not None:
        add("pcie_transmit", transmit * KILOBYTE)
    receive = reader.read(gpu, "pcie_receive", nvml.nvmlDeviceGetPcieThroughput, NVML_PCIE_UTIL_RX_BYTES)
    if receive is not None:
        add("pcie_receive", receive * KILOBYTE)
    pstate = reader.read(gpu, "performance_state", nvml.nvmlDeviceGetPerformanceState)
    if pstate is not None and 0 <= pstate <= 15:  # 32 is NVML_PSTATE_UNKNOWN
        add("performance_state", pstate)

    reasons = reader.read(gpu, "clock_event_reasons", nvml.nvmlDeviceGetCurrentClocksEventReasons)
    if reasons is None and "clock_event_reasons" in gpu.unsupported:
        # Drivers before 535 know only the older name of the same call.
        reasons = reader.read(gpu, "clock_throttle_reasons", nvml.nvmlDeviceGetCurrentClocksThrottleReasons)
    if reasons is not None:
        for bit, reason in CLOCK_EVENT_REASONS:
            if gpu.supported_reasons & bit:
                add("clocks_event_reason", 1.0 if int(reasons) & bit else 0.0, reason)

    read_memory_errors(reader, gpu, add)
