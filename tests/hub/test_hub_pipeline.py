"""The hub end to end on the real broker, PostgreSQL and Redis."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Literal

import anyio
import asyncpg  # type: ignore[import-untyped]
import msgspec
import pytest
from _hub_testing import T0, minute_reading, sample, until, wait_for
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from hub import HubConfig, RunningHub, provision_resource, run_hub
from hub.storage.current import now_ms
from protocol import (
    TYPE_THRESHOLD,
    AlertEvent,
    UsageGap,
    UsageReading,
    decode_record,
    encode_event,
)

pytestmark = [pytest.mark.integration, pytest.mark.anyio]


def reading(key: str, i: int, value: int = 100_000) -> UsageReading:
    return minute_reading(key, i, value, device="r1", interface="ge-0/0/1", direction="in")


async def send(producer: AIOKafkaProducer, topic: str, r: UsageReading) -> str:
    record = encode_event(r, source="urn:test")
    await producer.send_and_wait(topic, value=record.value, key=record.key, headers=record.headers)
    return record.event_id


TOTAL = "SELECT current_usage FROM customer_resources WHERE resource_key = $1"


async def test_one_warning_then_one_critical_with_exact_totals_dedup_and_dead_letters(
    hub_config: HubConfig, db: asyncpg.Connection, producer: AIOKafkaProducer, unique: str
) -> None:
    key = await provision_resource(db, f"cust-{unique}", "bandwidth", 1_000_000)
    topic = hub_config.usage_topic
    with anyio.fail_after(60):
        async with anyio.create_task_group() as tg:
            hub: RunningHub = await tg.start(run_hub, hub_config)
            for i in range(8):  # 800,000 bytes: warning
                await send(producer, topic, reading(key, i))
            await send(producer, topic, reading(key, 3))  # duplicate
            await producer.send_and_wait(
                topic, key=key.encode(), value=b"{not json", headers=[("ce_specversion", b"1.0")]
            )
            for i in range(8, 10):  # 1,000,000 bytes: critical
                await send(producer, topic, reading(key, i))
            await wait_for(db, TOTAL, 1_000_000, key)
            await send(producer, topic, reading(key, 9))  # a late duplicate, next batch
            await send(producer, topic, reading(key, 10, 50_000))
            await wait_for(db, TOTAL, 1_050_000, key)

            alerts = await db.fetch(
                "SELECT alert_type, severity, status, resolution, current_value, threshold_value, "
                "unit FROM alerts ORDER BY created_at, alert_type DESC"
            )
            assert [
                (a["alert_type"], a["severity"], a["status"], a["resolution"]) for a in alerts
            ] == [
                ("THRESHOLD_WARNING", "HIGH", "RESOLVED", "escalated"),
                ("THRESHOLD_CRITICAL", "CRITICAL", "ACTIVE", None),
            ]
            assert alerts[0]["current_value"] == Decimal("0.0008")  # GB, exact
            assert alerts[0]["threshold_value"] == Decimal("0.0008")
            assert alerts[1]["current_value"] == Decimal("0.001")
            assert alerts[1]["threshold_value"] == Decimal("0.00095")
            assert {a["unit"] for a in alerts} == {"GB"}
            assert await db.fetchval("SELECT count(*) FROM usage_metrics") == 11
            assert await db.fetchval("SELECT sum(metric_value) FROM usage_metrics") == 1_050_000
            dead = await db.fetch("SELECT reason, record_value FROM dead_letters")
            assert len(dead) == 1
            assert dead[0]["record_value"] == b"{not json"
            assert "undecodable" in dead[0]["reason"]
            assert sample(hub.metrics, "resmon_hub_duplicates_dropped_total") == 2
            assert sample(hub.metrics, "resmon_hub_dead_letters_total") == 1
            assert sample(hub.metrics, "resmon_hub_readings_consumed_total") == 11

            raw = await hub.cache.client.hget(
                f"{hub_config.redis_prefix}:usage:{key.split('/')[0]}", key
            )
            cached = json.loads(raw)
            assert (cached["usage"], cached["usageInUnit"], cached["level"]) == (
                1_050_000,
                "0.00105",
                "CRITICAL",
            )
            stored = await db.fetchval(
                "SELECT sum(next_offset) FROM consumer_offsets WHERE consumer_group = $1",
                hub_config.consumer_group,
            )
            assert stored == 14  # every record, garbage and duplicates included
            tg.cancel_scope.cancel()

        events = await read_alert_events(hub_config, expected=2)
    assert [(e.alert_type, e.status) for e in events] == [
        ("THRESHOLD_WARNING", "ACTIVE"),
        ("THRESHOLD_CRITICAL", "ACTIVE"),
    ]
    assert events[1].current_usage == Decimal("0.001")
    assert events[1].percentage == Decimal("100.00")


async def read_alert_events(config: HubConfig, expected: int) -> list[AlertEvent]:
    consumer = AIOKafkaConsumer(
        config.alerts_topic,
        bootstrap_servers=config.kafka_bootstrap_servers,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    events: list[AlertEvent] = []
    try:
        while len(events) < expected:
            batch = await consumer.getmany(timeout_ms=200)
            for records in batch.values():
                for rec in records:
                    ev = decode_record(rec.value, rec.headers)
                    assert ev.type == TYPE_THRESHOLD
                    assert isinstance(ev.data, AlertEvent)
                    events.append(ev.data)
    finally:
        await consumer.stop()
    return sorted(events, key=lambda e: (e.at_ms, e.alert_type != "THRESHOLD_WARNING"))


async def test_restart_resumes_from_stored_offsets_without_double_counting(
    hub_config: HubConfig, db: asyncpg.Connection, producer: AIOKafkaProducer, unique: str
) -> None:
    key = await provision_resource(db, f"cust-{unique}", "bandwidth", None)
    with anyio.fail_after(90):
        async with anyio.create_task_group() as tg:
            await tg.start(run_hub, hub_config)
            for i in range(5):
                await send(producer, hub_config.usage_topic, reading(key, i, 7))
            await wait_for(db, TOTAL, 35, key)
            tg.cancel_scope.cancel()
        async with anyio.create_task_group() as tg:
            hub: RunningHub = await tg.start(run_hub, hub_config)
            await send(producer, hub_config.usage_topic, reading(key, 5, 7))
            await wait_for(db, TOTAL, 42, key)
            # the restarted hub resumed after the stored offsets: nothing re-read
            assert sample(hub.metrics, "resmon_hub_readings_consumed_total") == 1
            assert sample(hub.metrics, "resmon_hub_duplicates_dropped_total") == 0
            assert await db.fetchval("SELECT count(*) FROM alerts") == 0
            tg.cancel_scope.cancel()


@pytest.mark.parametrize(
    ("rtype", "unit", "kind", "catalog"),
    [
        ("api_calls", "request", "delta", "API Requests"),
        ("memory", "byte", "level", "Memory"),  # a gauge, monitored and not billed
    ],
)
async def test_unknown_resource_is_auto_provisioned_unlimited(
    hub_config: HubConfig,
    db: asyncpg.Connection,
    producer: AIOKafkaProducer,
    unique: str,
    rtype: str,
    unit: str,
    kind: Literal["delta", "level"],
    catalog: str,
) -> None:
    key = f"cust-{unique}/{rtype}"
    r = UsageReading(
        customer_id=f"cust-{unique}",
        resource_type=rtype,
        resource_key=key,
        value=10**12,
        unit=unit,
        kind=kind,
        start_ms=T0,
        end_ms=T0 + 1000,
        source="api_gateway",
    )
    with anyio.fail_after(60):
        async with anyio.create_task_group() as tg:
            hub: RunningHub = await tg.start(run_hub, hub_config)
            await send(producer, hub_config.usage_topic, r)
            await wait_for(db, TOTAL, 10**12, key)
            row = await db.fetchrow(
                "SELECT cr.limit_value, cr.auto_provisioned, rc.resource_name, c.tenant_id::text "
                "FROM customer_resources cr JOIN resource_catalogs rc "
                "ON rc.id = cr.resource_catalog_id JOIN customers c ON c.id = cr.customer_id "
                "WHERE cr.resource_key = $1",
                key,
            )
            assert dict(row) == {
                "limit_value": None,
                "auto_provisioned": True,
                "resource_name": catalog,
                "tenant_id": "00000000-0000-0000-0000-000000000000",
            }
            assert sample(hub.metrics, "resmon_hub_resources_auto_provisioned_total") == 1
            assert await db.fetchval("SELECT count(*) FROM alerts") == 0
            tg.cancel_scope.cancel()


async def test_reading_of_unknown_type_is_dead_lettered_and_later_readings_apply(
    hub_config: HubConfig, db: asyncpg.Connection, producer: AIOKafkaProducer, unique: str
) -> None:
    good = await provision_resource(db, f"cust-{unique}", "cpu", 3600)
    bad = UsageReading(
        customer_id=f"cust-{unique}",
        resource_type="teleport",
        resource_key=f"cust-{unique}/teleport",
        value=1,
        unit="byte",
        start_ms=T0,
        end_ms=T0 + 1,
    )
    ok = UsageReading(
        customer_id=f"cust-{unique}",
        resource_type="cpu",
        resource_key=good,
        value=60_000,
        unit="millisecond",
        start_ms=T0,
        end_ms=T0 + 60_000,
    )
    with anyio.fail_after(60):
        async with anyio.create_task_group() as tg:
            await tg.start(run_hub, hub_config)
            await send(producer, hub_config.usage_topic, bad)
            await send(producer, hub_config.usage_topic, ok)
            await wait_for(db, TOTAL, 60_000, good)
            await wait_for(db, "SELECT count(*) FROM dead_letters", 1)
            reason = await db.fetchval("SELECT reason FROM dead_letters")
            assert "teleport" in reason
            headers = json.loads(await db.fetchval("SELECT headers FROM dead_letters"))
            assert ["ce_type", "resource.usage.raw.v1"] in headers
            tg.cancel_scope.cancel()


async def test_cpu_time_counts_in_milliseconds_and_a_reading_in_seconds_is_converted(
    hub_config: HubConfig, db: asyncpg.Connection, producer: AIOKafkaProducer, unique: str
) -> None:
    """A limit of one CPU hour; readings in ms, and one in seconds as senders before 0018 sent."""
    key = await provision_resource(db, f"cust-{unique}", "cpu", 3_600_000)
    ms = UsageReading(
        customer_id=f"cust-{unique}",
        resource_type="cpu",
        resource_key=key,
        value=1_500,  # 1.5 s: a fraction of a second, once rounded away
        unit="millisecond",
        start_ms=T0,
        end_ms=T0 + 60_000,
    )
    seconds = msgspec.structs.replace(
        ms, value=2_879, unit="second", start_ms=T0 + 60_000, end_ms=T0 + 120_000
    )
    last = msgspec.structs.replace(ms, value=1, start_ms=T0 + 120_000, end_ms=T0 + 180_000)
    with anyio.fail_after(60):
        async with anyio.create_task_group() as tg:
            hub: RunningHub = await tg.start(run_hub, hub_config)
            for r in (ms, seconds, last):
                await send(producer, hub_config.usage_topic, r)
            await wait_for(db, TOTAL, 1_500 + 2_879_000 + 1, key)
            # 2,880,500 ms of 3,600,000 after the reading in seconds: 80.01 %, a warning
            await wait_for(db, "SELECT count(*) FROM alerts", 1)
            alert = await db.fetchrow(
                "SELECT alert_type, current_value, threshold_value, unit FROM alerts"
            )
            rows = await db.fetch(
                "SELECT metric_value, metric_unit FROM usage_metrics ORDER BY metric_timestamp"
            )
            bucket = await db.fetchrow(
                "SELECT total_usage, unit_factor, cost FROM usage_aggregates "
                "WHERE period_type = 'month'"
            )
            assert hub.metrics.dead_letters._value.get() == 0
            tg.cancel_scope.cancel()
    assert [(r["metric_value"], r["metric_unit"]) for r in rows] == [
        (1_500, "millisecond"),
        (2_879_000, "millisecond"),
        (1, "millisecond"),
    ]
    assert dict(alert) == {
        "alert_type": "THRESHOLD_WARNING",
        "current_value": Decimal("0.800138889"),  # 2,880,500 ms in hours, to 9 places
        "threshold_value": Decimal("0.8"),
        "unit": "hour",
    }
    # 2,880,501 ms = 0.80013916... h at 0.05 per hour
    assert (bucket["total_usage"], bucket["unit_factor"], bucket["cost"]) == (
        2_880_501,
        3_600_000,
        Decimal("0.0400"),
    )


@contextlib.asynccontextmanager
async def _resident_actor(
    config: HubConfig, db: asyncpg.Connection, producer: AIOKafkaProducer, unique: str
) -> AsyncIterator[tuple[RunningHub, str]]:
    """A running hub with an unlimited resource's actor resident at 850 bytes."""
    key = await provision_resource(db, f"cust-{unique}", "bandwidth", None)
    with anyio.fail_after(60):
        async with anyio.create_task_group() as tg:
            hub: RunningHub = await tg.start(run_hub, config)
            await send(producer, config.usage_topic, reading(key, 0, 850))
            await wait_for(db, TOTAL, 850, key)
            assert hub.registry.get(key) is not None
            yield hub, key
            tg.cancel_scope.cancel()


