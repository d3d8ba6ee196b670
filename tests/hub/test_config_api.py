"""Configuration over REST against the real PostgreSQL: CRUD, ETag / If-Match, tenants,
validation, and a limit change reaching the running hub's actor."""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Any
from urllib.parse import quote

import aiohttp
import anyio
import asyncpg  # type: ignore[import-untyped]
import msgspec
import pytest
from _hub_testing import minute_reading, send_reading, until, wait_for
from _keys import bearer, make_key
from _problem import named
from aiokafka import AIOKafkaProducer

from hub import RunningHub, provision_resource, run_hub

pytestmark = [pytest.mark.integration, pytest.mark.anyio]

GB = 10**9


async def call(
    http: aiohttp.ClientSession,
    method: str,
    url: str,
    body: Any = None,
    *,
    headers: dict[str, str] | None = None,
) -> tuple[int, Any, aiohttp.typedefs.LooseHeaders]:
    async with http.request(method, url, json=body, headers=headers) as resp:
        text = await resp.text()
        data = await resp.json(content_type=None) if text else None
        return resp.status, data, resp.headers.copy()


def where(err: dict[str, Any]) -> str:
    """What a problem names: the paths or parameters of its ``errors``."""
    return named(err)


def said(err: dict[str, Any]) -> str:
    """A problem's message."""
    return str(err["detail"])


async def new_customer(http: aiohttp.ClientSession, customer: str) -> str:
    """Create ``customer``; the URL of its resources."""
    status, made, _ = await call(http, "POST", "/api/config/customers", {"id": customer})
    assert status == 201, made
    return f"/api/config/customers/{customer}/resources"


async def etag_of(http: aiohttp.ClientSession, url: str) -> str:
    status, data, headers = await call(http, "GET", url)
    assert status == 200, data
    return str(headers["ETag"])


async def test_catalog_round_trip_with_etags(http: aiohttp.ClientSession, unique: str) -> None:
    body = {
        "resourceType": "bandwidth",
        "resourceName": f"Fiber {unique}",
        "unit": "GB",
        "costPerUnit": "0.07",
    }
    status, created, headers = await call(http, "POST", "/api/config/catalog", body)
    assert status == 201, created
    url = str(headers["Location"])
    assert url == f"/api/config/catalog/bandwidth/{created['id']}"
    assert created["costPerUnit"] == "0.07"
    assert created["baseUnit"] == "byte"
    assert created["isBillable"] is True
    etag = str(headers["ETag"])
    assert etag == await etag_of(http, url)
    # listed with the type's entries, not with another type's
    status, page, _ = await call(http, "GET", "/api/config/catalog/bandwidth")
    assert created["id"] in [e["id"] for e in page["items"]]
    assert {e["resourceType"] for e in page["items"]} == {"bandwidth"}
    status, page, _ = await call(http, "GET", "/api/config/catalog/storage")
    assert created["id"] not in [e["id"] for e in page["items"]]
    # the same name twice in a tenant
    status, err, _ = await call(http, "POST", "/api/config/catalog", body)
    assert (status, where(err)) == (409, "$.resourceName")
    # If-Match: required, must be current
    change = {"costPerUnit": "0.06", "unit": "TB"}
    status, err, _ = await call(http, "PATCH", url, change)
    assert status == 428
    assert "If-Match" in said(err)
    status, err, _ = await call(http, "PATCH", url, change, headers={"If-Match": '"stale"'})
    assert status == 412
    assert "If-Match" in said(err)
    status, changed, headers = await call(http, "PATCH", url, change, headers={"If-Match": etag})
    assert status == 200, changed
    assert (changed["costPerUnit"], changed["unit"]) == ("0.06", "TB")
    assert headers["ETag"] != etag
    # the old ETag no longer matches: a second writer that read before loses
    status, err, _ = await call(
        http, "PATCH", url, {"isBillable": False}, headers={"If-Match": etag}
    )
    assert status == 412
    status, err, _ = await call(http, "DELETE", url)
    assert status == 428
    # a plan for the entry keeps it
    plan = {"modelName": f"on {unique}", "resourceCatalogId": created["id"]}
    status, made, plan_headers = await call(http, "POST", "/api/config/cost-models", plan)
    assert status == 201, made
    status, err, _ = await call(http, "DELETE", url, headers={"If-Match": str(headers["ETag"])})
    assert status == 409
    assert "cost_models" in said(err)
    plan_url = str(plan_headers["Location"])
    status, _, _ = await call(http, "DELETE", plan_url, headers={"If-Match": "*"})
    assert status == 204
    status, _, _ = await call(http, "DELETE", url, headers={"If-Match": str(headers["ETag"])})
    assert status == 204
    status, err, _ = await call(http, "GET", url)
    assert status == 404


