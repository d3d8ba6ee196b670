"""hub.calendar: one month numbering, billing months in their zone, storage months in UTC."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

from hypothesis import given
from hypothesis import strategies as st

from hub.calendar import (
    UTC,
    first_day,
    month_bounds_ms,
    month_number,
    month_of,
    month_of_date,
    next_first_day,
    yyyymm,
)

BERLIN = ZoneInfo("Europe/Berlin")


def _ms(*args: int, tz: dt.tzinfo = UTC) -> int:
    return int(dt.datetime(*args, tzinfo=tz).timestamp() * 1000)


def test_one_instant_is_in_different_months_in_different_zones() -> None:
    # 23:30 UTC on 31 October is already November in Berlin
    ms = _ms(2026, 10, 31, 23, 30)
    assert month_of(ms, UTC) == month_number(2026, 10)
    assert month_of(ms, BERLIN) == month_number(2026, 11)


def test_a_billing_month_spans_its_zones_midnights_across_a_dst_change() -> None:
    start, end = month_bounds_ms(month_number(2026, 10), BERLIN)
    assert start == _ms(2026, 10, 1, tz=BERLIN) == _ms(2026, 9, 30, 22)  # UTC+2
    assert end == _ms(2026, 11, 1, tz=BERLIN) == _ms(2026, 10, 31, 23)  # UTC+1 after the change
    # 31 days and the hour the clocks went back
    assert end - start == (31 * 24 + 1) * 3_600_000


def test_december_is_followed_by_january_of_the_next_year() -> None:
    dec = month_number(2026, 12)
    assert first_day(dec + 1) == dt.date(2027, 1, 1)
    assert next_first_day(dt.date(2026, 12, 31)) == dt.date(2027, 1, 1)
    assert yyyymm(dec) == "202612"
    assert yyyymm(dec + 1) == "202701"


@given(st.dates(min_value=dt.date(1971, 1, 1), max_value=dt.date(2200, 12, 31)))
def test_every_day_lies_inside_its_month(day: dt.date) -> None:
    month = month_of_date(day)
    assert first_day(month) <= day < next_first_day(day) == first_day(month + 1)
    start, end = month_bounds_ms(month, UTC)
    noon = _ms(day.year, day.month, day.day, 12)
    assert start <= noon < end
    assert month_of(noon, UTC) == month