async def _next_reading_warns(
    config: HubConfig, db: asyncpg.Connection, producer: AIOKafkaProducer, key: str
) -> None:
    """10 more bytes: a warning if the actor runs on the new limit of 1,000 (860 = 86 %)."""
    await send(producer, config.usage_topic, reading(key, 1, 10))
    await wait_for(db, "SELECT count(*) FROM alerts WHERE status = 'ACTIVE'", 1)
    assert await db.fetchval("SELECT alert_type FROM alerts") == "THRESHOLD_WARNING"


async def test_changing_a_limit_on_a_running_hub_applies_to_the_next_reading(
    hub_config: HubConfig, db: asyncpg.Connection, producer: AIOKafkaProducer, unique: str
) -> None:
    async with _resident_actor(hub_config, db, producer, unique) as (hub, key):
        await provision_resource(db, f"cust-{unique}", "bandwidth", 1000)
        await until(lambda: hub.registry.get(key) is None)  # NOTIFY retires the actor
        await _next_reading_warns(hub_config, db, producer, key)
        assert await db.fetchval(TOTAL, key) == 860


@pytest.mark.slow
async def test_two_hubs_in_one_group_keep_totals_exact_across_rebalances(
    hub_config: HubConfig, db: asyncpg.Connection, producer: AIOKafkaProducer, unique: str
) -> None:
    keys = [await provision_resource(db, f"c{i}-{unique}", "bandwidth", None) for i in range(12)]
    step = 0

    async def round_of_readings() -> None:
        nonlocal step
        for key in keys:
            await send(producer, hub_config.usage_topic, reading(key, step, 1000 + step))
        step += 1

    def expected() -> int:
        return sum(1000 + s for s in range(step)) * len(keys)

    total_sql = "SELECT sum(current_usage) FROM customer_resources"
    with anyio.fail_after(110):
        async with anyio.create_task_group() as outer:
            first: RunningHub = await outer.start(run_hub, hub_config)
            await round_of_readings()
            await wait_for(db, total_sql, expected())
            async with anyio.create_task_group() as inner:
                await inner.start(run_hub, hub_config)  # joins the group: a rebalance
                for _ in range(3):
                    await round_of_readings()
                await wait_for(db, total_sql, expected())
                inner.cancel_scope.cancel()  # leaves the group: another rebalance
            await round_of_readings()
            await wait_for(db, total_sql, expected())
            assert first.consumer.batches > 0
            assert await db.fetchval("SELECT sum(metric_value) FROM usage_metrics") == expected()
            assert await db.fetchval("SELECT count(*) FROM usage_metrics") == 5 * len(keys)
            outer.cancel_scope.cancel()


