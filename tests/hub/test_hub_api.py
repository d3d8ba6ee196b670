"""The REST API on a real bound port, in front of a running hub."""

from __future__ import annotations

import socket
from typing import Any

import aiohttp
import anyio
import asyncpg  # type: ignore[import-untyped]
import msgspec
import pytest
from _hub_testing import event, sample, until, wait_for
from _keys import bearer
from _problem import named

from hub import HubConfig, HubError, RunningHub, provision_resource, run_hub

pytestmark = [pytest.mark.integration, pytest.mark.anyio]

TOTAL = "SELECT current_usage FROM customer_resources WHERE resource_key = $1"


async def test_ingest_then_current_usage_in_base_and_catalog_units(
    hub: RunningHub, http: aiohttp.ClientSession, db: asyncpg.Connection, unique: str
) -> None:
    customer = f"cust-{unique}"
    key = await provision_resource(db, customer, "bandwidth", 10**9)  # 1 GB
    with anyio.fail_after(60):
        resp = await http.post(
            "/api/metrics/ingest",
            json=[event(customer, "0.25", eventId=f"e1-{unique}"), event(customer, "125", "MB")],
        )
        assert resp.status == 200, await resp.text()
        body = await resp.json()
        assert body["accepted"] == 2
        first_id = body["eventIds"][0]
        assert first_id != f"e1-{unique}"  # scoped to the customer: a hash, not the key itself
        # the same idempotency key again is counted once, under the same CloudEvent id
        resp = await http.post(
            "/api/metrics/ingest", json=event(customer, "0.25", eventId=f"e1-{unique}")
        )
        assert resp.status == 200
        assert (await resp.json())["eventIds"] == [first_id]
        await wait_for(db, TOTAL, 375_000_000, key)
        await until(lambda: sample(hub.metrics, "resmon_hub_duplicates_dropped_total") == 1)
        assert await db.fetchval(TOTAL, key) == 375_000_000
        url = f"/api/metrics/customer/{customer}/current"

        async def cached() -> bool:
            async with http.get(url) as resp:
                return resp.headers.get("X-Resmon-Source") == "redis"

        await until(cached)
        resp = await http.get(url)
        current = await resp.json()
    assert current == [
        {
            "resourceKey": key,
            "resourceType": "bandwidth",
            "usage": 375_000_000,
            "unit": "byte",
            "limit": 10**9,
            "catalogUnit": "GB",
            "usageInUnit": "0.375",
            "limitInUnit": "1",
            "percentage": "37.50",
            "level": "NONE",
            "updated": current[0]["updated"],
            "unknownMs": 0,
        }
    ]
    with anyio.fail_after(10):
        resp = await http.get(f"/api/monitoring/customers/{customer}/resources")
        assert resp.status == 200
        (resource,) = await resp.json()
    assert resource["resourceKey"] == key
    assert resource["currentUsage"] == 375_000_000
    assert resource["usageInUnit"] == "0.375"
    assert resource["resourceName"] == "Internet 100Mbps"
    assert resource["warningThreshold"] == "80.00"


async def test_cpu_usage_is_shown_in_milliseconds_and_in_catalog_hours(
    hub: RunningHub, http: aiohttp.ClientSession, db: asyncpg.Connection, unique: str
) -> None:
    customer = f"cust-{unique}"
    key = await provision_resource(db, customer, "cpu", 7_200_000)  # 2 CPU hours
    cpu = {"resourceType": "cpu"}
    with anyio.fail_after(60):
        resp = await http.post(
            "/api/metrics/ingest",
            json=[
                event(customer, "1.25", "hour", **cpu),
                event(customer, "900.001", "second", **cpu),
            ],
        )
        assert resp.status == 200, await resp.text()
        await wait_for(db, TOTAL, 4_500_000 + 900_001, key)
        url = f"/api/metrics/customer/{customer}/current"
        answers = []
        for _ in range(2):  # from PostgreSQL, then from Redis: the same figures
            async with http.get(url) as resp:
                answers.append((resp.headers["X-Resmon-Source"], await resp.json()))
        resp = await http.get(f"/api/monitoring/customers/{customer}/resources")
        (resource,) = await resp.json()
    assert [source for source, _ in answers] == ["postgresql", "redis"]
    for _, (current,) in answers:
        assert {k: v for k, v in current.items() if k != "updated"} == {
            "resourceKey": key,
            "resourceType": "cpu",
            "usage": 5_400_001,
            "unit": "millisecond",
            "limit": 7_200_000,
            "catalogUnit": "hour",
            "usageInUnit": "1.500000277777777777777777778",
            "limitInUnit": "2",
            "percentage": "75.00",
            "level": "NONE",
            "unknownMs": 0,
        }
    assert resource["currentUsage"] == 5_400_001
    assert resource["usageInUnit"] == answers[0][1][0]["usageInUnit"]
    assert resource["resourceName"] == "CPU Hours"


