"""Forward buffered records to Kafka; acknowledge the buffer only after Kafka did.

The :class:`Sender` interface is the Kafka boundary (one batch in, "all
acknowledged" or :class:`SendError` out), so the forwarding logic can be tested
without a broker. :class:`KafkaSender` implements it with aiokafka.

While the broker is unreachable the forwarder retries the same batch with
exponential backoff; records stay in the buffer until acknowledged, so nothing
is lost. A partially acknowledged batch acks its acknowledged prefix. Any
other error while forwarding (a library surprise, an unreadable buffer file)
does not end the forwarder: it is logged (``forward_crashed``), counted
(``resmon_agent_forward_errors_total``), the sender is stopped so the next
send starts it afresh, and the batch is tried again after the backoff.

A record Kafka refuses for good (too large, a topic that is invalid or not
allowed: :func:`is_permanent`) is not retried: it is moved to
``dead-letter.log`` in the buffer directory with the error (logged as
``record_dead_lettered``, counted in ``resmon_agent_dead_lettered_total{error}``),
its interval is reported as a gap (:attr:`Forwarder.on_refused`), and the
records behind it flow on.
"""

from __future__ import annotations

import os
import random
import struct
import time
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Final, Protocol

import anyio
import msgspec
import structlog
from anyio.abc import TaskStatus

from protocol import BUFFERED_HEADER, KafkaRecord

from ._exceptions import SendError
from .buffer import BufferedRecord, DiskBuffer
from .config import KafkaConfig
from .metrics import AgentMetrics

__all__ = [
    "DeadLetter",
    "DeadLetterFile",
    "Forwarder",
    "KafkaSender",
    "Sender",
    "is_permanent",
    "read_dead_letters",
]

log = structlog.get_logger(component="edge_agent.forwarder")


class Sender(Protocol):
    """Send records to Kafka and wait until every one is acknowledged.

    ``send`` after ``stop`` starts the sender again (the forwarder stops it to
    start afresh after an unexpected error).
    """

    async def start(self) -> None: ...

    async def send(self, records: Sequence[KafkaRecord]) -> None:
        """Return when all are acknowledged; else raise :class:`SendError` (``acked`` = prefix)."""
        ...

    async def stop(self) -> None: ...


#: aiokafka errors that refuse a record for what it is (its size, its topic, its
#: content): no retry can cure them. Other non-retriable errors (authentication,
#: an unsupported version, an unknown error) concern the connection or the
#: cluster, not the record: those batches wait and are retried until fixed.
_PERMANENT_ERRORS: Final = (
    "MessageSizeTooLargeError",
    "RecordTooLargeError",
    "RecordListTooLargeError",
    "CorruptRecordException",
    "InvalidMessageError",
    "InvalidTopicError",
    "TopicAuthorizationFailedError",
    "InvalidTimestampError",
    "PolicyViolationError",
    "UnsupportedForMessageFormatError",
)


def is_permanent(exc: BaseException) -> bool:
    """Whether Kafka refused a record for good (dead-letter it) rather than for now (retry)."""
    import aiokafka.errors

    if getattr(exc, "retriable", False):
        return False
    kinds = tuple(getattr(aiokafka.errors, name) for name in _PERMANENT_ERRORS)
    return isinstance(exc, kinds)


class DeadLetter(msgspec.Struct, frozen=True):
    """A record Kafka refused for good, as kept in the dead-letter file."""

    record: KafkaRecord
    error: str
    at_ms: int


_DL_HEADER: Final = struct.Struct("<II")
_dl_decoder = msgspec.msgpack.Decoder(DeadLetter)