async def test_a_batch_that_fails_to_commit_is_retried_without_double_counting(
    hub_config: HubConfig, db: asyncpg.Connection, producer: AIOKafkaProducer, unique: str
) -> None:
    key = await provision_resource(db, f"cust-{unique}", "bandwidth", 1000)
    # a test-only trigger refuses inserts into usage_metrics while a flag row exists
    await db.execute(
        """CREATE TABLE refuse (x int);
           CREATE FUNCTION refuse_insert() RETURNS trigger LANGUAGE plpgsql AS $$
           BEGIN
               IF EXISTS (SELECT 1 FROM refuse) THEN RAISE EXCEPTION 'refused by test'; END IF;
               RETURN NEW;
           END $$;
           CREATE TRIGGER refuse_insert BEFORE INSERT ON usage_metrics
               FOR EACH ROW EXECUTE FUNCTION refuse_insert();
           INSERT INTO refuse VALUES (1);"""
    )
    with anyio.fail_after(60):
        async with anyio.create_task_group() as tg:
            hub: RunningHub = await tg.start(run_hub, hub_config)
            for i in range(3):
                await send(producer, hub_config.usage_topic, reading(key, i, 300))
            await until(lambda: sample(hub.metrics, "resmon_hub_batch_failures_total") >= 2)
            assert await db.fetchval(TOTAL, key) == 0
            assert await db.fetchval("SELECT count(*) FROM processed_events") == 0
            await db.execute("DELETE FROM refuse")
            await wait_for(db, TOTAL, 900, key)
            await send(producer, hub_config.usage_topic, reading(key, 3, 50))
            await wait_for(db, TOTAL, 950, key)
            types = await db.fetch("SELECT alert_type FROM alerts ORDER BY created_at")
            assert [t["alert_type"] for t in types] == ["THRESHOLD_WARNING", "THRESHOLD_CRITICAL"]
            tg.cancel_scope.cancel()


