"""The disk buffer keeps what Kafka has not acknowledged, across crashes."""

from __future__ import annotations

import tempfile
from pathlib import Path

import anyio
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge_agent._exceptions import BufferFullError
from edge_agent.buffer import DiskBuffer
from edge_agent.config import BufferConfig
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
