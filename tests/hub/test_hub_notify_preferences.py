"""Notification preferences over REST, the signed webhook, and the secrets canary."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import anyio
import asyncpg  # type: ignore[import-untyped]
import msgspec
import pytest
import structlog
from _hub_testing import until
from _keys import bearer
from _notify_fakes import FakeHttp, http_server, notify_config, raise_alert
from _problem import named

from hub import HubConfig, provision_resource
from hub.api import ApiContext, create_app, serve
from hub.metrics import HubMetrics
from hub.notify import Preferences, QuietHours, run_notifier
from hub.notify.preferences import ChannelPrefs, save_preferences

pytestmark = [pytest.mark.integration, pytest.mark.anyio]

CANARIES = ("slack-CANARY", "hmac-CANARY", "smtp-CANARY", "twilio-token-CANARY")


@pytest.fixture
async def pool(hub_config: HubConfig, db: asyncpg.Connection) -> AsyncIterator[asyncpg.Pool]:
    p = await asyncpg.create_pool(hub_config.database_url, min_size=1, max_size=6)
    try:
        yield p
    finally:
        await p.close()


@pytest.fixture
async def api(
    hub_config: HubConfig, pool: asyncpg.Pool, api_key: str
) -> AsyncIterator[aiohttp.ClientSession]:
    config = msgspec.structs.replace(hub_config, notify=notify_config())
    async with anyio.create_task_group() as tg:
        app = create_app(ApiContext(config=config, db=pool, metrics=HubMetrics()))
        port = await tg.start(serve, app, "127.0.0.1", 0)
        base = f"http://127.0.0.1:{port}"
        async with aiohttp.ClientSession(base_url=base, headers=bearer(api_key)) as session:
            yield session
        tg.cancel_scope.cancel()


def body(**kw: Any) -> dict[str, Any]:
    return {
        "email": {"enabled": True, "minSeverity": "HIGH", "recipients": ["noc@cust.example"]},
        "sms": {"enabled": True, "minSeverity": "CRITICAL", "recipients": ["+4915112345678"]},
        "slack": {"enabled": True, "url": "https://hooks.slack.com/services/T0/B0/slack-CANARY"},
        "webhook": {
            "enabled": True,
            "url": "https://hooks.cust.example/resmon",
            "secret": "hmac-CANARY",
        },
        "quietHours": {"start": "22:00", "end": "07:00", "timezone": "Europe/Berlin"},
        "repeatIntervalMinutes": 60,
        "sendResolved": False,
        **kw,
    }


async def test_customer_preferences_round_trip_masked_and_fall_back_to_the_tenant_default(
    api: aiohttp.ClientSession, db: asyncpg.Connection, unique: str
) -> None:
    customer = f"cust-{unique}"
    await provision_resource(db, customer, "api_calls", 1000)
    url = f"/api/customers/{customer}/notification-preferences"
    with anyio.fail_after(20):
        resp = await api.get(url)
        assert (await resp.json())["scope"] == "builtin"
        resp = await api.put(
            "/api/tenants/default/notification-preferences",
            headers={"If-Match": "*"},
            json={
                "email": {"enabled": True, "recipients": ["isp-noc@isp.example"]},
                "rateLimitsPerHour": {"sms": 20},
            },
        )
        assert resp.status == 200, await resp.text()
        resp = await api.get(url)
        shown = await resp.json()
        assert shown["scope"] == "tenant"
        assert shown["preferences"]["email"]["recipients"] == ["isp-noc@isp.example"]
        tag = resp.headers["ETag"]  # of the tenant default the customer sees
        resp = await api.put(
            url, json=body(), headers={"X-Resmon-User": "noc-alice", "If-Match": tag}
        )
        assert resp.status == 200, await resp.text()
        saved = await resp.json()
        assert saved["scope"] == "customer"
        assert saved["updatedBy"] == "noc-alice"
        read = await api.get(url)
        text = await read.text()
        shown = msgspec.json.decode(text)["preferences"]
        assert shown["slack"]["url"] == "https://hooks.slack.com/***"
        assert shown["webhook"]["secret"] == "***"
        assert shown["quietHours"]["timezone"] == "Europe/Berlin"
        assert shown["sms"]["minSeverity"] == "CRITICAL"
        assert not any(c in text for c in CANARIES)
        # sending the masked document back keeps the stored URL and secret
        resp = await api.put(url, json=shown, headers={"If-Match": read.headers["ETag"]})
        assert resp.status == 200
        stored = await db.fetchval(
            "SELECT settings FROM notification_preferences WHERE customer_id = $1", customer
        )
        assert "slack-CANARY" in stored
        assert "hmac-CANARY" in stored


@pytest.mark.parametrize(
    ("change", "where", "message"),
    [
        ({"slack": {"enabled": True, "url": "http://169.254.169.254/x"}}, "$.slack.url", "link"),
        ({"webhook": {"enabled": True, "url": "http://[::1]/x"}}, "$.webhook.url", "loopback"),
        ({"sms": {"enabled": True, "recipients": ["0151 123"]}}, "$.sms.recipients", "E.164"),
        ({"email": {"recipients": ["nobody"]}}, "$.email.recipients", "email address"),
        ({"quietHours": {"start": "25:00", "end": "07:00"}}, "$.quietHours.start", "HH:MM"),
        (
            {"quietHours": {"start": "22:00", "end": "07:00", "timezone": "Mars/Olympus"}},
            "$.quietHours.timezone",
            "time zone",
        ),
        ({"sms": {"minSeverity": "URGENT"}}, "$.sms.minSeverity", "URGENT"),
        ({"pager": {}}, "$", "unknown field"),
    ],
)
async def test_invalid_preferences_are_refused_with_the_field_that_is_wrong(
    api: aiohttp.ClientSession,
    db: asyncpg.Connection,
    unique: str,
    change: dict[str, Any],
    where: str,
    message: str,
) -> None:
    customer = f"cust-{unique}"
    await provision_resource(db, customer, "api_calls", 1000)
    with anyio.fail_after(10):
        resp = await api.put(
            f"/api/customers/{customer}/notification-preferences",
            json=body(**change),
            headers={"If-Match": "*"},
        )
        assert resp.status == 400
        err = await resp.json()
    assert named(err) == where
    assert message in err["detail"]
    assert "169.254.169.254/x" not in err["detail"]


async def test_unknown_customer_preferences_are_404(api: aiohttp.ClientSession) -> None:
    with anyio.fail_after(10):
        resp = await api.get("/api/customers/nobody/notification-preferences")
        assert resp.status == 404
        resp = await api.put(
            "/api/customers/nobody/notification-preferences",
            json=body(),
            headers={"If-Match": "*"},
        )
        assert resp.status == 404


def test_quiet_hours_span_midnight_in_the_customers_time_zone() -> None:
    prefs = Preferences(
        quiet_hours=QuietHours(start="22:00", end="07:00", timezone="Europe/Berlin")
    )
    # 23:30 in Berlin (CET, UTC+1) is 22:30 UTC: quiet until 07:00 Berlin = 06:00 UTC
    until_ = prefs.quiet_until(dt.datetime(2026, 11, 20, 22, 30, tzinfo=dt.UTC))
    assert until_ == dt.datetime(2026, 11, 21, 6, 0, tzinfo=dt.UTC)
    assert prefs.quiet_until(dt.datetime(2026, 11, 20, 12, 0, tzinfo=dt.UTC)) is None


async def test_the_webhook_is_signed_and_no_secret_reaches_logs_or_the_api(
    hub_config: HubConfig,
    pool: asyncpg.Pool,
    api: aiohttp.ClientSession,
    db: asyncpg.Connection,
    unique: str,
) -> None:
    customer = f"cust-{unique}"
    key = await provision_resource(db, customer, "api_calls", 1000)
    async with http_server(FakeHttp()) as hook, http_server(FakeHttp([(500, {})] * 3)) as slack:
        await save_preferences(
            db,
            Preferences(
                email=ChannelPrefs(enabled=True, recipients=["noc@cust.example"]),
                slack=ChannelPrefs(enabled=True, url=f"{slack.url}/services/slack-CANARY"),
                webhook=ChannelPrefs(enabled=True, url=f"{hook.url}/in", secret="hmac-CANARY"),
            ),
            customer_id=customer,
        )
        config = notify_config(
            smtp_username="alerts", smtp_password="smtp-CANARY", deadline_seconds=1.0
        )  # SMTP port 1: refused, retried, dead-lettered
        with structlog.testing.capture_logs() as logs:
            async with anyio.create_task_group() as tg:
                await tg.start(run_notifier, pool, config, None)
                with anyio.fail_after(30):
                    alert = await raise_alert(db, key)
                    await until(lambda: len(hook.requests) == 1 and len(slack.requests) == 4)
                    await until(
                        lambda: db.fetchval(
                            "SELECT count(*) = 0 FROM notification_log "
                            "WHERE status IN ('PENDING', 'SENDING')"
                        )
                    )
                tg.cancel_scope.cancel()
    (req,) = hook.requests
    ts = req.headers["X-Resmon-Timestamp"]
    expected = hmac.new(b"hmac-CANARY", ts.encode() + b"." + req.body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(req.headers["X-Resmon-Signature"], f"sha256={expected}")
    assert req.json["alerts"][0]["alertId"] == alert
    assert req.json["alerts"][0]["percentage"] == "85.00"
    with anyio.fail_after(10):
        text = await (await api.get("/api/notifications", params={"customerId": customer})).text()
    statuses = sorted((n["channel"], n["status"]) for n in msgspec.json.decode(text)["items"])
    assert statuses == [("email", "DEAD"), ("slack", "SENT"), ("webhook", "SENT")]
    assert logs, "the notifier logged nothing?"
    seen = repr(logs) + text + repr(config)
    for canary in CANARIES:
        assert canary not in seen


async def test_a_change_needs_the_etag_of_what_it_replaces(
    api: aiohttp.ClientSession, db: asyncpg.Connection, unique: str
) -> None:
    customer = f"cust-{unique}"
    await provision_resource(db, customer, "api_calls", 1000)
    url = f"/api/customers/{customer}/notification-preferences"
    with anyio.fail_after(20):
        first = (await api.get(url)).headers["ETag"]
        resp = await api.put(url, json=body())
        assert resp.status == 428
        assert (await resp.json())["type"].endswith("/precondition-required")
        resp = await api.put(url, json=body(), headers={"If-Match": first})
        assert resp.status == 200, await resp.text()
        second = resp.headers["ETag"]
        assert second != first
        assert (await api.get(url)).headers["ETag"] == second
        # a writer that read the first version loses, and nothing it sent is stored
        resp = await api.put(url, json=body(sms={"enabled": False}), headers={"If-Match": first})
        assert resp.status == 412
        assert (await resp.json())["type"].endswith("/precondition-failed")
        assert (await api.get(url)).headers["ETag"] == second
