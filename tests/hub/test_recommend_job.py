"""The recommendation job on PostgreSQL: day buckets and plans in, upserted advice out.

The figures are the hand calculations of tests/hub/test_costs_recommend.py,
here read from usage_aggregates, customer_resources and cost_models.
"""

from __future__ import annotations

import datetime as dt
import time
from decimal import Decimal
from zoneinfo import ZoneInfo

import aiohttp
import anyio
import asyncpg  # type: ignore[import-untyped]
import pytest
from _cost_fixtures import resource
from _hub_testing import minute_reading, until, wait_for
from _keys import bearer, make_key
from _problem import named
from aiohttp.test_utils import TestClient, TestServer
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from click.testing import CliRunner

from hub import HubConfig, NotFoundError, RunningHub, migrate, run_hub
from hub.api.app import ApiContext, create_app
from hub.cli import hub as hub_cli
from hub.costs import MoneyPolicy
from hub.costs.recommend import RecommendSettings
from hub.metrics import HubMetrics
from hub.outbox import Outbox, optimization_outbox
from hub.storage import recommendations
from hub.storage.provision import CHANGES_CHANNEL
from protocol import (
    TOPIC_OPTIMIZATION,
    TYPE_OPTIMIZATION,
    OptimizationEvent,
    UsageReading,
    decode_record,
    encode_event,
)

GB = 10**9
UTC = ZoneInfo("UTC")
pytestmark = [pytest.mark.integration]

TENANT = "00000000-0000-0000-0000-000000000000"


def today() -> dt.datetime:
    return dt.datetime.combine(dt.datetime.now(dt.UTC).date(), dt.time(), dt.UTC)


async def plan(db: asyncpg.Connection, rid: str, name: str, base: int, limit_gb: int) -> str:
    """A catalog plan for the resource's catalog entry: base + 0.50 per GB above its limit."""
    plan_id: str = await db.fetchval(
        "INSERT INTO cost_models (tenant_id, model_name, billing_period, base_cost, "
        "overage_rate, resource_catalog_id, limit_value) SELECT $1, $2, 'monthly', $3, 0.50, "
        "resource_catalog_id, $4 FROM customer_resources WHERE id = $5 RETURNING id::text",
        TENANT,
        name,
        Decimal(base),
        limit_gb * GB,
        rid,
    )
    return plan_id


async def on_plan(db: asyncpg.Connection, rid: str, plan_id: str, limit_gb: int) -> None:
    await db.execute(
        "UPDATE customer_resources SET cost_model_id = $2, limit_value = $3, "
        "created_at = now() - interval '60 days' WHERE id = $1",
        rid,
        plan_id,
        limit_gb * GB,
    )


async def days(db: asyncpg.Connection, rid: str, values: list[int]) -> None:
    """Day buckets for the last len(values) whole days, oldest first (base units)."""
    start = today() - dt.timedelta(days=len(values))
    for index, value in enumerate(values):
        at = start + dt.timedelta(days=index)
        await db.execute(
            "INSERT INTO usage_aggregates (customer_resource_id, period_type, period_start, "
            "period_end, total_usage, max_usage) VALUES ($1, 'day', $2, $3, $4, $5)",
            rid,
            at,
            at + dt.timedelta(days=1),
            value,
            value,
        )


async def months(db: asyncpg.Connection, rid: str, values: list[int]) -> None:
    """Month buckets for the last len(values) closed months, oldest first."""
    first = today().date().replace(day=1)
    starts = []
    for _ in values:
        first = (first - dt.timedelta(days=1)).replace(day=1)
        starts.insert(0, first)
    for start, value in zip(starts, values, strict=True):
        end = (start + dt.timedelta(days=32)).replace(day=1)
        await db.execute(
            "INSERT INTO usage_aggregates (customer_resource_id, period_type, period_start, "
            "period_end, total_usage, max_usage) VALUES ($1, 'month', $2, $3, $4, $5)",
            rid,
            dt.datetime.combine(start, dt.time(), dt.UTC),
            dt.datetime.combine(end, dt.time(), dt.UTC),
            value,
            value,
        )


