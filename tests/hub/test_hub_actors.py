"""The actor runtime: load on first message, per-key order, periods, retirement."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import anyio
import asyncpg  # type: ignore[import-untyped]
import pytest
from _hub_testing import until

from hub import provision_resource
from hub.actors import Outcome, Registry, ResourceActor
from hub.calendar import month_of
from hub.checks import Level, Transition
from protocol import UsageReading

pytestmark = [pytest.mark.integration, pytest.mark.anyio]

UTC = ZoneInfo("UTC")
NOV = int(dt.datetime(2026, 11, 20, tzinfo=dt.UTC).timestamp() * 1000)
DEC = int(dt.datetime(2026, 12, 1, tzinfo=dt.UTC).timestamp() * 1000)


def r(key: str, value: int, end_ms: int = NOV, kind: str = "delta") -> UsageReading:
    customer, rtype = key.split("/")[:2]
    return UsageReading(
        customer_id=customer,
        resource_type=rtype,
        resource_key=key,
        value=value,
        unit="byte",
        start_ms=end_ms - 1000,
        end_ms=end_ms,
        kind=kind,  # type: ignore[arg-type]
    )


def test_actor_state_is_slotted() -> None:
    assert not hasattr(ResourceActor.__new__(ResourceActor), "__dict__")


def test_billing_period_follows_the_time_zone() -> None:
    # 2026-12-01T00:30 in Berlin is still November in UTC
    ms = int(dt.datetime(2026, 11, 30, 23, 30, tzinfo=dt.UTC).timestamp() * 1000)
    assert month_of(ms, UTC) == 2026 * 12 + 10
    assert month_of(ms, ZoneInfo("Europe/Berlin")) == 2026 * 12 + 11


async def test_actors_load_state_apply_in_order_and_raise_once(
    db: asyncpg.Connection, unique: str
) -> None:
    key = await provision_resource(db, f"c-{unique}", "bandwidth", 1000)
    await db.execute(
        "UPDATE customer_resources SET current_usage = 700, period_start = '2026-11-01'"
    )
    registry = Registry(db, tz=UTC, shards=2, mailbox_size=1)
    with anyio.fail_after(20):
        async with anyio.create_task_group() as tg:
            await tg.start(registry.run)
            results = await registry.apply([(0, r(key, 100)), (0, r(key, 100)), (0, r(key, 50))])
            outcome = results[key]
            assert isinstance(outcome, Outcome)
            assert outcome.total == 950  # loaded 700 + 250, in order
            assert [c.transition for c in outcome.changes] == [
                Transition.RAISE_WARNING,
                Transition.RAISE_CRITICAL,
            ]
            assert [c.total for c in outcome.changes] == [800, 950]
            again = await registry.apply([(0, r(key, 1))])
            assert again[key].changes == []  # type: ignore[union-attr]
            # a new billing month starts from zero; a late November reading is not counted
            december = await registry.apply([(0, r(key, 5, DEC)), (0, r(key, 7, NOV))])
            out = december[key]
            assert isinstance(out, Outcome)
            assert (out.total, out.late, out.level) == (5, 1, Level.NONE)
            assert [c.transition for c in out.changes] == [Transition.RESOLVE]
            tg.cancel_scope.cancel()


async def test_level_resources_track_the_last_value(db: asyncpg.Connection, unique: str) -> None:
    key = await provision_resource(db, f"c-{unique}", "storage", 1000)
    registry = Registry(db, tz=UTC, shards=1)
    with anyio.fail_after(20):
        async with anyio.create_task_group() as tg:
            await tg.start(registry.run)
            out = await registry.apply(
                [(0, r(key, 900, kind="level")), (0, r(key, 100, kind="level"))]
            )
            assert isinstance(out[key], Outcome)
            assert out[key].total == 100  # type: ignore[union-attr]
            tg.cancel_scope.cancel()


async def test_idle_actors_are_retired_and_rebuilt_from_storage(
    db: asyncpg.Connection, unique: str
) -> None:
    key = await provision_resource(db, f"c-{unique}", "cpu", None)
    registry = Registry(db, tz=UTC, shards=2, idle_seconds=0.1)
    with anyio.fail_after(20):
        async with anyio.create_task_group() as tg:
            await tg.start(registry.run)
            await registry.apply([(3, r(key, 10))])
            assert registry.get(key) is not None
            await until(lambda: registry.get(key) is None)
            # nothing was committed, so the rebuilt actor starts from the stored total
            out = await registry.apply([(3, r(key, 1))])
            assert out[key].total == 1  # type: ignore[union-attr]
            await registry.forget_partitions([3])
            assert len(registry) == 0
            tg.cancel_scope.cancel()


async def test_apply_refuses_when_not_running(db: asyncpg.Connection) -> None:
    from hub import HubError

    with pytest.raises(HubError, match="not running"):
        await Registry(db, tz=UTC).apply([(0, r("c/cpu", 1))])


class _Counting:
    """A connection that counts the queries the registry sends (and can fail one kind)."""

    def __init__(self, conn: asyncpg.Connection, *, fail_many: bool = False) -> None:
        self.conn = conn
        self.fail_many = fail_many
        self.queries = 0

    async def fetch(self, sql: str, *args: object) -> list[asyncpg.Record]:
        self.queries += 1
        if self.fail_many and "ANY(" in sql:
            raise asyncpg.PostgresConnectionError("connection reset")
        return await self.conn.fetch(sql, *args)

    async def fetchrow(self, sql: str, *args: object) -> asyncpg.Record | None:
        self.queries += 1
        return await self.conn.fetchrow(sql, *args)

    async def fetchval(self, sql: str, *args: object) -> object:
        self.queries += 1
        return await self.conn.fetchval(sql, *args)

    async def execute(self, sql: str, *args: object) -> str:
        self.queries += 1
        return await self.conn.execute(sql, *args)

    def transaction(self) -> object:
        return self.conn.transaction()


@pytest.mark.parametrize("fail_many", [False, True], ids=["one-query", "preload-fails"])
async def test_a_batch_of_new_keys_loads_in_one_query(
    db: asyncpg.Connection, unique: str, fail_many: bool
) -> None:
    keys = [await provision_resource(db, f"c{i}-{unique}", "bandwidth", 1000) for i in range(40)]
    unknown = f"new-{unique}/bandwidth"  # provisioned on the way, one by one
    counting = _Counting(db, fail_many=fail_many)
    # one shard: the shards of a hub share a pool; this test has a single connection
    registry = Registry(counting, tz=UTC, shards=1)  # type: ignore[arg-type]
    with anyio.fail_after(20):
        async with anyio.create_task_group() as tg:
            await tg.start(registry.run)
            out = await registry.apply([(0, r(k, 900)) for k in [*keys, unknown]])
            assert all(isinstance(out[k], Outcome) for k in keys)
            assert [out[k].total for k in keys] == [900] * len(keys)  # type: ignore[union-attr]
            assert [c.transition for c in out[keys[0]].changes] == [  # type: ignore[union-attr]
                Transition.RAISE_WARNING
            ]
            new = out[unknown]
            assert isinstance(new, Outcome)
            assert new.provisioned
            assert new.total == 900
            loads = counting.queries
            tg.cancel_scope.cancel()
    provisioning = 6  # the unknown key's own statements: load, catalog, customer, insert..
    if fail_many:  # every key on its own after the failed preload
        assert loads >= len(keys) + 2
    else:  # one preload, then the unknown key's own statements
        assert loads <= 1 + provisioning
