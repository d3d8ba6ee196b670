"""Where :class:`~edge_agent.sink.BufferSink` keeps the gaps it has not written yet, across a crash.

The spans of lost readings wait in memory until the buffer has room for them
(see :mod:`edge_agent.sink`). So that a crash (SIGKILL, a power cut) does not
lose them, every change is also written to a small journal in the buffer
directory, whose space is reserved when the agent starts (``gaps-a`` and
``gaps-b``, ``gap_reserve_bytes`` each, allocated with ``posix_fallocate``):
writing into it does not need free space, so it works on the full disk that
caused the losses in the first place.

Each file is a header ``<u64 generation> <u32 CRC32>`` followed by frames
``<u32 length> <u32 CRC32 of generation + payload> <payload>`` (msgpack of a
:class:`JournalEntry`). The live file is the one with the higher valid
generation; frames are read up to the first one that does not check out.
Changes are appended to the live file; when it has no room left, or after the
pending gaps were written to the buffer, the whole state is written as one
frame into the other file under the next generation, and its header last:
a crash part way leaves the old file live, intact.

A journal that cannot be written (an I/O error, a reserve too small for the
state) is logged (``gap_journal_write_failed``) and counted
(``resmon_agent_gap_journal_errors_total``); the gaps stay in memory and the
next change tries a full rewrite.
"""

from __future__ import annotations

import os
import struct
import zlib
from pathlib import Path
from typing import Final

import msgspec
import structlog

from protocol import KafkaRecord
from protocol._events import Direction

from .metrics import AgentMetrics

__all__ = ["GapJournal", "JournalEntry", "ResourceKey"]

log = structlog.get_logger(component="edge_agent.gapstore")

_FILE_HEADER: Final = struct.Struct("<QI")
_FRAME_HEADER: Final = struct.Struct("<II")
_NAMES: Final = ("gaps-a", "gaps-b")


class ResourceKey(msgspec.Struct, frozen=True, array_like=True):
    """Everything a gap for a lost reading repeats from it, besides its span."""

    ce_source: str
    customer_id: str
    resource_type: str
    resource_key: str
    source: str
    tenant_id: str | None
    device: str | None
    interface: str | None
    direction: Direction | None


class JournalEntry(msgspec.Struct, array_like=True):
    """One change (or, after a rewrite, the whole state) of the gaps waiting to be written.

    ``dropped_upto`` is the buffer's delivered-or-dropped position once the
    records these spans came from were dropped: a restart that finds the
    buffer's own ``acked`` file behind it completes that drop, so a reading is
    never both pending and reported as a gap.
    """

    spans: list[tuple[ResourceKey, int, int]] = []
    again: list[KafkaRecord] = []
    dropped_upto: int = 0


_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(JournalEntry)


def _crc(generation: int, payload: bytes) -> int:
    return zlib.crc32(payload, zlib.crc32(generation.to_bytes(8, "little")))


