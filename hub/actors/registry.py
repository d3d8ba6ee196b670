"""The registry: creates actors on first message, runs them on a fixed pool of shard workers.

There is no task per actor. ``shards`` worker tasks each own the actors whose
key hashes to them and a bounded mailbox (an anyio memory object stream); a
worker handles one envelope at a time, so each actor handles one message at a
time and one key's readings are applied in order. When a mailbox is full,
:meth:`Registry.apply` waits: back-pressure reaches the Kafka consumer instead
of memory growing.

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

from .._exceptions import HubError
from ..storage.provision import Executor, auto_provision, load_resource
from .actor import Outcome, ResourceActor, period_of

__all__ = ["Registry"]

_log = structlog.get_logger("hub.actors")


class _Ask:
    """A reply slot the asking task waits on until every shard answered."""

    __slots__ = ("done", "pending", "results")

    def __init__(self, pending: int) -> None:
        self.pending = pending
        self.results: dict[str, Outcome | Exception] = {}
        self.done = anyio.Event()

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
        shards: int = 8,
        mailbox_size: int = 256,
        idle_seconds: float = 900.0,
        default_warning: Decimal = Decimal(80),
        default_critical: Decimal = Decimal(95),
    ) -> None:
        self._defaults = (default_warning, default_critical)
        self._db = db
        self._tz = tz
        self._gap_bp = gap_bp
        self._shards = [_Shard(mailbox_size) for _ in range(shards)]
        self._idle = idle_seconds
        self._running = False
        self.provisioned = 0

    def __len__(self) -> int:
        return sum(len(s.actors) for s in self._shards)

    def _shard(self, key: str) -> int:
        return zlib.crc32(key.encode()) % len(self._shards)

    def get(self, key: str) -> ResourceActor | None:
        """The live actor of ``key`` (for inspection; do not mutate)."""
        return self._shards[self._shard(key)].actors.get(key)

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
        for index, work in per_shard.items():
            await self._mailbox(index).send(_Apply(work, ask))
        await ask.done.wait()
        return ask.results

    async def forget(self, predicate: Callable[[ResourceActor], bool]) -> None:
        """Retire every actor ``predicate`` selects; the next reading rebuilds it."""
        if not self._running:
            for shard in self._shards:
                for key in [k for k, a in shard.actors.items() if predicate(a)]:
                    del shard.actors[key]
            return
        ask = _Ask(len(self._shards))
        for index in range(len(self._shards)):
            await self._mailbox(index).send(_Retire(predicate, ask))
        await ask.done.wait()

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
                        for key, partition, readings in items:
                            ask.results[key] = await self._apply_one(
                                shard, key, partition, readings
                            )
                    case _Retire(predicate=predicate):
                        for key in [k for k, a in shard.actors.items() if predicate(a)]:
                            del shard.actors[key]
            finally:
                envelope.ask.answered()

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
            )
            row = await load_resource(self._db, key)
            if row is None:  # pragma: no cover - deleted between the two statements
                raise HubError(f"resource {key!r} vanished while being provisioned")
            if provisioned:
                self.provisioned += 1
                _log.info("resource_auto_provisioned", resource_key=key)
        return ResourceActor.from_row(row, partition=partition), provisioned

    async def _apply_one(
        self, shard: _Shard, key: str, partition: int, readings: list[UsageReading]
    ) -> Outcome | Exception:
        actor = shard.actors.get(key)
        provisioned = False
        try:
            if actor is None:
                actor, provisioned = await self._load(key, partition, readings[0])
                shard.actors[key] = actor
            actor.partition = partition
            actor.last_used = time.monotonic()
            outcome = actor.outcome()
            outcome.provisioned = provisioned
            for reading in readings:
                result = actor.handle(
                    reading, period_of(reading.end_ms, self._tz), gap_bp=self._gap_bp
                )
                if result is False:
                    outcome.late += 1
                elif result is not None and result is not True:
                    outcome.changes.append(result)
        except Exception as exc:  # supervision: drop the actor, report, rebuild on next use
            shard.actors.pop(key, None)
            _log.warning("actor_failed", resource_key=key, error=str(exc))
            return exc
        outcome.total, outcome.period, outcome.level = actor.total, actor.period, actor.level
        outcome.limit = actor.limit
        return outcome
