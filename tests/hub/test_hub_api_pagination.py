"""Cursor pagination of every list route: walk all pages while rows are being added.

Each list gets rows whose sort keys tie (same creation time, same saving) so
the id tie-break is exercised; between two pages more rows are inserted. Every
row that existed before the walk must come back exactly once, in the list's
order, and no row twice.
"""

from __future__ import annotations

import datetime as dt
import itertools
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from decimal import Decimal
from typing import Any

import asyncpg  # type: ignore[import-untyped]
import pytest
from _keys import bearer, make_key
from _problem import named
from aiohttp.test_utils import TestClient, TestServer

from hub import HubConfig, provision_resource
from hub.api import ApiContext, create_app
from hub.api._pagination import decode_cursor, encode_cursor
from hub.metrics import HubMetrics

pytestmark = [pytest.mark.integration, pytest.mark.anyio]

T0 = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)
_serial = itertools.count()


@pytest.fixture
async def client(hub_config: HubConfig, db: asyncpg.Connection) -> AsyncIterator[TestClient]:
    app = create_app(ApiContext(config=hub_config, db=db, metrics=HubMetrics()))
    async with TestClient(TestServer(app), headers=bearer(await make_key(db))) as c:
        yield c


@pytest.fixture
async def resource(db: asyncpg.Connection) -> str:
    return await provision_resource(db, "cust-pages", "api_calls", 1000)


async def _walk(
    client: TestClient,
    path: str,
    params: dict[str, str],
    limit: int,
    between: Callable[[], Awaitable[None]],
) -> list[dict[str, Any]]:
    """Every item of every page (``limit`` a page), calling ``between`` after each page."""
    items: list[dict[str, Any]] = []
    cursor: str | None = None
    pages = 0
    while True:
        query = {**params, "limit": str(limit)}
        if cursor is not None:
            query["cursor"] = cursor
        resp = await client.get(path, params=query)
        assert resp.status == 200, await resp.text()
        body = await resp.json()
        assert set(body) == {"items", "next"}
        assert len(body["items"]) <= limit
        items.extend(body["items"])
        pages += 1
        assert pages < 100, "the cursor does not advance"
        cursor = body["next"]
        if cursor is None:
            return items
        assert len(body["items"]) == limit  # only the last page is short
        await between()


def _once(ids: list[str], expected: list[str]) -> None:
    """``expected`` (in order) are all in ``ids``, each once; nothing is in ``ids`` twice."""
    assert len(ids) == len(set(ids)), "a row came back twice"
    assert [i for i in ids if i in set(expected)] == expected


async def _alert(
    db: asyncpg.Connection,
    resource: str,
    at: dt.datetime,
    severity: str = "HIGH",
    alert_type: str = "THRESHOLD_WARNING",
) -> str:
    return str(
        await db.fetchval(
            """INSERT INTO alerts (customer_resource_id, alert_type, severity, message, status,
                   resolved_at, resolution, created_at)
               SELECT id, $2, $3, 'test alert', 'RESOLVED', $4, 'test', $4
               FROM customer_resources WHERE resource_key = $1
               RETURNING id::text""",
            resource,
            alert_type,
            severity,
            at,
        )
    )


