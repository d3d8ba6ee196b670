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

__all__ = ["AggregateInput", "Bucketer", "write_aggregates"]

_HOUR = 3_600_000

#: (resource_id, reading, catalog unit, cost_per_unit or None)
AggregateInput = tuple[str, UsageReading, str, str | None]


class Bucketer:
    """Bucket starts/ends of an instant, cached per UTC hour."""

    def __init__(self, tz: ZoneInfo) -> None:
        self._tz = tz
        self._cache: dict[int, tuple[tuple[str, dt.datetime, dt.datetime], ...]] = {}

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
            nxt = (month + dt.timedelta(days=32)).replace(day=1)

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


def _factor(unit: str) -> int | None:
    try:
        return unit_factor(unit)[1]
    except UnitError:
        return None


async def write_aggregates(
    conn: asyncpg.Connection, inputs: Sequence[AggregateInput], bucketer: Bucketer
) -> int:
    """Add ``inputs`` to their buckets; return the number of buckets touched."""
    acc: dict[tuple[str, str, dt.datetime], list[object]] = {}
    cost: dict[str, tuple[Decimal, Decimal]] = {}
    for resource_id, r, catalog_unit, cpu in inputs:
        v = r.value
        if cpu is not None and r.kind != "level" and resource_id not in cost:
            factor = _factor(catalog_unit)
            if factor is not None:
                cost[resource_id] = (Decimal(factor), Decimal(cpu))
        for ptype, start, end in bucketer.buckets(r.end_ms):
            slot = acc.get((resource_id, ptype, start))
            if slot is None:
                acc[(resource_id, ptype, start)] = [end, v, v, v, 1]
            else:
                if v < slot[1]:  # type: ignore[operator]
                    slot[1] = v
                if v > slot[2]:  # type: ignore[operator]
                    slot[2] = v
                slot[3] += v  # type: ignore[operator]
                slot[4] += 1  # type: ignore[operator]
    if not acc:
        return 0
    keys = list(acc)
    vals = [acc[k] for k in keys]
    priced = [cost.get(k[0]) for k in keys]
    await conn.execute(
        """INSERT INTO usage_aggregates AS a (customer_resource_id, period_type, period_start,
               period_end, min_usage, max_usage, total_usage, sample_count, avg_usage,
               unit_factor, cost_per_unit, cost)
           SELECT r, t, s, e, mn, mx, tot, n, round(tot / n, 4), f, cpu, round(tot / f * cpu, 4)
           FROM unnest($1::uuid[], $2::text[], $3::timestamptz[], $4::timestamptz[],
                       $5::bigint[], $6::bigint[], $7::numeric[], $8::bigint[], $9::numeric[],
                       $10::numeric[])
                AS u(r, t, s, e, mn, mx, tot, n, f, cpu)
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
               updated_at = now()""",
        [k[0] for k in keys],
        [k[1] for k in keys],
        [k[2] for k in keys],
        [v[0] for v in vals],
        [v[1] for v in vals],
        [v[2] for v in vals],
        [Decimal(v[3]) for v in vals],  # type: ignore[arg-type]
        [v[4] for v in vals],
        [p[0] if p else None for p in priced],
        [p[1] if p else None for p in priced],
    )
    return len(keys)
