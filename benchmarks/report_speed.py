"""How long `raylens report` takes against a running Prometheus, beside the 2-second target.

Runs the command as users do (a new process each time) for a few report shapes and prints, per
shape, the median wall time, the CPU the command used (Python start-up, imports, rendering) and the
time its queries took in Prometheus (from the audit record), with the machine's load average, since
on a shared machine wall time says more about the neighbours than about raylens.

    .venv/bin/python benchmarks/report_speed.py                           # the `raylens up` stack
    .venv/bin/python benchmarks/report_speed.py --prometheus.url http://prometheus:9090 --runs 10
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TARGET_SECONDS = 2.0
SHAPES = {
    "this month by project": ["--by", "project"],
    "this month by project,user,job vs previous": ["--by", "project,user,job", "--compare", "previous"],
    "last month by instance_type,market": ["--period", "last-month", "--by", "instance_type,market"],
    "today by job, JSON": ["--period", "today", "--by", "job", "--format", "json"],
}


def run_once(raylens: str, url: list[str], shape: list[str], audit: Path) -> tuple[float, float, float, int]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    result = subprocess.run(
        [raylens, "report", *url, *shape],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "RAYLENS_AUDIT_LOG": str(audit)},
    )
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    record = json.loads(audit.read_text().splitlines()[-1])
    return wall, cpu, float(record.get("seconds", 0.0)), result.returncode


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prometheus.url", dest="url", help="default: the `raylens up` stack, else :9090")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--raylens", default=str(Path(sys.executable).with_name("raylens")))
    args = parser.parse_args()
    url = [f"--prometheus.url={args.url}"] if args.url else []
    print(f"load average before: {' '.join(f'{x:.1f}' for x in os.getloadavg())}; target {TARGET_SECONDS:g} s")
    print(f"{'report':46} {'wall s (median)':>15} {'CPU s':>7} {'in command s':>13} {'exit':>5}")
    with tempfile.TemporaryDirectory() as folder:
        audit = Path(folder) / "audit.jsonl"
        for name, shape in SHAPES.items():
            runs = [run_once(args.raylens, url, shape, audit) for _ in range(args.runs)]
            wall = statistics.median(run[0] for run in runs)
            cpu = statistics.median(run[1] for run in runs)
            inside = statistics.median(run[2] for run in runs)
            codes = sorted({run[3] for run in runs})
            print(f"{name:46} {wall:15.2f} {cpu:7.2f} {inside:13.3f} {','.join(map(str, codes)):>5}")
    print(f"load average after: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    print("'in command' is from the audit record: configuration, queries and rendering, after start-up.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
