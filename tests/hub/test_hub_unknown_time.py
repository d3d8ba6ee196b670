"""The billing figures show the time reported gaps cover as unknown, not as zero."""

from __future__ import annotations

import datetime as dt

import aiohttp
import asyncpg  # type: ignore[import-untyped]
import pytest
from _keys import bearer
from aiohttp.test_utils import TestClient, TestServer
from test_hub_redis_batch_write import usage

from hub import HubConfig, provision_resource
from hub.api.app import ApiContext, create_app
from hub.metrics import HubMetrics
from hub.storage import queries, redis_cache
from hub.storage.redis_cache import RedisCache

pytestmark = [pytest.mark.integration, pytest.mark.anyio]

UTC = dt.UTC


def at(*parts: int) -> dt.datetime:
    return dt.datetime(*parts, tzinfo=UTC)


async def add_gap(
    db: asyncpg.Connection, key: str, start: dt.datetime, end: dt.datetime, n: int
) -> None:
    customer = key.split("/", 1)[0]
    await db.execute(
        "INSERT INTO usage_gaps (event_id, customer_id, resource_key, resource_type,"
        " gap_start, gap_end, reason) VALUES ($1, $2, $3, 'bandwidth', $4, $5, 'reboot')",
        f"{key}-gap-{n}",
        customer,
        key,
        start,
        end,
    )


async def january_resource(db: asyncpg.Connection, customer: str) -> str:
    """A resource billing January 2026, with gaps in and around it."""
    key = await provision_resource(db, customer, "bandwidth", 10**9)
    await db.execute(
        "UPDATE customer_resources SET period_start = '2026-01-01' WHERE resource_key = $1", key
    )
    gaps = [
        # the in and out counters of one reboot: one minute, counted once
        (at(2026, 1, 10, 12, 0), at(2026, 1, 10, 12, 1)),
        (at(2026, 1, 10, 12, 0, 30), at(2026, 1, 10, 12, 1)),
        # two gaps that touch: 30 s
        (at(2026, 1, 11, 0, 0), at(2026, 1, 11, 0, 0, 10)),
        (at(2026, 1, 11, 0, 0, 10), at(2026, 1, 11, 0, 0, 30)),
        # across the start of the month (UTC): one hour inside it
        (at(2025, 12, 31, 22, 0), at(2026, 1, 1, 1, 0)),
        # in another month: not this period's
        (at(2026, 2, 3, 0, 0), at(2026, 2, 3, 5, 0)),
    ]
    for n, (start, end) in enumerate(gaps):
        await add_gap(db, key, start, end, n)
    return key


async def test_resources_show_the_time_gaps_cover_in_the_billing_month_counted_once(
    db: asyncpg.Connection, unique: str
) -> None:
    customer = f"cust-{unique}"
    key = await january_resource(db, customer)
    other = await provision_resource(db, customer, "storage", None)
    views = {v.resource_key: v for v in await queries.customer_resources(db, customer)}
    assert views[key].unknown_ms == 60_000 + 30_000 + 3_600_000
    assert views[other].unknown_ms == 0
    # billing months that start in Berlin (UTC+1) began an hour earlier
    berlin = {
        v.resource_key: v
        for v in await queries.customer_resources(db, customer, billing_tz="Europe/Berlin")
    }
    assert berlin[key].unknown_ms == 60_000 + 30_000 + 2 * 3_600_000
    usage = {u.resource_key: u for u in await queries.current_usage(db, customer)}
    assert usage[key].unknown_ms == views[key].unknown_ms


async def test_a_resource_without_readings_counts_the_gaps_of_the_current_month_up_to_now(
    db: asyncpg.Connection, unique: str
) -> None:
    customer = f"cust-{unique}"
    key = await provision_resource(db, customer, "bandwidth", None)
    now = await db.fetchval("SELECT now()")
    month_start = now.astimezone(UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    # from before the month began until after now: the month so far, up to now
    await add_gap(db, key, month_start - dt.timedelta(hours=1), now + dt.timedelta(hours=1), 0)
    (view,) = await queries.customer_resources(db, customer)
    elapsed_ms = (now - month_start) // dt.timedelta(milliseconds=1)
    # the query's now() is later than the one read above, never earlier
    assert elapsed_ms <= view.unknown_ms < elapsed_ms + 60_000


async def test_the_cache_keeps_the_unknown_time_of_its_fill_across_batch_updates_until_stale(
    db: asyncpg.Connection, redis_url: str, unique: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    customer = f"cust-{unique}"
    key = await january_resource(db, customer)
    cache = RedisCache.from_url(redis_url, prefix=f"t-{unique}", unknown_max_age_ms=60_000)
    clock = [1_800_000_000_000]
    monkeypatch.setattr(redis_cache, "now_ms", lambda: clock[0])
    try:
        assert await cache.current_usage(customer) is None  # nothing filled yet
        await cache.fill_usage(customer, await queries.current_usage(db, customer))
        await cache.update([usage(key, 42)], [])  # a batch: no unknown time to give
        (hit,) = await cache.current_usage(customer) or []
        assert (hit.usage, hit.unknown_ms) == (42, 60_000 + 30_000 + 3_600_000)
        clock[0] += 60_000
        assert await cache.current_usage(customer) is not None
        clock[0] += 1  # older than unknown_max_age_ms: read from PostgreSQL again
        assert await cache.current_usage(customer) is None
    finally:
        await cache.client.delete(f"t-{unique}:usage:{customer}")
        await cache.aclose()


async def test_the_current_usage_and_resources_routes_answer_unknown_ms(
    db: asyncpg.Connection, hub_config: HubConfig, unique: str, api_key: str
) -> None:
    customer = f"cust-{unique}"
    key = await january_resource(db, customer)
    app = create_app(ApiContext(config=hub_config, db=db, metrics=HubMetrics()))
    async with TestClient(TestServer(app), headers=bearer(api_key)) as client:
        current: aiohttp.ClientResponse = await client.get(
            f"/api/metrics/customer/{customer}/current"
        )
        assert current.status == 200
        (usage,) = await current.json()
        resources = await client.get(f"/api/monitoring/customers/{customer}/resources")
        assert resources.status == 200
        (resource,) = await resources.json()
    assert usage["resourceKey"] == resource["resourceKey"] == key
    assert usage["unknownMs"] == resource["unknownMs"] == 60_000 + 30_000 + 3_600_000