def read_dead_letters(path: Path) -> list[DeadLetter]:
    """The records in a dead-letter file, oldest first (up to a torn tail)."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return []
    out: list[DeadLetter] = []
    pos = 0
    while pos + _DL_HEADER.size <= len(data):
        length, crc = _DL_HEADER.unpack_from(data, pos)
        payload = data[pos + _DL_HEADER.size : pos + _DL_HEADER.size + length]
        if len(payload) < length or zlib.crc32(payload) != crc:
            break
        out.append(_dl_decoder.decode(payload))
        pos += _DL_HEADER.size + length
    return out


class DeadLetterFile:
    """Append-only ``dead-letter.log``: frames ``<u32 length> <u32 CRC32> <msgpack DeadLetter>``.

    Bounded by ``max_bytes``; a record that does not fit or cannot be written
    is logged (``dead_letter_write_failed``) and counted, and is lost.
    """

    def __init__(self, path: Path, *, max_bytes: int) -> None:
        self.path = path
        self.max_bytes = max_bytes

    def write(self, letter: DeadLetter) -> str | None:
        """Append ``letter``; return why it could not be kept, or ``None``."""
        payload = msgspec.msgpack.encode(letter)
        frame = _DL_HEADER.pack(len(payload), zlib.crc32(payload)) + payload
        try:
            size = self.path.stat().st_size if self.path.exists() else 0
            if size + len(frame) > self.max_bytes:
                return f"the dead-letter file is full ({size} of {self.max_bytes} bytes)"
            with self.path.open("ab") as f:
                f.write(frame)
                f.flush()
                os.fsync(f.fileno())
        except OSError as exc:
            return f"cannot write {self.path}: {exc}"
        return None


class KafkaSender:
    """:class:`Sender` over ``aiokafka.AIOKafkaProducer``, configured from :class:`KafkaConfig`."""

    def __init__(self, config: KafkaConfig) -> None:
        self.config = config
        self._producer: Any = None

    def _producer_kwargs(self) -> dict[str, Any]:
        c = self.config
        kwargs: dict[str, Any] = {
            "bootstrap_servers": c.bootstrap_servers,
            "client_id": c.client_id or "resmon-agent",
            "acks": c.acks,
            "linger_ms": c.linger_ms,
            "max_batch_size": c.max_batch_bytes,
            "compression_type": None if c.compression == "none" else c.compression,
            "enable_idempotence": c.enable_idempotence,
            "request_timeout_ms": c.request_timeout_ms,
            "security_protocol": c.security_protocol,
        }
        if c.sasl_mechanism:
            kwargs["sasl_mechanism"] = c.sasl_mechanism
            kwargs["sasl_plain_username"] = c.sasl_username
            if c.sasl_password is not None:
                kwargs["sasl_plain_password"] = c.sasl_password.get_secret_value()
        if c.security_protocol in ("SSL", "SASL_SSL"):
            from aiokafka.helpers import create_ssl_context

            kwargs["ssl_context"] = create_ssl_context(
                cafile=c.ssl_cafile, certfile=c.ssl_certfile, keyfile=c.ssl_keyfile
            )
        return kwargs

    async def start(self) -> None:
        from aiokafka import AIOKafkaProducer
        from aiokafka.errors import KafkaError

        if self._producer is not None:
            return
        try:
            producer = AIOKafkaProducer(**self._producer_kwargs())
        except (KafkaError, ValueError, RuntimeError) as exc:
            raise SendError(f"cannot configure the Kafka producer: {exc}") from None
        try:
            await producer.start()
        except (KafkaError, OSError) as exc:
            await producer.stop()
            raise SendError(
                f"cannot connect to Kafka at {self.config.bootstrap_servers}: "
                f"{type(exc).__name__}: {exc}"
            ) from None
        self._producer = producer

    async def send(self, records: Sequence[KafkaRecord]) -> None:
        """Send all, then settle them in order: acknowledged, refused for good, or not yet.

        A record Kafka refuses for good (:func:`is_permanent`) does not hold back
        the ones after it: it is reported in ``SendError.refused``. The first
        record that failed in a way a retry may cure ends the settled prefix.
        """
        from aiokafka.errors import KafkaError

        if self._producer is None:
            await self.start()
        outcomes: list[Any] = []  # a future, or the error send() raised at once
        try:
            for r in records:
                try:
                    outcomes.append(
                        await self._producer.send(
                            self.config.topic, value=r.value, key=r.key, headers=list(r.headers)
                        )
                    )
                except KafkaError as exc:
                    if not is_permanent(exc):
                        raise
                    outcomes.append(exc)  # e.g. larger than max_request_size
        except (TimeoutError, KafkaError, OSError) as exc:
            outcomes.append(exc)
        acked = 0
        refused: dict[int, str] = {}
        failure: BaseException | None = None
        for i, outcome in enumerate(outcomes):
            try:
                if isinstance(outcome, BaseException):
                    raise outcome
                await outcome
            except (TimeoutError, KafkaError, OSError) as exc:
                if i < len(records) and is_permanent(exc) and failure is None:
                    refused[i] = f"{type(exc).__name__}: {exc}"
                elif failure is None:
                    failure = exc
            if failure is None:
                acked = i + 1
        if failure is not None or refused:
            what = failure if failure is not None else "some records refused for good"
            if isinstance(what, BaseException):
                what = f"{type(what).__name__}: {what}"
            raise SendError(f"Kafka did not acknowledge: {what}", acked=acked, refused=refused)

    async def stop(self) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            await producer.stop()


class Forwarder:
    """Move records from a :class:`DiskBuffer` to a :class:`Sender`, forever."""

    def __init__(
        self,
        buffer: DiskBuffer,
        sender: Sender,
        *,
        batch_size: int = 500,
        metrics: AgentMetrics | None = None,
        backoff_initial: float = 0.2,
        backoff_max: float = 30.0,
        dead_letter: DeadLetterFile | None = None,
    ) -> None:
        self.buffer = buffer
        self.dead_letter = dead_letter or DeadLetterFile(
            buffer.directory / "dead-letter.log", max_bytes=buffer.config.dead_letter_max_bytes
        )
        #: called with the records moved aside, so their intervals are reported as gaps
        self.on_refused: Callable[[list[KafkaRecord]], None] | None = None
        self.dead_lettered = 0
        self.sender = sender
        self.batch_size = batch_size
        self.metrics = metrics
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self.sent = 0
        self.failures = 0

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        backoff = self.backoff_initial
        try:
            while True:
                await self.buffer.wait_for_records()
                try:
                    sent = await self.forward_once()
                except Exception as exc:  # a bug or a library surprise: keep forwarding
                    sent = False
                    await self._crashed(exc)
                if sent:
                    backoff = self.backoff_initial
                else:
                    await anyio.sleep(backoff * (0.5 + random.random() / 2))
                    backoff = min(backoff * 2, self.backoff_max)
        finally:
            with anyio.move_on_after(10, shield=True):
                await self.sender.stop()

    async def _crashed(self, exc: Exception) -> None:
        """An unexpected error while forwarding: log and count it, start the sender afresh.

        The batch stays in the buffer (nothing was acknowledged for it) and is
        sent again after the backoff.
        """
        self.failures += 1
        log.exception("forward_crashed", error_type=type(exc).__name__)
        if self.metrics:
            self.metrics.forward_errors.inc()
        with anyio.move_on_after(10, shield=True):
            try:
                await self.sender.stop()
            except Exception as stop_exc:
                log.warning("sender_stop_failed", error=f"{type(stop_exc).__name__}: {stop_exc}")

    async def forward_once(self) -> bool:
        """Send one batch of the oldest pending records; ``False`` if Kafka did not take it."""
        batch = self.buffer.peek(self.batch_size)
        if not batch:
            return True
        started = time.perf_counter()
        delivered = 0  # the last seq Kafka acknowledged
        self.buffer.sending(batch[-1].seq)
        try:
            await self.sender.send([b.record for b in batch])
            delivered = batch[-1].seq
        except SendError as exc:
            if exc.refused:
                self._move_aside([(batch[i], reason) for i, reason in sorted(exc.refused.items())])
            if exc.acked:
                delivered = batch[exc.acked - 1].seq
                self._ack(delivered, exc.acked - len(exc.refused))
                self._observe_acked(batch[: exc.acked])
            if exc.acked == len(batch):  # all settled: the refused ones are out of the way
                return True
            self.failures += 1
            if self.metrics:
                self.metrics.send_errors.inc()
            log.warning(
                "forward_failed", error=str(exc), acked=exc.acked, pending=len(batch) - exc.acked
            )
            return False
        finally:
            self.buffer.settle(delivered)
        if self.metrics:
            self.metrics.send_seconds.observe(time.perf_counter() - started)
        self._ack(batch[-1].seq, len(batch))
        self._observe_acked(batch)
        return True

    def _observe_acked(self, acked: list[BufferedRecord]) -> None:
        """The ``acked`` stage (buffered -> Kafka acknowledged), once per poll batch.

        The records of one poll share their ``ce_resmonbuffered`` stamp (the
        sink appends it last) and lie side by side in the buffer, so a change of
        stamp starts the next poll batch; records without one are skipped.
        """
        if self.metrics is None:
            return
        now_ms = time.time_ns() // 1_000_000
        last = b""
        for item in acked:
            headers = item.record.headers
            if headers and headers[-1][0] == BUFFERED_HEADER and headers[-1][1] != last:
                last = headers[-1][1]
                if last.isdigit():
                    self.metrics.stage_acked.observe((now_ms - int(last)) / 1000)

    def _move_aside(self, refused: list[tuple[BufferedRecord, str]]) -> None:
        """Records Kafka refused for good: into the dead-letter file, logged, counted, reported."""
        now_ms = int(time.time() * 1000)
        for item, reason in refused:
            problem = self.dead_letter.write(DeadLetter(item.record, reason, now_ms))
            self.dead_lettered += 1
            kind = reason.partition(":")[0]
            if self.metrics:
                self.metrics.dead_lettered.labels(kind).inc()
                if problem:
                    self.metrics.dead_letter_errors.inc()
            log.error(
                "record_dead_lettered",
                event_id=item.record.event_id,
                seq=item.seq,
                reason=reason,
                path=str(self.dead_letter.path),
                kept=problem is None,
                problem=problem,
                dead_lettered_total=self.dead_lettered,
            )
        if self.on_refused is not None:
            self.on_refused([item.record for item, _ in refused])

    def _ack(self, seq: int, count: int) -> None:
        self.buffer.ack(seq)
        self.sent += count
        if self.metrics:
            self.metrics.sent.inc(count)
