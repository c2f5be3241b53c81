"""A synthetic Ray fleet and the series Prometheus would hold for it (used by ``benchmarks/fleet.py``).

The fleet: N node slots of four instance types (two CPU, two GPU), 30 % spot. On-demand nodes live
through the whole range; spot nodes are reclaimed every few hours and replaced by a new node (new
node id, new IP, so new series, as in production). Jobs of 20 projects, 100 users and 10 teams come
and go; a few Serve applications, Ray Data datasets and Ray Train runs run throughout.

Series follow the live exporters exactly in names and label names (``tests/test_fleet.py`` compares a
generated node with a live scrape of ``raylens exporter``, and the cluster exporter's series with the
real ``ray`` and ``cost`` collectors): per node the ``node`` and ``gpu`` collectors (job ``raylens``)
and Ray's metrics agent (job ``ray``); once per cluster the ``ray`` and ``cost`` collectors (job
``raylens``, on the head) and Ray's cluster-level series. Only the families that a dashboard panel,
a variable or a rule reads are generated, each with every series the exporter would expose.

A series is a label string and a value shape; ``values`` turns a shape into samples at given times:
counters grow at a daily-varying rate (monotonic), gauges swing daily around a base.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace

SESSION = "session_2026-11-01_00-00-00_000000_1"
RAY_VERSION = "2.60.0"
DAY = 86400.0
CPU_MODES = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal")
NOT_BUSY_MODES = ("idle", "iowait", "steal")  # summed per node like the node collector does
CLOCK_REASONS = (
    "gpu_idle",
    "applications_clocks_setting",
    "sw_power_cap",
    "hw_slowdown",
    "sync_boost",
    "sw_thermal_slowdown",
    "hw_thermal_slowdown",
    "hw_power_brake_slowdown",
    "display_clock_setting",
)
NETWORK_DEVICES = ("eth0", "lo")
DISKS = ("nvme0n1", "nvme1n1")
FILESYSTEMS = (("/dev/nvme0n1p1", "/", "ext4"), ("/dev/nvme1n1", "/tmp/ray", "xfs"))
COST_KINDS = ("compute", "storage", "network")
PROJECTS = [f"project-{index:02d}" for index in range(20)]
TEAMS = [f"team-{index}" for index in range(10)]
USERS = [f"user-{index:03d}" for index in range(100)]
WORKLOADS = ("train", "serve", "data", "tasks")


@dataclass(frozen=True)
class NodeType:
    name: str
    cpus: int
    gpus: int
    memory_gib: int
    gpu_model: str
    usd_per_hour: float
    weight: float


NODE_TYPES = (
    NodeType("m5.2xlarge", 8, 0, 32, "", 0.384, 0.4),
    NodeType("m5.4xlarge", 16, 0, 64, "", 0.768, 0.3),
    NodeType("g5.12xlarge", 48, 4, 192, "NVIDIA A10G", 5.672, 0.2),
    NodeType("p4d.24xlarge", 96, 8, 1152, "NVIDIA A100-SXM4-40GB", 32.773, 0.1),
)


@dataclass
class Node:
    """One node's life: a slot's incarnation between ``start`` and ``end``."""

    slot: int
    incarnation: int
    type: NodeType
    market: str
    start: float
    end: float
    is_head: bool = False

    @property
    def ip(self) -> str:
        number = self.slot * 16 + self.incarnation % 16 + self.incarnation // 16 * 65536
        return f"10.{number // 65536 % 256}.{number // 256 % 256}.{number % 256}"

    @property
    def node_id(self) -> str:
        return f"{self.slot:028x}{self.incarnation:028x}"


@dataclass
class Series:
    """One series: ``labels`` is the text between the braces; ``shape`` is (kind, a, b) with kind
    'c' (counter: a = mean rate/s, b = starting value), 'g' (gauge: a = base, b = relative swing),
    'k' (constant a). With ``parts`` (counters), the series is their sum and ``shape`` is unused."""

    labels: str
    shape: tuple[str, float, float]
    start: float
    end: float
    parts: tuple[Series, ...] = ()


@dataclass
class Fleet:
    nodes: list[Node]
    start: float
    end: float
    jobs: list[tuple[str, float, float, str, str, str]] = field(default_factory=list)


def build_fleet(slots: int, start: float, end: float, seed: int = 14) -> Fleet:
    """Nodes (the head is slot 0, on demand) and jobs over [start, end]."""
    rng = random.Random(seed)
    weights = [node_type.weight for node_type in NODE_TYPES]
    nodes: list[Node] = []
    for slot in range(slots):
        node_type = NODE_TYPES[1] if slot == 0 else rng.choices(NODE_TYPES, weights)[0]
        if slot % 25 in (3, 5):
            node_type = NODE_TYPES[2]  # GPU nodes with stories: an XID (slot % 100 == 3), idle GPUs (% 25 == 5)
        spot = slot != 0 and rng.random() < 0.3
        if not spot:
            nodes.append(Node(slot, 0, node_type, "on_demand", start, end, is_head=slot == 0))
            continue
        begin, incarnation = start, 0
        while begin < end:
            life = rng.uniform(2, 12) * 3600
            nodes.append(Node(slot, incarnation, node_type, "spot", begin, min(begin + life, end)))
            begin += life + 60  # a minute to replace a reclaimed node
            incarnation += 1
    jobs = []
    begin, index = start - 3600, 0
    while begin < end:
        # About one job starting every 10 minutes per 100 nodes, each running 1-8 hours.
        length = rng.uniform(1, 8) * 3600
        number = rng.randrange(len(USERS))
        jobs.append(
            (f"{index + 1:08x}", begin, begin + length, USERS[number], PROJECTS[number % 20], TEAMS[number % 10])
        )
        begin += 600 * 100 / max(slots, 1)
        index += 1
    return Fleet(nodes, start, end, jobs)


def labels(**pairs: str) -> str:
    return ",".join(f'{name}="{value}"' for name, value in sorted(pairs.items()))


def values(shape: tuple[str, float, float], start: float, times: Sequence[float], phase: float) -> Iterator[float]:
    """Samples of one series at ``times`` (its life began at ``start``)."""
    kind, a, b = shape
    if kind == "k":
        for _ in times:
            yield a
        return
    omega = 2 * math.pi / DAY
    if kind == "g":
        for time in times:
            yield a * (1 + b * math.sin(omega * time + phase) * (0.8 + 0.2 * math.sin(time * 0.0137 + phase)))
        return
    # Counter: the integral of a * (1 + 0.5 sin(omega t + phase)), never decreasing.
    for time in times:
        elapsed = time - start
        yield b + a * (elapsed + 0.5 / omega * (math.cos(omega * start + phase) - math.cos(omega * time + phase)))


def series_values(series: Series, times: Sequence[float], phase: Callable[[str], float]) -> Iterator[float]:
    """Samples of ``series`` at ``times``; ``phase`` gives a series' phase from its labels."""
    if not series.parts:
        return values(series.shape, series.start, times, phase(series.labels))
    return _counter_sum(series.parts, [phase(part.labels) for part in series.parts], times)