async def test_current_usage_falls_back_to_postgresql_and_lists_every_resource(
    hub: RunningHub, http: aiohttp.ClientSession, db: asyncpg.Connection, unique: str
) -> None:
    customer = f"cust-{unique}"
    url = f"/api/metrics/customer/{customer}/current"
    await provision_resource(db, customer, "storage", 2 * 10**12, name="nas")
    busy = await provision_resource(db, customer, "bandwidth", None)
    with anyio.fail_after(60):
        resp = await http.post("/api/metrics/ingest", json=event(customer, "3", "byte"))
        assert resp.status == 200
        await wait_for(db, TOTAL, 3, busy)
        await until(lambda: hub.consumer.batches > 0)
        sources = []
        for _ in range(2):  # a miss fills the cache from PostgreSQL; then Redis answers
            resp = await http.get(url)
            assert resp.status == 200
            sources.append(resp.headers["X-Resmon-Source"])
            usage = await resp.json()
            assert [u["resourceKey"] for u in usage] == [busy, f"{customer}/storage/nas"]
        assert sources == ["postgresql", "redis"]
        assert usage[1]["limitInUnit"] == "2000"
        assert (usage[0]["usage"], usage[1]["usage"]) == (3, 0)
        # a new resource drops the customer's cached usage (NOTIFY), so it is listed at once
        await provision_resource(db, customer, "cpu", 3600)

        async def listed() -> bool:
            async with http.get(url) as resp:
                return len(await resp.json()) == 3

        await until(listed)


async def test_unknown_customer_is_404_json(http: aiohttp.ClientSession, unique: str) -> None:
    with anyio.fail_after(10):
        resp = await http.get(f"/api/metrics/customer/nobody-{unique}/current")
        assert resp.status == 404
        body = await resp.json()
    assert "not found" in body["detail"]
    assert body["instance"].startswith("/api/metrics/customer/")


@pytest.mark.parametrize(
    ("payload", "where"),
    [
        ({"customerId": "c", "resourceType": "bandwidth", "unit": "GB"}, "value"),
        ({"customerId": "c", "resourceType": "warp", "value": "1", "unit": "GB"}, "resourceType"),
        ({"customerId": "c", "resourceType": "bandwidth", "value": "1", "unit": "hour"}, "unit"),
        ({"customerId": "c", "resourceType": "bandwidth", "value": "-1", "unit": "byte"}, "value"),
    ],
)
async def test_invalid_ingest_is_400_naming_the_field_and_publishes_nothing(
    hub: RunningHub,
    http: aiohttp.ClientSession,
    db: asyncpg.Connection,
    unique: str,
    payload: dict[str, Any],
    where: str,
) -> None:
    good = event(f"cust-{unique}", "1", "byte")
    with anyio.fail_after(60):
        resp = await http.post("/api/metrics/ingest", json=[good, payload])
        assert resp.status == 400
        body = await resp.json()
        assert where in body["detail"]  # names the field
        assert where in named(body) or named(body) == "$[1]"
        assert named(body).startswith("$[1]")
        # a later valid event is applied; the rejected batch's good event never was
        resp = await http.post("/api/metrics/ingest", json=event(f"cust-{unique}", "2", "byte"))
        assert resp.status == 200
        await wait_for(db, TOTAL, 2, f"cust-{unique}/bandwidth")
    assert await db.fetchval("SELECT count(*) FROM processed_events") == 1


async def test_alert_list_acknowledge_and_resolve(
    hub: RunningHub, http: aiohttp.ClientSession, db: asyncpg.Connection, unique: str
) -> None:
    customer = f"cust-{unique}"
    await provision_resource(db, customer, "api_calls", 1000)
    with anyio.fail_after(60):
        resp = await http.post(
            "/api/metrics/ingest",
            json={
                "customerId": customer,
                "resourceType": "api_calls",
                "value": 850,
                "unit": "request",
            },
        )
        assert resp.status == 200
        await wait_for(db, "SELECT count(*) FROM alerts", 1)
        resp = await http.get("/api/alerts", params={"status": "ACTIVE", "customerId": customer})
        (alert,) = (await resp.json())["items"]
        assert alert["alertType"] == "THRESHOLD_WARNING"
        assert alert["currentValue"] == "850"
        assert alert["thresholdValue"] == "800"
        assert alert["unit"] == "request"

        # nobody named: the API key's name ("tests") is who acknowledged
        resp = await http.post(f"/api/alerts/{alert['id']}/acknowledge", json={})
        assert resp.status == 200
        acked = await resp.json()
        assert (acked["status"], acked["acknowledgedBy"]) == ("ACKNOWLEDGED", "tests")
        assert acked["acknowledgedAt"] is not None

        resp = await http.post(f"/api/alerts/{alert['id']}/resolve", json={"by": "noc-bob"})
        resolved = await resp.json()
        assert (resolved["status"], resolved["resolvedBy"]) == ("RESOLVED", "noc-bob")
        resp = await http.post(f"/api/alerts/{alert['id']}/acknowledge", json={"by": "x"})
        assert resp.status == 409

        resp = await http.get("/api/alerts", params={"status": "ACTIVE", "customerId": customer})
        assert await resp.json() == {"items": [], "next": None}
        resp = await http.post("/api/alerts/not-a-uuid/resolve")
        assert resp.status == 404
        resp = await http.post("/api/alerts/00000000-0000-0000-0000-000000000001/resolve")
        assert resp.status == 404
        resp = await http.get("/api/alerts", params={"status": "BOGUS"})
        assert resp.status == 400


