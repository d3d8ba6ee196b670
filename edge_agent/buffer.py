"""A crash-safe local disk buffer between the poller and Kafka.

Records are appended to segment files (``seg-<first seq>.log``) as frames::

    <u32 payload length> <u64 sequence number> <u32 CRC32 of seq + payload> <payload>

where the payload is the msgpack encoding of a :class:`protocol.KafkaRecord`.
Readers :meth:`~DiskBuffer.peek` the oldest unacknowledged records in order;
:meth:`~DiskBuffer.ack` marks everything up to a sequence number as delivered,
records it atomically in the ``acked`` file and deletes segments that are
entirely delivered. Nothing is removed that Kafka did not acknowledge, except
by the ``drop_oldest`` policy when the buffer is full (counted in ``dropped``)
and frames that cannot be read (counted in ``corrupt``).

On open, every segment is scanned: a torn or corrupt frame (a crash in the
middle of a write, a bad disk) ends that segment's readable part; the tail of
the last segment is truncated so appends continue cleanly. Each such event is
counted in ``corrupt``. A frame that turns unreadable after open (bad CRC,
undecodable payload) is skipped by :meth:`~DiskBuffer.peek`, logged and counted
in ``corrupt`` too, so forwarding goes on; a frame header that cannot be trusted
makes the rest of its segment unreadable the same way. After a crash, records
sent but not yet acknowledged in the ``acked`` file are sent again; their event
ids are deterministic, so the hub drops the copies.

A failed or short write (a full disk, an I/O error) is cut off again (the
segment is truncated to its last good frame), counted in ``write_failures``
and raised as :class:`BufferWriteError` naming the records of the call that
were written; the buffer stays usable, and the next append that finds space
succeeds. Records dropped by ``drop_oldest`` are handed to :attr:`DiskBuffer.on_drop`,
so their spans can still be reported (:mod:`edge_agent.sink`). When the
``acked`` file cannot be replaced (a full disk), the position is kept in memory,
logged and counted in ``acked_write_failures``; a crash before the next good
write sends those records again, which the hub drops by event id. When a segment is full, its
unsynced writes are fsynced before the next one starts (unless ``fsync: never``).
Dropped records are logged once per append call.

Pending bytes are bounded by ``max_bytes``; the disk may hold up to one
segment more (delivered records in a segment still being written).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import struct
import time
import zlib
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Final

import anyio
import msgspec
import structlog

from protocol import KafkaRecord

from ._exceptions import BufferFullError, BufferWriteError, DiskBufferError
from .config import BufferConfig

__all__ = ["BufferedRecord", "DiskBuffer"]

_HEADER: Final = struct.Struct("<IQI")
_ACKED: Final = struct.Struct("<QI")
_MAX_PAYLOAD: Final = 64 * 1024 * 1024
_SEGMENT_GLOB: Final = "seg-*.log"

log = structlog.get_logger(component="edge_agent.buffer")


class BufferedRecord(msgspec.Struct, frozen=True):
    """A record read back from the buffer, with its sequence number for :meth:`DiskBuffer.ack`."""

    seq: int
    record: KafkaRecord


class _Segment:
    __slots__ = ("first_seq", "path", "size")

    def __init__(self, first_seq: int, path: Path, size: int) -> None:
        self.first_seq = first_seq
        self.path = path
        self.size = size  # bytes of valid frames


_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(KafkaRecord)


def _crc(seq: int, payload: bytes) -> int:
    return zlib.crc32(payload, zlib.crc32(seq.to_bytes(8, "little")))


def _salvage(payload: bytes) -> KafkaRecord | None:
    """The record a frame with a bad CRC still decodes to, if any (to report its span)."""
    try:
        return _decoder.decode(payload)
    except msgspec.MsgspecError:
        return None


#: an unreadable frame: (frame size or -1, trusted seq, reason, salvaged record)
_Unreadable = tuple[int, int | None, str, KafkaRecord | None]


class DiskBuffer:
    """The buffer in ``config.directory``. Use :meth:`open`; close with :meth:`close`."""

    def __init__(self, config: BufferConfig, *, clock: Callable[[], float] = time.monotonic):
        self.config = config
        self.directory = Path(config.directory)
        self._clock = clock
        self._segments: list[_Segment] = []
        self._read_pos = 0  # offset of the first pending frame in self._segments[0]
        self._acked = 0  # every seq <= this one is delivered (or dropped)
        self._next_seq = 1
        self._fd: int | None = None
        self._lock_fd: int | None = None
        self._last_sync = clock()
        self._dirty = False
        self._rotate_next = False  # start a new segment before the next append
        self._data_event: anyio.Event | None = None
        self._space_event: anyio.Event | None = None
        self._empty_event: anyio.Event | None = None
        #: called with the records ``drop_oldest`` removed, oldest first, once per append
        #: (records that were on the way to Kafka only once the send failed: see settle())
        self.on_drop: Callable[[list[KafkaRecord]], None] | None = None
        self._in_flight_upto = 0  # the forwarder is sending every pending seq <= this
        self._held: list[BufferedRecord] = []  # dropped while in flight: fate unknown yet
        #: counters, for metrics
        self.pending_records = 0
        self.pending_bytes = 0
        self.dropped = 0
        self.corrupt = 0
        #: corrupt frames whose record still decoded: handed to on_drop (reported as gaps)
        self.corrupt_salvaged = 0
        self.appended = 0
        self.write_failures = 0
        self.acked_write_failures = 0
        #: waits for room with ``when_full: block`` (see blocked_seconds)
        self.blocks = 0
        self._blocking = 0  # writers waiting now
        self._blocked_since = 0.0
        self._blocked_done = 0.0

    # -- opening and closing ----------------------------------------------------------

    @classmethod
    def open(cls, config: BufferConfig, **kwargs: Callable[[], float]) -> DiskBuffer:
        buffer = cls(config, **kwargs)
        try:
            buffer._open()
        except OSError as exc:
            buffer.close()
            raise DiskBufferError(f"cannot open buffer in {config.directory}: {exc}") from None
        except BaseException:
            buffer.close()
            raise
        return buffer

    def _open(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        self._lock_fd = os.open(self.directory / "lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise DiskBufferError(
                f"buffer {self.directory} is in use by another agent process"
            ) from None
        self._acked = self._read_acked()
        paths = sorted(
            (p for p in self.directory.glob(_SEGMENT_GLOB) if p.stem[4:].isdigit()),
            key=lambda p: int(p.stem[4:]),
        )
        last_seq = self._acked
        for i, path in enumerate(paths):
            segment, last_seq = self._scan(path, last_seq, is_last=i == len(paths) - 1)
            self._segments.append(segment)
        self._next_seq = last_seq + 1
        self._skip_delivered()
        if not self._segments:
            self._new_segment()
        self._fd = os.open(self._segments[-1].path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)

    def _scan(self, path: Path, last_seq: int, *, is_last: bool) -> tuple[_Segment, int]:
        """Validate a segment's frames; count pending ones; cut a torn tail."""
        data = path.read_bytes()
        pos = 0
        while pos < len(data):
            frame = self._parse(data, pos)
            if frame is None or (frame[0] <= last_seq and frame[0] > self._acked):
                self.corrupt += 1
                log.warning(
                    "buffer_segment_cut",
                    path=str(path),
                    offset=pos,
                    lost_bytes=len(data) - pos,
                    reason="torn or corrupt frame" if frame is None else "sequence out of order",
                    truncated=is_last,
                    corrupt_total=self.corrupt,
                )
                if is_last:
                    with path.open("r+b") as f:
                        f.truncate(pos)
                        os.fsync(f.fileno())
                break
            seq, size = frame
            if seq > self._acked:
                self.pending_records += 1
                self.pending_bytes += size
            last_seq = max(last_seq, seq)
            pos += size
        return _Segment(int(path.stem[4:]), path, pos), last_seq

    @staticmethod
    def _parse(data: bytes, pos: int) -> tuple[int, int] | None:
        """``(seq, frame size)`` of the valid frame at ``pos``, or ``None``."""
        if pos + _HEADER.size > len(data):
            return None
        length, seq, crc = _HEADER.unpack_from(data, pos)
        end = pos + _HEADER.size + length
        if length > _MAX_PAYLOAD or end > len(data):
            return None
        if _crc(seq, data[pos + _HEADER.size : end]) != crc:
            return None
        return seq, end - pos

    def _read_acked(self) -> int:
        try:
            raw = (self.directory / "acked").read_bytes()
        except FileNotFoundError:
            return 0
        if len(raw) != _ACKED.size:
            self.corrupt += 1
            return 0
        seq, crc = _ACKED.unpack(raw)
        if zlib.crc32(raw[:8]) != crc:
            self.corrupt += 1
            return 0  # replaying is safe: event ids are deterministic
        return int(seq)

    def close(self) -> None:
        """Sync and release the files. The buffer can be opened again afterwards."""
        if self._fd is not None:
            if self.config.fsync != "never":
                os.fsync(self._fd)
            os.close(self._fd)
            self._fd = None
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def __enter__(self) -> DiskBuffer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- writing ---------------------------------------------------------------------

    def _new_segment(self) -> None:
        """Start the next segment. On an OS error nothing changes but what is noted to retry."""
        path = self.directory / f"seg-{self._next_seq:020d}.log"
        if self._segments and self._segments[-1].path == path:
            # no frame was ever completed in it (a failed write left garbage that
            # could not be cut off): replace it by a fresh file of the same name
            self._segments.pop()
            path.unlink(missing_ok=True)
            self._rotate_next = True  # until the new file is in place
        if self._fd is None:
            path.touch()
        else:
            if self.config.fsync != "never" and self._dirty:
                # the old segment's unsynced records must be durable before they
                # stop being reachable through self._fd (sync() only sees the new one)
                os.fsync(self._fd)
                self._dirty = False
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            os.close(self._fd)
            self._fd = fd
        self._segments.append(_Segment(self._next_seq, path, 0))
        self._rotate_next = False
        if self.config.fsync != "never":
            self._sync_dir()

    def _sync_dir(self) -> None:
        dir_fd = os.open(self.directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)

    def _frame(self, record: KafkaRecord) -> tuple[bytes, int]:
        payload = _encoder.encode(record)
        seq = self._next_seq
        if _HEADER.size + len(payload) > self.config.max_bytes:
            raise BufferWriteError(
                f"record {record.event_id} of {len(payload)} bytes is larger than max_bytes"
            )
        return _HEADER.pack(len(payload), seq, _crc(seq, payload)) + payload, seq

    def fits(self, nbytes: int) -> bool:
        return self.pending_bytes + nbytes <= self.config.max_bytes

    @staticmethod
    def frame_bytes(records: Iterable[KafkaRecord]) -> int:
        """Bytes ``records`` would take in the buffer."""
        return sum(_HEADER.size + len(_encoder.encode(r)) for r in records)

    @property
    def acked(self) -> int:
        """Every record with a sequence number up to this one is delivered or dropped."""
        return self._acked

    def append_nowait(self, records: Iterable[KafkaRecord]) -> list[int]:
        """Append records in order and return their sequence numbers.

        When full, ``drop_oldest`` drops the oldest pending records (counted);
        ``block`` raises :class:`BufferFullError` before writing that record
        (records before it are written). A record that cannot be written raises
        :class:`BufferWriteError` (records before it are written; the buffer
        stays consistent and usable).
        """
        if self._fd is None:
            raise DiskBufferError("buffer is closed")
        seqs: list[int] = []
        dropped = self.dropped
        dropped_seqs: list[int] = []
        dropped_records: list[KafkaRecord] = []
        try:
            for record in records:
                frame, seq = self._frame(record)
                if not self.fits(len(frame)):
                    if self.config.when_full == "block":
                        raise BufferFullError(
                            f"buffer {self.directory} is full ({self.pending_bytes} bytes pending)",
                            written=seqs,
                        )
                    while not self.fits(len(frame)):
                        oldest = self._drop_oldest()
                        dropped_seqs.append(oldest.seq)
                        if oldest.seq <= self._in_flight_upto:
                            self._held.append(oldest)
                        else:
                            dropped_records.append(oldest.record)
                if (
                    self._rotate_next
                    or not self._segments
                    or self._segments[-1].size >= self.config.segment_bytes
                ):
                    self._new_segment()
                self._write_frame(frame)
                self._segments[-1].size += len(frame)
                self._next_seq += 1
                self.pending_records += 1
                self.pending_bytes += len(frame)
                self.appended += 1
                self._dirty = True
                seqs.append(seq)
        except BufferWriteError as exc:
            self.write_failures += 1
            exc.written = seqs
            raise
        except OSError as exc:
            self.write_failures += 1
            raise BufferWriteError(
                f"cannot write to buffer {self.directory}: {exc}", written=seqs
            ) from None
        finally:
            if self.dropped != dropped:
                log.warning(
                    "buffer_full_dropped_oldest",
                    directory=str(self.directory),
                    dropped=self.dropped - dropped,
                    first_seq=dropped_seqs[0] if dropped_seqs else None,
                    last_seq=dropped_seqs[-1] if dropped_seqs else None,
                    dropped_total=self.dropped,
                )
                # their spans are noted (and journaled) before the drop is made durable
                if self.on_drop is not None and dropped_records:
                    self.on_drop(dropped_records)
                self._write_acked()
            if seqs:
                self._after_write()
        return seqs

    def sending(self, upto: int) -> None:
        """The forwarder is sending the pending records up to ``upto``; :meth:`settle` follows.

        A record ``drop_oldest`` removes meanwhile may still reach Kafka: it goes to
        :attr:`on_drop` only if the send did not deliver it.
        """
        self._in_flight_upto = upto

    def settle(self, delivered_upto: int) -> None:
        """The send ended: records up to ``delivered_upto`` reached Kafka (0 = none)."""
        self._in_flight_upto = 0
        lost = [b.record for b in self._held if b.seq > delivered_upto]
        self._held = []
        if lost and self.on_drop is not None:
            self.on_drop(lost)

    def _write_frame(self, frame: bytes) -> None:
        """Append one frame to the current segment, all of it or (on error) none of it."""
        assert self._fd is not None
        segment = self._segments[-1]
        try:
            written = os.write(self._fd, frame)
        except OSError as exc:
            self._cut_back(segment)
            hint = " (disk full?)" if exc.errno == errno.ENOSPC else ""
            raise BufferWriteError(
                f"cannot write to buffer {self.directory}{hint}: {exc.strerror or exc}"
            ) from None
        if written != len(frame):
            self._cut_back(segment)
            raise BufferWriteError(
                f"short write to buffer {self.directory} ({written} of {len(frame)} bytes,"
                " disk full?)"
            )

    def _cut_back(self, segment: _Segment) -> None:
        """Remove a partial frame after a failed write, so later appends stay readable."""
        assert self._fd is not None
        try:
            os.ftruncate(self._fd, segment.size)
        except OSError as exc:
            # the partial frame stays: append to a new segment from now on, so the
            # garbage only ends this one's readable part (at segment.size) on reopen
            log.error(
                "buffer_truncate_failed",
                path=str(segment.path),
                size=segment.size,
                error=str(exc),
            )
            self._rotate_next = True

    async def put(self, records: Iterable[KafkaRecord]) -> list[int]:
        """Append records; with ``when_full: block``, wait for acks to free space."""
        pending = list(records)
        seqs: list[int] = []
        blocked_at: float | None = None
        try:
            while True:
                try:
                    seqs += self.append_nowait(pending)
                    return seqs
                except BufferFullError as exc:
                    seqs += exc.written
                    pending = pending[len(exc.written) :]
                    if blocked_at is None:
                        blocked_at = self._block_started(len(pending))
                    self._space_event = self._space_event or anyio.Event()
                    await self._space_event.wait()
        finally:
            if blocked_at is not None:
                self._block_ended(blocked_at, len(seqs))

    def _block_started(self, waiting: int) -> float:
        self.blocks += 1
        self._blocking += 1
        now = time.monotonic()
        if self._blocking == 1:
            self._blocked_since = now
        log.warning(
            "buffer_full_blocking",
            directory=str(self.directory),
            pending_bytes=self.pending_bytes,
            max_bytes=self.config.max_bytes,
            waiting_records=waiting,
            blocks_total=self.blocks,
        )
        return now

    def _block_ended(self, blocked_at: float, written: int) -> None:
        now = time.monotonic()
        self._blocking -= 1
        if self._blocking == 0:
            self._blocked_done += now - self._blocked_since
        log.warning(  # polling was held up: as loud as the start of the wait
            "buffer_full_unblocked",
            directory=str(self.directory),
            seconds=round(now - blocked_at, 3),
            written=written,
        )

    @property
    def blocking(self) -> bool:
        """Whether a writer is waiting for room now."""
        return self._blocking > 0

    @property
    def blocked_seconds(self) -> float:
        """Seconds writers spent waiting for room (``when_full: block``), the current wait too.

        Overlapping waits of several writers count once: this is time the
        poller's writes were held up, not the sum of the writers' waits.
        """
        current = time.monotonic() - self._blocked_since if self._blocking else 0.0
        return self._blocked_done + current

    def _after_write(self) -> None:
        policy = self.config.fsync
        if policy == "always" or (
            policy == "interval"
            and (self._clock() - self._last_sync) * 1000 >= self.config.fsync_interval_ms
        ):
            self.sync()
        if self._data_event is not None:
            self._data_event.set()
            self._data_event = None

    def sync(self) -> None:
        """Make appended records durable now (the ``interval`` policy calls it when due)."""
        if self._fd is not None and self._dirty:
            os.fsync(self._fd)
        self._dirty = False
        self._last_sync = self._clock()

    def sync_if_due(self) -> None:
        if (
            self.config.fsync == "interval"
            and self._dirty
            and (self._clock() - self._last_sync) * 1000 >= self.config.fsync_interval_ms
        ):
            self.sync()

    # -- reading and acknowledging ----------------------------------------------------------

    def peek(self, limit: int) -> list[BufferedRecord]:
        """Up to ``limit`` of the oldest pending records, in order. Does not consume them.

        An unreadable frame at the head is skipped (logged, counted in ``corrupt``);
        one behind readable records is left for the next call.
        """
        while True:
            out, bad = self._read(limit)
            if out or bad is None:
                return out
            self._skip_unreadable(*bad)

    def _read(self, limit: int) -> tuple[list[BufferedRecord], _Unreadable | None]:
        """Pending records up to the first unreadable frame, and that frame if reached.

        The frame is ``(frame size, trusted seq, reason, salvaged record)``; a size
        of ``-1`` means its header cannot be trusted (nor anything after it in the
        segment).
        """
        out: list[BufferedRecord] = []
        pos = self._read_pos
        for segment in self._segments:
            if len(out) >= limit:
                break
            if pos < segment.size:
                with segment.path.open("rb") as f:
                    f.seek(pos)
                    while pos < segment.size and len(out) < limit:
                        header = f.read(_HEADER.size)
                        if len(header) < _HEADER.size:
                            return out, (-1, None, "segment file is shorter than expected", None)
                        length, seq, crc = _HEADER.unpack(header)
                        size = _HEADER.size + length
                        if length > _MAX_PAYLOAD or pos + size > segment.size:
                            return out, (-1, None, f"implausible frame length {length}", None)
                        payload = f.read(length)
                        if len(payload) < length:
                            return out, (-1, None, "segment file is shorter than expected", None)
                        if _crc(seq, payload) != crc:
                            # the seq is covered by the CRC: it cannot be trusted either;
                            # the record may still say which interval was lost
                            reason = f"CRC mismatch (header seq {seq})"
                            return out, (size, None, reason, _salvage(payload))
                        try:
                            out.append(BufferedRecord(seq, _decoder.decode(payload)))
                        except msgspec.MsgspecError as exc:
                            return out, (size, seq, f"cannot decode seq {seq}: {exc}", None)
                        pos += size
            pos = 0
        return out, None

    def _skip_unreadable(
        self, size: int, seq: int | None, reason: str, salvaged: KafkaRecord | None
    ) -> None:
        """Move the read position past the unreadable frame at the head (see :meth:`_read`).

        A ``salvaged`` record (its payload still decodes) goes to :attr:`on_drop`,
        so the interval it held is reported as a gap; counted in ``corrupt_salvaged``.
        """
        while self._read_pos >= self._segments[0].size and len(self._segments) > 1:
            self._drop_segment()
        segment = self._segments[0]
        at = self._read_pos
        self.corrupt += 1
        if seq is not None:
            self._consume(seq)  # a valid CRC: the frame is exactly the one with this seq
        else:
            if size < 0:
                # the frame lengths cannot be followed: the rest of the segment is lost
                size = segment.size - at
                self._read_pos = segment.size
                self.pending_records = sum(self._count_frames(s) for s in self._segments[1:])
                self.pending_bytes = sum(s.size for s in self._segments[1:])
            else:
                # skip this one frame; _acked stays (the seq in the header is not trusted)
                self._read_pos += size
                self.pending_records -= 1
                self.pending_bytes -= size
            if len(self._segments) == 1:
                # keep appends out of a segment that reads as corrupt on reopen
                self._new_segment()
            self._consume(self._acked)  # drops the segment if it is done; wakes writers
        log.warning(
            "buffer_frame_skipped",
            path=str(segment.path),
            offset=at,
            seq=seq,
            skipped_bytes=size,
            reason=reason,
            salvaged_event_id=salvaged.event_id if salvaged is not None else None,
            corrupt_total=self.corrupt,
        )
        if salvaged is not None:
            self.corrupt_salvaged += 1
            if self.on_drop is not None:
                self.on_drop([salvaged])
        self._write_acked()

    @staticmethod
    def _count_frames(segment: _Segment) -> int:
        count = pos = 0
        with segment.path.open("rb") as f:
            while pos < segment.size:
                f.seek(pos)
                header = f.read(_HEADER.size)
                if len(header) < _HEADER.size:
                    break
                pos += _HEADER.size + _HEADER.unpack(header)[0]
                count += 1
        return count

    def ack(self, upto: int) -> int:
        """Mark every record with ``seq <= upto`` delivered; return how many were pending."""
        if upto <= self._acked:
            return 0
        before = self.pending_records
        self._consume(upto)
        self._write_acked()
        return before - self.pending_records

    def _consume(self, upto: int) -> None:
        """Advance the read position past every frame with ``seq <= upto``."""
        while self._segments:
            segment = self._segments[0]
            if self._read_pos >= segment.size:
                if len(self._segments) == 1:
                    break
                self._drop_segment()
                continue
            with segment.path.open("rb") as f:
                f.seek(self._read_pos)
                while self._read_pos < segment.size:
                    header = f.read(_HEADER.size)
                    if len(header) < _HEADER.size:
                        break
                    length, seq, _ = _HEADER.unpack(header)
                    if seq > upto or self._read_pos + _HEADER.size + length > segment.size:
                        break
                    f.seek(length, os.SEEK_CUR)
                    self._read_pos += _HEADER.size + length
                    self.pending_records -= 1
                    self.pending_bytes -= _HEADER.size + length
                    self._acked = seq
            if self._read_pos < segment.size:
                break
        self._acked = max(self._acked, min(upto, self._next_seq - 1))
        if self._space_event is not None:
            self._space_event.set()
            self._space_event = None
        if self._empty_event is not None and self.pending_records == 0:
            self._empty_event.set()
            self._empty_event = None

    def _drop_segment(self) -> None:
        segment = self._segments.pop(0)
        with contextlib.suppress(FileNotFoundError):
            segment.path.unlink()
        self._read_pos = 0

    def _skip_delivered(self) -> None:
        """After open: move the read position past frames already delivered."""
        while self._segments:
            segment = self._segments[0]
            data_seq = self._first_seq_at(segment, self._read_pos)
            if data_seq is None:
                if len(self._segments) == 1:
                    return
                self._drop_segment()
                continue
            seq, size = data_seq
            if seq > self._acked:
                return
            self._read_pos += size

    def _first_seq_at(self, segment: _Segment, pos: int) -> tuple[int, int] | None:
        if pos >= segment.size:
            return None
        with segment.path.open("rb") as f:
            f.seek(pos)
            length, seq, _ = _HEADER.unpack(f.read(_HEADER.size))
        return seq, _HEADER.size + length

    def _drop_oldest(self) -> BufferedRecord:
        """Drop the oldest pending record; return it."""
        first = self.peek(1)
        if not first:
            raise DiskBufferError("buffer is full but has nothing to drop")
        self._consume(first[0].seq)
        self.dropped += 1
        return first[0]

    def _write_acked(self) -> None:
        """Record the delivered position; on an OS error keep it in memory (logged, counted)."""
        tmp = self.directory / "acked.tmp"
        raw = self._acked.to_bytes(8, "little")
        try:
            with tmp.open("wb") as f:
                f.write(raw + zlib.crc32(raw).to_bytes(4, "little"))
                if self.config.fsync == "always":
                    f.flush()
                    os.fsync(f.fileno())
            tmp.replace(self.directory / "acked")
        except OSError as exc:
            self.acked_write_failures += 1
            log.error(
                "buffer_acked_write_failed",
                path=str(self.directory / "acked"),
                acked=self._acked,
                error=str(exc),
                failures_total=self.acked_write_failures,
            )
            with contextlib.suppress(OSError):
                tmp.unlink()

    async def wait_for_records(self) -> None:
        """Return when there is at least one pending record."""
        while self.pending_records == 0:
            self._data_event = self._data_event or anyio.Event()
            await self._data_event.wait()

    async def wait_empty(self) -> None:
        """Return when every record has been acknowledged (or dropped)."""
        while self.pending_records:
            self._empty_event = self._empty_event or anyio.Event()
            await self._empty_event.wait()
