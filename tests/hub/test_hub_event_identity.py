"""Dedup on the Kafka path is by CloudEvents identity, (source, id), not by id alone.

Real broker, PostgreSQL and a running hub; the last test builds a database as
it was before migration 0019, claims an event there the old way, migrates,
and replays the event.
"""

from __future__ import annotations

import datetime as dt

import anyio
import asyncpg  # type: ignore[import-untyped]
import pytest
import structlog
from _hub_testing import T0, minute_reading, until, wait_for
from aiokafka import AIOKafkaProducer

from hub import HubConfig, RunningHub, migrate, provision_resource, run_hub
from hub.storage.batch import event_key, legacy_cutover_ms
from hub.storage.partitions import drop_expired_partitions, ensure_partitions, storage_month
from protocol import UsageGap, UsageReading, encode_event

pytestmark = [pytest.mark.integration, pytest.mark.anyio]

TOTAL = "SELECT current_usage FROM customer_resources WHERE resource_key = $1"
A, B = "urn:resmon:agent:site-a", "urn:resmon:agent:site-b"


def _gap(key: str, i: int) -> UsageGap:
    customer, rtype = key.split("/")[:2]
    return UsageGap(
        customer_id=customer,
        resource_type=rtype,
        resource_key=key,
        start_ms=T0 + i * 60_000,
        end_ms=T0 + (i + 1) * 60_000,
        reason="reboot",
    )


async def _send(
    producer: AIOKafkaProducer,
    topic: str,
    payload: UsageReading | UsageGap,
    *,
    source: str,
    id: str | None = None,
) -> str:
    rec = encode_event(payload, source=source, id=id)
    await producer.send_and_wait(topic, value=rec.value, key=rec.key, headers=rec.headers)
    return rec.event_id


def test_the_key_is_a_fixed_width_digest_of_source_and_id_apart() -> None:
    key = event_key(A, "r-1")
    assert len(key) == 16
    assert event_key(A, "r-1") == key
    assert event_key(B, "r-1") != key
    assert event_key(A, "r-2") != key
    # where source ends and id begins is part of the identity
    assert event_key("urn:a", "bc") != event_key("urn:ab", "c")
    assert len(event_key("s" * 255, "i" * 200)) == 16


async def test_two_sources_using_one_id_for_events_of_the_same_time_are_both_counted(
    hub_config: HubConfig, db: asyncpg.Connection, producer: AIOKafkaProducer, unique: str
) -> None:
    ka = await provision_resource(db, f"a-{unique}", "bandwidth", None)
    kb = await provision_resource(db, f"b-{unique}", "bandwidth", None)
    topic = hub_config.usage_topic
    with anyio.fail_after(60):
        async with anyio.create_task_group() as tg:
            hub: RunningHub = await tg.start(run_hub, hub_config)
            # back to back (one batch, most likely): the in-batch dedup
            await _send(producer, topic, minute_reading(ka, 0, 700), source=A, id="r-1")
            await _send(producer, topic, minute_reading(kb, 0, 300), source=B, id="r-1")
            await wait_for(db, TOTAL, 700, ka)
            await wait_for(db, TOTAL, 300, kb)
            # B's after A's is committed: the claim in processed_events
            await _send(producer, topic, minute_reading(ka, 1, 40), source=A, id="r-2")
            await wait_for(db, TOTAL, 740, ka)
            await _send(producer, topic, minute_reading(kb, 1, 60), source=B, id="r-2")
            await wait_for(db, TOTAL, 360, kb)
            # gaps too: one row each, though their ids are the same
            await _send(producer, topic, _gap(ka, 2), source=A, id="g-1")
            await _send(producer, topic, _gap(kb, 2), source=B, id="g-1")
            gaps = "SELECT count(*) FROM usage_gaps WHERE event_id = 'g-1'"
            await wait_for(db, gaps, 2)
            assert hub.metrics.duplicates._value.get() == 0
            rows = await db.fetch(
                "SELECT event_source, event_id FROM usage_metrics ORDER BY event_source, event_id"
            )
            assert [(r["event_source"], r["event_id"]) for r in rows] == [
                (A, "r-1"),
                (A, "r-2"),
                (B, "r-1"),
                (B, "r-2"),
            ]
            sources = await db.fetch("SELECT event_source FROM usage_gaps ORDER BY event_source")
            assert [r["event_source"] for r in sources] == [A, B]
            tg.cancel_scope.cancel()


async def test_the_same_source_and_id_redelivered_counts_once_and_is_logged(
    hub_config: HubConfig, db: asyncpg.Connection, producer: AIOKafkaProducer, unique: str
) -> None:
    key = await provision_resource(db, f"c-{unique}", "bandwidth", None)
    topic = hub_config.usage_topic
    first = minute_reading(key, 0, 7_000)
    with anyio.fail_after(60), structlog.testing.capture_logs() as logs:
        async with anyio.create_task_group() as tg:
            hub: RunningHub = await tg.start(run_hub, hub_config)
            eid = await _send(producer, topic, first, source=A)
            await _send(producer, topic, first, source=A)  # same batch, most likely
            await wait_for(db, TOTAL, 7_000, key)
            await _send(producer, topic, first, source=A)  # a later batch
            await _send(producer, topic, minute_reading(key, 1, 5), source=A)
            await wait_for(db, TOTAL, 7_005, key)
            await until(lambda: hub.metrics.duplicates._value.get() == 2)
            assert await db.fetchval("SELECT count(*) FROM usage_metrics") == 2
            assert await db.fetchval("SELECT count(*) FROM processed_events") == 2
            tg.cancel_scope.cancel()
    dropped = [e for e in logs if e["event"] == "duplicates_dropped"]
    assert sum(e["count"] for e in dropped) == 2
    assert all(e["first"] == [f"{A} {eid}"] for e in dropped)


