"""The disk buffer keeps what Kafka has not acknowledged, across crashes."""

from __future__ import annotations

import errno
import os
import struct
import tempfile
import zlib
from pathlib import Path
from types import SimpleNamespace

import anyio
import pytest
import structlog
from _metrics import sample
from hypothesis import given, settings
from hypothesis import strategies as st

from edge_agent._exceptions import BufferFullError, DiskBufferError
from edge_agent.buffer import DiskBuffer
from edge_agent.config import BufferConfig
from edge_agent.sink import BufferSink
from protocol import KafkaRecord


def record(i: int, size: int = 10) -> KafkaRecord:
    return KafkaRecord(
        key=f"cust-{i}/bandwidth".encode(),
        value=b"x" * size,
        headers=[("ce_id", f"id-{i}".encode()), ("ce_type", b"resource.usage.raw.v1")],
        event_id=f"id-{i}",
    )


def config(tmp_path: Path, **overrides: object) -> BufferConfig:
    values: dict[str, object] = {"directory": str(tmp_path / "buf"), "fsync": "always"}
    values.update(overrides)
    return BufferConfig(**values)  # type: ignore[arg-type]


def ids(buffer: DiskBuffer) -> list[str]:
    return [r.record.event_id for r in buffer.peek(10_000)]


def test_records_survive_a_reopen_in_order(tmp_path: Path) -> None:
    with DiskBuffer.open(config(tmp_path)) as buffer:
        buffer.append_nowait(record(i) for i in range(5))
    with DiskBuffer.open(config(tmp_path)) as buffer:
        assert ids(buffer) == [f"id-{i}" for i in range(5)]
        assert buffer.pending_records == 5
        assert buffer.peek(1)[0].record == record(0)


def test_acked_records_are_not_replayed_after_reopen(tmp_path: Path) -> None:
    with DiskBuffer.open(config(tmp_path)) as buffer:
        seqs = buffer.append_nowait(record(i) for i in range(5))
        assert buffer.ack(seqs[2]) == 3
        assert ids(buffer) == ["id-3", "id-4"]
    with DiskBuffer.open(config(tmp_path)) as buffer:
        assert ids(buffer) == ["id-3", "id-4"]
        new = buffer.append_nowait([record(5)])
        assert new[0] > seqs[-1]
        buffer.ack(new[0])
        assert buffer.pending_records == 0
        assert buffer.pending_bytes == 0
    with DiskBuffer.open(config(tmp_path)) as buffer:
        assert ids(buffer) == []


def test_a_torn_tail_record_is_skipped_and_counted_on_reopen(tmp_path: Path) -> None:
    with DiskBuffer.open(config(tmp_path)) as buffer:
        buffer.append_nowait(record(i, size=100) for i in range(3))
    (segment,) = (tmp_path / "buf").glob("seg-*.log")
    segment.write_bytes(segment.read_bytes()[:-50])  # the crash hit mid-record
    with DiskBuffer.open(config(tmp_path)) as buffer:
        assert ids(buffer) == ["id-0", "id-1"]
        assert buffer.corrupt == 1
        buffer.append_nowait([record(3)])
        assert ids(buffer) == ["id-0", "id-1", "id-3"]
    with DiskBuffer.open(config(tmp_path)) as buffer:
        assert ids(buffer) == ["id-0", "id-1", "id-3"]
        assert buffer.corrupt == 0


