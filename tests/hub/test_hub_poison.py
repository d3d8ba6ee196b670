"""Single records that used to stop all accounting on their partition.

Each is sent between valid readings to a running hub on the real broker,
PostgreSQL and Redis; the valid readings must be counted to the byte, the bad
record dead-lettered with its reason, and the hub must stay up.
"""

from __future__ import annotations

from decimal import Decimal

import anyio
import asyncpg  # type: ignore[import-untyped]
import pytest
from _hub_testing import minute_reading, send_reading, wait_for
from aiokafka import AIOKafkaProducer

from hub import HubConfig, RunningHub, provision_resource, run_hub
from protocol import UsageReading, encode_event

pytestmark = [pytest.mark.integration, pytest.mark.anyio]

TOTAL = "SELECT current_usage FROM customer_resources WHERE resource_key = $1"


async def _send(
    producer: AIOKafkaProducer, topic: str, r: UsageReading, value: bytes | None = None
) -> None:
    """Send ``r``'s record, with ``value`` in place of its data when given."""
    await send_reading(producer, topic, r, value=value)


async def _send_reading(producer: AIOKafkaProducer, topic: str, r: UsageReading) -> None:
    await _send(producer, topic, r)


def _counter(hub: RunningHub, name: str) -> float:
    return hub.metrics.registry.get_sample_value(name) or 0.0


async def test_invalid_utf8_and_a_huge_count_between_valid_readings_neither_stops_accounting(
    hub_config: HubConfig, db: asyncpg.Connection, producer: AIOKafkaProducer, unique: str
) -> None:
    customer = f"cust-{unique}"
    bw = await provision_resource(db, customer, "bandwidth", None)
    api = await provision_resource(db, customer, "api_calls", None)
    topic = hub_config.usage_topic
    with anyio.fail_after(60):
        async with anyio.create_task_group() as tg:
            hub: RunningHub = await tg.start(run_hub, hub_config)
            await _send_reading(producer, topic, minute_reading(bw, 0, 1_000))
            poison = minute_reading(bw, 1, 2_000)
            raw = encode_event(poison, source="urn:test").value
            garbled = raw.replace(customer.encode(), customer.encode() + b"\xff", 1)
            assert garbled != raw
            await _send(producer, topic, poison, garbled)
            await _send_reading(producer, topic, minute_reading(bw, 2, 3_000))
            # 10^17 requests at the catalog's 0.001 a request: a cost of 10^14
            await _send_reading(producer, topic, minute_reading(api, 3, 10**17))
            await _send_reading(producer, topic, minute_reading(api, 4, 5))
            await _send_reading(producer, topic, minute_reading(bw, 5, 4_000))
            await wait_for(db, TOTAL, 8_000, bw)
            await wait_for(db, TOTAL, 10**17 + 5, api)
            dead = await db.fetch("SELECT reason FROM dead_letters")
            assert len(dead) == 1
            assert "undecodable" in dead[0]["reason"]
            assert "UTF-8" in dead[0]["reason"]
            cost = await db.fetchval(
                "SELECT a.cost FROM usage_aggregates a JOIN customer_resources r "
                "ON r.id = a.customer_resource_id "
                "WHERE r.resource_key = $1 AND a.period_type = 'month'",
                api,
            )
            assert cost == (10**17 + 5) * Decimal("0.001")
            assert _counter(hub, "resmon_hub_batch_failures_total") == 0
            tg.cancel_scope.cancel()


async def test_a_record_postgresql_refuses_is_isolated_and_dead_lettered_the_rest_counted(
    hub_config: HubConfig, db: asyncpg.Connection, producer: AIOKafkaProducer, unique: str
) -> None:
    key = await provision_resource(db, f"cust-{unique}", "bandwidth", None)
    # stands in for any value the database refuses that the hub's checks let through
    await db.execute(
        "ALTER TABLE usage_metrics ADD CONSTRAINT refuse_13 CHECK (metric_value <> 13)"
    )
    topic = hub_config.usage_topic
    values = [100, 200, 13, 400, 500, 600]
    with anyio.fail_after(60):
        async with anyio.create_task_group() as tg:
            hub: RunningHub = await tg.start(run_hub, hub_config)
            for i, v in enumerate(values):
                await _send_reading(producer, topic, minute_reading(key, i, v))
            await wait_for(db, TOTAL, sum(values) - 13, key)
            await wait_for(db, "SELECT count(*) FROM dead_letters", 1)
            reason = await db.fetchval("SELECT reason FROM dead_letters")
            assert reason.startswith("refused by PostgreSQL")
            assert "refuse_13" in reason
            assert await db.fetchval("SELECT count(*) FROM usage_metrics") == len(values) - 1
            # the next batch goes straight through
            await _send_reading(producer, topic, minute_reading(key, 10, 7))
            await wait_for(db, TOTAL, sum(values) - 13 + 7, key)
            assert _counter(hub, "resmon_hub_batches_isolated_total") >= 1
            stored = await db.fetchval(
                "SELECT sum(next_offset) FROM consumer_offsets WHERE consumer_group = $1",
                hub_config.consumer_group,
            )
            assert stored == len(values) + 1
            tg.cancel_scope.cancel()
