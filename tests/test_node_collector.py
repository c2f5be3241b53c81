"""The node collector against a fake psutil, through a fresh registry, as Prometheus would see it."""

from __future__ import annotations

import logging
import os
import subprocess
from collections import namedtuple
from types import SimpleNamespace
from typing import Any

import psutil
import pytest
from exposition_check import scrape
from prometheus_client import CollectorRegistry, generate_latest

from raylens.collectors.base import Collector, ScrapeHealthCollector
from raylens.collectors.node import NodeCollector
from raylens.config import NodeConfig

CpuTimes = namedtuple("CpuTimes", "user nice system idle iowait irq softirq steal guest guest_nice")
Disk = namedtuple(
    "Disk",
    "read_count write_count read_bytes write_bytes read_time write_time read_merged_count write_merged_count busy_time",
)
Nic = namedtuple("Nic", "bytes_sent bytes_recv packets_sent packets_recv errin errout dropin dropout")
Partition = namedtuple("Partition", "device mountpoint fstype opts")
StatVfs = namedtuple("StatVfs", "f_bsize f_frsize f_blocks f_bfree f_bavail f_files f_ffree f_favail f_flag")


class FakePsutil:
    """Readings shaped after a 2-CPU Debian VM."""

    def __init__(self) -> None:
        self.fail: set[str] = set()

    def _check(self, name: str) -> None:
        if name in self.fail:
            raise OSError(5, f"{name} unreadable")

    def cpu_times(self, percpu: bool) -> list[CpuTimes]:
        self._check("cpu_times")
        return [
            CpuTimes(100.5, 1.0, 20.0, 1000.0, 3.0, 0.0, 0.5, 0.0, 0.0, 0.0),
            CpuTimes(90.0, 0.0, 25.0, 1010.0, 1.0, 0.0, 0.25, 0.0, 0.0, 0.0),
        ]

    def virtual_memory(self) -> Any:
        self._check("virtual_memory")
        return SimpleNamespace(
            total=8 << 30, available=6 << 30, free=4 << 30, buffers=1 << 20, cached=1 << 30, shared=1 << 24
        )

    def swap_memory(self) -> Any:
        return SimpleNamespace(total=2 << 30, free=1 << 30, sin=4096, sout=8192)

    def disk_io_counters(self, perdisk: bool) -> dict[str, Disk]:
        return {
            "vda": Disk(10, 20, 4096, 8192, 1500, 2500, 1, 2, 3000),
            "vda1": Disk(1, 1, 1, 1, 1, 1, 1, 1, 1),  # a partition: excluded like node_exporter
            "loop0": Disk(1, 1, 1, 1, 1, 1, 1, 1, 1),
        }

    def disk_partitions(self, all: bool) -> list[Partition]:
        return [
            Partition("/dev/vda1", "/", "ext4", "rw"),
            Partition("proc", "/proc", "proc", "rw"),
            Partition("overlay", "/var/lib/docker/overlay2/x/merged", "overlay", "rw"),
            Partition("/dev/vdb", "/data", "xfs", "ro"),
            Partition("/dev/vda1", "/", "ext4", "rw"),  # bind mounts repeat a mountpoint
            Partition("gone", "/mnt/gone", "nfs", "rw"),
        ]

    def net_io_counters(self, pernic: bool) -> dict[str, Nic]:
        return {"eth0": Nic(2000, 1000, 20, 10, 1, 2, 3, 4), "lo": Nic(5, 5, 1, 1, 0, 0, 0, 0)}

    def boot_time(self) -> float:
        return 1_700_000_000.0

    def cpu_stats(self) -> Any:
        return SimpleNamespace(ctx_switches=12345, interrupts=678)

    def pids(self) -> list[int]:
        return [1, 2, 3]


def fake_statvfs(path: str) -> StatVfs:
    if path == "/mnt/gone":
        raise OSError(116, "Stale file handle")
    readonly = os.ST_RDONLY if path == "/data" else 0
    return StatVfs(4096, 4096, 1000, 400, 300, 50, 20, 20, readonly)


def registry_for(*collectors: Collector) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ScrapeHealthCollector(list(collectors)))
    return registry


@pytest.fixture
def fake() -> FakePsutil:
    return FakePsutil()


