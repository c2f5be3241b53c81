"""Scrape latency and memory of the raylens exporter on a busy Ray cluster, beside node_exporter.

A real Ray head (2 CPUs) runs ``workloads/busy_cluster.py`` (10,000 short tasks, 200 actors of which
20 stay alive) and 50 finished jobs with metadata. The exporter runs every collector (node, ray, cost,
and gpu on the fake NVML H100 fixture: this machine has no GPU) and reads Ray through
``tests/fault_proxy.py``, so the dashboard can be made slow (every answer delayed past the exporter's
deadline) or unreachable (the proxy stopped by PID). node_exporter is scraped in the same loop, one
scrape of each in turn, with Prometheus's Accept header and gzip.

Phases: ``normal`` for ``--minutes``, then ``slow`` and ``down`` for ``--fault-minutes`` each.
Reported per phase: scrape latency p50/p99/max, exporter CPU per minute (background reads included),
and the exporter's RSS (now and peak). Not a test: figures go to docs/benchmarks.md with the machine.

    .venv/bin/python benchmarks/scrape_path.py --minutes 60 --fault-minutes 5 --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import requests

from raylens.stack.ports import free_port
from raylens.stack.processes import ManagedProcess
from raylens.stack.ray_head import running_ray_head

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
NODE_EXPORTER = "/usr/bin/prometheus-node-exporter"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PROMETHEUS_ACCEPT = "application/openmetrics-text;version=1.0.0;q=0.5,text/plain;version=0.0.4;q=0.4,*/*;q=0.1"
FIXTURE = REPO / "tests" / "fixtures" / "nvml" / "h100-sxm-80gb.json"


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def memory(pid: int) -> tuple[int, int]:
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            values[key] = int(rest.split()[0]) * 1024
    return values["VmRSS"], values["VmHWM"]


@dataclass
class PhaseResult:
    phase: str
    target: str
    scrapes: int
    errors: int
    p50_ms: float
    p99_ms: float
    max_ms: float
    series: int
    cpu_seconds_per_minute: float
    rss_mib: float
    peak_rss_mib: float


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(fraction * len(ordered)) - 1))]


def run_phase(name: str, seconds: float, targets: dict[str, tuple[str, int]]) -> list[PhaseResult]:
    sessions = {label: requests.Session() for label in targets}
    latencies: dict[str, list[float]] = {label: [] for label in targets}
    errors = dict.fromkeys(targets, 0)
    series = dict.fromkeys(targets, 0)
    cpu_start = {label: cpu_seconds(pid) for label, (_, pid) in targets.items()}
    started = time.monotonic()
    while time.monotonic() - started < seconds:
        for label, (url, _) in targets.items():
            began = time.perf_counter()
            try:
                response = sessions[label].get(
                    url, headers={"Accept": PROMETHEUS_ACCEPT, "Accept-Encoding": "gzip"}, timeout=30
                )
                latencies[label].append(time.perf_counter() - began)
                if response.status_code != 200:
                    errors[label] += 1
                series[label] = sum(1 for line in response.text.splitlines() if line and not line.startswith("#"))
            except requests.RequestException:
                errors[label] += 1
        time.sleep(max(0.0, 1.0 - (time.monotonic() - started) % 1.0))  # one round a second
    elapsed_minutes = (time.monotonic() - started) / 60
    results = []
    for label, (_, pid) in targets.items():
        rss, peak = memory(pid)
        values = latencies[label] or [float("nan")]
        results.append(
            PhaseResult(
                phase=name,
                target=label,
                scrapes=len(latencies[label]),
                errors=errors[label],
                p50_ms=statistics.median(values) * 1000,
                p99_ms=percentile(values, 0.99) * 1000,
                max_ms=max(values) * 1000,
                series=series[label],
                cpu_seconds_per_minute=(cpu_seconds(pid) - cpu_start[label]) / elapsed_minutes,
                rss_mib=rss / 2**20,
                peak_rss_mib=peak / 2**20,
            )
        )
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=60.0, help="length of the normal phase")
    parser.add_argument("--fault-minutes", type=float, default=5.0, help="length of each fault phase")
    parser.add_argument("--tasks", type=int, default=10_000)
    parser.add_argument("--actors", type=int, default=200)
    parser.add_argument("--jobs", type=int, default=50)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    from ray.job_submission import JobStatus, JobSubmissionClient

    work = Path(tempfile.mkdtemp(prefix="raylens-scrape-bench-"))
    hold = int((args.minutes + 2 * args.fault_minutes) * 60 + 600)
    with running_ray_head(work) as head:
        client = JobSubmissionClient(head.dashboard_url)
        busy = client.submit_job(
            entrypoint=f"{sys.executable} busy_cluster.py",
            runtime_env={
                "working_dir": str(HERE / "workloads"),
                "env_vars": {"BUSY_TASKS": str(args.tasks), "BUSY_ACTORS": str(args.actors),
                             "BUSY_HOLD_SECONDS": str(hold)},
            },
            metadata={"user": "alice", "project": "vision", "team": "ml"},
        )  # fmt: skip
        for index in range(args.jobs):
            client.submit_job(
                entrypoint=f"{sys.executable} -c 'print({index})'",
                metadata={"user": ("alice", "bob", "carol")[index % 3], "project": ("vision", "nlp")[index % 2]},
            )
        deadline = time.monotonic() + 1800
        while "busy:" not in client.get_job_logs(busy):
            if client.get_job_status(busy) in (JobStatus.FAILED, JobStatus.STOPPED) or time.monotonic() > deadline:
                raise SystemExit("the busy workload did not start:\n" + client.get_job_logs(busy)[-2000:])
            time.sleep(5)
        print(f"load ready: {args.tasks} tasks, {args.actors} actors, {args.jobs} jobs", flush=True)

        proxy_port = free_port()
        proxy_url = f"http://127.0.0.1:{proxy_port}"
        proxy = ManagedProcess(
            "proxy",
            [sys.executable, str(REPO / "tests" / "fault_proxy.py"), f"--listen=127.0.0.1:{proxy_port}",
             f"--target={head.dashboard_url}"],
            work / "proxy.log",
            f"{proxy_url}/__proxy/stats",
        )  # fmt: skip
        proxy.start()
        proxy.wait_ready(timeout=20)
        config = work / "raylens.yaml"
        config.write_text(json.dumps({"ray": {"address": proxy_url}, "cost": {"state_dir": str(work / "state")}}))
        raylens_port, node_port = free_port(), free_port()
        exporter = ManagedProcess(
            "raylens",
            [sys.executable, "-m", "raylens", "exporter", f"--web.listen-address=127.0.0.1:{raylens_port}",
             "--collectors=node,ray,cost,gpu", f"--config.file={config}"],
            work / "raylens.log",
            f"http://127.0.0.1:{raylens_port}/healthz",
            env={**os.environ, "RAYLENS_FAKE_NVML": str(FIXTURE)},
        )  # fmt: skip
        node_exporter = ManagedProcess(
            "node_exporter",
            [NODE_EXPORTER, f"--web.listen-address=127.0.0.1:{node_port}", "--no-collector.systemd"],
            work / "node_exporter.log",
            f"http://127.0.0.1:{node_port}/metrics",
        )
        exporter.start()
        node_exporter.start()
        exporter.wait_ready(timeout=60)
        node_exporter.wait_ready(timeout=30)
        assert exporter.pid is not None and node_exporter.pid is not None
        targets = {
            "raylens": (f"http://127.0.0.1:{raylens_port}/metrics", exporter.pid),
            "node_exporter": (f"http://127.0.0.1:{node_port}/metrics", node_exporter.pid),
        }
        time.sleep(30)  # every source answered at least once
        results = run_phase("normal", args.minutes * 60, targets)
        requests.get(f"{proxy_url}/__proxy/delay", params={"seconds": 30}, timeout=5)
        results += run_phase("dashboard slow", args.fault_minutes * 60, targets)
        proxy.stop()
        results += run_phase("dashboard down", args.fault_minutes * 60, targets)
        exporter.stop()
        node_exporter.stop()

    header = f"{'phase':<16}{'target':<15}{'scrapes':>8}{'errors':>7}{'p50 ms':>8}{'p99 ms':>8}{'max ms':>8}"
    header += f"{'series':>8}{'CPU s/min':>10}{'RSS MiB':>9}{'peak MiB':>9}"
    print(header)
    for row in results:
        print(
            f"{row.phase:<16}{row.target:<15}{row.scrapes:>8}{row.errors:>7}{row.p50_ms:>8.1f}{row.p99_ms:>8.1f}"
            f"{row.max_ms:>8.1f}{row.series:>8}{row.cpu_seconds_per_minute:>10.2f}{row.rss_mib:>9.1f}"
            f"{row.peak_rss_mib:>9.1f}"
        )
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}; "
          f"load average {os.getloadavg()[0]:.2f}")  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps([asdict(row) for row in results], indent=2))


if __name__ == "__main__":
    main()
