"""Fencing: a hub whose partitions another instance moved on never writes stale totals.

An instance that lost its group membership without hearing of it may still
hold a partition's actors and fetch its records. Every batch moves its
partitions' offsets in PostgreSQL compare-and-set, from the offsets the
instance last saw stored, before writing anything; if another instance got
there first the batch is dropped and the partition starts over from
PostgreSQL.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import anyio
import asyncpg  # type: ignore[import-untyped]
import pytest
from _hub_testing import T0, minute_reading, sample, until, wait_for
from aiokafka import AIOKafkaProducer, TopicPartition

from hub import FencedError, HubConfig, RunningHub, provision_resource, run_hub
from hub._exceptions import StorageError
from hub.consumer import _Rebalance
from hub.storage.batch import (
    OffsetMove,
    TotalRow,
    advance_offsets,
    claim_events,
    event_key,
    stored_offsets,
    write_batch,
)
from hub.storage.provision import load_resource
from protocol import UsageReading, encode_event

pytestmark = [pytest.mark.integration, pytest.mark.anyio]

VALUE = 1_000


def _reading(key: str, i: int) -> UsageReading:
    return minute_reading(key, i, VALUE)


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
                        db,
                        [
                            (event_key("urn:test", i), i, r.end_ms)
                            for i, r in zip(ids, theirs, strict=True)
                        ],
                    )
                await db.execute(
                    "UPDATE consumer_offsets SET next_offset = 15 "
                    "WHERE consumer_group = $1 AND next_offset = 10",
                    hub_config.consumer_group,
                )
            # ... and this hub then fetches the same records: its batch starts at 10
            for i in range(10, 15):
                await send(i)
            # it fetches them and is fenced (the other instance moved the offsets)
            await until(lambda: sample(hub.metrics, "resmon_hub_batches_fenced_total") >= 1)
            for i in range(15, 20):
                await send(i)
            # rebuilt from PostgreSQL (15 readings' worth) + 5 = 20, not the stale
            # in-memory 10 + 5 = 15 written over the other instance's work
            await wait_for(db, moved, 20, hub_config.consumer_group)
            assert await db.fetchval(_TOTAL, key) == 20 * VALUE
            assert sample(hub.metrics, "resmon_hub_batches_fenced_total") >= 1
            assert sample(hub.metrics, "resmon_hub_readings_consumed_total") == 15
            tg.cancel_scope.cancel()


async def test_a_total_is_written_only_over_the_version_its_actor_was_loaded_at(
    db: asyncpg.Connection, unique: str
) -> None:
    key = await provision_resource(db, f"cust-{unique}", "bandwidth", None)
    row = await load_resource(db, key)
    assert row is not None
    assert row.total_version == 0

    def total(value: int, version: int) -> TotalRow:
        return TotalRow(row.id, value, None, version=version, partition=3, key=key)

    async with db.transaction():
        await write_batch(
            db, group="g", readings=[], gaps=[], dead=[], totals=[total(100, 0)], alerts=[]
        )
    # a second writer built on the same loaded state loses, and nothing of its batch stays
    with pytest.raises(FencedError) as fenced:
        async with db.transaction():
            await write_batch(
                db, group="g", readings=[], gaps=[], dead=[], totals=[total(70, 0)], alerts=[]
            )
    assert fenced.value.partitions == [3]
    assert fenced.value.resources == [key]
    assert key in str(fenced.value)
    again = await load_resource(db, key)
    assert again is not None
    assert (again.current_usage, again.total_version) == (100, 1)


class _Record:
    def __init__(self, offset: int, reading: UsageReading) -> None:
        rec = encode_event(reading, source="urn:test")
        self.offset = offset
        self.key, self.value, self.headers = rec.key, rec.value, rec.headers
        self.event_id = rec.event_id


class _Kafka:
    """What the consumer asks of its Kafka client during a batch and a rebalance.

    Like aiokafka, it keeps reporting the old assignment between the revocation
    and the new assignment.
    """

    def __init__(self, tp: TopicPartition) -> None:
        self.tp = tp
        self.seeks: list[int] = []

    def assignment(self) -> set[TopicPartition]:
        return {self.tp}

    def seek(self, tp: TopicPartition, offset: int) -> None:
        assert tp == self.tp
        self.seeks.append(offset)

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        return None

    async def position(self, tp: TopicPartition) -> int:
        # the tests hand batches in order, each fetched where the last one ended: the
        # client stands past them (never sought back since they were fetched)
        return 10**9

    # the log holds every record these tests produce: stored offsets stay where they are
    async def beginning_offsets(self, tps: list[TopicPartition]) -> dict[TopicPartition, int]:
        return dict.fromkeys(tps, 0)

    async def end_offsets(self, tps: list[TopicPartition]) -> dict[TopicPartition, int]:
        return dict.fromkeys(tps, 10**9)


_TOTAL = "SELECT current_usage FROM customer_resources WHERE resource_key = $1"


@contextlib.asynccontextmanager
async def _hub_on_partition_0(
    config: HubConfig,
) -> AsyncIterator[tuple[RunningHub, TopicPartition, _Kafka, _Rebalance]]:
    """A running hub whose consumer logic the test drives on partition 0 of its topic.

    The hub's own Kafka consumer sees no records there: the test hands batches
    and rebalance callbacks to the same :class:`~hub.consumer.UsageConsumer`.
    """
    with anyio.fail_after(60):
        async with anyio.create_task_group() as tg:
            hub: RunningHub = await tg.start(run_hub, config)
            tp = TopicPartition(config.usage_topic, 0)
            kafka = _Kafka(tp)
            listener = _Rebalance(hub.consumer, kafka)
            await listener.on_partitions_assigned([tp])
            yield hub, tp, kafka, listener
            tg.cancel_scope.cancel()


async def _another_instance_applies(
    db: asyncpg.Connection, group: str, key: str, theirs: list[_Record]
) -> None:
    """Another hub's commit of ``theirs`` on partition 0: effects, ids, version, offset."""
    async with db.transaction():
        await db.execute(
            "UPDATE customer_resources SET current_usage = current_usage + $2, "
            "total_version = total_version + 1 WHERE resource_key = $1",
            key,
            len(theirs) * VALUE,
        )
        await claim_events(
            db,
            [
                (event_key("urn:test", r.event_id), r.event_id, T0 + (r.offset + 1) * 60_000)
                for r in theirs
            ],
        )
        await db.execute(
            "UPDATE consumer_offsets SET next_offset = $2 "
            "WHERE consumer_group = $1 AND partition = 0",
            group,
            theirs[-1].offset + 1,
        )


