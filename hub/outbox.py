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
from collections.abc import Awaitable, Callable

import anyio
import asyncpg  # type: ignore[import-untyped]
import msgspec
import structlog
from aiokafka import AIOKafkaProducer
from anyio.abc import TaskStatus
from anyio.streams.memory import MemoryObjectSendStream

from protocol import (
    TOPIC_OPTIMIZATION,
    TYPE_OPTIMIZATION,
    AlertEvent,
    KafkaRecord,
    OptimizationEvent,
    encode_event,
)

from ._exceptions import HubError, storage_errors
from .alerts.records import AlertRecord, event_type, to_event
from .costs.recommend import Recommendation
from .kafka import publish_many
from .metrics import HubMetrics
from .storage.current import CachedUsage
from .storage.live import LivePublisher
from .storage.redis_cache import RedisCache

__all__ = [
    "Outbox",
    "OutboxBatch",
    "OutboxEvent",
    "forecast_alert_outbox",
    "insert_outbox",
    "optimization_outbox",
]

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


def optimization_outbox(
    source: str, at_ms: int
) -> Callable[[asyncpg.Connection, list[Recommendation]], Awaitable[int]]:
    """What the recommendation job calls with its new recommendations, in its transaction.

    It writes one outbox row of ``cost.optimization.v1`` CloudEvents for
    ``optimization.events``, each with the recommendation's id as its event id
    (a re-delivery repeats it), which the outbox publishes after the commit.
    """

    async def write(conn: asyncpg.Connection, found: list[Recommendation]) -> int:
        events = []
        for rec in found:
            payload = OptimizationEvent(
                recommendation_id=rec.recommendation_id,
                customer_id=rec.customer_id,
                recommendation_type=rec.kind,
                potential_savings=rec.monthly_savings,
                currency=rec.currency,
                description=rec.description,
                at_ms=at_ms,
                resource_key=rec.resource_key,
            )
            record = encode_event(
                payload, source=source, event_type=TYPE_OPTIMIZATION, id=rec.recommendation_id
            )
            events.append(OutboxEvent(record.key, record.value, record.headers, record.event_id))
        return await insert_outbox(conn, OutboxBatch(TOPIC_OPTIMIZATION, events, [], []))

    return write


_optimization_decoder = msgspec.json.Decoder(OptimizationEvent)


def _offer_live(live: LivePublisher, batch: OutboxBatch) -> bool:
    """Queue a delivered batch's events for the live stream; False if some were dropped."""
    ok = live.offer_usage(batch.usage)
    alerts = batch.alerts
    if not alerts and batch.events and batch.topic != TOPIC_OPTIMIZATION:
        alerts = _alerts_of(batch.events)  # a forecast refresh's row: events only
    ok = live.offer("alert", [(a.customer_id, _encoder.encode(a)) for a in alerts]) and ok
    if batch.topic == TOPIC_OPTIMIZATION and batch.events:
        created = []
        for e in batch.events:
            try:
                rec = _optimization_decoder.decode(e.value)
            except (msgspec.DecodeError, msgspec.ValidationError) as exc:
                _log.warning("live_event_undecodable", event_id=e.event_id, error=str(exc))
                continue
            data = {"change": "created", **msgspec.to_builtins(rec)}
            created.append((rec.customer_id, _encoder.encode(data)))
        ok = live.offer("recommendation", created) and ok
    return ok


_alert_decoder = msgspec.json.Decoder(AlertEvent)


def _alerts_of(events: list[OutboxEvent]) -> list[AlertEvent]:
    out = []
    for e in events:
        try:
            out.append(_alert_decoder.decode(e.value))
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            _log.warning("live_event_undecodable", event_id=e.event_id, error=str(exc))
            continue
    return out


