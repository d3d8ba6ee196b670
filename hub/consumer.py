"""The usage consumer: Kafka batches -> actors -> one PostgreSQL transaction -> side effects.

Per batch (``getmany``):

1. decode every record with :func:`protocol.decode_record`; garbage, events of
   other types and readings that cannot be stored (negative or > 2^63-1
   values, impossible times, a key that does not match customer/type) become
   dead letters — counted, stored with their raw bytes, never blocking the
   partition;
2. make sure the monthly ``usage_metrics`` partitions of the batch exist
   (a short transaction of its own);
3. in ONE transaction: claim the events in ``processed_events`` by their
   CloudEvents identity, source and id (a duplicate is dropped here, before
   it reaches a total), apply the new
   readings to their actors (the registry; an unknown resource is
   auto-provisioned; a reading an actor refuses is dead-lettered), then write
   raw rows (COPY), gaps, dead letters, aggregates, period totals with the
   actors' statistics, alert transitions, the outbox row (alert CloudEvents
   and Redis updates) and the next offsets (``consumer_offsets``);
4. after the commit: commit the Kafka offsets and hand the outbox row to
   :class:`~hub.outbox.Outbox`, which publishes (``usage.threshold.v1`` /
   ``resource.alert.v1``), updates Redis and deletes the row; a crash before
   that leaves the row for the next drain.

If the transaction fails, the touched actors are forgotten (rebuilt from
PostgreSQL on next use), the partitions are rewound to the batch start and
the batch is retried after a backoff. On assignment the consumer seeks to the
offsets stored in PostgreSQL, so what was committed there is never applied
twice even if the Kafka commit was lost.
"""

from __future__ import annotations

import contextlib
import itertools
import time
from collections.abc import Sequence
from typing import Any, cast
from zoneinfo import ZoneInfo

import anyio
import asyncpg  # type: ignore[import-untyped]
import msgspec
import structlog
from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import (
    IllegalStateError,
    KafkaError,
    NoOffsetForPartitionError,
    OffsetOutOfRangeError,
)
from anyio.abc import TaskStatus

from protocol import (
    RESOURCE_BASE_UNIT,
    UsageGap,
    UsageReading,
    encode_event,
)

from ._exceptions import (
    BrokerError,
    FatalError,
    FencedError,
    HubError,
    StorageError,
    broker_errors,
    storage_errors,
)
from .actors import Outcome, Registry
from .alerts.records import (
    AlertRecord,
    display_unit,
    event_type,
    percentage,
    to_event,
    to_unit,
)
from .config import HubConfig
from .intake import (
    Claimable,
    Decoded,
    Incoming,
    UnreadableRecord,
    WritePlan,
    check_tenants,
    claimable,
    decode_batch,
    end_ms,
    plan_writes,
)
from .metrics import STAGE_SAMPLES, HubMetrics
from .outbox import Outbox, OutboxBatch, OutboxEvent, insert_outbox
from .storage.aggregates import Bucketer, write_aggregates
from .storage.batch import (
    OffsetMove,
    advance_offsets,
    claim_events,
    legacy_cutover_ms,
    reset_offset,
    stored_offsets,
    write_batch,
)
from .storage.current import CachedUsage, now_ms
from .storage.partitions import ensure_partitions, retention_horizon_ms, storage_month
from .storage.provision import batch_owners

__all__ = ["UnreadableRecord", "UsageConsumer", "misalignment"]

_log = structlog.get_logger(component="hub.consumer")

#: longest wait for a Kafka offset commit (it only speeds up a restart; PostgreSQL
#: holds the offsets that count)
_COMMIT_S = 5.0
#: how long a look for an unparsable record waits for one partition's records (ms)
_PROBE_MS = 2_000
_ALL_RECORDS = 2**31 - 1
#: at most this many customers' (and tenant names') tenants are remembered
_REMEMBERED = 1_000_000
#: dead-letter reasons counted in ``resmon_hub_tenant_refused``
_TENANT_REASONS = ("tenant_mismatch", "unknown_tenant")


def _retry_delay(failures: int) -> float:
    """Seconds before the next try after ``failures`` failures in a row: 0.5 doubling to 30."""
    return float(min(0.5 * 2 ** (failures - 1), 30.0))


def misalignment(offsets: Sequence[int], stored: int | None, position: int | None) -> str | None:
    """Why a partition's records in a batch must not be applied as fetched, or None.

    ``offsets`` are the records' offsets in batch order, ``stored`` the consumed
    offset PostgreSQL held when this instance last looked (None: no row yet),
    ``position`` the Kafka client's position now (None: it has none, a reset is
    pending). Records fetched before a seek do not continue from where the seek
    went: applying them would skip or repeat records. A gap after ``stored`` is
    not refused (compaction and transaction markers leave gaps).
    """
    if any(b <= a for a, b in itertools.pairwise(offsets)):
        return "offsets do not increase: fetched on both sides of a seek"
    if stored is not None and offsets[0] < stored:
        return f"starts at {offsets[0]}, before the stored offset {stored}: fetched before a seek"
    if position is None or position <= offsets[-1]:
        return f"the client is at {position}, sought back since these records were fetched"
    return None


async def _position(consumer: AIOKafkaConsumer, tp: TopicPartition) -> int | None:
    """The client's position on ``tp``; None while it has none (a reset is pending) or
    ``tp`` is not assigned to it."""
    with anyio.move_on_after(0.5), contextlib.suppress(IllegalStateError):
        return int(await consumer.position(tp))
    return None


