"""The transactional outbox: a committed batch's side effects, delivered at least once.

The batch transaction writes one ``hub_outbox`` row holding everything the
batch must do outside PostgreSQL: the alert CloudEvents for ``resource.alerts``
(already encoded, with deterministic ids ``<alert id>.<status>``) and the Redis
updates (current usage, open alerts). After the commit the consumer hands the
row to :class:`Outbox`, whose single delivery task publishes the events,
updates Redis and then deletes the row — in commit order; rows that queued up
while it was busy are delivered together (events in order, the latest usage
of each resource). A hub killed between
commit and delete leaves the row behind; :meth:`Outbox.drain` (at start and
every ``drain_interval`` seconds, any hub of the group, ``SKIP LOCKED``)
delivers it. A re-delivery repeats the same CloudEvent ids, so consumers of
``resource.alerts`` deduplicate by id and Redis writes are idempotent.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import anyio
import asyncpg  # type: ignore[import-untyped]
import msgspec
import structlog
from aiokafka import AIOKafkaProducer
from anyio.abc import TaskStatus
from anyio.streams.memory import MemoryObjectSendStream

from protocol import AlertEvent, KafkaRecord

from ._exceptions import HubError, storage_errors
from .kafka import publish_many
from .metrics import HubMetrics
from .storage.current import CachedUsage
from .storage.redis_cache import RedisCache

__all__ = ["Outbox", "OutboxBatch", "OutboxEvent", "insert_outbox"]

_log = structlog.get_logger(component="hub.outbox")


class OutboxEvent(msgspec.Struct, frozen=True):
    key: bytes
    value: bytes
    headers: list[tuple[str, bytes]]
    event_id: str
    #: when the reading that caused it was consumed (perf_counter; latency metric only)
    consumed: float = 0.0


class OutboxBatch(msgspec.Struct, frozen=True):
    topic: str
    events: list[OutboxEvent]
    usage: list[CachedUsage]
    alerts: list[AlertEvent]


_encoder = msgspec.json.Encoder(decimal_format="string")


def _merge(batches: list[OutboxBatch]) -> OutboxBatch:
    """Several committed rows as one delivery: events in order, the latest usage per resource."""
    if len(batches) == 1:
        return batches[0]
    usage = {u.resource_key: u for b in batches for u in b.usage}
    return OutboxBatch(
        topic=batches[0].topic,
        events=[e for b in batches for e in b.events],
        usage=list(usage.values()),
        alerts=[a for b in batches for a in b.alerts],
    )


_decoder = msgspec.json.Decoder(OutboxBatch)


async def insert_outbox(conn: asyncpg.Connection, batch: OutboxBatch) -> int:
    """Write ``batch`` in the caller's transaction; return the row id."""
    return int(
        await conn.fetchval(
            "INSERT INTO hub_outbox (payload) VALUES ($1) RETURNING id", _encoder.encode(batch)
        )
    )


