"""The queries of one report: its request, its columns (spend, previous, forecast), and the plan that
names every query so results can be found again after running them together."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from raylens.report.periods import Interval
from raylens.report.queries import NODE, Selection, Window, forecast_query, spend_query


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


class Plan:
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


def report_columns(request: ReportRequest) -> list[Column]:
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


def evaluation_time(key: tuple, columns: Sequence[Column]) -> int:
    name = key[-1]
    return next(column.window.at for column in columns if column.name == name)