async def test_catalog_validation_names_the_field(http: aiohttp.ClientSession) -> None:
    good = {"resourceType": "storage", "resourceName": "Disk", "unit": "GB"}
    cases: list[tuple[dict[str, Any], int, str, str]] = [
        ({**good, "unit": "hour"}, 422, "$.unit", "measures milliseconds"),
        ({**good, "unit": "parsec"}, 422, "$.unit", "unknown unit"),
        ({**good, "resourceType": "teleport"}, 422, "$.resourceType", "unknown resource type"),
        ({**good, "costPerUnit": "-1"}, 422, "$.costPerUnit", "from 0"),
        ({**good, "costPerUnit": "0.00001"}, 422, "$.costPerUnit", "4 decimal places"),
        ({**good, "costPerUnit": "lots"}, 400, "$.costPerUnit", "decimal"),
        ({**good, "resourceName": ""}, 400, "$.resourceName", "length"),
        ({**good, "tenantId": str(uuid.uuid4())}, 400, "$.tenantId", "unknown field"),
        ({"resourceType": "storage", "unit": "GB"}, 400, "$", "resourceName"),
    ]
    for body, status, at, text in cases:
        got, err, _ = await call(http, "POST", "/api/config/catalog", body)
        assert (got, where(err)) == (status, at), (body, err)
        assert text in said(err), (body, err)
    async with http.post(
        "/api/config/catalog", data=b"{not json", headers={"Content-Type": "application/json"}
    ) as resp:
        assert resp.status == 400
        assert where(await resp.json(content_type=None)) == "$"


