"""The gpu collector against the fake NVML, one recorded-shape fixture per scenario, as Prometheus sees it.

No GPU is available to this project's CI: every test here runs on ``raylens.gpu.fake_nvml`` except
``test_real_pynvml_on_this_host``, which uses the real ``pynvml`` (no driver here: the no-library path;
on a GPU machine: the real driver). Golden expositions live in ``tests/fixtures/nvml/expected``;
regenerate them with ``RAYLENS_UPDATE_GOLDEN=1 pytest tests/test_gpu_collector.py`` and review the diff.
"""

from __future__ import annotations

import copy
import json
import logging
import os
import re
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from exposition_check import scrape as exposition_scrape
from prometheus_client import CollectorRegistry

from raylens.collectors.base import Collector, ScrapeHealthCollector
from raylens.collectors.gpu import FAKE_NVML_VARIABLE, METRICS, GpuCollector, build_gpu_collector
from raylens.config import ConfigError, GpuConfig, RaylensConfig, load_config
from raylens.gpu.attribution import ProcAttributor, ProcessAttribution
from raylens.gpu.fake_nvml import FakeNvml, load_fake_nvml

FIXTURES = Path(__file__).parent / "fixtures" / "nvml"
GOLDEN = FIXTURES / "expected"
FIXTURE_NAMES = sorted(path.stem for path in FIXTURES.glob("*.json"))
WALL_CLOCK = 1_760_000_000.0
H100_0 = {
    "gpu": "0",
    "UUID": "GPU-5d2b8c3e-6f1a-4b7e-9c2d-1a8f3e7b6c40",
    "model_name": "NVIDIA H100 80GB HBM3",
    "pci_bus_id": "00000000:18:00.0",
}
H100_1 = {
    "gpu": "1",
    "UUID": "GPU-a37e41b9-02cd-4f88-b3a1-7e64d09c5f12",
    "model_name": "NVIDIA H100 80GB HBM3",
    "pci_bus_id": "00000000:2A:00.0",
}
MiB = 1 << 20


class FakeClock:
    def __init__(self, now: float = 100.0):
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def fake(name: str) -> FakeNvml:
    return load_fake_nvml(FIXTURES / f"{name}.json")


def make_collector(
    nvml: FakeNvml,
    config: GpuConfig | None = None,
    clock: Callable[[], float] | None = None,
    attribute: Callable[[int], ProcessAttribution] | None = None,
) -> GpuCollector:
    config = config or GpuConfig()
    clock = clock or FakeClock()
    attribute = attribute or ProcAttributor(nvml.process_reader(), config.attribution_cache_seconds, clock)
    return GpuCollector(config, nvml=nvml, attribute=attribute, clock=clock, wall_clock=lambda: WALL_CLOCK)


def registry_for(*collectors: Collector) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ScrapeHealthCollector(list(collectors)))
    return registry


def scrape(registry: CollectorRegistry) -> str:
    """Through the exporter's renderer, checked byte for byte against prometheus_client."""
    return exposition_scrape(registry)


def without_duration(exposition: str) -> str:
    return "\n".join(
        line for line in exposition.splitlines() if not line.startswith("raylens_scrape_collector_duration_seconds{")
    )