async def test_alerts_every_row_once_with_rows_added_between_pages(
    client: TestClient, db: asyncpg.Connection, resource: str
) -> None:
    # 23 alerts over 8 instants (ties share a creation time), severities alternating
    made = []
    for i in range(23):
        at = T0 + dt.timedelta(minutes=i // 3)
        severity = "CRITICAL" if i % 2 else "HIGH"
        made.append((at, await _alert(db, resource, at, severity), severity))
    newest_first = [aid for at, aid, _ in sorted(made, key=lambda m: (-m[0].timestamp(), m[1]))]

    async def add() -> None:  # one newer, one older and one tying the oldest
        await _alert(db, resource, T0 + dt.timedelta(hours=1, seconds=next(_serial)))
        await _alert(db, resource, T0 - dt.timedelta(hours=1, seconds=next(_serial)))
        await _alert(db, resource, T0)

    ids = [a["id"] for a in await _walk(client, "/api/alerts", {}, 5, add)]
    _once(ids, newest_first)

    # the filters: severity, type, a time window; each walked in pages too
    severity_of = {aid: severity for _, aid, severity in made}
    critical = [aid for aid in newest_first if severity_of[aid] == "CRITICAL"]

    async def nothing() -> None:
        return None

    got = await _walk(client, "/api/alerts", {"severity": "critical"}, 4, nothing)
    assert [a["id"] for a in got] == critical
    window = {"from": (T0 + dt.timedelta(minutes=2)).isoformat(), "to": "2026-03-01T12:05:00Z"}
    got = await _walk(client, "/api/alerts", window, 2, nothing)
    expected = [
        aid
        for at, aid, _ in sorted(made, key=lambda m: (-m[0].timestamp(), m[1]))
        if T0 + dt.timedelta(minutes=2) <= at < T0 + dt.timedelta(minutes=5)
    ]
    assert len(expected) == 9
    assert [a["id"] for a in got] == expected
    anomaly = await _alert(db, resource, T0, "MEDIUM", "ANOMALY_DETECTED")
    resp = await client.get("/api/alerts", params={"type": "ANOMALY_DETECTED"})
    assert [a["id"] for a in (await resp.json())["items"]] == [anomaly]
    resp = await client.get("/api/alerts", params={"resourceKey": "cust-pages/none"})
    assert await resp.json() == {"items": [], "next": None}


@pytest.mark.parametrize(
    ("query", "where"),
    [
        ({"limit": "0"}, "limit"),
        ({"limit": "501"}, "limit"),
        ({"limit": "ten"}, "limit"),
        ({"cursor": "not a cursor"}, "cursor"),
        ({"cursor": encode_cursor(["2026-01-01T00:00:00Z"])}, "cursor"),  # too few fields
        ({"cursor": encode_cursor(["yesterday", "x"])}, "cursor"),  # not a time
        ({"cursor": encode_cursor(["2026-01-01T00:00:00Z", "x"])}, "cursor"),  # not an id
        ({"cursor": encode_cursor(["2026-01-01T00:00:00", str(uuid.uuid4())])}, "cursor"),
        ({"severity": "URGENT"}, "severity"),
        ({"type": "THRESHOLD"}, "type"),
        ({"status": "OPEN"}, "status"),
        ({"from": "last tuesday"}, "from"),
        ({"to": "2026-03-01T12:00:00"}, "to"),  # no offset
        ({"to": "9999-12-31T23:00:00-05:00"}, "to"),  # after year 9999 in UTC
        ({"from": "2026-03-02T00:00:00Z", "to": "2026-03-01T00:00:00Z"}, "from"),
    ],
)
async def test_bad_list_parameters_are_400_naming_them(
    client: TestClient, query: dict[str, str], where: str
) -> None:
    resp = await client.get("/api/alerts", params=query)
    assert resp.status == 400, await resp.text()
    body = await resp.json()
    assert named(body) == where, body


async def test_a_cursor_of_another_list_or_out_of_range_is_refused(client: TestClient) -> None:
    an_id = str(uuid.uuid4())
    alerts_cursor = encode_cursor([T0, an_id])
    assert decode_cursor(alerts_cursor, (dt.datetime, uuid.UUID)) == (T0, an_id)
    cases = {
        "/api/notifications": [alerts_cursor, encode_cursor([0]), encode_cursor([2**63])],
        "/api/recommendations": [
            alerts_cursor,
            encode_cursor(["NaN", an_id]),
            encode_cursor(["1E+99999", an_id]),
            encode_cursor(["12.50", "not-an-id"]),
        ],
        "/api/keys": [encode_cursor([12, an_id]), encode_cursor([T0, an_id, 1])],
    }
    for path, cursors in cases.items():
        for cursor in cursors:
            resp = await client.get(path, params={"cursor": cursor})
            assert (resp.status, named(await resp.json())) == (400, "cursor"), (path, cursor)


async def test_notifications_every_row_once_with_rows_added_between_pages(
    client: TestClient, db: asyncpg.Connection, resource: str
) -> None:
    alert = await _alert(db, resource, T0)
    transition = await db.fetchval(
        """INSERT INTO alert_transitions (alert_id, episode_id, customer_resource_id,
               transition, to_status, severity)
           SELECT a.id, a.id, a.customer_resource_id, 'RAISED', 'ACTIVE', 'HIGH'
           FROM alerts a WHERE a.id = $1::uuid RETURNING id""",
        alert,
    )

    async def log_row() -> int:
        return int(
            await db.fetchval(
                """INSERT INTO notification_log (transition_id, alert_id, episode_id,
                       customer_id, tenant_id, customer_resource_id, channel, transition_key,
                       transition, severity, status, deadline_at)
                   SELECT $1, a.id, a.id, cr.customer_id, c.tenant_id, cr.id, 'email', $2,
                          'RAISED', 'HIGH', 'SENT', now()
                   FROM alerts a JOIN customer_resources cr ON cr.id = a.customer_resource_id
                   JOIN customers c ON c.id = cr.customer_id
                   WHERE a.id = $3::uuid RETURNING id""",
                transition,
                f"RAISED:HIGH:{next(_serial)}",
                alert,
            )
        )

    made = [await log_row() for _ in range(17)]

    async def add() -> None:
        await log_row()

    got = await _walk(client, "/api/notifications", {"alertId": alert}, 4, add)
    ids = [str(n["id"]) for n in got]
    _once(ids, [str(i) for i in sorted(made, reverse=True)])


async def test_keys_every_row_once_with_rows_added_between_pages(
    client: TestClient, db: asyncpg.Connection
) -> None:
    for n in range(11):
        await make_key(db, ("read",), name=f"page-{n}")
    # two keys created in one transaction share created_at: the id breaks the tie
    async with db.transaction():
        await make_key(db, ("read",), name="tie-a")
        await make_key(db, ("read",), name="tie-b")
    rows = await db.fetch("SELECT id::text AS id FROM api_keys ORDER BY created_at, id")
    before = [r["id"] for r in rows]

    async def add() -> None:
        await make_key(db, ("read",), name=f"late-{next(_serial)}")

    got = await _walk(client, "/api/keys", {}, 3, add)
    ids = [k["id"] for k in got]
    _once(ids, before)
    # oldest first: the keys added during the walk come after, and are listed too
    assert len(ids) > len(before)


async def test_recommendations_every_row_once_with_rows_added_between_pages(
    client: TestClient, db: asyncpg.Connection, resource: str
) -> None:
    async def recommend(savings: Decimal) -> str:
        rid = str(uuid.uuid4())
        await db.execute(
            """INSERT INTO recommendations (id, customer_id, customer_resource_id, kind,
                   monthly_savings, currency, effort, description, evidence)
               SELECT $1::uuid, cr.customer_id, cr.id, 'ELIMINATE_WASTE', $2, 'USD', 'low',
                      'idle', '{}'::jsonb
               FROM customer_resources cr WHERE cr.resource_key = $3""",
            rid,
            savings,
            resource,
        )
        return rid

    made = [(Decimal(s), await recommend(Decimal(s))) for s in ["10.50"] * 4 + ["3", "99.99"] * 4]
    largest_first = [rid for s, rid in sorted(made, key=lambda m: (-m[0], uuid.UUID(m[1])))]

    async def add() -> None:
        await recommend(Decimal("10.50"))  # ties a listed saving
        await recommend(Decimal("1000"))

    got = await _walk(client, "/api/recommendations", {"customerId": "cust-pages"}, 3, add)
    _once([r["recommendationId"] for r in got], largest_first)
