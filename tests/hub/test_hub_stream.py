"""GET /api/stream: live events from a real hub, through Kafka, PostgreSQL and Redis."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator

import aiohttp
import anyio
import asyncpg  # type: ignore[import-untyped]
import msgspec
import pytest
from _hub_testing import minute_reading, send_reading, until
from _keys import TEST_SECRET, bearer, make_key
from _problem import named
from _sse import SseReader
from aiokafka import AIOKafkaProducer

from hub import HubConfig, RunningHub, provision_resource, run_hub
from hub.apikeys import StreamGrant, stream_token
from hub.storage.current import CachedUsage
from hub.storage.live import LiveEvent, LivePublisher, LiveStream
from hub.storage.provision import DEFAULT_TENANT
from protocol import OptimizationEvent

pytestmark = [pytest.mark.integration, pytest.mark.anyio]


@pytest.fixture
def hub_config(hub_config: HubConfig) -> HubConfig:
    """Heartbeats every 0.3 s, so a test sees one without waiting 15 s."""
    return msgspec.structs.replace(hub_config, stream_heartbeat_seconds=0.3)


async def _other_tenant(db: asyncpg.Connection, unique: str) -> tuple[str, str, str]:
    """(tenant id, its customer's resource key, its key) of a second tenant."""
    tenant = str(uuid.uuid4())
    customer = f"other-{unique}"
    await db.execute("INSERT INTO tenants (id, name) VALUES ($1::uuid, $2)", tenant, customer)
    await db.execute(
        "INSERT INTO customers (id, tenant_id) VALUES ($1, $2::uuid)", customer, tenant
    )
    resource = await provision_resource(db, customer, "bandwidth", 1_000_000)
    return tenant, resource, await make_key(db, tenant_id=tenant, name="other")


def _stat(hub: RunningHub, name: str, labels: dict[str, str] | None = None) -> float:
    return hub.metrics.registry.get_sample_value(name, labels or {}) or 0.0


async def test_a_reading_through_kafka_is_a_usage_event_then_an_alert(
    hub: RunningHub, http: aiohttp.ClientSession, producer: AIOKafkaProducer, unique: str
) -> None:
    key = await provision_resource(hub.pool, f"cust-{unique}", "bandwidth", 1000)
    with anyio.fail_after(30):
        async with http.get("/api/stream") as resp:
            sse = SseReader(resp)
            assert _stat(hub, "resmon_hub_stream_clients") == 1
            await send_reading(producer, hub.config.usage_topic, minute_reading(key, 0, 500))
            usage = await sse.next_of("usage", resourceKey=key)
            assert usage.data["usage"] == 500
            assert usage.data["customerId"] == f"cust-{unique}"
            assert usage.data["limit"] == 1000
            assert usage.id is not None
            # 950 of 1000: the critical threshold (90 %) is crossed
            await send_reading(producer, hub.config.usage_topic, minute_reading(key, 1, 450))
            alert = await sse.next_of("alert", resourceKey=key, alertType="THRESHOLD_CRITICAL")
            assert alert.data["status"] == "ACTIVE"
            assert alert.data["customerId"] == f"cust-{unique}"
            beat = await sse.next_of("heartbeat")
            assert beat.id is None  # a heartbeat does not move Last-Event-ID
            assert beat.data["atMs"] > 0
            # an operator's action is an alert transition too
            async with http.post(f"/api/alerts/{alert.data['alertId']}/resolve", json={}) as r:
                assert r.status == 200, await r.text()
            resolved = await sse.next_of("alert", alertId=alert.data["alertId"], change="resolved")
            assert resolved.data["status"] == "RESOLVED"
    assert _stat(hub, "resmon_hub_stream_events_sent_total", {"type": "usage"}) >= 1
    assert _stat(hub, "resmon_hub_stream_events_sent_total", {"type": "alert"}) >= 2
    await until(lambda: _stat(hub, "resmon_hub_stream_clients") == 0)


async def test_usage_updates_are_coalesced_per_resource(hub: RunningHub, unique: str) -> None:
    """Within the interval only the first update goes out; the latest one follows it."""
    stream = LiveStream(hub.cache.client, prefix=f"{hub.config.redis_prefix}-c")
    tenant, quiet = str(uuid.uuid4()), str(uuid.uuid4())

    async def tenants(customers: list[str]) -> dict[str, str]:
        return {c: tenant if c == "c" else quiet for c in customers}

    publisher = LivePublisher(stream, tenants, interval=0.3)
    a, b, q = "c/bandwidth/a", "c/bandwidth/b", "q/bandwidth/a"
    await stream.watch(tenant, ttl=60)  # a stream is open for tenant; none for quiet
    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            tg.start_soon(publisher.run, lambda exc: None)
            assert publisher.offer_usage([_usage(a, 1), _usage(b, 10), _usage(q, 5)])
            assert publisher.offer_usage([_usage(a, 2)])
            assert publisher.offer_usage([_usage(a, 3)])

            async def entries() -> list[tuple[str, LiveEvent]]:
                return await stream.read(tenant, "0-0", block_ms=1)

            await until(lambda: _len(entries, 3))
            got = [(e.customer, msgspec.json.decode(e.data)["usage"]) for _, e in await entries()]
            tg.cancel_scope.cancel()
    # a and b once each at once, then a's latest value; a's middle value never went out
    assert got == [("c", 1), ("c", 10), ("c", 3)]
    # usage of a tenant nobody watches is not written at all
    assert await stream.read(quiet, "0-0", block_ms=1) == []
    await hub.cache.client.delete(stream.key(tenant))


def _usage(resource: str, value: int) -> CachedUsage:
    return CachedUsage(resource, "bandwidth", value, "byte", None, "GB", "0", None, None, "OK", 0)


async def _len(read: object, n: int) -> bool:
    return len(await read()) >= n  # type: ignore[operator]


async def test_resume_with_last_event_id(
    hub: RunningHub, http: aiohttp.ClientSession, producer: AIOKafkaProducer, unique: str
) -> None:
    key = await provision_resource(hub.pool, f"cust-{unique}", "bandwidth", None)
    live = hub.consumer.outbox.live
    assert live is not None
    with anyio.fail_after(30):
        async with http.get("/api/stream") as resp:
            sse = SseReader(resp)
            await send_reading(producer, hub.config.usage_topic, minute_reading(key, 0, 100))
            first = await sse.next_of("usage", resourceKey=key)
        # disconnected: the next reading is published while nobody listens
        await send_reading(producer, hub.config.usage_topic, minute_reading(key, 1, 100))
        assert first.id is not None

        async def published() -> bool:
            later = await live.stream.read(DEFAULT_TENANT, first.id, block_ms=1)  # type: ignore[arg-type]
            return any(b'"usage":200' in e.data for _, e in later)

        await until(published)
        async with http.get("/api/stream", headers={"Last-Event-ID": first.id}) as resp:
            sse = SseReader(resp)
            missed = await sse.next_of("usage", resourceKey=key)
            assert missed.data["usage"] == 200
            assert missed.id is not None
            assert missed.id != first.id
        async with http.get("/api/stream", headers={"Last-Event-ID": "yesterday"}) as resp:
            assert resp.status == 400
            assert named(await resp.json()) == "Last-Event-ID"


async def test_another_tenant_and_other_customers_see_nothing_of_it(
    hub: RunningHub,
    http: aiohttp.ClientSession,
    db: asyncpg.Connection,
    producer: AIOKafkaProducer,
    unique: str,
) -> None:
    mine = await provision_resource(db, f"cust-{unique}", "bandwidth", None)
    neighbour = await provision_resource(db, f"next-{unique}", "bandwidth", None)
    their_tenant, theirs, their_key = await _other_tenant(db, unique)
    portal = await make_key(db, ("read",), name="portal", customer_ids=[f"next-{unique}"])
    topic = hub.config.usage_topic
    with anyio.fail_after(40):
        async with (
            http.get("/api/stream") as own,
            http.get("/api/stream", headers=bearer(their_key)) as other,
            http.get("/api/stream", headers=bearer(portal)) as restricted,
            http.get(f"/api/stream?customerId=next-{unique}") as one_customer,
        ):
            own_sse, other_sse = SseReader(own), SseReader(other)
            portal_sse, one_sse = SseReader(restricted), SseReader(one_customer)
            await send_reading(producer, topic, minute_reading(mine, 0, 7))
            await own_sse.next_of("usage", resourceKey=mine)
            # then one event each of the others: what came before them is all they got
            await send_reading(producer, topic, minute_reading(neighbour, 0, 8))
            their_reading = minute_reading(theirs, 0, 9, tenant_id=their_tenant)
            await send_reading(producer, topic, their_reading)
            seen_other = await _until_usage(other_sse, theirs)
            seen_portal = await _until_usage(portal_sse, neighbour)
            seen_one = await _until_usage(one_sse, neighbour)
    assert mine not in seen_other
    assert neighbour not in seen_other
    assert mine not in seen_portal
    assert mine not in seen_one
    # the other tenant's key cannot even name this tenant's customer
    async with http.get(f"/api/stream?customerId=cust-{unique}", headers=bearer(their_key)) as resp:
        assert resp.status == 404
    async with http.get(f"/api/stream?customerId=cust-{unique}", headers=bearer(portal)) as resp:
        assert resp.status == 404


async def _until_usage(sse: SseReader, resource: str) -> list[str]:
    """Resource keys of every event up to (and with) ``resource``'s usage event."""
    seen = []
    while True:
        event = await sse.next()
        if event.kind == "heartbeat":
            continue
        seen.append(event.data.get("resourceKey"))
        if event.kind == "usage" and event.data.get("resourceKey") == resource:
            return seen


async def test_the_hub_that_did_not_process_the_reading_streams_it(
    hub_config: HubConfig,
    db: asyncpg.Connection,
    producer: AIOKafkaProducer,
    api_key: str,
    unique: str,
) -> None:
    """Two hubs on one database and Redis; the second consumes another topic entirely."""
    key = await provision_resource(db, f"cust-{unique}", "bandwidth", None)
    idle = msgspec.structs.replace(
        hub_config, consumer_group=f"idle-{unique}", usage_topic=f"idle-{unique}"
    )
    with anyio.fail_after(60):
        async with anyio.create_task_group() as tg:
            working: RunningHub = await tg.start(run_hub, hub_config)
            other: RunningHub = await tg.start(run_hub, idle)
            async with (
                aiohttp.ClientSession(base_url=other.http_url, headers=bearer(api_key)) as c,
                c.get("/api/stream") as resp,
            ):
                sse = SseReader(resp)
                await send_reading(producer, hub_config.usage_topic, minute_reading(key, 0, 42))
                got = await sse.next_of("usage", resourceKey=key)
            assert got.data["usage"] == 42
            assert _stat(working, "resmon_hub_readings_consumed_total") >= 1
            assert _stat(other, "resmon_hub_readings_consumed_total") == 0
            assert _stat(other, "resmon_hub_stream_events_sent_total", {"type": "usage"}) >= 1
            tg.cancel_scope.cancel()


@pytest.fixture
async def plain(hub: RunningHub) -> AsyncIterator[aiohttp.ClientSession]:
    """A client that sends no key."""
    async with aiohttp.ClientSession(base_url=hub.http_url) as session:
        yield session


async def test_a_stream_token_opens_the_stream_and_nothing_else(
    hub: RunningHub,
    http: aiohttp.ClientSession,
    plain: aiohttp.ClientSession,
    db: asyncpg.Connection,
    producer: AIOKafkaProducer,
    unique: str,
) -> None:
    key = await provision_resource(db, f"cust-{unique}", "bandwidth", None)
    async with http.post("/api/stream/token") as resp:
        assert resp.status == 200
        assert resp.headers["Cache-Control"] == "no-store"
        body = await resp.json()
    token = body["token"]
    assert token.startswith("rst_")
    assert body["customerIds"] is None
    with anyio.fail_after(30):
        async with plain.get("/api/stream", params={"token": token}) as resp:
            sse = SseReader(resp)
            await send_reading(producer, hub.config.usage_topic, minute_reading(key, 0, 5))
            assert (await sse.next_of("usage", resourceKey=key)).data["usage"] == 5
    # only the stream takes a token
    async with plain.get("/api/alerts", params={"token": token}) as resp:
        assert resp.status == 401
    forged = token[:-3] + ("AAA" if not token.endswith("AAA") else "BBB")
    expired = stream_token(
        TEST_SECRET, StreamGrant(body["keyId"], DEFAULT_TENANT, None, int(time.time()) - 1)
    )
    unknown_key = stream_token(
        TEST_SECRET, StreamGrant(str(uuid.uuid4()), DEFAULT_TENANT, None, int(time.time()) + 60)
    )
    for bad, says in (
        (forged, "signature"),
        (expired, "expired"),
        ("rst_nonsense", "signature"),
        ("abc", "starts with"),
        (unknown_key, "unknown"),
    ):
        async with plain.get("/api/stream", params={"token": bad}) as resp:
            assert resp.status == 401, bad
            assert says in (await resp.json())["detail"]
    # a token for one customer narrows the stream; another tenant's customer is 404
    async with http.post(f"/api/stream/token?customerId=cust-{unique}") as resp:
        assert (await resp.json())["customerIds"] == [f"cust-{unique}"]
    async with http.post("/api/stream/token?customerId=nobody") as resp:
        assert resp.status == 404
    assert _stat(hub, "resmon_hub_api_auth_refused_total", {"reason": "token"}) >= 4


async def test_applying_a_recommendation_is_a_recommendation_event(
    hub: RunningHub, http: aiohttp.ClientSession, db: asyncpg.Connection, unique: str
) -> None:
    resource = await provision_resource(db, f"cust-{unique}", "bandwidth", None)
    rid = str(uuid.uuid4())
    await db.execute(
        """INSERT INTO recommendations (id, customer_id, customer_resource_id, kind,
               monthly_savings, currency, effort, description, evidence)
           SELECT $1::uuid, cr.customer_id, cr.id, 'ELIMINATE_WASTE', 50, 'USD', 'low',
                  'idle for 30 days', '{}'::jsonb
           FROM customer_resources cr WHERE cr.resource_key = $2""",
        rid,
        resource,
    )
    with anyio.fail_after(20):
        async with http.get("/api/stream") as resp:
            sse = SseReader(resp)
            async with http.post(f"/api/recommendations/{rid}/apply", json={}) as r:
                assert r.status == 200, await r.text()
            got = await sse.next_of("recommendation", recommendationId=rid)
    assert got.data["change"] == "applied"
    assert got.data["customerId"] == f"cust-{unique}"
    assert got.data["resourceKey"] == resource


async def test_outbox_rows_of_events_only_reach_the_stream(
    hub_config: HubConfig, db: asyncpg.Connection, unique: str
) -> None:
    """A recommendation job's row and a forecast refresh's alert row (events, no usage)."""
    from decimal import Decimal

    import redis.asyncio as aioredis

    from hub.metrics import HubMetrics
    from hub.outbox import Outbox, OutboxBatch, OutboxEvent, insert_outbox
    from protocol import TOPIC_OPTIMIZATION, TYPE_ALERT, TYPE_OPTIMIZATION, AlertEvent, encode_event

    customer = f"cust-{unique}"
    resource = await provision_resource(db, customer, "bandwidth", 1000)
    rid = str(uuid.uuid4())
    found = OptimizationEvent(rid, customer, "ELIMINATE_WASTE", Decimal("12.50"), "USD", "idle", 1)
    alert = AlertEvent(
        str(uuid.uuid4()), customer, "bandwidth", resource, "FORECAST_LIMIT", "MEDIUM",
        "ACTIVE", "limit in 3 days", Decimal(1), None, Decimal(1000), None, "byte", 2,
    )  # fmt: skip
    rows = []
    for topic, payload, etype in (
        (TOPIC_OPTIMIZATION, found, TYPE_OPTIMIZATION),
        (hub_config.alerts_topic, alert, TYPE_ALERT),
    ):
        r = encode_event(payload, source="urn:test", event_type=etype, id=str(uuid.uuid4()))
        rows.append(
            OutboxBatch(topic, [OutboxEvent(r.key, r.value, r.headers, r.event_id)], [], [])
        )
    for batch in rows:
        await insert_outbox(db, batch)
    client: aioredis.Redis[bytes] = aioredis.Redis.from_url(hub_config.redis_url)
    pool = await asyncpg.create_pool(hub_config.database_url, min_size=1, max_size=2)
    try:
        stream = LiveStream(client, prefix=hub_config.redis_prefix)

        async def tenants(customers: list[str]) -> dict[str, str]:
            return dict.fromkeys(customers, DEFAULT_TENANT)

        live = LivePublisher(stream, tenants)
        outbox = Outbox(pool, None, None, HubMetrics(), live=live)
        assert await outbox.drain() == 2
        async with anyio.create_task_group() as tg:
            tg.start_soon(live.run, lambda exc: None)

            async def written() -> bool:
                return len(await stream.read(DEFAULT_TENANT, "0-0", block_ms=1)) >= 2

            with anyio.fail_after(10):
                await until(written)
            tg.cancel_scope.cancel()
        got = await stream.read(DEFAULT_TENANT, "0-0", block_ms=1)
    finally:
        await pool.close()
        await client.aclose()
    kinds = [(e.kind, msgspec.json.decode(e.data)) for _, e in got]
    assert [k for k, _ in kinds] == ["recommendation", "alert"]
    assert kinds[0][1]["change"] == "created"
    assert kinds[0][1]["recommendationId"] == rid
    assert kinds[1][1]["alertType"] == "FORECAST_LIMIT"
    assert kinds[1][1]["resourceKey"] == resource


async def test_a_stopping_hub_ends_its_open_streams(
    hub_config: HubConfig, db: asyncpg.Connection, api_key: str
) -> None:
    """The stop does not wait for clients to leave: each open stream ends, and the hub stops."""
    with anyio.fail_after(30):
        async with aiohttp.ClientSession(headers=bearer(api_key)) as session:
            async with anyio.create_task_group() as tg:
                running: RunningHub = await tg.start(run_hub, hub_config)
                resp = await session.get(f"{running.http_url}/api/stream")
                sse = SseReader(resp)
                await sse.next_of("heartbeat")
                tg.cancel_scope.cancel()
            with pytest.raises((EOFError, aiohttp.ClientPayloadError)):
                await _read_to_the_end(sse)
            resp.release()


async def _read_to_the_end(sse: SseReader) -> None:
    while True:
        await sse.next()


async def test_a_forgotten_customer_is_looked_up_again(hub: RunningHub) -> None:
    """A customer deleted and created again in another tenant: its events follow it."""
    stream = LiveStream(hub.cache.client, prefix=f"{hub.config.redis_prefix}-f")
    first, second = str(uuid.uuid4()), str(uuid.uuid4())
    owner = {"c": first}

    async def tenants(customers: list[str]) -> dict[str, str]:
        return {c: owner[c] for c in customers if c in owner}

    publisher = LivePublisher(stream, tenants)
    await publisher.send("alert", [("c", b'{"n":1}')])
    owner["c"] = second
    await publisher.send("alert", [("c", b'{"n":2}')])  # still cached: the old tenant
    publisher.forget_customers(["c"])
    await publisher.send("alert", [("c", b'{"n":3}')])
    old = [e.data for _, e in await stream.read(first, "0-0", block_ms=1)]
    new = [e.data for _, e in await stream.read(second, "0-0", block_ms=1)]
    assert old == [b'{"n":1}', b'{"n":2}']
    assert new == [b'{"n":3}']
    await hub.cache.client.delete(stream.key(first), stream.key(second))
