"""The registry: creates actors on first message, runs them on a fixed pool of shard workers.

There is no task per actor. ``shards`` worker tasks each own the actors whose
key hashes to them and a bounded mailbox (an anyio memory object stream); a
worker handles one envelope at a time, so each actor handles one message at a
time and one key's readings are applied in order. When a mailbox is full,
:meth:`Registry.apply` waits: back-pressure reaches the Kafka consumer instead
of memory growing.

Supervision is one-for-one: when an actor raises on a reading, only that
actor is restarted — rebuilt from its stored state, the batch's earlier
readings re-applied — and the reading that broke it (the poison message) is
reported in :attr:`Outcome.poisoned` so the consumer dead-letters it instead
of retrying it. More than ``max_restarts`` restarts within
``restart_window`` seconds raise :class:`RestartBudgetError`: the process
exits non-zero rather than limping on. When the registry stops, every
pending :meth:`Registry.apply` fails with :class:`RegistryClosedError`.

An actor is created on its first reading from PostgreSQL (its limit,
thresholds, open alert and current-period total); an unknown resource key is
auto-provisioned first (no limit). Idle actors are retired; so are the actors
of revoked partitions and those whose batch failed to commit
(:meth:`Registry.forget`) — the next reading rebuilds them from stored state,
which is how a failing actor is "restarted".
"""

from __future__ import annotations

import math
import time
import zlib
from collections.abc import Callable, Iterable, Sequence
from decimal import Decimal
from zoneinfo import ZoneInfo

import anyio
import msgspec
import structlog
from anyio.abc import TaskStatus
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from protocol import UsageReading

from .._exceptions import HubError, RegistryClosedError, RestartBudgetError, TenantMismatchError
from ..calendar import month_bounds_ms, month_of
from ..checks.thresholds import DEFAULT_CRITICAL_PERCENT, DEFAULT_WARNING_PERCENT
from ..storage.provision import (
    DEFAULT_TENANT,
    Executor,
    ResourceRow,
    auto_provision,
    load_resource,
    load_resources,
)
from .actor import ActorFault, Change, CheckSettings, Outcome, ResourceActor

__all__ = ["Registry"]

_log = structlog.get_logger(component="hub.actors.registry")


class _Ask:
    """A reply slot the asking task waits on until every shard answered."""

    __slots__ = ("done", "error", "pending", "results")

    def __init__(self, pending: int) -> None:
        self.pending = pending
        self.results: dict[str, Outcome | Exception] = {}
        self.done = anyio.Event()
        self.error: BaseException | None = None

    def fail(self, error: BaseException) -> None:
        if self.error is None:
            self.error = error
        self.done.set()

    def answered(self) -> None:
        self.pending -= 1
        if self.pending == 0:
            self.done.set()


class _Apply(msgspec.Struct):
    items: list[tuple[str, int, list[UsageReading]]]
    ask: _Ask


class _Retire(msgspec.Struct):
    predicate: Callable[[ResourceActor], bool]
    ask: _Ask


_Envelope = _Apply | _Retire


class _Shard:
    """A worker's actors and mailbox (the mailbox exists while :meth:`Registry.run` runs)."""

    __slots__ = ("actors", "receive", "send", "size")

    def __init__(self, size: int) -> None:
        self.actors: dict[str, ResourceActor] = {}
        self.size = size
        self.send: MemoryObjectSendStream[_Envelope] | None = None
        self.receive: MemoryObjectReceiveStream[_Envelope] | None = None


def _same_tenant(row: ResourceRow, reading: UsageReading) -> None:
    """Raise :class:`TenantMismatchError` if ``reading``'s tenant is not its customer's.

    A reading without a tenant is the default tenant's. The consumer checks every
    batch before it reaches the actors; this catches a customer created by another
    hub instance since.
    """
    tenant = reading.tenant_id or DEFAULT_TENANT
    if row.tenant_id != tenant:
        raise TenantMismatchError(
            f"customer {row.customer_id!r} belongs to tenant {row.tenant_id}, not to {tenant}"
        )


def _idle_since(cutoff: float) -> Callable[[ResourceActor], bool]:
    return lambda actor: actor.last_used < cutoff


