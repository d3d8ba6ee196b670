"""Delivery against real local servers: aiosmtpd for email, aiohttp fakes for Slack/Twilio.

The alert rows are written with the SQL the hub's batch uses (see _notify_fakes),
so these tests need PostgreSQL but no broker; one end-to-end test drives a hub.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import asyncpg  # type: ignore[import-untyped]
import msgspec
import pytest
from _hub_testing import until
from _notify_fakes import FakeHttp, http_server, notify_config, raise_alert, recover, smtp_server
from prometheus_client import CollectorRegistry

from hub import HubConfig, provision_resource
from hub.alerts import lifecycle
from hub.notify import ChannelPrefs, NotifyConfig, Preferences, QuietHours, run_notifier
from hub.notify.log import list_log
from hub.notify.preferences import save_preferences

pytestmark = [pytest.mark.integration, pytest.mark.anyio]

SLACK_PATH = "/services/T000/B000/slack-CANARY-token"


@asynccontextmanager
async def notifier(
    hub_config: HubConfig, config: NotifyConfig, registry: CollectorRegistry | None = None
) -> AsyncIterator[asyncpg.Pool]:
    pool = await asyncpg.create_pool(hub_config.database_url, min_size=1, max_size=6)
    try:
        async with anyio.create_task_group() as tg:
            await tg.start(run_notifier, pool, config, registry)
            yield pool
            tg.cancel_scope.cancel()
    finally:
        await pool.close()


def _sent(registry: CollectorRegistry, channel: str) -> float:
    return registry.get_sample_value("resmon_notify_sent_total", {"channel": channel}) or 0.0


async def rounds_later(registry: CollectorRegistry, count: int = 3) -> None:
    """Wait until the notifier has run ``count`` more rounds: what it would still send is sent."""

    def rounds() -> float:
        return registry.get_sample_value("resmon_notify_rounds_total") or 0.0

    target = rounds() + count
    await until(lambda: rounds() >= target)


async def statuses(db: asyncpg.Connection) -> list[tuple[str, str, str]]:
    rows = await db.fetch(
        "SELECT channel, transition_key, status FROM notification_log ORDER BY id"
    )
    return [(r["channel"], r["transition_key"], r["status"]) for r in rows]


async def prefs(db: asyncpg.Connection, customer: str, **kw: Any) -> None:
    await save_preferences(db, Preferences(**kw), customer_id=customer)


async def test_scripted_episode_sends_exactly_the_expected_emails(
    hub_config: HubConfig, db: asyncpg.Connection, unique: str
) -> None:
    customer = f"cust-{unique}"
    key = await provision_resource(db, customer, "api_calls", 1000)
    await prefs(db, customer, email=ChannelPrefs(enabled=True, recipients=["noc@cust.example"]))
    async with smtp_server() as (smtp, port), notifier(hub_config, notify_config(port)):
        with anyio.fail_after(30):
            alert = await raise_alert(db, key, "WARNING", "850")
            await until(lambda: len(smtp.messages) == 1)
            critical = await raise_alert(db, key, "CRITICAL", "960")
            await until(lambda: len(smtp.messages) == 2)
            await lifecycle.acknowledge(db, critical, "noc-alice", "calling the customer")
            await until(lambda: len(smtp.messages) == 3)
            await recover(db, key)
            await until(lambda: len(smtp.messages) == 4)
            await until(
                lambda: db.fetchval("SELECT bool_and(status = 'SENT') FROM notification_log")
            )
    subjects = [m["Subject"].strip() for m in smtp.messages]
    assert subjects == [
        f"[resmon] ALERT HIGH: api_calls {key} at 85.00%",
        f"[resmon] ESCALATED CRITICAL: api_calls {key} at 96.00%",
        f"[resmon] ACKNOWLEDGED CRITICAL: api_calls {key} at 96.00%",
        f"[resmon] RESOLVED CRITICAL: api_calls {key} at 96.00%",
    ]
    assert all(env == ("alerts@isp.example", ["noc@cust.example"]) for env in smtp.envelopes)
    first = smtp.messages[0]
    text = first.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    html = first.get_body(("html",)).get_content()  # type: ignore[union-attr]
    for body in (text, html):
        assert "850 request of 1000 request (85.00%)" in body
        assert f"https://dash.isp.example/customers/{customer}" in body
    assert alert in text
    ack = smtp.messages[2].get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert "acknowledged by noc-alice: calling the customer" in ack
    assert await statuses(db) == [
        ("email", "RAISED:HIGH", "SENT"),
        ("email", "ESCALATED:CRITICAL", "SENT"),
        ("email", "ACKNOWLEDGED:CRITICAL", "SENT"),
        ("email", "RESOLVED:CRITICAL", "SENT"),
    ]


async def test_slack_gets_every_level_and_twilio_only_critical(
    hub_config: HubConfig, db: asyncpg.Connection, unique: str
) -> None:
    customer = f"cust-{unique}"
    key = await provision_resource(db, customer, "api_calls", 1000)
    async with http_server(FakeHttp()) as slack, http_server(FakeHttp()) as twilio:
        await prefs(
            db,
            customer,
            email=ChannelPrefs(enabled=False),
            slack=ChannelPrefs(enabled=True, min_severity="MEDIUM", url=slack.url + SLACK_PATH),
            sms=ChannelPrefs(enabled=True, min_severity="CRITICAL", recipients=["+4915112345678"]),
            send_resolved=False,
        )
        async with notifier(hub_config, notify_config(twilio_url=twilio.url)):
            with anyio.fail_after(30):
                await raise_alert(db, key, "WARNING")
                await until(lambda: len(slack.requests) == 1)
                await raise_alert(db, key, "CRITICAL", "960")
                await until(lambda: len(slack.requests) == 2 and len(twilio.requests) == 1)
                await recover(db, key)  # send_resolved is off: nothing more
                await until(
                    lambda: db.fetchval(
                        "SELECT count(*) = 0 FROM alert_transitions WHERE routed_at IS NULL"
                    )
                )
    assert [r.path for r in slack.requests] == [SLACK_PATH, SLACK_PATH]
    colours = [r.json["attachments"][0]["color"] for r in slack.requests]
    assert colours == ["#f5a623", "#d0021b"]
    blocks = slack.requests[1].json["attachments"][0]["blocks"]
    assert "ESCALATED CRITICAL" in blocks[0]["text"]["text"]
    (sms,) = twilio.requests
    assert sms.path == "/2010-04-01/Accounts/AC123/Messages.json"
    assert sms.form["To"] == "+4915112345678"
    assert sms.form["From"] == "+15550001111"
    assert "CRITICAL" in sms.form["Body"]
    assert "96.00%" in sms.form["Body"]
    assert sms.headers["Authorization"].startswith("Basic ")


@pytest.mark.parametrize("channel", ["slack", "sms"])
async def test_500_500_500_429_then_200_is_delivered_once_with_visible_retries(
    hub_config: HubConfig, db: asyncpg.Connection, unique: str, channel: str
) -> None:
    customer = f"cust-{unique}"
    key = await provision_resource(db, customer, "api_calls", 1000)
    script = [(500, {}), (500, {}), (500, {}), (429, {"Retry-After": "1"})]
    async with http_server(FakeHttp(script)) as server:
        await prefs(
            db,
            customer,
            email=ChannelPrefs(enabled=False),
            slack=ChannelPrefs(enabled=channel == "slack", url=server.url + SLACK_PATH),
            sms=ChannelPrefs(
                enabled=channel == "sms", min_severity="HIGH", recipients=["+4915112345678"]
            ),
        )
        registry = CollectorRegistry()
        async with notifier(hub_config, notify_config(twilio_url=server.url), registry):
            with anyio.fail_after(30):
                alert = await raise_alert(db, key)
                await until(lambda: len(server.requests) == 5)
                await until(lambda: db.fetchval("SELECT status = 'SENT' FROM notification_log"))
                # the worker counts a send after recording it: wait for that too
                await until(lambda: _sent(registry, channel) == 1)
    assert [r.status for r in server.requests] == [
        500,
        500,
        500,
        429,
        201 if channel == "sms" else 200,
    ]
    assert len(server.delivered) == 1
    assert server.requests[4].at - server.requests[3].at >= 0.95  # Retry-After honoured
    (row,) = await list_log(db, alert_id=alert)
    assert (row.channel, row.status, row.attempts) == (channel, "SENT", 5)
    assert [(h["outcome"], h["statusCode"]) for h in row.history] == [
        ("retry", 500),
        ("retry", 500),
        ("retry", 500),
        ("retry", 429),
        ("sent", None),
    ]
    assert registry.get_sample_value("resmon_notify_retries_total", {"channel": channel}) == 4
    assert _sent(registry, channel) == 1


async def test_a_notification_past_its_deadline_is_dead_lettered_and_visible(
    hub_config: HubConfig, db: asyncpg.Connection, unique: str
) -> None:
    customer = f"cust-{unique}"
    key = await provision_resource(db, customer, "api_calls", 1000)
    async with http_server(FakeHttp([(503, {})] * 50)) as slack:
        await prefs(
            db,
            customer,
            email=ChannelPrefs(enabled=False),
            slack=ChannelPrefs(enabled=True, url=slack.url + SLACK_PATH),
        )
        registry = CollectorRegistry()
        async with notifier(hub_config, notify_config(deadline_seconds=0.4), registry):
            with anyio.fail_after(30):
                await raise_alert(db, key)
                await until(
                    lambda: (
                        registry.get_sample_value(
                            "resmon_notify_dead_letters_total", {"channel": "slack"}
                        )
                        == 1
                    )
                )
    (dead,) = await list_log(db, status="DEAD")
    assert dead.last_error == "slack: webhook answered 503: scripted"
    assert dead.history[-1]["outcome"] == "dead"
    assert "CANARY" not in repr(dead)
    assert registry.get_sample_value("resmon_notify_dead_letters_total", {"channel": "slack"}) == 1


async def test_one_customers_alerts_in_a_window_go_out_as_one_message_and_critical_inhibits_warning(
    hub_config: HubConfig, db: asyncpg.Connection, unique: str
) -> None:
    customer = f"cust-{unique}"
    a = await provision_resource(db, customer, "api_calls", 1000)
    b = await provision_resource(db, customer, "bandwidth", 10**9)
    await prefs(db, customer, email=ChannelPrefs(enabled=True, recipients=["noc@cust.example"]))
    config = notify_config(group_seconds=0.5)
    async with (
        smtp_server() as (smtp, port),
        notifier(hub_config, msgspec.structs.replace(config, smtp_port=port)),
    ):
        with anyio.fail_after(30):
            await raise_alert(db, a, "WARNING")
            await raise_alert(db, a, "CRITICAL", "970")
            await raise_alert(db, b, "WARNING")
            await until(lambda: len(smtp.messages) == 1)
            await until(
                lambda: db.fetchval(
                    "SELECT count(*) = 0 FROM notification_log "
                    "WHERE status IN ('PENDING', 'SENDING')"
                )
            )
    (msg,) = smtp.messages
    assert msg["Subject"] == f"[resmon] 2 alert updates for {customer} (CRITICAL)"
    text = msg.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert f"ESCALATED CRITICAL: api_calls {a}" in text
    assert f"ALERT HIGH: bandwidth {b}" in text
    assert f"ALERT HIGH: api_calls {a}" not in text
    assert sorted(await statuses(db)) == [
        ("email", "ESCALATED:CRITICAL", "SENT"),
        ("email", "RAISED:HIGH", "SENT"),
        ("email", "RAISED:HIGH", "SUPPRESSED"),
    ]


async def test_two_workers_never_deliver_the_same_notification(
    hub_config: HubConfig, db: asyncpg.Connection, unique: str
) -> None:
    keys = [
        await provision_resource(db, f"cust-{unique}-{i}", "api_calls", 1000) for i in range(20)
    ]
    async with http_server(FakeHttp()) as hook:
        for i in range(20):
            await prefs(
                db,
                f"cust-{unique}-{i}",
                email=ChannelPrefs(enabled=False),
                webhook=ChannelPrefs(enabled=True, url=f"{hook.url}/c/{i}"),
            )
        one = notify_config(worker_id="worker-a", poll_seconds=0.005)
        two = notify_config(worker_id="worker-b", poll_seconds=0.005)
        r1, r2 = CollectorRegistry(), CollectorRegistry()
        async with notifier(hub_config, one, r1), notifier(hub_config, two, r2):
            with anyio.fail_after(30):
                for key in keys:
                    await raise_alert(db, key)
                await until(lambda: len(hook.requests) >= 20)
                await until(
                    lambda: db.fetchval(
                        "SELECT count(*) = 20 FROM notification_log WHERE status = 'SENT'"
                    )
                )
                # a double delivery would show up within a few rounds of each worker
                await rounds_later(r1)
                await rounds_later(r2)
    assert sorted(r.path for r in hook.requests) == sorted(f"/c/{i}" for i in range(20))
    workers = await db.fetch("SELECT DISTINCT worker FROM notification_attempts")
    assert {w["worker"] for w in workers} <= {"worker-a", "worker-b"}


async def test_tenant_rate_limit_defers_sms_over_the_limit(
    hub_config: HubConfig, db: asyncpg.Connection, unique: str
) -> None:
    keys = [await provision_resource(db, f"cust-{unique}-{i}", "api_calls", 1000) for i in (1, 2)]
    await save_preferences(db, Preferences(rate_limits_per_hour={"sms": 1}), tenant_id=None)
    async with http_server(FakeHttp()) as twilio:
        for i in (1, 2):
            await prefs(
                db,
                f"cust-{unique}-{i}",
                email=ChannelPrefs(enabled=False),
                sms=ChannelPrefs(
                    enabled=True, min_severity="CRITICAL", recipients=[f"+491511234567{i}"]
                ),
            )
        registry = CollectorRegistry()
        async with notifier(hub_config, notify_config(twilio_url=twilio.url), registry):
            with anyio.fail_after(30):
                for key in keys:
                    await raise_alert(db, key, "CRITICAL", "990")
                await until(
                    lambda: db.fetchval(
                        "SELECT count(*) = 1 FROM notification_attempts WHERE outcome = 'deferred'"
                    )
                )
                # the other one may still be on its way to Twilio when the deferral is recorded
                await until(
                    lambda: db.fetchval(
                        "SELECT count(*) = 1 FROM notification_log WHERE status = 'SENT'"
                    )
                )
                await rounds_later(registry)  # room for a wrong second send to show up
    assert len(twilio.requests) == 1
    assert sorted(s for *_, s in await statuses(db)) == ["PENDING", "SENT"]


async def test_quiet_hours_delay_a_warning_but_not_a_critical(
    hub_config: HubConfig, db: asyncpg.Connection, unique: str
) -> None:
    customer = f"cust-{unique}"
    key = await provision_resource(db, customer, "api_calls", 1000)
    now = dt.datetime.now(dt.UTC)
    start, end = (now - dt.timedelta(hours=1)).strftime("%H:%M"), (now + dt.timedelta(hours=1))
    quiet = QuietHours(start=start, end=end.strftime("%H:%M"), timezone="UTC")
    await prefs(
        db,
        customer,
        quiet_hours=quiet,
        email=ChannelPrefs(enabled=True, recipients=["noc@cust.example"]),
    )
    async with smtp_server() as (smtp, port), notifier(hub_config, notify_config(port)):
        with anyio.fail_after(30):
            await raise_alert(db, key, "WARNING")
            await until(lambda: db.fetchval("SELECT count(*) = 1 FROM notification_log"))
            await raise_alert(db, key, "CRITICAL", "990")
            await until(lambda: len(smtp.messages) == 1)
    assert "ESCALATED CRITICAL" in smtp.messages[0]["Subject"]
    held = await db.fetchval(
        "SELECT next_attempt_at FROM notification_log WHERE transition = 'RAISED'"
    )
    assert abs(held - end.replace(second=0, microsecond=0)) < dt.timedelta(seconds=1)


async def test_unacknowledged_alerts_repeat_and_acknowledging_silences_them(
    hub_config: HubConfig, db: asyncpg.Connection, unique: str
) -> None:
    customer = f"cust-{unique}"
    key = await provision_resource(db, customer, "api_calls", 1000)
    await prefs(
        db,
        customer,
        repeat_interval_minutes=1,
        email=ChannelPrefs(enabled=True, recipients=["noc@cust.example"]),
    )
    registry = CollectorRegistry()
    async with (
        smtp_server() as (smtp, port),
        notifier(hub_config, notify_config(port), registry),
    ):
        with anyio.fail_after(30):
            alert = await raise_alert(db, key)
            await until(lambda: len(smtp.messages) == 1)
            await db.execute(
                "UPDATE alerts SET created_at = now() - interval '61 seconds' WHERE id = $1::uuid",
                alert,
            )
            await until(lambda: len(smtp.messages) == 2)
            await lifecycle.acknowledge(db, alert, "noc-alice")
            await until(lambda: len(smtp.messages) == 3)
            await db.execute(
                "UPDATE alerts SET created_at = now() - interval '200 seconds' WHERE id = $1::uuid",
                alert,
            )
            await rounds_later(registry)  # no reminder for an acknowledged alert
    assert [m["Subject"].strip().split(":")[0] for m in smtp.messages] == [
        "[resmon] ALERT HIGH",
        "[resmon] STILL ACTIVE HIGH",
        "[resmon] ACKNOWLEDGED HIGH",
    ]


async def test_a_lease_that_ran_out_before_the_send_is_not_renewed_for_the_old_worker(
    hub_config: HubConfig, db: asyncpg.Connection, unique: str
) -> None:
    """A claimed group waiting for a delivery slot must not be sent once another worker
    may hold it: the worker renews its lease right before sending, and only rows whose
    lease still runs come back."""
    from hub.notify.log import claim_due, renew_lease
    from hub.notify.router import route_pending

    key = await provision_resource(db, f"cust-{unique}", "api_calls", 1000)
    await prefs(
        db,
        f"cust-{unique}",
        email=ChannelPrefs(enabled=False),
        webhook=ChannelPrefs(enabled=True, url="http://hooks.example/x"),
    )
    await raise_alert(db, key)
    pool = await asyncpg.create_pool(hub_config.database_url, min_size=1, max_size=2)
    try:
        config = notify_config(worker_id="worker-a")
        assert await route_pending(pool, config) >= 1
        claimed = await claim_due(pool, "worker-a", limit=10, lease=60, group_seconds=0)
        ids = sorted(i.log_id for g in claimed for i in g.items)
        assert ids
        assert sorted(await renew_lease(pool, "worker-a", ids, 60)) == ids  # still ours
        # the group waited too long: its lease ran out and another worker took it
        await db.execute(
            "UPDATE notification_log SET lease_until = now() - interval '1 second' "
            "WHERE id = ANY($1)",
            ids,
        )
        assert await renew_lease(pool, "worker-a", ids, 60) == []
        taken = await claim_due(pool, "worker-b", limit=10, lease=60, group_seconds=0)
        assert sorted(i.log_id for g in taken for i in g.items) == ids
        assert await renew_lease(pool, "worker-a", ids, 60) == []
        assert sorted(await renew_lease(pool, "worker-b", ids, 60)) == ids
    finally:
        await pool.close()


async def test_a_failed_sms_gives_its_rate_limit_slot_back(
    hub_config: HubConfig, db: asyncpg.Connection, unique: str
) -> None:
    """The limit counts messages sent: a send Twilio refused must not use up the hour."""
    key = await provision_resource(db, f"cust-{unique}", "api_calls", 1000)
    await save_preferences(db, Preferences(rate_limits_per_hour={"sms": 1}), tenant_id=None)
    async with http_server(FakeHttp([(500, {})])) as twilio:
        await prefs(
            db,
            f"cust-{unique}",
            email=ChannelPrefs(enabled=False),
            sms=ChannelPrefs(enabled=True, min_severity="CRITICAL", recipients=["+4915112345670"]),
        )
        async with notifier(hub_config, notify_config(twilio_url=twilio.url)):
            with anyio.fail_after(30):
                await raise_alert(db, key, "CRITICAL", "990")
                await until(lambda: db.fetchval("SELECT status = 'SENT' FROM notification_log"))
    assert [r.status for r in twilio.requests] == [500, 201]
    outcomes = await db.fetch("SELECT outcome FROM notification_attempts ORDER BY id")
    assert [o["outcome"] for o in outcomes] == ["retry", "sent"]  # never deferred
    assert await db.fetchval("SELECT sum(sent) FROM notification_rate") == 1


async def test_a_rate_limit_of_zero_dead_letters_at_the_deadline_instead_of_deferring_forever(
    hub_config: HubConfig, db: asyncpg.Connection, unique: str
) -> None:
    key = await provision_resource(db, f"cust-{unique}", "api_calls", 1000)
    await save_preferences(db, Preferences(rate_limits_per_hour={"sms": 0}), tenant_id=None)
    async with http_server(FakeHttp()) as twilio:
        await prefs(
            db,
            f"cust-{unique}",
            email=ChannelPrefs(enabled=False),
            sms=ChannelPrefs(enabled=True, min_severity="CRITICAL", recipients=["+4915112345670"]),
        )
        config = notify_config(twilio_url=twilio.url, deadline_seconds=30)
        async with notifier(hub_config, config):
            with anyio.fail_after(30):
                await raise_alert(db, key, "CRITICAL", "990")
                await until(lambda: db.fetchval("SELECT status = 'DEAD' FROM notification_log"))
    assert twilio.requests == []
    error = await db.fetchval("SELECT last_error FROM notification_log")
    assert "rate limit" in error


async def test_a_failed_group_dead_letters_only_the_rows_past_their_own_deadline(
    hub_config: HubConfig, db: asyncpg.Connection, unique: str
) -> None:
    """A fresh alert grouped with an old failing one is retried, not buried with it."""
    from hub.notify._exceptions import DeliveryError
    from hub.notify.log import claim_due
    from hub.notify.router import route_pending
    from hub.notify.worker import Notifier, NotifyMetrics

    customer = f"cust-{unique}"
    keys = [await provision_resource(db, customer, t, 1000) for t in ("api_calls", "cpu")]
    await prefs(
        db,
        customer,
        email=ChannelPrefs(enabled=False),
        webhook=ChannelPrefs(enabled=True, url="http://hooks.example/x"),
    )
    for key in keys:
        await raise_alert(db, key)
    config = notify_config(worker_id="worker-a")
    pool = await asyncpg.create_pool(hub_config.database_url, min_size=1, max_size=4)
    try:
        worker = Notifier(pool, config, NotifyMetrics(CollectorRegistry()), {})
        assert await route_pending(pool, config) == 2
        old, fresh = [r["id"] for r in await db.fetch("SELECT id FROM notification_log")]
        await db.execute(
            "UPDATE notification_log SET deadline_at = now() - interval '1 second' WHERE id = $1",
            old,
        )
        (group,) = await claim_due(pool, "worker-a", limit=10, lease=60, group_seconds=60)
        assert sorted(group.meta) == sorted([old, fresh])
        await worker._failed(group, [old, fresh], DeliveryError("webhook: 503"))
    finally:
        await pool.close()
    got = dict(await db.fetch("SELECT id, status FROM notification_log"))
    assert got == {old: "DEAD", fresh: "PENDING"}