def forecast_alert_outbox(
    source: str, topic: str
) -> Callable[[asyncpg.Connection, list[tuple[str, AlertRecord]]], Awaitable[int]]:
    """What the forecast refresh calls with the stored-forecast alerts it raised or
    resolved, in their transaction: one outbox row of their CloudEvents for ``topic``
    (ids ``<alert id>.<status>``, as the consumer's alerts), published after the commit.

    The Redis open-alert hash is left to the actors: its forecast field is the
    pace-based episode's.
    """

    async def write(conn: asyncpg.Connection, changed: list[tuple[str, AlertRecord]]) -> int:
        events = []
        for alert_id, record in changed:
            encoded = encode_event(
                to_event(record, alert_id),
                source=source,
                event_type=event_type(record),
                id=f"{alert_id}.{record.status.lower()}",
            )
            events.append(
                OutboxEvent(encoded.key, encoded.value, list(encoded.headers), encoded.event_id)
            )
        return await insert_outbox(conn, OutboxBatch(topic, events, [], []))

    return write


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
        stop_grace: float = 3.0,
        live: LivePublisher | None = None,
    ) -> None:
        self.pool = pool
        #: where delivered usage, alerts and recommendations go for GET /api/stream
        self.live = live
        self.producer = producer
        self.cache = cache
        self.metrics = metrics
        self.drain_interval = drain_interval
        #: seconds a stop spends delivering the rows committed but not delivered yet
        self.stop_grace = stop_grace
        #: rows committed by this instance and not delivered yet (delivered at a stop)
        self._pending: dict[int, OutboxBatch] = {}
        #: rows whose payload does not decode: skipped by every drain (counted once)
        self._undecodable: set[int] = set()
        self._queue = queue
        self._send: MemoryObjectSendStream[tuple[int, OutboxBatch]] | None = None
        #: deliveries done (published, Redis written) and their rows deleted
        self.delivered = 0
        #: delivery rounds (their row ids) the deleter has not deleted yet
        self._delivered: list[list[int]] = []
        self._to_delete: anyio.Event  # set by run()
        #: called with (event, published at perf_counter) for every published alert
        self.on_published: list[Callable[[OutboxEvent, float], None]] = []
        #: rows with alerts committed by this instance: when (for the published stage)
        self._committed_at: dict[int, float] = {}

    def committed(self, row_id: int, batch: OutboxBatch) -> None:
        """Note a row whose transaction just committed (before anything can cancel the
        caller): a stop delivers it if :meth:`submit` never got it delivered."""
        self._pending[row_id] = batch
        if batch.events:  # the published stage runs from here (monotonic seconds)
            self._committed_at[row_id] = time.monotonic()

    async def submit(self, row_id: int, batch: OutboxBatch) -> None:
        """Queue a committed row for delivery (waits when the queue is full).

        Without a running delivery task the row stays for the next drain.
        """
        self._pending[row_id] = batch
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
                        delivered = await self._deliver(_merge(batches))
                        now = time.monotonic()
                        for i in ids:
                            if (at := self._committed_at.pop(i, None)) is not None and delivered:
                                self.metrics.observe_stage("published", now - at)
                        if delivered:
                            # deleted by _deleter, off the delivery path: the next batch's
                            # alerts need not wait for this round trip and its commit
                            self._delivered.append(ids)
                            self._to_delete.set()
                            for i in ids:
                                self._pending.pop(i, None)
            finally:
                self._send = None
                self._committed_at.clear()
                await self._flush_at_stop()

    async def _flush_at_stop(self) -> None:
        """Deliver what this instance committed and did not deliver, for ``stop_grace`` s.

        Without it, rows committed just before a stop (queued, or in a delivery
        the stop cancelled) waited for the next drain, maybe the next start.
        What is still undelivered when the grace runs out is logged and counted
        (``resmon_hub_outbox_left_at_stop_total``); the rows stay for a drain.
        """
        delivered = 0
        with anyio.CancelScope(shield=True, deadline=anyio.current_time() + self.stop_grace):
            # a batch still committing as the stop began may add rows meanwhile
            while pending := sorted(self._pending):
                if not await self._deliver(_merge([self._pending[i] for i in pending])):
                    break
                self._delivered.append(pending)
                delivered += len(pending)
                for i in pending:
                    del self._pending[i]
            ids = [i for r in self._delivered for i in r]
            if ids:
                try:
                    with storage_errors():
                        await self.pool.execute(
                            "DELETE FROM hub_outbox WHERE id = ANY($1::bigint[])", ids
                        )
                except HubError as exc:
                    _log.warning("outbox_delete_failed", rows=len(ids), error=str(exc))
                else:
                    self.delivered += len(self._delivered)
                    self._delivered = []
        left = len(self._pending)
        if left:
            self.metrics.outbox_left_at_stop.inc(left)
            _log.warning(
                "outbox_left_at_stop",
                rows=left,
                grace_s=self.stop_grace,
                delivered_at_stop=delivered,
                then="delivered by the next drain (any hub of the group, or the next start)",
            )
        elif delivered:
            _log.info("outbox_delivered_at_stop", rows=delivered)

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
        # the stream is best effort, written by its own task: the row is not kept for it
        if self.live is not None and not _offer_live(self.live, batch):
            self.metrics.side_effect_failures.labels("stream").inc()
            _log.warning("stream_queue_full", then="events of this batch are not streamed")
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
                             AND id <> ALL($2::bigint[])
                           ORDER BY id LIMIT 100 FOR UPDATE SKIP LOCKED""",
                        min_age_s,
                        list(self._undecodable),
                    )
                    if not rows:
                        return done
                    for row in rows:
                        batch = self._decode(row["id"], row["payload"])
                        if batch is None:
                            continue
                        if not await self._deliver(batch):
                            return done
                        await conn.execute("DELETE FROM hub_outbox WHERE id = $1", row["id"])
                        self._pending.pop(row["id"], None)
                        done += 1
                        self.delivered += 1
            _log.info("outbox_drained", rows=done)

    def _decode(self, row_id: int, payload: bytes) -> OutboxBatch | None:
        """A row's batch; None for one that does not decode (from another hub version?).

        Such a row used to end the delivery task, and the hub with it, at every
        start. It is left in ``hub_outbox`` for an operator, logged and counted
        once, and skipped by every later drain.
        """
        try:
            return _decoder.decode(payload)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            self._undecodable.add(row_id)
            self.metrics.outbox_undecodable.inc()
            _log.error("outbox_row_undecodable", row=row_id, bytes=len(payload), error=str(exc))
            return None

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