def _counter_sum(parts: Sequence[Series], phases: Sequence[float], times: Sequence[float]) -> Iterator[float]:
    """The sum of counter parts, in closed form: the same numbers as adding up ``values`` of every part
    (to rounding), at the cost of one series rather than one per part (a 96-CPU node has 288)."""
    omega = 2 * math.pi / DAY
    if any(part.shape[0] != "c" for part in parts):
        raise ValueError("only counters can be summed")
    # Each part is b + a * (t - s + 0.5 / omega * (cos(omega s + phase) - cos(omega t + phase))); the sum
    # of a * cos(omega t + phase) over the parts is C cos(omega t) - S sin(omega t).
    # Times from the first part's start, not from the epoch, so that no large terms cancel.
    origin = parts[0].start
    rate = sum(part.shape[1] for part in parts)
    constant = sum(
        part.shape[2]
        - part.shape[1] * (part.start - origin)
        + part.shape[1] * 0.5 / omega * math.cos(omega * part.start + phase)
        for part, phase in zip(parts, phases, strict=True)
    )
    cosines = sum(part.shape[1] * math.cos(phase) for part, phase in zip(parts, phases, strict=True))
    sines = sum(part.shape[1] * math.sin(phase) for part, phase in zip(parts, phases, strict=True))
    for time in times:
        swing = cosines * math.cos(omega * time) - sines * math.sin(omega * time)
        yield constant + rate * (time - origin) - 0.5 / omega * swing