async def test_usage_gaps_are_recorded_once(
    hub_config: HubConfig, db: asyncpg.Connection, producer: AIOKafkaProducer, unique: str
) -> None:
    gap = UsageGap(
        customer_id=f"cust-{unique}",
        resource_type="bandwidth",
        resource_key=f"cust-{unique}/bandwidth",
        start_ms=T0,
        end_ms=T0 + 300_000,
        reason="reboot",
        device="r1",
        interface="ge-0/0/1",
        detail="sysUpTime went back",
    )
    record = encode_event(gap, source="urn:test")
    with anyio.fail_after(60):
        async with anyio.create_task_group() as tg:
            hub: RunningHub = await tg.start(run_hub, hub_config)
            for _ in range(2):
                await producer.send_and_wait(
                    hub_config.usage_topic,
                    value=record.value,
                    key=record.key,
                    headers=record.headers,
                )
            await until(lambda: sample(hub.metrics, "resmon_hub_duplicates_dropped_total") == 1)
            rows = await db.fetch("SELECT reason, detail, metadata FROM usage_gaps")
            assert [(r["reason"], r["detail"]) for r in rows] == [("reboot", "sysUpTime went back")]
            assert json.loads(rows[0]["metadata"]) == {"device": "r1", "interface": "ge-0/0/1"}
            tg.cancel_scope.cancel()


