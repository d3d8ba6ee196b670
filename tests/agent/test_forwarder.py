"""The forwarder moves buffered records to Kafka and acks the buffer only after Kafka did."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import anyio
import pytest
import structlog
from _metrics import sample

from edge_agent._exceptions import SendError
from edge_agent.buffer import BufferedRecord, DiskBuffer
from edge_agent.config import BufferConfig, KafkaConfig
from edge_agent.forwarder import Forwarder, KafkaSender
from edge_agent.metrics import AgentMetrics
from protocol import KafkaRecord, UsageReading, decode_record, encode_event, resource_key


def readings(n: int) -> list[KafkaRecord]:
    out = []
    for i in range(n):
        key = resource_key(f"c{i % 3}", "bandwidth")
        reading = UsageReading(
            customer_id=f"c{i % 3}",
            resource_type="bandwidth",
            resource_key=key,
            value=1000 + i,
            unit="byte",
            start_ms=1_700_000_000_000 + i * 60_000,
            end_ms=1_700_000_060_000 + i * 60_000,
            device="r1",
            interface="ge-0/0/1",
            direction="in",
        )
        out.append(encode_event(reading, source="urn:resmon:agent:test"))
    return out


class FlakySender:
    """Acknowledges ``accept`` records of the first batch, then fails once, then works."""

    def __init__(self, accept: int) -> None:
        self.accept = accept
        self.failed = False
        self.received: list[str] = []
        self.stopped = False
        self.all_in = anyio.Event()
        self.expected = 0

    async def start(self) -> None:
        pass

    async def send(self, records: Sequence[KafkaRecord]) -> None:
        if not self.failed:
            self.failed = True
            self.received += [r.event_id for r in records[: self.accept]]
            raise SendError("broker went away", acked=self.accept)
        self.received += [r.event_id for r in records]
        if len(set(self.received)) >= self.expected:
            self.all_in.set()

    async def stop(self) -> None:
        self.stopped = True


@pytest.mark.anyio
async def test_a_failed_send_is_retried_and_only_acknowledged_records_leave_the_buffer(
    tmp_path: Path,
) -> None:
    with anyio.fail_after(10):
        buffer = DiskBuffer.open(BufferConfig(directory=str(tmp_path / "buf"), fsync="never"))
        records = readings(10)
        sender = FlakySender(accept=4)
        sender.expected = 10
        forwarder = Forwarder(buffer, sender, batch_size=10, backoff_initial=0.01)
        buffer.append_nowait(records)
        assert not await forwarder.forward_once()
        assert buffer.pending_records == 6  # the 4 acknowledged ones are gone
        async with anyio.create_task_group() as tg:
            await tg.start(forwarder.run)
            await sender.all_in.wait()
            tg.cancel_scope.cancel()
        assert sender.received == [r.event_id for r in records]
        assert buffer.pending_records == 0
        assert sender.stopped
        buffer.close()


@pytest.mark.anyio
async def test_a_dead_broker_keeps_records_in_the_buffer(tmp_path: Path) -> None:
    with anyio.fail_after(20):
        buffer = DiskBuffer.open(BufferConfig(directory=str(tmp_path / "buf"), fsync="never"))
        buffer.append_nowait(readings(3))
        sender = KafkaSender(KafkaConfig(bootstrap_servers="127.0.0.1:1", request_timeout_ms=1000))
        forwarder = Forwarder(buffer, sender)
        assert not await forwarder.forward_once()
        assert buffer.pending_records == 3
        await sender.stop()
        buffer.close()


@pytest.mark.integration
@pytest.mark.anyio
async def test_records_go_through_buffer_and_forwarder_to_kafka(
    tmp_path: Path, kafka_bootstrap: str, unique: str
) -> None:
    from aiokafka import AIOKafkaConsumer
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    topic = f"usage-{unique}"
    with anyio.fail_after(60):
        admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
        await admin.start()
        try:
            await admin.create_topics([NewTopic(topic, num_partitions=3, replication_factor=1)])
        finally:
            await admin.close()

        records = readings(50)
        buffer = DiskBuffer.open(BufferConfig(directory=str(tmp_path / "buf"), fsync="always"))
        buffer.append_nowait(records)
        sender = KafkaSender(
            KafkaConfig(bootstrap_servers=kafka_bootstrap, topic=topic, linger_ms=5)
        )
        forwarder = Forwarder(buffer, sender, batch_size=20)
        async with anyio.create_task_group() as tg:
            await tg.start(forwarder.run)
            await buffer.wait_empty()
            tg.cancel_scope.cancel()
        assert forwarder.sent == 50
        buffer.close()
        reopened = DiskBuffer.open(BufferConfig(directory=str(tmp_path / "buf")))
        assert reopened.pending_records == 0
        reopened.close()

        consumer = AIOKafkaConsumer(
            topic,
            bootstrap_servers=kafka_bootstrap,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
        )
        await consumer.start()
        try:
            seen: dict[str, bytes] = {}
            while len(seen) < 50:
                batches = await consumer.getmany(timeout_ms=1000)
                for messages in batches.values():
                    for msg in messages:
                        event = decode_record(msg.value, list(msg.headers))
                        assert msg.key is not None
                        seen[event.id] = msg.key
        finally:
            await consumer.stop()
        assert set(seen) == {r.event_id for r in records}
        assert all(seen[r.event_id] == r.key for r in records)


class SurprisingSender:
    """Raises something that is not a SendError on its first send, then works."""

    def __init__(self, expected: int) -> None:
        self.expected = expected
        self.sends = 0
        self.stops = 0
        self.received: list[str] = []
        self.all_in = anyio.Event()

    async def start(self) -> None:
        pass

    async def send(self, records: Sequence[KafkaRecord]) -> None:
        self.sends += 1
        if self.sends == 1:
            raise RuntimeError("library surprise")
        self.received += [r.event_id for r in records]
        if len(self.received) >= self.expected:
            self.all_in.set()

    async def stop(self) -> None:
        self.stops += 1


@pytest.mark.anyio
async def test_an_unexpected_send_error_is_logged_counted_and_retried_not_the_end(
    tmp_path: Path,
) -> None:
    buffer = DiskBuffer.open(BufferConfig(directory=str(tmp_path / "buf"), fsync="never"))
    records = readings(5)
    buffer.append_nowait(records)
    sender = SurprisingSender(expected=5)
    metrics = AgentMetrics()
    forwarder = Forwarder(buffer, sender, metrics=metrics, backoff_initial=0.01)
    with anyio.fail_after(10), structlog.testing.capture_logs() as logs:
        async with anyio.create_task_group() as tg:
            await tg.start(forwarder.run)
            await sender.all_in.wait()
            await buffer.wait_empty()
            tg.cancel_scope.cancel()
    buffer.close()
    assert sender.received == [r.event_id for r in records]  # each once, in order
    assert "forward_crashed" in [entry["event"] for entry in logs]
    assert sample(metrics, "resmon_agent_forward_errors_total") == 1
    assert sender.stops >= 1  # stopped after the surprise, so the next send starts afresh


@pytest.mark.anyio
async def test_an_unreadable_buffer_file_does_not_end_the_forwarder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    buffer = DiskBuffer.open(BufferConfig(directory=str(tmp_path / "buf"), fsync="never"))
    records = readings(3)
    buffer.append_nowait(records)
    sender = SurprisingSender(expected=3)
    sender.sends = 1  # no surprise from the sender this time
    peek = buffer.peek
    failures = [OSError(5, "Input/output error")]

    def flaky_peek(limit: int) -> list[BufferedRecord]:
        if failures:
            raise failures.pop()
        return peek(limit)

    monkeypatch.setattr(buffer, "peek", flaky_peek)
    metrics = AgentMetrics()
    forwarder = Forwarder(buffer, sender, metrics=metrics, backoff_initial=0.01)
    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            await tg.start(forwarder.run)
            await sender.all_in.wait()
            tg.cancel_scope.cancel()
    buffer.close()
    assert sender.received == [r.event_id for r in records]
    assert sample(metrics, "resmon_agent_forward_errors_total") == 1


@pytest.mark.parametrize(
    ("name", "permanent"),
    [
        ("MessageSizeTooLargeError", True),
        ("RecordTooLargeError", True),
        ("TopicAuthorizationFailedError", True),
        ("InvalidTopicError", True),
        ("CorruptRecordException", True),
        # the broker is away or busy: the same record may go through later
        ("KafkaTimeoutError", False),
        ("KafkaConnectionError", False),
        ("NotLeaderForPartitionError", False),
        ("UnknownTopicOrPartitionError", False),
        ("RequestTimedOutError", False),
        # not retriable, but about the connection or cluster, not the record
        ("ClusterAuthorizationFailedError", False),
        ("UnsupportedVersionError", False),
        ("KafkaError", False),
    ],
)
def test_kafka_errors_are_told_apart_into_refused_for_good_and_refused_for_now(
    name: str, permanent: bool
) -> None:
    import aiokafka.errors

    from edge_agent.forwarder import is_permanent

    assert is_permanent(getattr(aiokafka.errors, name)()) is permanent


@pytest.mark.integration
@pytest.mark.anyio
async def test_a_record_kafka_refuses_for_good_is_dead_lettered_and_the_rest_flows(
    tmp_path: Path, kafka_bootstrap: str, unique: str
) -> None:
    from aiokafka import AIOKafkaConsumer

    from edge_agent.forwarder import read_dead_letters

    topic = f"usage-{unique}"
    records = readings(20)
    # larger than the producer's max_request_size (1 MiB): Kafka will never take it
    big = KafkaRecord(
        key=b"c0/bandwidth",
        value=b"x" * 2_000_000,
        headers=[("ce_id", b"too-big")],
        event_id="too-big",
    )
    metrics = AgentMetrics()
    buffer = DiskBuffer.open(BufferConfig(directory=str(tmp_path / "buf"), fsync="always"))
    buffer.append_nowait([*records[:10], big, *records[10:]])
    sender = KafkaSender(KafkaConfig(bootstrap_servers=kafka_bootstrap, topic=topic, linger_ms=5))
    forwarder = Forwarder(buffer, sender, batch_size=8, metrics=metrics)
    refused: list[KafkaRecord] = []
    forwarder.on_refused = refused.extend
    with structlog.testing.capture_logs() as logs, anyio.fail_after(60):
        async with anyio.create_task_group() as tg:
            await tg.start(forwarder.run)
            await buffer.wait_empty()
            tg.cancel_scope.cancel()
        consumer = AIOKafkaConsumer(
            topic, bootstrap_servers=kafka_bootstrap, auto_offset_reset="earliest"
        )
        await consumer.start()
        try:
            seen: set[str] = set()
            while len(seen) < 20:
                for messages in (await consumer.getmany(timeout_ms=1000)).values():
                    seen |= {decode_record(m.value, list(m.headers)).id for m in messages}
        finally:
            await consumer.stop()
    buffer.close()
    assert seen == {r.event_id for r in records}
    assert forwarder.sent == 20
    (letter,) = read_dead_letters(tmp_path / "buf" / "dead-letter.log")
    assert letter.record == big
    assert letter.error.startswith("MessageSizeTooLargeError")
    assert refused == [big]
    assert (
        sample(metrics, "resmon_agent_dead_lettered_total", error="MessageSizeTooLargeError") == 1
    )
    (logged,) = [e for e in logs if e["event"] == "record_dead_lettered"]
    assert logged["event_id"] == "too-big"
    assert logged["kept"] is True
    assert "MessageSizeTooLargeError" in logged["reason"]


def test_the_key_hash_partitioner_picks_the_partition_aiokafkas_default_would() -> None:
    from aiokafka.partitioner import DefaultPartitioner

    from edge_agent.forwarder import KeyHashPartitioner

    ours, default = KeyHashPartitioner(max_keys=50), DefaultPartitioner()
    keys = [f"cust-{i}|bandwidth|rtr-{i % 7}".encode() for i in range(120)]
    for partitions in ([0], [0, 1], [0, 1, 2], list(range(12))):
        for key in keys + keys:  # the second round from the remembered hashes
            assert ours(key, partitions, partitions) == default(key, partitions, partitions)
    assert len(ours._hashes) <= 50  # bounded: it starts afresh when full
    assert ours(None, [0, 1], [1]) == 1  # no key: one of the available partitions
