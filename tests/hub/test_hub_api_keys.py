"""API keys and tenants: every route of the app against every kind of caller.

The routes come from the app's own route table, so a route added without a
request in :data:`REQUESTS` (and a scope in ``hub.api.auth.ROUTE_SCOPES``)
fails :func:`test_every_route_has_a_request_in_the_matrix`.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import asyncpg  # type: ignore[import-untyped]
import pytest
from _keys import TEST_SECRET, bearer, make_key
from _notify_fakes import raise_alert
from _problem import named
from structlog.testing import capture_logs

from hub import RunningHub, provision_resource
from hub.api import ApiContext, create_app
from hub.api.auth import PUBLIC, required_scope
from hub.apikeys import SCOPES, hash_key, new_key
from hub.storage.apikeys import revoke_key
from hub.storage.provision import DEFAULT_TENANT

pytestmark = [pytest.mark.integration, pytest.mark.anyio]


@dataclass
class Tenant:
    """A tenant's objects: a customer with a resource and an ACTIVE alert, and a key."""

    id: str
    customer: str
    resource: str
    key: str
    key_id: str
    catalog_id: str  # a catalog entry of the tenant's own (api_calls)
    plan_id: str  # a cost model of the tenant's

    async def alert(self, db: asyncpg.Connection) -> str:
        """A fresh ACTIVE alert of the customer (the previous one resolved)."""
        await db.execute(
            """UPDATE alerts SET status = 'RESOLVED', resolved_at = now(), resolution = 'test'
               WHERE customer_resource_id =
                     (SELECT id FROM customer_resources WHERE resource_key = $1)""",
            self.resource,
        )
        return await raise_alert(db, self.resource)


async def _tenant(db: asyncpg.Connection, tenant_id: str, customer: str) -> Tenant:
    if tenant_id != DEFAULT_TENANT:
        await db.execute(
            "INSERT INTO tenants (id, name) VALUES ($1::uuid, $2)", tenant_id, f"t-{customer}"
        )
    # provisioning keeps an existing customer's tenant
    await db.execute(
        "INSERT INTO customers (id, tenant_id) VALUES ($1, $2::uuid)", customer, tenant_id
    )
    resource = await provision_resource(db, customer, "api_calls", 1000)
    key = await make_key(db, tenant_id=tenant_id, name=f"key-of-{customer}")
    return Tenant(
        tenant_id,
        customer,
        resource,
        key,
        await _key_id(db, key),
        await _catalog_entry(db, tenant_id),
        await _plan(db, tenant_id),
    )


async def _catalog_entry(db: asyncpg.Connection, tenant_id: str) -> str:
    return str(
        await db.fetchval(
            "INSERT INTO resource_catalogs (tenant_id, resource_type, resource_name, unit) "
            "VALUES ($1::uuid, 'api_calls', $2, 'request') RETURNING id::text",
            tenant_id,
            f"calls-{uuid.uuid4()}",
        )
    )


async def _plan(db: asyncpg.Connection, tenant_id: str) -> str:
    return str(
        await db.fetchval(
            "INSERT INTO cost_models (tenant_id, model_name, billing_period) "
            "VALUES ($1::uuid, $2, 'monthly') RETURNING id::text",
            tenant_id,
            f"plan-{uuid.uuid4()}",
        )
    )


async def _key_id(db: asyncpg.Connection, key: str) -> str:
    return str(
        await db.fetchval(
            "SELECT id::text FROM api_keys WHERE key_hash = $1", hash_key(TEST_SECRET, key)
        )
    )


@dataclass
class World:
    db: asyncpg.Connection
    hub: RunningHub
    mine: Tenant  # the default tenant
    other: Tenant  # a second tenant
    neighbour: str  # a second customer of the default tenant


@pytest.fixture
async def world(hub: RunningHub, db: asyncpg.Connection, unique: str) -> World:
    mine = await _tenant(db, DEFAULT_TENANT, f"cust-{unique}")
    other = await _tenant(db, str(uuid.uuid4()), f"other-{unique}")
    neighbour = f"next-{unique}"
    await provision_resource(db, neighbour, "api_calls", 1000)
    return World(db, hub, mine, other, neighbour)