async def test_customers_and_resources_round_trip(
    http: aiohttp.ClientSession, db: asyncpg.Connection, unique: str
) -> None:
    cust = f"cfg-{unique}"
    status, created, headers = await call(
        http, "POST", "/api/config/customers", {"id": cust, "name": "ACME"}
    )
    assert status == 201, created
    assert created["name"] == "ACME"
    tenant = await db.fetchval("SELECT tenant_id::text FROM customers WHERE id = $1", cust)
    assert tenant == "00000000-0000-0000-0000-000000000000"  # the key's tenant
    status, err, _ = await call(http, "POST", "/api/config/customers", {"id": cust})
    assert (status, where(err)) == (409, "$.id")
    status, err, _ = await call(http, "POST", "/api/config/customers", {"id": "a/b"})
    assert (status, where(err)) == (400, "$.id")
    curl = f"/api/config/customers/{cust}"
    status, renamed, _ = await call(
        http, "PATCH", curl, {"name": "ACME Ltd"}, headers={"If-Match": str(headers["ETag"])}
    )
    assert (status, renamed["name"]) == (200, "ACME Ltd")

    resources = f"{curl}/resources"
    body = {"resourceType": "bandwidth", "name": "wan1", "limitInUnit": "10"}
    status, res, headers = await call(http, "POST", resources, body)
    assert status == 201, res
    key = f"{cust}/bandwidth/wan1"
    assert res["resourceKey"] == key
    assert (res["limit"], res["limitInUnit"], res["catalogUnit"]) == (10 * GB, "10", "GB")
    assert (res["warningThreshold"], res["criticalThreshold"]) == ("80", "95")
    assert (res["status"], res["kind"], res["autoProvisioned"]) == ("ACTIVE", "delta", False)
    rurl = f"{resources}/{key}"
    assert str(headers["Location"]) == rurl
    etag = await etag_of(http, rurl)
    assert etag == headers["ETag"]
    # the key's slashes may come percent-encoded, as a browser's encodeURIComponent sends them
    assert await etag_of(http, f"{resources}/{quote(key, safe='')}") == etag
    assert await etag_of(http, f"{resources}/bandwidth/wan1") == etag  # after the customer id
    status, page, _ = await call(http, "GET", resources)
    assert [r["resourceKey"] for r in page["items"]] == [key]
    assert page["next"] is None

    change = {
        "limit": 5 * GB,
        "warningThreshold": "70.5",
        "criticalThreshold": 90,
        "status": "SUSPENDED",
    }
    status, res, headers = await call(http, "PATCH", rurl, change, headers={"If-Match": etag})
    assert status == 200, res
    assert (res["limit"], res["limitInUnit"]) == (5 * GB, "5")
    assert (res["warningThreshold"], res["criticalThreshold"], res["status"]) == (
        "70.5",
        "90",
        "SUSPENDED",
    )
    stored = await db.fetchrow(
        "SELECT limit_value, warning_threshold, status FROM customer_resources "
        "WHERE resource_key = $1",
        key,
    )
    assert (stored["limit_value"], str(stored["warning_threshold"]), stored["status"]) == (
        5 * GB,
        "70.50",
        "SUSPENDED",
    )
    etag = str(headers["ETag"])
    status, res, headers = await call(
        http, "PATCH", rurl, {"limit": None}, headers={"If-Match": etag}
    )
    assert (status, res["limit"], res["limitInUnit"]) == (200, None, None)
    etag = str(headers["ETag"])

    # a customer with resources cannot go
    status, err, _ = await call(http, "DELETE", curl, headers={"If-Match": "*"})
    assert status == 409
    assert "customer_resources" in said(err)
    # a resource with usage history cannot go either
    await db.execute(
        "INSERT INTO usage_aggregates (customer_resource_id, period_type, period_start, "
        "period_end) SELECT id, 'hour', now(), now() FROM customer_resources "
        "WHERE resource_key = $1",
        key,
    )
    status, err, _ = await call(http, "DELETE", rurl, headers={"If-Match": etag})
    assert status == 409
    assert "usage_aggregates" in said(err)
    await db.execute("DELETE FROM usage_aggregates")
    status, _, _ = await call(http, "DELETE", rurl, headers={"If-Match": '"old", ' + etag})
    assert status == 204
    status, _, _ = await call(http, "GET", rurl)
    assert status == 404
    status, _, _ = await call(http, "DELETE", curl, headers={"If-Match": await etag_of(http, curl)})
    assert status == 204
    status, _, _ = await call(http, "GET", curl)
    assert status == 404


async def test_of_two_writers_with_one_etag_one_wins(
    http: aiohttp.ClientSession, unique: str
) -> None:
    """Changes made from one version at once: the row lock lets one through, 412 the others."""
    url = await new_customer(http, f"race-{unique}")
    status, res, headers = await call(http, "POST", url, {"resourceType": "storage"})
    assert status == 201, res
    url = f"{url}/{res['resourceKey']}"
    tag = {"If-Match": str(headers["ETag"])}
    statuses: list[int] = []

    async def write(limit: int) -> None:
        statuses.append((await call(http, "PATCH", url, {"limit": limit}, headers=tag))[0])

    async with anyio.create_task_group() as tg:
        for limit in (1000, 2000, 3000):
            tg.start_soon(write, limit)
    assert sorted(statuses) == [200, 412, 412]
    status, res, _ = await call(http, "GET", url)
    assert res["limit"] in (1000, 2000, 3000)
    assert res["kind"] == "level"