def node_exporter_series(node: Node, rng: random.Random) -> Iterator[tuple[str, Series]]:
    """The raylens exporter on the node: ``node`` and ``gpu`` collectors (job raylens)."""
    base = labels(instance=f"{node.ip}:9965", job="raylens")
    node_type = node.type

    def series(name: str, extra: str, shape: tuple[str, float, float]) -> tuple[str, Series]:
        text = f"{base},{extra}" if extra else base
        return name, Series(text, shape, node.start, node.end)

    busy = rng.uniform(0.1, 0.9)
    not_busy: list[Series] = []
    for cpu in range(node_type.cpus):
        for mode in CPU_MODES:
            share = {"idle": 1 - busy, "user": busy * 0.8, "system": busy * 0.15}.get(mode, busy * 0.01)
            name, per_cpu = series("raylens_node_cpu_seconds_total", labels(cpu=str(cpu), mode=mode), ("c", share, 1e5))
            if mode in NOT_BUSY_MODES:
                not_busy.append(per_cpu)
            yield name, per_cpu
    name, total = series("raylens_node_cpu_not_busy_seconds_total", "", ("c", 0.0, 0.0))
    yield name, replace(total, parts=tuple(not_busy))
    yield series("raylens_node_cpus", "", ("k", node_type.cpus, 0))
    yield series("raylens_node_load1", "", ("g", node_type.cpus * busy, 0.3))
    memory = node_type.memory_gib * 2**30
    yield series("raylens_node_memory_total_bytes", "", ("k", memory, 0))
    yield series("raylens_node_memory_available_bytes", "", ("g", memory * (1 - busy * 0.8), 0.2))
    yield series("raylens_node_memory_shared_bytes", "", ("g", memory * 0.2, 0.3))
    for disk in DISKS:
        yield series("raylens_node_disk_io_time_seconds_total", labels(device=disk), ("c", busy * 0.3, 1e4))
        yield series("raylens_node_disk_read_bytes_total", labels(device=disk), ("c", 2e7 * busy, 1e11))
        yield series("raylens_node_disk_written_bytes_total", labels(device=disk), ("c", 1e7 * busy, 1e11))
    for device, mountpoint, fstype in FILESYSTEMS:
        size = 500 * 2**30
        fs = labels(device=device, fstype=fstype, mountpoint=mountpoint)
        yield series("raylens_node_filesystem_size_bytes", fs, ("k", size, 0))
        yield series("raylens_node_filesystem_avail_bytes", fs, ("g", size * rng.uniform(0.2, 0.8), 0.1))
    for device in NETWORK_DEVICES:
        for direction in ("receive", "transmit"):
            yield series(
                f"raylens_node_network_{direction}_bytes_total", labels(device=device), ("c", 5e7 * busy, 1e12)
            )
            yield series(f"raylens_node_network_{direction}_errs_total", labels(device=device), ("c", 1e-3, 0))
            yield series(f"raylens_node_network_{direction}_drop_total", labels(device=device), ("c", 1e-2, 0))
    yield series("raylens_node_boot_time_seconds", "", ("k", node.start - 120, 0))
    info = labels(hostname=f"ip-{node.ip.replace('.', '-')}", instance_type=node_type.name, market=node.market)
    yield series("raylens_node_info", f'{info},ray_node_id="{node.node_id}"', ("k", 1, 0))
    yield from _gpu_series(node, series, busy)
    for collector in ("gpu", "node") if node_type.gpus else ("node",):
        yield series("raylens_scrape_collector_success", labels(collector=collector), ("k", 1, 0))


