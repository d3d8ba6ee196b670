"""Raw usage and dedup records live in monthly partitions; retention drops whole months."""

from __future__ import annotations

import datetime as dt

import anyio
import asyncpg  # type: ignore[import-untyped]
import msgspec
import pytest
from _hub_testing import sample, wait_for
from aiokafka import AIOKafkaProducer

from hub import HubConfig, RunningHub, migrate, provision_resource, run_hub
from hub.storage.batch import claim_events, event_key
from hub.storage.migrate import load_migrations
from hub.storage.partitions import (
    drop_expired_partitions,
    ensure_partitions,
    retention_horizon_ms,
    storage_month,
)
from protocol import UsageReading, encode_event

pytestmark = [pytest.mark.integration, pytest.mark.anyio]


def _ms(when: dt.datetime) -> int:
    return int(when.timestamp() * 1000)


def _key(event_id: str) -> bytes:
    return event_key("urn:test", event_id)


async def test_retention_drops_months_older_than_90_days_and_keeps_the_rest(
    db: asyncpg.Connection, hub_config: HubConfig, unique: str
) -> None:
    key = await provision_resource(db, f"c-{unique}", "bandwidth", None)
    rid = await db.fetchval("SELECT id FROM customer_resources WHERE resource_key = $1", key)
    pool = await asyncpg.create_pool(hub_config.database_url, min_size=1, max_size=2)
    try:
        months = [dt.datetime(2026, m, 15, tzinfo=dt.UTC) for m in (6, 7, 8, 9, 10, 11)]
        known: set[int] = set()
        await ensure_partitions(pool, [storage_month(_ms(m)) for m in months], known)
        await db.executemany(
            """INSERT INTO usage_metrics (customer_resource_id, event_id, metric_start,
                   metric_timestamp, metric_value, metric_unit, kind)
               VALUES ($1, $2, $3, $3, 1, 'byte', 'delta')""",
            [(rid, f"e{i}", m) for i, m in enumerate(months)],
        )
        async with db.transaction():
            fresh = await claim_events(
                db, [(_key(f"e{i}"), f"e{i}", _ms(m)) for i, m in enumerate(months)]
            )
        assert fresh == {_key(f"e{i}") for i in range(6)}
        # nothing landed in a DEFAULT partition: every month had its own
        assert await db.fetchval("SELECT count(*) FROM usage_metrics_default") == 0
        assert await db.fetchval("SELECT count(*) FROM processed_events_default") == 0
        now = dt.datetime(2026, 11, 28, tzinfo=dt.UTC)
        dropped = await drop_expired_partitions(db, 90, now)
        # August ended 2026-09-01, 88 days before: kept; July and June: gone
        assert dropped == [
            "processed_events_p202606",
            "processed_events_p202607",
            "usage_metrics_p202606",
            "usage_metrics_p202607",
        ]
        assert await db.fetchval("SELECT count(*) FROM usage_metrics") == 4
        assert await db.fetchval("SELECT count(*) FROM processed_events") == 4
        assert await drop_expired_partitions(db, 90, now) == []
        # what is left still deduplicates
        async with db.transaction():
            again = [(_key(e), e, _ms(months[5])) for e in ("e5", "e6")]
            assert await claim_events(db, again) == {_key("e6")}
    finally:
        await pool.close()


def test_the_retention_horizon_is_the_start_of_the_oldest_month_that_may_remain() -> None:
    now = dt.datetime(2026, 11, 28, 12, tzinfo=dt.UTC)
    # 90 days back is 2026-08-30: August may still be there, July is gone
    assert retention_horizon_ms(90, now) == _ms(dt.datetime(2026, 8, 1, tzinfo=dt.UTC))
    assert retention_horizon_ms(1, now) == _ms(dt.datetime(2026, 11, 1, tzinfo=dt.UTC))


async def test_an_event_older_than_the_retention_horizon_is_dead_lettered_not_counted(
    hub_config: HubConfig, db: asyncpg.Connection, producer: AIOKafkaProducer, unique: str
) -> None:
    config = msgspec.structs.replace(hub_config, retention_days=30)
    key = await provision_resource(db, f"c-{unique}", "bandwidth", None)
    now = _ms(dt.datetime.now(dt.UTC))

    def reading(end_ms: int) -> UsageReading:
        return UsageReading(
            customer_id=f"c-{unique}",
            resource_type="bandwidth",
            resource_key=key,
            value=500,
            unit="byte",
            start_ms=end_ms - 60_000,
            end_ms=end_ms,
        )

    old = reading(now - 120 * 86_400_000)
    with anyio.fail_after(30):
        async with anyio.create_task_group() as tg:
            hub: RunningHub = await tg.start(run_hub, config)
            for r in (old, reading(now)):
                rec = encode_event(r, source="urn:test")
                await producer.send_and_wait(
                    config.usage_topic, value=rec.value, key=rec.key, headers=rec.headers
                )
            await wait_for(db, "SELECT count(*) FROM dead_letters", 1)
            total = "SELECT current_usage FROM customer_resources WHERE resource_key = $1"
            await wait_for(db, total, 500, key)
            reason = await db.fetchval("SELECT reason FROM dead_letters")
            assert reason.startswith("expired: ends before ")
            assert "RESMON_RETENTION_DAYS=30" in reason
            assert sample(hub.metrics, "resmon_hub_dead_letters_total") == 1
            assert await db.fetchval("SELECT count(*) FROM processed_events") == 1
            tg.cancel_scope.cancel()


async def test_the_migration_carries_dedup_records_into_monthly_partitions(
    pg_dsn: str, unique: str
) -> None:
    await migrate(pg_dsn, up_to=11)  # the schema before processed_events was partitioned
    conn = await asyncpg.connect(pg_dsn)
    try:
        key = await provision_resource(conn, f"c-{unique}", "bandwidth", None)
        rid = await conn.fetchval("SELECT id FROM customer_resources WHERE resource_key = $1", key)
        end = dt.datetime(2026, 10, 5, tzinfo=dt.UTC)
        await conn.execute(
            """INSERT INTO usage_metrics (customer_resource_id, event_id, metric_start,
                   metric_timestamp, metric_value, metric_unit, kind)
               VALUES ($1, 'reading-1', $2, $2, 1, 'byte', 'delta')""",
            rid,
            end,
        )
        await conn.execute(
            """INSERT INTO usage_gaps (event_id, customer_id, resource_key, resource_type,
                   gap_start, gap_end, reason, source)
               VALUES ('gap-1', $1, $2, 'bandwidth', $3, $3, 'reboot', 'test')""",
            f"c-{unique}",
            key,
            end + dt.timedelta(days=30),
        )
        await conn.execute(
            "INSERT INTO processed_events (id) VALUES ('reading-1'), ('gap-1'), ('buried-1')"
        )
        assert await migrate(pg_dsn) == [m.version for m in load_migrations() if m.version >= 12]
        # 0019 then kept them, by id alone, in processed_events_legacy
        rows = await conn.fetch(
            "SELECT id, event_at, tableoid::regclass::text AS part "
            "FROM processed_events_legacy ORDER BY id"
        )
        assert [(r["id"], r["event_at"], r["part"]) for r in rows] == [
            ("gap-1", end + dt.timedelta(days=30), "processed_events_legacy_p202611"),
            ("reading-1", end, "processed_events_legacy_p202610"),
        ]
    finally:
        await conn.close()