class _Stages:
    """Wall seconds per named stage of one batch, added to ``totals`` (what limits throughput)."""

    __slots__ = ("committed_ms", "decided_ms", "fetched_ms", "mark", "started", "totals")

    def __init__(self, totals: dict[str, float]) -> None:
        self.totals = totals
        self.started = self.mark = time.perf_counter()
        #: wall clock (ms) when the batch was fetched, its actors decided, it committed
        self.fetched_ms = self.decided_ms = self.committed_ms = _wall_ms()

    def __call__(self, name: str) -> None:
        now = time.perf_counter()
        self.totals[name] = self.totals.get(name, 0.0) + now - self.mark
        self.mark = now


class _Committed(msgspec.Struct):
    """What a batch's transaction wrote, for the steps after the commit."""

    plan: WritePlan
    outcomes: list[Outcome]
    outbox: tuple[int, OutboxBatch] | None


def _halves(
    batch: dict[TopicPartition, list[Any]],
) -> tuple[dict[TopicPartition, list[Any]], dict[TopicPartition, list[Any]]]:
    """``batch`` in two, each partition's records kept in order and together where possible."""
    parts = [tp for tp, records in batch.items() if records]
    if len(parts) > 1:
        mid = len(parts) // 2
        return {tp: batch[tp] for tp in parts[:mid]}, {tp: batch[tp] for tp in parts[mid:]}
    (tp,) = parts
    records = batch[tp]
    mid = len(records) // 2
    return {tp: records[:mid]}, {tp: records[mid:]}


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, owner: UsageConsumer, consumer: AIOKafkaConsumer) -> None:
        self._owner = owner
        self._consumer = consumer

    async def on_partitions_revoked(self, revoked: Sequence[TopicPartition]) -> None:
        partitions = [tp.partition for tp in revoked]
        owner = self._owner
        # wait for the batch in flight to commit to PostgreSQL, so the next owner of these
        # partitions loads totals that include it; then stop their actors and stop
        # holding the partitions: until the new assignment arrives the consumer still
        # reports the old one, and a batch fetched before the rebalance must not be
        # applied (its actors would stay resident, stale, if the partition came back)
        async with owner.batch_lock:
            for p in partitions:
                owner.assigned.discard(p)
                owner.positions.pop(p, None)
            await owner.registry.forget_partitions(partitions)
        _log.info("partitions_revoked", partitions=partitions)

    async def on_partitions_assigned(self, assigned: Sequence[TopicPartition]) -> None:
        owner = self._owner
        partitions = [tp.partition for tp in assigned if tp.topic == owner.config.usage_topic]
        async with owner.batch_lock:
            # first, before anything that can fail: if the seek below fails, the first
            # batch of these partitions finds no start position and is fenced, which
            # seeks again (aiokafka only logs an exception raised here)
            owner.assigned.update(partitions)
            for p in partitions:
                owner.positions.pop(p, None)
            # an actor of a partition this instance did not hold is from an earlier
            # ownership: another instance may have moved its total on since
            await owner.registry.forget_partitions(partitions)
            await owner.seek_to_stored(self._consumer, assigned)
        _log.info("partitions_assigned", partitions=partitions)


