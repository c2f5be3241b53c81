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
from dataclasses import dataclass

from raylens.prometheus_api import PrometheusApi, Sample
from raylens.report.arrange import arrange
from raylens.report.model import Figure, Report, Row
from raylens.report.plan import Column, Plan, ReportRequest, evaluation_time, report_columns
from raylens.report.queries import (
    ALLOCATION,
    DIMENSION_LABELS,
    FILTER_LABELS,
    IDLE,
    JOB,
    NODE,
    UNALLOCATED,
    Family,
    Selection,
    born_inside,
    choose_family,
    matcher,
    with_idle,
)

# Two figures of one family are the same series summed in another order.
EXACT = {"rel_tol": 1e-9, "abs_tol": 1e-6}
UNALLOCATED_DIMENSIONS = ("project", "team", "user")
IDLE_HIDING_FILTERS = ("project", "team", "user", "workload", "job")


class ReportCheckError(Exception):
    """The data disagree with themselves; the report is not printed."""


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


@dataclass(frozen=True)
class _Shape:
    """What a request reads: the family, its selections, and which extra rows and checks apply."""

    family: Family
    base: Selection  # the filters
    items: Selection  # the rows' series (the allocation family without idle)
    cloud: bool  # join the cloud from raylens_cost_node_info
    idle_row: bool  # idle as a row of its own
    memo_idle: bool  # idle as a memo under node rows
    cross_check: bool  # compare the total with the allocation family's

    @classmethod
    def of(cls, request: ReportRequest) -> _Shape:
        base = _base_selection(request)
        family = base.family
        items = base
        if family is ALLOCATION and "project" not in request.filters:
            items = Selection(family, (*base.matchers, f'project!="{IDLE}"'), base.info_matchers, base.extra)
        only_kind_filters = set(request.filters) <= {"cost_kind"}
        return cls(
            family=family,
            base=base,
            items=items,
            cloud="cloud" in request.dimensions or "cloud" in request.filters,
            idle_row=family.idle_rows and not set(request.filters) & set(IDLE_HIDING_FILTERS),
            memo_idle=family is NODE and only_kind_filters,
            cross_check=family is not ALLOCATION
            and (only_kind_filters or (family is JOB and "job" not in request.filters)),
        )


def _plan_queries(shape: _Shape, request: ReportRequest, columns: Sequence[Column]) -> Plan:
    plan = Plan(request, shape.cloud)
    dims = request.dimensions
    for column in columns:
        for depth in range(1, len(dims) + 1):
            plan.add(("level", depth, column.name), plan.query(shape.items, _level_labels(dims, depth), column))
        idle_query = plan.query(shape.base.idle(), (), column)
        if shape.idle_row or shape.memo_idle:
            plan.add(("idle", column.name), idle_query)
        family_total = plan.query(shape.base, (), column)
        total = (
            with_idle(family_total, idle_query) if shape.idle_row and shape.family is not ALLOCATION else family_total
        )
        plan.add(("total", column.name), total)
        # Forecasts multiply a rate by weeks and the families' rates are extrapolated apart: only spend
        # figures are compared across families.
        if shape.cross_check and column.forecast is None:
            matchers = tuple(m for m in shape.base.matchers if not m.startswith("job_id"))
            allocation = Selection(ALLOCATION, matchers, (), shape.base.extra)
            plan.add(("cluster", column.name), plan.query(allocation, (), column))
            born = f"{born_inside(shape.base, column.window)} + {born_inside(allocation, column.window)}"
            plan.add(("born", column.name), born)
    spend = columns[0].window
    counter = shape.base.family.metric + "{" + ", ".join((*shape.base.matchers, *shape.base.extra)) + "}"
    plan.add(("resets", "spend"), f"max(resets({counter}[{spend.seconds}s] @ {spend.at}))")
    return plan


def _run(api: PrometheusApi, plan: Plan, columns: Sequence[Column]) -> dict[tuple, list[Sample]]:
    with ThreadPoolExecutor(max_workers=min(8, len(plan.queries))) as pool:
        futures = {
            key: pool.submit(api.query, query, evaluation_time(key, columns)) for key, query in plan.queries.items()
        }
        results = {key: future.result() for key, future in futures.items()}
    if api.warnings:
        raise ReportCheckError(
            "Prometheus warned that its answers may be incomplete; not printing a report that may not add up:\n  "
            + "\n  ".join(api.warnings)
        )
    return results


def _levels(
    shape: _Shape,
    request: ReportRequest,
    plan: Plan,
    results: Mapping[tuple, list[Sample]],
    columns: Sequence[Column],
) -> list[dict[tuple[str, ...], Row]]:
    """Rows per level keyed by their label values (a row present in any column appears in all), linked
    to their parents."""
    dims = request.dimensions

    def new_row(depth: int, row_labels: dict[str, str], kind: str | None = None) -> Row:
        name, detail = _row_name(dims[depth - 1], row_labels, shape.family.name)
        narrowed = shape.items.with_labels(row_labels)
        figures = {column.name: Figure(0.0, plan.query(narrowed, (), column), column.window.at) for column in columns}
        row = Row(name, kind or _kind(dims[depth - 1], row_labels), row_labels, figures["spend"])
        row.previous, row.forecast = figures.get("previous"), figures.get("forecast")
        row.level, row.detail = depth - 1, detail
        return row

    levels: list[dict[tuple[str, ...], Row]] = []
    for depth in range(1, len(dims) + 1):
        labels = _level_labels(dims, depth)
        rows: dict[tuple[str, ...], Row] = {}
        for column in columns:
            for sample in results[("level", depth, column.name)]:
                key = tuple(sample.labels.get(label, "") for label in labels)
                if key not in rows:
                    rows[key] = new_row(depth, dict(zip(labels, key, strict=True)))
                _add(rows[key], column.name, sample.value)
        # Unallocated is always shown, $0 included, unless a filter on its dimension leaves it out.
        if depth == 1 and dims[0] in UNALLOCATED_DIMENSIONS and not request.filters.get(dims[0]):
            rows.setdefault((UNALLOCATED,), new_row(1, {dims[0]: UNALLOCATED}, "unallocated"))
        if levels:
            size = len(_level_labels(dims, depth - 1))
            for key, row in rows.items():
                parent = levels[-1].get(key[:size])
                if parent is None:
                    raise ReportCheckError(
                        f"row {row.labels} has no parent row at level {depth - 1}: the data disagree"
                    )
                parent.children.append(row)
        levels.append(rows)
    return levels