@dataclass
class Request:
    method: str
    url: str
    body: Any = None
    #: the route lists (or creates) only the caller's own things (no object named): check
    #: the body instead
    listing: bool = False
    #: an endless answer (server-sent events): its body is not read when it is 200
    stream: bool = False
    headers: dict[str, str] = field(default_factory=dict)
    #: what of a tenant a listing shows (default: its key's id)
    shows: Callable[[Tenant], str] | None = None
    #: the tenant's configuration as a whole: a key restricted to customers gets 403
    whole_tenant: bool = False


#: (method, route) -> the request that reaches ``target``'s objects
Builder = Callable[[World, Tenant], Awaitable[Request]]


def _event(customer: str) -> dict[str, object]:
    return {"customerId": customer, "resourceType": "api_calls", "value": 1, "unit": "request"}


async def _ingest(w: World, t: Tenant) -> Request:
    return Request("POST", "/api/metrics/ingest", [_event(t.customer)])


async def _current(w: World, t: Tenant) -> Request:
    return Request("GET", f"/api/metrics/customer/{t.customer}/current")


async def _resources(w: World, t: Tenant) -> Request:
    return Request("GET", f"/api/monitoring/customers/{t.customer}/resources")


async def _alerts(w: World, t: Tenant) -> Request:
    return Request("GET", f"/api/alerts?customerId={t.customer}")


async def _alert(w: World, t: Tenant) -> Request:
    return Request("GET", f"/api/alerts/{await t.alert(w.db)}")


async def _history(w: World, t: Tenant) -> Request:
    return Request("GET", f"/api/alerts/{await t.alert(w.db)}/history")


async def _ack(w: World, t: Tenant) -> Request:
    return Request("POST", f"/api/alerts/{await t.alert(w.db)}/acknowledge", {})


async def _resolve(w: World, t: Tenant) -> Request:
    return Request("POST", f"/api/alerts/{await t.alert(w.db)}/resolve", {})


async def _customer_prefs(w: World, t: Tenant) -> Request:
    return Request("GET", f"/api/customers/{t.customer}/notification-preferences")


async def _put_customer_prefs(w: World, t: Tenant) -> Request:
    url = f"/api/customers/{t.customer}/notification-preferences"
    return Request("PUT", url, {}, headers={"If-Match": "*"})


async def _tenant_prefs(w: World, t: Tenant) -> Request:
    return Request("GET", f"/api/tenants/{t.id}/notification-preferences")


async def _put_tenant_prefs(w: World, t: Tenant) -> Request:
    url = f"/api/tenants/{t.id}/notification-preferences"
    return Request("PUT", url, {}, headers={"If-Match": "*"})


async def _notifications(w: World, t: Tenant) -> Request:
    return Request("GET", f"/api/notifications?customerId={t.customer}")


async def _costs(w: World, t: Tenant) -> Request:
    return Request("GET", f"/api/costs/customers/{t.customer}")


async def _resource_costs(w: World, t: Tenant) -> Request:
    return Request("GET", f"/api/costs/customers/{t.customer}/resources/{t.resource}")


async def _forecasts(w: World, t: Tenant) -> Request:
    return Request("GET", f"/api/forecasts/customers/{t.customer}")


async def _usage_history(w: World, t: Tenant) -> Request:
    return Request(
        "GET", f"/api/usage/customers/{t.customer}/resources/{t.resource}/history?range=1h"
    )


async def _recommendation_of(w: World, t: Tenant) -> str:
    """A fresh open ELIMINATE_WASTE recommendation for the tenant's resource (applying it
    only records that)."""
    rid = str(uuid.uuid4())
    await w.db.execute(
        """INSERT INTO recommendations (id, customer_id, customer_resource_id, kind,
               monthly_savings, currency, effort, description, evidence)
           SELECT $1::uuid, cr.customer_id, cr.id, 'ELIMINATE_WASTE', 50, 'USD', 'low',
                  'idle for 30 days', '{}'::jsonb
           FROM customer_resources cr WHERE cr.resource_key = $2""",
        rid,
        t.resource,
    )
    return rid


async def _recommendations(w: World, t: Tenant) -> Request:
    await _recommendation_of(w, t)
    return Request("GET", f"/api/recommendations?customerId={t.customer}")


