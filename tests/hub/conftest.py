"""Fixtures for hub tests: a migrated database and a config with unique names."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import aiohttp
import anyio
import asyncpg  # type: ignore[import-untyped]
import pytest
import redis
from _keys import TEST_SECRET, bearer, make_key
from aiokafka import AIOKafkaProducer

from hub import HubConfig, RunningHub, migrate, run_hub


@pytest.fixture
def hub_config(
    pg_dsn: str, redis_url: str, kafka_bootstrap: str, unique: str
) -> Iterator[HubConfig]:
    config = HubConfig(
        database_url=pg_dsn,
        redis_url=redis_url,
        kafka_bootstrap_servers=kafka_bootstrap,
        api_key_secret=TEST_SECRET,
        http_port=0,
        consumer_group=f"hub-{unique}",
        usage_topic=f"usage-{unique}",
        alerts_topic=f"alerts-{unique}",
        usage_partitions=4,
        redis_prefix=f"resmon-test-{unique}",
        actor_shards=4,
        batch_timeout_ms=50,
        cache_ttl_seconds=120,
        retention_days=36500,  # the tests' readings are of 2025; keep their partitions
        session_timeout_ms=2000,  # the test broker assigns partitions ~half of this after a join
    )
    yield config
    client = redis.Redis.from_url(redis_url)
    try:
        keys = list(client.scan_iter(f"{config.redis_prefix}:*"))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


@pytest.fixture
async def db(hub_config: HubConfig) -> AsyncIterator[asyncpg.Connection]:
    """A connection to the test database, migrated."""
    await migrate(hub_config.database_url)
    conn = await asyncpg.connect(hub_config.database_url)
    try:
        yield conn
    finally:
        await conn.close()


@pytest.fixture
async def producer(kafka_bootstrap: str) -> AsyncIterator[AIOKafkaProducer]:
    p = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, enable_idempotence=False, acks="all")
    await p.start()
    try:
        yield p
    finally:
        await p.stop()


@pytest.fixture
async def hub(hub_config: HubConfig, db: asyncpg.Connection) -> AsyncIterator[RunningHub]:
    """A running hub (consumer, actors, REST API) on a migrated database."""
    async with anyio.create_task_group() as tg:
        running: RunningHub = await tg.start(run_hub, hub_config)
        yield running
        tg.cancel_scope.cancel()


@pytest.fixture
async def api_key(db: asyncpg.Connection) -> str:
    """A key of the default tenant with every scope (read, write, ingest, admin)."""
    return await make_key(db)


@pytest.fixture
async def http(hub: RunningHub, api_key: str) -> AsyncIterator[aiohttp.ClientSession]:
    """A client of the running hub's REST API, sending :func:`api_key`."""
    async with aiohttp.ClientSession(base_url=hub.http_url, headers=bearer(api_key)) as session:
        yield session