class Outbox:
    """Delivers outbox rows: in order from the consumer, and left-overs by draining."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        producer: AIOKafkaProducer | None,
        cache: RedisCache | None,
        metrics: HubMetrics,
        *,
        drain_interval: float = 5.0,
        queue: int = 64,
    ) -> None:
        self.pool = pool
        self.producer = producer
        self.cache = cache
        self.metrics = metrics
        self.drain_interval = drain_interval
        self._queue = queue
        self._send: MemoryObjectSendStream[tuple[int, OutboxBatch]] | None = None
        #: deliveries done (published, Redis written) and their rows deleted
        self.delivered = 0
        #: delivery rounds (their row ids) the deleter has not deleted yet
        self._delivered: list[list[int]] = []
        self._to_delete: anyio.Event  # set by run()
        #: called with (event, published at perf_counter) for every published alert
        self.on_published: list[Callable[[OutboxEvent, float], None]] = []

    async def submit(self, row_id: int, batch: OutboxBatch) -> None:
        """Queue a committed row for delivery (waits when the queue is full).

        Without a running delivery task the row stays for the next drain.
        """
        if self._send is not None:
            await self._send.send((row_id, batch))

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        send, receive = anyio.create_memory_object_stream[tuple[int, OutboxBatch]](self._queue)
        with send, receive:
            self._send = send
            self._to_delete = anyio.Event()
            try:
                async with anyio.create_task_group() as tg:
                    tg.start_soon(self._drainer)
                    tg.start_soon(self._deleter)
                    task_status.started()
                    async for row_id, batch in receive:
                        ids, batches = [row_id], [batch]
                        while len(ids) < 256:  # coalesce what queued up meanwhile
                            try:
                                more_id, more = receive.receive_nowait()
                            except anyio.WouldBlock:
                                break
                            ids.append(more_id)
                            batches.append(more)
                        if await self._deliver(_merge(batches)):
                            # deleted by _deleter, off the delivery path: the next batch's
                            # alerts need not wait for this round trip and its commit
                            self._delivered.append(ids)
                            self._to_delete.set()
            finally:
                self._send = None

    async def _deleter(self) -> None:
        """Delete delivered rows, coalescing whatever was delivered meanwhile.

        A row whose delete fails or never runs (crash) is delivered again by
        :meth:`drain` — at least once, with the same CloudEvent ids.
        """
        while True:
            await self._to_delete.wait()
            self._to_delete = anyio.Event()
            rounds, self._delivered = self._delivered, []
            ids = [i for r in rounds for i in r]
            try:
                with storage_errors():
                    await self.pool.execute(
                        "DELETE FROM hub_outbox WHERE id = ANY($1::bigint[])", ids
                    )
            except HubError as exc:
                self.metrics.storage_failures.labels("outbox").inc()
                _log.warning("outbox_delete_failed", rows=len(ids), error=str(exc))
                await anyio.sleep(1.0)
                self._delivered[:0] = rounds
                self._to_delete.set()
            else:
                self.delivered += len(rounds)

    async def _deliver(self, batch: OutboxBatch) -> bool:
        ok = True
        if self.producer is not None and batch.events:
            try:
                await publish_many(
                    self.producer,
                    batch.topic,
                    [KafkaRecord(e.key, e.value, e.headers, e.event_id) for e in batch.events],
                )
                now = time.perf_counter()
                for e in batch.events:
                    for callback in self.on_published:
                        callback(e, now)
            except HubError as exc:
                ok = False
                self.metrics.side_effect_failures.labels("kafka").inc()
                _log.warning("alert_publish_failed", events=len(batch.events), error=str(exc))
        if self.cache is not None and (batch.usage or batch.alerts):
            try:
                await self.cache.update(batch.usage, batch.alerts)
            except HubError as exc:
                ok = False
                self.metrics.side_effect_failures.labels("redis").inc()
                _log.warning("cache_update_failed", error=str(exc))
        return ok

    async def drain(self, min_age_s: float = 0.0) -> int:
        """Deliver rows older than ``min_age_s`` that nobody delivered; return how many."""
        done = 0
        while True:
            with storage_errors():
                async with self.pool.acquire() as conn, conn.transaction():
                    rows = await conn.fetch(
                        """SELECT id, payload FROM hub_outbox
                           WHERE created_at <= now() - make_interval(secs => $1)
                           ORDER BY id LIMIT 100 FOR UPDATE SKIP LOCKED""",
                        min_age_s,
                    )
                    if not rows:
                        return done
                    for row in rows:
                        if not await self._deliver(_decoder.decode(row["payload"])):
                            return done
                        await conn.execute("DELETE FROM hub_outbox WHERE id = $1", row["id"])
                        done += 1
                        self.delivered += 1
            _log.info("outbox_drained", rows=done)

    async def _drainer(self) -> None:
        min_age = 0.0  # at start: whatever an earlier run left
        while True:
            try:
                await self.drain(min_age_s=min_age)
            except HubError as exc:
                self.metrics.storage_failures.labels("outbox").inc()
                _log.warning("outbox_drain_failed", error=str(exc), retry_in_s=self.drain_interval)
            else:
                min_age = max(self.drain_interval * 2, 10.0)
            await anyio.sleep(self.drain_interval)
