"""Host metrics through psutil, in node_exporter's shapes under the ``raylens_node_`` prefix.

A user who knows ``node_cpu_seconds_total{cpu,mode}`` finds ``raylens_node_cpu_seconds_total{cpu,mode}``;
dashboards switch source by changing the prefix. CPU time is exported as counters, never as
percentages, so several scrapers do not disturb each other. Sample::

    raylens_node_cpu_seconds_total{cpu="0",mode="idle"} 81234.56
    raylens_node_cpu_not_busy_seconds_total 162345.67
    raylens_node_cpus 2.0
    raylens_node_memory_available_bytes 2.0235e+10
    raylens_node_filesystem_avail_bytes{device="/dev/sda1",fstype="ext4",mountpoint="/"} 4.1e+10
    raylens_node_network_receive_bytes_total{device="eth0"} 1.234e+09
    raylens_node_info{hostname="ray-head",instance_type="g5.xlarge",market="spot",ray_node_id="ab12"} 1.0
"""

from __future__ import annotations

import os
import re
import socket
from collections.abc import Callable, Iterator, Mapping
from types import ModuleType
from typing import Any

import psutil
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily, Metric

from raylens.collectors.base import Collector, Section
from raylens.config import NodeConfig

CPU_MODES = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal")
# Time a CPU could have given to work but did not, as node-mixin counts it for CPU utilisation.
NOT_BUSY_MODES = ("idle", "iowait", "steal")

# (metric suffix, psutil field, scale to base units, help)
_DISK_COUNTERS = (
    ("reads_completed", "read_count", 1.0, "Reads completed successfully."),
    ("writes_completed", "write_count", 1.0, "Writes completed successfully."),
    ("reads_merged", "read_merged_count", 1.0, "Reads merged."),
    ("writes_merged", "write_merged_count", 1.0, "Writes merged."),
    ("read_bytes", "read_bytes", 1.0, "Bytes read successfully."),
    ("written_bytes", "write_bytes", 1.0, "Bytes written successfully."),
    ("read_time_seconds", "read_time", 0.001, "Time spent by all reads."),
    ("write_time_seconds", "write_time", 0.001, "Time spent by all writes."),
    ("io_time_seconds", "busy_time", 0.001, "Time spent doing I/Os."),
)
_NETWORK_COUNTERS = (
    ("receive_bytes", "bytes_recv", "Bytes received."),
    ("transmit_bytes", "bytes_sent", "Bytes transmitted."),
    ("receive_packets", "packets_recv", "Packets received."),
    ("transmit_packets", "packets_sent", "Packets transmitted."),
    ("receive_errs", "errin", "Receive errors."),
    ("transmit_errs", "errout", "Transmit errors."),
    ("receive_drop", "dropin", "Received packets dropped."),
    ("transmit_drop", "dropout", "Transmitted packets dropped."),
)
_MEMORY_GAUGES = (
    ("total", "total", "Total usable memory."),
    ("available", "available", "Memory available for new work without swapping (MemAvailable)."),
    ("free", "free", "Memory not used at all (MemFree)."),
    ("buffers", "buffers", "Memory in kernel buffers."),
    ("cached", "cached", "Memory in the page cache."),
    ("shared", "shared", "Memory shared between processes (tmpfs included)."),
)


