"""Stored forecasts on PostgreSQL: the refresh, its rows, their cost, REST and the CLI.

Daily histories are generated (a weekly pattern with seeded noise) and written as
``day`` buckets of ``usage_aggregates``, as the hub's batch writer keeps them.
"""

from __future__ import annotations

import datetime as dt
import json
import random
from decimal import ROUND_HALF_EVEN, Decimal
from zoneinfo import ZoneInfo

import aiohttp
import anyio
import asyncpg  # type: ignore[import-untyped]
import pytest
from _hub_testing import until
from _keys import bearer, make_key
from _metrics import sample
from aiohttp.test_utils import TestClient, TestServer
from click.testing import CliRunner

from hub import HubConfig, migrate, provision_resource
from hub.api.app import ApiContext, create_app
from hub.cli import hub as hub_cli
from hub.costs import MoneyPolicy
from hub.forecasting import UsageForecast, forecast_period
from hub.metrics import HubMetrics
from hub.storage.forecasts import daily_history, refresh, run_refresh_loop, stored_forecasts

pytestmark = [pytest.mark.integration]

UTC = ZoneInfo("UTC")
AS_OF = dt.date(2026, 3, 15)  # the forecast's "today": 14 days of March are known
FIRST = dt.date(2025, 11, 1)
#: a weekday profile (Monday first): weekends at 60-70 %
PROFILE = (1.0, 1.05, 1.0, 0.95, 0.9, 0.6, 0.7)
GB = 10**9
HOUR_MS = 3_600_000
CPU_LIMIT = 155 * HOUR_MS  # the plan's limit: 155 CPU hours a month
PLAN_BASE = Decimal("20.00")
PLAN_RATE = Decimal("0.05")  # per CPU hour above the limit


def weekly(seed: int, level: int, first: dt.date, last: dt.date) -> list[tuple[dt.date, int]]:
    """One total a day from ``first`` to ``last`` (inclusive): weekday pattern, 5 % noise."""
    rng = random.Random(seed)
    out = []
    day = first
    while day <= last:
        out.append((day, int(level * PROFILE[day.weekday()] * rng.gauss(1.0, 0.05))))
        day += dt.timedelta(days=1)
    return out


async def write_days(db: asyncpg.Connection, key: str, days: list[tuple[dt.date, int]]) -> None:
    resource = await db.fetchval("SELECT id FROM customer_resources WHERE resource_key = $1", key)
    await db.executemany(
        "INSERT INTO usage_aggregates (customer_resource_id, period_type, period_start, "
        "period_end, total_usage, sample_count) VALUES ($1, 'day', $2, $3, $4, 24)",
        [
            (
                resource,
                dt.datetime(d.year, d.month, d.day, tzinfo=dt.UTC),
                dt.datetime(d.year, d.month, d.day, tzinfo=dt.UTC) + dt.timedelta(days=1),
                total,
            )
            for d, total in days
        ],
    )


async def on_plan(db: asyncpg.Connection, key: str, **plan: object) -> None:
    """Bill ``key`` on a new cost_models row (base cost + overage, or a ``pricing`` JSON)."""
    model = await db.fetchval(
        "INSERT INTO cost_models (tenant_id, model_name, billing_period, base_cost, "
        "overage_rate, pricing) VALUES ('00000000-0000-0000-0000-000000000000', 'test plan', "
        "'monthly', $1, $2, $3::jsonb) RETURNING id",
        plan.get("base_cost"),
        plan.get("overage_rate"),
        plan.get("pricing"),
    )
    await db.execute(
        "UPDATE customer_resources SET cost_model_id = $1 WHERE resource_key = $2", model, key
    )


async def stored(db: asyncpg.Connection, key: str) -> asyncpg.Record:
    rows = await db.fetch(
        "SELECT f.* FROM cost_forecasts f JOIN customer_resources cr "
        "ON cr.id = f.customer_resource_id WHERE cr.resource_key = $1",
        key,
    )
    assert len(rows) == 1, rows
    return rows[0]


def cents(value: Decimal) -> Decimal:
    return value.quantize(Decimal("0.01"), rounding=ROUND_HALF_EVEN)


def bandwidth_cost(usage_bytes: int) -> Decimal:
    """Catalog 'Internet 100Mbps': 0.10 per GB (10^9 bytes), no base cost."""
    return cents(Decimal(usage_bytes) / GB * Decimal("0.10"))


