"""A resource's usage over time, from the storage level that fits the range, in buckets.

Three levels hold usage history:

=======  ===========================================  ======================================
source   rows                                         kept
=======  ===========================================  ======================================
raw      ``usage_metrics``, one row per reading        ``retention_days`` (monthly partitions)
hourly   ``usage_aggregates`` ``hour`` (UTC hours)     forever
daily    ``usage_aggregates`` ``day`` (billing days)   forever
=======  ===========================================  ======================================

:func:`plan` picks the level: raw for a range of up to two days whose buckets
are shorter than an hour (and that retention has not dropped), daily when a
bucket spans at least a day or the range is longer than :data:`HOURLY_MAX`,
else hourly. The buckets of an aggregate level are whole hours (whole days),
so the range is widened to the level's boundaries and every stored row falls
in exactly one bucket: a bucket's figure is exact, never prorated.

A reading belongs to the bucket its interval ends in (as in the aggregates).
A bucket's ``baseValue`` is the exact sum of the base units of its readings
for a ``delta`` resource, and the highest level seen in it for a ``level``
resource (storage, memory), whose readings are not quantities to add up.
Buckets without readings are left out (unknown is not zero).
"""

from __future__ import annotations

import datetime as dt
import math
from typing import Any, Final, Literal
from zoneinfo import ZoneInfo

import msgspec

from protocol import RESOURCE_BASE_UNIT

from .._exceptions import NotFoundError, storage_errors
from ..alerts.records import display_unit, to_unit
from .provision import Executor

__all__ = [
    "HOURLY_MAX",
    "MAX_POINTS",
    "RAW_MAX",
    "HistoryPlan",
    "HistoryPoint",
    "UsageHistory",
    "plan",
    "usage_history",
]

Source = Literal["raw", "hourly", "daily"]

#: the most buckets a series may be asked for
MAX_POINTS: Final = 5000
#: the longest range served from raw rows
RAW_MAX: Final = dt.timedelta(days=2)
#: the longest range served from hourly rows (longer: daily)
HOURLY_MAX: Final = dt.timedelta(days=92)
_HOUR: Final = dt.timedelta(hours=1)
_DAY: Final = dt.timedelta(days=1)


class HistoryPoint(msgspec.Struct, frozen=True, rename="camel"):
    """One bucket: its start, its figure in the catalog unit and in base units."""

    t: dt.datetime
    value: str
    base_value: int


class UsageHistory(msgspec.Struct, frozen=True, rename="camel"):
    """A resource's usage series with what a chart draws beside it."""

    customer_id: str
    resource_key: str
    #: the unit of ``value`` (the catalog's, when resmon converts to it exactly)
    unit: str
    #: the unit of ``baseValue`` and ``limit``: byte, request, millisecond
    base_unit: str
    #: delta: ``baseValue`` is the bucket's sum; level: the bucket's highest level
    kind: str
    from_: dt.datetime = msgspec.field(name="from")
    to: dt.datetime
    step_seconds: int
    source: Source
    #: the resource's limit per billing period in base units (None: unlimited)
    limit: int | None
    limit_in_unit: str | None
    #: percentages of ``limit``
    warning_threshold: str
    critical_threshold: str
    points: list[HistoryPoint]


class HistoryPlan(msgspec.Struct, frozen=True):
    """Where a series is read from: the level, the (widened) range, the bucket width."""

    source: Source
    start: dt.datetime
    end: dt.datetime
    step: dt.timedelta

    @property
    def buckets(self) -> int:
        return math.ceil((self.end - self.start) / self.step)


def _ceil_to(when: dt.datetime, floor: dt.datetime, unit: dt.timedelta) -> dt.datetime:
    """The first ``floor + n * unit`` at or after ``when``."""
    return floor + math.ceil((when - floor) / unit) * unit


def _local_midnight(day: dt.date, tz: ZoneInfo) -> dt.datetime:
    return dt.datetime(day.year, day.month, day.day, tzinfo=tz).astimezone(dt.UTC)


def plan(
    start: dt.datetime,
    end: dt.datetime,
    points: int,
    *,
    tz: ZoneInfo,
    raw_horizon: dt.datetime,
) -> HistoryPlan:
    """The level and buckets for ``[start, end)`` in at most ``points`` buckets.

    ``raw_horizon``: raw rows before it may have been dropped by retention.
    ``tz``: the billing time zone the daily aggregates' days are in.
    """
    if not start < end:
        raise ValueError("the range is empty: from must be before to")
    if not 1 <= points <= MAX_POINTS:
        raise ValueError(f"points must be 1-{MAX_POINTS}")
    span = end - start
    needed = span / points
    if span <= RAW_MAX and needed < _HOUR and start >= raw_horizon:
        ms = math.ceil(span / dt.timedelta(milliseconds=1) / points)
        step = dt.timedelta(seconds=max(1, math.ceil(ms / 1000)))
        return HistoryPlan("raw", start, end, step)
    if needed < _DAY and span <= HOURLY_MAX:
        first = start.astimezone(dt.UTC).replace(minute=0, second=0, microsecond=0)
        last = _ceil_to(end, first, _HOUR)
        hours = round((last - first) / _HOUR)
        return HistoryPlan("hourly", first, last, math.ceil(hours / points) * _HOUR)
    first_day = start.astimezone(tz).date()
    last_day = end.astimezone(tz).date()
    if _local_midnight(last_day, tz) < end:
        last_day += _DAY
    days = (last_day - first_day).days
    step = math.ceil(days / points) * _DAY
    return HistoryPlan("daily", _local_midnight(first_day, tz), _local_midnight(last_day, tz), step)


