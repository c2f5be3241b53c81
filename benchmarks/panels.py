"""Every panel query of every dashboard, and every recording rule raw against recorded, timed on a
backfilled fleet (``benchmarks/fleet.py generate``).

    python benchmarks/panels.py --tsdb /tmp/fleet            # default ranges and 30 days
    python benchmarks/panels.py --tsdb /tmp/fleet --json out.json --repeat 3

Variables are substituted as Grafana would with every variable at "All": ``$__interval`` is the step
(range / the panel's maxDataPoints, 1,000 when it sets none, at least the 15 s scrape interval), ``$__rate_interval`` is
max(step + 15 s, 4 x 15 s), ``$__range`` the range. Ranges end where the data ends. Each query runs
``--repeat`` times; the median wall time (client side, over HTTP) is reported with Prometheus's own
count of samples it read (``stats=all``), which is what extrapolates to a larger fleet or a longer
range. Targets (issue #14): every panel ≤ 1 s at its default range and ≤ 5 s at 30 days; every
recording rule at least 10x faster than the raw expression it replaces. Misses are listed at the end.

When a range is longer than the backfilled history (a 1-hour fleet asked for 30 days), the query
reads only what exists. The "est." columns say what a full-length history would cost: samples read
grow by range / history, each costing the seconds per sample fitted over the run's queries; the peak
samples held at once (Prometheus's ``peakSamples``, limited to 50 million by ``--query.max-samples``)
grow by range / history for ``[$__range]`` windows and are at least series x 1,000 steps otherwise.
A panel whose estimate misses is flagged as such.
"""

from __future__ import annotations

import argparse
import json
import os
import re
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
from raylens.dashboards.validate import BUILTIN_VARIABLES, all_values, is_loki, substitute
from raylens.stack.tools import bundle_root

REPO = Path(__file__).resolve().parents[1]
SCRAPE_INTERVAL = 15.0
POINTS = 1000  # Grafana's maxDataPoints for a wide panel
THIRTY_DAYS = 30 * 86400.0
PANEL_TARGET = {"default": 1.0, "30d": 5.0}
RULE_SPEEDUP_TARGET = 10.0
MAX_SAMPLES = 50_000_000  # Prometheus's default --query.max-samples: a query holding more fails


@dataclass
class Timing:
    where: str
    range_name: str
    seconds: float
    samples: int  # Prometheus's totalQueryableSamples: every sample the query read
    series: int
    error: str = ""
    server_seconds: float = 0.0  # Prometheus's execTotalTime: the query without the transfer
    peak: int = 0  # Prometheus's peakSamples: most samples held at once (checked against --query.max-samples)
    # range / the data's span when the range is longer than the data (1 otherwise): how much more a
    # full-length history would make the query read.
    scale: float = 1.0
    window_is_range: bool = False  # a [$__range] window: its peak grows with the range too
    seconds_per_sample: float = 0.0  # fitted over all queries of the run (see fit_sample_cost)

    @property
    def estimated_seconds(self) -> float:
        """The measured time plus the samples a full history would add, at the fitted cost of one."""
        return self.seconds + (self.scale - 1) * self.samples * self.seconds_per_sample

    @property
    def estimated_peak(self) -> float:
        if self.window_is_range:
            return self.peak * self.scale
        return max(self.peak, self.series * POINTS)  # a full range holds every step of every series


def fit_sample_cost(timings: list[Timing]) -> float:
    """Seconds per sample read: the least-squares slope of Prometheus's own execution time over
    samples across the queries (the wall time also holds the transfer, which grows with series)."""
    points = [(t.samples, t.server_seconds) for t in timings if not t.error and t.seconds == t.seconds]
    if len(points) < 2:
        return 0.0
    mean_x = sum(x for x, _ in points) / len(points)
    mean_y = sum(y for _, y in points) / len(points)
    spread = sum((x - mean_x) ** 2 for x, _ in points)
    slope = sum((x - mean_x) * (y - mean_y) for x, y in points) / spread if spread else 0.0
    return max(slope, 0.0)


def duration(text: str) -> float:
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
    return float(text[:-1]) * units[text[-1]]


