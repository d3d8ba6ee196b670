"""Stored offsets that lie outside the broker's log: resume from its start, count it.

The ahead-of-the-log case runs on the real broker (a fresh topic, offsets in
PostgreSQL from an earlier life). The embedded broker does not implement
DeleteRecords, so the behind-the-log-start case drives the consumer's bounds
check with a consumer stand-in that reports a log start past the stored
offset, against the real PostgreSQL.
"""

from __future__ import annotations

from typing import Any
from zoneinfo import ZoneInfo

import anyio
import asyncpg  # type: ignore[import-untyped]
import pytest
from _hub_testing import minute_reading, wait_for
from aiokafka import AIOKafkaProducer, TopicPartition

from hub import HubConfig, RunningHub, provision_resource, run_hub
from hub.actors import Registry
from hub.consumer import UsageConsumer
from hub.metrics import HubMetrics
from protocol import encode_event

pytestmark = [pytest.mark.integration, pytest.mark.anyio]

TOTAL = "SELECT current_usage FROM customer_resources WHERE resource_key = $1"
OFFSETS = "SELECT partition, next_offset FROM consumer_offsets WHERE consumer_group = $1"


def _resets(hub_metrics: HubMetrics) -> float:
    return sum(
        s.value
        for m in hub_metrics.registry.collect()
        if m.name == "resmon_hub_offset_resets"
        for s in m.samples
        if s.name.endswith("_total")
    )


async def test_offsets_stored_past_the_end_of_a_fresh_log_bill_every_new_reading(
    hub_config: HubConfig, db: asyncpg.Connection, producer: AIOKafkaProducer, unique: str
) -> None:
    key = await provision_resource(db, f"cust-{unique}", "bandwidth", None)
    # an earlier life of the topic had consumed 1,000 records of every partition
    for p in range(hub_config.usage_partitions):
        await db.execute(
            "INSERT INTO consumer_offsets (consumer_group, topic, partition, next_offset) "
            "VALUES ($1, $2, $3, 1000)",
            hub_config.consumer_group,
            hub_config.usage_topic,
            p,
        )
    values = [1_000 + i for i in range(20)]
    with anyio.fail_after(60):
        async with anyio.create_task_group() as tg:
            hub: RunningHub = await tg.start(run_hub, hub_config)
            for i, v in enumerate(values):
                record = encode_event(minute_reading(key, i, v), source="urn:test")
                await producer.send_and_wait(
                    hub_config.usage_topic,
                    value=record.value,
                    key=record.key,
                    headers=record.headers,
                )
            await wait_for(db, TOTAL, sum(values), key)
            assert _resets(hub.metrics) == hub_config.usage_partitions
            stored = dict(await db.fetch(OFFSETS, hub_config.consumer_group))
            assert sum(stored.values()) == len(values)  # moved back, then on with the log
            tg.cancel_scope.cancel()


class _Log:
    """Answers the two log-bound requests the consumer makes, for one partition."""

    def __init__(self, start: int, end: int) -> None:
        self.start, self.end = start, end
        self.seeks: list[tuple[TopicPartition, int]] = []

    async def beginning_offsets(self, tps: list[TopicPartition]) -> dict[TopicPartition, int]:
        return dict.fromkeys(tps, self.start)

    async def end_offsets(self, tps: list[TopicPartition]) -> dict[TopicPartition, int]:
        return dict.fromkeys(tps, self.end)

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self.seeks.append((tp, offset))


@pytest.mark.parametrize(
    ("stored", "start", "end", "resumed"),
    [
        (40, 100, 150, 100),  # retention removed 60 records never consumed
        (500, 0, 150, 0),  # the log was reset
        (120, 100, 150, 120),  # inside the log: kept
        (150, 100, 150, 150),  # at its end: kept
    ],
)
async def test_a_stored_offset_outside_the_log_resumes_at_its_start(
    hub_config: HubConfig,
    db: asyncpg.Connection,
    stored: int,
    start: int,
    end: int,
    resumed: int,
) -> None:
    await db.execute(
        "INSERT INTO consumer_offsets (consumer_group, topic, partition, next_offset) "
        "VALUES ($1, $2, 0, $3)",
        hub_config.consumer_group,
        hub_config.usage_topic,
        stored,
    )
    pool = await asyncpg.create_pool(hub_config.database_url, min_size=1, max_size=2)
    try:
        metrics = HubMetrics()
        consumer = UsageConsumer(
            hub_config,
            pool,
            Registry(pool, tz=ZoneInfo("UTC")),
            outbox=Any,
            metrics=metrics,  # type: ignore[arg-type]
        )
        log = _Log(start, end)
        tp = TopicPartition(hub_config.usage_topic, 0)
        await consumer.seek_to_stored(log, [tp])  # type: ignore[arg-type]
        assert log.seeks == [(tp, resumed)]
        assert consumer.positions == {0: resumed}
        assert dict(await db.fetch(OFFSETS, hub_config.consumer_group)) == {0: resumed}
        assert _resets(metrics) == (0 if resumed == stored else 1)
    finally:
        await pool.close()