async def on_large(
    db: asyncpg.Connection, customer: str, name: str, daily: list[int]
) -> tuple[str, str, dict[str, str]]:
    """A bandwidth resource on the large plan of a fresh catalog, with ``daily`` day buckets."""
    key, rid = await resource(db, customer, "bandwidth", name=name)
    plans = await catalog(db, rid)
    await on_plan(db, rid, plans["large"], 1000)
    await days(db, rid, daily)
    return key, rid, plans


async def send(producer: AIOKafkaProducer, topic: str, reading: UsageReading) -> None:
    record = encode_event(reading, source="urn:test")
    await producer.send_and_wait(topic, value=record.value, key=record.key, headers=record.headers)


async def catalog(db: asyncpg.Connection, rid: str) -> dict[str, str]:
    return {
        name: await plan(db, rid, name, base, limit)
        for name, base, limit in (("small", 20, 100), ("medium", 50, 300), ("large", 90, 1000))
    }


async def job(
    db: asyncpg.Connection, metrics: HubMetrics, **kw: object
) -> recommendations.RunResult:
    return await recommendations.run(
        db,
        settings=RecommendSettings(),
        money=MoneyPolicy(),
        tz=UTC,
        now_ms=time.time_ns() // 1_000_000,
        metrics=metrics,
        **kw,  # type: ignore[arg-type]
    )


@pytest.mark.anyio
async def test_the_job_stores_each_recommendation_once_and_refreshes_it(
    db: asyncpg.Connection,
) -> None:
    # 27 days at 3 GB, 3 at 5 GB: resize down to medium, 40.00 (see the pure test)
    _, _, plans = await on_large(db, "cust-1", "wan1", [3 * GB] * 27 + [5 * GB] * 3)
    _, up = await resource(db, "cust-1", "bandwidth", name="wan2")
    await on_plan(db, up, plans["small"], 100)
    # months of 200, 160, 240 GB on small: resize up to medium, 20.00
    await days(db, up, [7 * GB] * 30)
    await months(db, up, [200 * GB, 160 * GB, 240 * GB])
    metrics = HubMetrics()

    first = await job(db, metrics)
    assert first.resources == 2
    found = {
        (r.resource_key, r.direction, r.target_plan_id, r.monthly_savings) for r in first.created
    }
    assert found == {
        ("cust-1/bandwidth/wan1", "down", plans["medium"], Decimal("40.00")),
        ("cust-1/bandwidth/wan2", "up", plans["medium"], Decimal("20.00")),
    }
    sample = metrics.registry.get_sample_value
    assert sample("resmon_hub_recommendations_total", {"kind": "RESIZE_RESOURCE"}) == 2

    # the next day's run finds the same advice: no new row, no new audit line
    again = await job(db, metrics)
    assert (again.created, again.refreshed) == ([], 2)
    assert await db.fetchval("SELECT count(*) FROM recommendations") == 2
    assert await db.fetchval("SELECT count(*) FROM recommendation_audit") == 2
    assert sample("resmon_hub_recommendations_total", {"kind": "RESIZE_RESOURCE"}) == 2

    listed = await recommendations.listing(db, customer_id="cust-1", status="open")
    assert [(r.resource_key, r.monthly_savings) for r in listed] == [
        ("cust-1/bandwidth/wan1", "40.00"),
        ("cust-1/bandwidth/wan2", "20.00"),
    ]
    assert listed[0].evidence["p95DailyUsage"] == "5"
    assert await recommendations.listing(db, status="dismissed") == []


@pytest.mark.anyio
async def test_storage_growth_from_day_buckets(db: asyncpg.Connection) -> None:
    # catalog billing of storage: 0.05 per GB, unlimited; levels 1000 + 20 d GB
    _, rid = await resource(db, "cust-2", "storage")
    await db.execute(
        "UPDATE customer_resources SET created_at = now() - interval '60 days' WHERE id = $1", rid
    )
    levels = [(1000 + 20 * d) * GB for d in range(30)]
    await days(db, rid, levels)
    result = await job(db, HubMetrics(), customer_id="cust-2")
    # slope 20 GB/day: +600 GB in 30 days; half compressed saves 300 x 0.05 = 15.00
    [rec] = result.created
    assert (rec.kind, rec.monthly_savings) == ("COMPRESS_DATA", Decimal("15.00"))
    assert rec.evidence["growthCost"] == "30.00"


