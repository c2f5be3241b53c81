"""A synthetic Ray fleet in a real Prometheus TSDB: generate, backfill, serve.

    # raw series for 1,000 nodes over 6 h at 15 s, then the recording rules over the same range
    python benchmarks/fleet.py generate --nodes 1000 --hours 6 --out /tmp/fleet
    # the full size the issue asks for (about 60 billion samples, days of CPU: see docs/benchmarks.md first)
    python benchmarks/fleet.py generate --nodes 1000 --days 30 --out /tmp/fleet
    # the generated *current* series as one scrape target (rule-evaluation benchmark)
    python benchmarks/fleet.py serve --nodes 1000 --port 9999

``generate`` writes OpenMetrics one 2-hour window at a time (promtool re-reads its whole input once per
block, so one window per file keeps the backfill linear) and loads each with ``promtool tsdb
create-blocks-from openmetrics`` while the next window is written. Then it starts Prometheus on the
blocks and backfills every recording rule with ``promtool tsdb create-blocks-from rules``, one
dependency level at a time (a rule over another rule's output needs that output in the TSDB first).
It prints the series, samples, time and disk size; ``--json`` keeps them.

What the series are: ``fleet_model.py`` (nodes, per-node exporters, Ray's agent),
``fleet_cluster.py`` (the ray and cost collectors) and ``fleet_workloads.py`` (Ray's cluster-level,
Serve, Data and Train series).
"""

from __future__ import annotations

import argparse
import json
import random
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from fleet_cluster import cluster_series
from fleet_model import (
    Fleet,
    Series,
    build_fleet,
    labels,
    node_exporter_series,
    ray_agent_series,
    series_values,
)
from fleet_workloads import ray_head_series, serve_probe_series

REPO = Path(__file__).resolve().parents[1]
CLUSTER = "ray-prod"
WINDOW = 7200.0  # promtool's default block length; windows are aligned to it
# The data ends at a fixed instant so that runs are comparable (2026-11-01T00:00:00Z + 30 days).
END = 1_764_547_200.0 + 30 * 86400


@dataclass
class Families:
    """Every series of the fleet, grouped by metric name (OpenMetrics wants a family's samples together)."""

    by_name: dict[str, list[Series]]

    @property
    def series(self) -> int:
        return sum(len(group) for group in self.by_name.values())


def fleet_families(fleet: Fleet, seed: int = 14) -> Families:
    rng = random.Random(seed)
    by_name: dict[str, list[Series]] = defaultdict(list)
    build = labels(python_version="3.11.7", version="0.1.0")
    for node in fleet.nodes:
        for source in (node_exporter_series(node, rng), ray_agent_series(node, rng)):
            for name, series in source:
                by_name[name].append(series)
        for instance, job in ((f"{node.ip}:9965", "raylens"), (f"{node.ip}:8080", "ray")):
            by_name["up"].append(Series(labels(instance=instance, job=job), ("k", 1, 0), node.start, node.end))
        exporter = labels(instance=f"{node.ip}:9965", job="raylens")
        by_name["raylens_exporter_build_info"].append(Series(f"{exporter},{build}", ("k", 1, 0), node.start, node.end))
    head = fleet.nodes[0]
    for instance, job in ((f"{head.ip}:9966", "raylens"), (f"{head.ip}:44217", "ray")):
        by_name["up"].append(Series(labels(instance=instance, job=job), ("k", 1, 0), fleet.start, fleet.end))
    exporter = labels(instance=f"{head.ip}:9966", job="raylens")
    by_name["raylens_exporter_build_info"].append(Series(f"{exporter},{build}", ("k", 1, 0), fleet.start, fleet.end))
    for source in (cluster_series(fleet, rng), ray_head_series(fleet, rng), serve_probe_series(fleet)):
        for name, series in source:
            by_name[name].append(series)
    # Every series carries its cluster: the exporters' cluster.name, and raylens sd's target label on
    # Ray's and the probes' targets.
    for group in by_name.values():
        for series in group:
            series.labels = f'cluster="{CLUSTER}",{series.labels}'
    return Families(dict(by_name))


def _phase(text: str) -> float:
    return (sum(text.encode()) % 628) / 100.0  # deterministic across runs, unlike hash()