async def test_resource_validation_names_the_field(
    http: aiohttp.ClientSession, unique: str
) -> None:
    url = await new_customer(http, f"val-{unique}")
    status, page, _ = await call(http, "GET", "/api/config/catalog/storage")
    storage_entry = page["items"][0]["id"]
    cases: list[tuple[dict[str, Any], int, str, str]] = [
        ({"limit": 0}, 400, "$.limit", ">= 1"),
        ({"limit": "100"}, 400, "$.limit", "Expected `int"),
        ({"limit": 1.5}, 400, "$.limit", "Expected `int"),
        ({"limitInUnit": "0.0000000001"}, 422, "$.limitInUnit", "whole number"),
        ({"limitInUnit": "0"}, 422, "$.limitInUnit", "need 1"),
        ({"limit": 10, "limitInUnit": "1"}, 422, "$.limitInUnit", "not both"),
        ({"warningThreshold": 96}, 422, "$.criticalThreshold", "at least warningThreshold"),
        ({"warningThreshold": 0}, 422, "$.warningThreshold", "above 0"),
        ({"criticalThreshold": "1000"}, 422, "$.criticalThreshold", "below 1000"),
        ({"warningThreshold": "50.123"}, 422, "$.warningThreshold", "2 decimal places"),
        ({"status": "GONE"}, 400, "$.status", "ACTIVE"),
        ({"resourceType": "teleport"}, 422, "$.resourceType", "unknown resource type"),
        ({"catalogId": storage_entry}, 422, "$.catalogId", "is of storage"),
        ({"catalogId": str(uuid.uuid4())}, 422, "$.catalogId", "no catalog entry"),
        ({"costModelId": str(uuid.uuid4())}, 422, "$.costModelId", "no cost model"),
        ({"tenantId": str(uuid.uuid4())}, 400, "$.tenantId", "unknown field"),
    ]
    for change, status, at, text in cases:
        body = {"resourceType": "bandwidth", **change}
        got, err, _ = await call(http, "POST", url, body)
        assert (got, where(err)) == (status, at), (change, err)
        assert text in said(err), (change, err)
    # the same rules on a change, against the merged values
    status, res, headers = await call(http, "POST", url, {"resourceType": "bandwidth"})
    assert status == 201, res
    rurl = f"{url}/{res['resourceKey']}"
    tag = {"If-Match": str(headers["ETag"])}
    status, err, _ = await call(http, "PATCH", rurl, {"criticalThreshold": 50}, headers=tag)
    assert (status, where(err)) == (422, "$.criticalThreshold")
    status, err, _ = await call(http, "PATCH", rurl, {"resourceType": "cpu"}, headers=tag)
    assert (status, where(err)) == (400, "$.resourceType")
    status, err, _ = await call(http, "PATCH", rurl, None, headers=tag)
    assert (status, where(err)) == (400, "$")
    status, err, _ = await call(http, "POST", url, {"resourceType": "bandwidth"})
    assert status == 409  # the key exists


