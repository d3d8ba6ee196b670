"""Upgrading to CPU time in milliseconds (migration 0018): history scaled exactly, costs kept.

The history is written as a hub of the release before wrote it (CPU seconds) into
a database migrated up to the version before 0018; then 0018 runs and every
figure is compared with what it was.
"""

from __future__ import annotations

import datetime as dt
import random
from decimal import ROUND_HALF_UP, Context, Decimal
from typing import Any

import aiohttp
import anyio
import asyncpg  # type: ignore[import-untyped]
import msgspec
import pytest
import redis.asyncio as aioredis
from _hub_testing import wait_for
from _keys import bearer, make_key
from aiokafka import AIOKafkaProducer

from hub import HubConfig, MigrationError, migrate, provision_resource, run_hub
from hub.alerts.records import percentage, plain, to_unit
from hub.outbox import OutboxBatch, OutboxEvent, insert_outbox
from hub.storage.redis_cache import CachedUsage, now_ms
from protocol import AlertEvent, UsageReading, encode_event

pytestmark = [pytest.mark.integration, pytest.mark.anyio]

BEFORE = 17  # the last migration before 0018
T0 = 1_764_000_000_000  # 2025-11-24T16:00:00Z
TOTAL = "SELECT current_usage FROM customer_resources WHERE resource_key = $1"
_EXACT = Context(prec=80)
_outbox = msgspec.json.Decoder(OutboxBatch)


def _at(ms: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC)


async def _old_history(conn: asyncpg.Connection, customer: str) -> tuple[str, str]:
    """CPU and bandwidth usage stored as the release before 0018 stored it; their keys."""
    cpu = await provision_resource(conn, customer, "cpu", 7_200)  # a 2 h limit, in seconds
    bw = await provision_resource(conn, customer, "bandwidth", 10**9)
    ids = {
        r["resource_key"]: r["id"]
        for r in await conn.fetch("SELECT id, resource_key FROM customer_resources")
    }
    await conn.execute("SET TIME ZONE 'UTC'")  # buckets of UTC hours, days and months
    for table in ("usage_metrics", "processed_events"):  # as the old hub made them
        await conn.execute(
            f"CREATE TABLE {table}_p202511 PARTITION OF {table} "
            "FOR VALUES FROM ('2025-11-01Z') TO ('2025-12-01Z')"
        )
    rng = random.Random(18)
    rows = []
    for i in range(240):  # every 10 minutes for 40 hours: hour, day and month buckets
        start, end = T0 + i * 600_000, T0 + (i + 1) * 600_000
        seconds = rng.choice([0, 1, 7, rng.randrange(600), rng.randrange(10**6)])
        rows.append((ids[cpu], f"cpu-{i}", _at(start), _at(end), seconds, "second", "delta"))
        rows.append(
            (ids[bw], f"bw-{i}", _at(start), _at(end), rng.randrange(10**9), "byte", "delta")
        )
    rows.append((ids[cpu], "cpu-big", _at(T0), _at(T0 + 1), 9 * 10**12, "second", "delta"))
    await conn.executemany(
        "INSERT INTO usage_metrics (customer_resource_id, event_id, metric_start, "
        "metric_timestamp, metric_value, metric_unit, kind) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        rows,
    )
    # the buckets and totals the old hub kept: cost = round(total / unit_factor * price, 4),
    # with unit_factor 3600 (s per hour) for CPU and 10^9 (bytes per GB) for bandwidth
    for period in ("hour", "day", "month"):
        await conn.execute(
            f"""INSERT INTO usage_aggregates (customer_resource_id, period_type, period_start,
                    period_end, min_usage, max_usage, total_usage, sample_count, avg_usage,
                    unit_factor, cost_per_unit, cost)
                SELECT m.customer_resource_id, '{period}',
                       date_trunc('{period}', m.metric_timestamp),
                       date_trunc('{period}', m.metric_timestamp) + interval '1 {period}',
                       min(m.metric_value), max(m.metric_value), sum(m.metric_value), count(*),
                       round(sum(m.metric_value) / count(*), 4), f.factor, rc.cost_per_unit,
                       round(sum(m.metric_value) / f.factor * rc.cost_per_unit, 4)
                FROM usage_metrics m
                JOIN customer_resources cr ON cr.id = m.customer_resource_id
                JOIN resource_catalogs rc ON rc.id = cr.resource_catalog_id
                CROSS JOIN LATERAL (SELECT CASE rc.resource_type WHEN 'cpu' THEN 3600
                                               ELSE 1000000000 END::numeric AS factor) f
                GROUP BY 1, 2, 3, 4, f.factor, rc.cost_per_unit"""
        )
    await conn.execute(
        """UPDATE customer_resources cr SET current_usage = t.total, period_start = '2025-11-01',
               stat_weight = 37.25, stat_mean = 1234.5678901234567, stat_m2 = 98765.4321e7,
               stat_points = 241, stat_last_ms = $1, stat_first_ms = $2, stat_anchor = 3,
               total_version = 240
           FROM (SELECT customer_resource_id, sum(metric_value) AS total FROM usage_metrics
                 GROUP BY 1) t
           WHERE t.customer_resource_id = cr.id""",
        T0 + 240 * 600_000,
        T0,
    )
    await conn.execute(
        "INSERT INTO alerts (customer_resource_id, alert_type, severity, message, "
        "current_value, threshold_value, unit) VALUES ($1, 'THRESHOLD_WARNING', 'HIGH', "
        "'over 80 %', 1.7, 1.6, 'hour')",
        ids[cpu],
    )
    await conn.execute(
        "INSERT INTO cost_forecasts (customer_resource_id, forecast_period_start, "
        "forecast_period_end, predicted_usage, predicted_cost) "
        "VALUES ($1, '2025-11-01', '2025-11-30', 9000, 0.125)",
        ids[cpu],
    )
    await conn.executemany(
        "INSERT INTO ingest_keys (event_id, resource_key, value, start_ms, end_ms) "
        "VALUES ($1, $2, $3, $4, $4)",
        [("key-cpu", cpu, 42, T0), ("key-bw", bw, 42, T0)],
    )
    return cpu, bw