@pytest.fixture
def registry(fake: FakePsutil) -> CollectorRegistry:
    config = NodeConfig(instance_type="g5.xlarge", market="spot", ray_node_id="abc123")
    collector = NodeCollector(
        config,
        source=fake,
        statvfs=fake_statvfs,
        load_average=lambda: (0.5, 0.25, 0.125),
        hostname=lambda: "ray-head",
    )
    return registry_for(collector)


def test_cpu_seconds_are_counters_per_cpu_and_mode(registry: CollectorRegistry) -> None:
    value = registry.get_sample_value
    assert value("raylens_node_cpu_seconds_total", {"cpu": "0", "mode": "user"}) == 100.5
    assert value("raylens_node_cpu_seconds_total", {"cpu": "1", "mode": "idle"}) == 1010.0
    assert value("raylens_node_cpu_seconds_total", {"cpu": "1", "mode": "softirq"}) == 0.25
    # guest time is already inside user on Linux; exporting it again would double count.
    assert value("raylens_node_cpu_seconds_total", {"cpu": "0", "mode": "guest"}) is None


def test_not_busy_seconds_sum_idle_iowait_and_steal_over_all_cpus(registry: CollectorRegistry) -> None:
    # cpu 0: idle 1000 + iowait 3 + steal 0; cpu 1: idle 1010 + iowait 1 + steal 0.
    assert registry.get_sample_value("raylens_node_cpu_not_busy_seconds_total") == 2014.0


def test_cpus_counts_the_per_cpu_entries(registry: CollectorRegistry) -> None:
    assert registry.get_sample_value("raylens_node_cpus") == 2.0
    assert "# TYPE raylens_node_cpus gauge" in scrape(registry)


def test_memory_load_and_stat(registry: CollectorRegistry) -> None:
    value = registry.get_sample_value
    assert value("raylens_node_memory_total_bytes") == 8 << 30
    assert value("raylens_node_memory_available_bytes") == 6 << 30
    assert value("raylens_node_memory_swap_free_bytes") == 1 << 30
    assert value("raylens_node_memory_swapped_out_bytes_total") == 8192
    assert value("raylens_node_load15") == 0.125
    assert value("raylens_node_boot_time_seconds") == 1_700_000_000.0
    assert value("raylens_node_context_switches_total") == 12345
    assert value("raylens_node_processes") == 3


def test_disks_skip_partitions_and_loops_and_convert_milliseconds(registry: CollectorRegistry) -> None:
    value = registry.get_sample_value
    assert value("raylens_node_disk_read_bytes_total", {"device": "vda"}) == 4096
    assert value("raylens_node_disk_io_time_seconds_total", {"device": "vda"}) == 3.0
    assert value("raylens_node_disk_write_time_seconds_total", {"device": "vda"}) == 2.5
    assert value("raylens_node_disk_read_bytes_total", {"device": "vda1"}) is None
    assert value("raylens_node_disk_read_bytes_total", {"device": "loop0"}) is None


def test_filesystems_skip_pseudo_and_vanished_mounts(registry: CollectorRegistry) -> None:
    value = registry.get_sample_value
    root = {"device": "/dev/vda1", "mountpoint": "/", "fstype": "ext4"}
    assert value("raylens_node_filesystem_size_bytes", root) == 1000 * 4096
    assert value("raylens_node_filesystem_free_bytes", root) == 400 * 4096
    assert value("raylens_node_filesystem_avail_bytes", root) == 300 * 4096
    assert value("raylens_node_filesystem_files_free", root) == 20
    assert value("raylens_node_filesystem_readonly", root) == 0
    assert (
        value("raylens_node_filesystem_readonly", {"device": "/dev/vdb", "mountpoint": "/data", "fstype": "xfs"}) == 1
    )
    exposition = scrape(registry)
    assert 'mountpoint="/proc"' not in exposition
    assert "docker" not in exposition
    assert "/mnt/gone" not in exposition
    assert exposition.count('raylens_node_filesystem_size_bytes{device="/dev/vda1"') == 1


def test_network_per_interface(registry: CollectorRegistry) -> None:
    value = registry.get_sample_value
    assert value("raylens_node_network_receive_bytes_total", {"device": "eth0"}) == 1000
    assert value("raylens_node_network_transmit_drop_total", {"device": "eth0"}) == 4
    assert value("raylens_node_network_receive_errs_total", {"device": "lo"}) == 0