async def test_cost_models_round_trip_and_a_plan_brings_its_limit(
    http: aiohttp.ClientSession, unique: str
) -> None:
    status, page, _ = await call(http, "GET", "/api/config/catalog/bandwidth")
    entry = page["items"][0]["id"]
    plan = {
        "modelName": f"Fiber M {unique}",
        "baseCost": "30",
        "overageRate": "0.5",
        "resourceCatalogId": entry,
        "limit": 300 * GB,
    }
    status, created, headers = await call(http, "POST", "/api/config/cost-models", plan)
    assert status == 201, created
    assert (created["baseCost"], created["limit"], created["billingPeriod"]) == (
        "30",
        300 * GB,
        "monthly",
    )
    url = str(headers["Location"])
    assert url == f"/api/config/cost-models/{created['id']}"
    tiers = {
        "billingPeriod": "monthly",
        "usage": {"type": "tiered", "mode": "graduated", "tiers": [
            {"upTo": "100", "unitPrice": "0.1"}, {"unitPrice": "0.05"}]},
    }  # fmt: skip
    status, changed, headers = await call(
        http, "PATCH", url, {"pricing": tiers}, headers={"If-Match": str(headers["ETag"])}
    )
    assert status == 200, changed
    assert changed["pricing"]["usage"]["tiers"][1]["unitPrice"] == "0.05"
    bad = {"usage": {"type": "tiered", "mode": "graduated", "tiers": [
        {"upTo": "100", "unitPrice": "0.1"}, {"upTo": "50", "unitPrice": "0.05"}]}}  # fmt: skip
    status, err, _ = await call(http, "PATCH", url, {"pricing": bad}, headers={"If-Match": "*"})
    assert status == 400
    assert (where(err) or "").startswith("$.pricing"), err
    status, err, _ = await call(
        http, "PATCH", url, {"pricing": {"billingPeriod": "yearly"}}, headers={"If-Match": "*"}
    )
    assert (status, where(err)) == (422, "$.pricing.billingPeriod")
    status, err, _ = await call(
        http, "POST", "/api/config/cost-models", {**plan, "overageRate": "-2"}
    )
    assert (status, where(err)) == (422, "$.overageRate")
    # a resource put on the plan gets the plan's limit; the plan is then in use
    cust = f"plan-{unique}"
    await new_customer(http, cust)
    status, res, _ = await call(
        http,
        "POST",
        f"/api/config/customers/{cust}/resources",
        {"resourceType": "bandwidth", "costModelId": created["id"]},
    )
    assert status == 201, res
    assert (res["costModelId"], res["limit"]) == (created["id"], 300 * GB)
    rurl = f"/api/config/customers/{cust}/resources/{res['resourceKey']}"
    status, res, _ = await call(
        http, "PATCH", rurl, {"costModelId": None, "limit": GB}, headers={"If-Match": "*"}
    )
    assert (status, res["costModelId"], res["limit"]) == (200, None, GB)
    # back on the plan (its id in any spelling): its limit again; another entry of the type
    status, page, _ = await call(http, "GET", "/api/config/catalog/bandwidth")
    second = page["items"][1]["id"]
    change = {"costModelId": created["id"].upper(), "catalogId": second}
    status, res, _ = await call(http, "PATCH", rurl, change, headers={"If-Match": "*"})
    assert status == 200, res
    assert (res["costModelId"], res["limit"], res["catalogId"]) == (created["id"], 300 * GB, second)
    status, err, _ = await call(
        http,
        "POST",
        f"/api/config/customers/{cust}/resources",
        {"resourceType": "storage", "costModelId": created["id"]},
    )
    assert (status, where(err)) == (422, "$.costModelId")
    assert "plan for bandwidth" in said(err)
    status, err, _ = await call(http, "DELETE", url, headers={"If-Match": await etag_of(http, url)})
    assert status == 409
    assert "customer_resources" in said(err)
    status, page, _ = await call(http, "GET", "/api/config/cost-models")
    assert created["id"] in [p["id"] for p in page["items"]]


async def test_pages_follow_the_cursor(http: aiohttp.ClientSession, unique: str) -> None:
    made = sorted(f"page-{unique}-{i}" for i in range(5))
    for cust in made:
        await new_customer(http, cust)
    seen: list[str] = []
    url: str | None = "/api/config/customers?limit=2"
    while url is not None:
        status, page, _ = await call(http, "GET", url)
        assert status == 200, page
        assert len(page["items"]) <= 2
        seen += [c["id"] for c in page["items"]]
        url = f"/api/config/customers?limit=2&cursor={page['next']}" if page["next"] else None
    assert [c for c in seen if c in made] == made
    assert seen == sorted(seen)
    for bad, at in (("limit=0", "limit"), ("limit=501", "limit"), ("cursor=zzz", "cursor")):
        status, err, _ = await call(http, "GET", f"/api/config/customers?{bad}")
        assert (status, where(err)) == (400, at), bad


