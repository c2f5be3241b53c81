"""Memory of `raylens logs` streaming a 1 GB Ray log file, beside reading the file whole.

Starts a dedicated Ray head (own temp dir and ports, stopped by PID), writes a log file of
``--size-mb`` MB in Ray's Python log format into its session log directory (one line in 100 000
carries a needle), then runs the real CLI as a child process and reads its peak resident memory
(``ru_maxrss`` from ``wait4``, the kernel's high-water mark):

* ``raylens logs --grep NEEDLE`` over the file (the dashboard streams it in 64 KiB chunks),
* the same with ``--format json --output FILE.gz`` (parse every matching line, gzip),
* reference: a Python process reading the same file into memory at once (what not streaming costs),
* reference: GNU ``grep -c NEEDLE`` on the file (no Ray, no HTTP: the floor for the time).

    .venv/bin/python benchmarks/logs_stream_rss.py --size-mb 1024
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

from raylens.stack.ray_head import running_ray_head

NEEDLE = "needle-7f3a"
LINE = "2026-12-06 22:19:26,625\tINFO worker.py:1691 -- benchmark line {index:012d} " + "x" * 60 + "\n"


def write_log(path: Path, size_bytes: int) -> int:
    lines = 0
    with path.open("w") as file:
        block = []
        while file.tell() < size_bytes:
            for _ in range(10_000):
                text = LINE.format(index=lines)
                if lines % 100_000 == 0:
                    text = text.replace("benchmark line", f"benchmark {NEEDLE}")
                block.append(text)
                lines += 1
            file.write("".join(block))
            block.clear()
    return lines


def run(argv: list[str]) -> tuple[float, float, str]:
    """(peak RSS MiB, seconds, stdout tail) of one child process."""
    started = time.monotonic()
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    output = process.stdout.read() if process.stdout else ""
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    seconds = time.monotonic() - started
    if process.returncode != 0:
        raise SystemExit(f"{argv[:4]} exited {process.returncode}:\n{output[-2000:]}")
    return usage.ru_maxrss / 1024, seconds, output.strip().splitlines()[-1] if output.strip() else ""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=1024)
    args = parser.parse_args()
    size = args.size_mb * 1024 * 1024
    with tempfile.TemporaryDirectory() as work, running_ray_head(Path(work)) as head:
        logs_dir = head.temp_dir / "session_latest" / "logs"
        big = logs_dir / "benchmark-big.log"
        lines = write_log(big, size)
        file_mib = big.stat().st_size / 2**20
        node = requests.get(f"{head.dashboard_url}/api/v0/nodes", timeout=10).json()["data"]["result"]["result"][0]
        base = [
            sys.executable,
            "-m",
            "raylens",
            "logs",
            f"--ray.address={head.dashboard_url}",
            f"--node={node['node_id']}",
        ]
        only_big = ["--component=internal", f"--grep={NEEDLE}"]
        rows = []
        rss, seconds, tail = run([*base, *only_big])
        rows.append(("raylens logs --grep (text to stdout)", rss, seconds, tail[-60:]))
        rss, seconds, _ = run([*base, *only_big, "--format=json", f"--output={work}/out.jsonl.gz"])
        rows.append(("raylens logs --grep --format json -o .gz", rss, seconds, ""))
        reference = f"data = open({str(big)!r}, 'rb').read(); print(data.count(b{NEEDLE!r}))"
        rss, seconds, tail = run([sys.executable, "-c", reference])
        rows.append(("reference: Python reads the file whole", rss, seconds, tail))
        rss, seconds, tail = run(["grep", "-c", NEEDLE, str(big)])
        rows.append(("reference: grep -c on the file", rss, seconds, tail))
    print(f"file: {file_mib:.0f} MiB, {lines} lines, {lines // 100_000 + 1} matching")
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
        f"load {os.getloadavg()[0]:.1f}"
    )
    print(f"{'what':<44} {'peak RSS':>10} {'seconds':>9} {'MiB/s':>7}")
    for name, rss, seconds, _ in rows:
        print(f"{name:<44} {rss:>7.0f} MiB {seconds:>9.1f} {file_mib / seconds:>7.0f}")


if __name__ == "__main__":
    main()