async def test_a_flood_of_resource_changes_reloads_every_actor_instead_of_dropping_any(
    hub_config: HubConfig, db: asyncpg.Connection, producer: AIOKafkaProducer, unique: str
) -> None:
    """More change notices than the watcher's queue holds: none of them is lost."""
    async with _resident_actor(hub_config, db, producer, unique) as (hub, key):
        # a bulk change: 5,000 notices arrive at one commit, this resource's last
        async with db.transaction():
            await db.execute(
                "SELECT pg_notify('resmon_resource_changed', 'bulk-' || g || '/bandwidth') "
                "FROM generate_series(1, 5000) g"
            )
            await db.execute(
                "UPDATE customer_resources SET limit_value = 1000 WHERE resource_key = $1", key
            )
            await db.execute("SELECT pg_notify('resmon_resource_changed', $1)", key)
        await until(lambda: sample(hub.metrics, "resmon_hub_resource_change_overflows_total") >= 1)
        await until(lambda: hub.registry.get(key) is None)
        await _next_reading_warns(hub_config, db, producer, key)


async def test_a_lost_change_listener_reconnects_and_reloads_every_actor(
    hub_config: HubConfig, db: asyncpg.Connection, producer: AIOKafkaProducer, unique: str
) -> None:
    """Notices sent while the listening connection was down cannot be missed."""
    cached = f"{hub_config.redis_prefix}:usage:cust-{unique}"
    async with _resident_actor(hub_config, db, producer, unique) as (hub, key):
        await until(lambda: hub.cache.client.exists(cached))
        # the listening connection ends (a PostgreSQL restart, a cut), and a limit
        # changes meanwhile with nobody listening
        killed = await db.fetchval(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = current_database() AND query LIKE 'LISTEN %'"
        )
        assert killed >= 1  # ours (an earlier test's hub may still be closing)
        await db.execute(
            "UPDATE customer_resources SET limit_value = 1000 WHERE resource_key = $1", key
        )
        await until(lambda: sample(hub.metrics, "resmon_hub_resource_change_overflows_total") >= 1)
        assert hub.registry.get(key) is None
        assert not await hub.cache.client.exists(cached)  # counted after the drop
        await _next_reading_warns(hub_config, db, producer, key)
        # and it listens again
        await provision_resource(db, f"cust-{unique}", "bandwidth", 2000)
        await until(lambda: hub.registry.get(key) is None)


