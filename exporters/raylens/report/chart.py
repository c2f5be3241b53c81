"""``--chart out.png``: spend over the period stacked by the first ``--by`` dimension, and the top rows.

matplotlib is an optional dependency (``pip install 'raylens[report]'``): only the chart needs it,
and a report on a server without it still runs. The time series reads one range query of
``sum by (<dimension>) (increase(counter[step]))``: each bar is the spend of the step before it
(an hour for periods up to two days, a day up to three months, else a week; days are fixed 24 h
steps from the period's start, so a DST change shifts the day edges by an hour in the picture only).
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from raylens.prometheus_api import PrometheusApi
from raylens.report.model import Report
from raylens.report.queries import (
    ALLOCATION,
    DIMENSION_LABELS,
    IDLE,
    NODE,
    Selection,
    choose_family,
    matcher,
    per_series,
    sum_by,
)
from raylens.report.render import DIMENSION_TITLES, money, title

TOP_SERIES = 8
TOP_BARS = 12


class ChartUnavailable(RuntimeError):
    """matplotlib is not installed."""


def require_matplotlib() -> None:
    _pyplot()


def _pyplot():
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as pyplot
    except ImportError:
        raise ChartUnavailable(
            "--chart needs matplotlib, which is not installed: pip install 'raylens[report]' (or leave out --chart)"
        ) from None
    return pyplot


def _step(seconds: int) -> int:
    if seconds <= 2 * 86400:
        return 3600
    if seconds <= 92 * 86400:
        return 86400
    return 7 * 86400


def chart_query(report: Report, step: int, at: int | None = None) -> str:
    dimension = report.dimensions[0]
    family = choose_family(report.dimensions, report.filters)
    matchers = [
        matcher(name if name != "job" else "job_id", values)
        for name, values in report.filters.items()
        if name != "cloud"
    ]
    info = [matcher("cloud", report.filters["cloud"])] if "cloud" in report.filters else []
    selection = Selection(family, tuple(matchers), tuple(info), tuple(report.selector))
    cloud = "cloud" in report.dimensions or "cloud" in report.filters
    labels = DIMENSION_LABELS[dimension][:1]
    spend = sum_by(labels, per_series(selection, "increase", step, at, cloud))
    if family is ALLOCATION or family is NODE or not report.rows or not any(row.kind == "idle" for row in report.rows):
        return spend
    idle = sum_by((), per_series(selection.idle(), "increase", step, at, False))
    return f'{spend} or label_replace({idle}, "{labels[0]}", "{IDLE}", "", "")'


def _display(name: str) -> str:
    # matplotlib leaves labels starting with "_" out of legends.
    return {IDLE: "idle", "__unallocated__": "unallocated", "": "(unknown)"}.get(name, name)


def write_chart(api: PrometheusApi, report: Report, path: Path) -> Path:
    pyplot = _pyplot()
    interval = report.interval
    step = _step(interval.seconds)
    zone = ZoneInfo(report.timezone)
    label = DIMENSION_LABELS[report.dimensions[0]][0] if DIMENSION_LABELS[report.dimensions[0]] else None
    # Whole steps from the period's start by one range query; the part of a step at the end by one instant query.
    whole = (interval.end - interval.start) // step
    points: dict[int, dict[str, float]] = {}  # bucket start -> name -> dollars
    widths: dict[int, int] = {}
    if whole:
        last = interval.start + whole * step
        for item in api.query_range(chart_query(report, step), interval.start + step, last, step):
            for t, value in item.points:
                bucket = int(t) - step
                widths[bucket] = step
                name = item.labels.get(label, "") if label else "all"
                points.setdefault(bucket, {})[name] = points.get(bucket, {}).get(name, 0.0) + value
    tail_start = interval.start + whole * step
    if interval.end > tail_start:
        widths[tail_start] = interval.end - tail_start
        for sample in api.query(chart_query(report, interval.end - tail_start, interval.end), interval.end):
            name = sample.labels.get(label, "") if label else "all"
            points.setdefault(tail_start, {})[name] = points.get(tail_start, {}).get(name, 0.0) + sample.value
    totals: dict[str, float] = {}
    for values in points.values():
        for name, value in values.items():
            totals[name] = totals.get(name, 0.0) + value
    shown = sorted(totals, key=lambda name: -totals[name])[:TOP_SERIES]
    buckets = sorted(points)
    stacks = {name: [points[b].get(name, 0.0) for b in buckets] for name in shown}
    other = [sum(value for name, value in points[b].items() if name not in shown) for b in buckets]
    if any(other):
        stacks["(other)"] = other

    figure, (top, bottom) = pyplot.subplots(2, 1, figsize=(11, 9), height_ratios=[3, 2])
    figure.suptitle(title(report), fontsize=11)
    starts = [datetime.fromtimestamp(b, zone) for b in buckets]
    widths_days = [widths[b] / 86400 * 0.9 for b in buckets]
    base = [0.0] * len(buckets)
    for name, values in stacks.items():
        top.bar(starts, values, width=widths_days, bottom=base, label=_display(name), align="edge")
        base = [b + v for b, v in zip(base, values, strict=True)]
    unit = {3600: "hour", 86400: "day", 7 * 86400: "week"}[step]
    top.set_ylabel(f"US dollars per {unit}")
    top.set_title(f"Spend per {unit} by {DIMENSION_TITLES[report.dimensions[0]].lower()}", fontsize=10)
    if stacks:
        top.legend(fontsize=8, loc="upper left", ncols=2)
    top.grid(axis="y", alpha=0.3)
    top.tick_params(axis="x", labelrotation=30)

    rows = sorted(report.rows, key=lambda row: -row.dollars)[:TOP_BARS]
    names = [_display(row.name) + (f" ({row.detail})" if row.detail else "") for row in rows][::-1]
    values = [row.dollars for row in rows][::-1]
    bars = bottom.barh(names, values, color="#4C72B0")
    for bar, value in zip(bars, values, strict=True):
        bottom.text(bar.get_width(), bar.get_y() + bar.get_height() / 2, " " + money(value), va="center", fontsize=8)
    bottom.set_xlabel("US dollars over the period")
    bottom.set_title(f"Top {len(rows)} by spend (total {money(report.total.dollars)})", fontsize=10)
    bottom.grid(axis="x", alpha=0.3)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp")
    figure.savefig(temporary, format="png", dpi=100)
    pyplot.close(figure)
    temporary.replace(path)
    return path
