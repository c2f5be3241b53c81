"""Two days of cluster history in which each recommendation kind has a case and a counter-case.

Cluster ``prod`` (cost exporter ``head-a:9965``), all AWS us-east-1, catalog prices:

============ ============ ========== =========================== ===================================
node         type         market     what runs                   expected
============ ============ ========== =========================== ===================================
gpu-idle     g5.xlarge    on-demand  serve holds its GPU, 2 %    idle_gpu (counter: gpu-busy)
gpu-busy     g5.xlarge    spot       train holds its GPU, 85 %   nothing
cpu-big      m5.4xlarge   on-demand  data, 1-2 of 16 CPUs, 3 GiB rightsizing to m5.xlarge, spot
cpu-busy     m5.4xlarge   on-demand  data + serve, 15 of 16 CPUs nothing (does not fit smaller; serve)
head         m5.xlarge    on-demand  data, 1 CPU                 nothing (the head never goes spot)
young        m5.4xlarge   on-demand  data, 1 CPU, 1 h old        nothing (younger than the windows)
============ ============ ========== =========================== ===================================

Cluster ``head-b:9965`` (one m5.xlarge) has held nothing for 5 h: auto_termination. Cluster
``head-c:9965`` only for 30 min: nothing. Serve: ``shop/Model`` runs 4 replicas for 1.6 requests in
flight (one replica is enough): serve_overprovisioned; ``shop/Ranker`` runs 2 for 3.6: nothing.
"""

from __future__ import annotations

from datetime import UTC, datetime

from backfill import Scenario, Segment, Series

from raylens.config import RecommendationsConfig
from raylens.cost.catalog import load_catalog

START = datetime(2026, 6, 1, tzinfo=UTC).timestamp()
END = datetime(2026, 6, 3, tzinfo=UTC).timestamp()
NOW = END - 60
GIB = 2**30
HOUR = 3600.0
CATALOG = load_catalog()

# Short windows so two days of history cover them; thresholds at their defaults.
CONFIG = RecommendationsConfig(
    idle_gpu_window="6h",
    rightsizing_window="1d",
    spot_window="12h",
    auto_termination_idle_for="2h",
    auto_termination_lookback="1d",
    serve_window="6h",
)


def price(instance_type: str, market: str = "on_demand") -> float:
    entry = CATALOG.lookup(instance_type, "us-east-1")[0]  # type: ignore[index]
    return entry.spot_usd_per_hour if market == "spot" else entry.usd_per_hour  # type: ignore[return-value]


def gpu_share(instance_type: str) -> float:
    """The GPU part of an instance's price by the catalog's split ratios (docs/cost-model.md)."""
    entry = CATALOG.lookup(instance_type, "us-east-1")[0]  # type: ignore[index]
    ratios = CATALOG.split_ratios
    weights = entry.vcpus * ratios.cpu_to_memory_gib + entry.gpus * ratios.gpu_to_memory_gib + entry.memory_gib
    return entry.gpus * ratios.gpu_to_memory_gib / weights


def gauge(metric: str, labels: dict[str, str], value: float, start: float = START, end: float = END) -> Series:
    return Series(metric, labels, [Segment(start, end, value)], kind="gauge")


def alternating(metric: str, labels: dict[str, str], low: float, high: float) -> Series:
    """low and high each for an hour, in turn: its 95th percentile is high."""
    segments, t, flip = [], START, False
    while t < END:
        segments.append(Segment(t, min(END, t + HOUR), high if flip else low))
        t, flip = t + HOUR, not flip
    return Series(metric, labels, segments, kind="gauge")