async def test_a_batch_fetched_before_a_revocation_is_not_applied_nor_leaves_actors(
    hub_config: HubConfig, db: asyncpg.Connection, unique: str
) -> None:
    """The partition goes away, another instance moves on, the partition comes back."""
    key = await provision_resource(db, f"cust-{unique}", "bandwidth", None)
    records = [_Record(i, _reading(key, i)) for i in range(25)]
    async with _hub_on_partition_0(hub_config) as (hub, tp, kafka, listener):
        await hub.consumer.process(kafka, {tp: records[0:10]})
        assert await db.fetchval(_TOTAL, key) == 10 * VALUE

        await listener.on_partitions_revoked([tp])
        # fetched before the rebalance, processed after the revocation: dropped
        await hub.consumer.process(kafka, {tp: records[10:15]})
        assert await db.fetchval(_TOTAL, key) == 10 * VALUE
        assert hub.registry.get(key) is None

        # the new owner applies 10..19 (its effects, ids and offset in one commit)
        await _another_instance_applies(db, hub_config.consumer_group, key, records[10:20])
        # ... and the partition comes back
        await listener.on_partitions_assigned([tp])
        assert kafka.seeks[-1] == 20
        await hub.consumer.process(kafka, {tp: records[20:25]})
        assert await db.fetchval(_TOTAL, key) == 25 * VALUE
        assert sample(hub.metrics, "resmon_hub_readings_consumed_total") == 15


