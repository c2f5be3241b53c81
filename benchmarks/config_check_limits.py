"""``raylens config check`` on files at every count limit, and one over, against the 2-second target.

Writes, into a temporary directory, a budgets file of MAX_BUDGETS budgets, a quotas file of MAX_QUOTAS
quotas and MAX_ROLES roles, a pricing file of MAX_PRICING_ROWS instance rows and MAX_RESOURCE_PRICES
resource prices, and a main config of MAX_NODE_RULES node rules (raylens.config.limits), plus each
with one entry too many. Each file is checked ``--runs`` times by a fresh ``python -m raylens config
check FILE`` (what a user or CI runs: interpreter start and imports included); the median and worst
CPU time (user + system of the child: what the check costs, which other load on a shared machine
barely changes) and the median wall time are printed beside the target, with the load average. On an
idle machine wall time is the CPU time; on a loaded one it is inflated by waiting for a core.

    .venv/bin/python benchmarks/config_check_limits.py            # 5 runs per file
    .venv/bin/python benchmarks/config_check_limits.py --runs 9 --json limits.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from hostile_corpus import budgets_yaml, main_config_yaml, pricing_yaml, quotas_yaml

from raylens.config.limits import (
    MAX_BUDGETS,
    MAX_NODE_RULES,
    MAX_PRICING_ROWS,
    MAX_QUOTAS,
    MAX_RESOURCE_PRICES,
    MAX_ROLES,
)

TARGET_SECONDS = 2.0


def files(directory: Path) -> list[tuple[str, Path, int]]:
    """(label, path, expected exit code)."""
    state = directory / "state"
    made = [
        (f"budgets: {MAX_BUDGETS:,}", "budgets.yaml", budgets_yaml(MAX_BUDGETS), 0),
        (f"quotas: {MAX_QUOTAS:,}, roles: {MAX_ROLES:,}", "quotas.yaml", quotas_yaml(MAX_QUOTAS), 0),
        (
            f"pricing: {MAX_PRICING_ROWS:,} rows, {MAX_RESOURCE_PRICES:,} resource prices",
            "pricing.yaml",
            pricing_yaml(MAX_PRICING_ROWS, MAX_RESOURCE_PRICES),
            0,
        ),
        (f"raylens.yaml: {MAX_NODE_RULES:,} node rules", "raylens.yaml", main_config_yaml(MAX_NODE_RULES, state), 0),
        (f"budgets: {MAX_BUDGETS + 1:,} (refused)", "budgets-over.yaml", budgets_yaml(MAX_BUDGETS + 1), 2),
        (f"quotas: {MAX_QUOTAS + 1:,} (refused)", "quotas-over.yaml", quotas_yaml(MAX_QUOTAS + 1), 2),
        (
            f"pricing: {MAX_PRICING_ROWS + 1:,} rows (refused)",
            "pricing-over.yaml",
            pricing_yaml(MAX_PRICING_ROWS + 1),
            2,
        ),
        (
            f"raylens.yaml: {MAX_NODE_RULES + 1:,} node rules (refused)",
            "raylens-over.yaml",
            main_config_yaml(MAX_NODE_RULES + 1, state),
            2,
        ),
    ]
    out = []
    for label, name, text, code in made:
        path = directory / name
        path.write_text(text)
        out.append((label, path, code))
    return out


def child_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def time_check(python: str, path: Path, expected: int, runs: int) -> tuple[list[float], list[float]]:
    """(CPU seconds, wall seconds) of each run."""
    cpu, wall = [], []
    for _ in range(runs):
        cpu_before, started = child_cpu_seconds(), time.perf_counter()
        result = subprocess.run(
            [python, "-m", "raylens", "config", "check", str(path)], capture_output=True, text=True, check=False
        )
        wall.append(time.perf_counter() - started)
        cpu.append(child_cpu_seconds() - cpu_before)
        if result.returncode != expected:
            raise SystemExit(f"{path}: exit {result.returncode}, expected {expected}\n{result.stderr[-2000:]}")
    return cpu, wall


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--python", default=sys.executable)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="raylens-limits-") as temporary:
        directory = Path(temporary)
        load_before = os.getloadavg()
        baseline, baseline_wall = time_check(args.python, directory / "missing.yaml", 2, args.runs)
        rows = []
        for label, path, expected in files(directory):
            cpu, wall = time_check(args.python, path, expected, args.runs)
            rows.append(
                {
                    "file": label,
                    "bytes": path.stat().st_size,
                    "cpu_median_s": statistics.median(cpu),
                    "cpu_max_s": max(cpu),
                    "wall_median_s": statistics.median(wall),
                }
            )
        load_after = os.getloadavg()

    print(f"machine: {platform.node()}, {os.cpu_count()} CPUs, Python {platform.python_version()}")
    print(f"load average before/after: {load_before[0]:.1f} / {load_after[0]:.1f}  (runs per file: {args.runs})")
    print(
        f"interpreter start + imports alone (a missing file): CPU {statistics.median(baseline):.2f} s, "
        f"wall {statistics.median(baseline_wall):.2f} s\n"
    )
    print(f"| file | size | CPU median | CPU worst | wall median | CPU under {TARGET_SECONDS:g} s |")
    print("|---|---:|---:|---:|---:|---|")
    for row in rows:
        verdict = "yes" if row["cpu_max_s"] < TARGET_SECONDS else "NO"
        print(
            f"| {row['file']} | {row['bytes'] / 1024:,.0f} KiB | {row['cpu_median_s']:.2f} s | "
            f"{row['cpu_max_s']:.2f} s | {row['wall_median_s']:.2f} s | {verdict} |"
        )
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "rows": rows,
                    "baseline_cpu_s": baseline,
                    "baseline_wall_s": baseline_wall,
                    "load": [load_before, load_after],
                    "runs": args.runs,
                },
                indent=2,
            )
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