def _summary_row(
    name: str, kind: str, key: str, plan: Plan, results: Mapping[tuple, list[Sample]], columns: Sequence[Column]
) -> Row:
    """Idle, total or memo: one figure per column from the plan's ``key`` queries."""
    row = Row(name, kind, {"project": IDLE} if key == "idle" else {}, Figure(0.0, "", columns[0].window.at))
    for column in columns:
        query = plan.queries[(key, column.name)]
        _set(row, column, _value(results[(key, column.name)], query), query)
    return row


def _check_sums(
    shape: _Shape,
    request: ReportRequest,
    plan: Plan,
    results: Mapping[tuple, list[Sample]],
    columns: Sequence[Column],
    levels: Sequence[Mapping[tuple[str, ...], Row]],
    top_rows: Sequence[Row],
    total: Row,
) -> None:
    """Every column, before anything is folded or printed."""
    for column in columns:
        parts = sum(_get(row, column.name) for row in top_rows)
        _check(f"the rows ({column.name})", parts, _get(total, column.name), plan.queries[("total", column.name)])
        for rows in levels[:-1]:
            for row in rows.values():
                children = sum(_get(child, column.name) for child in row.children)
                what = f"the rows under {row.labels} ({column.name})"
                _check(what, children, _get(row, column.name), _get_query(row, column.name))
        if ("cluster", column.name) not in plan.queries:
            continue
        cluster_query = plan.queries[("cluster", column.name)]
        cluster = _value(results[("cluster", column.name)], cluster_query)
        # Spend the counters held before Prometheus first saw them is counted by neither family's
        # increase() in full, and by each to a different extent: allow that much on top.
        born = _value(results[("born", column.name)], plan.queries[("born", column.name)])
        tolerance = {"rel_tol": request.tolerance_percent / 100, "abs_tol": 0.005 + born}
        subject = "the jobs plus idle" if shape.family is JOB else "the nodes"
        _check(
            f"{subject} ({column.name})",
            _get(total, column.name),
            cluster,
            cluster_query,
            tolerance,
            "the cluster total of the allocation counters",
        )


def _notes(shape: _Shape, results: Mapping[tuple, list[Sample]]) -> list[str]:
    notes = []
    if shape.family.idle_rows and not shape.idle_row:
        notes.append("idle spend is not shown: the filters select jobs, and idle capacity belongs to no job")
    if shape.family is NODE:
        notes.append("node rows include the capacity no job held; the memo row shows how much of it was idle")
    restarts = max((sample.value for sample in results[("resets", "spend")]), default=0.0)
    if restarts:
        notes.append(
            f"the spend counters went back to zero {restarts:.0f} time(s) in this period (an exporter restart that "
            "lost cost.state_dir); increase() counts on from zero, so only the spend between the last scrape before "
            "the restart and the restart itself is missing. Keep cost.state_dir on a persistent disk"
        )
    return notes


def build_report(
    api: PrometheusApi,
    request: ReportRequest,
    generated_at: str,
    clock: Callable[[], float] = time.perf_counter,
) -> Report:
    started = clock()
    shape = _Shape.of(request)
    columns = report_columns(request)
    plan = _plan_queries(shape, request, columns)
    results = _run(api, plan, columns)
    levels = _levels(shape, request, plan, results, columns)
    top_rows = list(levels[0].values())
    if shape.idle_row:
        top_rows.append(_summary_row(IDLE, "idle", "idle", plan, results, columns))
    total = _summary_row("total", "total", "total", plan, results, columns)
    _check_sums(shape, request, plan, results, columns, levels, top_rows, total)
    memos = (
        [_summary_row("idle capacity (included above)", "memo", "idle", plan, results, columns)]
        if shape.memo_idle
        else []
    )
    interval = request.interval
    method = None
    if any(column.forecast for column in columns):
        method = (
            f"run-rate: spend to date + mean spend rate over the last {request.forecast_window_text} x the time "
            f"left until the period ends ({interval.calendar_end - interval.end} s)"
        )
    return Report(
        dimensions=request.dimensions,
        family=shape.family.name,
        filters={name: list(values) for name, values in request.filters.items()},
        selector=list(request.selector),
        timezone=request.timezone,
        interval=interval,
        compare=request.compare,
        forecast_method=method,
        source=api.url,
        generated_at=generated_at,
        rows=arrange(top_rows, request.top, plan, shape.items, columns, request.dimensions),
        total=total,
        memos=memos,
        notes=_notes(shape, results),
        query_seconds=clock() - started,
        queries_run=len(plan.queries),
    )


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