_RESOURCE: Final = """
SELECT cr.id, cr.resource_key, cr.customer_id, cr.kind, cr.limit_value,
       cr.warning_threshold, cr.critical_threshold, rc.resource_type, rc.unit AS catalog_unit
FROM customer_resources cr JOIN resource_catalogs rc ON rc.id = cr.resource_catalog_id
WHERE cr.resource_key = $1 AND cr.customer_id = $2"""

#: $1 resource id, $2 start, $3 end, $4 step in seconds; bucket i starts at $2 + i * $4
_RAW: Final = """
SELECT floor(extract(epoch FROM m.metric_timestamp - $2::timestamptz) / $4)::bigint AS i,
       sum(m.metric_value) AS total, max(m.metric_value) AS peak
FROM usage_metrics m
WHERE m.customer_resource_id = $1 AND m.metric_timestamp >= $2 AND m.metric_timestamp < $3
GROUP BY 1 ORDER BY 1"""

_HOURLY: Final = """
SELECT floor(extract(epoch FROM a.period_start - $2::timestamptz) / $4)::bigint AS i,
       sum(a.total_usage) AS total, max(a.max_usage) AS peak
FROM usage_aggregates a
WHERE a.customer_resource_id = $1 AND a.period_type = 'hour'
  AND a.period_start >= $2 AND a.period_start < $3
GROUP BY 1 ORDER BY 1"""

#: days counted in the billing zone $5 from the first day ($2's), $4 days a bucket
_DAILY: Final = """
SELECT (((a.period_start AT TIME ZONE $5)::date - ($2::timestamptz AT TIME ZONE $5)::date)
        / ($4::bigint / 86400))::bigint AS i,
       sum(a.total_usage) AS total, max(a.max_usage) AS peak
FROM usage_aggregates a
WHERE a.customer_resource_id = $1 AND a.period_type = 'day'
  AND a.period_start >= $2 AND a.period_start < $3
GROUP BY 1 ORDER BY 1"""

_QUERIES: Final = {"raw": _RAW, "hourly": _HOURLY, "daily": _DAILY}


def _bucket_start(p: HistoryPlan, i: int, tz: ZoneInfo) -> dt.datetime:
    if p.source != "daily":
        return p.start + i * p.step
    day = p.start.astimezone(tz).date() + i * p.step
    return _local_midnight(day, tz)


async def usage_history(
    db: Executor, customer_id: str, resource_key: str, p: HistoryPlan, *, tz: ZoneInfo
) -> UsageHistory:
    """The series of ``resource_key`` (of ``customer_id``) as planned by :func:`plan`.

    NotFoundError when the customer has no such resource.
    """
    with storage_errors():
        resource = await db.fetchrow(_RESOURCE, resource_key, customer_id)
        if resource is None:
            raise NotFoundError(f"resource {resource_key!r} of customer {customer_id!r} not found")
        rows = await db.fetch(
            _QUERIES[p.source],
            resource["id"],
            p.start,
            p.end,
            int(p.step.total_seconds()),
            *((tz.key,) if p.source == "daily" else ()),
        )
    base = RESOURCE_BASE_UNIT.get(resource["resource_type"], "byte")
    unit = display_unit(resource["catalog_unit"], base)
    level = resource["kind"] == "level"
    limit = resource["limit_value"]
    return UsageHistory(
        customer_id=customer_id,
        resource_key=resource_key,
        unit=unit,
        base_unit=base,
        kind=resource["kind"],
        from_=p.start,
        to=p.end,
        step_seconds=int(p.step.total_seconds()),
        source=p.source,
        limit=limit,
        limit_in_unit=_in_unit(limit, unit) if limit is not None else None,
        warning_threshold=_percent(resource["warning_threshold"]),
        critical_threshold=_percent(resource["critical_threshold"]),
        points=[_point(p, row, unit, level, tz) for row in rows],
    )


def _point(p: HistoryPlan, row: Any, unit: str, level: bool, tz: ZoneInfo) -> HistoryPoint:
    value = int(row["peak"] if level else row["total"])
    return HistoryPoint(_bucket_start(p, int(row["i"]), tz), _in_unit(value, unit), value)


def _in_unit(value: int, unit: str) -> str:
    return format(to_unit(value, unit), "f")


def _percent(value: Any) -> str:
    return format(value, "f")