class NodeCollector(Collector):
    name = "node"

    def __init__(
        self,
        config: NodeConfig,
        source: ModuleType | Any = psutil,
        statvfs: Callable[[str], os.statvfs_result] = os.statvfs,
        load_average: Callable[[], tuple[float, float, float]] = os.getloadavg,
        hostname: Callable[[], str] = socket.gethostname,
    ):
        self._config = config
        self._psutil = source
        self._statvfs = statvfs
        self._load_average = load_average
        self._hostname = config.hostname or hostname()
        self._disk_exclude = re.compile(config.disk_device_exclude)
        self._mount_exclude = re.compile(config.filesystem_mount_points_exclude)
        self._fs_type_exclude = re.compile(config.filesystem_fs_types_exclude)
        self._network_exclude = re.compile(config.network_device_exclude)

    def sections(self) -> Mapping[str, Section]:
        return {
            "cpu": self._cpu,
            "loadavg": self._loadavg,
            "memory": self._memory,
            "diskstats": self._diskstats,
            "filesystem": self._filesystem,
            "netdev": self._netdev,
            "stat": self._stat,
            "info": self._info,
        }

    def _cpu(self) -> Iterator[Metric]:
        seconds = CounterMetricFamily(
            "raylens_node_cpu_seconds", "Seconds the CPUs spent in each mode.", labels=["cpu", "mode"]
        )
        not_busy = 0.0
        per_cpu = self._psutil.cpu_times(percpu=True)
        for cpu, times in enumerate(per_cpu):
            for mode in CPU_MODES:
                value = getattr(times, mode, None)
                if value is not None:
                    seconds.add_metric([str(cpu), mode], value)
                    if mode in NOT_BUSY_MODES:
                        not_busy += value
        yield seconds
        # One series per node for instance:raylens_node_cpu_utilisation:rate5m: at 1,000 nodes the rule
        # read 3 modes x ~27 CPUs per node through the per-CPU series, the heaviest read of its group.
        yield CounterMetricFamily(
            "raylens_node_cpu_not_busy_seconds",
            "Seconds the CPUs spent idle, in iowait or in steal, summed over all CPUs "
            '(the sum of raylens_node_cpu_seconds_total{mode=~"idle|iowait|steal"}).',
            value=not_busy,
        )
        # One series per node for instance:raylens_node_num_cpu:sum, which counted the per-CPU idle
        # series (~27 per node at 1,000 nodes, the slowest rule of its group). From the same reading,
        # so it always equals the number of cpu label values above.
        yield GaugeMetricFamily(
            "raylens_node_cpus",
            "Logical CPUs on the node: the number of cpu label values of raylens_node_cpu_seconds_total.",
            value=len(per_cpu),
        )

    def _loadavg(self) -> Iterator[Metric]:
        for window, value in zip((1, 5, 15), self._load_average(), strict=True):
            yield GaugeMetricFamily(f"raylens_node_load{window}", f"{window}m load average.", value=value)

    def _memory(self) -> Iterator[Metric]:
        memory = self._psutil.virtual_memory()
        for suffix, field, help_text in _MEMORY_GAUGES:
            value = getattr(memory, field, None)
            if value is not None:
                yield GaugeMetricFamily(f"raylens_node_memory_{suffix}_bytes", help_text, value=value)
        swap = self._psutil.swap_memory()
        yield GaugeMetricFamily("raylens_node_memory_swap_total_bytes", "Total swap space.", value=swap.total)
        yield GaugeMetricFamily("raylens_node_memory_swap_free_bytes", "Unused swap space.", value=swap.free)
        yield CounterMetricFamily("raylens_node_memory_swapped_in_bytes", "Bytes swapped in from disk.", value=swap.sin)
        yield CounterMetricFamily(
            "raylens_node_memory_swapped_out_bytes", "Bytes swapped out to disk.", value=swap.sout
        )

    def _diskstats(self) -> Iterator[Metric]:
        disks = {
            device: counters
            for device, counters in (self._psutil.disk_io_counters(perdisk=True) or {}).items()
            if not self._disk_exclude.search(device)
        }
        for suffix, field, scale, help_text in _DISK_COUNTERS:
            family = CounterMetricFamily(f"raylens_node_disk_{suffix}", help_text, labels=["device"])
            for device, counters in sorted(disks.items()):
                value = getattr(counters, field, None)
                if value is not None:
                    family.add_metric([device], value * scale)
            yield family

    def _filesystem(self) -> Iterator[Metric]:
        labels = ["device", "mountpoint", "fstype"]
        size = GaugeMetricFamily("raylens_node_filesystem_size_bytes", "Filesystem size.", labels=labels)
        free = GaugeMetricFamily(
            "raylens_node_filesystem_free_bytes", "Free space, root's reserve included.", labels=labels
        )
        avail = GaugeMetricFamily(
            "raylens_node_filesystem_avail_bytes", "Space available to non-root users.", labels=labels
        )
        files = GaugeMetricFamily("raylens_node_filesystem_files", "Total inodes.", labels=labels)
        files_free = GaugeMetricFamily("raylens_node_filesystem_files_free", "Free inodes.", labels=labels)
        readonly = GaugeMetricFamily("raylens_node_filesystem_readonly", "1 if mounted read-only.", labels=labels)
        seen: set[str] = set()
        for partition in self._psutil.disk_partitions(all=True):
            mountpoint, fstype = partition.mountpoint, partition.fstype
            if mountpoint in seen or self._mount_exclude.search(mountpoint) or self._fs_type_exclude.search(fstype):
                continue
            seen.add(mountpoint)
            try:
                stats = self._statvfs(mountpoint)
            except OSError:
                # A mount can vanish between listing and stat; node_exporter skips it the same way.
                continue
            values = [partition.device, mountpoint, fstype]
            size.add_metric(values, stats.f_blocks * stats.f_frsize)
            free.add_metric(values, stats.f_bfree * stats.f_frsize)
            avail.add_metric(values, stats.f_bavail * stats.f_frsize)
            files.add_metric(values, stats.f_files)
            files_free.add_metric(values, stats.f_ffree)
            readonly.add_metric(values, 1.0 if stats.f_flag & os.ST_RDONLY else 0.0)
        yield from (size, free, avail, files, files_free, readonly)

    def _netdev(self) -> Iterator[Metric]:
        interfaces = {
            device: counters
            for device, counters in self._psutil.net_io_counters(pernic=True).items()
            if not self._network_exclude.search(device)
        }
        for suffix, field, help_text in _NETWORK_COUNTERS:
            family = CounterMetricFamily(f"raylens_node_network_{suffix}", help_text, labels=["device"])
            for device, counters in sorted(interfaces.items()):
                family.add_metric([device], getattr(counters, field))
            yield family

    def _stat(self) -> Iterator[Metric]:
        yield GaugeMetricFamily(
            "raylens_node_boot_time_seconds",
            "Boot time, seconds since the epoch.",
            value=self._psutil.boot_time(),
        )
        stats = self._psutil.cpu_stats()
        yield CounterMetricFamily("raylens_node_context_switches", "Context switches.", value=stats.ctx_switches)
        yield CounterMetricFamily("raylens_node_intr", "Interrupts serviced.", value=stats.interrupts)
        yield GaugeMetricFamily("raylens_node_processes", "Processes on the host.", value=len(self._psutil.pids()))

    def _info(self) -> Iterator[Metric]:
        info = InfoMetricFamily("raylens_node", "Host identity; labels are empty when unknown.")
        info.add_metric(
            [],
            {
                "hostname": self._hostname,
                "ray_node_id": self._config.ray_node_id or "",
                "instance_type": self._config.instance_type or "",
                "market": self._config.market or "",
            },
        )
        yield info
