"""``usage_aggregates``: hour / day / week / month buckets maintained in the batch transaction.

Each batch adds its readings to their buckets with one upsert (``sample_count``,
``total_usage`` exact integers; ``min``/``max`` by ``LEAST``/``GREATEST``;
``avg = total / count``) that also recomputes the bucket's ``cost`` from the
*whole* bucket total — ``round(total / unit_factor * cost_per_unit, 4)`` in
PostgreSQL ``numeric``, the price and factor stored on the row — so summing
rounded increments never drifts. A
gauge (storage, memory) gets avg/min/max and no cost (a level is not a
quantity consumed). Buckets: UTC hours; days, ISO weeks (Monday) and calendar
months in the billing time zone. A reading belongs to the bucket of its end.
Because the batch is deduplicated by event id before it gets here, a
replayed reading never counts twice.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from decimal import Decimal
from zoneinfo import ZoneInfo

import asyncpg  # type: ignore[import-untyped]

from protocol import UnitError, UsageReading, unit_factor

from ..calendar import next_first_day
from ._literals import array_literal

__all__ = ["AggregateInput", "Bucketer", "write_aggregates"]

_HOUR = 3_600_000
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_ONE_MS = dt.timedelta(milliseconds=1)

#: (resource_id, reading, catalog unit, cost_per_unit or None)
AggregateInput = tuple[str, UsageReading, str, str | None]


class Bucketer:
    """Bucket starts/ends of an instant, cached per UTC hour."""

    def __init__(self, tz: ZoneInfo) -> None:
        self._tz = tz
        self._cache: dict[int, tuple[tuple[str, dt.datetime, dt.datetime], ...]] = {}
        self._ms_cache: dict[int, tuple[tuple[str, int, int], ...]] = {}

    def buckets(self, ms: int) -> tuple[tuple[str, dt.datetime, dt.datetime], ...]:
        hour = ms // _HOUR
        got = self._cache.get(hour)
        if got is None:
            h0 = dt.datetime.fromtimestamp(hour * 3600, tz=dt.UTC)
            local = h0.astimezone(self._tz)
            day = local.replace(hour=0, minute=0, second=0, microsecond=0)
            d = day.date()
            week = d - dt.timedelta(days=d.weekday())
            month = d.replace(day=1)
            nxt = next_first_day(d)

            def at(date: dt.date) -> dt.datetime:
                return dt.datetime(date.year, date.month, date.day, tzinfo=self._tz)

            got = (
                ("hour", h0, h0 + dt.timedelta(hours=1)),
                ("day", at(d), at(d + dt.timedelta(days=1))),
                ("week", at(week), at(week + dt.timedelta(days=7))),
                ("month", at(month), at(nxt)),
            )
            if len(self._cache) > 10_000:
                self._cache.clear()
            self._cache[hour] = got
        return got

    def buckets_ms(self, ms: int) -> tuple[tuple[str, int, int], ...]:
        """:meth:`buckets` with the starts and ends as epoch milliseconds."""
        hour = ms // _HOUR
        got = self._ms_cache.get(hour)
        if got is None:
            got = tuple(
                (ptype, _epoch_ms(start), _epoch_ms(end)) for ptype, start, end in self.buckets(ms)
            )
            if len(self._ms_cache) > 10_000:
                self._ms_cache.clear()
            self._ms_cache[hour] = got
        return got


#: add each (resource, period, bucket) row of a batch to its bucket: an UPDATE joined on
#: the unique key for the buckets that exist (nearly all, after a bucket's first batch),
#: then an INSERT of the others — ON CONFLICT still, for a bucket another transaction
#: created meanwhile. Cheaper per row than INSERT .. ON CONFLICT DO UPDATE for every
#: row, which first attempts a speculative insert (and computes its defaults).
_UPSERT = """
WITH u AS (
    SELECT r, t, 'epoch'::timestamptz + s * interval '1 millisecond' AS s,
           'epoch'::timestamptz + e * interval '1 millisecond' AS e, mn, mx,
           tot, n, f, cpu, i
    FROM unnest($1::text::uuid[], $2::text::text[], $3::text::bigint[], $4::text::bigint[],
                $5::text::bigint[], $6::text::bigint[], $7::text::numeric[],
                $8::text::bigint[], $9::text::numeric[], $10::text::numeric[])
         WITH ORDINALITY AS u(r, t, s, e, mn, mx, tot, n, f, cpu, i)
), updated AS (
    UPDATE usage_aggregates a SET
        min_usage = LEAST(a.min_usage, u.mn),
        max_usage = GREATEST(a.max_usage, u.mx),
        total_usage = a.total_usage + u.tot,
        sample_count = a.sample_count + u.n,
        avg_usage = round((a.total_usage + u.tot) / (a.sample_count + u.n), 4),
        unit_factor = u.f,
        cost_per_unit = u.cpu,
        cost = round((a.total_usage + u.tot) / u.f * u.cpu, 4),
        updated_at = now()
    FROM u
    WHERE a.customer_resource_id = u.r AND a.period_type = u.t AND a.period_start = u.s
    RETURNING u.i
)
INSERT INTO usage_aggregates AS a (customer_resource_id, period_type, period_start,
    period_end, min_usage, max_usage, total_usage, sample_count, avg_usage, unit_factor,
    cost_per_unit, cost)