async def _apply(w: World, t: Tenant) -> Request:
    return Request("POST", f"/api/recommendations/{await _recommendation_of(w, t)}/apply", {})


async def _dismiss(w: World, t: Tenant) -> Request:
    rid = await _recommendation_of(w, t)
    return Request("POST", f"/api/recommendations/{rid}/dismiss", {"reason": "kept on purpose"})


async def _list_keys(w: World, t: Tenant) -> Request:
    return Request("GET", "/api/keys", listing=True)


async def _create_key(w: World, t: Tenant) -> Request:
    body = {"name": "portal", "scopes": ["read"], "customerIds": [t.customer]}
    return Request("POST", "/api/keys", body)


async def _revoke_key(w: World, t: Tenant) -> Request:
    spare = await make_key(w.db, tenant_id=t.id, name="spare")
    return Request("DELETE", f"/api/keys/{await _key_id(w.db, spare)}")


async def _session(w: World, t: Tenant) -> Request:
    return Request("GET", "/ui/session", listing=True)


async def _stream(w: World, t: Tenant) -> Request:
    return Request("GET", f"/api/stream?customerId={t.customer}", stream=True)


async def _stream_token(w: World, t: Tenant) -> Request:
    return Request("POST", f"/api/stream/token?customerId={t.customer}")


async def _if_match(w: World, t: Tenant, url: str) -> dict[str, str]:
    """The current ETag of ``url`` as its owner reads it, as an If-Match header."""
    async with (
        aiohttp.ClientSession(base_url=w.hub.http_url) as session,
        session.get(url, headers=bearer(t.key)) as resp,
    ):
        assert resp.status == 200, await resp.text()
        return {"If-Match": resp.headers["ETag"]}


def _catalog_url(entry: str) -> str:
    return f"/api/config/catalog/api_calls/{entry}"


async def _config_catalog(w: World, t: Tenant) -> Request:
    return Request(
        "GET", "/api/config/catalog", listing=True, shows=lambda x: x.catalog_id, whole_tenant=True
    )


async def _config_catalog_type(w: World, t: Tenant) -> Request:
    return Request(
        "GET",
        "/api/config/catalog/api_calls",
        listing=True,
        shows=lambda x: x.catalog_id,
        whole_tenant=True,
    )


async def _config_catalog_create(w: World, t: Tenant) -> Request:
    body = {"resourceType": "api_calls", "resourceName": f"c-{uuid.uuid4()}", "unit": "request"}
    return Request("POST", "/api/config/catalog", body, listing=True, whole_tenant=True)


async def _config_catalog_entry(w: World, t: Tenant) -> Request:
    return Request("GET", _catalog_url(t.catalog_id), whole_tenant=True)


async def _config_catalog_patch(w: World, t: Tenant) -> Request:
    url = _catalog_url(t.catalog_id)
    headers = await _if_match(w, t, url)
    return Request("PATCH", url, {"costPerUnit": "0.002"}, headers=headers, whole_tenant=True)


async def _config_catalog_delete(w: World, t: Tenant) -> Request:
    url = _catalog_url(await _catalog_entry(w.db, t.id))
    return Request("DELETE", url, headers=await _if_match(w, t, url), whole_tenant=True)


async def _config_customers(w: World, t: Tenant) -> Request:
    return Request(
        "GET", "/api/config/customers", listing=True, shows=lambda x: x.customer, whole_tenant=True
    )


async def _config_customer_create(w: World, t: Tenant) -> Request:
    body = {"id": f"c-{uuid.uuid4()}"}
    return Request("POST", "/api/config/customers", body, listing=True, whole_tenant=True)


async def _config_customer(w: World, t: Tenant) -> Request:
    return Request("GET", f"/api/config/customers/{t.customer}")


async def _config_customer_patch(w: World, t: Tenant) -> Request:
    url = f"/api/config/customers/{t.customer}"
    return Request("PATCH", url, {"name": "renamed"}, headers=await _if_match(w, t, url))