def plan_cost(usage_ms: int) -> Decimal:
    """The test plan: 20.00 a month + 0.05 per CPU hour above 155 hours."""
    over_hours = max(Decimal(0), Decimal(usage_ms - CPU_LIMIT) / HOUR_MS)
    return PLAN_BASE + cents(over_hours * PLAN_RATE)


async def seeded(db: asyncpg.Connection, customer: str) -> dict[str, list[tuple[dt.date, int]]]:
    """A customer with a bandwidth history since November, a CPU history on a plan, and an
    API resource of five days; their histories, March included up to its end."""
    end = dt.date(2026, 3, 31)
    bw = await provision_resource(db, customer, "bandwidth", 10_000 * GB)
    cpu = await provision_resource(db, customer, "cpu", CPU_LIMIT)
    api = await provision_resource(db, customer, "api_calls", None)
    histories = {
        bw: weekly(1, 200 * GB, FIRST, end),
        cpu: weekly(2, int(5.65 * HOUR_MS), FIRST, end),  # ~5 h a day, ~155 h in March
        api: weekly(3, 50_000, AS_OF - dt.timedelta(days=5), end),
    }
    for key, days in histories.items():
        await write_days(db, key, days)  # the days on and after AS_OF are never read
    await on_plan(db, cpu, base_cost=PLAN_BASE, overage_rate=PLAN_RATE)
    return histories


async def refreshed(db: asyncpg.Connection, unique: str, metrics: HubMetrics | None = None) -> str:
    """:func:`seeded` for a new customer, refreshed on AS_OF; the customer's id."""
    customer = f"c-{unique}"
    await seeded(db, customer)
    await refresh(db, tz=UTC, money=MoneyPolicy(), metrics=metrics or HubMetrics(), today=AS_OF)
    return customer


def known(days: list[tuple[dt.date, int]]) -> list[tuple[dt.date, int]]:
    return [(d, v) for d, v in days if d < AS_OF]


@pytest.mark.anyio
async def test_a_resource_with_enough_history_gets_a_stored_forecast_in_its_interval_logic(
    db: asyncpg.Connection, unique: str
) -> None:
    customer = f"c-{unique}"
    histories = await seeded(db, customer)
    bw = f"{customer}/bandwidth"
    metrics = HubMetrics()
    summary = await refresh(db, tz=UTC, money=MoneyPolicy(), metrics=metrics, today=AS_OF)
    assert summary.made == 2, summary
    assert summary.no_forecast == {"history_too_short": 1}
    assert summary.failed == {}
    assert sample(metrics, "resmon_hub_forecasts_made_total") == 2

    # the history read from the day buckets is every day up to yesterday
    assert (
        await daily_history(
            db,
            str(await db.fetchval("SELECT id FROM customer_resources WHERE resource_key=$1", bw)),
            today=AS_OF,
            tz=UTC,
        )
        == known(histories[bw])[-180:]
    )

    row = await stored(db, bw)
    direct = forecast_period(
        known(histories[bw])[-180:], start=dt.date(2026, 3, 1), end=dt.date(2026, 4, 1), today=AS_OF
    )
    assert isinstance(direct, UsageForecast)
    march_so_far = sum(v for d, v in histories[bw] if dt.date(2026, 3, 1) <= d < AS_OF)
    truth = sum(v for d, v in histories[bw] if d >= dt.date(2026, 3, 1))
    assert row["forecast_period_start"] == dt.date(2026, 3, 1)
    assert row["forecast_period_end"] == dt.date(2026, 4, 1)
    assert row["as_of"] == AS_OF
    assert row["reason"] is None
    assert row["method"] == direct.method
    assert row["used_to_date"] == march_so_far
    assert row["predicted_usage"] == int(direct.predicted)
    assert (
        march_so_far
        <= row["usage_low_95"]
        <= row["usage_low_80"]
        <= row["predicted_usage"]
        <= row["usage_high_80"]
        <= row["usage_high_95"]
    )
    assert row["usage_low_95"] <= truth <= row["usage_high_95"]  # seeded: this draw is covered
    assert row["confidence_level"] == direct.confidence_level.quantize(Decimal("0.01"))
    assert 0 < row["confidence_level"] <= 100
    assert 0 < row["coverage_80"] <= 100
    assert row["backtest_origins"] == direct.backtest_origins
    expected_p = Decimal(direct.probability_above(10_000 * GB)).quantize(Decimal("0.0001"))
    assert row["probability_above_limit"] == expected_p
    assert row["limit_value"] == 10_000 * GB
    # cost: the catalog's 0.10 per GB of the predicted usage and of each bound
    assert row["currency"] == "USD"
    assert row["cost_unavailable"] is None
    assert row["predicted_cost"] == bandwidth_cost(row["predicted_usage"])
    assert row["cost_low_95"] == bandwidth_cost(row["usage_low_95"])
    assert row["cost_high_95"] == bandwidth_cost(row["usage_high_95"])

    # a second refresh replaces the row of the period, it does not add one
    first_computed = row["computed_at"]
    await refresh(db, tz=UTC, money=MoneyPolicy(), metrics=metrics, today=AS_OF)
    again = await stored(db, bw)
    assert again["computed_at"] > first_computed
    assert again["predicted_usage"] == row["predicted_usage"]


