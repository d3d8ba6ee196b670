"""Between the poller and the disk buffer: what the buffer could not keep still reaches the hub.

Readings are lost to the buffer in several ways: ``drop_oldest`` removes the
oldest pending records when the buffer is at ``max_bytes``, a write fails (a
full filesystem, an I/O error), a frame turns out corrupt, or Kafka refuses a
record for good (the forwarder dead-letters it). Either way the usage of those
intervals is unknown to the hub, and a bill that silently lacks them looks
complete. So :class:`BufferSink` remembers, per resource (customer, resource,
device, interface, direction), the spans of the readings that were lost,
merging contiguous ones, and writes one ``UsageGap`` (reason ``buffer_full``)
per resource and span in front of a later batch. The gap's span is exactly the
lost readings' ``[start_ms, end_ms)``: with the readings that were kept, every
interval is still covered once.

Gaps are written only as far as they fit beside the batch without making the
buffer drop: while it stays full (a long broker outage) they are held
(``buffer_gaps_held``) and each resource's span keeps growing, so the whole
spell becomes one gap per resource once Kafka has made room.

A record dropped while the forwarder is sending it counts as lost only if
Kafka did not acknowledge it (:meth:`DiskBuffer.settle`). A gap that is lost
in turn is remembered the same way: a ``buffer_full`` gap joins its
resource's spans again, a gap of another reason (a reboot, ...) is appended
again as it was (same event id). A failed write is logged
(``buffer_write_failed``) and counted
(``resmon_agent_buffer_write_errors_total``, in readings); the poller goes on
polling, and the first write that succeeds afterwards is logged as
``buffer_write_recovered``. Drops by ``drop_oldest`` are logged and counted
by the buffer (``buffer_full_dropped_oldest``,
``resmon_agent_buffer_dropped_total``).

The spans are kept in memory and, with a :class:`~edge_agent.gapstore.GapJournal`,
journaled in reserved space, so a crash does not lose them: the next start
reads them back. When the agent stops they are written as gaps before the
buffer closes (:meth:`BufferSink.flush`).
"""

from __future__ import annotations

import time
from datetime import datetime
from typing import NamedTuple

import structlog

from protocol import (
    DecodeError,
    KafkaRecord,
    UsageGap,
    UsageReading,
    buffered_header,
    decode_record,
    encode_event,
)

from ._exceptions import BufferFullError, BufferWriteError, DiskBufferError
from .buffer import DiskBuffer
from .gapstore import GapJournal, JournalEntry, ResourceKey
from .metrics import AgentMetrics

__all__ = ["BufferSink", "ResourceKey"]

log = structlog.get_logger(component="edge_agent.sink")

GAP_DETAIL = (
    "readings the agent measured but could not deliver"
    " (its disk buffer was full, not writable or corrupt, or Kafka refused them)"
)


def _add_span(spans: list[tuple[int, int]], start: int, end: int) -> None:
    """Insert ``[start, end)`` into sorted, disjoint spans, merging what touches or overlaps."""
    kept: list[tuple[int, int]] = []
    for s, e in spans:
        if e < start or s > end:
            kept.append((s, e))
        else:
            start, end = min(s, start), max(e, end)
    kept.append((start, end))
    kept.sort()
    spans[:] = kept


