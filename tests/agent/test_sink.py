"""Readings the disk buffer could not keep still reach the hub, as buffer_full gaps."""

from __future__ import annotations

import errno
import itertools
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from unittest import mock

import anyio
import pytest
import structlog
from _metrics import sample
from hypothesis import given, settings
from hypothesis import strategies as st

from edge_agent._exceptions import SendError
from edge_agent.buffer import DiskBuffer
from edge_agent.config import BufferConfig
from edge_agent.forwarder import Forwarder
from edge_agent.metrics import AgentMetrics
from edge_agent.sink import BufferSink, ResourceKey, _add_span
from protocol import (
    BUFFERED_HEADER,
    KafkaRecord,
    UsageGap,
    UsageReading,
    decode_record,
    encode_event,
)

from .test_buffer import _frame_offsets

T0 = 1_700_000_000_000
STEP = 10_000
RESOURCES = ("acme:ge-0:in", "acme:ge-0:out", "bolt:ge-1:in")


def reading(resource: str, i: int) -> KafkaRecord:
    customer, interface, direction = resource.split(":")
    return encode_event(
        UsageReading(
            customer_id=customer,
            resource_type="bandwidth",
            resource_key=f"{customer}/{interface}",
            value=1000 + i,
            unit="byte",
            start_ms=T0 + i * STEP,
            end_ms=T0 + (i + 1) * STEP,
            device="r1",
            interface=interface,
            direction=direction,  # type: ignore[arg-type]
        ),
        source="urn:resmon:agent:test",
    )


def cycle(i: int) -> list[KafkaRecord]:
    return [reading(r, i) for r in RESOURCES]


def resource_of(data: UsageReading | UsageGap | ResourceKey) -> str:
    return f"{data.customer_id}:{data.interface}:{data.direction}"


def events(records: list[KafkaRecord]) -> list[UsageReading | UsageGap]:
    out = []
    for record in records:
        data = decode_record(record.value, record.headers).data
        assert isinstance(data, UsageReading | UsageGap)
        out.append(data)
    return out


def assert_covered_once(spans: list[tuple[int, int]], start: int, end: int) -> None:
    """The spans tile [start, end) exactly: no hole, no overlap."""
    spans = sorted(spans)
    assert spans[0][0] == start
    for (_, prev_end), (next_start, _) in itertools.pairwise(spans):
        assert next_start == prev_end, spans
    assert spans[-1][1] == end


def pending(buffer: DiskBuffer) -> list[KafkaRecord]:
    return [b.record for b in buffer.peek(10_000)]


def drain(buffer: DiskBuffer) -> list[KafkaRecord]:
    """Read and acknowledge everything pending, batch by batch, as the forwarder does."""
    out: list[KafkaRecord] = []
    while batch := buffer.peek(10_000):
        out += [b.record for b in batch]
        buffer.ack(batch[-1].seq)
    return out


def buffer_config(tmp_path: Path, **extra: object) -> BufferConfig:
    values: dict[str, object] = {"directory": str(tmp_path / "buf"), "fsync": "never"}
    return BufferConfig(**(values | extra))  # type: ignore[arg-type]


@given(st.lists(st.integers(0, 50), unique=True, max_size=30), st.randoms())
def test_spans_added_in_any_order_merge_into_their_exact_union(
    slots: list[int], rnd: object
) -> None:
    spans: list[tuple[int, int]] = []
    order = list(slots)
    rnd.shuffle(order)  # type: ignore[attr-defined]
    for slot in order:
        _add_span(spans, slot * 10, slot * 10 + 10)
    covered = {t for s, e in spans for t in range(s, e, 10)}
    assert covered == {slot * 10 for slot in slots}
    # merged: sorted, and no two spans touch or overlap
    assert spans == sorted(spans)
    for (_, e), (s, _) in itertools.pairwise(spans):
        assert s > e