@pytest.mark.anyio
async def test_a_young_resource_gets_no_daily_advice(db: asyncpg.Connection) -> None:
    _, rid = await resource(db, "cust-3", "bandwidth")
    plans = await catalog(db, rid)
    await on_plan(db, rid, plans["large"], 1000)
    await db.execute(
        "UPDATE customer_resources SET created_at = now() - interval '10 days' WHERE id = $1", rid
    )
    await days(db, rid, [3 * GB] * 10)
    assert (await job(db, HubMetrics())).created == []


@pytest.mark.anyio
async def test_a_bad_cost_model_is_logged_counted_and_skipped(db: asyncpg.Connection) -> None:
    _, bad = await resource(db, "cust-4", "bandwidth", name="bad", model={"usage": {"type": "x"}})
    _, good = await resource(db, "cust-4", "bandwidth", name="good")
    plans = await catalog(db, good)
    await on_plan(db, good, plans["large"], 1000)
    await db.execute(
        "UPDATE customer_resources SET created_at = now() - interval '60 days' WHERE id = $1", bad
    )
    await days(db, good, [3 * GB] * 30)
    metrics = HubMetrics()
    result = await job(db, metrics)
    assert result.failed == 1
    assert [r.resource_key for r in result.created] == ["cust-4/bandwidth/good"]
    assert (
        metrics.registry.get_sample_value(
            "resmon_hub_recommend_failures_total", {"reason": "resource"}
        )
        == 1
    )


@pytest.mark.anyio
async def test_bad_filters_are_named(db: asyncpg.Connection) -> None:
    with pytest.raises(NotFoundError, match="'nobody'"):
        await job(db, HubMetrics(), customer_id="nobody")
    with pytest.raises(ValueError, match="'closed'"):
        await recommendations.listing(db, status="closed")


def test_resmon_hub_recommend_run_and_list(pg_dsn: str, unique: str) -> None:
    customer = f"cust-{unique}"

    async def setup() -> None:
        await migrate(pg_dsn)
        conn = await asyncpg.connect(pg_dsn)
        try:
            _, rid = await resource(conn, customer, "bandwidth")
            plans = await catalog(conn, rid)
            await on_plan(conn, rid, plans["large"], 1000)
            await days(conn, rid, [3 * GB] * 27 + [5 * GB] * 3)
        finally:
            await conn.close()

    anyio.run(setup)
    env = {"DATABASE_URL": pg_dsn, "RESMON_BILLING_TZ": "UTC"}
    runner = CliRunner()
    ran = runner.invoke(hub_cli, ["recommend", "run", "--customer", customer], env=env)
    assert ran.exit_code == 0, ran.output
    assert f"new  RESIZE_RESOURCE  {customer}/bandwidth  40.00 USD" in ran.output
    assert ran.output.strip().endswith("1 resource(s): 1 new, 0 refreshed, 0 failed")
    # a minimum above the saving: the stored advice is kept, nothing new is made
    high = {**env, "RESMON_RECOMMEND_MIN_SAVINGS": "41"}
    again = runner.invoke(hub_cli, ["recommend", "run", "--customer", customer], env=high)
    assert again.output.strip().endswith("1 resource(s): 0 new, 0 refreshed, 0 failed")
    listed = runner.invoke(
        hub_cli, ["recommend", "list", "--customer", customer, "--status", "open"], env=env
    )
    assert listed.exit_code == 0, listed.output
    assert "open      RESIZE_RESOURCE" in listed.output
    assert "40.00 USD/month  LOW" in listed.output
    assert listed.output.strip().endswith("1 recommendation(s)")
    bad = runner.invoke(hub_cli, ["recommend", "list", "--status", "closed"], env=env)
    assert bad.exit_code == 2
    assert "--status" in bad.output
    nobody = runner.invoke(hub_cli, ["recommend", "run", "--customer", "nobody"], env=env)
    assert nobody.exit_code == 1
    assert "customer 'nobody' not found" in nobody.output