async def _config_customer_delete(w: World, t: Tenant) -> Request:
    fresh = f"gone-{uuid.uuid4()}"
    await w.db.execute("INSERT INTO customers (id, tenant_id) VALUES ($1, $2::uuid)", fresh, t.id)
    url = f"/api/config/customers/{fresh}"
    return Request("DELETE", url, headers=await _if_match(w, t, url))


async def _config_resources(w: World, t: Tenant) -> Request:
    return Request("GET", f"/api/config/customers/{t.customer}/resources")


async def _config_resource_create(w: World, t: Tenant) -> Request:
    body = {"resourceType": "api_calls", "name": f"r-{uuid.uuid4()}", "catalogId": t.catalog_id}
    return Request("POST", f"/api/config/customers/{t.customer}/resources", body)


async def _config_resource(w: World, t: Tenant) -> Request:
    return Request("GET", f"/api/config/customers/{t.customer}/resources/{t.resource}")


async def _config_resource_patch(w: World, t: Tenant) -> Request:
    url = f"/api/config/customers/{t.customer}/resources/{t.resource}"
    return Request("PATCH", url, {"limit": 2000}, headers=await _if_match(w, t, url))


async def _config_resource_delete(w: World, t: Tenant) -> Request:
    key = await provision_resource(w.db, t.customer, "api_calls", 10, name=f"r-{uuid.uuid4()}")
    url = f"/api/config/customers/{t.customer}/resources/{key}"
    return Request("DELETE", url, headers=await _if_match(w, t, url))


async def _config_plans(w: World, t: Tenant) -> Request:
    return Request(
        "GET", "/api/config/cost-models", listing=True, shows=lambda x: x.plan_id, whole_tenant=True
    )


async def _config_plan_create(w: World, t: Tenant) -> Request:
    body = {"modelName": f"p-{uuid.uuid4()}", "baseCost": "10"}
    return Request("POST", "/api/config/cost-models", body, listing=True, whole_tenant=True)


async def _config_plan(w: World, t: Tenant) -> Request:
    return Request("GET", f"/api/config/cost-models/{t.plan_id}", whole_tenant=True)


async def _config_plan_patch(w: World, t: Tenant) -> Request:
    url = f"/api/config/cost-models/{t.plan_id}"
    headers = await _if_match(w, t, url)
    return Request("PATCH", url, {"baseCost": "12"}, headers=headers, whole_tenant=True)


async def _config_plan_delete(w: World, t: Tenant) -> Request:
    url = f"/api/config/cost-models/{await _plan(w.db, t.id)}"
    return Request("DELETE", url, headers=await _if_match(w, t, url), whole_tenant=True)


