"""Every panel query of every dashboard, and every recording rule raw against recorded, timed on a
backfilled fleet (``benchmarks/fleet.py generate``).

    python benchmarks/panels.py --tsdb /tmp/fleet            # default ranges and 30 days
    python benchmarks/panels.py --tsdb /tmp/fleet --json out.json --repeat 3

Variables are substituted as Grafana would with every variable at "All": ``$__interval`` is the step
(range / 1,000 points, at least the 15 s scrape interval), ``$__rate_interval`` is
max(step + 15 s, 4 x 15 s), ``$__range`` the range. Ranges end where the data ends. Each query runs
``--repeat`` times; the median wall time (client side, over HTTP) is reported with Prometheus's own
count of samples it read (``stats=all``), which is what extrapolates to a larger fleet or a longer
range. Targets (issue #14): every panel ≤ 1 s at its default range and ≤ 5 s at 30 days; every
recording rule at least 10x faster than the raw expression it replaces. Misses are listed at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import requests
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))

from prometheus_tsdb import serving_prometheus

from raylens.dashboards.build import build_dashboards, iter_panels
from raylens.dashboards.validate import BUILTIN_VARIABLES, all_values, substitute
from raylens.stack.tools import bundle_root

REPO = Path(__file__).resolve().parents[1]
SCRAPE_INTERVAL = 15.0
POINTS = 1000  # Grafana's maxDataPoints for a wide panel
THIRTY_DAYS = 30 * 86400.0
PANEL_TARGET = {"default": 1.0, "30d": 5.0}
RULE_SPEEDUP_TARGET = 10.0


@dataclass
class Timing:
    where: str
    range_name: str
    seconds: float
    samples: int
    series: int
    error: str = ""


def duration(text: str) -> float:
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
    return float(text[:-1]) * units[text[-1]]


def grafana_values(range_seconds: float, interval: float = SCRAPE_INTERVAL) -> tuple[dict[str, str], float]:
    """Grafana's built-in variables for a range, and the step it would ask for."""
    step = max(interval, round(range_seconds / POINTS / interval) * interval)
    rate_interval = max(step + interval, 4 * interval)
    return {
        "__interval": f"{int(step)}s",
        "__rate_interval": f"{int(rate_interval)}s",
        "__range": f"{int(range_seconds)}s",
    }, step


def run_query(
    url: str, expr: str, end: float, range_seconds: float, step: float, instant: bool
) -> tuple[float, int, int]:
    """Wall seconds, samples read and series returned; raises on a failed query."""
    params: dict[str, Any] = {"query": expr, "stats": "all"}
    if instant:
        params["time"] = end
        path = "query"
    else:
        params.update(start=end - range_seconds, end=end, step=step)
        path = "query_range"
    started = time.perf_counter()
    response = requests.get(f"{url}/api/v1/{path}", params=params, timeout=300)
    elapsed = time.perf_counter() - started
    body = response.json()
    if body.get("status") != "success":
        raise RuntimeError(body.get("error", response.text[:200]))
    stats = body["data"].get("stats", {}).get("samples", {})
    return elapsed, int(stats.get("totalQueryableSamples", 0)), len(body["data"]["result"])


def timed(url: str, where: str, range_name: str, expr: str, end: float, range_seconds: float, step: float,
          instant: bool, repeat: int) -> Timing:  # fmt: skip
    try:
        runs = [run_query(url, expr, end, range_seconds, step, instant) for _ in range(repeat)]
    except (RuntimeError, requests.RequestException) as error:
        return Timing(where, range_name, float("nan"), 0, 0, str(error)[:200])
    return Timing(where, range_name, statistics.median(run[0] for run in runs), runs[-1][1], runs[-1][2])


def panel_queries() -> Iterator[tuple[str, str, str, bool, float]]:
    """(where, expr with dashboard variables at All, panel range name, instant, default range)."""
    for built in build_dashboards(bundle_root()):
        dashboard = built.json
        default = duration(dashboard["time"]["from"].removeprefix("now-"))
        # Grafana's built-ins stay as they are: each range substitutes its own.
        values = {**all_values(dashboard), **{name: f"${name}" for name in BUILTIN_VARIABLES}}
        for panel in iter_panels(dashboard):
            for target in panel["targets"]:
                where = f"{dashboard['uid'].removeprefix('raylens-')} / {panel['title']} / {target['refId']}"
                yield where, substitute(target["expr"], values), target.get("instant", False), default


def variable_queries() -> Iterator[tuple[str, str, str]]:
    """(dashboard, variable, PromQL whose series carry the values) for each query variable at All."""
    for built in build_dashboards(bundle_root()):
        dashboard = built.json
        values = all_values(dashboard)
        for variable in dashboard["templating"]["list"]:
            if variable["type"] != "query":
                continue
            query = variable["query"]["query"] if isinstance(variable["query"], dict) else variable["query"]
            selector, _, label = query[len("label_values(") : -1].rpartition(",")
            yield dashboard["uid"], variable["name"], substitute(f"count by ({label.strip()}) ({selector})", values)