class Registry:
    """Actors by resource key, sharded over ``shards`` worker tasks."""

    def __init__(
        self,
        db: Executor,
        *,
        tz: ZoneInfo,
        gap_bp: int = 500,
        settings: CheckSettings | None = None,
        max_restarts: int = 20,
        restart_window: float = 60.0,
        shards: int = 8,
        mailbox_size: int = 256,
        idle_seconds: float = 900.0,
        default_warning: Decimal = DEFAULT_WARNING_PERCENT,
        default_critical: Decimal = DEFAULT_CRITICAL_PERCENT,
    ) -> None:
        self._defaults = (default_warning, default_critical)
        self._db = db
        self._tz = tz
        self.settings = settings or CheckSettings(gap_bp=gap_bp)
        self._max_restarts = max_restarts
        self._restart_window = restart_window
        self._restarts: list[float] = []
        self.restarts = 0
        self._pending: set[_Ask] = set()
        #: billing month -> (start ms, end ms), computed once per month
        self._bounds: dict[int, tuple[int, int]] = {}
        self._current: tuple[int, int, int] = (-1, 0, 0)
        self._shards = [_Shard(mailbox_size) for _ in range(shards)]
        self._idle = idle_seconds
        self._running = False
        self.provisioned = 0
        #: bound once: the hot path hands it to every actor call
        self._month_of = self._month

    @property
    def pending(self) -> int:
        """Requests (apply / forget) waiting for an answer."""
        return len(self._pending)

    def __len__(self) -> int:
        return sum(len(s.actors) for s in self._shards)

    def _shard(self, key: str) -> int:
        return zlib.crc32(key.encode()) % len(self._shards)

    def get(self, key: str) -> ResourceActor | None:
        """The live actor of ``key`` (for inspection; do not mutate)."""
        return self._shards[self._shard(key)].actors.get(key)

    def advance_versions(self, outcomes: Iterable[Outcome]) -> None:
        """The outcomes' totals were written: their actors stand on the next version."""
        for o in outcomes:
            actor = self.get(o.key)
            if actor is not None and actor.version == o.version:
                actor.version = o.version + 1

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Run the shard workers and the idle sweeper until cancelled."""
        try:
            async with anyio.create_task_group() as tg:
                for index, shard in enumerate(self._shards):
                    shard.send, receive = anyio.create_memory_object_stream[_Envelope](shard.size)
                    shard.receive = receive
                    tg.start_soon(self._work, index, receive)
                if math.isfinite(self._idle):
                    tg.start_soon(self._sweep)
                self._running = True
                task_status.started()
                await anyio.sleep_forever()
        finally:
            self._running = False
            for ask in list(self._pending):
                ask.fail(RegistryClosedError("the actor registry stopped"))
            for shard in self._shards:
                if shard.send is not None:
                    shard.send.close()
                if shard.receive is not None:
                    shard.receive.close()
                shard.send = shard.receive = None

    async def apply(
        self, readings: Sequence[tuple[int, UsageReading]]
    ) -> dict[str, Outcome | Exception]:
        """Apply ``(partition, reading)`` pairs in order per key; one result per key."""
        if not self._running:
            raise HubError("the actor registry is not running")
        by_key: dict[str, tuple[int, list[UsageReading]]] = {}
        for partition, reading in readings:
            by_key.setdefault(reading.resource_key, (partition, []))[1].append(reading)
        per_shard: dict[int, list[tuple[str, int, list[UsageReading]]]] = {}
        for key, (partition, items) in by_key.items():
            per_shard.setdefault(self._shard(key), []).append((key, partition, items))
        if not per_shard:
            return {}
        ask = _Ask(len(per_shard))
        self._pending.add(ask)
        try:
            for index, work in per_shard.items():
                await self._mailbox(index).send(_Apply(work, ask))
            await ask.done.wait()
        finally:
            self._pending.discard(ask)
        if ask.error is not None:
            raise ask.error
        return ask.results

    async def forget(self, predicate: Callable[[ResourceActor], bool]) -> None:
        """Retire every actor ``predicate`` selects; the next reading rebuilds it."""
        if not self._running:
            for shard in self._shards:
                for key in [k for k, a in shard.actors.items() if predicate(a)]:
                    del shard.actors[key]
            return
        ask = _Ask(len(self._shards))
        self._pending.add(ask)
        try:
            for index in range(len(self._shards)):
                await self._mailbox(index).send(_Retire(predicate, ask))
            await ask.done.wait()
        except (anyio.ClosedResourceError, anyio.BrokenResourceError, HubError):
            if self._running and not self._closing():
                raise
            return  # the registry is stopping: every actor goes with it
        finally:
            self._pending.discard(ask)
        if isinstance(ask.error, RegistryClosedError):
            return  # stopped while retiring: every actor went with it
        if ask.error is not None:
            raise ask.error

    async def forget_keys(self, keys: Iterable[str]) -> None:
        wanted = frozenset(keys)
        await self.forget(lambda actor: actor.key in wanted)

    async def forget_partitions(self, partitions: Iterable[int]) -> None:
        wanted = frozenset(partitions)
        await self.forget(lambda actor: actor.partition in wanted)

    async def _sweep(self) -> None:
        interval = max(self._idle / 4, 0.05)
        while True:
            await anyio.sleep(interval)
            await self.forget(_idle_since(time.monotonic() - self._idle))

    def _closing(self) -> bool:
        """Whether run() has begun closing the mailboxes."""
        return any(shard.send is None for shard in self._shards)

    def _mailbox(self, index: int) -> MemoryObjectSendStream[_Envelope]:
        send = self._shards[index].send
        if send is None:
            raise HubError("the actor registry is not running")
        return send

    async def _work(self, index: int, receive: MemoryObjectReceiveStream[_Envelope]) -> None:
        shard = self._shards[index]
        async for envelope in receive:
            try:
                match envelope:
                    case _Apply(items=items, ask=ask):
                        actors = shard.actors
                        rows = await self._preload([k for k, _, _ in items if k not in actors])
                        now = time.monotonic()
                        for key, partition, readings in items:
                            actor = actors.get(key)
                            if actor is not None:  # the hot path: no await, no reload
                                done = self.apply_loaded(actor, partition, readings, now)
                                if done is not None:
                                    ask.results[key] = done
                                    continue
                                del actors[key]  # it failed: the supervised path rebuilds it
                            ask.results[key] = await self._apply_one(
                                shard, key, partition, readings, rows.pop(key, None)
                            )
                            if ask.error is not None:
                                break
                    case _Retire(predicate=predicate):
                        for key in [k for k, a in shard.actors.items() if predicate(a)]:
                            del shard.actors[key]
            except Exception as exc:  # the budget ran out, or a bug: the asker gets it
                envelope.ask.fail(exc)
                raise
            except BaseException:  # cancelled: the registry is stopping
                envelope.ask.fail(RegistryClosedError("the actor registry stopped"))
                raise
            else:
                envelope.ask.answered()

    async def _preload(self, keys: list[str]) -> dict[str, ResourceRow]:
        """The stored rows of a batch's keys without a resident actor, in one query.

        Loading them one by one costs a round trip each: after a rebalance or a
        reload of every actor, thousands per batch. A key left out (unknown, or
        the query failed) goes the one-by-one way, which provisions it or
        reports its error.
        """
        if len(keys) < 2:
            return {}
        try:
            return await load_resources(self._db, keys)
        except Exception as exc:  # the one-by-one path reports it per key
            _log.warning("actor_preload_failed", keys=len(keys), error=repr(exc))
            return {}

    async def _load(
        self, key: str, partition: int, first: UsageReading
    ) -> tuple[ResourceActor, bool]:
        provisioned = False
        row = await load_resource(self._db, key)
        if row is None:
            provisioned = await auto_provision(
                self._db,
                first.customer_id,
                first.resource_type,
                key,
                first.kind,
                warning=self._defaults[0],
                critical=self._defaults[1],
                tenant_id=first.tenant_id or DEFAULT_TENANT,
            )
            row = await load_resource(self._db, key)
            if row is None:  # pragma: no cover - deleted between the two statements
                raise HubError(f"resource {key!r} vanished while being provisioned")
            if provisioned:
                self.provisioned += 1
                _log.info("resource_auto_provisioned", resource_key=key)
        _same_tenant(row, first)
        return ResourceActor.from_row(row, partition=partition), provisioned

    def bounds(self, period: int) -> tuple[int, int]:
        """Start and end (ms) of billing month ``period`` in the billing time zone."""
        got = self._bounds.get(period)
        if got is None:
            got = self._bounds[period] = month_bounds_ms(period, self._tz)
        return got

    def _month(self, ms: int) -> tuple[int, int, int]:
        """``(period, start, end)`` (ms) of the month ``ms`` falls in; now the current one."""
        current = self._current
        if current[1] <= ms < current[2]:
            return current
        period = month_of(ms, self._tz)
        start, end = self.bounds(period)
        self._current = current = (period, start, end)
        return current

    def _restarted(self, key: str, error: BaseException) -> None:
        now = time.monotonic()
        self.restarts += 1
        self._restarts = [t for t in self._restarts if t > now - self._restart_window]
        self._restarts.append(now)
        _log.warning("actor_restarted", resource_key=key, error=str(error))
        if len(self._restarts) > self._max_restarts:
            raise RestartBudgetError(
                f"{len(self._restarts)} actor restarts within {self._restart_window:g} s "
                f"(budget {self._max_restarts}); last: {key}: {error}"
            )

    def _run(
        self, actor: ResourceActor, readings: list[UsageReading], outcome: Outcome
    ) -> int | None:
        """Apply ``readings`` one by one; None when all went through, else the failed one's index.

        The supervised path (a new or restarted actor): it needs to know which
        reading failed, so it runs them one at a time.
        """
        settings = self.settings
        changes = outcome.changes
        run = actor.run
        month = self._month_of
        late = 0
        for index, reading in enumerate(readings):
            period, start, end = self._current
            try:
                late += run((reading,), period, start, end, end, month, settings, changes)
            except Exception as exc:
                outcome.late += late
                outcome.poisoned.append((reading, f"{type(exc).__name__}: {exc}"))
                return index
        outcome.late += late
        return None

    def apply_loaded(
        self, actor: ResourceActor, partition: int, readings: list[UsageReading], now: float
    ) -> Outcome | None:
        """Apply ``readings`` to a resident actor; None if one failed (state is then suspect).

        This is what a shard worker does per key of a batch when the actor is
        loaded (the benchmark drives it directly): all of the key's readings in
        one :meth:`ResourceActor.run`, then one :class:`Outcome`.
        """
        actor.partition = partition
        actor.last_used = now
        changes: list[Change] = []
        period, start, end = self._current
        try:
            late = actor.run(
                readings, period, start, end, end, self._month_of, self.settings, changes
            )
        except Exception:
            return None
        return actor.outcome(changes, late)

    async def _apply_one(
        self,
        shard: _Shard,
        key: str,
        partition: int,
        readings: list[UsageReading],
        row: ResourceRow | None = None,
    ) -> Outcome | Exception:
        actor = shard.actors.get(key)
        provisioned = False
        try:
            if actor is None:
                if row is not None:  # preloaded with the rest of the batch
                    _same_tenant(row, readings[0])
                    actor = ResourceActor.from_row(row, partition=partition)
                else:
                    actor, provisioned = await self._load(key, partition, readings[0])
                shard.actors[key] = actor
            actor.partition = partition
            actor.last_used = time.monotonic()
            outcome = actor.outcome()
            outcome.provisioned = provisioned
            good: list[UsageReading] = []
            rest = readings
            while (failed := self._run(actor, rest, outcome)) is not None:
                # one-for-one restart: rebuild from stored state, replay what succeeded,
                # skip the poison message (the consumer dead-letters it)
                good.extend(rest[:failed])
                rest = rest[failed + 1 :]
                shard.actors.pop(key, None)
                reason = outcome.poisoned[-1][1]
                self._restarted(key, ActorFault(reason))
                actor, _ = await self._load(key, partition, readings[0])
                shard.actors[key] = actor
                actor.partition = partition
                replay = actor.outcome()
                poisoned = outcome.poisoned
                if self._run(actor, good, replay) is not None:  # pragma: no cover - determinism
                    raise HubError(f"actor {key} failed replaying readings that succeeded")
                outcome = replay
                outcome.provisioned = provisioned
                outcome.poisoned = poisoned
        except RestartBudgetError:
            shard.actors.pop(key, None)
            raise
        except Exception as exc:  # the actor could not even be loaded: drop it, report
            shard.actors.pop(key, None)
            _log.warning("actor_failed", resource_key=key, error=str(exc))
            return exc
        outcome.total, outcome.period, outcome.level = actor.total, actor.period, actor.level
        outcome.limit = actor.limit
        outcome.stats = actor.stats
        return outcome