REQUESTS: dict[tuple[str, str], Builder] = {
    ("POST", "/api/metrics/ingest"): _ingest,
    ("GET", "/api/metrics/customer/{customerId}/current"): _current,
    ("GET", "/api/monitoring/customers/{customerId}/resources"): _resources,
    ("GET", "/api/alerts"): _alerts,
    ("GET", "/api/alerts/{id}"): _alert,
    ("GET", "/api/alerts/{id}/history"): _history,
    ("POST", "/api/alerts/{id}/acknowledge"): _ack,
    ("POST", "/api/alerts/{id}/resolve"): _resolve,
    ("GET", "/api/customers/{customerId}/notification-preferences"): _customer_prefs,
    ("PUT", "/api/customers/{customerId}/notification-preferences"): _put_customer_prefs,
    ("GET", "/api/tenants/{tenantId}/notification-preferences"): _tenant_prefs,
    ("PUT", "/api/tenants/{tenantId}/notification-preferences"): _put_tenant_prefs,
    ("GET", "/api/notifications"): _notifications,
    ("GET", "/api/keys"): _list_keys,
    ("POST", "/api/keys"): _create_key,
    ("DELETE", "/api/keys/{id}"): _revoke_key,
    ("GET", "/api/costs/customers/{customerId}"): _costs,
    ("GET", "/api/costs/customers/{customerId}/resources/{resourceKey}"): _resource_costs,
    ("GET", "/api/forecasts/customers/{customerId}"): _forecasts,
    ("GET", "/api/recommendations"): _recommendations,
    ("POST", "/api/recommendations/{id}/apply"): _apply,
    ("POST", "/api/recommendations/{id}/dismiss"): _dismiss,
    ("GET", "/ui/session"): _session,
    ("GET", "/api/stream"): _stream,
    ("POST", "/api/stream/token"): _stream_token,
    ("GET", "/api/config/catalog"): _config_catalog,
    ("POST", "/api/config/catalog"): _config_catalog_create,
    ("GET", "/api/config/catalog/{resourceType}"): _config_catalog_type,
    ("GET", "/api/config/catalog/{resourceType}/{catalogId}"): _config_catalog_entry,
    ("PATCH", "/api/config/catalog/{resourceType}/{catalogId}"): _config_catalog_patch,
    ("DELETE", "/api/config/catalog/{resourceType}/{catalogId}"): _config_catalog_delete,
    ("GET", "/api/config/customers"): _config_customers,
    ("POST", "/api/config/customers"): _config_customer_create,
    ("GET", "/api/config/customers/{customerId}"): _config_customer,
    ("PATCH", "/api/config/customers/{customerId}"): _config_customer_patch,
    ("DELETE", "/api/config/customers/{customerId}"): _config_customer_delete,
    ("GET", "/api/config/customers/{customerId}/resources"): _config_resources,
    ("POST", "/api/config/customers/{customerId}/resources"): _config_resource_create,
    ("GET", "/api/config/customers/{customerId}/resources/{resourceKey}"): _config_resource,
    ("PATCH", "/api/config/customers/{customerId}/resources/{resourceKey}"): _config_resource_patch,
    ("DELETE", "/api/config/customers/{customerId}/resources/{resourceKey}"): (
        _config_resource_delete
    ),
    ("GET", "/api/config/cost-models"): _config_plans,
    ("POST", "/api/config/cost-models"): _config_plan_create,
    ("GET", "/api/config/cost-models/{id}"): _config_plan,
    ("PATCH", "/api/config/cost-models/{id}"): _config_plan_patch,
    ("DELETE", "/api/config/cost-models/{id}"): _config_plan_delete,
    ("GET", "/api/usage/customers/{customerId}/resources/{resourceKey}/history"): _usage_history,
}


def _routes(hub: RunningHub) -> list[tuple[str, str]]:
    """(method, path) of every route of the hub's app (as create_app builds it) but the public."""
    app = create_app(ApiContext(config=hub.config, db=hub.pool, metrics=hub.metrics))
    out = set()
    for route in app.router.routes():
        path = route.resource.canonical if route.resource is not None else None
        if route.method == "HEAD" or path is None or path in PUBLIC:
            continue
        out.add((route.method, path))
    return sorted(out)


@pytest.fixture
async def client(world: World) -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(base_url=world.hub.http_url) as session:
        yield session


async def _call(
    client: aiohttp.ClientSession, req: Request, headers: dict[str, str]
) -> tuple[int, dict[str, str], str]:
    sent = {**req.headers, **headers}
    async with client.request(req.method, req.url, json=req.body, headers=sent) as resp:
        if req.stream and resp.status == 200:
            assert resp.content_type == "text/event-stream"
            return resp.status, dict(resp.headers), ""
        return resp.status, dict(resp.headers), await resp.text()


async def test_every_route_has_a_request_in_the_matrix(world: World) -> None:
    routes = _routes(world.hub)
    assert len(routes) >= 16
    assert set(routes) == set(REQUESTS), "a route without a case in REQUESTS (or a stale case)"
    for method, path in routes:
        assert required_scope(method, path) in SCOPES


async def test_the_own_key_reaches_every_route(world: World, client: aiohttp.ClientSession) -> None:
    """The control: each request of the matrix succeeds with its owner's key."""
    for route in _routes(world.hub):
        req = await REQUESTS[route](world, world.mine)
        status, _, text = await _call(client, req, bearer(world.mine.key))
        assert 200 <= status < 300, (route, status, text)


def _bad_checksum(key: str) -> str:
    last = key[-1]
    return key[:-1] + ("a" if last != "a" else "b")