SELECT r, t, s, e, mn, mx, tot, n, round(tot / n, 4), f, cpu, round(tot / f * cpu, 4)
FROM u WHERE NOT EXISTS (SELECT 1 FROM updated WHERE updated.i = u.i)
ON CONFLICT (customer_resource_id, period_type, period_start) DO UPDATE SET
    min_usage = LEAST(a.min_usage, EXCLUDED.min_usage),
    max_usage = GREATEST(a.max_usage, EXCLUDED.max_usage),
    total_usage = a.total_usage + EXCLUDED.total_usage,
    sample_count = a.sample_count + EXCLUDED.sample_count,
    avg_usage = round((a.total_usage + EXCLUDED.total_usage)
                      / (a.sample_count + EXCLUDED.sample_count), 4),
    unit_factor = EXCLUDED.unit_factor,
    cost_per_unit = EXCLUDED.cost_per_unit,
    cost = round((a.total_usage + EXCLUDED.total_usage) / EXCLUDED.unit_factor
                 * EXCLUDED.cost_per_unit, 4),
    updated_at = now()"""


def _epoch_ms(at: dt.datetime) -> int:
    return (at - _EPOCH) // _ONE_MS


_UNPRICED = ("NULL", "NULL")


def _factor(unit: str) -> int | None:
    try:
        return unit_factor(unit)[1]
    except UnitError:
        return None


async def write_aggregates(
    conn: asyncpg.Connection, inputs: Sequence[AggregateInput], bucketer: Bucketer
) -> int:
    """Add ``inputs`` to their buckets; return the number of buckets touched.

    The batch is summed per bucket here first, so each bucket row is written
    once per batch. Bucket bounds go as epoch milliseconds and sums, unit
    factors and prices as decimal text (exact, cast to ``numeric`` in
    PostgreSQL): encoding ``Decimal`` and ``datetime`` arrays cost the hub more
    than the upsert costs PostgreSQL.
    """
    acc: dict[tuple[str, str, int], list[int]] = {}
    cost: dict[str, tuple[str, str]] = {}  # resource id -> (unit factor, price) as text
    for resource_id, r, catalog_unit, cpu in inputs:
        v = r.value
        if cpu is not None and r.kind != "level" and resource_id not in cost:
            factor = _factor(catalog_unit)
            if factor is not None:
                cost[resource_id] = (str(factor), str(Decimal(cpu)))
        for ptype, start, end in bucketer.buckets_ms(r.end_ms):
            slot = acc.get((resource_id, ptype, start))
            if slot is None:
                acc[(resource_id, ptype, start)] = [end, v, v, v, 1]
            else:
                if v < slot[1]:
                    slot[1] = v
                if v > slot[2]:
                    slot[2] = v
                slot[3] += v
                slot[4] += 1
    if not acc:
        return 0
    keys = list(acc)
    vals = list(acc.values())
    priced = [cost.get(k[0]) or _UNPRICED for k in keys]
    await conn.execute(
        _UPSERT,
        array_literal([str(k[0]) for k in keys]),
        array_literal([k[1] for k in keys]),
        array_literal([str(k[2]) for k in keys]),
        *(array_literal(list(map(str, col))) for col in zip(*vals, strict=True)),
        array_literal([p[0] for p in priced]),
        array_literal([p[1] for p in priced]),
    )
    return len(keys)
