"""Calendar periods (day, week, month) in a time zone, as Unix timestamps.

PromQL cannot express calendar months (its ranges are fixed durations and its time functions are UTC),
so the exporter cuts spend at period boundaries itself. Weeks start on Monday (ISO 8601).
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

PERIODS = ("day", "week", "month")


def _midnight(day: date, zone: ZoneInfo) -> float:
    return datetime.combine(day, time(0), tzinfo=zone).timestamp()


def _first_day(period: str, day: date) -> date:
    if period == "day":
        return day
    if period == "week":
        return day - timedelta(days=day.weekday())
    if period == "month":
        return day.replace(day=1)
    raise ValueError(f"unknown period {period!r}")


def _next_first_day(period: str, first: date) -> date:
    if period == "day":
        return first + timedelta(days=1)
    if period == "week":
        return first + timedelta(days=7)
    return (first.replace(day=28) + timedelta(days=4)).replace(day=1)


def period_start(period: str, timestamp: float, zone: ZoneInfo) -> float:
    """Start of the period containing ``timestamp``."""
    day = datetime.fromtimestamp(timestamp, zone).date()
    start = _midnight(_first_day(period, day), zone)
    if start > timestamp:  # a midnight that DST skipped resolves after the instant asked about
        start = _midnight(_first_day(period, day - timedelta(days=1)), zone)
    return start


def period_end(period: str, timestamp: float, zone: ZoneInfo) -> float:
    """End (exclusive) of the period containing ``timestamp``: the next period's start."""
    day = datetime.fromtimestamp(period_start(period, timestamp, zone), zone).date()
    return _midnight(_next_first_day(period, _first_day(period, day)), zone)


def boundaries(periods: tuple[str, ...], start: float, end: float, zone: ZoneInfo) -> list[tuple[float, str]]:
    """Period starts in (start, end], sorted, each with the period it begins."""
    found = []
    for period in periods:
        boundary = period_end(period, start, zone)
        while boundary <= end:
            found.append((boundary, period))
            boundary = period_end(period, boundary, zone)
    return sorted(found)