@pytest.mark.anyio
async def test_a_short_history_is_stored_as_no_forecast_with_its_reason(
    db: asyncpg.Connection, unique: str
) -> None:
    metrics = HubMetrics()
    customer = await refreshed(db, unique, metrics)
    row = await stored(db, f"{customer}/api_calls")
    assert row["reason"] == "history_too_short"
    assert "5" in row["reason_detail"]  # the detail gives the count of days it had
    numbers = (
        "method", "predicted_usage", "usage_low_80", "usage_high_95", "predicted_cost",
        "cost_low_95", "confidence_level", "probability_above_limit",
    )  # fmt: skip
    assert all(row[name] is None for name in numbers), dict(row)
    assert sample(metrics, "resmon_hub_forecasts_none_total", reason="history_too_short") == 1

    # a period younger than three days: no forecast, whatever the history
    await refresh(db, tz=UTC, money=MoneyPolicy(), metrics=metrics, today=dt.date(2026, 3, 2))
    rows = await stored_forecasts(db, customer_id=customer, resource_key=f"{customer}/bandwidth")
    assert [(r.period_start, r.forecast, r.reason) for r in rows] == [
        (dt.date(2026, 3, 1), False, "period_too_young")
    ]


@pytest.mark.anyio
async def test_a_level_resource_is_no_forecast_whatever_its_history(
    db: asyncpg.Connection, unique: str
) -> None:
    customer = f"c-{unique}"
    key = await provision_resource(db, customer, "storage", 10**12)
    assert await db.fetchval(
        "SELECT kind FROM customer_resources WHERE resource_key = $1", key
    ) == ("level")
    await write_days(db, key, weekly(5, 10**11, FIRST, AS_OF - dt.timedelta(days=1)))
    metrics = HubMetrics()
    await refresh(db, tz=UTC, money=MoneyPolicy(), metrics=metrics, today=AS_OF)
    row = await stored(db, key)
    assert (row["reason"], row["predicted_usage"]) == ("level_resource", None)
    assert "gauge" in row["reason_detail"]
    assert sample(metrics, "resmon_hub_forecasts_none_total", reason="level_resource") == 1


@pytest.mark.anyio
async def test_the_cost_interval_is_the_plan_pricing_of_the_usage_bounds(
    db: asyncpg.Connection, unique: str
) -> None:
    customer = await refreshed(db, unique)
    row = await stored(db, f"{customer}/cpu")
    assert row["reason"] is None
    assert row["cost_unavailable"] is None
    # ~5 CPU hours a day, ~155 hours in March: the limit lies inside the interval, so the
    # low bound pays the base cost only and the high bound base + overage
    assert row["usage_low_95"] < CPU_LIMIT < row["usage_high_95"], dict(row)
    assert row["cost_low_95"] == PLAN_BASE
    high_hours = (Decimal(row["usage_high_95"]) - CPU_LIMIT) / HOUR_MS
    assert row["cost_high_95"] == PLAN_BASE + cents(high_hours * PLAN_RATE) > PLAN_BASE
    for bound in ("low_80", "high_80", "low_95", "high_95"):
        assert row[f"cost_{bound}"] == plan_cost(row[f"usage_{bound}"]), bound
    assert row["predicted_cost"] == plan_cost(row["predicted_usage"])
    assert 0 < row["probability_above_limit"] < 1