def _cached(key: str, rtype: str, usage: int, unit: str, limit: int | None) -> CachedUsage:
    return CachedUsage(
        resource_key=key,
        resource_type=rtype,
        usage=usage,
        unit=unit,
        limit=limit,
        catalog_unit="hour" if rtype == "cpu" else "GB",
        usage_in_unit="0.5",
        limit_in_unit="2",
        percentage="25.00",
        level="NONE",
        updated=T0,
    )


def _alert(key: str) -> AlertEvent:
    return AlertEvent(
        alert_id="a-1",
        customer_id=key.split("/")[0],
        resource_type="cpu",
        resource_key=key,
        alert_type="THRESHOLD_WARNING",
        severity="HIGH",
        status="ACTIVE",
        message="over 80 %",
        current_usage=Decimal("1.7"),
        threshold=Decimal("1.6"),
        limit=Decimal("2"),
        percentage=Decimal("85.00"),
        unit="hour",
        at_ms=T0,
    )


async def _snapshot(conn: asyncpg.Connection) -> dict[str, Any]:
    async def rows(sql: str) -> list[dict[str, Any]]:
        return [dict(r) for r in await conn.fetch(sql)]

    return {
        "resources": {
            r["resource_key"]: r
            for r in await rows(
                "SELECT resource_key, current_usage, limit_value, stat_weight, stat_mean, "
                "stat_m2, stat_anchor, stat_points, total_version FROM customer_resources"
            )
        },
        "metrics": {
            r["event_id"]: r
            for r in await rows("SELECT event_id, metric_value, metric_unit FROM usage_metrics")
        },
        "buckets": {
            (r["resource_key"], r["period_type"], r["period_start"]): r
            for r in await rows(
                "SELECT cr.resource_key, a.period_type, a.period_start, a.min_usage, "
                "a.max_usage, a.total_usage, a.sample_count, a.avg_usage, a.unit_factor, "
                "a.cost_per_unit, a.cost, "
                "round(a.total_usage / a.unit_factor * a.cost_per_unit, 4) AS recomputed "
                "FROM usage_aggregates a JOIN customer_resources cr "
                "ON cr.id = a.customer_resource_id"
            )
        },
        "alerts": await rows("SELECT current_value, threshold_value, unit FROM alerts"),
        "forecasts": await rows("SELECT predicted_usage, predicted_cost FROM cost_forecasts"),
        "keys": {
            r["event_id"]: r["value"] for r in await rows("SELECT event_id, value FROM ingest_keys")
        },
    }


