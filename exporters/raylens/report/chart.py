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


def chart_query(report: Report, step: int) -> str:
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
    spend = sum_by(labels, per_series(selection, "increase", step, None, cloud))
    if family is ALLOCATION or family is NODE or not report.rows or not any(row.kind == "idle" for row in report.rows):
        return spend
    idle = sum_by((), per_series(selection.idle(), "increase", step, None, False))
    return f'{spend} or label_replace({idle}, "{labels[0]}", "{IDLE}", "", "")'


def write_chart(api: PrometheusApi, report: Report, path: Path) -> Path:
    pyplot = _pyplot()
    interval = report.interval
    step = _step(interval.seconds)
    first = interval.start + step
    zone = ZoneInfo(report.timezone)
    series = (
        api.query_range(chart_query(report, step), first, max(first, interval.end), step)
        if first <= interval.end
        else []
    )
    label = DIMENSION_LABELS[report.dimensions[0]][:1]
    totals = {}
    for item in series:
        name = item.labels.get(label[0], "") if label else "all"
        totals[name] = totals.get(name, 0.0) + sum(value for _, value in item.points)
    ranked = sorted(totals, key=lambda name: -totals[name])
    shown = ranked[:TOP_SERIES]
    times = sorted({t for item in series for t, _ in item.points})
    stacks = {name: [0.0] * len(times) for name in [*shown, "(other)"]}
    position = {t: i for i, t in enumerate(times)}
    for item in series:
        name = item.labels.get(label[0], "") if label else "all"
        target = name if name in shown else "(other)"
        for t, value in item.points:
            stacks[target][position[t]] += value
    if not any(stacks["(other)"]):
        del stacks["(other)"]

    figure, (top, bottom) = pyplot.subplots(2, 1, figsize=(11, 9), height_ratios=[3, 2])
    figure.suptitle(title(report), fontsize=11)
    days = [datetime.fromtimestamp(t - step, zone) for t in times]
    width = step / 86400 * 0.9
    base = [0.0] * len(times)
    for name, values in stacks.items():
        top.bar(days, values, width=width, bottom=base, label=name or "(unknown)", align="edge")
        base = [b + v for b, v in zip(base, values, strict=True)]
    unit = {3600: "hour", 86400: "day", 7 * 86400: "week"}[step]
    top.set_ylabel(f"US dollars per {unit}")
    top.set_title(f"Spend per {unit} by {DIMENSION_TITLES[report.dimensions[0]].lower()}", fontsize=10)
    if stacks:
        top.legend(fontsize=8, loc="upper left", ncols=2)
    top.grid(axis="y", alpha=0.3)
    figure.autofmt_xdate()

    rows = sorted(report.rows, key=lambda row: -row.dollars)[:TOP_BARS]
    names = [row.name + (f" ({row.detail})" if row.detail else "") for row in rows][::-1]
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