async def test_an_event_source_that_cannot_be_stored_is_dead_lettered_naming_it(
    hub_config: HubConfig, db: asyncpg.Connection, producer: AIOKafkaProducer, unique: str
) -> None:
    key = await provision_resource(db, f"c-{unique}", "bandwidth", None)
    topic = hub_config.usage_topic
    with anyio.fail_after(60):
        async with anyio.create_task_group() as tg:
            hub: RunningHub = await tg.start(run_hub, hub_config)
            await _send(producer, topic, minute_reading(key, 0, 9), source="u" * 256)
            await _send(producer, topic, minute_reading(key, 1, 1), source=A)
            await wait_for(db, TOTAL, 1, key)
            reasons = [r["reason"] for r in await db.fetch("SELECT reason FROM dead_letters")]
            assert reasons == [
                "invalid: event source must be 1..255 characters without NUL (has 256)"
            ]
            assert hub.metrics.dead_letters._value.get() == 1
            tg.cancel_scope.cancel()


async def test_a_new_database_records_no_cutover_so_the_legacy_lookup_never_runs(
    db: asyncpg.Connection,
) -> None:
    assert await legacy_cutover_ms(db) is None
    assert await db.fetchval("SELECT count(*) FROM processed_events_legacy") == 0


async def test_an_event_claimed_before_0019_and_replayed_after_it_counts_once(
    hub_config: HubConfig, producer: AIOKafkaProducer, unique: str
) -> None:
    dsn = hub_config.database_url
    key = f"c-{unique}/bandwidth"
    counted, counted_gap = minute_reading(key, 0, 500), _gap(key, 1)
    first = encode_event(counted, source=A)
    first_gap = encode_event(counted_gap, source=A)
    end = dt.datetime.fromtimestamp(counted.end_ms / 1000, dt.UTC)
    gap_end = dt.datetime.fromtimestamp(counted_gap.end_ms / 1000, dt.UTC)
    await migrate(dsn, up_to=18)
    conn = await asyncpg.connect(dsn)
    try:
        # a database as migration 0018 left it, where a hub counted one reading and one
        # gap, claiming them in processed_events by (id, event_at) as it did then
        pool = await asyncpg.create_pool(dsn, min_size=1, max_size=1)
        try:
            await ensure_partitions(pool, [storage_month(counted.end_ms)], set())
        finally:
            await pool.close()
        await provision_resource(conn, f"c-{unique}", "bandwidth", None)
        await conn.execute(
            "UPDATE customer_resources SET current_usage = 500, period_start = $2 "
            "WHERE resource_key = $1",
            key,
            end.date().replace(day=1),
        )
        await conn.execute(
            """INSERT INTO usage_metrics (customer_resource_id, event_id, metric_start,
                   metric_timestamp, metric_value, metric_unit, kind, source)
               SELECT id, $2, $3, $3, 500, 'byte', 'delta', 'snmp'
               FROM customer_resources WHERE resource_key = $1""",
            key,
            first.event_id,
            end,
        )
        await conn.execute(
            """INSERT INTO usage_gaps (event_id, customer_id, resource_key, resource_type,
                   gap_start, gap_end, reason, source)
               VALUES ($1, $2, $3, 'bandwidth', $4, $4, 'reboot', 'snmp')""",
            first_gap.event_id,
            f"c-{unique}",
            key,
            gap_end,
        )
        await conn.executemany(
            "INSERT INTO processed_events (id, event_at) VALUES ($1, $2)",
            [(first.event_id, end), (first_gap.event_id, gap_end)],
        )

        before = dt.datetime.now(dt.UTC)
        assert await migrate(dsn, up_to=19) == [19]
        after = dt.datetime.now(dt.UTC)
        legacy = await conn.fetch(
            "SELECT id, tableoid::regclass::text AS part FROM processed_events_legacy ORDER BY id"
        )
        part = f"processed_events_legacy_p{end:%Y%m}"
        assert sorted((r["id"], r["part"]) for r in legacy) == sorted(
            [(first.event_id, part), (first_gap.event_id, part)]
        )
        # no legacy key lies ahead of the migration's clock: the cutover is its time
        cutover = await conn.fetchval("SELECT legacy_until FROM dedup_cutover")
        assert before <= cutover <= after
        assert await legacy_cutover_ms(conn) == int(cutover.timestamp() * 1000)

        topic = hub_config.usage_topic
        with anyio.fail_after(60):
            async with anyio.create_task_group() as tg:
                hub: RunningHub = await tg.start(run_hub, hub_config)
                # the replay (the same records) and a reading of that time never seen
                for rec in (first, first_gap):
                    await producer.send_and_wait(
                        topic, value=rec.value, key=rec.key, headers=rec.headers
                    )
                late = minute_reading(key, 2, 30)
                await _send(producer, topic, late, source=A)
                await wait_for(conn, TOTAL, 530, key)
                await _send(producer, topic, late, source=A)  # and its own redelivery
                await until(lambda: hub.metrics.duplicates._value.get() == 3)
                assert await conn.fetchval(TOTAL, key) == 530
                assert await conn.fetchval("SELECT count(*) FROM usage_gaps") == 1
                assert await conn.fetchval("SELECT count(*) FROM usage_metrics") == 2
                assert await conn.fetchval("SELECT count(*) FROM processed_events") == 1
                tg.cancel_scope.cancel()

        # retention drops the legacy months with the rest
        dropped = await drop_expired_partitions(conn, 90, dt.datetime(2027, 6, 1, tzinfo=dt.UTC))
        assert part in dropped
        assert f"processed_events_p{end:%Y%m}" in dropped
    finally:
        await conn.close()