def test_info_carries_identity(registry: CollectorRegistry) -> None:
    labels = {"hostname": "ray-head", "instance_type": "g5.xlarge", "market": "spot", "ray_node_id": "abc123"}
    assert registry.get_sample_value("raylens_node_info", labels) == 1


def test_health_series_on_success(registry: CollectorRegistry) -> None:
    value = registry.get_sample_value
    assert value("raylens_scrape_collector_success", {"collector": "node"}) == 1
    assert value("raylens_scrape_collector_errors_total", {"collector": "node"}) == 0
    assert value("raylens_scrape_collector_duration_seconds", {"collector": "node"}) >= 0


def test_failing_section_is_counted_logged_and_isolated(
    fake: FakePsutil, registry: CollectorRegistry, caplog: pytest.LogCaptureFixture
) -> None:
    fake.fail.add("cpu_times")
    with caplog.at_level(logging.WARNING, logger="raylens.scrape"):
        generate_latest(registry)
        text = generate_latest(registry).decode()
    assert "raylens_node_cpu_seconds_total" not in text
    assert "raylens_node_cpu_not_busy_seconds_total" not in text
    assert "raylens_node_cpus" not in text
    assert "raylens_node_memory_total_bytes" in text  # the other sections still report
    assert 'raylens_scrape_collector_success{collector="node"} 0.0' in text
    assert 'raylens_scrape_collector_errors_total{collector="node"} 2.0' in text  # one per faulty scrape
    records = [record for record in caplog.records if getattr(record, "collector", None) == "node"]
    assert records and records[0].section == "cpu" and "cpu_times unreadable" in records[0].error
    fake.fail.clear()  # recovers by itself on the next scrape
    assert registry.get_sample_value("raylens_scrape_collector_success", {"collector": "node"}) == 1


class ExplodingCollector(Collector):
    name = "exploding"

    def sections(self):  # type: ignore[override]
        raise RuntimeError("cannot even start")


def test_a_broken_collector_never_breaks_the_others(fake: FakePsutil) -> None:
    node = NodeCollector(NodeConfig(), source=fake, statvfs=fake_statvfs, load_average=lambda: (0, 0, 0))
    registry = registry_for(ExplodingCollector(), node)
    assert registry.get_sample_value("raylens_scrape_collector_success", {"collector": "exploding"}) == 0
    assert registry.get_sample_value("raylens_scrape_collector_success", {"collector": "node"}) == 1
    assert registry.get_sample_value("raylens_node_memory_total_bytes") == 8 << 30


def test_exposition_passes_promtool_lint(registry: CollectorRegistry) -> None:
    result = subprocess.run(
        ["promtool", "check", "metrics"], input=generate_latest(registry), capture_output=True, timeout=30
    )
    assert result.returncode == 0, result.stdout.decode() + result.stderr.decode()
    assert result.stdout.decode().strip() == "" and result.stderr.decode().strip() == ""


def test_real_psutil_on_this_host() -> None:
    registry = registry_for(NodeCollector(NodeConfig()))
    assert registry.get_sample_value("raylens_scrape_collector_success", {"collector": "node"}) == 1
    assert registry.get_sample_value("raylens_node_cpu_seconds_total", {"cpu": "0", "mode": "idle"}) > 0
    # One scrape: the per-node sum equals the per-CPU series it sums (modes psutil lacks here are absent).
    samples = [sample for family in registry.collect() for sample in family.samples]
    per_cpu = [
        sample.value
        for sample in samples
        if sample.name == "raylens_node_cpu_seconds_total" and sample.labels["mode"] in ("idle", "iowait", "steal")
    ]
    (not_busy,) = [sample.value for sample in samples if sample.name == "raylens_node_cpu_not_busy_seconds_total"]
    assert per_cpu and not_busy == pytest.approx(sum(per_cpu), rel=1e-12)
    # ... and the CPU count is the number of CPUs those series name.
    cpus = {sample.labels["cpu"] for sample in samples if sample.name == "raylens_node_cpu_seconds_total"}
    (count,) = [sample.value for sample in samples if sample.name == "raylens_node_cpus"]
    assert count == len(cpus) == len(psutil.cpu_times(percpu=True))
    assert registry.get_sample_value("raylens_node_memory_total_bytes") > 0
