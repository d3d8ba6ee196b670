"""Usage history on PostgreSQL: known readings stored raw and aggregated by the hub's own
aggregate writer, then read back per level with the exact bucket sums worked out here."""

from __future__ import annotations

import datetime as dt
import itertools
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator, Iterable
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp
import anyio
import asyncpg  # type: ignore[import-untyped]
import msgspec
import pytest
from _hub_testing import wait_for
from _keys import bearer, make_key
from _problem import named
from aiohttp.test_utils import TestClient, TestServer

from hub import HubConfig, RunningHub, provision_resource
from hub.api import ApiContext, create_app
from hub.metrics import HubMetrics
from hub.storage.aggregates import Bucketer, write_aggregates
from hub.storage.history import plan
from protocol import UsageReading

pytestmark = [pytest.mark.integration, pytest.mark.anyio]

CUSTOMER = "cust-hist"
GB = 1_000_000_000
DAY0 = dt.datetime(2026, 3, 5, tzinfo=dt.UTC)
_ids = itertools.count()

#: one reading: (end, value in bytes)
Reading = tuple[dt.datetime, int]


def _ms(at: dt.datetime) -> int:
    return int(at.timestamp() * 1000)


async def _store(
    db: asyncpg.Connection, key: str, readings: Iterable[Reading], tz: str = "UTC"
) -> None:
    """Store ``readings`` (each one minute long) as the consumer does: a raw row each,
    and their hour/day/week/month buckets through :func:`write_aggregates`."""
    row = await db.fetchrow(
        """SELECT cr.id::text AS id, cr.kind, rc.unit, rc.cost_per_unit::text AS cpu
           FROM customer_resources cr JOIN resource_catalogs rc ON rc.id = cr.resource_catalog_id
           WHERE cr.resource_key = $1""",
        key,
    )
    customer, rtype = key.split("/")[:2]
    inputs = []
    for end, value in readings:
        reading = UsageReading(
            customer_id=customer,
            resource_type=rtype,
            resource_key=key,
            value=value,
            unit="byte",
            start_ms=_ms(end) - 60_000,
            end_ms=_ms(end),
            kind=row["kind"],
        )
        inputs.append((row["id"], reading, row["unit"], row["cpu"]))
        await db.execute(
            """INSERT INTO usage_metrics (customer_resource_id, event_id, metric_start,
                   metric_timestamp, metric_value, metric_unit, kind, source)
               VALUES ($1::uuid, $2, $3, $4, $5, 'byte', $6, 'test')""",
            row["id"],
            f"ev-{next(_ids)}",
            end - dt.timedelta(minutes=1),
            end,
            value,
            row["kind"],
        )
    async with db.transaction():
        await write_aggregates(db, inputs, Bucketer(ZoneInfo(tz)))