async def test_healthz_and_prometheus_metrics(http: aiohttp.ClientSession) -> None:
    with anyio.fail_after(10):
        resp = await http.get("/healthz")
        assert resp.status == 200
        assert await resp.json() == {"status": "ok"}
        resp = await http.get("/metrics")
        text = await resp.text()
    assert resp.status == 200
    for name in (
        "resmon_hub_readings_consumed_total",
        "resmon_hub_duplicates_dropped_total",
        "resmon_hub_dead_letters_total",
        "resmon_hub_batch_commit_seconds_bucket",
    ):
        assert name in text


async def test_http_port_in_use_is_a_clear_error(
    hub_config: HubConfig, db: asyncpg.Connection
) -> None:
    import msgspec

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = msgspec.structs.replace(hub_config, http_port=port)
        with (
            anyio.fail_after(60),
            pytest.raises(HubError, match=f"127.0.0.1:{port} is already in use"),
        ):
            await run_hub(config)  # fails while starting: the HubError itself, not a group


@pytest.mark.parametrize(
    ("change", "where", "says"),
    [
        ({"value": "Infinity"}, "value", "not a finite number"),
        ({"value": "sNaN"}, "value", "not a finite number"),
        ({"value": "1e1000000", "unit": "byte"}, "value", "out of range"),
        ({"value": "1." + "0" * 40 + "1", "unit": "byte"}, "value", "out of range"),
        ({"customerId": "a\u0000b"}, "$[1]", "customerId contains a NUL"),
        ({"source": "s" * 51}, "$[1]", "source is 51 characters long"),
        ({"eventId": "e" * 201}, "eventId", "eventId must be 1..200"),
        ({"timestamp": "2099-01-01T00:00:00Z"}, "$[1]", "ahead of this hub's clock"),
    ],
    ids=["infinity", "snan", "huge-exponent", "too-many-digits", "nul", "long-source",
         "long-event-id", "future"],
)  # fmt: skip
async def test_ingest_refuses_what_could_not_be_stored_exactly_with_a_400(
    hub: RunningHub, http: aiohttp.ClientSession, unique: str, change: dict[str, Any],
    where: str, says: str,
) -> None:  # fmt: skip
    """Before, some of these were 500s, silently rounded, or accepted and then stuck."""
    good = event(f"cust-{unique}", "1", "byte")
    with anyio.fail_after(30):
        resp = await http.post("/api/metrics/ingest", json=[good, {**good, **change}])
        assert resp.status == 400
        body = await resp.json()
    assert says in body["detail"]
    assert where in named(body)
    assert named(body).startswith("$[1]")


async def test_the_same_event_twice_in_one_request_is_refused_not_counted_once(
    hub: RunningHub, http: aiohttp.ClientSession, unique: str
) -> None:
    same = event(f"cust-{unique}", "1", "byte")
    with anyio.fail_after(30):
        resp = await http.post("/api/metrics/ingest", json=[same, event(f"x-{unique}", "1"), same])
        assert resp.status == 400
        body = await resp.json()
    assert "$[0] and $[2] are the same event" in body["detail"]
    assert named(body) == "$[2]"


async def test_an_event_older_than_the_retention_horizon_is_refused(
    hub_config: HubConfig, db: asyncpg.Connection, unique: str, api_key: str
) -> None:
    config = msgspec.structs.replace(hub_config, retention_days=30)
    with anyio.fail_after(60):
        async with anyio.create_task_group() as tg:
            running: RunningHub = await tg.start(run_hub, config)
            async with aiohttp.ClientSession(
                base_url=running.http_url, headers=bearer(api_key)
            ) as http:
                resp = await http.post(
                    "/api/metrics/ingest",
                    json=event(f"cust-{unique}", "1", "byte", timestamp="2025-01-01T00:00:00Z"),
                )
                assert resp.status == 400
                body = await resp.json()
            tg.cancel_scope.cancel()
    assert "retention horizon (RESMON_RETENTION_DAYS=30)" in body["detail"]
    assert named(body) == "$.timestamp"


@pytest.mark.parametrize(
    ("path", "where"),
    [
        ("/api/metrics/customer/a%00b/current", "customerId"),
        ("/api/monitoring/customers/" + "c" * 501 + "/resources", "customerId"),
        ("/api/alerts?customerId=%00", "customerId"),
        ("/api/notifications?alertId=xyz", "alertId"),
    ],
    ids=["nul-in-path", "long-path-param", "nul-in-query", "garbled-alert-id"],
)
async def test_bad_path_and_query_parameters_are_400_naming_them(
    http: aiohttp.ClientSession, path: str, where: str
) -> None:
    """Before, these reached PostgreSQL and came back as a 503 (or a 404 for the path)."""
    with anyio.fail_after(30):
        resp = await http.get(path)
        assert resp.status == 400
        body = await resp.json()
    assert named(body) == where
    assert where in body["detail"]
