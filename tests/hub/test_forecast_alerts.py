"""FORECAST_LIMIT alerts from the stored forecasts, on PostgreSQL with generated histories.

The refresh stores each resource's forecast (``cost_forecasts``) and then raises,
keeps or resolves the resource's stored-forecast alert through the alert
lifecycle: an ``alerts`` row, its ``alert_transitions`` audit trail (the
notification queue), and the CloudEvents in the hub's outbox.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from zoneinfo import ZoneInfo

import asyncpg  # type: ignore[import-untyped]
import msgspec
import pytest
from _metrics import sample
from test_forecast_storage import AS_OF, FIRST, GB, stored, weekly, write_days

from hub import provision_resource
from hub.alerts.lifecycle import resolve
from hub.alerts.records import AlertRecord
from hub.costs import MoneyPolicy
from hub.metrics import HubMetrics
from hub.outbox import OutboxBatch, forecast_alert_outbox
from hub.storage.batch import _write_alerts
from hub.storage.forecast_alerts import OpenForecastAlert, decide
from hub.storage.forecasts import ForecastRow, refresh

UTC = ZoneInfo("UTC")
MARCH = dt.date(2026, 3, 1)
APRIL = dt.date(2026, 4, 1)
MARGIN = Decimal("0.05")


def row(
    predicted: int | None, limit: int | None, start: dt.date = MARCH, reason: str | None = None
) -> ForecastRow:
    return ForecastRow(
        resource_id="00000000-0000-0000-0000-000000000001",
        period_start=start,
        period_end=start + dt.timedelta(days=31),
        as_of=start + dt.timedelta(days=14),
        limit_value=limit,
        predicted_usage=predicted,
        reason=reason,
    )


OPEN_MARCH = OpenForecastAlert("a-1", MARCH, "ACTIVE")


def test_the_decision_raises_keeps_and_resolves_by_the_forecast_of_the_period() -> None:
    def change(r: ForecastRow, o: OpenForecastAlert | None, manual: bool = False) -> object:
        d = decide(r, o, manually_resolved=manual, resolve_margin=MARGIN)
        return (d.resolve, d.raise_alert)

    # above the limit and nothing open: raise; exactly on the limit is not above it
    assert change(row(1001, 1000), None) == (None, True)
    assert change(row(1000, 1000), None) == (None, False)
    # already open for this period: keep (no second alert), also inside the margin
    assert change(row(1200, 1000), OPEN_MARCH) == (None, False)
    assert change(row(951, 1000), OPEN_MARCH) == (None, False)  # 951 >= 1000 x 0.95
    # below limit x (1 - margin): resolved, not raised again
    assert change(row(949, 1000), OPEN_MARCH) == (("a-1", "forecast_cleared"), False)
    # "no forecast" says nothing new: the alert stays
    assert change(row(None, 1000, reason="history_too_short"), OPEN_MARCH) == (None, False)
    # the limit removed
    assert change(row(5000, None), OPEN_MARCH) == (("a-1", "limit_removed"), False)
    # the next period: March's alert ends, April's forecast raises its own
    assert change(row(1200, 1000, APRIL), OPEN_MARCH) == (("a-1", "period_ended"), True)
    assert change(row(800, 1000, APRIL), OPEN_MARCH) == (("a-1", "period_ended"), False)
    # an operator resolved this period's alert: not raised again in the period
    assert change(row(1200, 1000), None, manual=True) == (None, False)


async def bandwidth(db: asyncpg.Connection, customer: str, limit: int) -> tuple[str, str]:
    """A bandwidth resource with a weekly history since November (about 177 GB a day)."""
    key = await provision_resource(db, customer, "bandwidth", limit)
    await write_days(db, key, weekly(1, 200 * GB, FIRST, dt.date(2026, 4, 30)))
    rid = await db.fetchval("SELECT id::text FROM customer_resources WHERE resource_key=$1", key)
    return key, str(rid)


async def forecast_alerts(db: asyncpg.Connection, rid: str) -> list[asyncpg.Record]:
    return list(
        await db.fetch(
            "SELECT * FROM alerts WHERE customer_resource_id = $1::uuid "
            "AND alert_type = 'FORECAST_LIMIT' ORDER BY created_at, id",
            rid,
        )
    )


async def transitions(db: asyncpg.Connection, rid: str) -> list[tuple[str, str, str | None]]:
    rows = await db.fetch(
        "SELECT transition, actor, resolution FROM alert_transitions "
        "WHERE customer_resource_id = $1::uuid ORDER BY id",
        rid,
    )
    return [(r["transition"], r["actor"], r["resolution"]) for r in rows]


async def set_limit(db: asyncpg.Connection, key: str, limit: int | None) -> None:
    await db.execute(
        "UPDATE customer_resources SET limit_value = $1 WHERE resource_key = $2", limit, key
    )


@pytest.mark.anyio
async def test_a_forecast_above_the_limit_raises_one_alert_per_period_and_a_lower_one_resolves_it(
    db: asyncpg.Connection, unique: str
) -> None:
    key, rid = await bandwidth(db, f"c-{unique}", 5_000 * GB)  # March runs to ~5,500 GB
    metrics = HubMetrics()
    sent: list[tuple[str, AlertRecord]] = []
    outbox = forecast_alert_outbox("urn:test", "alerts.test")

    async def on_alerts(conn: asyncpg.Connection, changed: list[tuple[str, AlertRecord]]) -> None:
        sent.extend(changed)
        await outbox(conn, changed)

    async def refreshed(today: dt.date = AS_OF) -> asyncpg.Record:
        await refresh(
            db, tz=UTC, money=MoneyPolicy(), metrics=metrics, today=today, on_alerts=on_alerts
        )
        return await stored(db, key) if today < APRIL else None

    forecast = await refreshed()
    assert forecast["predicted_usage"] > 5_000 * GB
    probability = forecast["probability_above_limit"]
    assert probability > Decimal("0.5")
    [alert] = await forecast_alerts(db, rid)
    assert alert["status"] == "ACTIVE"
    assert alert["severity"] == "MEDIUM"
    assert alert["forecast_period_start"] == MARCH
    assert alert["confidence"] == (probability * 100).quantize(Decimal("0.01"))
    assert alert["threshold_value"] == Decimal(5_000)
    assert alert["unit"] == "GB"
    assert f"probability {alert['confidence']}%" in alert["message"]
    assert await transitions(db, rid) == [("RAISED", "hub", None)]
    # the notification queue: the transition waits for the notifier's router
    assert await db.fetchval(
        "SELECT count(*) FROM alert_transitions WHERE alert_id = $1 AND routed_at IS NULL",
        alert["id"],
    )
    # its CloudEvent is in the outbox with the consumer's id scheme
    [payload] = await db.fetch("SELECT payload FROM hub_outbox")
    batch = msgspec.json.decode(payload["payload"], type=OutboxBatch)
    assert batch.topic == "alerts.test"
    assert [e.event_id for e in batch.events] == [f"{alert['id']}.active"]
    assert [(aid, r.status, r.confidence) for aid, r in sent] == [
        (str(alert["id"]), "ACTIVE", alert["confidence"])
    ]
    assert sample(metrics, "resmon_hub_forecast_alerts_total", status="active") == 1

    # the next refreshes of the period still say so: no second alert, no new transition
    await refreshed()
    await refreshed()
    assert len(await forecast_alerts(db, rid)) == 1
    assert len(await transitions(db, rid)) == 1

    # a limit just above the forecast is inside the 5 % margin: the alert stays
    await set_limit(db, key, forecast["predicted_usage"] + GB)
    await refreshed()
    assert [a["status"] for a in await forecast_alerts(db, rid)] == ["ACTIVE"]

    # 20 % above the forecast: resolved by the hub, audited
    await set_limit(db, key, forecast["predicted_usage"] * 12 // 10)
    await refreshed()
    [alert] = await forecast_alerts(db, rid)
    assert (alert["status"], alert["resolution"], alert["resolved_by"]) == (
        "RESOLVED",
        "forecast_cleared",
        "hub",
    )
    assert await transitions(db, rid) == [
        ("RAISED", "hub", None),
        ("RESOLVED", "hub", "forecast_cleared"),
    ]
    assert sent[-1][1].status == "RESOLVED"
    events = [
        e.event_id
        for r in await db.fetch("SELECT payload FROM hub_outbox ORDER BY id")
        for e in msgspec.json.decode(r["payload"], type=OutboxBatch).events
    ]
    assert events == [f"{alert['id']}.active", f"{alert['id']}.resolved"]

    # back over the limit later in the period: a new episode
    await set_limit(db, key, 5_000 * GB)
    await refreshed()
    alerts = await forecast_alerts(db, rid)
    assert [a["status"] for a in alerts] == ["RESOLVED", "ACTIVE"]
    assert alerts[1]["episode_id"] != alerts[0]["episode_id"]

    # April: March's alert ends with its period, April's forecast (also over) raises its own
    await refreshed(dt.date(2026, 4, 15))
    alerts = await forecast_alerts(db, rid)
    assert [(a["forecast_period_start"], a["status"], a["resolution"]) for a in alerts] == [
        (MARCH, "RESOLVED", "forecast_cleared"),
        (MARCH, "RESOLVED", "period_ended"),
        (APRIL, "ACTIVE", None),
    ]

    # an operator resolves April's: the refreshes of April do not raise it again
    await resolve(db, str(alerts[2]["id"]), "noc", "known, the customer pays the overage")
    await refreshed(dt.date(2026, 4, 16))
    assert [a["status"] for a in await forecast_alerts(db, rid)] == ["RESOLVED"] * 3


@pytest.mark.anyio
async def test_a_forecast_under_the_limit_or_without_one_raises_nothing(
    db: asyncpg.Connection, unique: str
) -> None:
    _, under = await bandwidth(db, f"c-{unique}", 10_000 * GB)
    await provision_resource(db, f"c-{unique}", "bandwidth", None, "wan2")
    unlimited = f"c-{unique}/bandwidth/wan2"
    await write_days(db, unlimited, weekly(4, 200 * GB, FIRST, AS_OF))
    summary = await refresh(db, tz=UTC, money=MoneyPolicy(), metrics=HubMetrics(), today=AS_OF)
    assert summary.made == 2
    assert await forecast_alerts(db, under) == []
    assert await db.fetchval("SELECT count(*) FROM alerts") == 0


@pytest.mark.anyio
async def test_the_actors_pace_alert_and_the_stored_forecast_alert_keep_their_own_episodes(
    db: asyncpg.Connection, unique: str
) -> None:
    key, rid = await bandwidth(db, f"c-{unique}", 5_000 * GB)
    pace = AlertRecord(
        resource_id=rid,
        resource_key=key,
        customer_id=f"c-{unique}",
        resource_type="bandwidth",
        transition="raise",
        alert_type="FORECAST_LIMIT",
        severity="MEDIUM",
        status="ACTIVE",
        message="pace",
        current_value=Decimal(1),
        threshold_value=Decimal(5000),
        limit_value=Decimal(5000),
        percentage=None,
        unit="GB",
        at_ms=0,
        check="forecast",
        confidence=Decimal(90),
    )
    [pace_id] = await _write_alerts(db, [pace])
    await refresh(db, tz=UTC, money=MoneyPolicy(), metrics=HubMetrics(), today=AS_OF)
    alerts = {a["message"] == "pace": a for a in await forecast_alerts(db, rid)}
    assert alerts[True]["forecast_period_start"] is None
    assert alerts[False]["forecast_period_start"] == MARCH
    assert {a["status"] for a in alerts.values()} == {"ACTIVE"}

    # the actor's resolution closes its own (pace) episode only
    resolved = msgspec.structs.replace(pace, transition="resolve", status="RESOLVED")
    assert await _write_alerts(db, [resolved]) == [pace_id]
    status = {
        a["forecast_period_start"]: (a["status"], a["resolution"])
        for a in await forecast_alerts(db, rid)
    }
    assert status == {None: ("RESOLVED", "recovered"), MARCH: ("ACTIVE", None)}