def _expected(
    readings: Iterable[Reading], start: dt.datetime, end: dt.datetime, step: dt.timedelta
) -> list[tuple[dt.datetime, int]]:
    """(bucket start, sum) of the readings ending in ``[start, end)``, buckets of ``step``."""
    sums: dict[int, int] = defaultdict(int)
    for at, value in readings:
        if start <= at < end:
            sums[(at - start) // step] += value
    return [(start + i * step, sums[i]) for i in sorted(sums)]


def _got(body: dict[str, Any]) -> list[tuple[dt.datetime, int]]:
    return [(dt.datetime.fromisoformat(p["t"]), p["baseValue"]) for p in body["points"]]


@pytest.fixture
async def bandwidth(db: asyncpg.Connection) -> str:
    return await provision_resource(db, CUSTOMER, "bandwidth", 500 * GB, warning=70, critical=90)


async def _client(config: HubConfig, db: asyncpg.Connection) -> TestClient:
    app = create_app(ApiContext(config=config, db=db, metrics=HubMetrics()))
    return TestClient(TestServer(app), headers=bearer(await make_key(db)))


@pytest.fixture
async def client(hub_config: HubConfig, db: asyncpg.Connection) -> AsyncIterator[TestClient]:
    async with await _client(hub_config, db) as c:
        yield c


def _path(key: str) -> str:
    return f"/api/usage/customers/{CUSTOMER}/resources/{key}/history"


async def _history(client: TestClient, key: str, **params: str) -> dict[str, Any]:
    resp = await client.get(_path(key), params=params)
    assert resp.status == 200, await resp.text()
    body: dict[str, Any] = await resp.json()
    assert len(body["points"]) <= int(params.get("points", "500"))
    return body


def _every(start: dt.datetime, count: int, every: dt.timedelta, first: int) -> list[Reading]:
    """``count`` readings ending ``every`` apart from ``start``, of ``first``, ``first + 1``..
    bytes times a large odd factor (so sums are exact far beyond a float's 2**53)."""
    factor = 123_456_789_013
    return [(start + i * every, (first + i) * factor) for i in range(count)]


async def test_raw_buckets_are_exact_sums(
    client: TestClient, db: asyncpg.Connection, bandwidth: str
) -> None:
    readings = _every(DAY0 + dt.timedelta(seconds=30), 48, dt.timedelta(minutes=5), 1)
    await _store(db, bandwidth, readings)
    start, end = DAY0, DAY0 + dt.timedelta(hours=2)
    body = await _history(
        client, bandwidth, **{"from": "2026-03-05T00:00:00Z", "to": end.isoformat(), "points": "12"}
    )
    assert (body["source"], body["stepSeconds"]) == ("raw", 600)
    expected = _expected(readings, start, end, dt.timedelta(minutes=10))
    assert len(expected) == 12
    assert _got(body) == expected
    assert dt.datetime.fromisoformat(body["from"]) == start
    assert dt.datetime.fromisoformat(body["to"]) == end
    # the catalog unit (GB) as an exact decimal string, and what a chart draws beside it
    first = body["points"][0]
    assert Decimal(first["value"]) * GB == first["baseValue"]
    assert "E" not in first["value"]
    assert body["unit"] == "GB"
    assert body["baseUnit"] == "byte"
    assert body["kind"] == "delta"
    assert (body["limit"], body["limitInUnit"]) == (500 * GB, "500")
    assert (body["warningThreshold"], body["criticalThreshold"]) == ("70.00", "90.00")
    assert (body["customerId"], body["resourceKey"]) == (CUSTOMER, bandwidth)


async def test_raw_downsampling_keeps_the_bound_and_the_total(
    client: TestClient, db: asyncpg.Connection, bandwidth: str
) -> None:
    readings = _every(DAY0, 600, dt.timedelta(seconds=6), 1)  # one an every 6 s for an hour
    await _store(db, bandwidth, readings)
    start, end = DAY0, DAY0 + dt.timedelta(hours=1)
    for points in (2, 7, 59, 600, 5000):
        body = await _history(
            client,
            bandwidth,
            **{"from": start.isoformat(), "to": end.isoformat(), "points": str(points)},
        )
        assert body["source"] == "raw"
        assert len(body["points"]) <= points
        step = dt.timedelta(seconds=body["stepSeconds"])
        assert _got(body) == _expected(readings, start, end, step), points
        assert sum(p["baseValue"] for p in body["points"]) == sum(
            v for at, v in readings if at < end
        )


async def test_hourly_buckets_are_exact_sums_over_a_widened_range(
    client: TestClient, db: asyncpg.Connection, bandwidth: str
) -> None:
    readings = _every(DAY0 + dt.timedelta(minutes=7), 3 * 24 * 4, dt.timedelta(minutes=15), 5)
    await _store(db, bandwidth, readings)
    # 3 days in at most 10 points: hourly rows, 8 hours a bucket (ceil(72 / 10) hours)
    body = await _history(
        client,
        bandwidth,
        **{"from": "2026-03-05T00:20:00Z", "to": "2026-03-07T23:50:00+00:00", "points": "10"},
    )
    assert body["source"] == "hourly"
    assert body["stepSeconds"] == 8 * 3600
    start, end = DAY0, DAY0 + dt.timedelta(days=3)  # widened to whole hours
    assert (dt.datetime.fromisoformat(body["from"]), dt.datetime.fromisoformat(body["to"])) == (
        start,
        end,
    )
    expected = _expected(readings, start, end, dt.timedelta(hours=8))
    assert len(expected) == 9
    assert _got(body) == expected
    # a named range ending now is hourly too, from the default 500 points
    for span in ("7d", "30d"):
        assert (await _history(client, bandwidth, range=span))["source"] == "hourly"


async def test_daily_buckets_are_exact_sums(
    client: TestClient, db: asyncpg.Connection, bandwidth: str
) -> None:
    readings = _every(DAY0 + dt.timedelta(hours=1), 10 * 8, dt.timedelta(hours=3), 2)
    await _store(db, bandwidth, readings)
    start, end = DAY0, DAY0 + dt.timedelta(days=10)
    body = await _history(
        client, bandwidth, **{"from": start.isoformat(), "to": end.isoformat(), "points": "4"}
    )
    assert (body["source"], body["stepSeconds"]) == ("daily", 3 * 86400)
    expected = _expected(readings, start, end, dt.timedelta(days=3))
    assert len(expected) == 4
    assert _got(body) == expected
    # the total of every bucket is the total stored
    assert sum(p["baseValue"] for p in body["points"]) == sum(v for _, v in readings)


async def test_daily_buckets_follow_billing_days_across_a_dst_change(
    hub_config: HubConfig, db: asyncpg.Connection, bandwidth: str
) -> None:
    """New York moves its clocks on 2026-03-08: that day has 23 hours; buckets are days
    there, and every reading counts in the local day its interval ends in."""
    tz = ZoneInfo("America/New_York")
    readings = _every(DAY0 + dt.timedelta(minutes=30), 7 * 24, dt.timedelta(hours=1), 3)
    await _store(db, bandwidth, readings, tz="America/New_York")
    config = msgspec.structs.replace(hub_config, billing_tz="America/New_York")
    async with await _client(config, db) as client:
        body = await _history(
            client,
            bandwidth,
            **{"from": "2026-03-05T05:00:00Z", "to": "2026-03-11T04:00:00Z", "points": "3"},
        )
    assert (body["source"], body["stepSeconds"]) == ("daily", 2 * 86400)
    first = dt.date(2026, 3, 5)
    sums: dict[dt.date, int] = defaultdict(int)
    for at, value in readings:
        day = at.astimezone(tz).date()
        if first <= day < dt.date(2026, 3, 11):
            pair = (day - first).days // 2  # two local days a bucket
            sums[first + dt.timedelta(days=2 * pair)] += value
    expected = [
        (dt.datetime(d.year, d.month, d.day, tzinfo=tz).astimezone(dt.UTC), v)
        for d, v in sorted(sums.items())
    ]
    assert len(expected) == 3
    assert _got(body) == expected
    assert expected[2][0] - expected[1][0] == dt.timedelta(hours=47)  # Mar 7 + the short Mar 8


async def test_a_level_resource_shows_each_buckets_highest_level(
    client: TestClient, db: asyncpg.Connection
) -> None:
    key = await provision_resource(db, CUSTOMER, "storage", 1000 * GB)
    levels = [
        (DAY0 + dt.timedelta(minutes=m), v * GB) for m, v in [(1, 5), (2, 9), (3, 4), (11, 2)]
    ]
    await _store(db, key, levels)
    body = await _history(
        client, key, **{"from": DAY0.isoformat(), "to": "2026-03-05T00:20:00Z", "points": "2"}
    )
    assert body["kind"] == "level"
    assert [(p["baseValue"], p["value"]) for p in body["points"]] == [(9 * GB, "9"), (2 * GB, "2")]


async def test_named_ranges_end_now_and_short_ones_read_raw_rows(
    client: TestClient, db: asyncpg.Connection, bandwidth: str
) -> None:
    now = dt.datetime.now(dt.UTC)
    readings = [(now - dt.timedelta(minutes=m), m * GB) for m in (5, 20, 50, 70, 200)]
    await _store(db, bandwidth, readings)
    short = await _history(client, bandwidth, range="1h")
    assert short["source"] == "raw"
    assert sorted(p["baseValue"] for p in short["points"]) == [5 * GB, 20 * GB, 50 * GB]
    day = await _history(client, bandwidth, range="24h", points="24")
    assert day["source"] == "hourly"  # 24 buckets of 24 hours: an hour each
    assert sum(p["baseValue"] for p in day["points"]) == 345 * GB
    default = await _history(client, bandwidth)  # 24h in 500 points: raw
    assert default["source"] == "raw"
    assert sum(p["baseValue"] for p in default["points"]) == 345 * GB
    # the key without the customer id works too
    tail = bandwidth.split("/", 1)[1]
    again = await _history(client, tail, range="1h")
    assert sorted(p["baseValue"] for p in again["points"]) == [5 * GB, 20 * GB, 50 * GB]


@pytest.mark.parametrize(
    ("query", "where"),
    [
        ({"range": "2h"}, "range"),
        ({"range": "1h", "from": "2026-03-05T00:00:00Z"}, "range"),
        ({"points": "0"}, "points"),
        ({"points": "5001"}, "points"),
        ({"points": "many"}, "points"),
        ({"from": "yesterday"}, "from"),
        ({"from": "2026-03-05T00:00:00"}, "from"),
        ({"to": "2026-03-05T00:00:00Z"}, "from"),
        ({"from": "2026-03-05T00:00:00Z", "to": "2026-03-04T00:00:00Z"}, "from"),
        ({"from": "2026-03-05T00:00:00Z", "to": "not a time"}, "to"),
        ({"from": "0001-01-01T00:00:00+00:00", "to": "2026-03-04T00:00:00Z"}, "from"),
        ({"from": "0001-01-01T00:00:00+01:00"}, "from"),  # before year 1 in UTC
        ({"from": "2026-03-05T00:00:00Z", "to": "9999-12-31T23:59:59+00:00"}, "to"),
    ],
)
async def test_bad_parameters_are_400_naming_them(
    client: TestClient, bandwidth: str, query: dict[str, str], where: str
) -> None:
    resp = await client.get(_path(bandwidth), params=query)
    assert resp.status == 400, await resp.text()
    assert named(await resp.json()) == where


async def test_unknown_and_other_tenants_resources_are_404(
    client: TestClient, db: asyncpg.Connection, bandwidth: str
) -> None:
    tenant = str(uuid.uuid4())
    await db.execute("INSERT INTO tenants (id, name) VALUES ($1::uuid, 'other')", tenant)
    await db.execute("INSERT INTO customers (id, tenant_id) VALUES ('their', $1::uuid)", tenant)
    theirs = await provision_resource(db, "their", "bandwidth", GB)
    for path in (
        _path(f"{CUSTOMER}/bandwidth/nothing"),
        f"/api/usage/customers/their/resources/{theirs}/history",
        _path(theirs),  # their resource under my customer
        "/api/usage/customers/nobody/resources/nobody/bandwidth/history",
    ):
        resp = await client.get(path, params={"range": "1h"})
        assert resp.status == 404, (path, await resp.text())
        assert "not found" in (await resp.json())["detail"]


def test_the_plan_never_exceeds_the_points() -> None:
    """Every level, for ranges of a second to a year and any number of points."""
    utc = ZoneInfo("UTC")
    horizon = DAY0 - dt.timedelta(days=365)
    spans = [dt.timedelta(seconds=s) for s in (1, 59, 3601, 86_399, 172_800, 604_801)]
    spans += [dt.timedelta(days=d, minutes=7) for d in (30, 91, 200, 365)]
    for span, points in itertools.product(spans, (1, 2, 3, 7, 500, 4999, 5000)):
        start = DAY0 + dt.timedelta(minutes=13, seconds=5)
        p = plan(start, start + span, points, tz=utc, raw_horizon=horizon)
        assert 1 <= p.buckets <= points, (span, points, p)
        assert p.start <= start
        assert p.end >= start + span


async def test_readings_ingested_through_the_hub_come_back_in_their_buckets(
    hub: RunningHub, http: aiohttp.ClientSession, db: asyncpg.Connection
) -> None:
    """The whole path: ingest -> broker -> consumer (raw rows and aggregates) -> history."""
    customer = "cust-e2e-hist"
    key = await provision_resource(db, customer, "bandwidth", 100 * GB)
    sent = {  # timestamp (the interval's end) -> bytes
        "2026-11-20T10:05:00Z": 1_500_000_000,
        "2026-11-20T10:35:00Z": 250_000_000,
        "2026-11-20T11:10:00Z": 3 * GB,
        "2026-11-20T13:59:59Z": 7,
    }
    events = [
        {
            "customerId": customer,
            "resourceType": "bandwidth",
            "value": str(v),
            "unit": "byte",
            "timestamp": at,
            "eventId": f"e2e-{at}",
        }
        for at, v in sent.items()
    ]
    resp = await http.post("/api/metrics/ingest", json=events)
    assert resp.status == 200, await resp.text()
    with anyio.fail_after(30):
        await wait_for(
            db,
            """SELECT count(*) FROM usage_metrics m JOIN customer_resources cr
               ON cr.id = m.customer_resource_id WHERE cr.resource_key = $1""",
            len(sent),
            key,
        )
    path = f"/api/usage/customers/{customer}/resources/{key}/history"
    window = {"from": "2026-11-20T10:00:00Z", "to": "2026-11-20T14:00:00Z"}
    resp = await http.get(path, params={**window, "points": "8"})  # 30 min buckets, raw
    body = await resp.json()
    assert body["source"] == "raw"
    assert [(p["t"], p["baseValue"]) for p in body["points"]] == [
        ("2026-11-20T10:00:00Z", 1_500_000_000),
        ("2026-11-20T10:30:00Z", 250_000_000),
        ("2026-11-20T11:00:00Z", 3 * GB),
        ("2026-11-20T13:30:00Z", 7),
    ]
    resp = await http.get(path, params={**window, "points": "2"})  # 2 h buckets, hourly rows
    body = await resp.json()
    assert body["source"] == "hourly"
    assert [(p["t"], p["baseValue"], p["value"]) for p in body["points"]] == [
        ("2026-11-20T10:00:00Z", 4_750_000_000, "4.75"),
        ("2026-11-20T12:00:00Z", 7, "0.000000007"),
    ]
