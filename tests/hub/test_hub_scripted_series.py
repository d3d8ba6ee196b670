"""A scripted month of readings gives exactly the expected alerts, events and totals."""

from __future__ import annotations

from decimal import Decimal

import anyio
import asyncpg  # type: ignore[import-untyped]
import pytest
from _hub_testing import until, wait_for
from _series import COUNT, DEC, LIMIT, SPIKE, STEP, first_index_reaching, reading, value
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from hub import HubConfig, RunningHub, provision_resource, run_hub
from protocol import TYPE_ALERT, TYPE_THRESHOLD, AlertEvent, decode_record, encode_event

pytestmark = [pytest.mark.integration, pytest.mark.anyio]

TOTAL = "SELECT current_usage FROM customer_resources WHERE resource_key = $1"


async def read_events(config: HubConfig, expected: int) -> list[tuple[str, str, AlertEvent]]:
    consumer = AIOKafkaConsumer(
        config.alerts_topic,
        bootstrap_servers=config.kafka_bootstrap_servers,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    out: list[tuple[str, str, AlertEvent]] = []
    try:
        while len(out) < expected:
            batch = await consumer.getmany(timeout_ms=200)
            for records in batch.values():
                for rec in records:
                    ev = decode_record(rec.value, rec.headers)
                    assert isinstance(ev.data, AlertEvent)
                    out.append((ev.id, ev.type, ev.data))
        extra = await consumer.getmany(timeout_ms=500)  # and nothing more
        assert not any(extra.values())
    finally:
        await consumer.stop()
    return sorted(out, key=lambda e: (e[2].at_ms, e[2].alert_type))


async def test_a_scripted_month_gives_forecast_anomaly_warning_escalation_and_resolution_exactly(
    hub_config: HubConfig, db: asyncpg.Connection, producer: AIOKafkaProducer, unique: str
) -> None:
    key = await provision_resource(db, f"cust-{unique}", "bandwidth", LIMIT)
    warn_i = first_index_reaching(8000)
    crit_i = first_index_reaching(9500)
    assert SPIKE < warn_i < crit_i < COUNT
    november = sum(value(i) for i in range(COUNT))
    december = 123_456
    with anyio.fail_after(90):
        async with anyio.create_task_group() as tg:
            hub: RunningHub = await tg.start(run_hub, hub_config)
            for i in range(COUNT):
                record = encode_event(reading(key, i), source="urn:test")
                await producer.send(
                    hub_config.usage_topic,
                    value=record.value,
                    key=record.key,
                    headers=record.headers,
                )
            await producer.flush()
            await wait_for(db, TOTAL, november, key)
            record = encode_event(reading(key, 0, december, start=DEC), source="urn:test")
            await producer.send_and_wait(
                hub_config.usage_topic, value=record.value, key=record.key, headers=record.headers
            )
            await wait_for(db, TOTAL, december, key)
            await until(lambda: hub.consumer.outbox.delivered >= 1 and hub.metrics.alerts)
            alerts = await db.fetch(
                "SELECT alert_type, severity, status, resolution, forecast_at, confidence, "
                "z_score, message FROM alerts ORDER BY alert_type"
            )
            # the month's raw rows, aggregates and exact cost
            assert await db.fetchval("SELECT count(*) FROM usage_metrics") == COUNT + 1
            assert await db.fetchval("SELECT sum(metric_value) FROM usage_metrics") == (
                november + december
            )
            month = await db.fetchrow(
                "SELECT total_usage, sample_count, min_usage, max_usage, avg_usage, cost "
                "FROM usage_aggregates WHERE period_type = 'month' ORDER BY period_start LIMIT 1"
            )
            assert month["total_usage"] == november
            assert month["sample_count"] == COUNT
            assert month["min_usage"] == min(value(i) for i in range(COUNT))
            assert month["max_usage"] == 10_000_000
            assert month["avg_usage"] == (Decimal(november) / COUNT).quantize(Decimal("0.0001"))
            # 0.10 per GB (the catalog's "Internet 100Mbps"), exact to 4 decimals
            assert month["cost"] == (Decimal(november) / 10**9 * Decimal("0.10")).quantize(
                Decimal("0.0001")
            )
            hours = await db.fetchval(
                "SELECT sum(total_usage) FROM usage_aggregates WHERE period_type = 'hour'"
            )
            assert hours == november + december
            await wait_for(db, "SELECT count(*) FROM hub_outbox", 0)  # deleted after delivery
            tg.cancel_scope.cancel()

    # one row per episode, all closed: the month ended
    assert [(a["alert_type"], a["severity"], a["status"], a["resolution"]) for a in alerts] == [
        ("ANOMALY_DETECTED", "MEDIUM", "RESOLVED", "recovered"),
        ("FORECAST_LIMIT", "MEDIUM", "RESOLVED", "recovered"),
        ("THRESHOLD_CRITICAL", "CRITICAL", "RESOLVED", "recovered"),
        ("THRESHOLD_WARNING", "HIGH", "RESOLVED", "escalated"),
    ]
    forecast = alerts[1]
    assert forecast["confidence"] == Decimal("100.00")
    assert "will reach 100 % of its 2 GB limit on 2025-11-" in forecast["message"]
    assert forecast["forecast_at"].strftime("%Y-%m-%d %H:%M UTC") in forecast["message"]
    assert alerts[0]["z_score"] > 3

    events = await read_events(hub_config, expected=7)
    assert [(t, e.alert_type, e.status, e.at_ms) for _, t, e in events] == [
        (TYPE_THRESHOLD, "FORECAST_LIMIT", "ACTIVE", reading(key, 10).end_ms),
        (TYPE_ALERT, "ANOMALY_DETECTED", "ACTIVE", reading(key, SPIKE).end_ms),
        (TYPE_ALERT, "ANOMALY_DETECTED", "RESOLVED", reading(key, SPIKE + 1).end_ms),
        (TYPE_THRESHOLD, "THRESHOLD_WARNING", "ACTIVE", reading(key, warn_i).end_ms),
        (TYPE_THRESHOLD, "THRESHOLD_CRITICAL", "ACTIVE", reading(key, crit_i).end_ms),
        (TYPE_THRESHOLD, "FORECAST_LIMIT", "RESOLVED", DEC + STEP),
        (TYPE_THRESHOLD, "THRESHOLD_CRITICAL", "RESOLVED", DEC + STEP),
    ]
    assert len({eid for eid, _, _ in events}) == 7
    # the published events carry what the rows do: the forecast's date and confidence,
    # the anomaly's z-score
    published_forecast, published_anomaly = events[0][2], events[1][2]
    assert published_forecast.forecast_at_ms == int(forecast["forecast_at"].timestamp() * 1000)
    assert published_forecast.confidence == Decimal("100.00")
    assert published_forecast.z_score is None
    assert published_anomaly.z_score == alerts[0]["z_score"]
    assert published_anomaly.forecast_at_ms is None
