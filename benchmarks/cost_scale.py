"""Scrape time and memory of the ``cost`` collector on simulated clusters of growing size.

Each size runs in a fresh Python process (so its RSS is its own): a synthetic Ray ``ClusterSnapshot``
with N nodes (catalogued AWS/GCP types, a fifth spot, a few unpriced) and A live allocations (70 %
tasks with start times, 30 % actors without, 2 % of them Serve replicas), A/10 jobs with user, project
and team metadata, five budgets and three quotas, state persisted to a temporary directory. A scrape
(wall time, and CPU time of the process, which other load on the machine barely affects) is what
the exporter does per new Ray snapshot and scrape: snapshot → observation (the Ray adapter), engine
advance, state save, metric families (on the refresher's thread), then the OpenMetrics exposition
through the exporter's renderer (``raylens.web.exposition``; the scrape itself only does this last
part), under the exporter's garbage-collection regime. Between scrapes 15 s pass and 1 % of the tasks
are replaced by new ones. The first scrape (which backfills from node start times) is reported apart;
the second recomputes every node once more (the first window starts with each node, before its
tasks), so steady figures need ``--scrapes`` of 3 or more.

    .venv/bin/python benchmarks/cost_scale.py                         # the four default sizes
    .venv/bin/python benchmarks/cost_scale.py --sizes 1000x10000 --scrapes 10 --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import MappingProxyType

DEFAULT_SIZES = ("1000x10000", "1000x100000", "10000x10000", "10000x100000")
TYPES = [
    ("m5.xlarge", 4, 0, 16),
    ("m5.4xlarge", 16, 0, 64),
    ("g5.xlarge", 4, 1, 16),
    ("g5.12xlarge", 48, 4, 192),
    ("p4d.24xlarge", 96, 8, 1152),
    ("n2-standard-8", 8, 0, 32),
    ("a2-highgpu-1g", 12, 1, 85),
]
GIB = float(1 << 30)
NOW = 1_790_000_000.0


def synthetic_snapshot(nodes: int, allocations: int, seed: int = 7):
    from raylens.ray.snapshot import (
        ActorSnapshot,
        ClusterSnapshot,
        JobSnapshot,
        NodeSnapshot,
        SourceStatus,
        TaskSnapshot,
    )

    rng = random.Random(seed)
    node_rows = []
    for index in range(nodes):
        name, cpu, gpu, memory = rng.choice(TYPES)
        unpriced = index % 500 == 499
        node_rows.append(
            NodeSnapshot(
                node_id=f"{index:056x}",
                ip=f"10.{index // 65536}.{index // 256 % 256}.{index % 256}",
                is_head=index == 0,
                state="ALIVE",
                instance_type="" if unpriced else name,
                market="spot" if index % 5 == 0 and name != "p5.4xlarge" else "on_demand",
                labels=MappingProxyType({"ray.io/node-group": name}),
                resources_total=MappingProxyType(
                    {
                        "CPU": float(cpu),
                        "GPU": float(gpu),
                        "memory": memory * GIB * 0.7,
                        "object_store_memory": memory * GIB * 0.3,
                    }
                ),
                start_time=NOW - rng.uniform(3600, 86400),
            )
        )
    jobs = []
    for index in range(max(1, allocations // 10)):
        jobs.append(
            JobSnapshot(
                job_id=f"{index + 1:08x}",
                submission_id=f"raysubmit_{index}",
                type="SUBMISSION",
                status="RUNNING",
                metadata=MappingProxyType(
                    {"user": f"user{index % 100}", "project": f"project{index % 20}", "team": f"team{index % 10}"}
                ),
                start_time=NOW - 7200,
            )
        )
    actors, tasks = [], []
    for index in range(allocations):
        node = node_rows[rng.randrange(nodes)]
        job = jobs[rng.randrange(len(jobs))]
        cpu = node.resources_total["CPU"]
        if index % 10 < 3:
            serve = index % 50 == 0
            actors.append(
                ActorSnapshot(
                    actor_id=f"a{index:031x}",
                    class_name=f"ServeReplica:app{index % 7}:deployment{index % 3}" if serve else "Worker",
                    state="ALIVE",
                    job_id=job.job_id or "",
                    node_id=node.node_id,
                    required_resources=MappingProxyType({"CPU": min(1.0, cpu / 8)}),
                )
            )
        else:
            tasks.append(
                TaskSnapshot(
                    task_id=f"t{index:039x}",
                    attempt_number=0,
                    name="process_batch",
                    func_or_class_name="process_batch",
                    state="RUNNING",
                    job_id=job.job_id or "",
                    type="NORMAL_TASK",
                    node_id=node.node_id,
                    required_resources=MappingProxyType(
                        {
                            "CPU": min(1.0, cpu / 8),
                            "GPU": 1.0 if node.resources_total["GPU"] and index % 7 == 0 else 0.0,
                        }
                    ),
                    start_time=NOW - rng.uniform(0, 3600),
                )
            )
    ok = SourceStatus(ok=True)
    return ClusterSnapshot(
        taken_at=NOW,
        duration_seconds=0.0,
        dashboard_url="http://127.0.0.1:8265",
        session_name="session_bench",
        ray_version="2.60.0",
        nodes=tuple(node_rows),
        jobs=tuple(jobs),
        actors=tuple(actors),
        tasks=tuple(tasks),
        sources=MappingProxyType({name: ok for name in ("nodes", "jobs", "actors", "tasks")}),
    )


def churn(snapshot, step: int, rng: random.Random):
    """15 s later, with 1 % of the tasks replaced by new ones."""
    from dataclasses import replace

    tasks = list(snapshot.tasks)
    for _ in range(max(1, len(tasks) // 100)):
        position = rng.randrange(len(tasks))
        old = tasks[position]
        tasks[position] = replace(
            old, task_id=f"n{step:04d}{position:035x}", start_time=snapshot.taken_at + rng.uniform(0, 15)
        )
    return replace(snapshot, taken_at=snapshot.taken_at + 15.0, tasks=tuple(tasks))


def rss_bytes() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def openmetrics_encoder(encoder: str):
    """The exporter's renderer, kept between scrapes, or prometheus-client's encoder (the reference)."""
    if encoder == "prometheus-client":
        from prometheus_client.openmetrics.exposition import generate_latest

        return generate_latest
    from raylens.web.exposition import ExpositionRenderer

    return ExpositionRenderer().openmetrics


def measure(nodes: int, allocations: int, scrapes: int, encoder: str = "renderer") -> dict[str, object]:
    import gc

    from prometheus_client import CollectorRegistry

    from raylens.collectors.base import ScrapeHealthCollector
    from raylens.collectors.cost import CostCollector
    from raylens.config import CostConfig
    from raylens.cost.budgets import validate_budgets
    from raylens.cost.catalog import load_catalog
    from raylens.cost.engine import CostEngine
    from raylens.cost.pricing import NodePricer
    from raylens.cost.quotas import validate_quotas
    from raylens.cost.ray_source import observation_from_snapshot
    from raylens.gc_schedule import defer_full_collections

    baseline_rss = rss_bytes()
    snapshot = synthetic_snapshot(nodes, allocations)
    input_rss = rss_bytes()
    catalog = load_catalog()
    config = CostConfig(export_node_labels=("ray.io/node-group",))
    budgets = validate_budgets(
        {
            "budgets": [
                {"name": "org", "scope": "org", "amount_usd": 1e6},
                {"name": "aws", "scope": "cloud", "match": "aws", "amount_usd": 1e6},
                {"name": "p1", "scope": "project", "match": "project1", "amount_usd": 1e4},
                {"name": "t1", "scope": "team", "match": "team1", "amount_usd": 1e4, "period": "week"},
                {"name": "u1", "scope": "user", "match": "user1", "amount_usd": 100, "period": "day"},
            ]
        },
        "bench",
        catalog.clouds(),
    )
    quotas = validate_quotas(
        {
            "quotas": [
                {"name": "gpus", "scope": "user", "match": "*", "resource": "gpus", "limit": 8},
                {
                    "name": "p4d",
                    "scope": "global",
                    "resource": "instances",
                    "instance_type": "p4d.24xlarge",
                    "limit": 50,
                },
                {"name": "cpus", "scope": "project", "match": "*", "resource": "cpus", "limit": 5000},
            ]
        },
        "bench",
        catalog.instance_types(),
    )
    engine = CostEngine(config, NodePricer(config, catalog), budgets)
    current = {"snapshot": snapshot}
    with tempfile.TemporaryDirectory() as state_dir:
        collector = CostCollector(config, engine, quotas=quotas, state_dir=Path(state_dir))
        registry = CollectorRegistry(auto_describe=False)
        registry.register(ScrapeHealthCollector([collector]))
        rng = random.Random(11)
        render = openmetrics_encoder(encoder)
        # The exporter's garbage-collection regime (raylens.gc_schedule): what start-up built frozen,
        # no automatic full collections (it runs them between scrapes; not counted here).
        defer_full_collections()
        times = []
        cpu_times = []
        series = 0
        for step in range(scrapes + 1):
            if step:
                current["snapshot"] = churn(current["snapshot"], step, rng)
            gc.collect()
            started, cpu_started = time.perf_counter(), time.process_time()
            # One accounting step (off the scrape path in the exporter, on the refresher's thread)
            # plus the exposition a scrape serialises: the exporter's whole cost per snapshot.
            collector.account(observation_from_snapshot(current["snapshot"]))
            body = render(registry)  # OpenMetrics: what Prometheus negotiates
            times.append(time.perf_counter() - started)
            cpu_times.append(time.process_time() - cpu_started)
            series = sum(1 for line in body.splitlines() if line and not line.startswith(b"#"))
            assert b'raylens_scrape_collector_success{collector="cost"} 1.0' in body, "a section failed"
        state_size = (Path(state_dir) / "cost-state.json").stat().st_size
    steady = sorted(times[1:])
    steady_cpu = sorted(cpu_times[1:])
    return {
        "nodes": nodes,
        "allocations": allocations,
        "jobs": len(snapshot.jobs),
        "series": series,
        "exposition_bytes": len(body),
        "state_file_bytes": state_size,
        "first_scrape_seconds": times[0],
        "scrape_seconds_median": steady[len(steady) // 2],
        "scrape_seconds_max": steady[-1],
        "first_scrape_cpu_seconds": cpu_times[0],
        "scrape_cpu_seconds_median": steady_cpu[len(steady_cpu) // 2],
        "rss_bytes": rss_bytes(),
        "rss_of_input_bytes": input_rss - baseline_rss,
        "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", nargs="+", default=list(DEFAULT_SIZES), help="NODESxALLOCATIONS, e.g. 1000x10000")
    parser.add_argument("--scrapes", type=int, default=5, help="measured scrapes after the first (default 5)")
    parser.add_argument("--json", type=Path, help="also write the figures as JSON")
    parser.add_argument(
        "--encoder",
        choices=["renderer", "prometheus-client"],
        default="renderer",
        help="the exporter's cached renderer (default) or prometheus-client's encoder, for reference",
    )
    parser.add_argument("--one", help=argparse.SUPPRESS)  # internal: measure one size in this process
    args = parser.parse_args()
    if args.one:
        nodes, allocations = (int(part) for part in args.one.split("x"))
        print(json.dumps(measure(nodes, allocations, args.scrapes, args.encoder)))
        return 0
    results = []
    for size in args.sizes:
        output = subprocess.run(
            [sys.executable, __file__, "--one", size, "--scrapes", str(args.scrapes), "--encoder", args.encoder],
            capture_output=True,
            text=True,
            check=True,
        )
        results.append(json.loads(output.stdout.strip().splitlines()[-1]))
    header = (
        f"{'nodes':>6} {'allocs':>7} {'jobs':>6} {'series':>7} {'first s':>8} {'scrape s':>9} {'max s':>7} "
        f"{'CPU s':>6} {'RSS MiB':>8} {'input MiB':>9} {'state MiB':>9} {'expo MiB':>8}"
    )
    print(header)
    for row in results:
        print(
            f"{row['nodes']:>6} {row['allocations']:>7} {row['jobs']:>6} {row['series']:>7} "
            f"{row['first_scrape_seconds']:>8.3f} {row['scrape_seconds_median']:>9.3f} "
            f"{row['scrape_seconds_max']:>7.3f} "
            f"{row['scrape_cpu_seconds_median']:>6.3f} "
            f"{row['rss_bytes'] / 2**20:>8.1f} {row['rss_of_input_bytes'] / 2**20:>9.1f} "
            f"{row['state_file_bytes'] / 2**20:>9.2f} {row['exposition_bytes'] / 2**20:>8.2f}"
        )
    machine = f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}"
    print(f"machine: {machine}; load average {os.getloadavg()[0]:.2f}; encoder: {args.encoder}")
    if args.json:
        args.json.write_text(json.dumps({"machine": machine, "results": results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
