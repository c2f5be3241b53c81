"""Scrape cost of the ``gpu`` collector with 8 fake GPUs and 64 GPU processes, beside the ``node`` collector.

No GPU is needed: the GPUs are the H100 SXM fixture (``tests/fixtures/nvml/h100-sxm-80gb.json``)
copied eight times with their own UUIDs and PCI addresses, running 64 Ray processes between them
(actors, tasks and worker children, each with a fake ``/proc`` entry so attribution runs). The node
collector reads this machine through psutil. Each collector sits alone in a registry behind the same
``ScrapeHealthCollector`` the exporter uses and is rendered with ``generate_latest`` (text format), so
the figures are collection plus exposition, without HTTP (which costs the same for every collector;
``node_exporter_comparison.py`` measures it).

For each collector it prints the series count, wall time per scrape (p50, p99), CPU time per scrape
(``time.process_time``), CPU per series, and for the GPU collector the NVML calls made per scrape. The
fake answers from memory, so GPU figures are the collector's own cost; on a real driver add the NVML
calls' cost (typically microseconds each, more for process lists). Attribution reads come from the
cache after the first scrape, as they do under Prometheus within ``gpu.attribution_cache_seconds``.

    /tmp/venv/bin/python benchmarks/gpu_scrape.py --scrapes 500 --json gpu-results.json
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest

from raylens.collectors.base import Collector, ScrapeHealthCollector
from raylens.collectors.gpu import GpuCollector
from raylens.collectors.node import NodeCollector
from raylens.config import GpuConfig, NodeConfig
from raylens.gpu.attribution import ProcAttributor
from raylens.gpu.fake_nvml import FakeNvml

REPO = Path(__file__).resolve().parents[1]
H100_FIXTURE = REPO / "tests" / "fixtures" / "nvml" / "h100-sxm-80gb.json"
HGX_BUS_IDS = ("18", "2A", "3A", "5D", "9A", "AB", "BA", "DB")
MiB = 1 << 20


def eight_gpu_fixture(processes_per_gpu: int = 8) -> dict[str, Any]:
    """An HGX H100 node: eight GPUs, each shared by a few Ray processes (64 in all by default)."""
    base = json.loads(H100_FIXTURE.read_text())
    template = base["devices"][0]
    devices, proc = [], {}
    for index, bus in enumerate(HGX_BUS_IDS):
        device = copy.deepcopy(template)
        device["uuid"] = f"GPU-{index:08x}-6f1a-4b7e-9c2d-1a8f3e7b6c40"
        device["pci_bus_id"] = f"00000000:{bus}:00.0"
        listing = []
        for slot in range(processes_per_gpu):
            pid = 40_000 + index * 100 + slot
            listing.append(
                {
                    "pid": pid,
                    "usedGpuMemory": (8000 + 10 * slot) * MiB,
                    "gpuInstanceId": 0xFFFFFFFF,
                    "computeInstanceId": 0xFFFFFFFF,
                }
            )
            title = ("ray::LLMServer.generate", "ray::RayTrainWorker", "ray::preprocess", "ray::IDLE")[slot % 4]
            proc[str(pid)] = {"cmdline": [title], "environ": {"RAY_JOB_ID": f"{index + 1:02d}000000"}}
        device["calls"]["nvmlDeviceGetComputeRunningProcesses"] = listing
        devices.append(device)
    base["devices"] = devices
    base["processes"] = proc
    return base


def measure(
    label: str, collector: Collector, scrapes: int, warmup: int, calls: Callable[[], int] | None
) -> dict[str, Any]:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ScrapeHealthCollector([collector]))
    for _ in range(warmup):
        generate_latest(registry)
    calls_before = calls() if calls else 0
    walls, cpu_started = [], time.process_time()
    body = b""
    for _ in range(scrapes):
        started = time.perf_counter()
        body = generate_latest(registry)
        walls.append(time.perf_counter() - started)
    cpu = (time.process_time() - cpu_started) / scrapes
    lines = [line for line in body.decode().splitlines() if line and not line.startswith("#")]
    own = [line for line in lines if not line.startswith("raylens_scrape_collector_")]
    walls.sort()
    result = {
        "collector": label,
        "series": len(lines),
        "series_of_collector": len(own),
        "exposition_bytes": len(body),
        "wall_p50_ms": 1000 * statistics.median(walls),
        "wall_p99_ms": 1000 * walls[min(len(walls) - 1, int(0.99 * len(walls)))],
        "cpu_per_scrape_ms": 1000 * cpu,
        "cpu_per_series_us": 1e6 * cpu / len(lines),
    }
    if calls:
        result["nvml_calls_per_scrape"] = (calls() - calls_before) / scrapes
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scrapes", type=int, default=300, help="measured scrapes per collector")
    parser.add_argument("--warmup", type=int, default=10, help="unmeasured scrapes first")
    parser.add_argument("--json", type=Path, help="also write the figures and the machine as JSON")
    args = parser.parse_args()

    nvml = FakeNvml(eight_gpu_fixture())
    gpu = GpuCollector(GpuConfig(), nvml=nvml, attribute=ProcAttributor(nvml.process_reader()))
    results = [
        measure("gpu (8 fake H100, 64 processes)", gpu, args.scrapes, args.warmup, lambda: sum(nvml.calls.values())),
        measure("node (this machine, psutil)", NodeCollector(NodeConfig()), args.scrapes, args.warmup, None),
    ]
    print(
        f"{'collector':34} {'series':>6} {'p50 ms':>7} {'p99 ms':>7} {'CPU ms':>7}"
        f" {'CPU µs/series':>13} {'NVML calls':>10}"
    )
    for row in results:
        calls = f"{row['nvml_calls_per_scrape']:.0f}" if "nvml_calls_per_scrape" in row else ""
        print(
            f"{row['collector']:34} {row['series']:>6} {row['wall_p50_ms']:>7.2f} {row['wall_p99_ms']:>7.2f}"
            f" {row['cpu_per_scrape_ms']:>7.2f} {row['cpu_per_series_us']:>13.1f} {calls:>10}"
        )
    if args.json:
        machine = {
            "python": platform.python_version(),
            "platform": platform.platform(),
            "processor": platform.processor(),
            "when": datetime.now(UTC).isoformat(timespec="seconds"),
            "scrapes": args.scrapes,
        }
        args.json.write_text(json.dumps({"machine": machine, "results": results}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