class UsageConsumer:
    """Consumes ``config.usage_topic`` in ``config.consumer_group``; see the module docstring."""

    def __init__(
        self,
        config: HubConfig,
        pool: asyncpg.Pool,
        registry: Registry,
        *,
        outbox: Outbox,
        metrics: HubMetrics,
    ) -> None:
        self.config = config
        self.pool = pool
        self.registry = registry
        self.outbox = outbox
        self.metrics = metrics
        self._tz = ZoneInfo(config.billing_tz)
        self._bucketer = Bucketer(self._tz)
        self._months: set[int] = set()
        self._days: dict[int, int] = {}
        #: events ending at or before this (ms) may have been claimed by id alone, before
        #: migration 0019 (see :func:`~hub.storage.batch.claim_events`); read on first use
        self._legacy_until: int | None = None
        self._legacy_read = False
        #: wall seconds spent per stage of :meth:`process` (what limits throughput)
        self.stage_seconds: dict[str, float] = {}
        #: wall clock (ms) of the last fetch that started a batch (the fetched stage)
        self.fetched_ms: int | None = None
        self.batches = 0
        #: held from decoding a batch until its PostgreSQL commit (not while committing to
        #: Kafka, which may wait for a rebalance that waits for this lock)
        self.batch_lock = anyio.Lock()
        #: Partitions the rebalance listener gave this instance (dropped on revocation;
        #: aiokafka's ``assignment()`` lags a revocation). A partition assigned but not
        #: in ``positions`` (its seek failed) is fenced, which seeks again.
        self.assigned: set[int] = set()
        #: partition -> the consumed offset PostgreSQL held when this instance last
        #: looked (seek) or wrote (commit); None = no row yet. A batch commits only
        #: if PostgreSQL still holds it (see :func:`advance_offsets`).
        self.positions: dict[int, int | None] = {}
        #: partition -> (position, time of the client's last answer) first seen past the
        #: high watermark (see :meth:`_beyond_log_end`)
        self._beyond: dict[TopicPartition, tuple[int, int]] = {}
        #: the Kafka client while :meth:`run` runs (tests inject faults through it)
        self.kafka: AIOKafkaConsumer | None = None
        #: customer id -> tenant id, as stored (see :meth:`_tenant_checked`)
        self.customer_tenants: dict[str, str] = {}
        #: tenant name or id -> tenant id, as stored
        self.tenant_ids: dict[str, str] = {}

    async def seek_to_stored(
        self, consumer: AIOKafkaConsumer, partitions: Sequence[TopicPartition]
    ) -> None:
        cfg = self.config
        with storage_errors(cfg.database_address):
            stored = await stored_offsets(self.pool, cfg.consumer_group, cfg.usage_topic)
        mine = [tp for tp in partitions if tp.topic == cfg.usage_topic]
        known = [tp for tp in mine if tp.partition in stored]
        if known:
            await self._check_log_bounds(consumer, known, stored)
        for tp in mine:
            self.positions[tp.partition] = stored.get(tp.partition)
            if tp.partition in stored:
                consumer.seek(tp, stored[tp.partition])

    async def _check_log_bounds(
        self, consumer: AIOKafkaConsumer, known: list[TopicPartition], stored: dict[int, int]
    ) -> None:
        """Resume from the log start where a stored offset lies outside the broker's log.

        Past the log's end, the topic was recreated or the broker lost its
        storage: seeking there would silently skip every record until the new
        log grew that long. Before its start, retention removed records never
        consumed: they are lost, the rest must not be. Either way the stored
        offset is moved (compare-and-set) to the log start, which is logged
        and counted; event-id dedup keeps the replay of anything already
        counted exact. ``stored`` is updated in place.
        """
        cfg = self.config
        with broker_errors(cfg.kafka_bootstrap_servers):
            starts = await consumer.beginning_offsets(known)
            ends = await consumer.end_offsets(known)
        for tp in known:
            at, start, end = stored[tp.partition], starts[tp], ends[tp]
            if start <= at <= end:
                continue
            _log.warning(
                "offset_outside_log",
                group=cfg.consumer_group,
                topic=tp.topic,
                partition=tp.partition,
                stored=at,
                log_start=start,
                log_end=end,
                why="the log was reset (topic recreated or broker storage lost)"
                if at > end
                else f"retention removed {start - at} records never consumed",
                resume_at=start,
            )
            self.metrics.offset_resets.labels(tp.topic, str(tp.partition)).inc()
            with storage_errors(cfg.database_address):
                if await reset_offset(
                    self.pool, cfg.consumer_group, tp.topic, tp.partition, expected=at, new=start
                ):
                    stored[tp.partition] = start
                else:  # another instance moved it: read what it wrote
                    fresh = await stored_offsets(self.pool, cfg.consumer_group, cfg.usage_topic)
                    stored[tp.partition] = fresh.get(tp.partition, start)

    async def fenced(
        self, consumer: AIOKafkaConsumer, exc: FencedError, batch: dict[TopicPartition, list[Any]]
    ) -> None:
        """Another instance got ahead on some of this batch's partitions: start them over.

        Their actors hold totals without that instance's work, so they go; the
        next reading loads them from PostgreSQL. Every partition of the batch
        is re-read from the offsets stored there.
        """
        self.metrics.batches_fenced.inc()
        _log.warning(
            "batch_fenced", partitions=exc.partitions, resources=exc.resources, error=str(exc)
        )
        async with self.batch_lock:
            await self.registry.forget_partitions(exc.partitions)
            mine = [tp for tp in batch if tp.partition in self.assigned]
            for tp in mine:  # until the seek succeeds, their next batch is fenced again
                self.positions.pop(tp.partition, None)
            await self.seek_to_stored(consumer, mine)
            for tp in mine:  # no stored offset: nothing of it was applied, re-read the batch
                if self.positions.get(tp.partition) is None and batch[tp]:
                    with contextlib.suppress(IllegalStateError):
                        consumer.seek(tp, batch[tp][0].offset)

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        cfg = self.config
        consumer = AIOKafkaConsumer(
            bootstrap_servers=cfg.kafka_bootstrap_servers,
            group_id=cfg.consumer_group,
            client_id=cfg.source,
            enable_auto_commit=False,
            # a position outside the log is the consumer's to handle (logged, counted,
            # resumed from PostgreSQL's offset): "earliest" would jump silently
            auto_offset_reset="none",
            max_poll_records=cfg.batch_max_records,
            fetch_max_wait_ms=cfg.fetch_max_wait_ms,
            session_timeout_ms=cfg.session_timeout_ms,
            heartbeat_interval_ms=max(100, cfg.session_timeout_ms // 4),
        )
        consumer.subscribe([cfg.usage_topic], listener=_Rebalance(self, consumer))
        self.kafka = consumer
        with broker_errors(cfg.kafka_bootstrap_servers):
            try:
                await consumer.start()
            except BaseException:
                await consumer.stop()
                raise
        try:
            task_status.started()
            failures = fetch_failures = 0
            while True:
                try:
                    batch = await self._gather(consumer)
                except HubError as exc:  # a failed fetch: nothing was consumed, fetch again
                    fetch_failures += 1
                    delay = _retry_delay(fetch_failures)
                    self.metrics.fetch_failures.inc()
                    _log.error("kafka_fetch_failed", error=str(exc), retry_in_s=delay)
                    await anyio.sleep(delay)
                    continue
                fetch_failures = 0
                if not batch:
                    continue
                try:
                    await self.apply(consumer, batch)
                    failures = 0
                    self._measure_lag(consumer, batch)
                except FatalError:
                    raise
                except FencedError as exc:
                    try:
                        await self.fenced(consumer, exc, batch)
                    except HubError as error:  # the re-seek failed: the next batch retries
                        self.metrics.batch_failures.inc()
                        _log.error("batch_failed", error=str(error), retry_in_s=0.5)
                        await anyio.sleep(0.5)
                except HubError as exc:
                    failures += 1
                    self.metrics.batch_failures.inc()
                    delay = _retry_delay(failures)
                    _log.error("batch_failed", error=str(exc), retry_in_s=delay)
                    for tp, records in batch.items():
                        # a partition revoked meanwhile is replayed by its new owner; part
                        # of the batch may be committed already (see apply): resume there
                        start = records[0].offset
                        stored = self.positions.get(tp.partition)
                        with contextlib.suppress(IllegalStateError):
                            consumer.seek(tp, max(start, stored or 0))
                    await anyio.sleep(delay)
        finally:
            self.kafka = None
            with anyio.CancelScope(shield=True):
                await consumer.stop()

    async def _gather(self, consumer: AIOKafkaConsumer) -> dict[TopicPartition, list[Any]]:
        """One batch (see :meth:`_collect`), or {} after a fetch the client could not finish.

        A position outside the broker's log (``OffsetOutOfRange``, or past the
        high watermark on a broker that does not say so) is re-sought from
        PostgreSQL's offset; a partition with no offset anywhere starts at the
        log start; a record the client cannot parse is found and handed on with
        what precedes it (:meth:`_unreadable`). Any other Kafka error raises
        :class:`~hub.BrokerError` for the caller's backoff.
        """
        cfg = self.config
        try:
            batch = await self._collect(consumer)
        except OffsetOutOfRangeError as exc:
            where = exc.args[0] if exc.args and isinstance(exc.args[0], dict) else {}
            await self._position_reset(consumer, {tp: (at, None) for tp, at in where.items()})
            return {}
        except NoOffsetForPartitionError as exc:
            # no offset in PostgreSQL nor in Kafka: a partition never consumed
            tps = [tp for tp in exc.args if isinstance(tp, TopicPartition)]
            _log.info("partition_starts_at_log_start", partitions=[tp.partition for tp in tps])
            await self._seek_to_start(consumer, tps)
            return {}
        except UnicodeDecodeError as exc:  # raised by aiokafka's record parser
            return await self._unreadable(consumer, exc)
        except KafkaError:
            with broker_errors(cfg.kafka_bootstrap_servers):
                raise
        beyond = await self._beyond_log_end(consumer, batch)
        if beyond:
            await self._position_reset(consumer, beyond)
            return {tp: records for tp, records in batch.items() if tp not in beyond}
        return batch

    async def _beyond_log_end(
        self, consumer: AIOKafkaConsumer, batch: dict[TopicPartition, list[Any]]
    ) -> dict[TopicPartition, tuple[int, int | None]]:
        """Partitions (not in ``batch``) whose position lies past the log's high watermark.

        A broker that answers a fetch past its log's end with no records and no
        error (the embedded one does) would leave the partition waiting until
        the log grew that long, skipping everything before. Nothing consumed
        can lie past the high watermark, unless the log was reset. The client
        keeps the watermark of the last answer at its position, which after a
        seek is the old position's: a partition counts only once an answer
        came at the same position since it was first seen below (the client
        stamps each answer's time).
        """
        out: dict[TopicPartition, tuple[int, int | None]] = {}
        suspects, self._beyond = self._beyond, {}
        for tp in consumer.assignment():
            if tp in batch or tp.topic != self.config.usage_topic:
                continue
            high = consumer.highwater(tp)
            if high is None:
                continue
            at = await _position(consumer, tp)
            if at is None or high >= at:
                continue
            answered = consumer.last_poll_timestamp(tp)
            seen = suspects.get(tp)
            if seen is not None and seen[0] == at and answered is not None and answered > seen[1]:
                out[tp] = (at, high)
            else:
                self._beyond[tp] = (
                    seen if seen is not None and seen[0] == at else (at, answered or 0)
                )
        return out

    async def _position_reset(
        self, consumer: AIOKafkaConsumer, where: dict[TopicPartition, tuple[int, int | None]]
    ) -> None:
        """The fetch position of these partitions (position, high watermark) is outside the log.

        Logged and counted per partition; each is sought again from the offset
        PostgreSQL holds, which :meth:`seek_to_stored` checks against the log
        (past its end or before its start: resumed from the start, logged and
        counted as ``offset_outside_log``). One without a stored offset goes
        back to the log start: nothing of it was applied.
        """
        cfg = self.config
        for tp, (at, high) in where.items():
            _log.warning(
                "fetch_position_outside_log",
                group=cfg.consumer_group,
                topic=tp.topic,
                partition=tp.partition,
                position=at,
                high_watermark=high,
                stored=self.positions.get(tp.partition),
                resume="from the stored offset, checked against the log",
            )
            self.metrics.position_resets.labels(tp.topic, str(tp.partition)).inc()
        async with self.batch_lock:
            mine = [tp for tp in where if tp.partition in self.assigned]
            for tp in mine:  # until the seek succeeds, their next batch is fenced (seeks again)
                self.positions.pop(tp.partition, None)
            await self.seek_to_stored(consumer, mine)
            await self._rewind(consumer, mine)

    async def _rewind(
        self, consumer: AIOKafkaConsumer, partitions: Sequence[TopicPartition] | None = None
    ) -> None:
        """Partitions (default: all assigned) back to PostgreSQL's offset, or the log start."""
        fresh = []
        for tp in consumer.assignment() if partitions is None else partitions:
            if tp.partition not in self.positions:
                continue  # its seek failed: its next batch is fenced, which seeks
            at = self.positions[tp.partition]
            if at is None:
                fresh.append(tp)
            else:
                with contextlib.suppress(IllegalStateError):
                    consumer.seek(tp, at)
        await self._seek_to_start(consumer, fresh)

    async def _seek_to_start(
        self, consumer: AIOKafkaConsumer, partitions: Sequence[TopicPartition]
    ) -> None:
        """Start ``partitions`` (with nothing of them applied) at their log start."""
        if partitions:
            with (
                contextlib.suppress(IllegalStateError),
                broker_errors(self.config.kafka_bootstrap_servers),
            ):
                await consumer.seek_to_beginning(*partitions)

    async def _unreadable(
        self, consumer: AIOKafkaConsumer, exc: UnicodeDecodeError
    ) -> dict[TopicPartition, list[Any]]:
        """A fetched record the client cannot parse: find it; return what precedes it and it.

        aiokafka decodes header names as UTF-8 while it reads a fetch, and one
        that is not fails the whole ``getmany`` (again on every re-read), which
        may take records of other partitions with it. So every partition goes
        back to PostgreSQL's offset; the partitions with records to read are
        read one by one until the one that fails is found, and that one a
        record at a time. The records before the bad one are returned with an
        :class:`UnreadableRecord` in its place (dead-lettered, without bytes)
        and the partition resumes after it. Records after it in the same
        producer batch cannot be read either (the client parses a batch from
        its start), so each of them goes the same way in turn.
        """
        cfg = self.config
        _log.warning("kafka_fetch_unparsable", error=str(exc))
        async with self.batch_lock:
            await self._rewind(consumer)
        found = None
        with broker_errors(cfg.kafka_bootstrap_servers):
            for tp in sorted(consumer.assignment()):
                at, high = self.positions.get(tp.partition), consumer.highwater(tp)
                if tp.partition not in self.positions or (
                    at is not None and high is not None and at >= high
                ):
                    continue  # fenced, or nothing to read
                try:
                    await consumer.getmany(tp, timeout_ms=_PROBE_MS, max_records=_ALL_RECORDS)
                except UnicodeDecodeError:
                    found = tp
                    break
            async with self.batch_lock:
                await self._rewind(consumer)
            if found is None:
                raise BrokerError(
                    f"Kafka: a fetched record could not be parsed ({exc}); "
                    "no partition failed when read alone, fetching again"
                )
            good: list[Any] = []
            while len(good) < cfg.batch_max_records:
                try:
                    got = await consumer.getmany(found, timeout_ms=_PROBE_MS, max_records=1)
                except UnicodeDecodeError as error:
                    bad = await consumer.position(found)
                    cause = str(error)
                    break
                if not got:
                    await self._rewind(consumer)
                    raise BrokerError(
                        f"Kafka: partition {found.partition} stopped answering "
                        "while looking for an unparsable record"
                    )
                good.extend(got[found])
            else:  # the bad record lies further on: these first
                return {found: good}
        self.metrics.unreadable_records.inc()
        _log.error(
            "kafka_record_unreadable",
            topic=found.topic,
            partition=found.partition,
            offset=bad,
            error=cause,
            resume_at=bad + 1,
        )
        consumer.seek(found, bad + 1)
        reason = f"unreadable: the Kafka client cannot parse this record ({cause})"
        return {found: [*good, UnreadableRecord(bad, reason)]}

    async def _collect(self, consumer: AIOKafkaConsumer) -> dict[TopicPartition, list[Any]]:
        """One batch: what ``getmany`` has, topped up for at most ``batch_linger_ms``.

        A broker may hand out one small record batch per fetch; paying a
        PostgreSQL transaction for each would cap throughput, so the consumer
        keeps fetching until ``batch_max_records`` or the linger runs out.
        """
        cfg = self.config
        batch: dict[TopicPartition, list[Any]] = await consumer.getmany(
            timeout_ms=cfg.batch_timeout_ms, max_records=cfg.batch_max_records
        )
        self.fetched_ms = _wall_ms()  # the batch's first records are in: the fetched stage
        if not batch or cfg.batch_linger_ms <= 0:
            return batch
        count = sum(map(len, batch.values()))
        deadline = time.monotonic() + cfg.batch_linger_ms / 1000
        while count < cfg.batch_max_records:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            try:
                more = await consumer.getmany(
                    timeout_ms=max(1, int(left * 1000)), max_records=cfg.batch_max_records - count
                )
            except BaseException:
                # what was gathered is dropped: the client must read it again
                for tp, records in batch.items():
                    with contextlib.suppress(IllegalStateError):
                        consumer.seek(tp, records[0].offset)
                raise
            if not more:
                break
            for tp, records in more.items():
                batch.setdefault(tp, []).extend(records)
                count += len(records)
        return batch

    async def apply(
        self, consumer: AIOKafkaConsumer, batch: dict[TopicPartition, list[Any]]
    ) -> None:
        """Process ``batch``; if PostgreSQL refuses its data, find the record(s) it refuses.

        A statement that fails permanently (:attr:`StorageError.permanent`: a
        numeric overflow, a value a column cannot hold) would fail the whole
        batch on every retry and hold its partitions for good. The batch is
        split instead, keeping each partition's records in order, and the
        halves are processed one after the other until the refused record is
        alone; it is tried once more (a conflict with another hub can look the
        same) and then dead-lettered with the database's message, while every
        record around it is applied. Transient errors propagate (the caller
        retries the batch from what PostgreSQL holds).
        """
        first_error = await self._refused(consumer, batch)
        if first_error is None:
            return
        self.metrics.batches_isolated.inc()
        _log.warning(
            "batch_refused_isolating",
            records=sum(map(len, batch.values())),
            error=str(first_error),
        )
        pending = list(_halves(batch))
        while pending:
            part = pending.pop(0)
            if (error := await self._refused(consumer, part)) is None:
                continue
            if sum(map(len, part.values())) > 1:
                pending[0:0] = _halves(part)
                continue
            ((tp, (rec,)),) = part.items()
            if (error := await self._refused(consumer, part)) is None:
                continue
            reason = f"refused by PostgreSQL: {error}"
            await self.process(consumer, part, refused={(tp.partition, rec.offset): reason})

    async def _refused(
        self, consumer: AIOKafkaConsumer, batch: dict[TopicPartition, list[Any]]
    ) -> StorageError | None:
        """Process ``batch``; the error if PostgreSQL refused its data (others propagate)."""
        try:
            await self.process(consumer, batch)
        except StorageError as exc:
            if not exc.permanent:
                raise
            return exc
        return None

    async def process(
        self,
        consumer: AIOKafkaConsumer,
        batch: dict[TopicPartition, list[Any]],
        *,
        refused: dict[tuple[int, int], str] | None = None,
    ) -> None:
        """Process one ``getmany`` batch (public for tests and benchmarks).

        ``refused`` names records (partition, offset) to dead-letter with the
        given reason instead of applying them (see :meth:`apply`). The steps:
        decode and validate (:func:`~hub.intake.decode_batch`, pure), one copy
        per identity (:func:`~hub.intake.claimable`, pure), the transaction
        (:meth:`_transaction`, with the pure :func:`~hub.intake.plan_writes`
        inside), then :meth:`_after_commit`.
        """
        stages = _Stages(self.stage_seconds)
        stages.fetched_ms, self.fetched_ms = self.fetched_ms or stages.fetched_ms, None
        decoded = decode_batch(batch, now_ms=time.time_ns() // 1_000_000, refused=refused)
        stages("decode")
        claim = claimable(
            decoded,
            topic=self.config.usage_topic,
            horizon_ms=retention_horizon_ms(self.config.retention_days),
            retention_days=self.config.retention_days,
        )
        months = {self._month(end_ms(item.event)) for item in claim.unique.values()}
        with storage_errors(self.config.database_address):
            await ensure_partitions(self.pool, months, self._months)
            if not self._legacy_read:
                self._legacy_until = await legacy_cutover_ms(self.pool)
                self._legacy_read = True
        results: dict[str, Outcome | Exception] = {}
        try:
            async with self.batch_lock:
                if await self._dropped_after_rebalance(consumer, batch):
                    return
                if await self._realigned(consumer, batch):
                    return
                done = await self._transaction(decoded, claim, results, stages)
        except BaseException:
            if results:
                with anyio.CancelScope(shield=True):
                    await self.registry.forget_keys(results)
            raise
        await self._after_commit(consumer, decoded, claim, done, stages)

    async def _dropped_after_rebalance(
        self, consumer: AIOKafkaConsumer, batch: dict[TopicPartition, list[Any]]
    ) -> bool:
        """True (and the kept partitions sought back) if a rebalance took part of ``batch``.

        Their new owner reads them from the offsets stored in PostgreSQL, and so
        do we for the ones we kept: applying them here would race the new
        owner's actors and could overwrite its totals.
        """
        held = self.assigned
        if all(tp.partition in held for tp in batch):
            return False
        kept = [tp for tp in batch if tp.partition in held and batch[tp]]
        with storage_errors(self.config.database_address):
            stored = await stored_offsets(
                self.pool, self.config.consumer_group, self.config.usage_topic
            )
        for tp in kept:  # never past a record we have not applied
            consumer.seek(tp, stored.get(tp.partition, batch[tp][0].offset))
            self.positions[tp.partition] = stored.get(tp.partition)
        _log.info(
            "batch_dropped_after_rebalance",
            revoked=sorted(tp.partition for tp in batch if tp.partition not in held),
            reread=sorted(tp.partition for tp in kept),
        )
        return True

    async def _transaction(
        self,
        decoded: Decoded,
        claim: Claimable,
        results: dict[str, Outcome | Exception],
        stages: _Stages,
    ) -> _Committed:
        """The batch's one transaction: offsets, claims, actors, every write, the outbox row.

        ``results`` is filled with the actors' outcomes as soon as they exist,
        so the caller can forget those actors if the transaction fails.
        """
        with storage_errors(self.config.database_address):
            async with self.pool.acquire() as conn, conn.transaction():
                stored = await advance_offsets(
                    conn, self.config.consumer_group, self._moves(decoded.offsets)
                )
                stages("partitions+begin")
                unique = claim.unique
                fresh_keys = await claim_events(
                    conn,
                    [(k, item.event.id, end_ms(item.event)) for k, item in unique.items()],
                    legacy_until_ms=self._legacy_until,
                )
                stages("dedup")
                fresh = [item for k, item in unique.items() if k in fresh_keys]
                claim.repeated.extend(
                    item.event for k, item in unique.items() if k not in fresh_keys
                )
                fresh = await self._tenant_checked(conn, fresh, decoded)
                stages("tenants")
                results.update(
                    await self.registry.apply(
                        [
                            (item.partition, item.event.data)
                            for item in fresh
                            if isinstance(item.event.data, UsageReading)
                        ]
                    )
                )
                stages("actors")
                stages.decided_ms = _wall_ms()
                plan = plan_writes(fresh, results, decoded.dead, topic=self.config.usage_topic)
                outcomes = [r for r in results.values() if isinstance(r, Outcome)]
                alert_ids = await write_batch(
                    conn,
                    group=self.config.consumer_group,
                    readings=plan.readings,
                    gaps=plan.gaps,
                    dead=decoded.dead,
                    totals=plan.totals,
                    alerts=plan.alerts,
                )
                # the totals are written: the actors now stand on the next version
                # (if the commit fails, the caller forgets them)
                self.registry.advance_versions(outcomes)
                stages("raw+totals+alerts")
                await write_aggregates(conn, plan.aggregates, self._bucketer)
                stages("aggregates")
                batch_out = self._outbox_batch(outcomes, plan.alerts, alert_ids, stages.started)
                outbox = None
                if batch_out.events or batch_out.usage:
                    outbox = (await insert_outbox(conn, batch_out), batch_out)
                stages("outbox")
            stages("commit")
            stages.committed_ms = _wall_ms()
            self.positions.update(stored)
            if outbox is not None:  # a stop from here on still delivers it
                self.outbox.committed(*outbox)
        return _Committed(plan, outcomes, outbox)

    async def _tenant_checked(
        self, conn: asyncpg.Connection, fresh: list[Incoming], decoded: Decoded
    ) -> list[Incoming]:
        """``fresh`` without the events refused for their tenant (see
        :func:`~hub.intake.check_tenants`).

        What was read is remembered (:attr:`customer_tenants`, :attr:`tenant_ids`;
        a customer is forgotten when a change of it is announced, a delete
        included, see :mod:`hub.app`): only the customers and tenant names this
        instance has not seen yet are read, in one query per batch. A customer
        deleted and created again elsewhere before the notice arrives is still
        caught when its new resource's actor loads (its row names the tenant).
        What a batch claims for a new customer is kept for that batch only (the
        actors create the customer; the next batch reads it).
        """
        if not fresh:
            return fresh
        seen, named = self.customer_tenants, self.tenant_ids
        customers: set[str] = set()
        tenants: set[str] = set()
        for item in fresh:
            data = cast("UsageReading | UsageGap", item.event.data)
            customers.add(data.customer_id)
            if data.tenant_id is not None:
                tenants.add(data.tenant_id)
        ask_customers = [c for c in customers if c not in seen]
        ask_tenants = [t for t in tenants if t not in named]
        if ask_customers or ask_tenants:
            owners, known = await batch_owners(conn, ask_customers, ask_tenants)
            if len(seen) + len(owners) > _REMEMBERED:
                seen.clear()
            seen.update(owners)
            if len(named) + len(known) > _REMEMBERED:
                named.clear()
            named.update(known)
        batch = {c: seen[c] for c in customers if c in seen}
        return check_tenants(fresh, batch, named, decoded.dead, topic=self.config.usage_topic)

    def _measure_lag(
        self, consumer: AIOKafkaConsumer, batch: dict[TopicPartition, list[Any]]
    ) -> None:
        """How far each partition of ``batch`` is behind its log end, as the last fetch saw it."""
        for tp, records in batch.items():
            high = consumer.highwater(tp)
            if high is not None and records:
                lag = max(0, high - (records[-1].offset + 1))
                self.metrics.consumer_lag.labels(str(tp.partition)).set(lag)

    async def _after_commit(
        self,
        consumer: AIOKafkaConsumer,
        decoded: Decoded,
        claim: Claimable,
        done: _Committed,
        stages: _Stages,
    ) -> None:
        """Metrics and log lines, the Kafka offset commit, the outbox hand-off."""
        self.batches += 1
        m = self.metrics
        plan = done.plan
        m.batch_seconds.observe(time.perf_counter() - stages.started)
        _observe_stages(m, decoded.events, stages)
        m.readings.inc(len(plan.readings))
        m.duplicates.inc(len(claim.repeated))
        if claim.repeated:
            _log.info(
                "duplicates_dropped",
                count=len(claim.repeated),
                first=[f"{ev.source} {ev.id}" for ev in claim.repeated[:3]],
            )
        m.dead_letters.inc(len(decoded.dead))
        m.gaps.inc(len(plan.gaps))
        m.actors.set(len(self.registry))
        for o in done.outcomes:
            m.late.inc(o.late)
            if o.provisioned:
                m.provisioned.inc()
        for a in plan.alerts:
            m.alerts.labels(a.alert_type, a.status).inc()
            _log.info(
                "alert",
                resource_key=a.resource_key,
                alert_type=a.alert_type,
                status=a.status,
                current=str(a.current_value),
                unit=a.unit,
            )
        for d in decoded.dead:
            _log.warning("dead_letter", partition=d.partition, offset=d.offset, reason=d.reason)
            if d.reason.startswith(_TENANT_REASONS):
                m.tenant_refused.labels(d.reason.partition(":")[0]).inc()
        try:
            # Shielded, and bounded: aiokafka commits in an inner task that a cancel
            # (shutdown) would orphan; when stop() then closed its connection, that
            # task failed with nobody to see it.
            with anyio.CancelScope(
                shield=True, deadline=anyio.current_time() + _COMMIT_S
            ) as commit_scope:
                await consumer.commit(decoded.offsets)
            if commit_scope.cancelled_caught:
                self.metrics.kafka_commit_failures.inc()
                _log.warning("kafka_commit_failed", error=f"no answer in {_COMMIT_S:g} s")
        except KafkaError as exc:  # PostgreSQL holds the offsets; the next start seeks there
            self.metrics.kafka_commit_failures.inc()
            _log.warning("kafka_commit_failed", error=str(exc))
        stages("metrics")
        if done.outbox is not None:
            await self.outbox.submit(*done.outbox)
        stages("kafka-commit+handoff")

    async def _realigned(
        self, consumer: AIOKafkaConsumer, batch: dict[TopicPartition, list[Any]]
    ) -> bool:
        """Drop ``batch`` if a partition's records do not continue from where it stands.

        Called holding :attr:`batch_lock`. A batch gathered while a rebalance
        (or a reset) sought a partition can hold records from before the seek,
        or from both sides of it (see :func:`misalignment`). Then nothing of
        the batch is applied: each such partition is re-read from its stored
        offset, the others from their first record; logged and counted.
        """
        why: dict[int, str] = {}
        for tp, records in batch.items():
            if not records:
                continue
            reason = misalignment(
                [r.offset for r in records],
                self.positions.get(tp.partition),
                await _position(consumer, tp),
            )
            if reason is not None:
                why[tp.partition] = reason
        if not why:
            return False
        reread: dict[int, int] = {}
        for tp, records in batch.items():
            if not records:
                continue
            stored = self.positions.get(tp.partition)
            first = min(r.offset for r in records)
            at = stored if tp.partition in why and stored is not None else first
            with contextlib.suppress(IllegalStateError):
                consumer.seek(tp, at)
            reread[tp.partition] = at
        self.metrics.batches_realigned.inc()
        _log.warning(
            "batch_realigned",
            why=why,
            records=sum(map(len, batch.values())),
            reread_from=reread,
        )
        return True

    def _moves(self, offsets: dict[TopicPartition, int]) -> list[OffsetMove]:
        """The batch's offset moves, each from the offset this instance last saw stored.

        A partition whose stored offset this instance has not read (the seek on
        assignment failed) is fenced, which reads it and seeks there: nothing of
        it is applied unchecked.
        """
        unknown = sorted(tp.partition for tp in offsets if tp.partition not in self.positions)
        if unknown:
            raise FencedError(unknown, unseen=True)
        return [
            OffsetMove(tp.topic, tp.partition, self.positions[tp.partition], off)
            for tp, off in offsets.items()
        ]

    def forget_partitions(self) -> None:
        """Partitions were dropped: check again before the next COPY."""
        self._months.clear()

    def _month(self, ms: int) -> int:
        day = ms // 86_400_000
        month = self._days.get(day)
        if month is None:
            if len(self._days) > 4096:
                self._days.clear()
            month = self._days[day] = storage_month(ms)
        return month

    def _outbox_batch(
        self,
        outcomes: list[Outcome],
        alerts: list[AlertRecord],
        alert_ids: list[str],
        consumed: float,
    ) -> OutboxBatch:
        events: list[OutboxEvent] = []
        payloads = []
        for a, aid in zip(alerts, alert_ids, strict=True):
            if not aid:
                continue
            payload = to_event(a, aid)
            payloads.append(payload)
            record = encode_event(
                payload,
                source=self.config.source,
                event_type=event_type(a),
                id=f"{aid}.{a.status.lower()}",
            )
            headers = list(record.headers)
            events.append(OutboxEvent(record.key, record.value, headers, record.event_id, consumed))
        return OutboxBatch(
            topic=self.config.alerts_topic,
            events=events,
            usage=[self._cached(o) for o in outcomes],
            alerts=payloads,
        )

    @staticmethod
    def _cached(o: Outcome) -> CachedUsage:
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


def _wall_ms() -> int:
    return time.time_ns() // 1_000_000


def _observe_stages(m: HubMetrics, events: Sequence[Incoming], stages: _Stages) -> None:
    """The batch's latency stages: per batch once, per reading for an even sample.

    Sampled because an observation costs microseconds (``STAGE_SAMPLES``).
    """
    m.observe_stage("decided", (stages.decided_ms - stages.fetched_ms) / 1000)
    m.observe_stage("committed", (stages.committed_ms - stages.decided_ms) / 1000)
    step = max(1, -(-len(events) // STAGE_SAMPLES))
    for item in events[::step]:
        ev = item.event
        ts = getattr(item.record, "timestamp", None)
        m.observe_reading(
            end_ms(ev),
            ev.buffered_ms,
            ts if isinstance(ts, int) and ts > 0 else None,
            stages.fetched_ms,
            stages.committed_ms,
        )