@pytest.mark.anyio
async def test_a_long_full_spell_gives_one_gap_per_resource_over_the_whole_span_once_room_returns(
    tmp_path: Path,
) -> None:
    metrics = AgentMetrics()
    with DiskBuffer.open(buffer_config(tmp_path, max_bytes=4096)) as buffer:
        sink = BufferSink(buffer, metrics=metrics)
        dropped: list[KafkaRecord] = []

        def note(records: list[KafkaRecord]) -> None:
            dropped.extend(records)
            sink.remember(records)

        buffer.on_drop = note
        cycles = 40
        with structlog.testing.capture_logs() as logs, anyio.fail_after(10):
            for i in range(cycles):  # nothing is acknowledged: full after a few, dropping since
                await sink(cycle(i))
        assert buffer.dropped == len(dropped) > 20 * len(RESOURCES)
        assert all(isinstance(e, UsageReading) for e in events(dropped))
        # no gap is written while the buffer is full (it would only push out more
        # readings): one open span per resource grows instead
        assert not any(isinstance(e, UsageGap) for e in events(pending(buffer)))
        assert sink.unreported_spans == len(RESOURCES)
        assert [e["event"] for e in logs].count("buffer_gaps_held") == 1
        assert sample(metrics, "resmon_agent_buffer_gaps_held_total") >= cycles - 10
        assert sample(metrics, "resmon_agent_gaps_total", reason="buffer_full") == 0
        # the broker is back: what is pending is delivered, and the next write has room
        delivered = pending(buffer)
        buffer.ack(buffer.peek(10_000)[-1].seq)
        await sink(cycle(cycles))
        written = events(pending(buffer))
        gaps = [g for g in written if isinstance(g, UsageGap)]
        assert len(gaps) == len(RESOURCES)  # one per resource for the whole spell
        assert {g.reason for g in gaps} == {"buffer_full"}
        for resource in RESOURCES:
            (gap,) = [g for g in gaps if resource_of(g) == resource]
            lost = [(e.start_ms, e.end_ms) for e in events(dropped) if resource_of(e) == resource]
            assert_covered_once(lost, gap.start_ms, gap.end_ms)
            assert gap.start_ms == T0
            assert (gap.device, gap.resource_type) == ("r1", "bandwidth")
            # billed + gaps: every interval once, none twice, none missing
            reached = events(delivered) + written
            spans = [(e.start_ms, e.end_ms) for e in reached if resource_of(e) == resource]
            assert_covered_once(spans, T0, T0 + (cycles + 1) * STEP)
        assert sample(metrics, "resmon_agent_gaps_total", reason="buffer_full") == len(RESOURCES)
        assert sink.unreported_spans == 0


@pytest.mark.anyio
async def test_under_a_long_full_spell_every_interval_is_kept_or_in_a_gap_exactly_once(
    tmp_path: Path,
) -> None:
    with DiskBuffer.open(buffer_config(tmp_path, max_bytes=4096)) as buffer:
        sink = BufferSink(buffer)
        cycles = 60
        delivered: list[KafkaRecord] = []
        with anyio.fail_after(10):
            for i in range(cycles):
                await sink(cycle(i))
                if i % 7 == 6:  # the broker acknowledges a little now and then
                    batch = buffer.peek(2)
                    delivered += [b.record for b in batch]
                    buffer.ack(batch[-1].seq)
        assert buffer.dropped > 0
        reached = events(delivered + [r.record for r in buffer.peek(10_000)])
        # lost readings are in gaps, or in spans held until the buffer has room
        assert any(isinstance(e, UsageGap) for e in reached) or sink.unreported_spans
        for resource in RESOURCES:
            spans = [(e.start_ms, e.end_ms) for e in reached if resource_of(e) == resource]
            # and what was dropped by the last write, to be reported with the next one
            spans += [
                s for key, ss in sink.spans.items() for s in ss if resource_of(key) == resource
            ]
            assert_covered_once(spans, T0, T0 + cycles * STEP)