async def test_no_key_or_a_bad_one_is_401_on_every_route(
    world: World, client: aiohttp.ClientSession
) -> None:
    db = world.db
    revoked = await make_key(db, name="revoked")
    await revoke_key(db, await _key_id(db, revoked))
    past = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)
    expired = await make_key(db, name="expired", expires_at=past)
    good = world.mine.key
    cases: dict[str, dict[str, str]] = {
        "no key": {},
        "not bearer": {"Authorization": f"Basic {good}"},
        "malformed": bearer("rsm_short"),
        "wrong prefix": bearer("ghp_" + good[4:]),
        "bad checksum": bearer(_bad_checksum(good)),
        "bad checksum in X-API-Key": {"X-API-Key": _bad_checksum(good)},
        "unknown": bearer(new_key()),
        "revoked": bearer(revoked),
        "expired": bearer(expired),
    }
    for route in _routes(world.hub):
        req = await REQUESTS[route](world, world.mine)
        for case, headers in cases.items():
            status, got, text = await _call(client, req, headers)
            assert status == 401, (route, case, status, text)
            assert got.get("WWW-Authenticate", "").startswith("Bearer"), (route, case)
    # the same requests pass with X-API-Key instead of Authorization
    req = await _current(world, world.mine)
    assert (await _call(client, req, {"X-API-Key": good}))[0] == 200


async def test_a_missing_scope_is_403_on_every_route(
    world: World, client: aiohttp.ClientSession
) -> None:
    for route in _routes(world.hub):
        scope = required_scope(*route)
        lacking = await make_key(world.db, [s for s in SCOPES if s != scope], name="lacking")
        req = await REQUESTS[route](world, world.mine)
        status, _, text = await _call(client, req, bearer(lacking))
        assert status == 403, (route, status, text)
        assert scope in text


async def test_another_tenants_objects_are_404_never_403(
    world: World, client: aiohttp.ClientSession
) -> None:
    """The other tenant's key has every scope; the default tenant's objects do not exist for it."""
    for route in _routes(world.hub):
        req = await REQUESTS[route](world, world.mine)
        status, _, text = await _call(client, req, bearer(world.other.key))
        if req.listing:
            assert 200 <= status < 300, (route, status, text)
            shows = req.shows or (lambda t: t.key_id)
            assert shows(world.mine) not in text, route
            if req.method == "GET":
                assert shows(world.other) in text, route
        else:
            assert status == 404, (route, status, text)
            assert "not found" in text, (route, text)


async def test_a_customer_key_sees_only_its_customers(
    world: World, client: aiohttp.ClientSession
) -> None:
    """A key of the default tenant for its neighbour: the tenant's other customer is 404."""
    portal = await make_key(
        world.db, ("read", "write", "ingest"), name="portal", customer_ids=[world.neighbour]
    )
    for route in _routes(world.hub):
        req = await REQUESTS[route](world, world.mine)
        status, _, text = await _call(client, req, bearer(portal))
        admin = required_scope(*route) == "admin"
        expected = 403 if admin or req.whole_tenant else 200 if req.listing else 404
        assert status == expected, (route, status, text)
        if req.listing and expected == 200:
            assert world.mine.customer not in text, (route, text)


async def test_listings_hold_only_the_callers_tenant(
    world: World, client: aiohttp.ClientSession
) -> None:
    mine = await world.mine.alert(world.db)
    theirs = await world.other.alert(world.db)
    async with client.get("/api/alerts", headers=bearer(world.other.key)) as resp:
        ids = [a["id"] for a in (await resp.json())["items"]]
    assert theirs in ids
    assert mine not in ids
    portal = await make_key(world.db, ("read",), name="portal", customer_ids=[world.neighbour])
    async with client.get("/api/alerts", headers=bearer(portal)) as resp:
        assert await resp.json() == {"items": [], "next": None}


