"""Build a report: run one grouped query per level and column, assemble the rows, and check the sums.

Every figure is the result of one instant query (``Figure.query``): a row's own query narrows the
level's grouped query to the row's labels, which is the same sum by construction. Before anything is
shown, the report checks itself and raises ``ReportCheckError`` instead of printing wrong sums:

* the rows of the first level (idle and unallocated included) add up to the total query,
* every row's children add up to the row,
* the job or node family's total agrees with the cluster total of the allocation family (within
  ``reports.check_tolerance_percent``: the two families are scraped together but extrapolated apart),
* Prometheus reported no warnings (partial data).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from raylens.prometheus_api import PrometheusApi, Sample
from raylens.report.model import Figure, Report, Row
from raylens.report.periods import Interval
from raylens.report.queries import (
    ALLOCATION,
    DIMENSION_LABELS,
    FILTER_LABELS,
    IDLE,
    NODE,
    UNALLOCATED,
    Selection,
    Window,
    born_inside,
    choose_family,
    forecast_query,
    matcher,
    spend_query,
    with_idle,
)

# Two figures of one family are the same series summed in another order.
EXACT = {"rel_tol": 1e-9, "abs_tol": 1e-6}
UNALLOCATED_DIMENSIONS = ("project", "team", "user")
IDLE_HIDING_FILTERS = ("project", "team", "user", "workload", "job")
OTHER = "(other)"


class ReportCheckError(Exception):
    """The data disagree with themselves; the report is not printed."""


@dataclass(frozen=True)
class ReportRequest:
    dimensions: tuple[str, ...]
    interval: Interval
    timezone: str
    filters: Mapping[str, Sequence[str]] = field(default_factory=dict)
    selector: tuple[str, ...] = ()
    compare: Interval | None = None
    forecast_window_seconds: int | None = 86400
    forecast_window_text: str = "24h"
    top: int = 0
    tolerance_percent: float = 0.1


@dataclass(frozen=True)
class Column:
    name: str  # spend, previous, forecast
    window: Window
    forecast: tuple[int, int] | None = None  # (rate window seconds, seconds left)


class _Plan:
    """The queries of one report, named so results can be found again after running them together."""

    def __init__(self, request: ReportRequest, cloud: bool):
        self.request = request
        self.cloud = cloud
        self.queries: dict[tuple, str] = {}

    def query(self, selection: Selection, labels: Sequence[str], column: Column) -> str:
        # Only the node family carries node ids to join the cloud on.
        cloud = self.cloud and selection.family is NODE
        if column.forecast is not None:
            rate_seconds, remaining = column.forecast
            return forecast_query(selection, labels, column.window, rate_seconds, remaining, cloud)
        return spend_query(selection, labels, column.window, cloud)

    def add(self, key: tuple, query: str) -> str:
        self.queries[key] = query
        return query


def _columns(request: ReportRequest) -> list[Column]:
    interval = request.interval
    columns = [Column("spend", Window(interval.seconds, interval.end))]
    if request.compare is not None:
        columns.append(Column("previous", Window(request.compare.seconds, request.compare.end)))
    if interval.running and request.forecast_window_seconds:
        remaining = interval.calendar_end - interval.end
        columns.append(
            Column("forecast", Window(interval.seconds, interval.end), (request.forecast_window_seconds, remaining))
        )
    return columns


def _base_selection(request: ReportRequest) -> Selection:
    family = choose_family(request.dimensions, request.filters)
    matchers, info = [], []
    for name, values in sorted(request.filters.items()):
        (info if name == "cloud" else matchers).append(matcher(FILTER_LABELS[name], list(values)))
    return Selection(family, tuple(matchers), tuple(info), tuple(request.selector))


def _level_labels(dimensions: Sequence[str], depth: int) -> tuple[str, ...]:
    return tuple(label for dimension in dimensions[:depth] for label in DIMENSION_LABELS[dimension])


def _value(samples: list[Sample], query: str) -> float:
    total = 0.0
    for sample in samples:
        if math.isnan(sample.value) or math.isinf(sample.value):
            raise ReportCheckError(f"Prometheus returned {sample.value} for a spend figure\n  query: {query}")
        total += sample.value
    return total


def _row_name(dimension: str, labels: Mapping[str, str], family_name: str) -> tuple[str, str]:
    if dimension == "org":
        return ("all jobs" if family_name != NODE.name else "all nodes"), ""
    if dimension == "job":
        return labels.get("job_id") or "(no job id)", labels.get("submission_id", "")
    return labels.get(DIMENSION_LABELS[dimension][0]) or "(unknown)", ""


def _kind(dimension: str, labels: Mapping[str, str]) -> str:
    if dimension in UNALLOCATED_DIMENSIONS and labels.get(dimension) == UNALLOCATED:
        return "unallocated"
    return "item"


def _check(
    what: str, parts: float, whole: float, query: str, tolerance: Mapping[str, float] = EXACT, total: str = "the total"
) -> None:
    if not math.isclose(parts, whole, **tolerance):
        raise ReportCheckError(
            f"the figures do not add up: {what} come to ${parts:,.6f} but {total} is ${whole:,.6f} (difference "
            f"${parts - whole:,.6f}).\n  total query: {query}\nNot printing a report with wrong sums. Causes: "
            "Prometheus replicas with different data behind one URL, partial data (a store or shard down), or "
            "relabelling that drops raylens labels."
        )


def build_report(
    api: PrometheusApi,
    request: ReportRequest,
    generated_at: str,
    clock: Callable[[], float] = time.perf_counter,
) -> Report:
    started = clock()
    base = _base_selection(request)
    family = base.family
    cloud = "cloud" in request.dimensions or "cloud" in request.filters
    items = base
    if family is ALLOCATION and "project" not in request.filters:
        items = Selection(family, (*base.matchers, f'project!="{IDLE}"'), base.info_matchers, base.extra)
    idle_row = family.idle_rows and not set(request.filters) & set(IDLE_HIDING_FILTERS)
    only_kind_filters = set(request.filters) <= {"cost_kind"}
    memo_idle = family is NODE and only_kind_filters
    plan = _Plan(request, cloud)
    columns = _columns(request)
    dims = request.dimensions

    for column in columns:
        for depth in range(1, len(dims) + 1):
            plan.add(("level", depth, column.name), plan.query(items, _level_labels(dims, depth), column))
        idle_query = plan.query(base.idle(), (), column) if idle_row or memo_idle else None
        if idle_query is not None:
            plan.add(("idle", column.name), idle_query)
        family_total = plan.query(base, (), column)
        if family is ALLOCATION or not idle_row:
            plan.add(("total", column.name), family_total)
        else:
            plan.add(("total", column.name), with_idle(family_total, idle_query or ""))
        # Forecasts multiply a rate by weeks and the two families' rates are extrapolated apart: only
        # spend figures are compared across families.
        cross = (
            column.forecast is None
            and family is not ALLOCATION
            and (only_kind_filters or (family.name == "job" and "job" not in request.filters))
        )
        if cross:
            allocation = Selection(
                ALLOCATION, tuple(m for m in base.matchers if not m.startswith("job_id")), (), base.extra
            )
            plan.add(("cluster", column.name), plan.query(allocation, (), column))
            plan.add(
                ("born", column.name), f"{born_inside(base, column.window)} + {born_inside(allocation, column.window)}"
            )

    spend = columns[0].window
    counter = base.family.metric + "{" + ", ".join((*base.matchers, *base.extra)) + "}"
    plan.add(("resets", "spend"), f"max(resets({counter}[{spend.seconds}s] @ {spend.at}))")

    with ThreadPoolExecutor(max_workers=min(8, len(plan.queries))) as pool:
        futures = {key: pool.submit(api.query, query, _at(key, columns)) for key, query in plan.queries.items()}
        results = {key: future.result() for key, future in futures.items()}
    if api.warnings:
        raise ReportCheckError(
            "Prometheus warned that its answers may be incomplete; not printing a report that may not add up:\n  "
            + "\n  ".join(api.warnings)
        )

    def figure(column: Column, selection: Selection, labels: Mapping[str, str] | None = None) -> Figure:
        narrowed = selection.with_labels(labels or {})
        return Figure(0.0, plan.query(narrowed, (), column), column.window.at)

    # Rows per level, keyed by their label values; rows present in any column appear in all.
    levels: list[dict[tuple[str, ...], Row]] = []
    for depth in range(1, len(dims) + 1):
        labels = _level_labels(dims, depth)
        rows: dict[tuple[str, ...], Row] = {}
        for column in columns:
            for sample in results[("level", depth, column.name)]:
                key = tuple(sample.labels.get(label, "") for label in labels)
                row = rows.get(key)
                if row is None:
                    row_labels = dict(zip(labels, key, strict=True))
                    name, detail = _row_name(dims[depth - 1], row_labels, family.name)
                    row = rows[key] = Row(
                        name, _kind(dims[depth - 1], row_labels), row_labels, figure(columns[0], items, row_labels)
                    )
                    row.level, row.detail = depth - 1, detail
                    for other in columns[1:]:
                        setattr(row, other.name, figure(other, items, row_labels))
                _add(row, column.name, sample.value)
        if depth == 1 and dims[0] in UNALLOCATED_DIMENSIONS and not request.filters.get(dims[0]):
            key = (UNALLOCATED,)
            if key not in rows:
                row_labels = {dims[0]: UNALLOCATED}
                rows[key] = Row(UNALLOCATED, "unallocated", row_labels, figure(columns[0], items, row_labels))
                for other in columns[1:]:
                    setattr(rows[key], other.name, figure(other, items, row_labels))
        levels.append(rows)

    for depth in range(1, len(levels)):
        parents, size = levels[depth - 1], len(_level_labels(dims, depth))
        for key, row in levels[depth].items():
            parent = parents.get(key[:size])
            if parent is None:
                raise ReportCheckError(f"row {row.labels} has no parent row at level {depth}: the data disagree")
            parent.children.append(row)

    top_rows = list(levels[0].values())
    if idle_row:
        idle = Row(IDLE, "idle", {"project": IDLE}, Figure(0.0, plan.queries[("idle", "spend")], columns[0].window.at))
        for column in columns:
            query = plan.queries[("idle", column.name)]
            _set(idle, column, _value(results[("idle", column.name)], query), query)
        top_rows.append(idle)
    total = Row("total", "total", {}, Figure(0.0, plan.queries[("total", "spend")], columns[0].window.at))
    for column in columns:
        query = plan.queries[("total", column.name)]
        _set(total, column, _value(results[("total", column.name)], query), query)

    # The checks, on every column, before anything is folded or printed.
    for column in columns:
        parts = sum(_get(row, column.name) for row in top_rows)
        _check(f"the rows ({column.name})", parts, _get(total, column.name), plan.queries[("total", column.name)])
        for rows in levels[:-1]:
            for row in rows.values():
                children = sum(_get(child, column.name) for child in row.children)
                _check(
                    f"the rows under {row.labels} ({column.name})",
                    children,
                    _get(row, column.name),
                    _get_query(row, column.name),
                )
        if ("cluster", column.name) in plan.queries:
            cluster_query = plan.queries[("cluster", column.name)]
            cluster = _value(results[("cluster", column.name)], cluster_query)
            # Spend the counters held before Prometheus first saw them is counted by neither family's
            # increase() in full, and by each to a different extent: allow that much on top.
            born = _value(results[("born", column.name)], plan.queries[("born", column.name)])
            tolerance = {"rel_tol": request.tolerance_percent / 100, "abs_tol": 0.005 + born}
            subject = "the jobs plus idle" if family.name == "job" else "the nodes"
            _check(
                f"{subject} ({column.name})",
                _get(total, column.name),
                cluster,
                cluster_query,
                tolerance,
                "the cluster total of the allocation counters",
            )

    memos = []
    if memo_idle:
        memo = Row(
            "idle capacity (included above)",
            "memo",
            {"project": IDLE},
            Figure(0.0, plan.queries[("idle", "spend")], columns[0].window.at),
        )
        for column in columns:
            query = plan.queries[("idle", column.name)]
            _set(memo, column, _value(results[("idle", column.name)], query), query)
        memos.append(memo)

    rows = _arrange(top_rows, request.top, plan, items, columns, dims)
    interval = request.interval
    method = None
    if any(column.forecast for column in columns):
        method = (
            f"run-rate: spend to date + mean spend rate over the last {request.forecast_window_text} x the time "
            f"left until the period ends ({interval.calendar_end - interval.end} s)"
        )
    notes = []
    if family.idle_rows and not idle_row:
        notes.append("idle spend is not shown: the filters select jobs, and idle capacity belongs to no job")
    if family is NODE:
        notes.append("node rows include the capacity no job held; the memo row shows how much of it was idle")
    restarts = max((sample.value for sample in results[("resets", "spend")]), default=0.0)
    if restarts:
        notes.append(
            f"the spend counters went back to zero {restarts:.0f} time(s) in this period (an exporter restart that "
            "lost cost.state_dir); increase() counts on from zero, so only the spend between the last scrape before "
            "the restart and the restart itself is missing. Keep cost.state_dir on a persistent disk"
        )
    return Report(
        dimensions=dims,
        family=family.name,
        filters={name: list(values) for name, values in request.filters.items()},
        selector=list(request.selector),
        timezone=request.timezone,
        interval=interval,
        compare=request.compare,
        forecast_method=method,
        source=api.url,
        generated_at=generated_at,
        rows=rows,
        total=total,
        memos=memos,
        notes=notes,
        query_seconds=clock() - started,
        queries_run=len(plan.queries),
    )


def _at(key: tuple, columns: Sequence[Column]) -> int:
    name = key[-1]
    return next(column.window.at for column in columns if column.name == name)


def _get(row: Row, column: str) -> float:
    value = getattr(row, column)
    return 0.0 if value is None else value.dollars


def _get_query(row: Row, column: str) -> str:
    value = getattr(row, column)
    return "" if value is None else value.query


def _set(row: Row, column: Column, dollars: float, query: str) -> None:
    setattr(row, column.name, Figure(dollars, query, column.window.at))


def _add(row: Row, column: str, dollars: float) -> None:
    current = getattr(row, column)
    setattr(row, column, Figure(current.dollars + dollars, current.query, current.at))


def _arrange(
    rows: list[Row], top: int, plan: _Plan, items: Selection, columns: Sequence[Column], dims: Sequence[str]
) -> list[Row]:
    """Largest first, `(other)` for rows beyond ``top``, then unallocated and idle; the same below."""
    for row in rows:
        row.children = _arrange(row.children, top, plan, items, columns, dims)
    listed = sorted((row for row in rows if row.kind == "item"), key=lambda row: (-row.dollars, row.name))
    tail = [row for row in rows if row.kind == "unallocated"] + [row for row in rows if row.kind == "idle"]
    if not top or len(listed) <= top:
        return listed + tail
    kept, folded = listed[:top], listed[top:]
    level = folded[0].level
    parent_labels = {key: value for key, value in folded[0].labels.items() if key not in _own_labels(dims, level)}
    own = DIMENSION_LABELS[dims[level]][0] if DIMENSION_LABELS[dims[level]] else None
    other = Row(OTHER, "other", parent_labels, Figure(0.0, "", columns[0].window.at), level=level)
    other.detail = f"{len(folded)} more"
    keep_values = [row.labels[own] for row in kept + [r for r in tail if r.kind == "unallocated"]] if own else []
    for column in columns:
        parent = items.with_labels(parent_labels)
        whole = plan.query(parent, (), column)
        shown = (
            plan.query(
                Selection(
                    parent.family, (*parent.matchers, matcher(own, keep_values)), parent.info_matchers, parent.extra
                ),
                (),
                column,
            )
            if own
            else ""
        )
        dollars = sum(_get(row, column.name) for row in folded)
        setattr(other, column.name, Figure(dollars, f"{whole} - ({shown} or vector(0))", column.window.at))
    return [*kept, other, *tail]


def _own_labels(dims: Sequence[str], level: int) -> tuple[str, ...]:
    return DIMENSION_LABELS[dims[level]]