def ray_node(
    node_id: str,
    ip: str,
    instance_type: str,
    market: str,
    cpus: float,
    gpus: float,
    held: dict[str, tuple[float, float]],  # resource -> (low, high)
    workloads: dict[str, float],  # workload -> CPUs held
    started: float = START,
    head: bool = False,
) -> list[Series]:
    """What the ray and cost collectors of the cluster's head exporter publish about one node."""
    entry = CATALOG.lookup(instance_type, "us-east-1")[0]  # type: ignore[index]
    dollars = price(instance_type, market)
    ident = {"node_id": node_id}
    ray = {**ident, "SessionName": "session_a", "ip": ip, "NodeAddress": ip}
    series = [
        gauge(
            "raylens_cost_node_info",
            {
                **ident,
                "instance_type": instance_type,
                "market": market,
                "cloud": "aws",
                "region": "us-east-1",
                "pricing_source": "catalog",
            },
            1,
            started,
        ),
        gauge(
            "raylens_cost_node_dollars_per_second",
            {**ident, "instance_type": instance_type, "market": market, "cost_kind": "compute"},
            dollars / HOUR,
            started,
        ),
        gauge("raylens_ray_node_start_time_seconds", ray, started, started),
        gauge(
            "raylens_ray_node_info",
            {
                **ray,
                "is_head": "true" if head else "false",
                "node_type": "head" if head else "worker",
                "market": market,
                "instance_type": instance_type,
                "node_name": ip,
            },
            1,
            started,
        ),
    ]
    capacity = {"CPU": cpus, "GPU": gpus, "memory": entry.memory_gib * 0.7 * GIB}
    for resource, amount in capacity.items():
        if amount:
            series.append(gauge("raylens_ray_node_resource_capacity", {**ray, "resource": resource}, amount, started))
    for resource, (low, high) in held.items():
        series.append(alternating("raylens_ray_node_resource_used", {**ray, "resource": resource}, low, high))
        if started != START:
            series[-1] = gauge("raylens_ray_node_resource_used", {**ray, "resource": resource}, high, started)
    if gpus:
        series.append(
            gauge(
                "raylens_cost_node_resource_dollars_per_second",
                {**ident, "resource": "gpu"},
                dollars * gpu_share(instance_type) / HOUR,
                started,
            )
        )
    for workload, cpu in workloads.items():
        series.append(
            gauge(
                "raylens_cost_node_workload_resources_held",
                {**ident, "workload": workload, "resource": "cpu"},
                cpu,
                started,
            )
        )
    return series


def gpu_exporter(instance: str, ray_node_id: str, utilisation: float) -> Scenario:
    """The gpu and node collectors of the exporter on a GPU node (its own scrape target)."""
    labels = {"gpu": "0", "UUID": f"GPU-{ray_node_id}", "model_name": "NVIDIA A10G", "pci_bus_id": "00000000:00:1E.0"}
    series = [
        gauge("raylens_gpu_utilisation_ratio", labels, utilisation),
        gauge(
            "raylens_node_info",
            {
                "hostname": instance.split(":")[0],
                "ray_node_id": ray_node_id,
                "instance_type": "g5.xlarge",
                "market": "",
            },
            1,
        ),
    ]
    return Scenario(series, START, END, step=120, target={"job": "raylens", "instance": instance})