async def test_ingest_takes_the_keys_tenant_and_acts_record_the_key_name(
    world: World, client: aiohttp.ClientSession, unique: str
) -> None:
    fresh = f"new-{unique}"
    body = [{**_event(fresh), "tenantId": DEFAULT_TENANT}]  # the body's tenant is ignored
    async with client.post("/api/metrics/ingest", json=body, headers=bearer(world.other.key)) as r:
        assert r.status == 200, await r.text()
    owner = await world.db.fetchval("SELECT tenant_id::text FROM customers WHERE id = $1", fresh)
    assert owner == world.other.id
    # the default tenant cannot now write to (or read) the other tenant's new customer
    async with client.post(
        "/api/metrics/ingest", json=[_event(fresh)], headers=bearer(world.mine.key)
    ) as r:
        assert r.status == 404
        assert named(await r.json()) == "$.customerId"
    alert = await world.mine.alert(world.db)
    async with client.post(
        f"/api/alerts/{alert}/resolve", json={}, headers=bearer(world.mine.key)
    ) as r:
        assert (await r.json())["resolvedBy"] == f"key-of-{world.mine.customer}"


async def test_keys_through_the_admin_api(world: World, client: aiohttp.ClientSession) -> None:
    admin = bearer(world.mine.key)
    body = {"name": "grafana", "scopes": ["read"], "expiresIn": "30d"}
    async with client.post("/api/keys", json=body, headers=admin) as resp:
        assert resp.status == 201
        created = await resp.json()
    key, record = created["key"], created["apiKey"]
    assert key.startswith("rsm_")
    assert record["scopes"] == ["read"]
    assert record["tenantId"] == DEFAULT_TENANT
    assert record["expiresAt"] is not None
    async with client.get("/api/alerts", headers=bearer(key)) as resp:
        assert resp.status == 200
    async with client.get("/api/keys", headers=admin) as resp:
        listed = (await resp.json())["items"]
    assert record["id"] in [k["id"] for k in listed]
    assert key not in str(listed)  # shown once: never listed
    (used,) = [k for k in listed if k["id"] == record["id"]]
    assert used["lastUsedAt"] is not None
    # a key cannot grant what it lacks; an admin key cannot be a customer's
    async with client.post(
        "/api/keys", json={"name": "x", "scopes": ["admin"]}, headers=bearer(key)
    ) as resp:
        assert resp.status == 403  # the read key has no admin scope at all
    reader_admin = await make_key(world.db, ("admin", "read"), name="ra")
    async with client.post(
        "/api/keys", json={"name": "x", "scopes": ["ingest"]}, headers=bearer(reader_admin)
    ) as resp:
        assert resp.status == 403
        assert "ingest" in (await resp.json())["detail"]
    bad = {"name": "x", "scopes": ["admin"], "customerIds": [world.mine.customer]}
    async with client.post("/api/keys", json=bad, headers=admin) as resp:
        assert resp.status == 400
    async with client.post(
        "/api/keys", json={"name": "x", "scopes": ["read"], "expiresIn": "soon"}, headers=admin
    ) as resp:
        assert resp.status == 400
        assert "expected a number and s, m, h or d" in (await resp.json())["detail"]
    async with client.delete(f"/api/keys/{record['id']}", headers=admin) as resp:
        assert resp.status == 200
        assert (await resp.json())["revokedAt"] is not None
    async with client.get("/api/alerts", headers=bearer(key)) as resp:
        assert resp.status == 401
        assert "revoked" in (await resp.json())["detail"]
    async with client.delete("/api/keys/not-a-uuid", headers=admin) as resp:
        assert resp.status == 404
    async with client.delete(f"/api/keys/{world.mine.key_id}", headers=admin) as resp:
        assert resp.status == 409
        assert "cannot revoke itself" in (await resp.json())["detail"]


async def test_refusals_are_counted(world: World, client: aiohttp.ClientSession) -> None:
    registry = world.hub.metrics.registry
    before = registry.get_sample_value("resmon_hub_api_auth_refused_total", {"reason": "missing"})
    async with client.get("/api/alerts") as resp:
        assert resp.status == 401
    after = registry.get_sample_value("resmon_hub_api_auth_refused_total", {"reason": "missing"})
    assert (after or 0) == (before or 0) + 1


async def test_public_routes_need_no_key(world: World, client: aiohttp.ClientSession) -> None:
    for path in ("/healthz", "/metrics"):
        async with client.get(path) as resp:
            assert resp.status == 200, path
    async with client.get("/api/no-such-route") as resp:
        assert resp.status == 401  # an unknown path tells nothing without a key
    async with client.get("/api/no-such-route", headers=bearer(world.mine.key)) as resp:
        assert resp.status == 404


