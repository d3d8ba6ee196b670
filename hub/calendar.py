"""Months: how the hub numbers them, where they start, and in which time zone.

A month is one int, ``year * 12 + month - 1`` (November 2025 is
``2025 * 12 + 10``), so "the next month" is ``+ 1`` and months compare as
numbers. Two calendars use that numbering and must not be mixed up:

- **billing months**, in the billing time zone (``RESMON_BILLING_TZ``): a
  resource's period total, its forecast horizon, the ``month`` aggregates and
  the API's "this month" (computed in SQL with the same zone by
  :mod:`hub.storage.queries`). A reading belongs to the billing month its
  interval *ends* in.
- **storage months**, always UTC: the monthly partitions of
  ``usage_metrics`` and ``processed_events`` and the retention that drops
  them (:mod:`hub.storage.partitions`), so a change of billing time zone
  never moves a stored row.

Everything here is pure date arithmetic (no I/O) on ``zoneinfo`` zones.
"""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

__all__ = [
    "UTC",
    "first_day",
    "month_bounds_ms",
    "month_number",
    "month_of",
    "month_of_date",
    "month_start",
    "next_first_day",
    "yyyymm",
]

UTC = ZoneInfo("UTC")


def month_number(year: int, month: int) -> int:
    """Month ``month`` (1-12) of ``year`` as the hub numbers months."""
    return year * 12 + month - 1


def month_of(ms: int, tz: dt.tzinfo) -> int:
    """The month instant ``ms`` (epoch milliseconds) falls in, in time zone ``tz``."""
    when = dt.datetime.fromtimestamp(ms / 1000, tz=tz)
    return when.year * 12 + when.month - 1


def month_of_date(day: dt.date) -> int:
    """The month calendar day ``day`` falls in."""
    return day.year * 12 + day.month - 1


def first_day(month: int) -> dt.date:
    """The first calendar day of ``month``."""
    return dt.date(month // 12, month % 12 + 1, 1)


def next_first_day(day: dt.date) -> dt.date:
    """The first day of the month after the one ``day`` falls in."""
    return first_day(month_of_date(day) + 1)


def month_start(month: int, tz: dt.tzinfo) -> dt.datetime:
    """Midnight starting ``month`` in time zone ``tz``."""
    return dt.datetime(month // 12, month % 12 + 1, 1, tzinfo=tz)


def month_bounds_ms(month: int, tz: dt.tzinfo) -> tuple[int, int]:
    """Start and end of ``month`` in ``tz`` as epoch milliseconds (end exclusive)."""
    start = month_start(month, tz)
    end = month_start(month + 1, tz)
    return int(start.timestamp() * 1000), int(end.timestamp() * 1000)


def yyyymm(month: int) -> str:
    """``month`` as ``YYYYMM`` (partition names)."""
    return f"{month // 12:04d}{month % 12 + 1:02d}"