async def test_another_tenants_configuration_is_404(
    hub: RunningHub, http: aiohttp.ClientSession, db: asyncpg.Connection, unique: str
) -> None:
    cust = f"mine-{unique}"
    status, _, _ = await call(http, "POST", "/api/config/customers", {"id": cust})
    res_url = f"/api/config/customers/{cust}/resources"
    status, res, _ = await call(http, "POST", res_url, {"resourceType": "api_calls"})
    assert status == 201, res
    status, entry, _ = await call(
        http,
        "POST",
        "/api/config/catalog",
        {"resourceType": "cpu", "resourceName": f"Cores {unique}", "unit": "hour"},
    )
    status, plan, _ = await call(http, "POST", "/api/config/cost-models", {"modelName": "P"})
    other = str(uuid.uuid4())
    await db.execute("INSERT INTO tenants (id, name) VALUES ($1::uuid, $2)", other, f"t-{unique}")
    theirs = bearer(await make_key(db, tenant_id=other, name="other"))
    mine = [
        f"/api/config/customers/{cust}",
        f"{res_url}/{res['resourceKey']}",
        f"/api/config/catalog/cpu/{entry['id']}",
        f"/api/config/cost-models/{plan['id']}",
    ]
    for url in mine:
        for method in ("GET", "PATCH", "DELETE"):
            status, err, _ = await call(http, method, url, {}, headers={**theirs, "If-Match": "*"})
            assert status == 404, (method, url, err)
            assert "not found" in said(err)
    status, err, _ = await call(
        http, "POST", res_url, {"resourceType": "api_calls", "name": "x"}, headers=theirs
    )
    assert status == 404
    for url, mark in (
        ("/api/config/customers", cust),
        ("/api/config/catalog", entry["id"]),
        ("/api/config/cost-models", plan["id"]),
    ):
        status, page, _ = await call(http, "GET", url, headers=theirs)
        assert status == 200
        assert mark not in str(page)
        status, page, _ = await call(http, "GET", url)
        assert mark in str(page)
    # the other tenant's own objects are its own, whatever the body could say
    status, made, _ = await call(
        http, "POST", "/api/config/customers", {"id": f"theirs-{unique}"}, headers=theirs
    )
    assert status == 201, made
    owner = await db.fetchval(
        "SELECT tenant_id::text FROM customers WHERE id = $1", f"theirs-{unique}"
    )
    assert owner == other
    # another tenant's catalog entry is not one it can use
    status, err, _ = await call(
        http,
        "POST",
        f"/api/config/customers/theirs-{unique}/resources",
        {"resourceType": "cpu", "catalogId": entry["id"]},
        headers=theirs,
    )
    assert (status, where(err)) == (422, "$.catalogId")
    assert "no catalog entry" in said(err)
    # nor does the default tenant's catalog serve it: without its own entry, none
    status, err, _ = await call(
        http,
        "POST",
        f"/api/config/customers/theirs-{unique}/resources",
        {"resourceType": "api_calls"},
        headers=theirs,
    )
    assert (status, where(err)) == (422, "$.resourceType")
    assert "no catalog entry for 'api_calls'" in said(err)
    # a customer's key reaches its customer, not the tenant's catalog or customer list
    portal = bearer(await make_key(db, ("read", "write"), name="portal", customer_ids=[cust]))
    assert (await call(http, "GET", f"/api/config/customers/{cust}", headers=portal))[0] == 200
    for url in ("/api/config/customers", "/api/config/catalog", "/api/config/cost-models"):
        status, err, _ = await call(http, "GET", url, headers=portal)
        assert (status, where(err)) == (403, "Authorization"), url


async def test_a_deleted_customers_id_can_become_another_tenants(
    hub: RunningHub, http: aiohttp.ClientSession, db: asyncpg.Connection, unique: str
) -> None:
    """Every hub forgets a deleted customer's tenant: the old tenant cannot read the new one's."""
    cust = f"moved-{unique}"
    await new_customer(http, cust)
    current = f"/api/metrics/customer/{cust}/current"
    assert (await call(http, "GET", current))[0] == 200  # the hub now knows its tenant
    url = f"/api/config/customers/{cust}"
    status, _, _ = await call(http, "DELETE", url, headers={"If-Match": await etag_of(http, url)})
    assert status == 204
    other = str(uuid.uuid4())
    await db.execute("INSERT INTO tenants (id, name) VALUES ($1::uuid, $2)", other, f"t-{unique}")
    theirs = bearer(await make_key(db, tenant_id=other, name="other"))
    status, made, _ = await call(
        http, "POST", "/api/config/customers", {"id": cust}, headers=theirs
    )
    assert status == 201, made

    async def forgotten() -> bool:
        return (await call(http, "GET", current))[0] == 404

    with anyio.fail_after(30):
        await until(forgotten)
    assert (await call(http, "GET", current, headers=theirs))[0] == 200


