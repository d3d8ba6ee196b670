"""Alert lifecycle: who/when/comment, the audit trail, illegal transitions (409)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import anyio
import asyncpg  # type: ignore[import-untyped]
import pytest
from _keys import bearer
from _notify_fakes import raise_alert, recover

from hub import HubConfig, provision_resource
from hub.alerts import lifecycle
from hub.api import ApiContext, create_app, serve
from hub.api._http import PROBLEM_BASE
from hub.metrics import HubMetrics

pytestmark = [pytest.mark.integration, pytest.mark.anyio]


@pytest.fixture
async def resource(db: asyncpg.Connection, unique: str) -> str:
    return await provision_resource(db, f"cust-{unique}", "api_calls", 1000)


@pytest.fixture
async def api(
    hub_config: HubConfig, db: asyncpg.Connection, api_key: str
) -> AsyncIterator[aiohttp.ClientSession]:
    pool = await asyncpg.create_pool(hub_config.database_url, min_size=1, max_size=4)
    try:
        async with anyio.create_task_group() as tg:
            app = create_app(ApiContext(config=hub_config, db=pool, metrics=HubMetrics()))
            port = await tg.start(serve, app, "127.0.0.1", 0)
            base = f"http://127.0.0.1:{port}"
            async with aiohttp.ClientSession(base_url=base, headers=bearer(api_key)) as session:
                yield session
            tg.cancel_scope.cancel()
    finally:
        await pool.close()


async def test_acknowledge_then_resolve_records_who_when_and_comment_in_the_audit_trail(
    db: asyncpg.Connection, resource: str
) -> None:
    with anyio.fail_after(10):
        alert = await raise_alert(db, resource)
        acked = await lifecycle.acknowledge(db, alert, "noc-alice", "looking into it")
        assert (acked.status, acked.acknowledged_by) == ("ACKNOWLEDGED", "noc-alice")
        assert acked.acknowledged_at is not None
        done = await lifecycle.resolve(db, alert, "noc-bob", "customer upgraded")
        assert (done.status, done.resolved_by, done.resolution) == ("RESOLVED", "noc-bob", "manual")
        trail = await lifecycle.history(db, alert)
    assert [(t.transition, t.from_status, t.to_status, t.actor, t.comment) for t in trail] == [
        ("RAISED", None, "ACTIVE", "hub", None),
        ("ACKNOWLEDGED", "ACTIVE", "ACKNOWLEDGED", "noc-alice", "looking into it"),
        ("RESOLVED", "ACKNOWLEDGED", "RESOLVED", "noc-bob", "customer upgraded"),
    ]
    assert trail[0].at <= trail[1].at <= trail[2].at


async def test_escalation_and_recovery_stay_one_episode_in_the_trail(
    db: asyncpg.Connection, resource: str
) -> None:
    with anyio.fail_after(10):
        warning = await raise_alert(db, resource, "WARNING")
        critical = await raise_alert(db, resource, "CRITICAL", "960")
        await recover(db, resource)
        trail = await lifecycle.history(db, critical)
    assert {t.episode_id for t in trail} == {warning}
    assert [(t.transition, t.severity, t.resolution) for t in trail] == [
        ("RAISED", "HIGH", None),
        ("SUPERSEDED", "HIGH", "escalated"),
        ("ESCALATED", "CRITICAL", None),
        ("RESOLVED", "CRITICAL", "recovered"),
    ]


async def test_illegal_transitions_are_refused_with_the_current_status(
    db: asyncpg.Connection, resource: str
) -> None:
    with anyio.fail_after(10):
        alert = await raise_alert(db, resource)
        await lifecycle.resolve(db, alert, "noc-bob")
        with pytest.raises(lifecycle.IllegalTransitionError, match="is RESOLVED; it cannot"):
            await lifecycle.acknowledge(db, alert, "noc-alice")
        with pytest.raises(lifecycle.IllegalTransitionError, match="resolved by noc-bob"):
            await lifecycle.resolve(db, alert, "noc-carol")
        # the database refuses it too, whoever writes
        with pytest.raises(asyncpg.CheckViolationError, match="illegal alert transition"):
            await db.execute("UPDATE alerts SET status = 'ACTIVE' WHERE id = $1::uuid", alert)


async def test_api_acknowledge_resolve_history_and_409_on_an_illegal_transition(
    api: aiohttp.ClientSession, db: asyncpg.Connection, resource: str
) -> None:
    with anyio.fail_after(20):
        alert = await raise_alert(db, resource)
        resp = await api.post(
            f"/api/alerts/{alert}/acknowledge", json={"by": " ", "comment": "on it"}
        )
        assert resp.status == 200  # a blank "by": the API key's name acknowledges
        assert (await resp.json())["acknowledgedBy"] == "tests"
        resp = await api.post(f"/api/alerts/{alert}/acknowledge", json={"by": "noc-alice"})
        assert resp.status == 409
        body = await resp.json()
        assert "is ACKNOWLEDGED" in body["detail"]
        assert (body["type"], body["status"]) == (f"{PROBLEM_BASE}conflict", 409)
        resp = await api.post(f"/api/alerts/{alert}/resolve", json={"by": "noc-bob"})
        assert (await resp.json())["status"] == "RESOLVED"
        resp = await api.post(f"/api/alerts/{alert}/resolve", json={"by": "noc-bob"})
        assert resp.status == 409
        resp = await api.get(f"/api/alerts/{alert}/history")
        trail = await resp.json()
        assert [(t["transition"], t["actor"], t["comment"]) for t in trail] == [
            ("RAISED", "hub", None),
            ("ACKNOWLEDGED", "tests", "on it"),
            ("RESOLVED", "noc-bob", None),
        ]
        resp = await api.get(f"/api/alerts/{alert}")
        assert (await resp.json())["id"] == alert
        resp = await api.get("/api/alerts/00000000-0000-0000-0000-000000000001/history")
        assert resp.status == 404
        resp = await api.post("/api/alerts/not-a-uuid/acknowledge", json={"by": "x"})
        assert resp.status == 404