def _avg(total: int, count: int) -> Decimal:
    """PostgreSQL's round(total / count, 4): half away from zero."""
    return _EXACT.divide(Decimal(total), Decimal(count)).quantize(
        Decimal("0.0001"), rounding=ROUND_HALF_UP
    )


async def test_0018_scales_every_stored_cpu_figure_exactly_and_keeps_costs_and_percentages(
    hub_config: HubConfig, producer: AIOKafkaProducer, unique: str
) -> None:
    dsn = hub_config.database_url
    customer = f"cust-{unique}"
    with anyio.fail_after(90):
        applied = await migrate(dsn, up_to=BEFORE)
        assert 18 not in applied
        assert max(applied) <= BEFORE
        conn = await asyncpg.connect(dsn)
        try:
            cpu, bw = await _old_history(conn, customer)
            await insert_outbox(
                conn,
                OutboxBatch(
                    topic=hub_config.alerts_topic,
                    events=[OutboxEvent(key=b"k", value=b'{"x":1}', headers=[], event_id="e")],
                    usage=[
                        _cached(cpu, "cpu", 1_800, "second", 7_200),
                        _cached(bw, "bandwidth", 5 * 10**8, "byte", 10**9),
                        _cached(f"{customer}/cpu/spare", "cpu", 3, "second", None),
                    ],
                    alerts=[_alert(cpu)],
                ),
            )
            old = await _snapshot(conn)
            old_outbox = _outbox.decode(await conn.fetchval("SELECT payload FROM hub_outbox"))

            assert await migrate(dsn, up_to=18) == [18]

            new = await _snapshot(conn)
            new_outbox = _outbox.decode(await conn.fetchval("SELECT payload FROM hub_outbox"))
            with pytest.raises(asyncpg.CheckViolationError, match="cpu_in_milliseconds"):
                await conn.execute(
                    "INSERT INTO usage_metrics (customer_resource_id, event_id, metric_start, "
                    "metric_timestamp, metric_value, metric_unit, kind) SELECT id, 'late', "
                    "now(), now(), 1, 'second', 'delta' FROM customer_resources LIMIT 1"
                )
        finally:
            await conn.close()

    # totals, limits and statistics: x1000 (M2, a sum of squares: x10^6) for CPU only
    for key, was in old["resources"].items():
        now = new["resources"][key]
        if key == bw:
            assert now == was
            continue
        assert now["current_usage"] == was["current_usage"] * 1000
        assert now["limit_value"] == was["limit_value"] * 1000 == 7_200_000
        assert now["stat_mean"] == was["stat_mean"] * 1000.0
        assert now["stat_m2"] == was["stat_m2"] * 1e6
        assert now["stat_anchor"] == was["stat_anchor"] * 1000
        assert (now["stat_weight"], now["stat_points"]) == (was["stat_weight"], 241)
        assert now["total_version"] == was["total_version"] + 1
        assert percentage(now["current_usage"], now["limit_value"]) == percentage(
            was["current_usage"], was["limit_value"]
        )
        # the same amount in the catalog unit (hours)
        assert to_unit(now["current_usage"], "hour") == plain(
            _EXACT.divide(Decimal(was["current_usage"]), Decimal(3600))
        )

    # raw readings
    assert len(new["metrics"]) == len(old["metrics"]) == 481
    for eid, was in old["metrics"].items():
        now = new["metrics"][eid]
        if was["metric_unit"] == "second":
            assert (now["metric_value"], now["metric_unit"]) == (
                was["metric_value"] * 1000,
                "millisecond",
            )
        else:
            assert now == was

    # buckets: cost unchanged and what the hub's formula gives from the scaled columns
    assert len(new["buckets"]) == len(old["buckets"])
    cpu_buckets = 0
    for bucket, was in old["buckets"].items():
        now = new["buckets"][bucket]
        assert now["cost"] == was["cost"] == now["recomputed"]
        if bucket[0] == bw:
            assert now == was
            continue
        cpu_buckets += 1
        for column in ("min_usage", "max_usage", "total_usage", "unit_factor"):
            assert now[column] == was[column] * 1000, (bucket, column)
        assert now["unit_factor"] == 3_600_000
        assert now["sample_count"] == was["sample_count"]
        assert now["avg_usage"] == _avg(now["total_usage"], now["sample_count"])
    assert cpu_buckets > 40  # hours, days and the month of 40 hours of readings

    # catalog-unit figures stay; base-unit ones scale
    assert (
        new["alerts"]
        == old["alerts"]
        == [{"current_value": Decimal("1.7"), "threshold_value": Decimal("1.6"), "unit": "hour"}]
    )
    assert new["forecasts"] == [{"predicted_usage": 9_000_000, "predicted_cost": Decimal("0.125")}]
    assert new["keys"] == {"key-cpu": 42_000, "key-bw": 42}

    # the undelivered outbox row now carries the Redis entries in milliseconds
    assert new_outbox.events == old_outbox.events
    assert new_outbox.alerts == old_outbox.alerts
    assert new_outbox.usage == [
        msgspec.structs.replace(
            old_outbox.usage[0], usage=1_800_000, unit="millisecond", limit=7_200_000
        ),
        old_outbox.usage[1],
        msgspec.structs.replace(old_outbox.usage[2], usage=3_000, unit="millisecond"),
    ]

    # the hub goes on from there: a reading in seconds still on the topic (sent before the
    # upgrade) and one in milliseconds both count exactly, and the month's cost follows
    month = (cpu, "month", dt.datetime(2025, 11, 1, tzinfo=dt.UTC))
    total = new["resources"][cpu]["current_usage"]
    legacy = UsageReading(
        customer_id=customer,
        resource_type="cpu",
        resource_key=cpu,
        value=90,
        unit="second",
        start_ms=T0 + 241 * 600_000,
        end_ms=T0 + 242 * 600_000,
    )
    fresh = msgspec.structs.replace(
        legacy, value=1_234, unit="millisecond", start_ms=legacy.end_ms, end_ms=legacy.end_ms + 1
    )
    with anyio.fail_after(60):
        async with anyio.create_task_group() as tg:
            await tg.start(run_hub, hub_config)
            conn = await asyncpg.connect(dsn)
            try:
                for r in (legacy, fresh):
                    record = encode_event(r, source="urn:test")
                    await producer.send_and_wait(
                        hub_config.usage_topic,
                        value=record.value,
                        key=record.key,
                        headers=record.headers,
                    )
                await wait_for(conn, TOTAL, total + 91_234, cpu)
                row = await conn.fetchrow(
                    "SELECT a.total_usage, a.cost FROM usage_aggregates a JOIN customer_resources "
                    "cr ON cr.id = a.customer_resource_id WHERE cr.resource_key = $1 AND "
                    "a.period_type = 'month' AND a.period_start = $2",
                    cpu,
                    month[2],
                )
                units = await conn.fetch(
                    "SELECT DISTINCT metric_unit FROM usage_metrics m JOIN customer_resources cr "
                    "ON cr.id = m.customer_resource_id WHERE cr.resource_key = $1",
                    cpu,
                )
            finally:
                await conn.close()
            tg.cancel_scope.cancel()
    assert row["total_usage"] == new["buckets"][month]["total_usage"] + 91_234
    seconds = Decimal(new["buckets"][month]["total_usage"] // 1000) + Decimal("91.234")
    assert row["cost"] == (seconds / 3600 * Decimal("0.05")).quantize(
        Decimal("0.0001"), rounding=ROUND_HALF_UP
    )
    assert [u["metric_unit"] for u in units] == ["millisecond"]


_PRICES = "{0.05,0.0001,0.0333,123.4567,999999.9999}"


def _exact_cost(total: int, factor: int, price: Decimal) -> Decimal:
    return _EXACT.divide(Decimal(total) * price, Decimal(factor)).quantize(
        Decimal("0.0001"), rounding=ROUND_HALF_UP
    )


async def test_a_bucket_cost_recomputed_in_milliseconds_is_the_same_or_the_exact_one(
    pg_dsn: str,
) -> None:
    """The hub's ``round(total / unit_factor * price, 4)`` before and after 0018.

    Below 10^10 CPU-seconds in a bucket (317 CPU-years) it gives the same cost.
    Above, PostgreSQL's division of the total in seconds kept too few digits for
    the 4th decimal; in milliseconds it keeps more, so where the two differ the
    new cost is nearer the exact one (multiplied before dividing).
    """
    with anyio.fail_after(60):
        conn = await asyncpg.connect(pg_dsn)
        try:
            await conn.execute("SELECT setseed(0.18)")  # the same totals every run
            rows = await conn.fetch(
                f"""SELECT t, p, round(t / 3600 * p, 4) AS was,
                           round(t * 1000 / 3600000 * p, 4) AS now
                    FROM (SELECT (random() * 10 ^ (random() * 19))::numeric(38, 0) AS t
                          FROM generate_series(1, 50000)
                          UNION ALL SELECT g::numeric FROM generate_series(0, 20000) g
                          UNION ALL SELECT 3605530213948980) totals,
                         unnest('{_PRICES}'::numeric[]) p
                    WHERE round(t / 3600 * p, 4) <> round(t * 1000 / 3600000 * p, 4)
                       OR round(t / 1 * p, 4) <> round(t * 1000 / 1000 * p, 4)"""
            )
        finally:
            await conn.close()
    assert rows  # the known case (3,605,530,213,948,980 s at 123.4567 per hour) is among them
    for r in rows:
        t, p = int(r["t"]), r["p"]
        assert t >= 10**10, (t, p)
        exact = _exact_cost(t, 3600, p)
        assert abs(r["now"] - exact) < abs(r["was"] - exact), (t, p)


async def test_a_cpu_figure_too_large_for_milliseconds_stops_0018_naming_it(
    pg_dsn: str, unique: str
) -> None:
    with anyio.fail_after(30):
        await migrate(pg_dsn, up_to=BEFORE)
        conn = await asyncpg.connect(pg_dsn)
        try:
            key = await provision_resource(conn, f"cust-{unique}", "cpu", None)
            small = await provision_resource(conn, f"cust-{unique}", "cpu", 60, name="small")
            await conn.execute(
                "UPDATE customer_resources SET current_usage = 9223372036854776 "
                "WHERE resource_key = $1",
                key,
            )
            with pytest.raises(MigrationError, match=f"{key}: current_usage 9223372036854776"):
                await migrate(pg_dsn)
            # nothing of it was applied: the smaller resource still counts seconds
            assert (
                await conn.fetchval(
                    "SELECT limit_value FROM customer_resources WHERE resource_key = $1", small
                )
                == 60
            )
            assert not await conn.fetchval(
                "SELECT count(*) FROM schema_migrations WHERE version = 18"
            )
        finally:
            await conn.close()


async def test_usage_cached_in_seconds_before_the_upgrade_is_refilled_from_postgresql(
    hub_config: HubConfig, redis_url: str, unique: str
) -> None:
    customer = f"cust-{unique}"
    await migrate(hub_config.database_url)
    conn = await asyncpg.connect(hub_config.database_url)
    try:
        key = await provision_resource(conn, customer, "cpu", 7_200_000)
        await conn.execute(
            "UPDATE customer_resources SET current_usage = 1800000 WHERE resource_key = $1", key
        )
        api_key = await make_key(conn)
    finally:
        await conn.close()
    # what the hub of the release before left in Redis: a complete, fresh hash in seconds
    stale = _cached(key, "cpu", 1_800, "second", 7_200)
    client: aioredis.Redis[bytes] = aioredis.Redis.from_url(redis_url)
    usage_key = f"{hub_config.redis_prefix}:usage:{customer}"
    try:
        await client.hset(usage_key, key, msgspec.json.encode(stale))
        await client.hset(usage_key, "_complete", str(now_ms()))
        with anyio.fail_after(60):
            async with anyio.create_task_group() as tg:
                hub = await tg.start(run_hub, hub_config)
                session = aiohttp.ClientSession(base_url=hub.http_url, headers=bearer(api_key))
                async with session as http:
                    sources = []
                    for _ in range(2):
                        async with http.get(f"/api/metrics/customer/{customer}/current") as resp:
                            sources.append(resp.headers["X-Resmon-Source"])
                            (usage,) = await resp.json()
                            assert (usage["usage"], usage["unit"], usage["limit"]) == (
                                1_800_000,
                                "millisecond",
                                7_200_000,
                            )
                            assert (usage["usageInUnit"], usage["limitInUnit"]) == ("0.5", "2")
                tg.cancel_scope.cancel()
    finally:
        await client.delete(usage_key)
        await client.aclose()
    assert sources == ["postgresql", "redis"]