def test_a_corrupt_record_ends_the_readable_part_of_its_segment(tmp_path: Path) -> None:
    with DiskBuffer.open(config(tmp_path)) as buffer:
        buffer.append_nowait(record(i, size=100) for i in range(3))
    (segment,) = (tmp_path / "buf").glob("seg-*.log")
    data = bytearray(segment.read_bytes())
    data[len(data) // 2] ^= 0xFF  # a flipped bit in the second record
    segment.write_bytes(bytes(data))
    with DiskBuffer.open(config(tmp_path)) as buffer:
        assert ids(buffer) == ["id-0"]
        assert buffer.corrupt == 1


def test_fully_acked_segments_are_deleted(tmp_path: Path) -> None:
    cfg = config(tmp_path, segment_bytes=1024)
    with DiskBuffer.open(cfg) as buffer:
        seqs = buffer.append_nowait(record(i, size=300) for i in range(10))
        assert len(list((tmp_path / "buf").glob("seg-*.log"))) > 3
        buffer.ack(seqs[-1])
        assert len(list((tmp_path / "buf").glob("seg-*.log"))) == 1
        assert ids(buffer) == []
    with DiskBuffer.open(cfg) as buffer:
        assert ids(buffer) == []


def test_reading_spans_segments_in_order(tmp_path: Path) -> None:
    cfg = config(tmp_path, segment_bytes=1024)
    with DiskBuffer.open(cfg) as buffer:
        seqs = buffer.append_nowait(record(i, size=300) for i in range(10))
        buffer.ack(seqs[4])
    with DiskBuffer.open(cfg) as buffer:
        assert ids(buffer) == [f"id-{i}" for i in range(5, 10)]
        assert [r.record.event_id for r in buffer.peek(2)] == ["id-5", "id-6"]


def test_drop_oldest_when_full_keeps_the_newest_and_counts_drops(tmp_path: Path) -> None:
    cfg = config(tmp_path, max_bytes=4096, when_full="drop_oldest")
    with DiskBuffer.open(cfg) as buffer:
        buffer.append_nowait(record(i, size=500) for i in range(20))
        assert buffer.pending_bytes <= 4096
        kept = ids(buffer)
        assert kept == [f"id-{i}" for i in range(20 - len(kept), 20)]
        assert buffer.dropped == 20 - len(kept)
        assert buffer.dropped > 0
    with DiskBuffer.open(cfg) as buffer:
        assert ids(buffer) == kept


def test_block_when_full_refuses_without_writing(tmp_path: Path) -> None:
    cfg = config(tmp_path, max_bytes=4096, when_full="block")
    with DiskBuffer.open(cfg) as buffer:
        with pytest.raises(BufferFullError) as excinfo:
            buffer.append_nowait(record(i, size=500) for i in range(20))
        written = excinfo.value.written
        assert 0 < len(written) < 20
        assert buffer.dropped == 0
        assert len(ids(buffer)) == len(written)


@pytest.mark.anyio
async def test_put_waits_for_acks_when_full_and_blocking(tmp_path: Path) -> None:
    cfg = config(tmp_path, max_bytes=4096, when_full="block")
    with anyio.fail_after(5), DiskBuffer.open(cfg) as buffer:
        first = buffer.append_nowait(record(i, size=500) for i in range(6))
        done = anyio.Event()

        async def producer() -> None:
            await buffer.put([record(100, size=500), record(101, size=500)])
            done.set()

        async with anyio.create_task_group() as tg:
            tg.start_soon(producer)
            await anyio.wait_all_tasks_blocked()
            assert not done.is_set()
            buffer.ack(first[1])
            await done.wait()
        assert ids(buffer)[-2:] == ["id-100", "id-101"]


@pytest.mark.anyio
async def test_wait_for_records_returns_after_an_append(tmp_path: Path) -> None:
    with anyio.fail_after(5), DiskBuffer.open(config(tmp_path)) as buffer:
        async with anyio.create_task_group() as tg:
            tg.start_soon(buffer.wait_for_records)
            await anyio.wait_all_tasks_blocked()
            buffer.append_nowait([record(1)])
        assert buffer.pending_records == 1


def test_a_second_process_cannot_open_the_same_buffer(tmp_path: Path) -> None:
    from edge_agent._exceptions import DiskBufferError

    with DiskBuffer.open(config(tmp_path)), pytest.raises(DiskBufferError, match="in use"):
        DiskBuffer.open(config(tmp_path))


ops = st.lists(
    st.one_of(
        st.tuples(st.just("append"), st.integers(1, 5), st.integers(0, 400)),
        st.tuples(st.just("ack"), st.integers(0, 6), st.just(0)),
        st.tuples(st.just("reopen"), st.just(0), st.just(0)),
    ),
    max_size=25,
)


@settings(max_examples=60, deadline=None)
@given(ops, st.sampled_from(["always", "never"]))
def test_any_mix_of_appends_acks_and_reopens_keeps_exactly_the_unacked_records_in_order(
    operations: list[tuple[str, int, int]], fsync: str
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        cfg = BufferConfig(directory=tmp, segment_bytes=2048, fsync=fsync)  # type: ignore[arg-type]
        buffer = DiskBuffer.open(cfg)
        model: list[tuple[int, str]] = []
        counter = 0
        try:
            for op, n, size in operations:
                if op == "append":
                    batch = [record(counter + i, size) for i in range(n)]
                    counter += n
                    seqs = buffer.append_nowait(batch)
                    model += [(s, r.event_id) for s, r in zip(seqs, batch, strict=True)]
                elif op == "ack" and model and n:
                    upto = model[min(n, len(model)) - 1][0]
                    buffer.ack(upto)
                    model = [(s, e) for s, e in model if s > upto]
                elif op == "reopen":
                    buffer.close()
                    buffer = DiskBuffer.open(cfg)
                assert [(r.seq, r.record.event_id) for r in buffer.peek(10_000)] == model
                assert buffer.pending_records == len(model)
        finally:
            buffer.close()


# -- durability: rotation, failed writes, frames that rot after open, drops ----------------


def _frame_offsets(path: Path) -> list[tuple[int, int]]:
    """``(offset, payload length)`` of every frame in a segment file."""
    data = path.read_bytes()
    out, pos = [], 0
    while pos < len(data):
        (length,) = struct.unpack_from("<I", data, pos)
        out.append((pos, length))
        pos += 16 + length
    return out


@pytest.mark.parametrize("policy", ["always", "interval"])
def test_rotation_fsyncs_the_old_segment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, policy: str
) -> None:
    synced: list[str] = []
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real_fsync(fd)

    monkeypatch.setattr("edge_agent.buffer.os.fsync", fsync)
    # interval: never due (the clock stands still), so only rotation can sync
    cfg = config(tmp_path, fsync=policy, segment_bytes=1024, fsync_interval_ms=60_000)
    with DiskBuffer.open(cfg, clock=lambda: 0.0) as buffer:
        buffer.append_nowait(record(i, size=300) for i in range(10))
        segments = sorted((tmp_path / "buf").glob("seg-*.log"))
        assert len(segments) > 2
        for old in segments[:-1]:
            assert str(old) in synced, old


def test_rotation_does_not_fsync_with_fsync_never(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[int] = []
    monkeypatch.setattr("edge_agent.buffer.os.fsync", calls.append)
    cfg = config(tmp_path, fsync="never", segment_bytes=1024)
    with DiskBuffer.open(cfg) as buffer:
        buffer.append_nowait(record(i, size=300) for i in range(10))
    assert calls == []


def _fail_writes_to(
    monkeypatch: pytest.MonkeyPatch, buffer: DiskBuffer, *, after: int, error: int | None
) -> None:
    """Let ``after`` writes to the buffer's segment through, then write half a frame and
    return the short count (``error=None``) or raise ``OSError(error)``."""
    real_write = os.write
    seen = [0]

    def write(fd: int, data: bytes) -> int:
        if fd != buffer._fd:
            return real_write(fd, data)
        seen[0] += 1
        if seen[0] <= after:
            return real_write(fd, data)
        written = real_write(fd, data[: len(data) // 2])
        if error is not None:
            raise OSError(error, os.strerror(error))
        return written

    monkeypatch.setattr("edge_agent.buffer.os.write", write)


@pytest.mark.parametrize("error", [None, errno.ENOSPC])
def test_a_failed_write_is_cut_off_and_raised(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, error: int | None
) -> None:
    cfg = config(tmp_path)
    with DiskBuffer.open(cfg) as buffer:
        buffer.append_nowait(record(i) for i in range(3))
        (segment,) = (tmp_path / "buf").glob("seg-*.log")
        with monkeypatch.context() as m:
            _fail_writes_to(m, buffer, after=1, error=error)
            with pytest.raises(DiskBufferError) as excinfo:
                buffer.append_nowait([record(3), record(4)])  # 3 is written, 4 fails
        good = buffer._segments[-1].size
        assert segment.stat().st_size == good
        assert str(tmp_path / "buf") in str(excinfo.value)
        assert "disk full?" in str(excinfo.value)
        assert buffer.pending_records == 4
        assert buffer.appended == 4
        assert ids(buffer) == ["id-0", "id-1", "id-2", "id-3"]
        buffer.append_nowait([record(5)])
        assert segment.stat().st_size > good
    with DiskBuffer.open(cfg) as buffer:
        assert ids(buffer) == ["id-0", "id-1", "id-2", "id-3", "id-5"]
        assert buffer.corrupt == 0
        assert buffer.pending_records == 5


@pytest.mark.parametrize("before", [0, 2])
def test_a_failed_write_that_cannot_be_cut_off_moves_appends_to_a_new_segment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, before: int
) -> None:
    cfg = config(tmp_path)
    with DiskBuffer.open(cfg) as buffer:
        buffer.append_nowait(record(i) for i in range(before))
        with monkeypatch.context() as m:
            _fail_writes_to(m, buffer, after=0, error=errno.ENOSPC)

            def ftruncate(fd: int, size: int) -> None:
                raise OSError(errno.EIO, "I/O error")

            m.setattr("edge_agent.buffer.os.ftruncate", ftruncate)
            with pytest.raises(DiskBufferError, match="disk full"):
                buffer.append_nowait([record(before)])
        buffer.append_nowait([record(10)])
        expected = [f"id-{i}" for i in range(before)] + ["id-10"]
        assert ids(buffer) == expected
    with DiskBuffer.open(cfg) as buffer:
        assert ids(buffer) == expected


def test_a_frame_that_rots_after_open_is_skipped_and_counted(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    with DiskBuffer.open(cfg) as buffer, structlog.testing.capture_logs() as logs:
        seqs = buffer.append_nowait(record(i, size=100) for i in range(3))
        (segment,) = (tmp_path / "buf").glob("seg-*.log")
        offset, _ = _frame_offsets(segment)[1]
        data = bytearray(segment.read_bytes())
        data[offset + 16 + 20] ^= 0xFF  # a flipped bit in the second record's payload
        segment.write_bytes(bytes(data))
        assert ids(buffer) == ["id-0"]  # the bad one waits for the next peek
        assert buffer.corrupt == 0
        buffer.ack(seqs[0])
        assert ids(buffer) == ["id-2"]
        assert buffer.corrupt == 1
        assert buffer.pending_records == 1
        warning = next(e for e in logs if e["event"] == "buffer_frame_skipped")
        assert warning["log_level"] == "warning"
        assert warning["path"] == str(segment)
        buffer.append_nowait([record(3)])
        assert buffer.ack(seqs[2]) == 1
        assert ids(buffer) == ["id-3"]
    with DiskBuffer.open(cfg) as buffer:
        assert ids(buffer) == ["id-3"]


def test_an_undecodable_frame_is_skipped_and_its_ack_persisted(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    with DiskBuffer.open(cfg) as buffer:
        seqs = buffer.append_nowait(record(i, size=100) for i in range(3))
    (segment,) = (tmp_path / "buf").glob("seg-*.log")
    offset, length = _frame_offsets(segment)[1]
    # a valid frame (right CRC) whose payload is not a KafkaRecord, e.g. a format change
    payload = b"\xc1" * length
    data = bytearray(segment.read_bytes())
    seq = seqs[1]
    crc = zlib.crc32(payload, zlib.crc32(seq.to_bytes(8, "little")))
    data[offset : offset + 16 + length] = struct.pack("<IQI", length, seq, crc) + payload
    segment.write_bytes(bytes(data))
    with DiskBuffer.open(cfg) as buffer, structlog.testing.capture_logs() as logs:
        assert buffer.corrupt == 0  # the CRC is right: open cannot tell
        assert ids(buffer) == ["id-0"]
        buffer.ack(seqs[0])
        assert ids(buffer) == ["id-2"]
        assert buffer.corrupt == 1
        (warning,) = [e for e in logs if e["event"] == "buffer_frame_skipped"]
        assert warning["seq"] == seq
    with DiskBuffer.open(cfg) as buffer:  # the skip was recorded in the acked file
        assert ids(buffer) == ["id-2"]


def test_an_implausible_header_after_open_gives_up_the_rest_of_its_segment(
    tmp_path: Path,
) -> None:
    cfg = config(tmp_path)
    with DiskBuffer.open(cfg) as buffer:
        seqs = buffer.append_nowait(record(i, size=100) for i in range(3))
        (segment,) = (tmp_path / "buf").glob("seg-*.log")
        offset, _ = _frame_offsets(segment)[1]
        with segment.open("r+b") as f:
            f.seek(offset)
            f.write(struct.pack("<I", 10_000_000))  # runs past the segment's end
        assert ids(buffer) == ["id-0"]
        buffer.ack(seqs[0])
        assert ids(buffer) == []
        assert buffer.corrupt == 1
        assert buffer.pending_records == 0
        assert buffer.pending_bytes == 0
        buffer.append_nowait([record(3)])
        assert ids(buffer) == ["id-3"]
    with DiskBuffer.open(cfg) as buffer:
        assert ids(buffer) == ["id-3"]
        assert buffer.corrupt == 0


def test_drops_are_logged_once_per_append(tmp_path: Path) -> None:
    cfg = config(tmp_path, max_bytes=4096, when_full="drop_oldest")
    with DiskBuffer.open(cfg) as buffer, structlog.testing.capture_logs() as logs:
        buffer.append_nowait(record(i, size=500) for i in range(20))
        (warning,) = [e for e in logs if e["log_level"] == "warning"]
        assert warning["dropped"] == buffer.dropped > 0
        assert warning["dropped_total"] == buffer.dropped
        assert warning["first_seq"] == 1
        assert warning["last_seq"] == buffer.dropped


def test_drop_and_corrupt_metrics_are_counters_fed_by_differences(tmp_path: Path) -> None:
    from edge_agent.app import _refresh_gauges
    from edge_agent.metrics import AgentMetrics

    cfg = config(tmp_path, max_bytes=4096, when_full="drop_oldest")
    with DiskBuffer.open(cfg) as buffer:
        metrics = AgentMetrics()
        agent = SimpleNamespace(metrics=metrics, buffer=buffer, sink=BufferSink(buffer))
        buffer.append_nowait(record(i, size=500) for i in range(10))
        first = buffer.dropped
        _refresh_gauges(agent)  # type: ignore[arg-type]
        _refresh_gauges(agent)  # type: ignore[arg-type]
        buffer.append_nowait(record(i, size=500) for i in range(10, 13))
        buffer.corrupt += 2
        _refresh_gauges(agent)  # type: ignore[arg-type]
        text = metrics.render().decode()
    assert buffer.dropped == first + 3
    assert f"resmon_agent_buffer_dropped_total {float(buffer.dropped)}" in text
    assert "resmon_agent_buffer_corrupt_total 2.0" in text
    assert "# TYPE resmon_agent_buffer_dropped_total counter" in text


@pytest.mark.anyio
async def test_waits_for_room_are_logged_and_counted_in_blocks_and_seconds(tmp_path: Path) -> None:
    from edge_agent.app import _refresh_gauges
    from edge_agent.metrics import AgentMetrics

    cfg = config(tmp_path, max_bytes=4096, when_full="block")
    metrics = AgentMetrics()
    with (
        anyio.fail_after(5),
        DiskBuffer.open(cfg) as buffer,
        structlog.testing.capture_logs() as logs,
    ):
        agent = SimpleNamespace(metrics=metrics, buffer=buffer, sink=BufferSink(buffer))
        first = buffer.append_nowait(record(i, size=500) for i in range(6))
        async with anyio.create_task_group() as tg:
            tg.start_soon(buffer.put, [record(100, size=500), record(101, size=500)])
            await anyio.wait_all_tasks_blocked()
            assert buffer.blocking
            await anyio.sleep(0.3)
            # a wait still going on is counted already
            assert buffer.blocked_seconds >= 0.3
            _refresh_gauges(agent)  # type: ignore[arg-type]
            assert sample(metrics, "resmon_agent_buffer_blocks_total") == 1
            assert sample(metrics, "resmon_agent_buffer_blocked_seconds_total") >= 0.3
            buffer.ack(first[1])
        assert not buffer.blocking
        assert buffer.blocks == 1
        _refresh_gauges(agent)  # type: ignore[arg-type]
        assert sample(metrics, "resmon_agent_buffer_blocked_seconds_total") == pytest.approx(
            buffer.blocked_seconds
        )
    events = [e for e in logs if e["event"].startswith("buffer_full_")]
    assert [e["event"] for e in events] == ["buffer_full_blocking", "buffer_full_unblocked"]
    assert events[0]["waiting_records"] == 2
    assert events[1]["seconds"] >= 0.3
    assert events[1]["written"] == 2
