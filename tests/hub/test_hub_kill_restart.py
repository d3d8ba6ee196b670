"""kill -9 of a hub in the middle of a replay, then a restart: nothing lost, nothing doubled."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import anyio
import asyncpg  # type: ignore[import-untyped]
import pytest
from _hub_testing import until
from _procs import HubProcess
from _series import model_alerts
from aiokafka import AIOKafkaProducer

from hub import HubConfig, migrate, provision_resource
from protocol import UsageReading, encode_event

pytestmark = [pytest.mark.integration, pytest.mark.anyio, pytest.mark.slow]

T0 = 1_764_547_200_000  # 2025-12-01T00:00:00Z
RESOURCES = 200
PER_RESOURCE = 500  # 100,000 readings
LIMIT = 450_000


def series(key: str, n: int = PER_RESOURCE) -> list[UsageReading]:
    customer, rtype = key.split("/")[:2]
    seed = sum(key.encode())
    return [
        UsageReading(
            customer_id=customer,
            resource_type=rtype,
            resource_key=key,
            value=1000 + ((i * 7919 + seed) % 201 - 100),
            unit="byte",
            start_ms=T0 + i * 60_000,
            end_ms=T0 + (i + 1) * 60_000,
        )
        for i in range(n)
    ]


async def produce(
    producer: AIOKafkaProducer, topic: str, per_key: list[list[UsageReading]]
) -> None:
    for i in range(len(per_key[0])):
        for readings in per_key:
            rec = encode_event(readings[i], source="urn:test")
            await producer.send(topic, value=rec.value, key=rec.key, headers=rec.headers)
    await producer.flush()


async def check_exact(
    db: asyncpg.Connection, keys: list[str], per_key: list[list[UsageReading]]
) -> None:
    rows = await db.fetch("SELECT resource_key, current_usage FROM customer_resources")
    assert {r["resource_key"]: r["current_usage"] for r in rows} == {
        k: sum(r.value for r in rs) for k, rs in zip(keys, per_key, strict=True)
    }
    assert await db.fetchval("SELECT count(*) FROM usage_metrics") == sum(map(len, per_key))
    month = await db.fetchval(
        "SELECT sum(total_usage) FROM usage_aggregates WHERE period_type = 'month'"
    )
    assert month == sum(r.value for rs in per_key for r in rs)
    alerts = await db.fetch(
        """SELECT cr.resource_key, a.alert_type, a.status, a.resolution FROM alerts a
           JOIN customer_resources cr ON cr.id = a.customer_resource_id"""
    )
    got = Counter((a["resource_key"], a["alert_type"]) for a in alerts)
    expected: Counter[tuple[str, str]] = Counter()
    for key, rs in zip(keys, per_key, strict=True):
        for alert_type, status in model_alerts(rs, LIMIT):
            if status == "ACTIVE":  # a row per raised episode
                expected[(key, alert_type)] += 1
    assert got == expected
    assert sum(expected.values()) >= 2 * len(keys)  # warning + critical each, at least


async def test_kill_9_mid_replay_of_100k_readings_then_restart_keeps_totals_and_alerts_exact(
    hub_config: HubConfig, producer: AIOKafkaProducer, unique: str, tmp_path: Path
) -> None:
    await migrate(hub_config.database_url)
    db = await asyncpg.connect(hub_config.database_url)
    hubs: list[HubProcess] = []
    try:
        keys = [
            await provision_resource(db, f"c{i:03d}-{unique}", "bandwidth", LIMIT)
            for i in range(RESOURCES)
        ]
        per_key = [series(k) for k in keys]
        with anyio.fail_after(120):
            await produce(producer, hub_config.usage_topic, per_key)
            hubs.append(HubProcess(hub_config, tmp_path / "hub1.log"))
            done = "SELECT count(*) FROM processed_events"
            await until(lambda: _at_least(db, done, 30_000), interval=0.05)
            hubs[0].kill()
            partial = await db.fetchval(done)
            assert partial < RESOURCES * PER_RESOURCE  # killed mid-replay
            hubs.append(HubProcess(hub_config, tmp_path / "hub2.log"))
            await until(lambda: _at_least(db, done, RESOURCES * PER_RESOURCE), interval=0.1)
            await until(lambda: _at_least(db, "SELECT 1 - count(*) FROM hub_outbox", 1))
            await check_exact(db, keys, per_key)
    finally:
        for h in hubs:
            if h.proc.poll() is None:
                h.stop()
        await db.close()


async def _at_least(db: asyncpg.Connection, sql: str, n: int) -> bool:
    return bool(await db.fetchval(sql) >= n)