def grafana_values(
    range_seconds: float, interval: float = SCRAPE_INTERVAL, points: int = POINTS
) -> tuple[dict[str, str], float]:
    """Grafana's built-in variables for a range, and the step it would ask for (``points``: the
    panel's maxDataPoints)."""
    step = max(interval, round(range_seconds / points / interval) * interval)
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
    stats = body["data"].get("stats", {})
    samples = stats.get("samples", {})
    return (
        elapsed,
        int(samples.get("totalQueryableSamples", 0)),
        len(body["data"]["result"]),
        int(samples.get("peakSamples", 0)),
        float(stats.get("timings", {}).get("execTotalTime", 0.0)),
    )


def timed(url: str, where: str, range_name: str, expr: str, end: float, range_seconds: float, step: float,
          instant: bool, repeat: int) -> Timing:  # fmt: skip
    try:
        runs = [run_query(url, expr, end, range_seconds, step, instant) for _ in range(repeat)]
    except (RuntimeError, requests.RequestException) as error:
        return Timing(where, range_name, float("nan"), 0, 0, str(error)[:200])
    seconds = statistics.median(run[0] for run in runs)
    server = statistics.median(run[4] for run in runs)
    return Timing(where, range_name, seconds, runs[-1][1], runs[-1][2], peak=runs[-1][3], server_seconds=server)


def panel_queries() -> Iterator[tuple[str, str, bool, float, int]]:
    """(where, expr with dashboard variables at All, instant, default range, the panel's maxDataPoints)."""
    for built in build_dashboards(bundle_root()):
        dashboard = built.json
        default = duration(dashboard["time"]["from"].removeprefix("now-"))
        # Grafana's built-ins stay as they are: each range substitutes its own.
        values = {**all_values(dashboard), **{name: f"${name}" for name in BUILTIN_VARIABLES}}
        for panel in iter_panels(dashboard):
            for target in panel["targets"]:
                if is_loki(target):
                    continue  # LogQL for Loki, not PromQL: no Loki runs here
                where = f"{dashboard['uid'].removeprefix('raylens-')} / {panel['title']} / {target['refId']}"
                points = panel.get("maxDataPoints") or POINTS
                yield where, substitute(target["expr"], values), target.get("instant", False), default, points


def variable_queries() -> Iterator[tuple[str, str, str]]:
    """(dashboard, variable, PromQL whose series carry the values) for each query variable at All."""
    for built in build_dashboards(bundle_root()):
        dashboard = built.json
        values = all_values(dashboard)
        for variable in dashboard["templating"]["list"]:
            if variable["type"] != "query" or is_loki(variable):
                continue
            query = variable["query"]["query"] if isinstance(variable["query"], dict) else variable["query"]
            selector, _, label = query[len("label_values(") : -1].rpartition(",")
            yield dashboard["uid"], variable["name"], substitute(f"count by ({label.strip()}) ({selector})", values)


def time_panels(url: str, end: float, repeat: int, ranges: list[str], span: float) -> list[Timing]:
    """Each panel target at each range; ``span`` is how much history the TSDB holds."""
    timings = []
    for where, expr, instant, default, points in panel_queries():
        for range_name in ranges:
            range_seconds = default if range_name == "default" else THIRTY_DAYS
            builtins, step = grafana_values(range_seconds, points=points)
            text = substitute(expr, builtins)
            timing = timed(url, where, range_name, text, end, range_seconds, step, instant, repeat)
            timing.scale = max(1.0, range_seconds / span)
            timing.window_is_range = "$__range]" in expr or "$__range:" in expr
            timings.append(timing)
    cost = fit_sample_cost(timings)
    for timing in timings:
        timing.seconds_per_sample = cost
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


def missed(timing: Timing) -> str:
    """Why a panel misses its target, measured or estimated for a full-length history; "" if it does not."""
    limit = PANEL_TARGET[timing.range_name]
    if timing.error:
        return "error"
    if timing.seconds > limit:
        return "slow"
    if timing.estimated_seconds > limit:
        return "slow (est.)"
    if timing.estimated_peak > MAX_SAMPLES:
        return "max-samples (est.)"
    return ""


def replaces_work(raw: Timing, recorded: Timing) -> bool:
    """A rule that aggregates series or reads a range window, the kind the 10x target is about. The
    others divide, multiply or join series one to one (units, ratios) and save no work by design."""
    expressions = dict(recording_rules())
    expr = expressions.get(recorded.where, "")
    return bool(re.search(r"\[[0-9]+[smhd]\]|\b(by|without)\s*\(|\b(sum|avg|count|max|min)\s*\(", expr))