class GapJournal:
    """The two reserved journal files in ``directory``; see the module docstring."""

    def __init__(
        self, directory: Path, *, reserve: int, fsync: bool, metrics: AgentMetrics | None = None
    ) -> None:
        self.directory = directory
        self.metrics = metrics
        self.reserve = reserve
        self.fsync = fsync
        self._fds: list[int] = []
        self._live = 0  # index of the live file
        self._generation = 0
        self._end = _FILE_HEADER.size  # where the next frame of the live file goes
        #: a write failed: the next change rewrites the whole state
        self.stale = False
        self.errors = 0

    def open(self) -> list[JournalEntry]:
        """Open (creating and reserving) both files; return the live file's entries."""
        self.directory.mkdir(parents=True, exist_ok=True)
        found: list[tuple[int, int, list[JournalEntry], int]] = []
        for i, name in enumerate(_NAMES):
            fd = os.open(self.directory / name, os.O_RDWR | os.O_CREAT, 0o600)
            self._fds.append(fd)
            generation, entries, end = self._read(fd)
            found.append((generation, i, entries, end))
            self._reserve(fd)
        generation, live, entries, end = max(found)
        self._generation, self._live, self._end = generation, live, end
        return entries

    def _reserve(self, fd: int) -> None:
        try:
            if os.fstat(fd).st_size < self.reserve:
                os.posix_fallocate(fd, 0, self.reserve)
        except OSError as exc:  # the journal still works while the disk has room
            self._failed("reserve", exc)

    @staticmethod
    def _read(fd: int) -> tuple[int, list[JournalEntry], int]:
        """``(generation, entries, end)`` of one file; generation 0 when it is not valid."""
        data = os.pread(fd, os.fstat(fd).st_size, 0)
        if len(data) < _FILE_HEADER.size:
            return 0, [], _FILE_HEADER.size
        generation, crc = _FILE_HEADER.unpack_from(data)
        if zlib.crc32(data[:8]) != crc:
            return 0, [], _FILE_HEADER.size
        entries: list[JournalEntry] = []
        pos = _FILE_HEADER.size
        while pos + _FRAME_HEADER.size <= len(data):
            length, crc = _FRAME_HEADER.unpack_from(data, pos)
            payload = data[pos + _FRAME_HEADER.size : pos + _FRAME_HEADER.size + length]
            if length == 0 or len(payload) < length or _crc(generation, payload) != crc:
                break
            try:
                entries.append(_decoder.decode(payload))
            except msgspec.MsgspecError:
                break
            pos += _FRAME_HEADER.size + length
        return generation, entries, pos

    def close(self) -> None:
        for fd in self._fds:
            os.close(fd)
        self._fds = []

    def _frame(self, generation: int, entry: JournalEntry) -> bytes:
        payload = _encoder.encode(entry)
        return _FRAME_HEADER.pack(len(payload), _crc(generation, payload)) + payload

    def append(self, entry: JournalEntry, state: JournalEntry) -> None:
        """Add one change; ``state`` (the whole state after it) is written instead when due."""
        if self.stale or not self._fds:
            self.rewrite(state)
            return
        frame = self._frame(self._generation, entry)
        if self._end + len(frame) > self.reserve:
            self.rewrite(state)
            return
        try:
            self._pwrite(self._fds[self._live], frame, self._end)
        except OSError as exc:
            self._failed("append", exc)
            return
        self._end += len(frame)

    def rewrite(self, state: JournalEntry) -> None:
        """Replace everything by ``state``: into the other file, its header last."""
        if not self._fds:
            return
        other = 1 - self._live
        generation = self._generation + 1
        frame = self._frame(generation, state) if state.spans or state.again else b""
        if _FILE_HEADER.size + len(frame) > self.reserve:
            self._failed(
                "rewrite", OSError(f"{len(frame)} bytes of pending gaps exceed gap_reserve_bytes")
            )
            return
        fd = self._fds[other]
        raw = generation.to_bytes(8, "little")
        try:
            # a zero length after the frame ends the file's readable part
            self._pwrite(fd, frame + b"\0" * _FRAME_HEADER.size, _FILE_HEADER.size)
            if self.fsync:
                os.fsync(fd)
            self._pwrite(fd, raw + zlib.crc32(raw).to_bytes(4, "little"), 0)
            if self.fsync:
                os.fsync(fd)
        except OSError as exc:
            self._failed("rewrite", exc)
            return
        self._live, self._generation = other, generation
        self._end = _FILE_HEADER.size + len(frame)
        if self.stale:
            log.info("gap_journal_recovered", directory=str(self.directory))
        self.stale = False

    def _pwrite(self, fd: int, data: bytes, offset: int) -> None:
        written = os.pwrite(fd, data, offset)
        if written != len(data):
            raise OSError(f"short write ({written} of {len(data)} bytes)")
        if self.fsync and fd == self._fds[self._live]:
            os.fsync(fd)

    def _failed(self, op: str, exc: OSError) -> None:
        self.errors += 1
        self.stale = True
        if self.metrics:
            self.metrics.gap_journal_errors.labels(op).inc()
        log.error(
            "gap_journal_write_failed",
            directory=str(self.directory),
            op=op,
            error=str(exc),
            errors_total=self.errors,
        )

    def sync(self) -> None:
        """Make the journal durable (with the buffer's own sync)."""
        for fd in self._fds:
            try:
                os.fsync(fd)
            except OSError as exc:
                self._failed("sync", exc)
