"""PostgreSQL going away under a running hub: it reconnects, counts it, and loses nothing.

A fast restart of PostgreSQL (``pg_ctl restart -m fast``) ends every session
with ``admin_shutdown`` (SQLSTATE 57P01); ``pg_terminate_backend`` sends the
same to the hub's sessions without restarting the server others share.
"""

from __future__ import annotations

import anyio
import asyncpg  # type: ignore[import-untyped]
import pytest
from _hub_testing import until, wait_for
from aiokafka import AIOKafkaProducer

from hub import HubConfig, RunningHub, provision_resource, run_hub
from protocol import UsageReading, encode_event

pytestmark = [pytest.mark.integration, pytest.mark.anyio]

T0 = 1_764_000_000_000
TOTAL = "SELECT current_usage FROM customer_resources WHERE resource_key = $1"
TERMINATE = """SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
               WHERE datname = current_database() AND pid <> pg_backend_pid()"""


async def _send(producer: AIOKafkaProducer, topic: str, key: str, i: int) -> None:
    r = UsageReading(
        customer_id=key.split("/")[0],
        resource_type="bandwidth",
        resource_key=key,
        value=1_000,
        unit="byte",
        start_ms=T0 + i * 60_000,
        end_ms=T0 + (i + 1) * 60_000,
    )
    record = encode_event(r, source="urn:test")
    await producer.send_and_wait(topic, value=record.value, key=record.key, headers=record.headers)


async def test_the_hub_survives_its_database_sessions_ending_and_counts_every_reading(
    hub_config: HubConfig, db: asyncpg.Connection, producer: AIOKafkaProducer, unique: str
) -> None:
    key = await provision_resource(db, f"cust-{unique}", "bandwidth", None)
    topic = hub_config.usage_topic
    with anyio.fail_after(90):
        async with anyio.create_task_group() as tg:
            hub: RunningHub = await tg.start(run_hub, hub_config)
            for i in range(5):
                await _send(producer, topic, key, i)
            await wait_for(db, TOTAL, 5_000, key)
            for round_ in range(3):
                assert await db.fetchval(TERMINATE) >= 1
                for i in range(5):
                    await _send(producer, topic, key, 5 + round_ * 5 + i)
                await wait_for(db, TOTAL, 5_000 * (round_ + 2), key)
            # the change listener is back: a limit change reaches the running hub
            await until(
                lambda: (
                    (
                        hub.metrics.registry.get_sample_value(
                            "resmon_hub_resource_change_overflows_total"
                        )
                        or 0
                    )
                    >= 1
                )
            )
            assert await db.fetchval("SELECT count(*) FROM usage_metrics") == 20
            tg.cancel_scope.cancel()