async def test_a_limit_change_reaches_the_running_hub(
    hub: RunningHub,
    http: aiohttp.ClientSession,
    db: asyncpg.Connection,
    producer: AIOKafkaProducer,
    unique: str,
) -> None:
    """The limit and the thresholds changed over REST decide the next reading's alert.

    Two hubs on one database: the limit is changed through the REST API of the
    second, which consumes another topic and holds no actor of the resource; the
    hub holding it hears of the change all the same.
    """
    cust = f"live-{unique}"
    limit_key = await provision_resource(db, cust, "bandwidth", 1000 * GB, "wan1")
    threshold_key = await provision_resource(db, cust, "bandwidth", 1000 * GB, "wan2")
    topic = hub.config.usage_topic
    alerts = (
        "SELECT string_agg(a.alert_type, ',') FROM alerts a JOIN customer_resources cr "
        "ON cr.id = a.customer_resource_id WHERE cr.resource_key = $1"
    )
    usage = "SELECT current_usage FROM customer_resources WHERE resource_key = $1"
    idle = msgspec.structs.replace(
        hub.config, consumer_group=f"idle-{unique}", usage_topic=f"idle-{unique}"
    )
    with anyio.fail_after(60):
        async with anyio.create_task_group() as tg:
            other: RunningHub = await tg.start(run_hub, idle)
            for key in (limit_key, threshold_key):  # 50 %: no alert; the actors hold 1000 GB
                await send_reading(producer, topic, minute_reading(key, 0, 500 * GB))
                await wait_for(db, usage, 500 * GB, key)
                assert hub.registry.get(key) is not None
                assert await db.fetchval(alerts, key) is None
            base = f"/api/config/customers/{cust}/resources"
            url = f"{base}/{limit_key}"
            etag = await etag_of(http, url)
            async with (
                aiohttp.ClientSession(
                    base_url=other.http_url, headers=bearer(await make_key(db))
                ) as second,
                second.patch(  # 500 GB of 520: 96 %, critical
                    url, json={"limitInUnit": "520"}, headers={"If-Match": etag}
                ) as resp,
            ):
                assert resp.status == 200, await resp.text()
            url = f"{base}/{threshold_key}"
            status, res, _ = await call(  # 50 % is now above the warning threshold
                http,
                "PATCH",
                url,
                {"warningThreshold": 40, "criticalThreshold": 60},
                headers={"If-Match": await etag_of(http, url)},
            )
            assert status == 200, res
            for key in (limit_key, threshold_key):
                await until(lambda key=key: hub.registry.get(key) is None)  # notice heard
                await send_reading(producer, topic, minute_reading(key, 1, 1))
                await wait_for(db, usage, 500 * GB + 1, key)
            await wait_for(db, alerts, "THRESHOLD_CRITICAL", limit_key)
            await wait_for(db, alerts, "THRESHOLD_WARNING", threshold_key)
            assert other.registry.get(limit_key) is None  # the second hub never held it
            tg.cancel_scope.cancel()
    alert = await db.fetchrow(
        "SELECT a.threshold_value, a.message FROM alerts a JOIN customer_resources cr "
        "ON cr.id = a.customer_resource_id WHERE cr.resource_key = $1",
        limit_key,
    )
    assert alert["threshold_value"] == Decimal(494)  # critical at 95 % of the new 520 GB
    assert "of the 520 GB limit" in alert["message"]
