"""Report periods (``--period``) and comparison periods (``--compare``) as exact Unix-second intervals.

Calendar periods begin at midnight in the report's time zone (``reports.timezone``, else
``cost.timezone``), weeks on Monday, so a June report in Europe/Berlin runs from 2026-05-31T22:00Z to
2026-06-30T22:00Z and a month with a DST change is 743 or 745 hours long. A period still running
stops at "now" and knows its calendar end, for the forecast.

Accepted: ``this-month``, ``last-month``, ``this-week``, ``last-week``, ``today``, ``yesterday``,
``YYYY-MM``, ``YYYY-MM-DD`` (one day), ``FROM..TO`` and ``FROM..`` (until now). ``FROM`` and ``TO``
are dates or ISO date-times (``2026-06-01T08:00``, local unless they carry an offset); a date as
``TO`` includes that whole day.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from raylens.cost.periods import period_end, period_start

RELATIVE = ("this-month", "last-month", "this-week", "last-week", "today", "yesterday")
COMPARE_KEYWORDS = ("previous", "same-last-year")
_MONTH = re.compile(r"^(\d{4})-(\d{2})$")
_DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")


class PeriodError(ValueError):
    """A period the user wrote that cannot be read; ``str()`` says what is accepted."""


@dataclass(frozen=True)
class Interval:
    """``[start, end)`` in Unix seconds (whole seconds); ``calendar_end`` > ``end`` while it is still running."""

    start: int
    end: int
    calendar_end: int
    kind: str  # month, week, day or range
    label: str  # for file names: 2026-06, 2026-W23, 2026-06-01, 2026-06-01..2026-06-15
    title: str  # for people: June 2026, week 23 of 2026, ...

    @property
    def seconds(self) -> int:
        return self.end - self.start

    @property
    def running(self) -> bool:
        return self.calendar_end > self.end

    def as_dict(self, zone: ZoneInfo) -> dict[str, object]:
        def local(timestamp: int) -> str:
            return datetime.fromtimestamp(timestamp, zone).isoformat()

        return {
            "label": self.label,
            "title": self.title,
            "kind": self.kind,
            "start": local(self.start),
            "end": local(self.end),
            "calendar_end": local(self.calendar_end),
            "start_unix": self.start,
            "end_unix": self.end,
            "calendar_end_unix": self.calendar_end,
            "running": self.running,
        }


def _date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise PeriodError(f"no such date: {text!r}") from None


def _midnight(day: date, zone: ZoneInfo) -> int:
    return int(period_start("day", datetime(day.year, day.month, day.day, 12, tzinfo=zone).timestamp(), zone))


def _calendar(kind: str, instant: float, zone: ZoneInfo) -> tuple[int, int]:
    start = int(period_start(kind, instant, zone))
    return start, int(period_end(kind, start, zone))


def _labels(kind: str, start: int, zone: ZoneInfo) -> tuple[str, str]:
    first = datetime.fromtimestamp(start, zone)
    if kind == "month":
        return first.strftime("%Y-%m"), first.strftime("%B %Y")
    if kind == "week":
        year, week, _ = first.isocalendar()
        return f"{year}-W{week:02d}", f"week {week} of {year} (from {first:%a %d %b})"
    return first.strftime("%Y-%m-%d"), first.strftime("%a %d %B %Y")


def _calendar_interval(kind: str, instant: float, now: int, zone: ZoneInfo) -> Interval:
    start, end = _calendar(kind, instant, zone)
    label, title = _labels(kind, start, zone)
    return _cut(Interval(start, end, end, kind, label, title), now)


def _cut(interval: Interval, now: int) -> Interval:
    if interval.start >= now:
        raise PeriodError(f"{interval.label} has not begun yet (it starts after now)")
    if interval.end > now:
        return replace(interval, end=now, title=f"{interval.title}, to date")
    return interval


def _parse_point(text: str, zone: ZoneInfo, is_end: bool) -> int:
    if _DAY.match(text):
        day = _date(text)
        return _midnight(day + timedelta(days=1), zone) if is_end else _midnight(day, zone)
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise PeriodError(f"expected a date (2026-06-01) or date-time (2026-06-01T08:00), got {text!r}") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=zone)
    return math.floor(moment.timestamp())


def _range(text: str, now: int, zone: ZoneInfo) -> Interval:
    first, _, last = text.partition("..")
    start = _parse_point(first, zone, is_end=False)
    end = _parse_point(last, zone, is_end=True) if last else now
    if end <= start:
        raise PeriodError(f"{text!r} ends before it starts")
    label = f"{first}..{last or 'now'}"
    return _cut(Interval(start, end, end, "range", label, label.replace("..", " to ")), now)


def parse_period(text: str, now: int, zone: ZoneInfo) -> Interval:
    """The interval ``--period`` names, cut at ``now``; ``PeriodError`` with the accepted forms."""
    text = text.strip()
    if text == "this-month":
        return _calendar_interval("month", now, now, zone)
    if text == "last-month":
        return _calendar_interval("month", _calendar("month", now, zone)[0] - 1, now, zone)
    if text == "this-week":
        return _calendar_interval("week", now, now, zone)
    if text == "last-week":
        return _calendar_interval("week", _calendar("week", now, zone)[0] - 1, now, zone)
    if text == "today":
        return _calendar_interval("day", now, now, zone)
    if text == "yesterday":
        return _calendar_interval("day", _calendar("day", now, zone)[0] - 1, now, zone)
    month = _MONTH.match(text)
    if month:
        year, number = int(month.group(1)), int(month.group(2))
        if not 1 <= number <= 12:
            raise PeriodError(f"no month {number} in {text!r}")
        return _calendar_interval("month", _midnight(date(year, number, 1), zone), now, zone)
    if _DAY.match(text):
        return _calendar_interval("day", _midnight(_date(text), zone), now, zone)
    if ".." in text:
        return _range(text, now, zone)
    raise PeriodError(
        f"unknown period {text!r}: expected {', '.join(RELATIVE)}, YYYY-MM, YYYY-MM-DD, FROM..TO or FROM.."
    )


def range_label(start: int, end: int, zone: ZoneInfo) -> str:
    """``2026-05-29..2026-05-31`` for whole days (the end day included), else local date-times."""
    first, last = datetime.fromtimestamp(start, zone), datetime.fromtimestamp(end, zone)
    if first.time() == last.time() == datetime.min.time():
        return f"{first:%Y-%m-%d}..{datetime.fromtimestamp(end - 1, zone):%Y-%m-%d}"
    return f"{first:%Y-%m-%dT%H:%M}..{last:%Y-%m-%dT%H:%M}"


def _shift_year(timestamp: int, zone: ZoneInfo) -> int:
    moment = datetime.fromtimestamp(timestamp, zone)
    try:
        earlier = moment.replace(year=moment.year - 1)
    except ValueError:  # 29 February
        earlier = moment.replace(year=moment.year - 1, day=28)
    return math.floor(earlier.timestamp())


def parse_compare(text: str, current: Interval, now: int, zone: ZoneInfo) -> Interval:
    """The interval ``--compare`` names for ``current``.

    ``previous``: the calendar period before (a running period is compared with the same elapsed time
    of the previous one, so "June to date" meets "May up to the same day and hour"); for a range, the
    same length just before it. ``same-last-year``: the same dates a year earlier. ``FROM..TO``: as given.
    """
    text = text.strip()
    if text == "previous":
        if current.kind == "range":
            start = current.start - current.seconds
            label = range_label(start, current.start, zone)
            return Interval(start, current.start, current.start, "range", label, f"the same length before ({label})")
        begins, ends = _calendar(current.kind, current.start - 1, zone)
        label, title = _labels(current.kind, begins, zone)
        end = min(ends, begins + current.seconds) if current.running else ends
        return Interval(begins, end, ends, current.kind, label, title + (", same part" if end < ends else ""))
    if text == "same-last-year":
        start, end = _shift_year(current.start, zone), _shift_year(current.end, zone)
        calendar_end = _shift_year(current.calendar_end, zone)
        if current.kind == "range":
            label = range_label(start, end, zone)
            title = f"a year earlier ({label})"
        else:
            label, title = _labels(current.kind, start, zone)
        return Interval(start, end, calendar_end, current.kind, label, title)
    if ".." in text:
        return _range(text, now, zone)
    raise PeriodError(f"unknown comparison {text!r}: expected previous, same-last-year or FROM..TO")