@pytest.mark.anyio
async def test_rest_apply_moves_the_resource_and_dismiss_needs_a_reason(
    db: asyncpg.Connection, hub_config: HubConfig
) -> None:
    key, big, plans = await on_large(db, "cust-5", "wan1", [3 * GB] * 27 + [5 * GB] * 3)
    _, other = await resource(db, "cust-5", "bandwidth", name="wan2")
    await on_plan(db, other, plans["large"], 1000)
    await days(db, other, [2 * GB] * 30)
    created = {r.resource_key: r for r in (await job(db, HubMetrics())).created}
    to_medium = created[key].recommendation_id
    to_small = created["cust-5/bandwidth/wan2"].recommendation_id
    heard: list[str] = []
    listener = await asyncpg.connect(hub_config.database_url)
    await listener.add_listener(CHANGES_CHANNEL, lambda *args: heard.append(args[3]))
    app = create_app(ApiContext(config=hub_config, db=db, metrics=HubMetrics()))
    try:
        async with TestClient(TestServer(app), headers=bearer(await make_key(db))) as client:
            listed = await client.get("/api/recommendations?customerId=cust-5&status=open")
            assert listed.status == 200
            body = await listed.json()
            assert body["next"] is None
            assert [(r["resourceKey"], r["monthlySavings"]) for r in body["items"]] == [
                ("cust-5/bandwidth/wan2", "70.00"),
                (key, "40.00"),
            ]
            # nobody named in the body: the key's name is who applied it
            applied = await client.post(f"/api/recommendations/{to_medium}/apply", json={})
            assert applied.status == 200, await applied.text()
            done = await applied.json()
            assert (done["status"], done["statusBy"]) == ("applied", "tests")
            assert done["statusAt"] is not None
            twice = await client.post(
                f"/api/recommendations/{to_medium}/apply", json={"by": "ops-anna"}
            )
            assert twice.status == 409
            no_reason = await client.post(
                f"/api/recommendations/{to_small}/dismiss", json={"by": "ops-bo"}
            )
            assert (no_reason.status, named(await no_reason.json())) == (400, "$.reason")
            dismissed = await client.post(
                f"/api/recommendations/{to_small}/dismiss",
                json={"by": "ops-bo", "reason": "customer expects growth"},
            )
            assert (await dismissed.json())["reason"] == "customer expects growth"
            missing = await client.post(
                "/api/recommendations/00000000-0000-0000-0000-000000000001/apply",
                json={"by": "x"},
            )
            assert missing.status == 404
            bad = await client.get("/api/recommendations?status=closed")
            assert (bad.status, named(await bad.json())) == (400, "status")
        # the resize went through the limit-change path: new plan and limit, and a NOTIFY
        row = await db.fetchrow(
            "SELECT cost_model_id::text AS plan, limit_value FROM customer_resources WHERE id = $1",
            big,
        )
        assert (row["plan"], row["limit_value"]) == (plans["medium"], 300 * GB)
        with anyio.fail_after(5):
            await until(lambda: key in heard)
        audit = await db.fetch(
            "SELECT recommendation_id::text AS id, action, actor, reason, details::text AS d "
            "FROM recommendation_audit a WHERE action <> 'created' ORDER BY a.id"
        )
        assert [(a["id"], a["action"], a["actor"], a["reason"]) for a in audit] == [
            (to_medium, "applied", "tests", None),
            (to_small, "dismissed", "ops-bo", "customer expects growth"),
        ]
        assert '"toLimit": 300000000000' in audit[0]["d"]
        # the next run keeps the dismissed one dismissed and does not re-open it
        again = await job(db, HubMetrics())
        assert to_small not in {r.recommendation_id for r in again.created}
        statuses = await db.fetch("SELECT id::text AS id, status FROM recommendations")
        assert {r["id"]: r["status"] for r in statuses}[to_small] == "dismissed"
    finally:
        await listener.close()


