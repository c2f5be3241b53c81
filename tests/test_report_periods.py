"""Report periods: calendar boundaries in the report's time zone, tiling, comparisons, and bad input."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from raylens.report.periods import PeriodError, parse_compare, parse_period

ZONES = ["UTC", "Europe/Berlin", "America/New_York", "Australia/Lord_Howe", "Asia/Kolkata", "Pacific/Apia"]
instants = st.integers(min_value=1_600_000_000, max_value=2_100_000_000)
zones = st.sampled_from(ZONES).map(ZoneInfo)


def local(timestamp: int, zone: ZoneInfo) -> datetime:
    return datetime.fromtimestamp(timestamp, zone)


@settings(max_examples=300, deadline=None)
@given(now=instants, zone=zones)
def test_this_and_last_month_begin_at_local_midnight_of_the_first_and_meet(now: int, zone: ZoneInfo) -> None:
    this = parse_period("this-month", now, zone)
    last = parse_period("last-month", now, zone)
    assert this.start <= now == this.end <= this.calendar_end
    assert last.calendar_end == last.end == this.start
    for interval in (this, last):
        start = local(interval.start, zone)
        assert start.day == 1 and (start.hour, start.minute) in ((0, 0), (1, 0))  # 01:00 where DST skipped midnight
    assert 27 * 86400 < last.seconds < 32 * 86400


@settings(max_examples=200, deadline=None)
@given(year=st.integers(2021, 2035), month=st.integers(1, 12), zone=zones)
def test_months_tile_without_gap_or_overlap(year: int, month: int, zone: ZoneInfo) -> None:
    now = 2_200_000_000
    first = parse_period(f"{year}-{month:02d}", now, zone)
    following = date(year + month // 12, month % 12 + 1, 1)
    second = parse_period(f"{following:%Y-%m}", now, zone)
    assert first.end == second.start and not first.running
    days = (following - date(year, month, 1)).days
    assert abs(first.seconds - days * 86400) <= 3600  # a DST change moves the end by at most an hour


@settings(max_examples=200, deadline=None)
@given(now=instants, zone=zones)
def test_weeks_start_on_monday_and_previous_covers_the_same_elapsed_time(now: int, zone: ZoneInfo) -> None:
    week = parse_period("this-week", now, zone)
    assert local(week.start, zone).weekday() == 0
    previous = parse_compare("previous", week, now, zone)
    assert previous.calendar_end == week.start
    assert abs(previous.seconds - week.seconds) <= 3600


def test_a_date_range_includes_its_last_day_and_same_last_year_shifts_dates() -> None:
    zone = ZoneInfo("Europe/Berlin")
    now = int(datetime(2026, 7, 1, tzinfo=zone).timestamp())
    interval = parse_period("2026-06-01..2026-06-03", now, zone)
    assert local(interval.end, zone) == datetime(2026, 6, 4, tzinfo=zone)
    assert interval.seconds == 3 * 86400
    last_year = parse_compare("same-last-year", interval, now, zone)
    assert local(last_year.start, zone) == datetime(2025, 6, 1, tzinfo=zone)
    leap = parse_period("2024-02-29", now, zone)
    assert local(parse_compare("same-last-year", leap, now, zone).start, zone).date() == date(2023, 2, 28)


def test_a_running_month_is_compared_with_the_same_part_of_the_previous_one() -> None:
    zone = ZoneInfo("UTC")
    now = int(datetime(2026, 3, 31, 12, tzinfo=zone).timestamp())
    march = parse_period("this-month", now, zone)
    february = parse_compare("previous", march, now, zone)
    assert local(february.start, zone) == datetime(2026, 2, 1, tzinfo=zone)
    assert february.end == february.calendar_end  # February is shorter than 30.5 days: all of it
    now = int(datetime(2026, 3, 10, 6, tzinfo=zone).timestamp())
    assert local(parse_compare("previous", parse_period("this-month", now, zone), now, zone).end, zone) == datetime(
        2026, 2, 10, 6, tzinfo=zone
    )


@settings(max_examples=300, deadline=None)
@given(text=st.text(max_size=30))
def test_any_text_is_a_period_or_a_period_error(text: str) -> None:
    zone, now = ZoneInfo("UTC"), 1_800_000_000
    try:
        interval = parse_period(text, now, zone)
    except PeriodError:
        return
    assert interval.start < interval.end <= now


@pytest.mark.parametrize("text", ["2026-02-30", "2026-00", "today..", "..2026-01-01", "2026-06-01..x"])
def test_impossible_dates_are_period_errors(text: str) -> None:
    with pytest.raises(PeriodError):
        parse_period(text, 1_800_000_000 + 86400 * 400, ZoneInfo("UTC"))


def test_yesterday_and_today() -> None:
    zone = ZoneInfo("Asia/Kolkata")
    now = int(datetime(2026, 6, 5, 3, tzinfo=zone).timestamp())
    today, yesterday = parse_period("today", now, zone), parse_period("yesterday", now, zone)
    assert yesterday.end == today.start and local(yesterday.start, zone).date() == date(2026, 6, 4)
    assert today.seconds == 3 * 3600 and timedelta(seconds=yesterday.seconds) == timedelta(days=1)


@settings(max_examples=300, deadline=None)
@given(values=st.lists(st.text(min_size=1, max_size=12), min_size=1, max_size=4, unique=True))
def test_filter_values_become_matchers_that_match_exactly_them(values: list[str]) -> None:
    """`--project 'a.b|c'` must select that project only, never a regex of it (Prometheus anchors regexes)."""
    import json
    import re

    from raylens.report.queries import matcher

    text = matcher("project", values)
    label, operator, quoted = re.fullmatch(r'(\w+)(=~|=)(".*")', text, re.DOTALL).groups()  # type: ignore[union-attr]
    literal = json.loads(quoted)  # PromQL double-quoted strings escape like JSON for \\ and \"
    assert label == "project"
    if operator == "=":
        assert [literal] == values
    else:
        assert all(re.fullmatch(literal, value) for value in values)
        assert not re.fullmatch(literal, values[0] + "x") or (values[0] + "x") in values