def _gpu_series(node: Node, series, busy: float) -> Iterator[tuple[str, Series]]:
    node_type = node.type
    total = (40 if "A100" in node_type.gpu_model else 24) * 2**30
    if node.slot % 25 == 5:
        busy = 0.02  # a node whose GPUs a Ray job holds but does not use
    for gpu in range(node_type.gpus):
        uuid = f"GPU-{node.slot:08x}-{node.incarnation:04x}-{gpu:04x}-0000-000000000000"
        identity = labels(
            UUID=uuid, gpu=str(gpu), model_name=node_type.gpu_model, pci_bus_id=f"00000000:{gpu + 16:02X}:00.0"
        )
        memory = f'GPU_I_ID="",GPU_I_PROFILE="",{identity}'
        yield series("raylens_gpu_up", identity, ("k", 1, 0))
        yield series("raylens_gpu_utilisation_ratio", identity, ("g", busy, 0.5))
        yield series("raylens_gpu_memory_used_bytes", memory, ("g", total * busy, 0.3))
        yield series("raylens_gpu_memory_total_bytes", memory, ("k", total, 0))
        limit = 400.0 if "A100" in node_type.gpu_model else 300.0
        yield series("raylens_gpu_power_usage_watts", identity, ("g", limit * (0.2 + 0.7 * busy), 0.2))
        yield series("raylens_gpu_power_limit_watts", identity, ("k", limit, 0))
        yield series("raylens_gpu_temperature_celsius", identity, ("g", 40 + 35 * busy, 0.1))
        yield series("raylens_gpu_row_remap_pending", identity, ("k", 0, 0))
        yield series("raylens_gpu_row_remap_failed", identity, ("k", 0, 0))
        for reason in CLOCK_REASONS:
            capped = reason == "sw_power_cap" and gpu == 0 and node.slot % 2 == 1  # at its power cap
            yield series("raylens_gpu_clocks_event_reason", f'{identity},reason="{reason}"', ("k", int(capped), 0))
        for error_type in ("corrected", "uncorrected"):
            yield series("raylens_gpu_ecc_errors_total", f'{identity},error_type="{error_type}"', ("c", 0, 0))
        if node.slot % 100 == 3 and gpu == 0:  # one GPU in a hundred nodes keeps logging XID 79 (fell off the bus)
            yield series("raylens_gpu_xid_errors_total", f'{identity},xid="79"', ("c", 1e-3, 1))
            yield series("raylens_gpu_xid_last_seen_timestamp_seconds", f'{identity},xid="79"', ("k", node.start, 0))
        process = labels(
            GPU_I_ID="",
            UUID=uuid,
            actor_class="RayTrainWorker",
            actor_id=f"{node.slot:016x}{gpu:016x}",
            gpu=str(gpu),
            job_id=f"{node.slot % 50 + 1:08x}",
            pid=str(4000 + gpu),
            process_type="compute",
            ray_worker="actor",
            task_name="",
        )
        yield series("raylens_gpu_process_memory_used_bytes", process, ("g", total * busy * 0.9, 0.3))