def report(panels: list[Timing], rules: list[tuple[Timing, Timing]]) -> Iterator[str]:
    yield (
        f"{'panel query':<76} {'range':>7} {'seconds':>8} {'server':>7} {'samples':>12} {'peak':>11} {'series':>6} "
        f"{'est. s':>7} {'est. peak':>12}"
    )
    for timing in sorted(panels, key=lambda timing: -(timing.seconds if timing.seconds == timing.seconds else 1e9)):
        flag = missed(timing)
        seconds = "error" if timing.error else f"{timing.seconds:8.3f}"
        yield (
            f"{timing.where[:76]:<76} {timing.range_name:>7} {seconds:>8} {timing.server_seconds:7.3f} "
            f"{timing.samples:>12,} {timing.peak:>11,} "
            f"{timing.series:>6} {timing.estimated_seconds:7.2f} {timing.estimated_peak:>12,.0f}"
            + (f" MISS: {flag}" if flag else "")
        )
        if timing.error:
            yield f"    {timing.error}"
    yield ""
    yield (
        f"{'recording rule':<66} {'raw s':>7} {'rule s':>7} {'speed-up':>8} {'raw samples':>12} "
        f"{'rule samples':>12} {'reads':>8}"
    )
    for raw, recorded in sorted(rules, key=lambda pair: pair[0].seconds / max(pair[1].seconds, 1e-9)):
        speedup = raw.seconds / max(recorded.seconds, 1e-9)
        reads = raw.samples / max(recorded.samples, 1)
        kind = (
            " (normalises)" if not replaces_work(raw, recorded) else (" MISS" if speedup < RULE_SPEEDUP_TARGET else "")
        )
        yield (
            f"{recorded.where[:66]:<66} {raw.seconds:7.3f} {recorded.seconds:7.3f} {speedup:7.1f}x "
            f"{raw.samples:>12,} {recorded.samples:>12,} {reads:7.0f}x{kind}"
        )
    if panels:
        yield f"fitted cost of reading a sample: {panels[0].seconds_per_sample * 1e9:.1f} ns"
    for range_name, limit in PANEL_TARGET.items():
        measured = [timing for timing in panels if timing.range_name == range_name]
        if measured:
            late = [timing for timing in measured if missed(timing)]
            yield f"panels at {range_name} range: {len(measured) - len(late)}/{len(measured)} within {limit:g} s"
    heavy = [(raw, recorded) for raw, recorded in rules if replaces_work(raw, recorded)]
    fast = sum(1 for raw, recorded in heavy if raw.seconds / max(recorded.seconds, 1e-9) >= RULE_SPEEDUP_TARGET)
    fewer = sum(1 for raw, recorded in heavy if raw.samples >= RULE_SPEEDUP_TARGET * max(recorded.samples, 1))
    yield (
        f"recording rules that replace work (the rest normalise units or join labels): {len(heavy)}/{len(rules)}; "
        f"of those at least {RULE_SPEEDUP_TARGET:g}x faster: {fast}, reading at least {RULE_SPEEDUP_TARGET:g}x "
        f"fewer samples: {fewer}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tsdb", type=Path, help="the --out folder of fleet.py generate")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--ranges", nargs="+", default=["default", "30d"], choices=["default", "30d"])
    parser.add_argument("--rule-range", default="6h", help="range over which rules are compared")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--report", type=Path, help="print the tables of an earlier --json run and exit")
    args = parser.parse_args()
    if args.report:
        saved = json.loads(args.report.read_text())
        timings = [Timing(**row) for row in saved["panels"]]
        cost = fit_sample_cost(timings)
        for timing in timings:
            timing.seconds_per_sample = cost
        rules = [(Timing(**raw), Timing(**recorded)) for raw, recorded in saved["rules"]]
        for line in report(timings, rules):
            print(line)
        return 0
    fleet = json.loads((args.tsdb / "fleet.json").read_text())
    end = float(fleet["end"])
    with serving_prometheus(args.tsdb / "data", args.tsdb / "prometheus-panels") as url:
        panels = time_panels(url, end, args.repeat, args.ranges, end - float(fleet["start"]))
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
