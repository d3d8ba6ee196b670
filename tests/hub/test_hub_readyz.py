"""``/readyz`` against the real PostgreSQL, Redis and broker, and against addresses
where nothing listens (a port free on this machine): each down one is named."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import asyncpg  # type: ignore[import-untyped]
import msgspec
import pytest
from _net import free_port
from aiohttp.test_utils import TestClient, TestServer
from aiokafka import AIOKafkaProducer

from hub import HubConfig, RunningHub
from hub.api import ApiContext, create_app
from hub.metrics import HubMetrics
from hub.storage.redis_cache import RedisCache

pytestmark = [pytest.mark.integration, pytest.mark.anyio]


async def _ready(context: ApiContext) -> tuple[int, dict[str, object]]:
    """Status and body of ``GET /readyz`` (without a key: the route is public)."""
    async with TestClient(TestServer(create_app(context))) as client:
        resp = await client.get("/readyz")
        return resp.status, await resp.json()


@pytest.fixture
async def cache(hub_config: HubConfig) -> AsyncIterator[RedisCache]:
    c = RedisCache.from_url(hub_config.redis_url, prefix=hub_config.redis_prefix)
    yield c
    await c.aclose()


async def test_a_running_hub_is_ready(hub: RunningHub) -> None:
    async with aiohttp.ClientSession() as http, http.get(f"{hub.http_url}/readyz") as resp:
        assert resp.status == 200
        body = await resp.json()
    assert body == {"status": "ready", "checks": {"postgresql": "ok", "redis": "ok", "kafka": "ok"}}


async def test_a_down_redis_is_503_naming_redis(
    hub_config: HubConfig, db: asyncpg.Connection, producer: AIOKafkaProducer
) -> None:
    port = free_port()
    config = msgspec.structs.replace(hub_config, redis_url=f"redis://127.0.0.1:{port}/0")
    down = RedisCache.from_url(config.redis_url)
    try:
        status, body = await _ready(
            ApiContext(config=config, db=db, metrics=HubMetrics(), cache=down, producer=producer)
        )
    finally:
        await down.aclose()
    assert status == 503, body
    assert body["status"] == "unavailable"
    checks = body["checks"]
    assert isinstance(checks, dict)
    assert (checks["postgresql"], checks["kafka"]) == ("ok", "ok")
    assert f"127.0.0.1:{port}" in checks["redis"]
    assert "REDIS_URL" in checks["redis"]


async def test_a_down_kafka_is_503_naming_kafka(
    hub_config: HubConfig, db: asyncpg.Connection, cache: RedisCache
) -> None:
    address = f"127.0.0.1:{free_port()}"
    config = msgspec.structs.replace(hub_config, kafka_bootstrap_servers=address)
    nowhere = AIOKafkaProducer(bootstrap_servers=address)  # never reached a broker
    try:
        status, body = await _ready(
            ApiContext(config=config, db=db, metrics=HubMetrics(), cache=cache, producer=nowhere)
        )
    finally:
        await nowhere.stop()
    assert status == 503, body
    checks = body["checks"]
    assert isinstance(checks, dict)
    assert (checks["postgresql"], checks["redis"]) == ("ok", "ok")
    assert address in checks["kafka"]
    assert "KAFKA_BOOTSTRAP_SERVERS" in checks["kafka"]


async def test_a_down_postgresql_is_503_naming_postgresql(
    hub_config: HubConfig, cache: RedisCache
) -> None:
    port = free_port()
    config = msgspec.structs.replace(
        hub_config, database_url=f"postgresql://postgres@127.0.0.1:{port}/nothing"
    )
    pool = await asyncpg.create_pool(config.database_url, min_size=0)  # connects on use
    try:
        status, body = await _ready(
            ApiContext(config=config, db=pool, metrics=HubMetrics(), cache=cache)
        )
    finally:
        await pool.close()
    assert status == 503, body
    checks = body["checks"]
    assert isinstance(checks, dict)
    assert f"127.0.0.1:{port}" in checks["postgresql"]
    assert (checks["redis"], checks["kafka"]) == ("ok", "disabled")


async def test_without_cache_or_producer_those_checks_are_disabled(
    hub_config: HubConfig, db: asyncpg.Connection
) -> None:
    status, body = await _ready(ApiContext(config=hub_config, db=db, metrics=HubMetrics()))
    checks = {"postgresql": "ok", "redis": "disabled", "kafka": "disabled"}
    assert (status, body) == (200, {"status": "ready", "checks": checks})
