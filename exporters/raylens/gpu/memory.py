"""Framebuffer and memory health of one GPU: used/free/total/reserved per GPU or per MIG instance, the
MIG instances themselves, ECC error counts, remapped rows and retired pages."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from raylens.gpu.device import MIG_PROFILE, Gpu, GpuLost, GpuReader, MigInstance, decode_nvml_string, describe_error
from raylens.gpu.nvml_codes import (
    GPU_LOST_ERRORS,
    NVML_AGGREGATE_ECC,
    NVML_ERROR_INVALID_ARGUMENT,
    NVML_ERROR_NOT_FOUND,
    NVML_GONE_ERRORS,
    NVML_MEMORY_ERROR_TYPE_CORRECTED,
    NVML_MEMORY_ERROR_TYPE_UNCORRECTED,
    NVML_MEMORY_V2,
    NVML_PAGE_RETIREMENT_CAUSE_DOUBLE_BIT_ECC_ERROR,
    NVML_PAGE_RETIREMENT_CAUSE_MULTIPLE_SINGLE_BIT_ECC_ERRORS,
    NVML_VOLATILE_ECC,
)

# add(metric key, value, *extra label values): one reading for the GPU's series.
Add = Callable[..., None]


def read_memory(
    reader: GpuReader,
    gpu: Gpu,
    handle: Any,
    prefix: str,
    add: Add,
    instance_id: str,
    profile: str,
) -> None:
    """Framebuffer of ``handle`` (the GPU's, or a MIG instance's with ``prefix`` "mig_")."""
    nvml = reader.nvml
    memory = reader.read_on(gpu, handle, prefix + "memory_v2", nvml.nvmlDeviceGetMemoryInfo, NVML_MEMORY_V2)
    if memory is None and prefix + "memory_v2" in gpu.unsupported:
        memory = reader.read_on(gpu, handle, prefix + "memory", nvml.nvmlDeviceGetMemoryInfo)
    if memory is None:
        return
    add("memory_used", memory.used, instance_id, profile)
    add("memory_free", memory.free, instance_id, profile)
    add("memory_total", memory.total, instance_id, profile)
    reserved = getattr(memory, "reserved", None)
    if reserved is not None:
        add("memory_reserved", reserved, instance_id, profile)


def mig_instances(reader: GpuReader, gpu: Gpu) -> list[MigInstance]:
    nvml = reader.nvml
    slots = reader.read(gpu, "mig_device_count", nvml.nvmlDeviceGetMaxMigDeviceCount) or 0
    instances = []
    for slot in range(int(slots)):
        try:
            handle = nvml.nvmlDeviceGetMigDeviceHandleByIndex(gpu.handle, slot)
        except nvml.NVMLError as error:
            if error.value in (NVML_ERROR_NOT_FOUND, NVML_ERROR_INVALID_ARGUMENT):
                continue  # an empty slot
            if error.value in GPU_LOST_ERRORS:
                raise GpuLost(describe_error(error)) from None
            if error.value in NVML_GONE_ERRORS:
                raise
            reader.log_failure_once(
                ("mig-slot", gpu.uuid, slot, error.value),
                logging.WARNING,
                "MIG instance unreadable; skipped",
                gpu,
                "nvmlDeviceGetMigDeviceHandleByIndex",
                error,
            )
            continue
        gpu_instance = reader.read_on(gpu, handle, "mig_gpu_instance_id", nvml.nvmlDeviceGetGpuInstanceId)
        if gpu_instance is None:
            continue
        compute_instance = reader.read_on(gpu, handle, "mig_compute_instance_id", nvml.nvmlDeviceGetComputeInstanceId)
        name = decode_nvml_string(reader.read_on(gpu, handle, "mig_name", nvml.nvmlDeviceGetName) or "")
        match = MIG_PROFILE.search(name)
        instances.append(
            MigInstance(
                handle=handle,
                gpu_instance_id=int(gpu_instance),
                compute_instance_id=-1 if compute_instance is None else int(compute_instance),
                profile=match.group(1) if match else "",
                uuid=decode_nvml_string(reader.read_on(gpu, handle, "mig_uuid", nvml.nvmlDeviceGetUUID) or ""),
            )
        )
    return instances


def read_memory_errors(reader: GpuReader, gpu: Gpu, add: Add) -> None:
    nvml = reader.nvml
    ecc_mode = reader.read(gpu, "ecc_mode", nvml.nvmlDeviceGetEccMode)
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
                    count = reader.read(gpu, f"{key}_{error_type}", nvml.nvmlDeviceGetTotalEccErrors, code, counter)
                    if count is not None:
                        add(key, count, error_type)
    rows = reader.read(gpu, "remapped_rows", nvml.nvmlDeviceGetRemappedRows)
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
        pages = reader.read(gpu, f"retired_pages_{cause}", nvml.nvmlDeviceGetRetiredPages, code)
        if pages is not None:
            add("retired_pages", len(pages), cause)
    pending_retirement = reader.read(gpu, "retired_pages_pending", nvml.nvmlDeviceGetRetiredPagesPendingStatus)
    if pending_retirement is not None:
        add("retired_pages_pending", 1.0 if pending_retirement else 0.0)
