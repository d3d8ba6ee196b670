"""Supervision: poison messages are dead-lettered, the restart budget stops the hub."""

from __future__ import annotations

import contextlib
from zoneinfo import ZoneInfo

import anyio
import asyncpg  # type: ignore[import-untyped]
import msgspec
import pytest
from _hub_testing import until, wait_for
from _series import reading
from aiokafka import AIOKafkaProducer

from hub import HubConfig, RunningHub, provision_resource, run_hub
from hub._exceptions import RegistryClosedError, RestartBudgetError
from hub.actors import Registry
from protocol import encode_event

pytestmark = [pytest.mark.integration, pytest.mark.anyio]

TOTAL = "SELECT current_usage FROM customer_resources WHERE resource_key = $1"
BIG = 2**63 - 10


async def send(producer: AIOKafkaProducer, topic: str, key: str, i: int, value: int) -> None:
    record = encode_event(reading(key, i, value), source="urn:test")
    await producer.send_and_wait(topic, value=record.value, key=record.key, headers=record.headers)


async def test_a_reading_the_actor_refuses_is_dead_lettered_and_the_actor_goes_on(
    hub_config: HubConfig, db: asyncpg.Connection, producer: AIOKafkaProducer, unique: str
) -> None:
    key = await provision_resource(db, f"cust-{unique}", "bandwidth", None)
    topic = hub_config.usage_topic
    with anyio.fail_after(60):
        async with anyio.create_task_group() as tg:
            hub: RunningHub = await tg.start(run_hub, hub_config)
            await send(producer, topic, key, 0, BIG)
            await send(producer, topic, key, 1, 100)  # past 2^63-1: poison
            await send(producer, topic, key, 2, 5)
            await wait_for(db, TOTAL, BIG + 5, key)
            dead = await db.fetch("SELECT reason FROM dead_letters")
            assert [d["reason"].split(":")[0] for d in dead] == ["actor refused"]
            assert await db.fetchval("SELECT count(*) FROM usage_metrics") == 2
            assert hub.registry.restarts == 1
            tg.cancel_scope.cancel()


async def test_past_the_restart_budget_the_hub_stops_with_an_error(
    hub_config: HubConfig, db: asyncpg.Connection, producer: AIOKafkaProducer, unique: str
) -> None:
    config = msgspec.structs.replace(hub_config, restart_budget=1)
    key = await provision_resource(db, f"cust-{unique}", "bandwidth", None)
    topic = config.usage_topic
    with anyio.fail_after(60):
        with pytest.RaisesGroup(RestartBudgetError, flatten_subgroups=True):
            async with anyio.create_task_group() as tg:
                await tg.start(run_hub, config)
                await send(producer, topic, key, 0, BIG)
                await wait_for(db, TOTAL, BIG, key)
                await send(producer, topic, key, 1, 100)
                await send(producer, topic, key, 2, 100)
                await anyio.sleep_forever()  # run_hub fails the group
    # the batch with the second poison message was rolled back, not half applied
    assert await db.fetchval(TOTAL, key) == BIG
    assert await db.fetchval("SELECT count(*) FROM dead_letters") <= 1


async def test_pending_requests_fail_cleanly_when_the_registry_stops(
    hub_config: HubConfig, db: asyncpg.Connection, unique: str
) -> None:
    key = await provision_resource(db, f"cust-{unique}", "bandwidth", None)
    conn = await asyncpg.connect(hub_config.database_url)
    registry = Registry(conn, tz=ZoneInfo("UTC"), shards=1)
    errors: list[BaseException] = []

    async def ask() -> None:
        try:
            await registry.apply([(0, reading(key, 0, 1))])
        except RegistryClosedError as exc:
            errors.append(exc)

    try:
        with anyio.fail_after(20):
            async with db.transaction():
                # the actor's load blocks on this lock, so the request stays pending
                await db.execute("LOCK TABLE customer_resources IN ACCESS EXCLUSIVE MODE")
                async with anyio.create_task_group() as outer, anyio.create_task_group() as inner:
                    await inner.start(registry.run)
                    outer.start_soon(ask)
                    await until(lambda: registry.pending == 1)
                    inner.cancel_scope.cancel()
            assert len(errors) == 1
            assert registry.pending == 0
    finally:
        conn.terminate()


async def test_retiring_actors_while_the_registry_stops_returns_quietly(
    hub_config: HubConfig, db: asyncpg.Connection, unique: str
) -> None:
    # A batch that fails during shutdown retires its actors from a shielded scope;
    # the registry closing its mailboxes meanwhile must not turn a clean stop into
    # a ClosedResourceError.
    key = await provision_resource(db, f"cust-{unique}", "bandwidth", None)
    conn = await asyncpg.connect(hub_config.database_url)
    registry = Registry(conn, tz=ZoneInfo("UTC"), shards=1, mailbox_size=1)
    outcome: list[str] = []

    async def ask() -> None:
        with contextlib.suppress(RegistryClosedError):
            await registry.apply([(0, reading(key, 0, 1))])

    async def retire() -> None:
        with anyio.CancelScope(shield=True):
            await registry.forget_keys([key])
        outcome.append("returned")

    try:
        with anyio.fail_after(20):
            async with db.transaction():
                # the worker blocks loading the actor, so the mailbox fills up
                await db.execute("LOCK TABLE customer_resources IN ACCESS EXCLUSIVE MODE")
                async with anyio.create_task_group() as outer, anyio.create_task_group() as inner:
                    await inner.start(registry.run)
                    outer.start_soon(ask)
                    await until(lambda: registry.pending == 1)
                    outer.start_soon(ask)  # fills the one-slot mailbox
                    await until(lambda: registry.pending == 2)
                    outer.start_soon(retire)  # waits for room in the mailbox
                    await until(lambda: registry.pending == 3)
                    inner.cancel_scope.cancel()
            assert outcome == ["returned"]
            assert registry.pending == 0
    finally:
        conn.terminate()