async def test_an_actor_left_resident_from_an_earlier_ownership_is_fenced_by_its_version(
    hub_config: HubConfig, db: asyncpg.Connection, unique: str
) -> None:
    """Offsets line up, but the actor's total is stale: the resource's version catches it."""
    key = await provision_resource(db, f"cust-{unique}", "bandwidth", None)
    records = [_Record(i, _reading(key, i)) for i in range(20)]
    async with _hub_on_partition_0(hub_config) as (hub, tp, kafka, _):
        await hub.consumer.process(kafka, {tp: records[0:10]})
        assert hub.registry.get(key) is not None
        # another instance applies 10..14 and this instance learns the new offset
        # without its actor going (the state a lost revocation would leave)
        await _another_instance_applies(db, hub_config.consumer_group, key, records[10:15])
        hub.consumer.positions[0] = 15
        with pytest.raises(FencedError) as fenced:
            await hub.consumer.process(kafka, {tp: records[15:20]})
        assert fenced.value.resources == [key]
        assert await db.fetchval(_TOTAL, key) == 15 * VALUE  # nothing of the batch stayed
        await hub.consumer.fenced(kafka, fenced.value, {tp: records[15:20]})
        assert kafka.seeks[-1] == 15
        await hub.consumer.process(kafka, {tp: records[15:20]})
        # rebuilt from PostgreSQL: 15 + 5, not the stale 10 + 5
        assert await db.fetchval(_TOTAL, key) == 20 * VALUE


async def test_a_partition_whose_seek_failed_on_assignment_is_fenced_then_read(
    hub_config: HubConfig, db: asyncpg.Connection, unique: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """aiokafka only logs a failing assignment callback: the partition must not stall."""
    key = await provision_resource(db, f"cust-{unique}", "bandwidth", None)
    records = [_Record(i, _reading(key, i)) for i in range(10)]
    async with _hub_on_partition_0(hub_config) as (hub, tp, kafka, listener):
        await listener.on_partitions_revoked([tp])
        real = hub.consumer.seek_to_stored

        async def down(*_args: object) -> None:
            raise StorageError("PostgreSQL at 127.0.0.1:5432: connection refused")

        monkeypatch.setattr(hub.consumer, "seek_to_stored", down)
        with pytest.raises(StorageError):
            await listener.on_partitions_assigned([tp])
        monkeypatch.setattr(hub.consumer, "seek_to_stored", real)
        batch = {tp: records[0:5]}
        with pytest.raises(FencedError) as fenced:
            await hub.consumer.process(kafka, batch)
        assert "not read their stored offsets" in str(fenced.value)
        assert await db.fetchval(_TOTAL, key) == 0
        await hub.consumer.fenced(kafka, fenced.value, batch)
        await hub.consumer.process(kafka, batch)
        await hub.consumer.process(kafka, {tp: records[5:10]})
        assert await db.fetchval(_TOTAL, key) == 10 * VALUE


async def test_a_fenced_batch_of_a_partition_without_a_stored_offset_is_read_again(
    hub_config: HubConfig, db: asyncpg.Connection, unique: str
) -> None:
    """The seek on assignment failed before any offset was stored: the first batch is
    fenced as unseen, and its records must be re-read, not skipped."""
    key = await provision_resource(db, f"cust-{unique}", "bandwidth", None)
    records = [_Record(i, _reading(key, i)) for i in range(5)]
    async with _hub_on_partition_0(hub_config) as (hub, tp, kafka, _):
        hub.consumer.positions.pop(0)  # what a failed seek on assignment leaves
        with pytest.raises(FencedError) as fenced:
            await hub.consumer.process(kafka, {tp: records})
        await hub.consumer.fenced(kafka, fenced.value, {tp: records})
        assert kafka.seeks == [0]
        await hub.consumer.process(kafka, {tp: records})
        assert await db.fetchval(_TOTAL, key) == 5 * VALUE