class BufferSink:
    """The poller's sink: appends to ``buffer`` and turns what it could not keep into gaps.

    With a ``journal`` the gaps waiting to be written survive a crash: what it
    holds is loaded here (and a drop the crash interrupted is completed).
    """

    def __init__(
        self,
        buffer: DiskBuffer,
        *,
        metrics: AgentMetrics | None = None,
        journal: GapJournal | None = None,
    ) -> None:
        self.buffer = buffer
        self.metrics = metrics
        self.journal = journal
        #: lost spans per resource, sorted and disjoint, not yet written as gaps
        self.spans: dict[ResourceKey, list[tuple[int, int]]] = {}
        #: lost records appended again as they were (gaps of other reasons)
        self._again: list[KafkaRecord] = []
        #: the poller's records that a failed write did not keep
        self.write_errors = 0
        #: gaps that could not be written when the agent stopped (see flush())
        self.lost_at_flush = 0
        #: whether the last write failed (until one succeeds again)
        self.failing = False
        #: pending gaps are held back because the buffer has no room for them
        self.holding = False
        #: spans and records recovered from the journal at start
        self.recovered = 0
        buffer.on_drop = self.remember
        if journal is not None:
            self._recover(journal.open())

    def _recover(self, entries: list[JournalEntry]) -> None:
        upto = 0
        for entry in entries:
            for key, start, end in entry.spans:
                _add_span(self.spans.setdefault(key, []), start, end)
            self._again += entry.again
            upto = max(upto, entry.dropped_upto)
        completed = self.buffer.ack(upto) if upto > self.buffer.acked else 0
        self.recovered = self.unreported_spans
        if self.recovered or completed:
            log.warning(
                "buffer_gaps_recovered",
                directory=str(self.buffer.directory),
                spans=self.recovered,
                drops_completed=completed,
            )
            if self.metrics:
                self.metrics.buffer_gaps_recovered.inc(self.recovered)
        self._persist()  # one compact frame for what was recovered

    @property
    def unreported_spans(self) -> int:
        """Lost spans (and records to append again) not yet written to the buffer."""
        return sum(len(s) for s in self.spans.values()) + len(self._again)

    def _state(self) -> JournalEntry:
        return JournalEntry(
            spans=[(key, s, e) for key, spans in self.spans.items() for s, e in spans],
            again=list(self._again),
            dropped_upto=self.buffer.acked,
        )

    def _persist(self) -> None:
        if self.journal is not None:
            self.journal.rewrite(self._state())

    def sync(self) -> None:
        """Make the buffer and the journal durable (before the poller's checkpoint)."""
        self.buffer.sync()
        if self.journal is not None:
            self.journal.sync()

    def _stamp(self, records: list[KafkaRecord]) -> None:
        """Stamp the poll batch with the time it is buffered (``ce_resmonbuffered``).

        One clock read and one shared header for the whole batch; the
        ``buffered`` stage (poll done -> buffered) is observed once, from the
        first record's ``ce_time`` (every record of one poll has the same sample time).
        """
        if not records:
            return
        now_ms = time.time_ns() // 1_000_000
        header = buffered_header(now_ms)
        for record in records:
            record.headers.append(header)
        if self.metrics is not None:
            polled = next((v for k, v in records[0].headers if k == "ce_time"), None)
            if polled is not None:
                polled_ms = datetime.fromisoformat(polled.decode()).timestamp() * 1000
                self.metrics.stage_buffered.observe((now_ms - polled_ms) / 1000)

    async def __call__(self, records: list[KafkaRecord]) -> None:
        self._stamp(records)
        gaps: list[KafkaRecord] = []
        if self.unreported_spans:
            # only what fits beside the readings: writing more would make the buffer
            # drop more, and while drops go on the spans keep growing instead, one
            # per resource, until there is room
            pending = self._gap_records()
            room = self.buffer.config.max_bytes - self.buffer.pending_bytes
            room -= self.buffer.frame_bytes(records)
            chosen: list[_Waiting] = []
            for item in pending:
                room -= self.buffer.frame_bytes([item.record])
                if room < 0:
                    break
                chosen.append(item)
            gaps = self._take(chosen)
            if len(chosen) < len(pending):
                if self.metrics:
                    self.metrics.buffer_gaps_held.inc()
                if not self.holding:
                    self.holding = True
                    log.warning(
                        "buffer_gaps_held",
                        directory=str(self.buffer.directory),
                        unreported_spans=self.unreported_spans,
                    )
        batch = gaps + records
        try:
            await self.buffer.put(batch)
        except BufferWriteError as exc:
            lost = batch[len(exc.written) :]
            # count the poller's records once; gaps tried again are not new losses
            new = min(len(lost), len(records))
            self.write_errors += new
            if self.metrics:
                self.metrics.buffer_write_errors.inc(new)
            self.failing = True
            self.remember(lost)
            log.error(
                "buffer_write_failed",
                directory=str(self.buffer.directory),
                error=str(exc),
                written=len(exc.written),
                lost=new,
                unreported_spans=self.unreported_spans,
                write_errors_total=self.write_errors,
            )
            return
        finally:
            if gaps:
                self._persist()  # the gaps written leave the journal, whatever is left stays
        if gaps:
            self.holding = self.holding and self.unreported_spans > 0
            log.info(
                "buffer_gaps_written",
                directory=str(self.buffer.directory),
                gaps=len(gaps),
                unreported_spans=self.unreported_spans,
            )
        if self.failing:
            self.failing = False
            log.info(
                "buffer_write_recovered",
                directory=str(self.buffer.directory),
                write_errors_total=self.write_errors,
            )

    def flush(self) -> None:
        """Write the gaps still waiting now, without waiting for space (at shutdown).

        What cannot be written stays in the journal for the next start
        (``buffer_gaps_deferred``); without a journal it is logged with its event
        ids (``buffer_gaps_lost``) and counted in ``lost_at_flush``.
        """
        if not self.unreported_spans:
            return
        gaps = self._take(self._gap_records())
        try:
            self.buffer.append_nowait(gaps)
        except DiskBufferError as exc:  # full (``block``) or not writable
            written = len(exc.written) if isinstance(exc, BufferWriteError | BufferFullError) else 0
            lost = gaps[written:]
            if self.journal is not None and not self.journal.stale:
                self.remember(lost)
                log.warning(
                    "buffer_gaps_deferred",
                    directory=str(self.buffer.directory),
                    error=str(exc),
                    deferred=len(lost),
                )
                return
            self.lost_at_flush += len(lost)
            log.error(
                "buffer_gaps_lost",
                directory=str(self.buffer.directory),
                error=str(exc),
                lost=len(lost),
                event_ids=[r.event_id for r in lost],
            )
        self._persist()

    def refused(self, records: list[KafkaRecord]) -> None:
        """Records Kafka refused for good (dead-lettered): their readings' spans become gaps.

        Gaps among them are not written again: Kafka would refuse them as well.
        """
        self.remember(records, readings_only=True)

    def remember(self, records: list[KafkaRecord], *, readings_only: bool = False) -> None:
        """Note records the buffer did not keep, so they are reported with a later write."""
        change = JournalEntry(dropped_upto=self.buffer.acked)
        for record in records:
            try:
                event = decode_record(record.value, record.headers)
            except DecodeError:
                continue  # not an event of ours: its drop is logged and counted by the buffer
            data = event.data
            if readings_only and not isinstance(data, UsageReading):
                continue  # in the dead-letter file, logged and counted there
            if isinstance(data, UsageReading) or (
                isinstance(data, UsageGap) and data.reason == "buffer_full"
            ):
                key = ResourceKey(
                    event.source,
                    data.customer_id,
                    data.resource_type,
                    data.resource_key,
                    data.source,
                    data.tenant_id,
                    data.device,
                    data.interface,
                    data.direction,
                )
                _add_span(self.spans.setdefault(key, []), data.start_ms, data.end_ms)
                change.spans.append((key, data.start_ms, data.end_ms))
            else:
                self._again.append(record)
                change.again.append(record)
        if self.journal is not None and (change.spans or change.again):
            self.journal.append(change, self._state())

    def _gap_records(self) -> list[_Waiting]:
        """A gap record for every remembered span (and the records to append again)."""
        out = [_Waiting(None, None, record) for record in self._again]
        for key, spans in self.spans.items():
            for start, end in spans:
                gap = UsageGap(
                    customer_id=key.customer_id,
                    resource_type=key.resource_type,
                    resource_key=key.resource_key,
                    start_ms=start,
                    end_ms=end,
                    reason="buffer_full",
                    source=key.source,
                    tenant_id=key.tenant_id,
                    device=key.device,
                    interface=key.interface,
                    direction=key.direction,
                    detail=GAP_DETAIL,
                )
                out.append(_Waiting(key, (start, end), encode_event(gap, source=key.ce_source)))
        return out

    def _take(self, chosen: list[_Waiting]) -> list[KafkaRecord]:
        """Hand over the ``chosen`` waiting records: forget their spans, count the gaps."""
        for item in chosen:
            if item.key is None:
                self._again.remove(item.record)
                continue
            spans = self.spans[item.key]
            spans.remove(item.span)  # type: ignore[arg-type]
            if not spans:
                del self.spans[item.key]
        if self.metrics:
            self.metrics.gaps.labels("buffer_full").inc(sum(i.key is not None for i in chosen))
        return [item.record for item in chosen]


class _Waiting(NamedTuple):
    """A record waiting to be written: a gap for ``key``'s ``span``, or one to append again."""

    key: ResourceKey | None
    span: tuple[int, int] | None
    record: KafkaRecord