@pytest.mark.anyio
async def test_a_failed_write_is_counted_logged_and_reported_as_a_gap_when_space_returns(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    metrics = AgentMetrics()
    real_write = os.write
    full = True

    def write(fd: int, data: bytes) -> int:
        if full:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_write(fd, data)

    with DiskBuffer.open(buffer_config(tmp_path)) as buffer:
        sink = BufferSink(buffer, metrics=metrics)
        await sink(cycle(0))
        monkeypatch.setattr("edge_agent.buffer.os.write", write)
        with structlog.testing.capture_logs() as logs:
            await sink(cycle(1))
            await sink(cycle(2))
            full = False
            await sink(cycle(3))
        failures = [e for e in logs if e["event"] == "buffer_write_failed"]
        assert len(failures) == 2
        assert "disk full" in failures[0]["error"]
        assert [e["event"] for e in logs].count("buffer_write_recovered") == 1
        assert sink.write_errors == 3 + 3  # two cycles of three readings
        assert sample(metrics, "resmon_agent_buffer_write_errors_total") == 6
        assert buffer.write_failures == 2
        kept = events([r.record for r in buffer.peek(10_000)])
        for resource in RESOURCES:
            mine = [e for e in kept if resource_of(e) == resource]
            gaps = [(e.start_ms, e.end_ms) for e in mine if isinstance(e, UsageGap)]
            assert gaps == [(T0 + STEP, T0 + 3 * STEP)]
            assert_covered_once([(e.start_ms, e.end_ms) for e in mine], T0, T0 + 4 * STEP)
        assert sink.unreported_spans == 0
    with DiskBuffer.open(buffer_config(tmp_path)) as buffer:
        assert buffer.corrupt == 0
        assert buffer.pending_records == len(kept)


class SlowSender:
    """While a batch is on its way, the poller keeps writing and the full buffer drops it."""

    def __init__(self, sink: BufferSink, cycles: range, *, deliver: bool) -> None:
        self.sink = sink
        self.cycles = iter(cycles)
        self.deliver = deliver
        self.sent: list[KafkaRecord] = []

    async def start(self) -> None:
        pass

    async def send(self, records: Sequence[KafkaRecord]) -> None:
        buffer = self.sink.buffer
        dropped = buffer.dropped
        while buffer.dropped - dropped < len(records):  # the whole batch is dropped meanwhile
            await self.sink(cycle(next(self.cycles)))
        if not self.deliver:
            raise SendError("broker gone", acked=0)
        self.sent += list(records)

    async def stop(self) -> None:
        pass


@pytest.mark.parametrize("deliver", [True, False])
@pytest.mark.anyio
async def test_a_record_dropped_while_in_flight_is_a_gap_only_if_kafka_did_not_take_it(
    tmp_path: Path, deliver: bool
) -> None:
    with DiskBuffer.open(buffer_config(tmp_path, max_bytes=4096)) as buffer:
        sink = BufferSink(buffer)
        i = 0
        while not buffer.dropped:  # fill the buffer
            await sink(cycle(i))
            i += 1
        sink.spans.clear()  # only the batch in flight matters here
        batch = buffer.peek(3)
        batch_spans = [
            (e.start_ms, e.end_ms, resource_of(e)) for e in events([b.record for b in batch])
        ]
        sender = SlowSender(sink, range(i, i + 1000), deliver=deliver)
        forwarder = Forwarder(buffer, sender, batch_size=3)
        with anyio.fail_after(10):
            assert await forwarder.forward_once() is deliver
        # the batch was dropped from the buffer while on its way
        assert not {r.seq for r in buffer.peek(10_000)} & {b.seq for b in batch}
        remembered = [(s, e, resource_of(k)) for k, spans in sink.spans.items() for s, e in spans]
        for start, end, resource in batch_spans:
            mine = [(s, e) for s, e, r in remembered if r == resource]
            if deliver:  # Kafka has them: not reported as unknown as well
                assert not any(s < end and start < e for s, e in mine)
            else:  # lost after all: reported
                assert any(s <= start and end <= e for s, e in mine)
        assert buffer._held == []


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.just("write"),
            st.just("full"),
            st.just("short"),
            st.just("room"),
            st.integers(1, 8),  # Kafka acknowledges that many records
        ),
        max_size=60,
    )
)
def test_whatever_the_buffer_drops_or_fails_to_write_every_interval_is_covered_once(
    ops: list[str | int],
) -> None:
    """Random writes, full disks, short writes and acks against a tiny drop_oldest buffer:
    what Kafka got, what is pending and what is remembered tile every resource's timeline."""
    real_write = os.write
    fault: list[str] = []

    def write(fd: int, data: bytes) -> int:
        if fault == ["full"]:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        if fault == ["short"]:
            return real_write(fd, data[: len(data) // 2])
        return real_write(fd, data)

    async def run(directory: str) -> None:
        cfg = BufferConfig(directory=directory, fsync="never", max_bytes=4096)
        with DiskBuffer.open(cfg) as buffer, mock.patch("edge_agent.buffer.os.write", write):
            sink = BufferSink(buffer)
            delivered: list[KafkaRecord] = []
            cycles = 0
            for op in [*ops, "room", "write"]:
                if op == "write":
                    await sink(cycle(cycles))
                    cycles += 1
                elif op in ("full", "short"):
                    fault[:] = [op]
                elif op == "room":
                    fault.clear()
                else:
                    batch = buffer.peek(int(op))
                    if batch:
                        delivered += [b.record for b in batch]
                        buffer.ack(batch[-1].seq)
            reached = events(delivered + [r.record for r in buffer.peek(10_000)])
            for resource in RESOURCES:
                spans = [(e.start_ms, e.end_ms) for e in reached if resource_of(e) == resource]
                spans += [
                    s for k, ss in sink.spans.items() for s in ss if resource_of(k) == resource
                ]
                assert_covered_once(spans, T0, T0 + cycles * STEP)
        with DiskBuffer.open(cfg) as reopened:  # and the buffer on disk is consistent
            assert reopened.corrupt == 0
            assert reopened.pending_records == buffer.pending_records

    with tempfile.TemporaryDirectory() as directory:
        anyio.run(run, directory)


@pytest.mark.anyio
async def test_a_corrupt_frame_whose_record_still_reads_is_reported_as_a_gap_for_its_span(
    tmp_path: Path,
) -> None:
    with DiskBuffer.open(buffer_config(tmp_path)) as buffer:
        sink = BufferSink(buffer)
        for i in range(3):
            await sink(cycle(i))
        (segment,) = (tmp_path / "buf").glob("seg-*.log")
        data = bytearray(segment.read_bytes())
        at = data.index(b'"value":1001')  # cycle 1's first reading: acme ge-0 in
        data[at + len(b'"value":')] = ord("9")  # its value rots on disk: the CRC no longer fits
        segment.write_bytes(bytes(data))
        frame_start = max(o for o, _ in _frame_offsets(segment) if o < at)
        with structlog.testing.capture_logs() as logs:
            kept = drain(buffer)  # as the forwarder reads: the bad frame is skipped
        assert len(kept) == 3 * len(RESOURCES) - 1
        (skipped,) = [e for e in logs if e["event"] == "buffer_frame_skipped"]
        assert skipped["path"] == str(segment)
        assert skipped["offset"] == frame_start
        assert "CRC mismatch" in skipped["reason"]
        assert skipped["salvaged_event_id"] == reading("acme:ge-0:in", 1).event_id
        assert (buffer.corrupt, buffer.corrupt_salvaged) == (1, 1)
        await sink(cycle(3))
        reached = events(kept + pending(buffer))
        (gap,) = [e for e in reached if isinstance(e, UsageGap)]
        assert gap.reason == "buffer_full"
        assert resource_of(gap) == "acme:ge-0:in"
        assert (gap.start_ms, gap.end_ms) == (T0 + STEP, T0 + 2 * STEP)
        for resource in RESOURCES:  # every interval still once: read, or in the gap
            spans = [(e.start_ms, e.end_ms) for e in reached if resource_of(e) == resource]
            assert_covered_once(spans, T0, T0 + 4 * STEP)


def test_a_frame_too_damaged_to_read_is_counted_and_logged_with_file_and_offset(
    tmp_path: Path,
) -> None:
    with DiskBuffer.open(buffer_config(tmp_path)) as buffer:
        sink = BufferSink(buffer)
        buffer.append_nowait(cycle(0))
        (segment,) = (tmp_path / "buf").glob("seg-*.log")
        offset, length = _frame_offsets(segment)[1]
        data = bytearray(segment.read_bytes())
        data[offset + 16 : offset + 16 + length] = b"\xc1" * length  # not msgpack at all
        segment.write_bytes(bytes(data))
        with structlog.testing.capture_logs() as logs:
            assert len(pending(buffer)) == 1  # the first frame; the next peek skips the bad one
            buffer.ack(buffer.peek(1)[0].seq)
            assert len(pending(buffer)) == 1
        (skipped,) = [e for e in logs if e["event"] == "buffer_frame_skipped"]
        assert (skipped["path"], skipped["offset"]) == (str(segment), offset)
        assert skipped["salvaged_event_id"] is None
        assert (buffer.corrupt, buffer.corrupt_salvaged) == (1, 0)
        assert sink.unreported_spans == 0  # nothing tells which interval it held


@pytest.mark.anyio
async def test_a_crash_between_noting_a_drop_and_recording_it_neither_loses_nor_doubles(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from edge_agent.gapstore import GapJournal

    cfg = buffer_config(tmp_path, max_bytes=4096)

    def journal() -> GapJournal:
        return GapJournal(Path(cfg.directory), reserve=64 * 1024, fsync=False)

    buffer = DiskBuffer.open(cfg)
    sink = BufferSink(buffer, journal=journal())
    i = 0
    while not buffer.dropped:
        await sink(cycle(i))
        i += 1
    # the next drop is journaled, then the process dies before the acked file is replaced
    monkeypatch.setattr(buffer, "_write_acked", lambda: None)
    acked_on_disk = (tmp_path / "buf" / "acked").read_bytes()
    await sink(cycle(i))
    i += 1
    assert (tmp_path / "buf" / "acked").read_bytes() == acked_on_disk
    held = {k: list(v) for k, v in sink.spans.items()}
    assert held
    assert sink.journal is not None
    sink.journal.close()
    os.close(buffer._fd)  # type: ignore[arg-type]  # no close(): a crash does not sync
    os.close(buffer._lock_fd)  # type: ignore[arg-type]
    with structlog.testing.capture_logs() as logs:
        reopened = DiskBuffer.open(cfg)
        again = BufferSink(reopened, journal=journal())
    (recovered,) = [e for e in logs if e["event"] == "buffer_gaps_recovered"]
    assert recovered["drops_completed"] > 0  # the interrupted drop is finished
    assert again.spans == held
    assert again.recovered == sum(len(v) for v in held.values())
    for resource in RESOURCES:  # pending readings and waiting gaps: every interval once
        spans = [
            (e.start_ms, e.end_ms) for e in events(pending(reopened)) if resource_of(e) == resource
        ]
        spans += [s for k, ss in again.spans.items() for s in ss if resource_of(k) == resource]
        assert_covered_once(spans, T0, T0 + i * STEP)
    reopened.close()


@pytest.mark.anyio
async def test_held_gaps_go_out_as_far_as_room_allows_and_never_push_out_readings(
    tmp_path: Path,
) -> None:
    with DiskBuffer.open(buffer_config(tmp_path, max_bytes=4096)) as buffer:
        sink = BufferSink(buffer)
        i = 0
        while buffer.dropped < 10 * len(RESOURCES):  # a long full spell
            await sink(cycle(i))
            i += 1
        assert sink.unreported_spans == len(RESOURCES)
        first_gap = buffer.frame_bytes([sink._gap_records()[0].record])
        delivered: list[KafkaRecord] = []
        # Kafka takes just enough for the next cycle and one gap, not for all three
        while buffer.config.max_bytes - buffer.pending_bytes < (
            buffer.frame_bytes(cycle(i)) + first_gap
        ):
            (oldest,) = buffer.peek(1)
            delivered.append(oldest.record)
            buffer.ack(oldest.seq)
        dropped = buffer.dropped
        await sink(cycle(i))
        i += 1
        assert buffer.dropped == dropped  # the gaps written made no room for themselves
        assert 0 < sink.unreported_spans < len(RESOURCES)  # some out, the rest still held
        assert sink.holding
        delivered += drain(buffer)
        await sink(cycle(i))  # plenty of room now: the rest goes out
        i += 1
        assert sink.unreported_spans == 0
        assert not sink.holding
        reached = events(delivered + pending(buffer))
        for resource in RESOURCES:
            mine = [e for e in reached if resource_of(e) == resource]
            assert len([e for e in mine if isinstance(e, UsageGap)]) == 1
            assert_covered_once([(e.start_ms, e.end_ms) for e in mine], T0, T0 + i * STEP)


class AckingSender:
    """Kafka that acknowledges everything at once."""

    async def start(self) -> None:
        pass

    async def send(self, records: Sequence[KafkaRecord]) -> None:
        pass

    async def stop(self) -> None:
        pass


@pytest.mark.anyio
async def test_each_poll_batch_is_stamped_once_when_buffered_and_timed_once_when_acked(
    tmp_path: Path,
) -> None:
    metrics = AgentMetrics()
    with DiskBuffer.open(buffer_config(tmp_path)) as buffer:
        sink = BufferSink(buffer, metrics=metrics)
        for i in range(3):
            await sink(cycle(i))
        stored = pending(buffer)
        stamps = [dict(r.headers)[BUFFERED_HEADER] for r in stored]
        # one stamp per poll batch, shared by its records, in buffer order
        assert len(stored) == 3 * len(RESOURCES)
        assert [len(set(stamps[i : i + 3])) for i in range(0, 9, 3)] == [1, 1, 1]
        assert [decode_record(r.value, r.headers).buffered_ms for r in stored] == [
            int(s) for s in stamps
        ]
        assert sample(metrics, f"{STAGES}_count", stage="buffered") == 3
        forwarder = Forwarder(buffer, AckingSender(), batch_size=100, metrics=metrics)
        assert await forwarder.forward_once()
        assert buffer.pending_records == 0
    acked = sample(metrics, f"{STAGES}_count", stage="acked")
    # stamps taken in the same millisecond read as one batch; never more than three
    assert 1 <= acked <= 3
    assert acked == len(dict.fromkeys(stamps))


STAGES = "resmon_agent_reading_stage_seconds"