def write_window(families: Families, low: float, high: float, interval: float, path: Path) -> int:
    """Every sample in [low, high) as OpenMetrics; returns the sample count."""
    first = low + (-low % interval)
    grid = [first + step * interval for step in range(int((high - first - 1e-9) // interval) + 1)]
    samples = 0
    with path.open("w") as out:
        for name, group in families.by_name.items():
            for series in group:
                if series.end <= low or series.start >= high:
                    continue
                times = [moment for moment in grid if series.start <= moment < series.end]
                if not times:
                    continue
                prefix = f"{name}{{{series.labels}}} "
                points = series_values(series, times, _phase)
                out.write(
                    "".join(
                        f"{prefix}{value:.10g} {moment:.0f}\n" for value, moment in zip(points, times, strict=False)
                    )
                )
                samples += len(times)
        out.write("# EOF\n")
    return samples


def backfill_raw(
    families: Families, fleet: Fleet, interval: float, data: Path, work: Path, window: float = WINDOW
) -> dict[str, float]:
    """Window by window: write the next file while promtool loads the previous one."""
    data.mkdir(parents=True, exist_ok=True)
    samples, written_bytes, started = 0, 0, time.monotonic()
    pending: tuple[subprocess.Popen, Path] | None = None
    low = fleet.start - fleet.start % window
    index = 0
    while low < fleet.end:
        path = work / f"window-{index:04d}.om"
        samples += write_window(families, max(low, fleet.start), min(low + window, fleet.end), interval, path)
        written_bytes += path.stat().st_size
        if pending is not None:
            _finish(*pending)
        command = ["promtool", "tsdb", "create-blocks-from", "openmetrics", str(path), str(data)]
        pending = (subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE), path)
        low += window
        index += 1
        print(f"fleet: window {index}: {samples:,} samples so far, {time.monotonic() - started:.0f} s", flush=True)
    if pending is not None:
        _finish(*pending)
    return {"samples": samples, "openmetrics_bytes": written_bytes, "seconds": time.monotonic() - started}


def _finish(process: subprocess.Popen, path: Path) -> None:
    _out, error = process.communicate()
    if process.returncode != 0:
        raise SystemExit(f"fleet: promtool failed on {path}: {error.decode()[-2000:]}")
    path.unlink()


def rule_levels(rule_files: list[Path]) -> list[list[dict]]:
    """Recording rules grouped so that each level reads only raw series and earlier levels."""
    import yaml

    rules = [
        rule
        for path in rule_files
        for group in yaml.safe_load(path.read_text())["groups"]
        for rule in group["rules"]
        if "record" in rule
    ]
    names = {rule["record"] for rule in rules}
    # A name may be recorded by several rules (one per label set): its level is the highest.
    reads = defaultdict(set)
    for rule in rules:
        reads[rule["record"]] |= set(re.findall(r"[a-zA-Z_:][a-zA-Z0-9_:]*", rule["expr"])) & names - {rule["record"]}
    level: dict[str, int] = {}
    while len(level) < len(names):
        ready = [name for name in names - set(level) if reads[name] <= set(level)]
        if not ready:
            raise SystemExit(f"fleet: recording rules read each other in a cycle: {sorted(names - set(level))}")
        for name in ready:
            level[name] = 1 + max((level[used] for used in reads[name]), default=-1)
    levels: list[list[dict]] = [[] for _ in range(max(level.values(), default=-1) + 1)]
    for rule in rules:
        levels[level[rule["record"]]].append(rule)
    return levels


def backfill_rules(fleet: Fleet, data: Path, work: Path, eval_interval: str) -> dict[str, float]:
    """``promtool tsdb create-blocks-from rules`` against Prometheus serving ``data``, level by level."""
    import yaml
    from prometheus_tsdb import serving_prometheus

    started = time.monotonic()
    levels = rule_levels(sorted((REPO / "recording-rules").glob("*.yml")))
    for number, rules in enumerate(levels):
        rules_path = work / f"rules-level-{number}.yml"
        rules_path.write_text(yaml.safe_dump({"groups": [{"name": f"level-{number}", "rules": rules}]}))
        output = work / f"rules-out-{number}"
        with serving_prometheus(data, work / "prometheus-rules") as url:
            command = [
                "promtool", "tsdb", "create-blocks-from", "rules",
                f"--start={int(fleet.start)}", f"--end={int(fleet.end)}", f"--url={url}",
                f"--output-dir={output}", f"--eval-interval={eval_interval}", str(rules_path),
            ]  # fmt: skip
            result = subprocess.run(command, capture_output=True, text=True)
        if result.returncode != 0:
            raise SystemExit(f"fleet: rule backfill failed at level {number}: {result.stderr[-2000:]}")
        for block in output.iterdir():
            if block.is_dir() and (block / "meta.json").exists():
                shutil.move(str(block), data / block.name)
        print(f"fleet: rules level {number}: {len(rules)} rules, {time.monotonic() - started:.0f} s", flush=True)
    return {"rules": sum(len(rules) for rules in levels), "levels": len(levels), "seconds": time.monotonic() - started}


def directory_bytes(path: Path) -> int:
    return sum(item.stat().st_size for item in path.rglob("*") if item.is_file())


def generate(
    out: Path,
    nodes: int,
    hours: float,
    interval: float = 15.0,
    window_minutes: float = 120.0,
    eval_interval: str = "1m",
    rules: bool = True,
) -> dict[str, object]:
    """Backfill ``out/data`` with the fleet's raw series (and recording rules); write ``out/fleet.json``."""
    fleet = build_fleet(nodes, END - hours * 3600, END)
    families = fleet_families(fleet)
    data = out / "data"
    if data.exists():
        shutil.rmtree(data)
    report: dict[str, object] = {
        "nodes": nodes, "node_lives": len(fleet.nodes), "hours": hours, "interval_seconds": interval,
        "series": families.series, "families": len(families.by_name), "start": fleet.start, "end": fleet.end,
    }  # fmt: skip
    print(f"fleet: {nodes} nodes ({len(fleet.nodes)} lives), {families.series:,} series, {hours} h", flush=True)
    with tempfile.TemporaryDirectory(dir=out) as scratch:
        report["raw"] = backfill_raw(families, fleet, interval, data, Path(scratch), window_minutes * 60)
        report["raw_tsdb_bytes"] = directory_bytes(data)
        if rules:
            report["rules"] = backfill_rules(fleet, data, Path(scratch), eval_interval)
    report["tsdb_bytes"] = directory_bytes(data)
    (out / "fleet.json").write_text(json.dumps(report, indent=2))
    return report


def current_exposition(families: Families, at: float) -> bytes:
    """The series alive at ``at`` with their values then, as one text 0.0.4 exposition."""
    lines = []
    for name, group in families.by_name.items():
        if name == "up":
            continue  # Prometheus writes up itself
        for series in group:
            if series.start <= at < series.end:
                (value,) = series_values(series, [at], _phase)
                lines.append(f"{name}{{{series.labels}}} {value:.10g}\n")
    return "".join(lines).encode()


def serve(args: argparse.Namespace) -> None:
    """One scrape target holding the whole fleet's current series (scrape it with honor_labels)."""
    fleet = build_fleet(args.nodes, time.time() - 3600, time.time() + 86400)  # a day of serving at most
    families = fleet_families(fleet)
    # Rendered in the background and served as it stands: on a busy machine rendering a large fleet
    # takes seconds, which must not count against the scrape timeout.
    latest = [current_exposition(families, time.time())]

    def render() -> None:
        while True:
            time.sleep(args.refresh)
            latest[0] = current_exposition(families, time.time())

    threading.Thread(target=render, name="fleet-render", daemon=True).start()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = b"ok\n" if self.path.startswith("/healthz") else latest[0]
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    print(f"fleet: serving {families.series:,} series of {args.nodes} nodes on 127.0.0.1:{args.port}", flush=True)
    server.serve_forever()


def iter_summary(report: dict) -> Iterator[str]:
    raw = report["raw"]
    yield f"series {report['series']:,} in {report['families']} families; samples {raw['samples']:,}"
    yield f"raw backfill {raw['seconds']:.0f} s ({raw['samples'] / max(raw['seconds'], 1e-9):,.0f} samples/s)"
    yield f"OpenMetrics written {raw['openmetrics_bytes'] / 2**20:,.1f} MiB"
    per_sample = report["raw_tsdb_bytes"] / raw["samples"]
    yield f"TSDB raw {report['raw_tsdb_bytes'] / 2**20:,.1f} MiB ({per_sample:.2f} B/sample)"
    if "rules" in report:
        yield f"rule backfill {report['rules']['rules']} rules in {report['rules']['levels']} levels, "
        yield f"  {report['rules']['seconds']:.0f} s; TSDB with rules {report['tsdb_bytes'] / 2**20:,.1f} MiB"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    make = commands.add_parser("generate", help="write and backfill the fleet's history")
    make.add_argument("--nodes", type=int, default=1000)
    make.add_argument("--hours", type=float, default=6.0)
    make.add_argument("--days", type=float, help="overrides --hours (the issue's full size: --days 30)")
    make.add_argument("--interval", type=float, default=15.0, help="scrape interval in seconds")
    make.add_argument("--eval-interval", default="1m", help="rule backfill evaluation interval")
    make.add_argument("--no-rules", action="store_true", help="raw series only")
    make.add_argument(
        "--window-minutes", type=float, default=120, help="minutes per OpenMetrics file (a divisor of 120)"
    )
    make.add_argument("--out", type=Path, required=True)
    target = commands.add_parser("serve", help="serve the fleet's current series")
    target.add_argument("--nodes", type=int, default=1000)
    target.add_argument("--port", type=int, required=True)
    target.add_argument("--refresh", type=float, default=5.0, help="seconds between value refreshes")
    args = parser.parse_args()
    if args.command == "serve":
        serve(args)
        return 0
    args.out.mkdir(parents=True, exist_ok=True)
    hours = args.days * 24 if args.days else args.hours
    report = generate(
        args.out, args.nodes, hours, args.interval, args.window_minutes, args.eval_interval, not args.no_rules
    )
    for line in iter_summary(report):
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