async def test_records_postgresql_would_refuse_are_dead_lettered_not_retried_forever(
    hub_config: HubConfig, db: asyncpg.Connection, producer: AIOKafkaProducer, unique: str
) -> None:
    """A reading the database cannot store would fail its batch on every retry."""
    key = await provision_resource(db, f"cust-{unique}", "bandwidth", None)
    good = reading(key, 0, 500)
    bad = [
        msgspec.structs.replace(good, source="s" * 60),  # usage_metrics.source is 50 chars
        msgspec.structs.replace(  # ends a year ahead: would start next year's period now
            good, start_ms=now_ms() + 365 * 86_400_000, end_ms=now_ms() + 366 * 86_400_000
        ),
        msgspec.structs.replace(
            good, customer_id="a\u0000b", resource_key="a\u0000b/bandwidth", device=None
        ),
    ]
    with anyio.fail_after(60):
        async with anyio.create_task_group() as tg:
            await tg.start(run_hub, hub_config)
            for r in bad:
                await send(producer, hub_config.usage_topic, r)
            await send(producer, hub_config.usage_topic, reading(key, 1, 500))
            await wait_for(db, TOTAL, 500, key)
            await wait_for(db, "SELECT count(*) FROM dead_letters", 3)
            reasons = sorted(r["reason"] for r in await db.fetch("SELECT reason FROM dead_letters"))
            tg.cancel_scope.cancel()
    assert reasons[0].startswith("invalid: customerId contains a NUL")
    assert reasons[1].startswith("invalid: endMs")
    assert "ahead of this hub's clock" in reasons[1]
    assert reasons[2] == "invalid: source is 60 characters long; at most 50"
