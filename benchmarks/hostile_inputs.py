"""Every hostile file of tests/hostile_corpus.py through ``raylens config check`` and exporter start-up.

Prints, per case, the exit codes, the CPU time of each (user + system of a fresh interpreter, what a
user's command costs; wall time on an idle machine, and barely changed by other load) and the one line
printed, as the markdown table of docs/reliability.md#hostile-inputs. The tests
(tests/test_hostile_files.py) assert the behaviour; this measures it.

    .venv/bin/python benchmarks/hostile_inputs.py
    .venv/bin/python benchmarks/hostile_inputs.py --json hostile.json
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from hostile_corpus import CASES, exporter_argv

TARGET_SECONDS = 2.0
TIMEOUT_SECONDS = 60.0


def child_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run(argv: list[str]) -> tuple[int, float, str, float]:
    """(exit code, CPU seconds, stderr, wall seconds)."""
    cpu_before, started = child_cpu_seconds(), time.perf_counter()
    try:
        result = subprocess.run(argv, capture_output=True, text=True, timeout=TIMEOUT_SECONDS, check=False)
    except subprocess.TimeoutExpired:
        return -1, child_cpu_seconds() - cpu_before, f"(no answer after {TIMEOUT_SECONDS:g} s)", TIMEOUT_SECONDS
    return result.returncode, child_cpu_seconds() - cpu_before, result.stderr, time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    rows = []
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="raylens-hostile-") as temporary:
        for case in CASES:
            directory = Path(temporary) / case.name
            directory.mkdir()
            path = case.write(directory)
            check = run([sys.executable, "-m", "raylens", "config", "check", str(path)])
            start_up = run(exporter_argv(case, path, directory))
            line = check[2].strip().replace(str(directory) + "/", "")
            rows.append(
                {
                    "case": case.name,
                    "what": case.what,
                    "check_exit": check[0],
                    "check_s": check[1],
                    "start_exit": start_up[0],
                    "start_s": start_up[1],
                    "wall_s": max(check[3], start_up[3]),
                    "lines": len(check[2].splitlines()),
                    "traceback": "Traceback" in check[2] + start_up[2],
                    "line": line,
                }
            )
    load_after = os.getloadavg()
    print(f"load average before/after: {load_before[0]:.1f} / {load_after[0]:.1f}, {os.cpu_count()} CPUs\n")
    print("| case | file | `config check` (CPU) | exporter start-up (CPU) | what it printed (one line) |")
    print("|---|---|---|---|---|")
    for row in rows:
        line = row["line"].replace("raylens: invalid configuration: ", "").replace("|", "\\|")
        if len(line) > 160:
            line = line[:159] + "…"
        print(
            f"| {row['case']} | {row['what']} | exit {row['check_exit']}, {row['check_s']:.2f} s | "
            f"exit {row['start_exit']}, {row['start_s']:.2f} s | `{line}` |"
        )
    worst = max(max(row["check_s"], row["start_s"]) for row in rows)
    worst_wall = max(row["wall_s"] for row in rows)
    clean = all(row["check_exit"] == row["start_exit"] == 2 and row["lines"] == 1 for row in rows)
    tracebacks = sum(row["traceback"] for row in rows)
    print(
        f"\n{len(rows)} cases: every one exit 2 with one line: {clean}; tracebacks: {tracebacks}; "
        f"most CPU {worst:.2f} s (target {TARGET_SECONDS:g} s), longest wall {worst_wall:.2f} s"
    )
    if args.json:
        args.json.write_text(json.dumps({"rows": rows, "load": [load_before, load_after]}, indent=2))
    return 0 if clean and not tracebacks else 1


if __name__ == "__main__":
    raise SystemExit(main())
