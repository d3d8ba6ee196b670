"""Between the poller and the disk buffer: what the buffer could not keep still reaches the hub.

Readings are lost to the buffer in two ways: ``drop_oldest`` removes the oldest
pending records when the buffer is at ``max_bytes``, and a write fails (a full
filesystem, an I/O error). Either way the usage of those intervals is unknown
to the hub, and a bill that silently lacks them looks complete. So
:class:`BufferSink` remembers, per resource (customer, resource, device,
interface, direction), the spans of the readings that were lost, merging
contiguous ones, and appends one ``UsageGap`` (reason ``buffer_full``) per
resource and span in front of the next batch it writes. The gap's span is
exactly the lost readings' ``[start_ms, end_ms)``: with the readings that were
kept, every interval is still covered once.

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

The spans are kept in memory. When the agent stops they are written as gaps
before the buffer closes (:meth:`BufferSink.flush`); a crash while some are
waiting loses them (the restart's own ``agent_restart`` gap starts at the last
checkpointed interval, after them).
"""

from __future__ import annotations

import msgspec
import structlog

from protocol import DecodeError, KafkaRecord, UsageGap, UsageReading, decode_record, encode_event
from protocol._events import Direction

from ._exceptions import BufferFullError, BufferWriteError, DiskBufferError
from .buffer import DiskBuffer
from .metrics import AgentMetrics

__all__ = ["BufferSink", "ResourceKey"]

log = structlog.get_logger(component="edge_agent.sink")

GAP_DETAIL = "readings the agent measured but its disk buffer could not keep (full or not writable)"


class ResourceKey(msgspec.Struct, frozen=True):
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
    """The poller's sink: appends to ``buffer`` and turns what it could not keep into gaps."""

    def __init__(self, buffer: DiskBuffer, *, metrics: AgentMetrics | None = None) -> None:
        self.buffer = buffer
        self.metrics = metrics
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
        buffer.on_drop = self.remember

    @property
    def unreported_spans(self) -> int:
        """Lost spans (and records to append again) not yet written to the buffer."""
        return sum(len(s) for s in self.spans.values()) + len(self._again)

    async def __call__(self, records: list[KafkaRecord]) -> None:
        gaps = self._take()
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
        if self.failing:
            self.failing = False
            log.info(
                "buffer_write_recovered",
                directory=str(self.buffer.directory),
                write_errors_total=self.write_errors,
            )

    def flush(self) -> None:
        """Write the gaps still waiting now, without waiting for space (at shutdown).

        What cannot be written is logged with its spans (``buffer_gaps_lost``) and
        counted in ``lost_at_flush``: nothing is left to report it later.
        """
        gaps = self._take()
        if not gaps:
            return
        try:
            self.buffer.append_nowait(gaps)
        except DiskBufferError as exc:  # full (``block``) or not writable
            written = len(exc.written) if isinstance(exc, BufferWriteError | BufferFullError) else 0
            lost = gaps[written:]
            self.lost_at_flush += len(lost)
            log.error(
                "buffer_gaps_lost",
                directory=str(self.buffer.directory),
                error=str(exc),
                lost=len(lost),
                event_ids=[r.event_id for r in lost],
            )

    def remember(self, records: list[KafkaRecord]) -> None:
        """Note records the buffer did not keep, so they are reported with the next write."""
        for record in records:
            try:
                event = decode_record(record.value, record.headers)
            except DecodeError:
                continue  # not an event of ours: its drop is logged and counted by the buffer
            data = event.data
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
            else:
                self._again.append(record)

    def _take(self) -> list[KafkaRecord]:
        """The gap records for every remembered span (and the records to append again)."""
        out, self._again = self._again, []
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
                out.append(encode_event(gap, source=key.ce_source))
                if self.metrics:
                    self.metrics.gaps.labels("buffer_full").inc()
        self.spans = {}
        return out
