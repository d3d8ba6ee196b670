"""The usage consumer: Kafka batches -> actors -> one PostgreSQL transaction -> side effects.

Per batch (``getmany``):

1. decode every record with :func:`protocol.decode_record`; garbage, events of
   other types and readings that cannot be stored (negative or > 2^63-1
   values, impossible times, a key that does not match customer/type) become
   dead letters — counted, stored with their raw bytes, never blocking the
   partition;
2. in ONE transaction: claim the event ids in ``processed_events`` (a
   duplicate is dropped here, before it reaches a total), apply the new
   readings to their actors (the registry; an unknown resource is
   auto-provisioned), then write raw rows (COPY), gaps, dead letters, period
   totals, alert transitions and the next offsets (``consumer_offsets``);
3. after the commit: commit the Kafka offsets, publish alert CloudEvents
   (``usage.threshold.v1``) and update Redis. These are best effort: a
   failure is logged and counted (PostgreSQL has the truth).

If the transaction fails, the touched actors are forgotten (rebuilt from
PostgreSQL on next use), the partitions are rewound to the batch start and
the batch is retried after a backoff. On assignment the consumer seeks to the
offsets stored in PostgreSQL, so what was committed there is never applied
twice even if the Kafka commit was lost.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Sequence
from typing import Any
from zoneinfo import ZoneInfo

import anyio
import asyncpg  # type: ignore[import-untyped]
import structlog
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import IllegalStateError, KafkaError
from anyio.abc import TaskStatus

from protocol import (
    RESOURCE_BASE_UNIT,
    TYPE_THRESHOLD,
    DecodedEvent,
    DecodeError,
    UsageGap,
    UsageReading,
    decode_record,
    encode_event,
)

from ._exceptions import HubError, NotFoundError, broker_errors, storage_errors
from .actors import Outcome, Registry, period_start
from .alerts.records import AlertRecord, alert_record, percentage, to_event, to_unit
from .config import HubConfig
from .kafka import publish
from .metrics import HubMetrics
from .storage.batch import (
    DeadLetter,
    ReadingRow,
    TotalRow,
    claim_events,
    stored_offsets,
    write_batch,
)
from .storage.redis_cache import CachedUsage, RedisCache, now_ms

__all__ = ["UsageConsumer", "validate_reading"]

_log = structlog.get_logger("hub.consumer")

_MAX_VALUE = 2**63 - 1
_MAX_MS = 253_402_300_799_999  # 9999-12-31T23:59:59.999Z


def validate_reading(r: UsageReading | UsageGap) -> str | None:
    """Why ``r`` cannot be stored, or None if it can."""
    prefix = f"{r.customer_id}/{r.resource_type}"
    if not r.customer_id or "/" in r.customer_id or not r.resource_type:
        return "customerId/resourceType must be non-empty and customerId must not contain '/'"
    if r.resource_key != prefix and not r.resource_key.startswith(prefix + "/"):
        return f"resourceKey {r.resource_key!r} does not start with {prefix!r}"
    if not 0 <= r.start_ms <= r.end_ms <= _MAX_MS:
        return f"need 0 <= startMs <= endMs <= {_MAX_MS}"
    if isinstance(r, UsageReading):
        if not 0 <= r.value <= _MAX_VALUE:
            return f"value {r.value} is outside 0..2^63-1"
        expected = RESOURCE_BASE_UNIT.get(r.resource_type)
        if expected is not None and r.unit != expected:
            return f"unit {r.unit!r} is not the base unit {expected!r} of {r.resource_type}"
    return None


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, owner: UsageConsumer, consumer: AIOKafkaConsumer) -> None:
        self._owner = owner
        self._consumer = consumer

    async def on_partitions_revoked(self, revoked: Sequence[TopicPartition]) -> None:
        partitions = [tp.partition for tp in revoked]
        # wait for the batch in flight to commit to PostgreSQL, so the next owner of these
        # partitions loads totals that include it; then stop their actors
        async with self._owner.batch_lock:
            await self._owner.registry.forget_partitions(partitions)
        _log.info("partitions_revoked", partitions=partitions)

    async def on_partitions_assigned(self, assigned: Sequence[TopicPartition]) -> None:
        await self._owner.seek_to_stored(self._consumer, assigned)
        _log.info("partitions_assigned", partitions=[tp.partition for tp in assigned])


class UsageConsumer:
    """Consumes ``config.usage_topic`` in ``config.consumer_group``; see the module docstring."""

    def __init__(
        self,
        config: HubConfig,
        pool: asyncpg.Pool,
        registry: Registry,
        *,
        cache: RedisCache | None,
        producer: AIOKafkaProducer | None,
        metrics: HubMetrics,
    ) -> None:
        self.config = config
        self.pool = pool
        self.registry = registry
        self.cache = cache
        self.producer = producer
        self.metrics = metrics
        self._tz = ZoneInfo(config.billing_tz)
        self.batches = 0
        #: held from decoding a batch until its PostgreSQL commit (not while committing to
        #: Kafka, which may wait for a rebalance that waits for this lock)
        self.batch_lock = anyio.Lock()

    async def seek_to_stored(
        self, consumer: AIOKafkaConsumer, partitions: Sequence[TopicPartition]
    ) -> None:
        with storage_errors(self.config.database_address):
            stored = await stored_offsets(
                self.pool, self.config.consumer_group, self.config.usage_topic
            )
        for tp in partitions:
            if tp.topic == self.config.usage_topic and tp.partition in stored:
                consumer.seek(tp, stored[tp.partition])

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        cfg = self.config
        consumer = AIOKafkaConsumer(
            bootstrap_servers=cfg.kafka_bootstrap_servers,
            group_id=cfg.consumer_group,
            client_id=cfg.source,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_poll_records=cfg.batch_max_records,
            session_timeout_ms=cfg.session_timeout_ms,
            heartbeat_interval_ms=max(100, cfg.session_timeout_ms // 4),
        )
        consumer.subscribe([cfg.usage_topic], listener=_Rebalance(self, consumer))
        with broker_errors(cfg.kafka_bootstrap_servers):
            try:
                await consumer.start()
            except BaseException:
                await consumer.stop()
                raise
        try:
            task_status.started()
            failures = 0
            while True:
                with broker_errors(cfg.kafka_bootstrap_servers):
                    batch = await consumer.getmany(
                        timeout_ms=cfg.batch_timeout_ms, max_records=cfg.batch_max_records
                    )
                if not batch:
                    continue
                try:
                    await self.process(consumer, batch)
                    failures = 0
                except HubError as exc:
                    failures += 1
                    self.metrics.batch_failures.inc()
                    delay = min(0.5 * 2 ** (failures - 1), 30.0)
                    _log.error("batch_failed", error=str(exc), retry_in_s=delay)
                    for tp, records in batch.items():
                        # a partition revoked meanwhile is replayed by its new owner
                        with contextlib.suppress(IllegalStateError):
                            consumer.seek(tp, records[0].offset)
                    await anyio.sleep(delay)
        finally:
            with anyio.CancelScope(shield=True):
                await consumer.stop()

    async def process(
        self, consumer: AIOKafkaConsumer, batch: dict[TopicPartition, list[Any]]
    ) -> None:
        """Process one ``getmany`` batch (public for tests and benchmarks)."""
        started = time.perf_counter()
        events: list[tuple[int, Any, DecodedEvent]] = []
        dead: list[DeadLetter] = []
        offsets: dict[TopicPartition, int] = {}

        def bury(partition: int, topic: str, rec: Any, reason: str) -> None:
            dead.append(
                DeadLetter(
                    topic=topic,
                    partition=partition,
                    offset=rec.offset,
                    reason=reason,
                    key=rec.key,
                    value=rec.value,
                    headers=list(rec.headers or ()),
                )
            )

        for tp, records in batch.items():
            for rec in records:
                try:
                    ev = decode_record(rec.value, list(rec.headers or ()))
                except DecodeError as exc:
                    bury(tp.partition, tp.topic, rec, f"undecodable: {exc}")
                    continue
                if not isinstance(ev.data, UsageReading | UsageGap):
                    bury(tp.partition, tp.topic, rec, f"unexpected event type {ev.type!r}")
                    continue
                if (why := validate_reading(ev.data)) is not None:
                    bury(tp.partition, tp.topic, rec, f"invalid: {why}")
                    continue
                events.append((tp.partition, rec, ev))
            if records:
                offsets[tp] = records[-1].offset + 1

        unique: dict[str, tuple[int, Any, DecodedEvent]] = {}
        for item in events:
            unique.setdefault(item[2].id, item)
        duplicates = len(events) - len(unique)
        results: dict[str, Outcome | Exception] = {}
        alerts: list[AlertRecord] = []
        alert_ids: list[str] = []
        applied = 0
        gaps_written = 0
        try:
            async with self.batch_lock:
                with storage_errors(self.config.database_address):
                    async with self.pool.acquire() as conn, conn.transaction():
                        fresh_ids = await claim_events(conn, list(unique))
                        fresh = [item for eid, item in unique.items() if eid in fresh_ids]
                        duplicates += len(unique) - len(fresh)
                        readings = [
                            (p, ev.data) for p, _, ev in fresh if isinstance(ev.data, UsageReading)
                        ]
                        results = await self.registry.apply(readings)
                        rows: list[ReadingRow] = []
                        for p, rec, ev in fresh:
                            data = ev.data
                            if not isinstance(data, UsageReading):
                                continue
                            res = results[data.resource_key]
                            if isinstance(res, NotFoundError):
                                bury(p, self.config.usage_topic, rec, f"unprovisionable: {res}")
                            elif isinstance(res, Exception):
                                raise res
                            else:
                                rows.append(ReadingRow(res.resource_id, ev.id, data))
                        outcomes = [r for r in results.values() if isinstance(r, Outcome)]
                        for o in outcomes:
                            base = RESOURCE_BASE_UNIT.get(o.resource_type, "byte")
                            alerts.extend(alert_record(o, c, base) for c in o.changes)
                        gaps = [
                            (ev.id, ev.data) for _, _, ev in fresh if isinstance(ev.data, UsageGap)
                        ]
                        alert_ids = await write_batch(
                            conn,
                            group=self.config.consumer_group,
                            readings=rows,
                            gaps=gaps,
                            dead=dead,
                            totals=[
                                TotalRow(
                                    o.resource_id,
                                    o.total,
                                    period_start(o.period) if o.period >= 0 else None,
                                )
                                for o in outcomes
                            ],
                            alerts=alerts,
                            offsets=[(tp.topic, tp.partition, off) for tp, off in offsets.items()],
                        )
                        applied = len(rows)
                        gaps_written = len(gaps)
        except BaseException:
            if results:
                with anyio.CancelScope(shield=True):
                    await self.registry.forget_keys(results)
            raise
        self.batches += 1
        m = self.metrics
        m.batch_seconds.observe(time.perf_counter() - started)
        m.readings.inc(applied)
        m.duplicates.inc(duplicates)
        m.dead_letters.inc(len(dead))
        m.gaps.inc(gaps_written)
        m.actors.set(len(self.registry))
        outcomes = [r for r in results.values() if isinstance(r, Outcome)]
        for o in outcomes:
            m.late.inc(o.late)
            if o.provisioned:
                m.provisioned.inc()
        for a in alerts:
            m.alerts.labels(a.alert_type, a.status).inc()
        for d in dead:
            _log.warning("dead_letter", partition=d.partition, offset=d.offset, reason=d.reason)
        await self._after_commit(consumer, offsets, outcomes, alerts, alert_ids)

    async def _after_commit(
        self,
        consumer: AIOKafkaConsumer,
        offsets: dict[TopicPartition, int],
        outcomes: list[Outcome],
        alerts: list[AlertRecord],
        alert_ids: list[str],
    ) -> None:
        try:
            await consumer.commit(offsets)
        except KafkaError as exc:  # PostgreSQL holds the offsets; the next start seeks there
            _log.warning("kafka_commit_failed", error=str(exc))
        events = [to_event(a, aid) for a, aid in zip(alerts, alert_ids, strict=True) if aid]
        if self.producer is not None:
            for event in events:
                try:
                    await publish(
                        self.producer,
                        self.config.alerts_topic,
                        encode_event(event, source=self.config.source, event_type=TYPE_THRESHOLD),
                    )
                except HubError as exc:
                    self.metrics.side_effect_failures.labels("kafka").inc()
                    _log.warning("alert_publish_failed", alert_id=event.alert_id, error=str(exc))
        for a in alerts:
            _log.info(
                "alert",
                resource_key=a.resource_key,
                alert_type=a.alert_type,
                status=a.status,
                current=str(a.current_value),
                unit=a.unit,
            )
        if self.cache is not None and (outcomes or events):
            try:
                await self.cache.update([self._cached(o) for o in outcomes], events)
            except HubError as exc:
                self.metrics.side_effect_failures.labels("redis").inc()
                _log.warning("cache_update_failed", error=str(exc))

    @staticmethod
    def _cached(o: Outcome) -> CachedUsage:
        from .alerts.records import display_unit

        base = RESOURCE_BASE_UNIT.get(o.resource_type, "byte")
        unit = display_unit(o.unit, base)
        pct = percentage(o.total, o.limit)
        return CachedUsage(
            resource_key=o.key,
            resource_type=o.resource_type,
            usage=o.total,
            unit=base,
            limit=o.limit,
            catalog_unit=unit,
            usage_in_unit=str(to_unit(o.total, unit)),
            limit_in_unit=str(to_unit(o.limit, unit)) if o.limit is not None else None,
            percentage=str(pct) if pct is not None else None,
            level=o.level.name,
            updated=now_ms(),
        )
