"""Per-key rate limits, counted in the real Redis and shared by every app on it."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import asyncpg  # type: ignore[import-untyped]
import msgspec
import pytest
from _hub_testing import sample
from _keys import bearer, make_key
from aiohttp.test_utils import TestServer
from structlog.testing import capture_logs

from hub import ConfigError, HubConfig, RunningHub, provision_resource
from hub.api import ApiContext, create_app
from hub.config import ENV_HELP
from hub.metrics import HubMetrics

pytestmark = [pytest.mark.integration, pytest.mark.anyio]

_RATE_HEADERS = ("RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset")


@pytest.fixture
def hub_config(hub_config: HubConfig) -> HubConfig:
    return msgspec.structs.replace(hub_config, rate_limit_read="3/minute", rate_limit_write="off")


@pytest.fixture
async def customer(db: asyncpg.Connection, unique: str) -> str:
    await provision_resource(db, f"cust-{unique}", "bandwidth", None)
    return f"cust-{unique}"


@pytest.fixture
async def client(hub: RunningHub) -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(base_url=hub.http_url) as session:
        yield session


async def test_a_key_past_its_read_budget_gets_429_with_the_headers(
    hub: RunningHub, client: aiohttp.ClientSession, db: asyncpg.Connection, customer: str
) -> None:
    key, other = await make_key(db, name="a"), await make_key(db, name="b")
    url = f"/api/metrics/customer/{customer}/current"
    remaining = []
    for _ in range(3):
        async with client.get(url, headers=bearer(key)) as resp:
            assert resp.status == 200
            assert resp.headers["RateLimit-Limit"] == "3"
            assert 1 <= int(resp.headers["RateLimit-Reset"]) <= 60
            assert "Retry-After" not in resp.headers
            remaining.append(resp.headers["RateLimit-Remaining"])
    assert remaining == ["2", "1", "0"]
    async with client.get(url, headers=bearer(key)) as resp:
        assert resp.status == 429
        assert 1 <= int(resp.headers["Retry-After"]) <= 60
        assert resp.headers["RateLimit-Remaining"] == "0"
        body = await resp.json()
    assert "rate limit" in body["detail"]
    assert body["type"].endswith("/rate-limited")
    # the budget is per key and per scope: another key reads, the same key may still write
    async with client.get(url, headers=bearer(other)) as resp:
        assert resp.status == 200
        assert resp.headers["RateLimit-Remaining"] == "2"
    async with client.post("/api/stream/token", headers=bearer(key)) as resp:
        assert resp.status == 429  # a read route: same budget
    async with client.put(
        f"/api/customers/{customer}/notification-preferences",
        json={},
        headers={**bearer(key), "If-Match": "*"},
    ) as resp:
        assert resp.status == 200  # writes are unlimited here (RESMON_RATE_LIMIT_WRITE=off)
        assert "RateLimit-Limit" not in resp.headers
    assert sample(hub.metrics, "resmon_hub_api_rate_limited_total", budget="read") == 2


async def test_errors_of_a_limited_route_carry_the_headers_public_routes_none(
    client: aiohttp.ClientSession, db: asyncpg.Connection
) -> None:
    key = await make_key(db)
    async with client.get("/api/metrics/customer/nobody/current", headers=bearer(key)) as resp:
        assert resp.status == 404
        assert resp.headers["RateLimit-Remaining"] == "2"
    async with client.get("/healthz") as resp:
        assert resp.status == 200
        assert not set(_RATE_HEADERS) & set(resp.headers)


async def test_hubs_on_one_redis_share_the_budget_and_a_key_may_have_its_own(
    hub: RunningHub, client: aiohttp.ClientSession, db: asyncpg.Connection, customer: str
) -> None:
    key = await make_key(db, name="shared")
    key_id = await db.fetchval("SELECT id::text FROM api_keys WHERE name = 'shared'")
    url = f"/api/metrics/customer/{customer}/current"
    # a second app (another hub's API) on the same database and Redis
    second = create_app(ApiContext(config=hub.config, db=hub.pool, metrics=HubMetrics()))
    async with TestServer(second) as server, aiohttp.ClientSession() as other:
        for session, base in ((client, ""), (other, str(server.make_url("")))):
            async with session.get(base + url, headers=bearer(key)) as resp:
                assert resp.status == 200
        async with other.get(str(server.make_url(url)), headers=bearer(key)) as resp:
            assert resp.headers["RateLimit-Remaining"] == "0"
        async with client.get(url, headers=bearer(key)) as resp:
            assert resp.status == 429
    own = msgspec.structs.replace(hub.config, rate_limit_keys=f"{key_id}=1000/minute")
    third = create_app(ApiContext(config=own, db=hub.pool, metrics=HubMetrics()))
    async with (
        TestServer(third) as server,
        aiohttp.ClientSession() as session,
        session.get(str(server.make_url(url)), headers=bearer(key)) as resp,
    ):
        assert resp.status == 200
        assert resp.headers["RateLimit-Limit"] == "1000"


async def test_without_redis_the_limiter_fails_open_counted_and_logged(
    hub: RunningHub, db: asyncpg.Connection, customer: str
) -> None:
    key = await make_key(db)
    down = msgspec.structs.replace(hub.config, redis_url="redis://127.0.0.1:1/0")
    metrics = HubMetrics()
    app = create_app(ApiContext(config=down, db=hub.pool, metrics=metrics))
    url = f"/api/monitoring/customers/{customer}/resources"
    with capture_logs() as logs:
        async with TestServer(app) as server, aiohttp.ClientSession() as session:
            for _ in range(5):  # past the budget of 3: nothing counts them
                async with session.get(str(server.make_url(url)), headers=bearer(key)) as resp:
                    assert resp.status == 200
                    assert "RateLimit-Limit" not in resp.headers
    assert sample(metrics, "resmon_hub_api_rate_limit_unavailable_total") == 5
    warnings = [e for e in logs if e["event"] == "rate_limit_unavailable"]
    assert len(warnings) == 1  # one warning for the burst, not one per request
    assert warnings[0]["log_level"] == "warning"


def test_a_rate_the_hub_cannot_read_is_refused_naming_the_variable(hub_config: HubConfig) -> None:
    with pytest.raises(ConfigError, match="RESMON_RATE_LIMIT_INGEST='lots'"):
        msgspec.structs.replace(hub_config, rate_limit_ingest="lots")
    with pytest.raises(ConfigError, match="RESMON_RATE_LIMIT_KEYS"):
        msgspec.structs.replace(hub_config, rate_limit_keys="not-a-key=5/second")
    for variable in ("RESMON_RATE_LIMIT_READ", "RESMON_RATE_LIMIT_KEYS", "12000/minute"):
        assert variable in ENV_HELP


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("redis://cache", "async+redis://cache:6379"),
        ("redis://127.0.0.1:6380/0", "async+redis://127.0.0.1:6380/0"),
        ("redis://:secret@cache/2", "async+redis://:secret@cache:6379/2"),
        ("rediss://user:pw@cache:7000", "async+rediss://user:pw@cache:7000"),
        ("redis://[::1]/0", "async+redis://[::1]:6379/0"),
    ],
)
def test_a_redis_url_without_a_port_reaches_the_limiter_with_the_default_one(
    given: str, expected: str
) -> None:
    from hub.api.ratelimit import _storage_uri

    assert _storage_uri(given) == expected