def busy_cluster() -> Scenario:
    series = [
        *ray_node("gpu-idle", "10.0.0.1", "g5.xlarge", "on_demand", 4, 1, {"GPU": (1, 1), "CPU": (1, 1)}, {"serve": 1}),
        *ray_node("gpu-busy", "10.0.0.2", "g5.xlarge", "spot", 4, 1, {"GPU": (1, 1), "CPU": (1, 1)}, {"train": 1}),
        *ray_node(
            "cpu-big",
            "10.0.0.3",
            "m5.4xlarge",
            "on_demand",
            16,
            0,
            {"CPU": (1, 2), "memory": (2 * GIB, 3 * GIB)},
            {"data": 2},
        ),
        *ray_node(
            "cpu-busy", "10.0.0.4", "m5.4xlarge", "on_demand", 16, 0, {"CPU": (14, 15)}, {"data": 10, "serve": 5}
        ),
        *ray_node("head", "10.0.0.5", "m5.xlarge", "on_demand", 4, 0, {"CPU": (1, 1)}, {"data": 1}, head=True),
        *ray_node(
            "young", "10.0.0.6", "m5.4xlarge", "on_demand", 16, 0, {"CPU": (1, 1)}, {"data": 1}, started=END - HOUR
        ),
        gauge(
            "raylens_cost_allocation_dollars_per_second",
            {"project": "vision", "user": "alice", "team": "ml", "workload": "data", "cost_kind": "compute"},
            0.001,
        ),
        gauge("raylens_cost_accounted_until_timestamp_seconds", {}, 1),
        # Serve (Ray's metrics agent; put here for brevity, the labels are Ray's).
        *[
            gauge(
                "ray_serve_deployment_replica_healthy",
                {"application": "shop", "deployment": "Model", "replica": f"m{i}"},
                1,
            )
            for i in range(4)
        ],
        *[
            gauge(
                "ray_serve_replica_processing_queries",
                {"application": "shop", "deployment": "Model", "replica": f"m{i}"},
                0.4,
            )
            for i in range(4)
        ],
        *[
            gauge(
                "ray_serve_deployment_replica_healthy",
                {"application": "shop", "deployment": "Ranker", "replica": f"r{i}"},
                1,
            )
            for i in range(2)
        ],
        *[
            gauge(
                "ray_serve_replica_processing_queries",
                {"application": "shop", "deployment": "Ranker", "replica": f"r{i}"},
                1.8,
            )
            for i in range(2)
        ],
        gauge(
            "raylens_cost_serve_deployment_dollars_per_second",
            {"application": "shop", "deployment": "Model"},
            0.5 / HOUR,
        ),
        gauge(
            "raylens_cost_serve_deployment_dollars_per_second",
            {"application": "shop", "deployment": "Ranker"},
            0.4 / HOUR,
        ),
        Series(
            "ray_serve_deployment_request_counter_total",
            {"application": "shop", "deployment": "Model", "replica": "m0"},
            [Segment(START, END, 7200.0)],
        ),
    ]
    return Scenario(
        series, START, END, step=120, target={"job": "raylens", "instance": "head-a:9965", "cluster": "prod"}
    )


def idle_cluster(instance: str, idle_for: float) -> Scenario:
    """One m5.xlarge whose jobs stopped ``idle_for`` seconds before NOW."""
    busy_until = NOW - idle_for
    series = [
        *ray_node(f"{instance.split(':')[0]}-n1", "10.1.0.1", "m5.xlarge", "on_demand", 4, 0, {}, {}),
        Series(
            "raylens_cost_node_dollars_total",
            {
                "node_id": f"{instance.split(':')[0]}-n1",
                "instance_type": "m5.xlarge",
                "market": "on_demand",
                "cost_kind": "compute",
            },
            [Segment(START, END, price("m5.xlarge"))],
        ),
        gauge(
            "raylens_cost_allocation_dollars_per_second",
            {"project": "nlp", "user": "dave", "team": "nlp", "workload": "tasks", "cost_kind": "compute"},
            price("m5.xlarge") / HOUR,
            START,
            busy_until,
        ),
        gauge(
            "raylens_cost_allocation_dollars_per_second",
            {"project": "nlp", "user": "dave", "team": "nlp", "workload": "tasks", "cost_kind": "compute"},
            0.0,
            busy_until,
            END,
        ),
        gauge("raylens_cost_accounted_until_timestamp_seconds", {}, 1),
    ]
    return Scenario(series, START, END, step=120, target={"job": "raylens", "instance": instance})


def scenarios() -> list[Scenario]:
    return [
        busy_cluster(),
        gpu_exporter("gpu-idle:9965", "gpu-idle", 0.02),
        gpu_exporter("gpu-busy:9965", "gpu-busy", 0.85),
        idle_cluster("head-b:9965", 5 * HOUR),
        idle_cluster("head-c:9965", 0.5 * HOUR),
    ]
