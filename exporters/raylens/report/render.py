"""A report as a terminal table, CSV, Markdown or JSON (schema: schemas/report.schema.json).

CSV is for spreadsheets: one header row, one row per report row (``row`` says item, idle,
unallocated, other, subtotal or total, so a filter on ``row=item`` never double counts), plain
numbers in US dollars with a dot and six decimals, no currency signs or thousands separators.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from raylens.report.model import FORMAT_VERSION, Report, Row
from raylens.report.queries import DIMENSION_LABELS

FORMATS = ("table", "csv", "json", "markdown")
DIMENSION_TITLES = {
    "org": "Organisation",
    "cloud": "Cloud",
    "project": "Project",
    "team": "Team",
    "user": "User",
    "job": "Job",
    "workload": "Workload",
    "instance_type": "Instance type",
    "cluster": "Cluster",
    "market": "Market",
    "cost_kind": "Cost kind",
}


def money(value: float | None) -> str:
    if value is None:
        return ""
    sign = "-" if value < 0 else ""
    return f"{sign}${abs(value):,.2f}"


def signed_money(value: float | None) -> str:
    if value is None:
        return ""
    return ("+" if value >= 0 else "-") + f"${abs(value):,.2f}"


def percent(value: float | None, signed: bool = False) -> str:
    if value is None:
        return ""
    return f"{value * 100:+.1f}%" if signed else f"{value * 100:.1f}%"


def _share(row: Row, report: Report) -> float | None:
    return row.dollars / report.total.dollars if report.total.dollars else None


def _local(timestamp: int, zone: ZoneInfo) -> str:
    return datetime.fromtimestamp(timestamp, zone).strftime("%Y-%m-%d %H:%M %Z")


def title(report: Report) -> str:
    by = ", ".join(report.dimensions)
    return f"raylens cost report: {report.interval.title} ({report.timezone}), by {by}"


def _header_lines(report: Report) -> list[tuple[str, str]]:
    zone = ZoneInfo(report.timezone)
    interval = report.interval
    hours = interval.seconds / 3600
    lines = [("Period", f"{_local(interval.start, zone)} to {_local(interval.end, zone)} ({hours:,.1f} h)")]
    if report.compare is not None:
        compare = report.compare
        lines.append(
            ("Compared with", f"{compare.title}: {_local(compare.start, zone)} to {_local(compare.end, zone)}")
        )
    if report.forecast_method:
        lines.append(("Forecast", f"to {_local(interval.calendar_end, zone)}; {report.forecast_method}"))
    filters = [f"{name}={'|'.join(values)}" for name, values in sorted(report.filters.items())] + report.selector
    if filters:
        lines.append(("Filters", ", ".join(filters)))
    lines.append(("Source", f"{report.source} ({report.family} spend counters; US dollars)"))
    return lines


def _columns(report: Report) -> list[str]:
    columns = ["Spend", "Share"]
    if report.compare is not None:
        columns += [report.compare.label, "Change", "Change %"]
    if report.forecast_method:
        columns.append("Forecast")
    return columns


def _cells(row: Row, report: Report) -> list[str]:
    cells = [money(row.dollars), percent(_share(row, report))]
    if report.compare is not None:
        previous = row.previous.dollars if row.previous else None
        change = percent(row.delta_ratio, signed=True)
        if previous == 0 and row.dollars > 0:
            change = "new"
        cells += [money(previous), signed_money(row.delta), change]
    if report.forecast_method:
        cells.append(money(row.forecast.dollars if row.forecast else None))
    return cells


def _label(row: Row) -> str:
    label = row.name + (f" ({row.detail})" if row.detail else "")
    return "  " * row.level + label


def _printed_rows(report: Report) -> Iterator[Row]:
    yield from report.all_rows()


def render_table(report: Report, show_queries: bool = False) -> str:
    header = " / ".join(DIMENSION_TITLES[dimension] for dimension in report.dimensions)
    columns = _columns(report)
    body = [(_label(row), _cells(row, report)) for row in _printed_rows(report)]
    total = ("Total", _cells(report.total, report))
    memos = [(row.name, _cells(row, report)) for row in report.memos]
    width = max(len(header), *(len(label) for label, _ in [*body, total, *memos]))
    widths = [max(len(name), *(len(cells[i]) for _, cells in [*body, total, *memos])) for i, name in enumerate(columns)]

    def line(label: str, cells: list[str]) -> str:
        return "  ".join([label.ljust(width), *(cell.rjust(size) for cell, size in zip(cells, widths, strict=True))])

    out = [title(report), ""]
    out += [f"{name + ':':<15}{text}" for name, text in _header_lines(report)]
    out += ["", line(header, columns), "-" * len(line(header, columns))]
    out += [line(label, cells) for label, cells in body]
    out += ["-" * len(line(header, columns)), line(*total)]
    out += [line(label, cells) for label, cells in memos]
    out += [f"note: {note}" for note in report.notes]
    if show_queries:
        out += ["", *_query_lines(report)]
    return "\n".join(out) + "\n"


def _query_lines(report: Report) -> list[str]:
    lines = ["Queries (instant queries; each reproduces one figure, evaluated at the time after @):"]
    for row in [*_printed_rows(report), report.total, *report.memos]:
        name = "Total" if row.kind == "total" else _label(row).strip()
        for column in ("spend", "previous", "forecast"):
            figure = getattr(row, column)
            if figure is not None and figure.query:
                lines.append(f"  {name} [{column}]: {figure.query}")
    return lines


def _row_labels(report: Report) -> list[str]:
    return [label for dimension in report.dimensions for label in DIMENSION_LABELS[dimension]]


def render_csv(report: Report) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    labels = _row_labels(report) or ["org"]
    header = ["period", "period_start", "period_end", *labels, "row", "level", "spend_usd", "share"]
    if report.compare is not None:
        header += ["previous_usd", "change_usd", "change_ratio"]
    if report.forecast_method:
        header.append("forecast_usd")
    writer.writerow(header)
    zone = ZoneInfo(report.timezone)
    interval = report.interval
    bounds = [
        interval.label,
        datetime.fromtimestamp(interval.start, zone).isoformat(),
        datetime.fromtimestamp(interval.end, zone).isoformat(),
    ]

    def number(value: float | None) -> str:
        return "" if value is None else f"{value:.6f}"

    for row in [*_printed_rows(report), report.total, *report.memos]:
        kind = "subtotal" if row.children else row.kind
        values = [row.labels.get(label, "") for label in labels]
        if row.kind in ("idle", "memo"):
            values = [row.name if i == 0 else "" for i in range(len(labels))]
        share = _share(row, report)
        cells = [*bounds, *values, kind, str(row.level), number(row.dollars), number(share)]
        if report.compare is not None:
            cells += [
                number(row.previous.dollars if row.previous else None),
                number(row.delta),
                number(row.delta_ratio),
            ]
        if report.forecast_method:
            cells.append(number(row.forecast.dollars if row.forecast else None))
        writer.writerow(cells)
    return buffer.getvalue()


def render_markdown(report: Report, show_queries: bool = False) -> str:
    header = " / ".join(DIMENSION_TITLES[dimension] for dimension in report.dimensions)
    columns = _columns(report)
    out = [f"# {title(report)}", ""]
    out += [f"- **{name}:** {text}" for name, text in _header_lines(report)]
    out += ["", f"| {header} | " + " | ".join(columns) + " |", "|---|" + "---:|" * len(columns)]

    def escape(text: str) -> str:
        return text.replace("|", "\\|").replace("_", "\\_")

    for row in _printed_rows(report):
        name = escape(row.name + (f" ({row.detail})" if row.detail else ""))
        if row.level:
            name = "&nbsp;&nbsp;" * row.level + "└ " + name
        out.append(f"| {name} | " + " | ".join(_cells(row, report)) + " |")
    out.append(
        "| **Total** | " + " | ".join(f"**{cell}**" if cell else "" for cell in _cells(report.total, report)) + " |"
    )
    for row in report.memos:
        out.append(f"| _{escape(row.name)}_ | " + " | ".join(_cells(row, report)) + " |")
    out.append("")
    out += [f"Note: {note}." for note in report.notes]
    if show_queries:
        out += ["", "## Queries", "", "```promql"] + [line.strip() for line in _query_lines(report)[1:]] + ["```"]
    return "\n".join(out).rstrip("\n") + "\n"


def _row_dict(row: Row, report: Report) -> dict[str, Any]:
    return {
        "name": row.name,
        "kind": row.kind,
        "level": row.level,
        "labels": row.labels,
        "detail": row.detail,
        "spend": row.spend.as_dict(),
        "share": None if _share(row, report) is None else round(_share(row, report) or 0.0, 6),
        "previous": row.previous.as_dict() if row.previous else None,
        "change_dollars": None if row.delta is None else round(row.delta, 6),
        "change_ratio": None if row.delta_ratio is None else round(row.delta_ratio, 6),
        "forecast": row.forecast.as_dict() if row.forecast else None,
        "children": [_row_dict(child, report) for child in row.children],
    }


def report_dict(report: Report) -> dict[str, Any]:
    zone = ZoneInfo(report.timezone)
    return {
        "kind": "raylens.report",
        "format_version": FORMAT_VERSION,
        "generated_at": report.generated_at,
        "currency": "USD",
        "timezone": report.timezone,
        "dimensions": list(report.dimensions),
        "family": report.family,
        "filters": report.filters,
        "selector": report.selector,
        "source": report.source,
        "period": report.interval.as_dict(zone),
        "compare": report.compare.as_dict(zone) if report.compare else None,
        "forecast_method": report.forecast_method,
        "rows": [_row_dict(row, report) for row in report.rows],
        "total": _row_dict(report.total, report),
        "memos": [_row_dict(row, report) for row in report.memos],
        "notes": report.notes,
        "checks": {"rows_add_up": True, "children_add_up": True, "no_prometheus_warnings": True},
    }


def render_json(report: Report) -> str:
    return json.dumps(report_dict(report), indent=2, sort_keys=True) + "\n"


def render(report: Report, output_format: str, show_queries: bool = False) -> str:
    if output_format == "table":
        return render_table(report, show_queries)
    if output_format == "csv":
        return render_csv(report)
    if output_format == "markdown":
        return render_markdown(report, show_queries)
    if output_format == "json":
        return render_json(report)
    raise ValueError(f"unknown format {output_format!r}")
