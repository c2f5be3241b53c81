"""Scrape cost of ``raylens exporter --collectors node`` beside Debian's ``prometheus-node-exporter``.

Both exporters run on loopback and are scraped alternately (node_exporter, raylens, node_exporter, …)
so that whatever else the machine is doing slows both alike. Each scrape asks for gzip, as Prometheus
does, and reads the whole compressed body. For each exporter the script prints the series count,
the exposition size, scrape latency p50/p99, CPU seconds per scrape and per series (utime + stime
from ``/proc/PID/stat`` across all the scrapes) and resident memory after the run.

    /tmp/venv/bin/python benchmarks/node_exporter_comparison.py --scrapes 300 --json results.json
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

import requests

from raylens import __version__ as raylens_version
from raylens.stack.ports import free_port
from raylens.stack.processes import ManagedProcess

NODE_EXPORTER = "/usr/bin/prometheus-node-exporter"
CLOCK_TICKS_PER_SECOND = os.sysconf("SC_CLK_TCK")
# Prometheus 2.x's own Accept header: OpenMetrics preferred, text 0.0.4 accepted. node_exporter 1.5.0
# does not offer OpenMetrics, so it answers in text; prometheus-client answers in OpenMetrics.
PROMETHEUS_ACCEPT = "application/openmetrics-text;version=1.0.0;q=0.5,text/plain;version=0.0.4;q=0.4,*/*;q=0.1"
TEXT_ACCEPT = "text/plain;version=0.0.4"


@dataclass
class Exporter:
    """One exporter under test: its process, where to scrape it, and which series are host metrics."""

    label: str
    version: str
    host_metric_prefix: str
    process: ManagedProcess
    metrics_url: str
    accept: str
    session: requests.Session = field(default_factory=requests.Session)

    @property
    def pid(self) -> int:
        if self.process.pid is None:
            raise RuntimeError(f"{self.label} was not started")
        return self.process.pid


@dataclass
class ExporterResult:
    label: str
    version: str
    series: int
    host_series: int
    exposition_bytes: int
    exposition_gzip_bytes: int
    content_type: str
    content_encoding: str
    scrapes: int
    latency_p50_seconds: float
    latency_p99_seconds: float
    latency_max_seconds: float
    cpu_seconds_total: float
    cpu_seconds_per_scrape: float
    cpu_seconds_per_series: float
    rss_bytes: int
    peak_rss_bytes: int


def cpu_seconds(pid: int) -> float:
    """utime + stime of the process, all its threads included."""
    # The command name may hold spaces or parentheses; the fields after the last ')' do not.
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    utime, stime = int(fields[11]), int(fields[12])
    return (utime + stime) / CLOCK_TICKS_PER_SECOND


def memory_bytes(pid: int) -> tuple[int, int]:
    """(VmRSS, VmHWM): resident memory now and at its peak."""
    values: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            values[key] = int(rest.split()[0]) * 1024
    return values["VmRSS"], values["VmHWM"]


def sample_names(exposition: str) -> list[str]:
    """Metric name of every sample line (comments and blank lines are not series)."""
    names = []
    for line in exposition.splitlines():
        if line and not line.startswith("#"):
            names.append(line.split("{", 1)[0].split(" ", 1)[0])
    return names


@dataclass
class Scrape:
    seconds: float  # request sent to last body byte received
    body: bytes  # as sent, compressed when the server compressed it
    content_type: str
    content_encoding: str

    def exposition(self) -> bytes:
        return gzip.decompress(self.body) if self.content_encoding == "gzip" else self.body

    def compressed(self) -> bytes:
        return self.body if self.content_encoding == "gzip" else gzip.compress(self.body)


def scrape(exporter: Exporter) -> Scrape:
    """One scrape as Prometheus makes it, the compressed body read in full."""
    started = time.perf_counter()
    with exporter.session.get(
        exporter.metrics_url,
        headers={"Accept": exporter.accept, "Accept-Encoding": "gzip"},
        stream=True,
        timeout=30,
    ) as response:
        response.raise_for_status()
        body = response.raw.read(decode_content=False)
    return Scrape(
        seconds=time.perf_counter() - started,
        body=body,
        content_type=response.headers.get("Content-Type", ""),
        content_encoding=response.headers.get("Content-Encoding", "identity"),
    )


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    position = fraction * (len(ordered) - 1)
    lower = int(position)
    upper = min(lower + 1, len(ordered) - 1)
    return ordered[lower] + (ordered[upper] - ordered[lower]) * (position - lower)


def machine_description() -> dict[str, str | int | float]:
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    memory_total = 0
    with contextlib.suppress(OSError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory_total = int(line.split()[1]) * 1024
    os_name = platform.platform()
    with contextlib.suppress(OSError):
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                os_name = line.split("=", 1)[1].strip('"')
    return {
        "cpus": os.cpu_count() or 0,
        "cpu_model": model,
        "memory_total_bytes": memory_total,
        "os": os_name,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "prometheus_client": metadata.version("prometheus-client"),
        "psutil": metadata.version("psutil"),
        "requests": metadata.version("requests"),
    }


def node_exporter_version(binary: str) -> str:
    completed = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=10, check=False)
    first_line = (completed.stdout or completed.stderr).splitlines()[0]
    # "node_exporter, version 1.5.0 (branch: debian/sid, revision: 1.5.0-1+b6)"
    return first_line.split("version", 1)[1].strip()


def measure(exporters: list[Exporter], scrapes: int, warmup: int) -> list[ExporterResult]:
    for _ in range(warmup):
        for exporter in exporters:
            scrape(exporter)

    latencies: dict[str, list[float]] = {exporter.label: [] for exporter in exporters}
    last: dict[str, Scrape] = {}
    cpu_before = {exporter.label: cpu_seconds(exporter.pid) for exporter in exporters}
    for _ in range(scrapes):
        for exporter in exporters:
            result = scrape(exporter)
            latencies[exporter.label].append(result.seconds)
            last[exporter.label] = result
    cpu_after = {exporter.label: cpu_seconds(exporter.pid) for exporter in exporters}

    results = []
    for exporter in exporters:
        final = last[exporter.label]
        raw = final.exposition()
        names = sample_names(raw.decode())
        series = len(names)
        host_series = sum(1 for name in names if name.startswith(exporter.host_metric_prefix))
        cpu_total = cpu_after[exporter.label] - cpu_before[exporter.label]
        rss, peak_rss = memory_bytes(exporter.pid)
        samples = latencies[exporter.label]
        results.append(
            ExporterResult(
                label=exporter.label,
                version=exporter.version,
                series=series,
                host_series=host_series,
                exposition_bytes=len(raw),
                exposition_gzip_bytes=len(final.compressed()),
                content_type=final.content_type,
                content_encoding=final.content_encoding,
                scrapes=scrapes,
                latency_p50_seconds=percentile(samples, 0.50),
                latency_p99_seconds=percentile(samples, 0.99),
                latency_max_seconds=max(samples),
                cpu_seconds_total=cpu_total,
                cpu_seconds_per_scrape=cpu_total / scrapes,
                cpu_seconds_per_series=cpu_total / scrapes / series,
                rss_bytes=rss,
                peak_rss_bytes=peak_rss,
            )
        )
    return results


def format_table(results: list[ExporterResult]) -> str:
    rows: list[tuple[str, ...]] = [("", *(result.label for result in results))]

    def row(title: str, render: Callable[[ExporterResult], str]) -> None:
        rows.append((title, *(render(result) for result in results)))

    row("version", lambda r: r.version.split(" ")[0])
    row("format served", lambda r: "OpenMetrics" if "openmetrics" in r.content_type else "text 0.0.4")
    row("series (sample lines)", lambda r: str(r.series))
    row("  of which host metrics", lambda r: str(r.host_series))
    row("exposition raw", lambda r: f"{r.exposition_bytes / 1024:.1f} KiB")
    row("exposition gzip", lambda r: f"{r.exposition_gzip_bytes / 1024:.1f} KiB")
    row("scrape latency p50", lambda r: f"{r.latency_p50_seconds * 1e3:.2f} ms")
    row("scrape latency p99", lambda r: f"{r.latency_p99_seconds * 1e3:.2f} ms")
    row("CPU per scrape", lambda r: f"{r.cpu_seconds_per_scrape * 1e3:.2f} ms")
    row("CPU per series", lambda r: f"{r.cpu_seconds_per_series * 1e6:.2f} µs")
    row("RSS after run (peak)", lambda r: f"{r.rss_bytes / 2**20:.1f} MiB ({r.peak_rss_bytes / 2**20:.1f})")
    widths = [max(len(cells[column]) for cells in rows) for column in range(len(rows[0]))]
    lines = []
    for index, cells in enumerate(rows):
        lines.append(
            "| "
            + " | ".join(
                cell.ljust(width) if column == 0 else cell.rjust(width)
                for column, (cell, width) in enumerate(zip(cells, widths, strict=True))
            )
            + " |"
        )
        if index == 0:
            lines.append("|" + "|".join("-" * (width + 2) for width in widths) + "|")
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scrapes", type=int, default=300, help="measured scrapes each (default 300)")
    parser.add_argument("--warmup", type=int, default=10, help="unmeasured scrapes first (default 10)")
    parser.add_argument("--node-exporter", default=NODE_EXPORTER, help=f"binary (default {NODE_EXPORTER})")
    parser.add_argument("--python", default=sys.executable, help="interpreter that runs raylens (default: this one)")
    parser.add_argument(
        "--text-format",
        action="store_true",
        help="ask both for text format 0.0.4 instead of sending Prometheus's Accept header",
    )
    parser.add_argument("--json", type=Path, help="also write the results and machine description here")
    parser.add_argument("--log-dir", type=Path, help="exporter logs (default: a temporary directory)")
    args = parser.parse_args(argv)
    if args.scrapes < 2:
        parser.error("--scrapes must be at least 2")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    log_dir = args.log_dir or Path(tempfile.mkdtemp(prefix="raylens-bench-"))
    node_port = free_port()
    raylens_port = free_port(taken={node_port})
    node_exporter = ManagedProcess(
        name="node_exporter",
        argv=[
            args.node_exporter,
            f"--web.listen-address=127.0.0.1:{node_port}",
            "--no-collector.systemd",
        ],
        log_path=log_dir / "node_exporter.log",
        ready_url=f"http://127.0.0.1:{node_port}/metrics",
    )
    raylens = ManagedProcess(
        name="raylens",
        argv=[
            args.python,
            "-m",
            "raylens",
            "exporter",
            f"--web.listen-address=127.0.0.1:{raylens_port}",
            "--collectors=node",
            "--log.level=warning",
        ],
        log_path=log_dir / "raylens.log",
        ready_url=f"http://127.0.0.1:{raylens_port}/healthz",
    )
    accept = TEXT_ACCEPT if args.text_format else PROMETHEUS_ACCEPT
    exporters = [
        Exporter(
            label="node_exporter",
            version=node_exporter_version(args.node_exporter),
            host_metric_prefix="node_",
            process=node_exporter,
            metrics_url=f"http://127.0.0.1:{node_port}/metrics",
            accept=accept,
        ),
        Exporter(
            label="raylens",
            version=raylens_version,
            host_metric_prefix="raylens_node_",
            process=raylens,
            metrics_url=f"http://127.0.0.1:{raylens_port}/metrics",
            accept=accept,
        ),
    ]
    load_at_start = os.getloadavg()
    started_at = datetime.now(UTC)
    try:
        for exporter in exporters:
            exporter.process.start()
        for exporter in exporters:
            exporter.process.wait_ready()
        results = measure(exporters, args.scrapes, args.warmup)
    finally:
        for exporter in exporters:
            exporter.session.close()
            exporter.process.stop()
    load_at_end = os.getloadavg()
    machine = machine_description()

    baseline, candidate = results
    ratio = candidate.cpu_seconds_per_series / baseline.cpu_seconds_per_series
    print(
        f"{started_at:%Y-%m-%d %H:%M} UTC · {machine['cpus']} CPUs {machine['cpu_model']} · "
        f"{int(machine['memory_total_bytes']) / 2**30:.1f} GiB · {machine['os']} · Python {machine['python']}"
    )
    print(
        f"{args.scrapes} scrapes each after {args.warmup} warm-up, alternating, gzip, "
        "requests.Session (keep-alive where the server offers it), "
        + ("Accept: text 0.0.4" if args.text_format else "Prometheus's Accept header")
    )
    print(
        "load average 1/5/15m at start "
        + " ".join(f"{value:.2f}" for value in load_at_start)
        + ", at end "
        + " ".join(f"{value:.2f}" for value in load_at_end)
    )
    print()
    print(format_table(results))
    print()
    verdict = "meets" if ratio <= 1.0 else "misses"
    print(f"CPU per series, raylens / node_exporter: {ratio:.2f} ({verdict} the target of <= 1.00)")

    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "started_at": started_at.isoformat(),
                    "machine": machine,
                    "scrapes": args.scrapes,
                    "warmup": args.warmup,
                    "accept": accept,
                    "load_average_start": load_at_start,
                    "load_average_end": load_at_end,
                    "results": [asdict(result) for result in results],
                    "cpu_per_series_ratio": ratio,
                },
                indent=2,
            )
            + "\n"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