def ray_agent_series(node: Node, rng: random.Random) -> Iterator[tuple[str, Series]]:
    """Ray's metrics agent on the node (job ray): hardware, core and scheduler series."""
    address = node.ip
    instance = labels(instance=f"{address}:8080", job="ray")
    node_labels = labels(
        IsHeadNode=str(node.is_head).lower(),
        RayNodeType="head" if node.is_head else "worker",
        SessionName=SESSION,
        Version=RAY_VERSION,
        ip=address,
    )
    core = labels(Component="raylet", NodeAddress=address, SessionName=SESSION, Version=RAY_VERSION, WorkerId="")

    def series(name: str, text: str, shape: tuple[str, float, float]) -> tuple[str, Series]:
        return name, Series(f"{instance},{text}", shape, node.start, node.end)

    node_type, busy = node.type, rng.uniform(0.1, 0.9)
    memory = node_type.memory_gib * 2**30
    yield series("ray_node_cpu_utilization", node_labels, ("g", 100 * busy, 0.3))
    yield series("ray_node_cpu_count", node_labels, ("k", node_type.cpus, 0))
    yield series("ray_node_mem_used", node_labels, ("g", memory * busy * 0.8, 0.2))
    yield series("ray_node_mem_total", node_labels, ("k", memory, 0))
    for gpu in range(node_type.gpus):
        gpu_labels = f'GpuDeviceName="{node_type.gpu_model}",GpuIndex="{gpu}",GpuUuid="GPU-{node.node_id[:8]}-{gpu}",'
        gpu_labels += node_labels
        mib = 40960 if "A100" in node_type.gpu_model else 24576
        yield series("ray_node_gpus_available", gpu_labels, ("k", 1, 0))
        yield series("ray_node_gpus_utilization", gpu_labels, ("g", 100 * busy, 0.5))
        yield series("ray_node_gram_used", gpu_labels, ("g", mib * busy, 0.3))
        yield series("ray_node_gram_available", gpu_labels, ("g", mib * (1 - busy), 0.3))
    for component, rss in (("raylet", 3e8), ("agent", 2e8), ("ray::IDLE", 1.5e8), ("ray::RayTrainWorker", 4e9)):
        process = labels(Component=component, SessionName=SESSION, Version=RAY_VERSION, ip=address, pid="1234")
        yield series("ray_component_rss_bytes", process, ("g", rss, 0.2))
    job_id = f"{node.slot % 50 + 1:08x}"
    for state, count in (("RUNNING", node_type.cpus * busy), ("FINISHED", 1000.0), ("FAILED", 2.0)):
        task = labels(JobId=job_id, Name="process_batch", Source="executor", State=state, IsRetry="0")
        yield series("ray_tasks", f"{core},{task}", ("g", count, 0.3))
    for location, share in (("MMAP_SHM", 0.3), ("MMAP_DISK", 0.01), ("SPILLED", 0.05), ("WORKER_HEAP", 0.02)):
        yield series("ray_object_store_memory", f'{core},Location="{location}"', ("g", memory * share * busy, 0.3))
    yield series("ray_object_store_num_local_objects", core, ("g", 5000 * busy, 0.3))
    resources = [("CPU", node_type.cpus), ("memory", memory * 0.7), ("object_store_memory", memory * 0.3)]
    if node_type.gpus:
        resources.append(("GPU", node_type.gpus))
    for name, capacity in resources:
        yield series("ray_resources", f'{core},Name="{name}",State="USED"', ("g", capacity * busy, 0.3))
        yield series("ray_resources", f'{core},Name="{name}",State="AVAILABLE"', ("g", capacity * (1 - busy), 0.3))
    for state in ("Running", "Waiting", "Infeasible"):
        yield series(
            "ray_scheduler_tasks", f'{core},State="{state}"', ("g", 10 * busy if state != "Infeasible" else 0, 0.3)
        )
    if node.slot % 50 == 7:  # a node short of memory, and tasks asking for more GPUs than any node has
        yield series(
            "ray_memory_manager_worker_eviction_total",
            f'{core},Type="MemoryManager.TaskEviction.Total"',
            ("c", 1e-3, 0),
        )
        yield series("ray_scheduler_unscheduleable_tasks", f'{core},Reason="Infeasible"', ("g", 2, 0.5))
    for workload in ("Task", "Actor"):
        for bound, share in (("1", 0.4), ("10", 0.8), ("100", 0.95), ("1000", 0.99), ("+Inf", 1.0)):
            bucket = f'{core},WorkloadType="{workload}",le="{bound}"'
            yield series("ray_scheduler_placement_time_ms_bucket", bucket, ("c", 5 * share, 0))
