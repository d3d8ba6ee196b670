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
"""

from __future__ import annotations

import random
import time
from collections.abc import Sequence
from typing import Any, Protocol

import anyio
import structlog
from anyio.abc import TaskStatus

from protocol import KafkaRecord

from ._exceptions import SendError
from .buffer import DiskBuffer
from .config import KafkaConfig
from .metrics import AgentMetrics

__all__ = ["Forwarder", "KafkaSender", "Sender"]

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
        from aiokafka.errors import KafkaError

        if self._producer is None:
            await self.start()
        acked = 0
        try:
            futures = [
                await self._producer.send(
                    self.config.topic, value=r.value, key=r.key, headers=list(r.headers)
                )
                for r in records
            ]
            for future in futures:
                await future
                acked += 1
        except (TimeoutError, KafkaError, OSError) as exc:
            raise SendError(
                f"Kafka did not acknowledge: {type(exc).__name__}: {exc}", acked=acked
            ) from None

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
    ) -> None:
        self.buffer = buffer
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
            self.failures += 1
            if exc.acked:
                delivered = batch[exc.acked - 1].seq
                self._ack(delivered, exc.acked)
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
        return True

    def _ack(self, seq: int, count: int) -> None:
        self.buffer.ack(seq)
        self.sent += count
        if self.metrics:
            self.metrics.sent.inc(count)
