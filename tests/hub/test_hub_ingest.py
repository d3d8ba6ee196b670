"""What the REST API does with the bodies it is sent: media types, bytes, values."""

from __future__ import annotations

import aiohttp
import anyio
import asyncpg  # type: ignore[import-untyped]
import msgspec
import pytest
from _hub_testing import event, wait_for

from hub import RunningHub

pytestmark = [pytest.mark.integration, pytest.mark.anyio]

TOTAL = "SELECT current_usage FROM customer_resources WHERE resource_key = $1"
ALERT = "/api/alerts/00000000-0000-0000-0000-000000000001"
#: every route that reads a body: (method, path, a body it would accept as JSON)
USAGE = b'{"customerId":"c","resourceType":"cpu","value":1,"unit":"second"}'
BODY_ROUTES = [
    ("POST", "/api/metrics/ingest", USAGE),
    ("POST", f"{ALERT}/acknowledge", b'{"by":"noc"}'),
    ("POST", f"{ALERT}/resolve", b'{"by":"noc"}'),
    ("PUT", "/api/customers/c/notification-preferences", b"{}"),
    ("PUT", "/api/tenants/default/notification-preferences", b"{}"),
]  # fmt: skip
ROUTE_IDS = ["ingest", "acknowledge", "resolve", "customer-prefs", "tenant-prefs"]


@pytest.mark.parametrize(("method", "path", "body"), BODY_ROUTES, ids=ROUTE_IDS)
@pytest.mark.parametrize(
    "content_type", ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data"]
)
async def test_a_body_that_is_not_declared_json_is_refused_with_415_naming_its_type(
    http: aiohttp.ClientSession, method: str, path: str, body: bytes, content_type: str
) -> None:
    """A cross-site form can send these types; before, the JSON inside was acted on."""
    with anyio.fail_after(30):
        resp = await http.request(method, path, data=body, headers={"Content-Type": content_type})
        assert resp.status == 415
        answer = await resp.json()
    assert content_type in answer["error"]
    assert "application/json" in answer["error"]
    assert answer["where"] == "Content-Type"


async def test_text_plain_ingest_publishes_nothing_and_json_with_a_charset_is_counted(
    hub: RunningHub, http: aiohttp.ClientSession, db: asyncpg.Connection, unique: str
) -> None:
    customer = f"cust-{unique}"
    refused = msgspec.json.encode(event(customer, "5", "byte"))
    with anyio.fail_after(60):
        resp = await http.post(
            "/api/metrics/ingest", data=refused, headers={"Content-Type": "text/plain"}
        )
        assert resp.status == 415
        resp = await http.post(
            "/api/metrics/ingest",
            data=msgspec.json.encode(event(customer, "2", "byte", eventId=f"ok-{unique}")),
            headers={"Content-Type": "Application/JSON; charset=utf-8"},
        )
        assert resp.status == 200, await resp.text()
        await wait_for(db, TOTAL, 2, f"{customer}/bandwidth")
    assert await db.fetchval("SELECT count(*) FROM processed_events") == 1