@pytest.mark.anyio
async def test_new_recommendations_are_published_once_through_the_outbox(
    db: asyncpg.Connection, hub_config: HubConfig, producer: AIOKafkaProducer, unique: str
) -> None:
    customer = f"cust-{unique}"
    key, _, _ = await on_large(db, customer, "wan1", [3 * GB] * 27 + [5 * GB] * 3)
    now_ms = time.time_ns() // 1_000_000
    outbox = optimization_outbox("urn:resmon:test", now_ms)
    [rec] = (await job(db, HubMetrics(), customer_id=customer, on_created=outbox)).created
    assert await db.fetchval("SELECT count(*) FROM hub_outbox") == 1
    # the next day: the same recommendation, nothing new for the outbox
    assert (await job(db, HubMetrics(), customer_id=customer, on_created=outbox)).created == []
    assert await db.fetchval("SELECT count(*) FROM hub_outbox") == 1
    pool = await asyncpg.create_pool(hub_config.database_url, min_size=1, max_size=2)
    try:
        assert await Outbox(pool, producer, None, HubMetrics()).drain() == 1
    finally:
        await pool.close()
    assert await db.fetchval("SELECT count(*) FROM hub_outbox") == 0
    consumer = AIOKafkaConsumer(
        TOPIC_OPTIMIZATION,
        bootstrap_servers=hub_config.kafka_bootstrap_servers,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    mine = []
    try:
        with anyio.fail_after(20):
            while not mine:
                batch = await consumer.getmany(timeout_ms=200)
                for records in batch.values():
                    for record in records:
                        event = decode_record(record.value, record.headers)
                        if event.data.customer_id == customer:
                            mine.append(event)
    finally:
        await consumer.stop()
    [event] = mine
    assert (event.id, event.type, event.source) == (
        rec.recommendation_id,
        TYPE_OPTIMIZATION,
        "urn:resmon:test",
    )
    assert isinstance(event.data, OptimizationEvent)
    assert event.data.recommendation_type == "RESIZE_RESOURCE"
    assert event.data.potential_savings == Decimal("40.00")
    assert (event.data.resource_key, event.data.at_ms) == (key, now_ms)


@pytest.mark.anyio
async def test_the_hub_recommends_at_start_and_an_applied_resize_sets_the_next_alert(
    hub_config: HubConfig, db: asyncpg.Connection, producer: AIOKafkaProducer, unique: str
) -> None:
    customer = f"cust-{unique}"
    key, _, _ = await on_large(db, customer, "wan1", [3 * GB] * 27 + [5 * GB] * 3)
    alerts = (
        "SELECT count(*) FROM alerts a JOIN customer_resources cr "
        "ON cr.id = a.customer_resource_id WHERE cr.resource_key = $1"
    )
    with anyio.fail_after(60):
        async with anyio.create_task_group() as tg:
            hub: RunningHub = await tg.start(run_hub, hub_config)
            # the job ran at start: resize down from large (1000 GB) to medium (300 GB)
            await until(lambda: recommendations.listing(db, customer_id=customer))
            [rec] = await recommendations.listing(db, customer_id=customer)
            # 400 GB: 40 % of the large plan's limit, no alert
            await send(producer, hub_config.usage_topic, minute_reading(key, 0, 400 * GB))
            await wait_for(db, "SELECT current_usage FROM customer_resources "
                           "WHERE resource_key = $1", 400 * GB, key)  # fmt: skip
            assert await db.fetchval(alerts, key) == 0
            key_headers = bearer(await make_key(db))
            async with aiohttp.ClientSession(base_url=hub.http_url, headers=key_headers) as http:
                applied = await http.post(
                    f"/api/recommendations/{rec.recommendation_id}/apply", json={"by": "ops"}
                )
                assert applied.status == 200, await applied.text()
            # one more byte: 400 GB is above the medium plan's 300 GB limit: critical
            await send(producer, hub_config.usage_topic, minute_reading(key, 1, 1))
            await wait_for(
                db,
                "SELECT string_agg(a.alert_type, ',') FROM alerts a JOIN customer_resources cr "
                "ON cr.id = a.customer_resource_id WHERE cr.resource_key = $1",
                "THRESHOLD_CRITICAL",
                key,
            )
            tg.cancel_scope.cancel()


@pytest.mark.anyio
async def test_a_resize_to_a_plan_no_longer_offered_is_refused(db: asyncpg.Connection) -> None:
    _, rid, plans = await on_large(db, "cust-6", "wan1", [3 * GB] * 27 + [5 * GB] * 3)
    [rec] = (await job(db, HubMetrics())).created
    await db.execute("UPDATE cost_models SET is_active = false WHERE id = $1", plans["medium"])
    with pytest.raises(recommendations.RecommendationStateError, match="no longer offered"):
        await recommendations.apply(db, rec.recommendation_id, "ops")
    row = await db.fetchrow(
        "SELECT cost_model_id::text AS plan, limit_value FROM customer_resources WHERE id = $1",
        rid,
    )
    assert (row["plan"], row["limit_value"]) == (plans["large"], 1000 * GB)
    [still] = await recommendations.listing(db, customer_id="cust-6")
    assert still.status == "open"