async def test_keys_and_the_server_secret_never_appear_in_the_log(
    world: World, client: aiohttp.ClientSession
) -> None:
    """Canary: every key the hub saw (good, mistyped, unknown, revoked, new) stays out of logs."""
    admin = bearer(world.mine.key)
    revoked = await make_key(world.db, name="canary-revoked")
    await revoke_key(world.db, await _key_id(world.db, revoked))
    with capture_logs() as logs:
        body = {"name": "canary", "scopes": ["read"]}
        async with client.post("/api/keys", json=body, headers=admin) as r:
            created = (await r.json())["key"]
        seen = [world.mine.key, world.other.key, created, revoked, new_key()]
        seen.append(_bad_checksum(created))
        for key in seen:
            for headers in (bearer(key), {"X-API-Key": key}):
                for req in (await _alerts(world, world.mine), await _ack(world, world.mine)):
                    async with client.request(req.method, req.url, json=req.body, headers=headers):
                        pass
        async with client.get("/api/alerts", headers={"Authorization": "Bearer rsm_short"}) as r:
            assert r.status == 401
    logged = repr(logs)
    events = {e["event"] for e in logs}
    # the refusals and the creation were logged, just without the keys
    assert {"api_key_refused", "api_key_created"} <= events
    for key in seen:
        assert key not in logged
        assert key[len("rsm_") : 20] not in logged
    assert TEST_SECRET not in logged


async def _login(client: aiohttp.ClientSession, key: str) -> tuple[dict[str, str], str]:
    """The Cookie header of a dashboard session made from ``key``, and its CSRF token."""
    async with client.post("/ui/login", json={"key": key}) as resp:
        assert resp.status == 200, await resp.text()
        cookie = resp.cookies["resmon_session"].value
        token = (await resp.json())["csrfToken"]
    return {"Cookie": f"resmon_session={cookie}"}, token


_UNSAFE = frozenset({"POST", "PUT", "PATCH", "DELETE"})


async def test_the_session_cookie_stands_for_its_key_on_every_route(
    world: World, client: aiohttp.ClientSession
) -> None:
    """Same rules as the key: its own objects 2xx, another tenant's 404; changes need CSRF."""
    mine, token = await _login(client, world.mine.key)
    theirs, their_token = await _login(client, world.other.key)
    forged = {
        "Cookie": mine["Cookie"][:-3] + ("AAA" if not mine["Cookie"].endswith("AAA") else "BBB")
    }
    for route in _routes(world.hub):
        req = await REQUESTS[route](world, world.mine)
        status, _, text = await _call(client, req, {**mine, "X-CSRF-Token": token})
        assert 200 <= status < 300, (route, status, text)
        req = await REQUESTS[route](world, world.mine)
        status, _, text = await _call(client, req, {**theirs, "X-CSRF-Token": their_token})
        assert (200 <= status < 300) if req.listing else status == 404, (route, status, text)
        req = await REQUESTS[route](world, world.mine)
        status, _, text = await _call(client, req, {**forged, "X-CSRF-Token": token})
        assert status == 401, (route, status, text)
        assert "signature" in text
        if req.method in _UNSAFE:
            for headers in (mine, {**mine, "X-CSRF-Token": their_token}):
                req = await REQUESTS[route](world, world.mine)
                status, _, text = await _call(client, req, headers)
                assert status == 403, (route, status, text)
                assert "X-CSRF-Token" in text


async def test_a_customer_keys_session_sees_only_its_customers(
    world: World, client: aiohttp.ClientSession
) -> None:
    portal = await make_key(
        world.db, ("read", "write", "ingest"), name="portal", customer_ids=[world.neighbour]
    )
    cookie, token = await _login(client, portal)
    for route in _routes(world.hub):
        req = await REQUESTS[route](world, world.mine)
        status, _, text = await _call(client, req, {**cookie, "X-CSRF-Token": token})
        admin = required_scope(*route) == "admin"
        expected = 403 if admin or req.whole_tenant else 200 if req.listing else 404
        assert status == expected, (route, status, text)
    async with client.get("/ui/session", headers=cookie) as resp:
        assert (await resp.json())["customers"] == [world.neighbour]