def promtool(exposition: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(["promtool", "check", "metrics"], input=exposition.encode(), capture_output=True, timeout=30)


# Every fixture, end to end ------------------------------------------------------------------------


@pytest.mark.parametrize("name", FIXTURE_NAMES)
def test_exposition_matches_golden_file(name: str) -> None:
    text = without_duration(scrape(registry_for(make_collector(fake(name))))) + "\n"
    golden = GOLDEN / f"{name}.prom"
    if os.environ.get("RAYLENS_UPDATE_GOLDEN"):
        golden.parent.mkdir(exist_ok=True)
        golden.write_text(text)
    assert golden.exists(), f"no golden file for {name}: run with RAYLENS_UPDATE_GOLDEN=1"
    assert text == golden.read_text(), f"exposition for {name} changed; regenerate and review the diff"


@pytest.mark.parametrize("name", FIXTURE_NAMES)
def test_exposition_passes_promtool(name: str) -> None:
    registry = registry_for(make_collector(fake(name)))
    scrape(registry)  # a second scrape exercises cached capabilities and counters
    exposition = scrape(registry)
    # promtool lints camelCase label names, which is why DCGM's `modelName` is exported as
    # `model_name` (DCGM's own spelling on its NVLink metrics); see docs/gpu.md for the join recipe.
    result = promtool(exposition)
    assert result.returncode == 0, result.stdout.decode() + result.stderr.decode()
    assert result.stdout.decode().strip() == "" and result.stderr.decode().strip() == ""


# Per card: units, labels and skipped capabilities --------------------------------------------------


def test_h100_readings_in_base_units_with_dcgm_labels() -> None:
    registry = registry_for(make_collector(fake("h100-sxm-80gb")))
    value = registry.get_sample_value
    assert value("raylens_scrape_collector_success", {"collector": "gpu"}) == 1
    assert value("raylens_gpu_devices") == 2
    assert value("raylens_gpu_up", H100_0) == 1
    info = {**H100_0, "driver_version": "550.90.07", "mig_mode": "disabled"}
    assert value("raylens_gpu_info", info) == 1
    assert value("raylens_gpu_utilisation_ratio", H100_0) == pytest.approx(0.97)
    assert value("raylens_gpu_memory_copy_utilisation_ratio", H100_0) == pytest.approx(0.61)
    whole = {**H100_0, "GPU_I_ID": "", "GPU_I_PROFILE": ""}
    assert value("raylens_gpu_memory_total_bytes", whole) == 81559 * MiB
    assert value("raylens_gpu_memory_used_bytes", whole) == 73592 * MiB  # v2: reserved not counted as used
    assert value("raylens_gpu_memory_reserved_bytes", whole) == 549 * MiB
    assert value("raylens_gpu_memory_free_bytes", whole) == (81559 - 73592 - 549) * MiB
    assert value("raylens_gpu_power_usage_watts", H100_0) == pytest.approx(645.123)  # 645123 mW
    assert value("raylens_gpu_power_limit_watts", H100_0) == 700.0
    assert value("raylens_gpu_energy_joules_total", H100_0) == pytest.approx(48_213_772.391)  # mJ
    assert value("raylens_gpu_temperature_celsius", H100_0) == 64
    assert value("raylens_gpu_sm_clock_hertz", H100_0) == 1980e6
    assert value("raylens_gpu_memory_clock_hertz", H100_0) == 2619e6
    assert value("raylens_gpu_pcie_transmit_bytes_per_second", H100_0) == 1843 * 1024  # KB/s
    assert value("raylens_gpu_pcie_receive_bytes_per_second", H100_1) == 11207342 * 1024
    assert value("raylens_gpu_performance_state", H100_0) == 0
    assert value("raylens_gpu_clocks_event_reason", {**H100_0, "reason": "sw_power_cap"}) == 1
    assert value("raylens_gpu_clocks_event_reason", {**H100_0, "reason": "hw_slowdown"}) == 0
    assert value("raylens_gpu_clocks_event_reason", {**H100_1, "reason": "sw_power_cap"}) == 0
    assert value("raylens_gpu_ecc_enabled", H100_0) == 1
    assert value("raylens_gpu_ecc_errors_total", {**H100_0, "error_type": "uncorrected"}) == 0
    assert value("raylens_gpu_ecc_aggregate_errors_total", {**H100_0, "error_type": "corrected"}) == 17
    assert value("raylens_gpu_remapped_rows_total", {**H100_0, "error_type": "correctable"}) == 1
    assert value("raylens_gpu_row_remap_pending", H100_0) == 0
    assert value("raylens_gpu_row_remap_failed", H100_0) == 0
    # Passive card, HBM with row remapping: no fan, no page retirement, and no error for either.
    text = scrape(registry)
    assert "raylens_gpu_fan_speed_ratio" not in text
    assert "raylens_gpu_retired_pages" not in text
    assert "raylens_gpu_mig_instance_info" not in text


def test_h100_processes_attributed_to_ray_jobs_actors_and_tasks() -> None:
    registry = registry_for(make_collector(fake("h100-sxm-80gb")))
    value = registry.get_sample_value
    common = {"GPU_I_ID": "", "actor_id": "", "process_type": "compute"}
    serving = {
        **common,
        "gpu": "0",
        "UUID": H100_0["UUID"],
        "pid": "48213",
        "job_id": "02000000",
        "actor_class": "LLMServer",
        "task_name": "LLMServer.generate",
        "ray_worker": "actor",
    }
    assert value("raylens_gpu_process_memory_used_bytes", serving) == 73400 * MiB
    idle_actor = {
        **common,
        "gpu": "1",
        "UUID": H100_1["UUID"],
        "pid": "48377",
        "job_id": "03000000",
        "actor_class": "RayTrainWorker",
        "task_name": "",
        "ray_worker": "actor",
    }
    assert value("raylens_gpu_process_memory_used_bytes", idle_actor) == 41234 * MiB
    child = {**idle_actor, "pid": "48391", "actor_class": "", "ray_worker": "subprocess"}
    assert value("raylens_gpu_process_memory_used_bytes", child) == 512 * MiB
    assert value("raylens_gpu_processes", H100_1) == 2
    assert value("raylens_gpu_process_series_dropped_total") == 0


def test_a100_on_driver_470_falls_back_to_older_calls() -> None:
    nvml = fake("a100-sxm4-40gb")
    registry = registry_for(make_collector(nvml))
    value = registry.get_sample_value
    gpu1 = {
        "gpu": "1",
        "UUID": "GPU-6e9a0f13-44d7-c2b8-5a1f-03d8e6b2a957",
        "model_name": "NVIDIA A100-SXM4-40GB",
        "pci_bus_id": "00000000:0F:00.0",
    }
    assert value("raylens_scrape_collector_success", {"collector": "gpu"}) == 1
    whole = {**gpu1, "GPU_I_ID": "", "GPU_I_PROFILE": ""}
    assert value("raylens_gpu_memory_used_bytes", whole) == 488 * MiB  # nvmlDeviceGetMemoryInfo (v1)
    assert value("raylens_gpu_memory_reserved_bytes", whole) is None  # v1 has no reserved figure
    # nvmlDeviceGetCurrentClocksThrottleReasons, for drivers before 535; its supported mask (0xFF)
    # leaves out the display clock reason.
    assert value("raylens_gpu_clocks_event_reason", {**gpu1, "reason": "gpu_idle"}) == 1
    assert value("raylens_gpu_clocks_event_reason", {**gpu1, "reason": "display_clock_setting"}) is None
    idle_worker = {
        "gpu": "1",
        "UUID": gpu1["UUID"],
        "GPU_I_ID": "",
        "pid": "7802",
        "process_type": "compute",
        "job_id": "",  # a pre-started worker: RAY_JOB_ID=ffffffff
        "actor_id": "",
        "actor_class": "",
        "task_name": "",
        "ray_worker": "idle",
    }
    assert value("raylens_gpu_process_memory_used_bytes", idle_worker) == 485 * MiB  # _v2 process call
    # Fallbacks are remembered: the missing symbols are asked once, not on every scrape.
    scrape(registry)
    scrape(registry)
    assert nvml.calls["nvmlDeviceGetMemoryInfo_v2"] == 2  # once per GPU
    assert nvml.calls["nvmlDeviceGetComputeRunningProcesses_v3"] == 2


def test_a10g_gddr_card_reports_page_retirement_and_fan() -> None:
    registry = registry_for(make_collector(fake("a10g")))
    gpu = {
        "gpu": "0",
        "UUID": "GPU-8f4b2a6d-13e9-7c05-d2a8-6b9e1f0c3d74",
        "model_name": "NVIDIA A10G",
        "pci_bus_id": "00000000:00:1E.0",
    }
    value = registry.get_sample_value
    assert value("raylens_gpu_fan_speed_ratio", gpu) == 0
    assert value("raylens_gpu_retired_pages_total", {**gpu, "cause": "double_bit_ecc"}) == 0
    assert value("raylens_gpu_retired_pages_pending", gpu) == 0
    assert value("raylens_gpu_remapped_rows_total", {**gpu, "error_type": "correctable"}) is None
    assert value("raylens_gpu_power_limit_watts", gpu) == 300
    replica = {
        "gpu": "0",
        "UUID": gpu["UUID"],
        "GPU_I_ID": "",
        "pid": "9120",
        "process_type": "compute",
        "job_id": "04000000",
        "actor_id": "",
        "actor_class": "ServeReplica:default:Embedder",
        "task_name": "ServeReplica:default:Embedder.handle_request",
        "ray_worker": "actor",
    }
    assert value("raylens_gpu_process_memory_used_bytes", replica) == 9216 * MiB


def test_t4_counts_retired_pages_and_lifetime_ecc() -> None:
    registry = registry_for(make_collector(fake("t4")))
    gpu = {
        "gpu": "0",
        "UUID": "GPU-2b7c9e04-5fa1-d38e-71c6-9a0d4e8b2f15",
        "model_name": "Tesla T4",
        "pci_bus_id": "00000000:00:1E.0",
    }
    value = registry.get_sample_value
    assert value("raylens_gpu_retired_pages_total", {**gpu, "cause": "multiple_single_bit_ecc"}) == 1
    assert value("raylens_gpu_ecc_aggregate_errors_total", {**gpu, "error_type": "corrected"}) == 4
    assert value("raylens_gpu_ecc_errors_total", {**gpu, "error_type": "corrected"}) == 0
    assert value("raylens_gpu_power_usage_watts", gpu) == pytest.approx(31.218)
    assert value("raylens_gpu_power_limit_watts", gpu) == 70


def test_mig_instances_get_their_own_series() -> None:
    registry = registry_for(make_collector(fake("h100-sxm-80gb-mig")))
    gpu = {
        "gpu": "0",
        "UUID": "GPU-c9d01e7a-8b24-43f5-a6e9-5f17b20d8c33",
        "model_name": "NVIDIA H100 80GB HBM3",
        "pci_bus_id": "00000000:5D:00.0",
    }
    value = registry.get_sample_value
    assert value("raylens_scrape_collector_success", {"collector": "gpu"}) == 1
    assert value("raylens_gpu_info", {**gpu, "driver_version": "550.90.07", "mig_mode": "enabled"}) == 1
    big = {**gpu, "GPU_I_ID": "2", "GPU_I_PROFILE": "3g.40gb"}
    assert value("raylens_gpu_memory_total_bytes", big) == 40192 * MiB
    assert value("raylens_gpu_memory_used_bytes", big) == 28110 * MiB
    small = {**gpu, "GPU_I_ID": "9", "GPU_I_PROFILE": "1g.10gb"}
    assert value("raylens_gpu_memory_free_bytes", small) == (9856 - 13) * MiB
    # The parent's framebuffer would double count the instances'; utilisation is not supported in MIG.
    assert value("raylens_gpu_memory_total_bytes", {**gpu, "GPU_I_ID": "", "GPU_I_PROFILE": ""}) is None
    assert value("raylens_gpu_utilisation_ratio", gpu) is None
    assert value("raylens_gpu_power_usage_watts", gpu) == pytest.approx(301.877)
    instance = {
        **big,
        "compute_instance_id": "0",
        "mig_uuid": "MIG-1f4e8a2c-7d3b-5e90-b6c1-a2d47f9e0b58",
    }
    assert value("raylens_gpu_mig_instance_info", instance) == 1
    embed = {
        "gpu": "0",
        "UUID": gpu["UUID"],
        "GPU_I_ID": "3",
        "pid": "61045",
        "process_type": "compute",
        "job_id": "06000000",
        "actor_id": "",
        "actor_class": "",
        "task_name": "embed_batch",
        "ray_worker": "task",
    }
    assert value("raylens_gpu_process_memory_used_bytes", embed) == 14000 * MiB
    assert value("raylens_gpu_processes", gpu) == 2


def test_card_without_ecc_skips_quietly_and_logs_each_capability_once(caplog: pytest.LogCaptureFixture) -> None:
    nvml = fake("rtx-3090-no-ecc")
    registry = registry_for(make_collector(nvml))
    with caplog.at_level(logging.INFO, logger="raylens.gpu"):
        for _ in range(3):
            text = scrape(registry)
    assert registry.get_sample_value("raylens_scrape_collector_success", {"collector": "gpu"}) == 1
    assert registry.get_sample_value("raylens_scrape_collector_errors_total", {"collector": "gpu"}) == 0
    for family in ("ecc_enabled", "ecc_errors_total", "remapped_rows_total", "retired_pages_total"):
        assert f"raylens_gpu_{family}" not in text
    assert "raylens_gpu_fan_speed_ratio" in text
    skipped = [record for record in caplog.records if record.getMessage() == "GPU capability not available; skipped"]
    calls = [record.call for record in skipped]
    assert "ecc_mode" in calls and "remapped_rows" in calls
    assert len(calls) == len(set(calls)), "each missing capability is logged once, not per scrape"
    assert all(record.error.startswith("NVML_ERROR_NOT_SUPPORTED") for record in skipped)
    assert nvml.calls["nvmlDeviceGetEccMode"] == 1  # not asked again after NOT_SUPPORTED


def test_process_with_compute_and_graphics_contexts_counted_once() -> None:
    registry = registry_for(make_collector(fake("rtx-3090-no-ecc")))
    gpu = {
        "gpu": "0",
        "UUID": "GPU-e1a7c3f5-94b2-6d08-3c5e-8f2a0b7d1e69",
        "model_name": "NVIDIA GeForce RTX 3090",
        "pci_bus_id": "00000000:01:00.0",
    }
    assert registry.get_sample_value("raylens_gpu_processes", gpu) == 4
    viewer = {
        "gpu": "0",
        "UUID": gpu["UUID"],
        "GPU_I_ID": "",
        "pid": "3140",
        "process_type": "compute+graphics",
        "job_id": "",
        "actor_id": "",
        "actor_class": "",
        "task_name": "",
        "ray_worker": "",
    }
    assert registry.get_sample_value("raylens_gpu_process_memory_used_bytes", viewer) == 384 * MiB
    assert scrape(registry).count('pid="3140"') == 1


# A GPU that falls off the bus ---------------------------------------------------------------------


def test_gpu_lost_before_start_is_reported_not_fatal(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="raylens.gpu"):
        registry = registry_for(make_collector(fake("a100-sxm4-80gb-lost-gpu")))
        value = registry.get_sample_value
        assert value("raylens_scrape_collector_success", {"collector": "gpu"}) == 1
    lost = {"gpu": "1", "UUID": "", "model_name": "", "pci_bus_id": ""}
    assert value("raylens_gpu_up", lost) == 0
    healthy = {
        "gpu": "0",
        "UUID": "GPU-47b2e9d0-6c1f-a853-0e7d-2f9c4b1a6e88",
        "model_name": "NVIDIA A100-SXM4-80GB",
        "pci_bus_id": "00000000:07:00.0",
    }
    assert value("raylens_gpu_up", healthy) == 1
    assert value("raylens_gpu_power_usage_watts", healthy) == pytest.approx(64.981)
    assert value("raylens_gpu_devices") == 2
    assert any("NVML_ERROR_GPU_IS_LOST" in getattr(record, "error", "") for record in caplog.records)


def test_gpu_lost_mid_run_keeps_the_others_and_its_xid_counts(caplog: pytest.LogCaptureFixture) -> None:
    nvml = fake("h100-sxm-80gb")
    registry = registry_for(make_collector(nvml))
    nvml.emit_xid(0, 48)
    assert registry.get_sample_value("raylens_gpu_up", H100_0) == 1
    nvml.emit_xid(0, 79)  # "GPU has fallen off the bus", then every call answers GPU_IS_LOST
    nvml.lose_gpu(0)
    with caplog.at_level(logging.WARNING, logger="raylens.gpu"):
        for _ in range(2):
            text = scrape(registry)
    value = registry.get_sample_value
    assert value("raylens_scrape_collector_success", {"collector": "gpu"}) == 1
    assert value("raylens_gpu_up", H100_0) == 0
    assert value("raylens_gpu_power_usage_watts", H100_0) is None
    assert value("raylens_gpu_info", {**H100_0, "driver_version": "550.90.07", "mig_mode": "disabled"}) == 1
    assert value("raylens_gpu_power_usage_watts", H100_1) == pytest.approx(512.3)
    assert value("raylens_gpu_xid_errors_total", {**H100_0, "xid": "48"}) == 1
    assert 'pid="48213"' not in text  # its processes cannot be listed any more
    lost_logs = [record for record in caplog.records if record.getMessage().startswith("GPU lost")]
    assert len(lost_logs) == 1 and lost_logs[0].error.startswith("NVML_ERROR_GPU_IS_LOST")


# XID errors ---------------------------------------------------------------------------------------


def test_xid_burst_counted_by_code_without_blocking() -> None:
    nvml = fake("h100-sxm-80gb-xid-burst")
    registry = registry_for(make_collector(nvml))
    gpu = {
        "gpu": "0",
        "UUID": "GPU-f2c8a6e1-3b9d-47a0-85e4-0d6b1c9f7a23",
        "model_name": "NVIDIA H100 80GB HBM3",
        "pci_bus_id": "00000000:9A:00.0",
    }
    value = registry.get_sample_value
    expected = {"31": 3, "43": 2, "45": 4, "94": 1, "63": 1}
    for xid, count in expected.items():
        assert value("raylens_gpu_xid_errors_total", {**gpu, "xid": xid}) == count
        assert value("raylens_gpu_xid_last_seen_timestamp_seconds", {**gpu, "xid": xid}) == WALL_CLOCK
    assert nvml.wait_timeouts and set(nvml.wait_timeouts) == {0}, "a scrape must never wait for events"
    assert value("raylens_gpu_ecc_errors_total", {**gpu, "error_type": "uncorrected"}) == 1
    assert value("raylens_gpu_row_remap_pending", gpu) == 1
    assert value("raylens_gpu_remapped_rows_total", {**gpu, "error_type": "uncorrectable"}) == 1
    # Counters, not the last code: a later XID adds a series and leaves the others alone.
    nvml.emit_xid(0, 79)
    nvml.emit_xid(0, 31, count=2)
    text = scrape(registry)
    assert value("raylens_gpu_xid_errors_total", {**gpu, "xid": "79"}) == 1
    assert value("raylens_gpu_xid_errors_total", {**gpu, "xid": "31"}) == 5
    assert value("raylens_gpu_xid_errors_total", {**gpu, "xid": "43"}) == 2
    assert text.count("raylens_gpu_xid_errors_total{") == 6


def test_xid_storm_is_drained_a_bounded_amount_per_scrape() -> None:
    nvml = fake("h100-sxm-80gb")
    registry = registry_for(make_collector(nvml))
    nvml.emit_xid(1, 13, count=2500)
    counted = [registry.get_sample_value("raylens_gpu_xid_errors_total", {**H100_1, "xid": "13"}) for _ in range(4)]
    assert counted == [1000, 2000, 2500, 2500]


def test_xid_events_unsupported_leaves_the_counter_absent(caplog: pytest.LogCaptureFixture) -> None:
    nvml = fake("t4")
    nvml.set_answer(0, "nvmlDeviceRegisterEvents", {"error": "NVML_ERROR_NOT_SUPPORTED"})
    with caplog.at_level(logging.INFO, logger="raylens.gpu"):
        registry = registry_for(make_collector(nvml))
        assert registry.get_sample_value("raylens_scrape_collector_success", {"collector": "gpu"}) == 1
    assert "raylens_gpu_xid_errors_total" not in scrape(registry)
    assert any(getattr(record, "call", "") == "nvmlDeviceRegisterEvents" for record in caplog.records)


# Degradation and recovery -------------------------------------------------------------------------


def test_without_nvml_library_success_is_0_with_the_reason(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        registry = registry_for(make_collector(fake("no-nvml-library")))
        text = scrape(registry)
    value = registry.get_sample_value
    assert value("raylens_scrape_collector_success", {"collector": "gpu"}) == 0
    reason = "NVML_ERROR_LIBRARY_NOT_FOUND: NVML Shared Library Not Found"
    status = {"status": "unavailable", "reason": reason, "driver_version": "", "nvml_version": ""}
    assert value("raylens_gpu_nvml_info", status) == 1
    assert "raylens_gpu_up" not in text
    gpu_logs = [record for record in caplog.records if record.name == "raylens.gpu"]
    assert gpu_logs and gpu_logs[0].reason == reason
    scrape_logs = [record for record in caplog.records if getattr(record, "collector", "") == "gpu"]
    assert any(reason in getattr(record, "error", "") for record in scrape_logs)


def test_nvml_without_gpus_is_unavailable() -> None:
    registry = registry_for(make_collector(fake("no-gpu")))
    assert registry.get_sample_value("raylens_scrape_collector_success", {"collector": "gpu"}) == 0
    assert 'reason="NVML reports no GPU on this host"' in scrape(registry)


def test_real_pynvml_on_this_host() -> None:
    """The real module, unfaked: no driver here, so the no-library path; a real GPU where there is one."""
    import pynvml

    reason = None
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as error:
        has_gpu = False
        if error.value == 12:
            reason = f"NVML_ERROR_LIBRARY_NOT_FOUND: {error}"
    else:
        has_gpu = pynvml.nvmlDeviceGetCount() > 0
        pynvml.nvmlShutdown()
    registry = registry_for(GpuCollector(GpuConfig()))
    success = registry.get_sample_value("raylens_scrape_collector_success", {"collector": "gpu"})
    if has_gpu:
        assert success == 1
        assert registry.get_sample_value("raylens_gpu_up", {"gpu": "0"} | _identity_of_gpu0(registry)) == 1
    else:
        assert success == 0
        if reason is not None:
            assert f'reason="{reason}"' in scrape(registry)


def _identity_of_gpu0(registry: CollectorRegistry) -> dict[str, str]:
    for family in registry.collect():
        for sample in family.samples:
            if sample.name == "raylens_gpu_up" and sample.labels["gpu"] == "0":
                return dict(sample.labels)
    return {}


def test_missing_nvidia_ml_py_is_a_reason_not_a_crash(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", None)  # import pynvml -> ImportError
    registry = registry_for(GpuCollector(GpuConfig()))
    assert registry.get_sample_value("raylens_scrape_collector_success", {"collector": "gpu"}) == 0
    assert 'reason="nvidia-ml-py is not installed' in scrape(registry)


def test_init_retried_with_exponential_backoff_then_recovers(caplog: pytest.LogCaptureFixture) -> None:
    nvml = fake("t4")
    nvml.init_error = "NVML_ERROR_DRIVER_NOT_LOADED"
    clock = FakeClock(0.0)
    config = GpuConfig(nvml_retry_initial_seconds=1, nvml_retry_max_seconds=5)
    registry = registry_for(make_collector(nvml, config, clock))

    def success() -> float | None:
        return registry.get_sample_value("raylens_scrape_collector_success", {"collector": "gpu"})

    attempts_at = []
    for _ in range(40):  # one scrape every 0.5 s for 20 s
        before = nvml.calls["nvmlInit"]
        assert success() == 0
        if nvml.calls["nvmlInit"] > before:
            attempts_at.append(clock.now)
        clock.advance(0.5)
    # 1 s, doubling, capped at 5 s: never on every scrape.
    assert attempts_at == [0.0, 1.0, 3.0, 7.0, 12.0, 17.0]
    assert 'reason="NVML_ERROR_DRIVER_NOT_LOADED: Driver Not Loaded"' in scrape(registry)

    nvml.init_error = None  # the driver comes back
    clock.now = 22.0
    with caplog.at_level(logging.INFO, logger="raylens.gpu"):
        assert success() == 1
    assert registry.get_sample_value("raylens_gpu_up", {"gpu": "0"} | _identity_of_gpu0(registry)) == 1
    assert any(record.getMessage().startswith("NVML available again") for record in caplog.records)


def test_driver_failure_mid_run_recovers_and_other_collectors_keep_serving() -> None:
    nvml = fake("h100-sxm-80gb")
    clock = FakeClock(0.0)
    registry = registry_for(make_collector(nvml, GpuConfig(nvml_retry_initial_seconds=2), clock), AlwaysFine())
    value = registry.get_sample_value
    assert value("raylens_scrape_collector_success", {"collector": "gpu"}) == 1
    nvml.emit_xid(0, 31)
    scrape(registry)
    nvml.fail_everything("NVML_ERROR_LIB_RM_VERSION_MISMATCH")  # a driver upgrade under a running exporter
    text = scrape(registry)
    assert value("raylens_scrape_collector_success", {"collector": "gpu"}) == 0
    assert value("raylens_scrape_collector_success", {"collector": "fine"}) == 1
    assert "raylens_gpu_power_usage_watts" not in text
    assert 'status="unavailable"' in text and "NVML_ERROR_LIB_RM_VERSION_MISMATCH" in text
    nvml.fail_everything(None)
    clock.advance(1.0)
    assert value("raylens_scrape_collector_success", {"collector": "gpu"}) == 0  # still backing off
    clock.advance(1.5)
    assert value("raylens_scrape_collector_success", {"collector": "gpu"}) == 1
    assert value("raylens_gpu_power_usage_watts", H100_0) == pytest.approx(645.123)
    assert value("raylens_gpu_xid_errors_total", {**H100_0, "xid": "31"}) == 1  # counts survive re-init


class AlwaysFine(Collector):
    name = "fine"

    def sections(self):  # type: ignore[override]
        return {"nothing": lambda: []}


# Cardinality --------------------------------------------------------------------------------------


def crowded_fixture(processes: int) -> dict[str, Any]:
    data = json.loads((FIXTURES / "h100-sxm-80gb.json").read_text())
    data["devices"] = data["devices"][:1]
    data["devices"][0]["calls"]["nvmlDeviceGetComputeRunningProcesses"] = [
        {"pid": 1000 + n, "usedGpuMemory": (n + 1) * MiB, "gpuInstanceId": 0xFFFFFFFF, "computeInstanceId": 0xFFFFFFFF}
        for n in range(processes)
    ]
    data["processes"] = {
        str(1000 + n): {"cmdline": [f"ray::worker_{n}"], "environ": {"RAY_JOB_ID": f"{n:08x}"}}
        for n in range(processes)
    }
    return data


def test_process_series_capped_biggest_first_with_overflow_counter(caplog: pytest.LogCaptureFixture) -> None:
    registry = registry_for(make_collector(FakeNvml(crowded_fixture(40)), GpuConfig(max_process_series=10)))
    with caplog.at_level(logging.WARNING, logger="raylens.gpu"):
        text = scrape(registry)
        scrape(registry)
    series = [line for line in text.splitlines() if line.startswith("raylens_gpu_process_memory_used_bytes{")]
    assert len(series) == 10
    assert {re.search(r'pid="(\d+)"', line).group(1) for line in series} == {str(1000 + n) for n in range(30, 40)}
    assert registry.get_sample_value("raylens_gpu_processes", H100_0) == 40  # uncapped count
    # 30 left out per scrape; get_sample_value scrapes too, so this is the fourth scrape.
    assert registry.get_sample_value("raylens_gpu_process_series_dropped_total") == 120
    assert [record.getMessage() for record in caplog.records].count(
        "more GPU processes than gpu.max_process_series; the smallest are left out"
    ) == 1


def test_process_series_cap_of_zero_exports_none() -> None:
    registry = registry_for(make_collector(fake("h100-sxm-80gb"), GpuConfig(max_process_series=0)))
    assert "raylens_gpu_process_memory_used_bytes{" not in scrape(registry)
    assert registry.get_sample_value("raylens_gpu_process_series_dropped_total") == 6


def test_attribution_failure_still_exports_the_memory(caplog: pytest.LogCaptureFixture) -> None:
    def broken(pid: int) -> ProcessAttribution:
        raise PermissionError(13, "Permission denied")

    with caplog.at_level(logging.WARNING, logger="raylens.gpu"):
        registry = registry_for(make_collector(fake("t4"), attribute=broken))
        assert registry.get_sample_value("raylens_scrape_collector_success", {"collector": "gpu"}) == 1
    text = scrape(registry)
    assert re.search(r'raylens_gpu_process_memory_used_bytes\{.*job_id="".*pid="15502".*\} 1\.572864e\+09', text)
    assert sum("attribution failed" in record.getMessage() for record in caplog.records) == 1


def test_process_memory_unknown_to_nvml_is_counted_but_not_exported() -> None:
    data = json.loads((FIXTURES / "t4.json").read_text())
    data["devices"][0]["calls"]["nvmlDeviceGetComputeRunningProcesses"][0]["usedGpuMemory"] = None
    registry = registry_for(make_collector(FakeNvml(data)))
    assert "raylens_gpu_process_memory_used_bytes{" not in scrape(registry)
    assert 'raylens_gpu_processes{UUID="GPU-2b7c9e04' in scrape(registry)


def test_concurrent_scrapes_lose_no_xid_counts() -> None:
    nvml = fake("h100-sxm-80gb")
    registry = registry_for(make_collector(nvml))
    nvml.emit_xid(0, 31, count=600)
    errors: list[BaseException] = []

    def work() -> None:
        try:
            for _ in range(10):
                scrape(registry)
        except BaseException as error:  # pragma: no cover - reported below
            errors.append(error)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert registry.get_sample_value("raylens_gpu_xid_errors_total", {**H100_0, "xid": "31"}) == 600


# Wiring: factory, environment, config -------------------------------------------------------------


def test_factory_reads_the_fake_named_by_the_environment(caplog: pytest.LogCaptureFixture) -> None:
    environ = {FAKE_NVML_VARIABLE: str(FIXTURES / "h100-sxm-80gb.json")}
    with caplog.at_level(logging.WARNING, logger="raylens.gpu"):
        collector = build_gpu_collector(RaylensConfig(), environ=environ)
    assert any("fake NVML" in record.getMessage() for record in caplog.records)
    text = scrape(registry_for(collector))
    assert 'job_id="02000000"' in text and 'actor_class="LLMServer"' in text


def test_factory_without_the_variable_uses_real_nvml_lazily() -> None:
    collector = build_gpu_collector(RaylensConfig(), environ={})
    assert collector._nvml is None  # pynvml is imported on the first scrape, not at start-up


def test_state_api_needs_the_node_id(caplog: pytest.LogCaptureFixture) -> None:
    config = RaylensConfig.model_validate({"gpu": {"ray_dashboard_url": "http://127.0.0.1:8265"}})
    with caplog.at_level(logging.WARNING, logger="raylens.gpu"):
        build_gpu_collector(config, environ={})
    assert any("node.ray_node_id is not" in record.getMessage() for record in caplog.records)


def test_gpu_is_a_known_collector_and_its_config_is_validated(tmp_path: Path) -> None:
    config = load_config(None, environ={"RAYLENS_COLLECTORS": "node,gpu"})
    assert config.exporter.collectors == ("node", "gpu")
    bad = tmp_path / "raylens.yaml"
    bad.write_text("gpu:\n  ray_dashboard_url: 127.0.0.1:8265\n  max_process_series: -1\n")
    with pytest.raises(ConfigError) as error:
        load_config(bad)
    message = str(error.value)
    assert f"{bad}: gpu.ray_dashboard_url: got '127.0.0.1:8265'" in message
    assert "gpu.max_process_series: got -1" in message


def test_every_metric_spec_is_emitted_by_some_fixture() -> None:
    emitted: set[str] = set()
    for name in FIXTURE_NAMES:
        registry = registry_for(make_collector(fake(name)))
        emitted |= {family.name for family in registry.collect()}
    # xid series need events, which the burst fixture provides; every family is covered somewhere.
    assert {spec.name for spec in METRICS.values()} - emitted == set()


def test_fixture_readings_are_internally_consistent() -> None:
    """Fixtures stand in for real cards: hold them to what NVML guarantees."""
    for path in FIXTURES.glob("*.json"):
        data = json.loads(path.read_text())
        for device in data.get("devices", []):
            for calls in [device.get("calls", {})] + [mig["calls"] for mig in device.get("mig_devices", [])]:
                v1 = calls.get("nvmlDeviceGetMemoryInfo")
                if isinstance(v1, dict) and "total" in v1:
                    assert v1["used"] + v1["free"] == v1["total"], path.name
                v2 = calls.get("nvmlDeviceGetMemoryInfo_v2")
                if isinstance(v2, dict) and "total" in v2:
                    assert v2["used"] + v2["free"] + v2["reserved"] == v2["total"], path.name
                power, limit = calls.get("nvmlDeviceGetPowerUsage"), calls.get("nvmlDeviceGetEnforcedPowerLimit")
                if isinstance(power, int) and isinstance(limit, int):
                    assert 10_000 <= power <= limit * 1.05 and limit % 1000 == 0, path.name  # milliwatts
                temperature = calls.get("nvmlDeviceGetTemperature", {}).get("0")
                if temperature is not None:
                    assert 20 <= temperature <= 95, path.name
                for process in calls.get("nvmlDeviceGetComputeRunningProcesses", []):
                    assert process["usedGpuMemory"] % MiB == 0, path.name  # NVML reports whole MiB


def test_fixtures_do_not_leak_between_collectors() -> None:
    base = json.loads((FIXTURES / "h100-sxm-80gb.json").read_text())
    first = FakeNvml(base)
    first.lose_gpu(0)
    assert not FakeNvml(copy.deepcopy(base)).devices[0].data.get("lost")