@pytest.mark.anyio
async def test_a_plan_started_inside_the_period_prorates_the_base_of_every_bound(
    db: asyncpg.Connection, unique: str
) -> None:
    customer = f"c-{unique}"
    await seeded(db, customer)
    cpu = f"{customer}/cpu"
    set_start = "UPDATE customer_resources SET billing_start = $1 WHERE resource_key = $2"
    await db.execute(set_start, dt.datetime(2026, 3, 11, tzinfo=dt.UTC), cpu)
    await refresh(db, tz=UTC, money=MoneyPolicy(), metrics=HubMetrics(), today=AS_OF)
    row = await stored(db, cpu)
    base = cents(PLAN_BASE * 21 / 31)  # 21 of March's 31 days: 13.548... -> 13.55
    assert base == Decimal("13.55")
    assert row["cost_low_95"] == base  # under the limit: the prorated base only
    assert row["cost_high_95"] == plan_cost(row["usage_high_95"]) - PLAN_BASE + base

    # billed from a later period on: no cost for this one, said so
    await db.execute(set_start, dt.datetime(2026, 4, 2, tzinfo=dt.UTC), cpu)
    await refresh(db, tz=UTC, money=MoneyPolicy(), metrics=HubMetrics(), today=AS_OF)
    row = await stored(db, cpu)
    assert row["predicted_cost"] is None
    assert row["cost_unavailable"].startswith("billing starts 2026-04-02")


@pytest.mark.anyio
async def test_pricing_that_cannot_be_determined_is_said_not_invented(
    db: asyncpg.Connection, unique: str
) -> None:
    customer = f"c-{unique}"
    await seeded(db, customer)
    bw = f"{customer}/bandwidth"
    pricing = {
        "baseCost": "100",
        "usage": {"type": "percentile95", "committedMbps": "10", "overagePerMbps": "2.50"},
    }
    await on_plan(db, bw, pricing=json.dumps(pricing))
    metrics = HubMetrics()
    await refresh(db, tz=UTC, money=MoneyPolicy(), metrics=metrics, today=AS_OF)
    row = await stored(db, bw)
    assert row["predicted_usage"] is not None  # the usage is still forecast
    assert "95th percentile" in row["cost_unavailable"]
    assert [row[c] for c in ("predicted_cost", "cost_low_80", "cost_high_95", "currency")] == [
        None,
        None,
        None,
        None,
    ]
    assert sample(metrics, "resmon_hub_forecast_cost_unavailable_total") == 1


@pytest.mark.anyio
async def test_the_refresh_goes_on_past_a_resource_that_fails(
    db: asyncpg.Connection, unique: str
) -> None:
    customer = f"c-{unique}"
    await seeded(db, customer)
    broken = f"{customer}/bandwidth"  # between api_calls and cpu in key order
    await db.execute(
        "UPDATE usage_aggregates SET total_usage = -5 FROM customer_resources cr "
        "WHERE cr.id = customer_resource_id AND cr.resource_key = $1 "
        "AND usage_aggregates.period_type = 'day' AND usage_aggregates.period_start = $2",
        broken,
        dt.datetime(2026, 2, 10, tzinfo=dt.UTC),
    )  # a corrupt bucket: a negative day total
    metrics = HubMetrics()
    summary = await refresh(db, tz=UTC, money=MoneyPolicy(), metrics=metrics, today=AS_OF)
    assert list(summary.failed) == [broken]
    assert "history[" in summary.failed[broken], summary.failed  # names the bad day
    assert summary.made == 1
    assert summary.no_forecast == {"history_too_short": 1}
    assert sample(metrics, "resmon_hub_forecast_failures_total", scope="resource") == 1
    assert sample(metrics, "resmon_hub_forecasts_made_total") == 1
    keys = await db.fetch(
        "SELECT cr.resource_key FROM cost_forecasts f JOIN customer_resources cr "
        "ON cr.id = f.customer_resource_id ORDER BY 1"
    )
    assert [r[0] for r in keys] == [f"{customer}/api_calls", f"{customer}/cpu"]


@pytest.mark.anyio
async def test_the_scheduled_loop_refreshes_after_its_first_delay(
    hub_config: HubConfig, db: asyncpg.Connection, unique: str
) -> None:
    customer = f"c-{unique}"
    await provision_resource(db, customer, "bandwidth", None)
    metrics = HubMetrics()
    pool = await asyncpg.create_pool(hub_config.database_url, min_size=1, max_size=2)
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(
                lambda: run_refresh_loop(
                    pool,
                    interval_s=3600,
                    tz=UTC,
                    money=MoneyPolicy(),
                    metrics=metrics,
                    first_delay_s=0,
                )
            )
            with anyio.fail_after(10):
                await until(
                    lambda: (
                        sample(
                            metrics, "resmon_hub_forecasts_none_total", reason="history_too_short"
                        )
                        == 1
                    )
                )
            tg.cancel_scope.cancel()
    finally:
        await pool.close()
    (row,) = await stored_forecasts(db, customer_id=customer)
    assert (row.forecast, row.reason) == (False, "history_too_short")


