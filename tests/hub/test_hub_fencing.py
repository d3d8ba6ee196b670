"""Fencing: a hub whose partitions another instance moved on never writes stale totals.

An instance that lost its group membership without hearing of it may still
hold a partition's actors and fetch its records. Every batch moves its
partitions' offsets in PostgreSQL compare-and-set, from the offsets the
instance last saw stored, before writing anything; if another instance got
there first the batch is dropped and the partition starts over from
PostgreSQL.
"""

from __future__ import annotations

import anyio
import asyncpg  # type: ignore[import-untyped]
import pytest
from _hub_testing import wait_for
from aiokafka import AIOKafkaProducer

from hub import FencedError, HubConfig, RunningHub, provision_resource, run_hub
from hub.storage.batch import OffsetMove, advance_offsets, claim_events, stored_offsets
from protocol import UsageReading, encode_event

pytestmark = [pytest.mark.integration, pytest.mark.anyio]

T0 = 1_764_000_000_000
VALUE = 1_000


def _reading(key: str, i: int) -> UsageReading:
    customer, rtype = key.split("/")[:2]
    return UsageReading(
        customer_id=customer,
        resource_type=rtype,
        resource_key=key,
        value=VALUE,
        unit="byte",
        start_ms=T0 + i * 60_000,
        end_ms=T0 + (i + 1) * 60_000,
    )


async def test_offsets_move_only_from_the_offset_the_batch_started_from(
    db: asyncpg.Connection, unique: str
) -> None:
    group = f"g-{unique}"
    first = [OffsetMove("t", 0, None, 10), OffsetMove("t", 1, None, 5)]
    assert await advance_offsets(db, group, first) == {0: 10, 1: 5}
    # a second instance that also believed it was first loses
    with pytest.raises(FencedError) as fenced:
        await advance_offsets(db, group, [OffsetMove("t", 1, None, 7)])
    assert fenced.value.partitions == [1]
    assert await advance_offsets(db, group, [OffsetMove("t", 0, 10, 20)]) == {0: 20}
    # a stale start on one partition fences the whole batch, and in a transaction
    # nothing of it stays
    with pytest.raises(FencedError) as fenced:
        async with db.transaction():
            await advance_offsets(db, group, [OffsetMove("t", 0, 20, 30), OffsetMove("t", 1, 4, 9)])
    assert fenced.value.partitions == [1]
    assert await stored_offsets(db, group, "t") == {0: 20, 1: 5}
    # offsets never go back, even from the right start
    assert await advance_offsets(db, group, [OffsetMove("t", 0, 20, 3)]) == {0: 20}


async def test_a_batch_behind_another_instance_is_dropped_and_totals_rebuilt(
    hub_config: HubConfig, db: asyncpg.Connection, producer: AIOKafkaProducer, unique: str
) -> None:
    key = await provision_resource(db, f"cust-{unique}", "bandwidth", None)
    topic = hub_config.usage_topic
    total = "SELECT current_usage FROM customer_resources WHERE resource_key = $1"
    moved = "SELECT coalesce(sum(next_offset), 0) FROM consumer_offsets WHERE consumer_group = $1"

    async def send(i: int) -> str:
        rec = encode_event(_reading(key, i), source="urn:test")
        await producer.send_and_wait(topic, value=rec.value, key=rec.key, headers=rec.headers)
        return rec.event_id

    with anyio.fail_after(60):
        async with anyio.create_task_group() as tg:
            hub: RunningHub = await tg.start(run_hub, hub_config)
            for i in range(10):
                await send(i)
            await wait_for(db, total, 10 * VALUE, key)
            await wait_for(db, moved, 10, hub_config.consumer_group)

            # Another instance, in this hub's blind spot, applies readings 10..14:
            # their effects, their ids and the partition's offset, in one transaction.
            theirs = [_reading(key, i) for i in range(10, 15)]
            ids = [encode_event(r, source="urn:test").event_id for r in theirs]
            async with db.transaction():
                await db.execute(
                    "UPDATE customer_resources SET current_usage = current_usage + $2 "
                    "WHERE resource_key = $1",
                    key,
                    5 * VALUE,
                )
                async with db.transaction():
                    await claim_events(
                        db, [(i, r.end_ms) for i, r in zip(ids, theirs, strict=True)]
                    )
                await db.execute(
                    "UPDATE consumer_offsets SET next_offset = 15 "
                    "WHERE consumer_group = $1 AND next_offset = 10",
                    hub_config.consumer_group,
                )
            # ... and this hub then fetches the same records: its batch starts at 10
            for i in range(10, 15):
                await send(i)
            await anyio.sleep(1.0)  # time to fetch them and be fenced
            for i in range(15, 20):
                await send(i)
            # rebuilt from PostgreSQL (15 readings' worth) + 5 = 20, not the stale
            # in-memory 10 + 5 = 15 written over the other instance's work
            await wait_for(db, moved, 20, hub_config.consumer_group)
            assert await db.fetchval(total, key) == 20 * VALUE
            assert hub.metrics.batches_fenced._value.get() >= 1
            assert hub.metrics.readings._value.get() == 15
            tg.cancel_scope.cancel()