def time_panels(url: str, end: float, repeat: int, ranges: list[str]) -> list[Timing]:
    timings = []
    for where, expr, instant, default in panel_queries():
        for range_name in ranges:
            range_seconds = default if range_name == "default" else THIRTY_DAYS
            builtins, step = grafana_values(range_seconds)
            text = substitute(expr, builtins)
            timings.append(timed(url, where, range_name, text, end, range_seconds, step, instant, repeat))
    return timings


def recording_rules() -> Iterator[tuple[str, str]]:
    for path in sorted((REPO / "recording-rules").glob("*.yml")):
        for group in yaml.safe_load(path.read_text())["groups"]:
            for rule in group["rules"]:
                if "record" in rule:
                    yield rule["record"], " ".join(rule["expr"].split())


def time_rules(url: str, end: float, range_seconds: float, repeat: int) -> list[tuple[Timing, Timing]]:
    """Each rule's raw expression and its recorded series over the same range (a dashboard's view)."""
    _builtins, step = grafana_values(range_seconds)
    step = max(step, 60.0)  # the rules were backfilled at a one-minute evaluation interval
    pairs = []
    for record, expr in recording_rules():
        raw = timed(url, f"{record} (raw)", "rule", expr, end, range_seconds, step, False, repeat)
        recorded = timed(url, record, "rule", record, end, range_seconds, step, False, repeat)
        pairs.append((raw, recorded))
    return pairs


def report(panels: list[Timing], rules: list[tuple[Timing, Timing]]) -> Iterator[str]:
    yield f"{'panel query':<92} {'range':>7} {'seconds':>8} {'samples':>12} {'series':>7}"
    for timing in sorted(panels, key=lambda timing: -(timing.seconds if timing.seconds == timing.seconds else 1e9)):
        flag = " MISS" if timing.error or timing.seconds > PANEL_TARGET[timing.range_name] else ""
        seconds = "error" if timing.error else f"{timing.seconds:8.3f}"
        row = f"{timing.where[:92]:<92} {timing.range_name:>7} {seconds:>8} {timing.samples:>12,} {timing.series:>7}"
        yield row + flag
        if timing.error:
            yield f"    {timing.error}"
    yield ""
    yield f"{'recording rule':<70} {'raw s':>8} {'rule s':>8} {'speed-up':>9} {'raw samples':>12} {'rule samples':>12}"
    for raw, recorded in sorted(rules, key=lambda pair: pair[0].seconds / max(pair[1].seconds, 1e-9)):
        speedup = raw.seconds / max(recorded.seconds, 1e-9)
        flag = " MISS" if speedup < RULE_SPEEDUP_TARGET else ""
        yield (
            f"{recorded.where[:70]:<70} {raw.seconds:8.3f} {recorded.seconds:8.3f} {speedup:8.1f}x "
            f"{raw.samples:>12,} {recorded.samples:>12,}{flag}"
        )
    for range_name, limit in PANEL_TARGET.items():
        measured = [timing for timing in panels if timing.range_name == range_name]
        if measured:
            missed = [timing for timing in measured if timing.error or timing.seconds > limit]
            yield f"panels at {range_name} range: {len(measured) - len(missed)}/{len(measured)} within {limit:g} s"
    fast = sum(1 for raw, recorded in rules if raw.seconds / max(recorded.seconds, 1e-9) >= RULE_SPEEDUP_TARGET)
    yield f"recording rules at least {RULE_SPEEDUP_TARGET:g}x faster than raw: {fast}/{len(rules)}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tsdb", type=Path, required=True, help="the --out folder of fleet.py generate")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--ranges", nargs="+", default=["default", "30d"], choices=["default", "30d"])
    parser.add_argument("--rule-range", default="6h", help="range over which rules are compared")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    fleet = json.loads((args.tsdb / "fleet.json").read_text())
    end = float(fleet["end"])
    with serving_prometheus(args.tsdb / "data", args.tsdb / "prometheus-panels") as url:
        panels = time_panels(url, end, args.repeat, args.ranges)
        rules = time_rules(url, end, min(duration(args.rule_range), end - float(fleet["start"])), args.repeat)
    for line in report(panels, rules):
        print(line)
    print(f"fleet: {fleet['nodes']} nodes, {fleet['series']:,} series, {fleet['hours']} h; load {os.getloadavg()}")
    if args.json:
        payload = {
            "fleet": fleet,
            "panels": [asdict(t) for t in panels],
            "rules": [[asdict(t) for t in p] for p in rules],
        }
        args.json.write_text(json.dumps(payload, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