@pytest.mark.anyio
async def test_rest_serves_the_stored_forecasts(
    db: asyncpg.Connection, hub_config: HubConfig, unique: str
) -> None:
    customer = await refreshed(db, unique)
    cpu = await stored(db, f"{customer}/cpu")
    app = create_app(ApiContext(config=hub_config, db=db, metrics=HubMetrics()))
    async with TestClient(TestServer(app), headers=bearer(await make_key(db))) as client:
        got: aiohttp.ClientResponse = await client.get(f"/api/forecasts/customers/{customer}")
        assert got.status == 200
        body = await got.json()
        one = await client.get(
            f"/api/forecasts/customers/{customer}", params={"resourceKey": f"{customer}/cpu"}
        )
        assert one.status == 200
        (only,) = (await one.json())["forecasts"]
        unknown = await client.get("/api/forecasts/customers/nobody")
        assert unknown.status == 404
        assert "nobody" in (await unknown.json())["detail"]
        no_resource = await client.get(
            f"/api/forecasts/customers/{customer}", params={"resourceKey": f"{customer}/x"}
        )
        assert no_resource.status == 404
    assert body["customerId"] == customer
    by_key = {f["resourceKey"]: f for f in body["forecasts"]}
    assert sorted(by_key) == sorted(f"{customer}/{t}" for t in ("api_calls", "bandwidth", "cpu"))
    assert only == by_key[f"{customer}/cpu"]
    assert only["forecast"] is True
    assert only["method"] == cpu["method"]
    assert only["usageInterval95"] == [cpu["usage_low_95"], cpu["usage_high_95"]]
    # amounts at the currency's minor units, as decimal strings
    assert only["costInterval80"] == [f"{cpu['cost_low_80']:.2f}", f"{cpu['cost_high_80']:.2f}"]
    assert only["predictedCost"] == f"{cpu['predicted_cost']:.2f}"
    assert Decimal(only["confidenceLevel"]) == cpu["confidence_level"]
    assert Decimal(only["probabilityAboveLimit"]) == cpu["probability_above_limit"]
    assert only["currency"] == "USD"
    assert only["limit"] == CPU_LIMIT
    api = by_key[f"{customer}/api_calls"]
    assert api["forecast"] is False
    assert api["reason"] == "history_too_short"
    assert "predictedUsage" not in api
    assert "costInterval95" not in api


def test_cli_refresh_and_show(hub_config: HubConfig, unique: str) -> None:
    customer = f"c-{unique}"

    async def setup() -> None:
        await migrate(hub_config.database_url)
        conn = await asyncpg.connect(hub_config.database_url)
        try:
            await seeded(conn, customer)
        finally:
            await conn.close()

    anyio.run(setup)
    env = {"DATABASE_URL": hub_config.database_url, "RESMON_BILLING_TZ": "UTC"}
    runner = CliRunner()
    done = runner.invoke(
        hub_cli, ["forecast", "refresh", "--customer", customer, "--as-of", "2026-03-15"], env=env
    )
    assert done.exit_code == 0, done.output
    assert "forecasts stored: 2; no forecast: 1 history_too_short" in done.output
    shown = runner.invoke(
        hub_cli, ["forecast", "show", "--customer", customer, "--resource", "cpu"], env=env
    )
    assert shown.exit_code == 0, shown.output
    assert f"{customer}/cpu  period 2026-03-01 .. 2026-04-01" in shown.output
    assert "cost 2" in shown.output
    assert " USD  80 %: " in shown.output
    as_json = runner.invoke(
        hub_cli, ["forecast", "show", "--customer", customer, "--json"], env=env
    )
    assert as_json.exit_code == 0, as_json.output
    listed = json.loads(as_json.output)["forecasts"]
    api = next(f for f in listed if f["resourceKey"] == f"{customer}/api_calls")
    assert (api["forecast"], api["reason"]) == (False, "history_too_short")
    missing = runner.invoke(hub_cli, ["forecast", "show", "--customer", "nobody"], env=env)
    assert missing.exit_code == 1
    assert "customer 'nobody' not found" in missing.output
    no_db = runner.invoke(hub_cli, ["forecast", "refresh"], env={"DATABASE_URL": ""})
    assert no_db.exit_code == 1
    assert "DATABASE_URL is not set" in no_db.output
