"""Bills from hour buckets on PostgreSQL: peak/off-peak prices, the off-peak advice job, and a
change of plan inside a period.

The usage is written as the hub's batches write it (hour, day and month buckets in
the billing time zone); each test carries its hand calculation, to the cent.
"""

from __future__ import annotations

import datetime as dt
import time
from decimal import Decimal
from zoneinfo import ZoneInfo

import asyncpg  # type: ignore[import-untyped]
import pytest
from _cost_fixtures import ms, readings, resource

from hub.costs import MoneyPolicy
from hub.costs.recommend import RecommendSettings
from hub.metrics import HubMetrics
from hub.storage import costs, recommendations
from hub.storage.provision import set_plan

pytestmark = [pytest.mark.integration]

GB = 10**9
BERLIN = ZoneInfo("Europe/Berlin")
UTC = ZoneInfo("UTC")
TARIFF = {
    "baseCost": "10.00",
    "usage": {
        "type": "timeOfUse",
        "peakStart": 8,
        "peakEnd": 20,
        "peakPrice": "0.12",
        "offPeakPrice": "0.05",
    },
}


async def on_tariff(db: asyncpg.Connection, unique: str) -> tuple[str, str, str]:
    """A bandwidth resource on TARIFF: its customer, key and id."""
    customer = f"c-{unique}"
    key, rid = await resource(db, customer, "bandwidth", model=TARIFF)
    return customer, key, rid


@pytest.mark.anyio
async def test_a_closed_month_is_billed_by_the_local_hour_of_each_bucket(
    db: asyncpg.Connection, unique: str
) -> None:
    customer, key, rid = await on_tariff(db, unique)
    # February in Berlin is UTC+1:
    #   10 Feb 07:10-07:50 UTC = 08:10 local, peak:      100.55 GB
    #   10 Feb 19:10-19:50 UTC = 20:10 local, off-peak:   40.25 GB
    #   11 Feb 06:10-06:50 UTC = 07:10 local, off-peak:    9.75 GB
    await readings(
        db,
        key,
        rid,
        [
            (ms(2026, 2, 10, 7, 10), ms(2026, 2, 10, 7, 50), 100_550_000_000),
            (ms(2026, 2, 10, 19, 10), ms(2026, 2, 10, 19, 50), 40_250_000_000),
            (ms(2026, 2, 11, 6, 10), ms(2026, 2, 11, 6, 50), 9_750_000_000),
        ],
        tz="Europe/Berlin",
    )
    # peak 100.55 x 0.12 = 12.066 -> 12.07; off-peak 50 x 0.05 = 2.50; base 10.00
    # total 10.00 + 12.07 + 2.50 = 24.57
    view = await one_view(db, customer, "2026-02", BERLIN, ms(2026, 3, 15))
    bill = view.breakdown
    lines = {line.kind: line for line in bill.lines}
    assert (lines["peak"].quantity, lines["peak"].unrounded, lines["peak"].amount) == (
        Decimal("100.55"),
        Decimal("12.066"),
        Decimal("12.07"),
    )
    assert (lines["offPeak"].quantity, lines["offPeak"].amount) == (Decimal(50), Decimal("2.50"))
    assert lines["base"].amount == Decimal("10.00")
    assert bill.total == Decimal("24.57")
    assert bill.usage == Decimal("150.55")
    assert bill.inputs.peak_base == 100_550_000_000
    assert any("3 hour buckets" in s and "Europe/Berlin" in s for s in bill.inputs.sources)

    # closing the month stores the same bill and sets the month bucket's cost to it
    await costs.close_periods(db, tz=BERLIN, money=MoneyPolicy(), now_ms=ms(2026, 3, 15))
    assert await db.fetchval(
        "SELECT total FROM cost_breakdowns WHERE customer_resource_id = $1::uuid", rid
    ) == Decimal("24.57")
    assert await db.fetchval(
        "SELECT cost FROM usage_aggregates WHERE customer_resource_id = $1::uuid "
        "AND period_type = 'month'",
        rid,
    ) == Decimal("24.57")


async def one_view(
    db: asyncpg.Connection, customer: str, month: str, tz: ZoneInfo, now_ms: int
) -> costs.CostView:
    """The customer's only resource's bill for ``month`` (YYYY-MM)."""
    [view] = await costs.views(
        db, customer, costs.parse_month(month), tz=tz, money=MoneyPolicy(), now_ms=now_ms
    )
    return view


def _midnight_utc() -> dt.datetime:
    return dt.datetime.combine(dt.datetime.now(dt.UTC).date(), dt.time(), dt.UTC)


@pytest.mark.anyio
async def test_the_job_advises_off_peak_from_the_hour_buckets_of_the_last_30_days(
    db: asyncpg.Connection, unique: str
) -> None:
    customer, key, rid = await on_tariff(db, unique)
    await db.execute(
        "UPDATE customer_resources SET created_at = now() - interval '60 days' WHERE id = $1",
        rid,
    )
    # each of the last 30 days: 10 GB at 10:00 UTC (peak) and 2 GB at 22:00 UTC (off-peak)
    spans = []
    for back in range(30, 0, -1):
        day = int((_midnight_utc() - dt.timedelta(days=back)).timestamp() * 1000)
        hour = 3_600_000
        spans.append((day + 10 * hour + 60_000, day + 10 * hour + 3_000_000, 10 * GB))
        spans.append((day + 22 * hour + 60_000, day + 22 * hour + 3_000_000, 2 * GB))
    await readings(db, key, rid, spans)
    result = await recommendations.run(
        db,
        settings=RecommendSettings(),
        money=MoneyPolicy(),
        tz=UTC,
        now_ms=time.time_ns() // 1_000_000,
        metrics=HubMetrics(),
        customer_id=customer,
    )
    # 300 GB of 360 in peak hours (83 %): now 10.00 + 36.00 + 3.00 = 49.00; half the peak
    # (150 GB) moved: 10.00 + 18.00 + 10.50 = 38.50; saving 10.50
    assert result.failed == 0
    [rec] = result.created
    assert rec.kind == "SCHEDULE_OFF_PEAK"
    assert rec.resource_key == key
    assert rec.monthly_savings == Decimal("10.50")
    assert rec.evidence["peakUsage"] == "300"
    assert rec.evidence["usage"] == "360"
    assert rec.evidence["currentMonthlyCost"] == "49.00"
    assert rec.evidence["shiftedMonthlyCost"] == "38.50"
    stored = await db.fetchrow(
        "SELECT kind, monthly_savings FROM recommendations WHERE id = $1::uuid",
        rec.recommendation_id,
    )
    assert (stored["kind"], stored["monthly_savings"]) == ("SCHEDULE_OFF_PEAK", Decimal("10.50"))


@pytest.mark.anyio
async def test_a_plan_changed_inside_a_closed_month_is_billed_per_plan_by_duration(
    db: asyncpg.Connection, unique: str
) -> None:
    customer = f"c-{unique}"
    key, rid = await resource(
        db, customer, "bandwidth", limit=100 * GB, plan=("20.00", "0.50"), name="wan1"
    )
    small = await db.fetchval("SELECT cost_model_id FROM customer_resources WHERE id = $1", rid)
    await db.execute("UPDATE cost_models SET model_name = 'small' WHERE id = $1", small)
    medium = await db.fetchval(
        "INSERT INTO cost_models (tenant_id, model_name, billing_period, base_cost, "
        "overage_rate) VALUES ('00000000-0000-0000-0000-000000000000', 'medium', 'monthly', "
        "50.00, 0.50) RETURNING id"
    )
    # 130 GB on 5 March (on small), 250 GB on 20 March (on medium)
    await readings(
        db,
        key,
        rid,
        [
            (ms(2026, 3, 5, 10, 10), ms(2026, 3, 5, 10, 50), 130 * GB),
            (ms(2026, 3, 20, 10, 10), ms(2026, 3, 20, 10, 50), 250 * GB),
        ],
    )
    async with db.transaction():
        await set_plan(db, key, str(medium), 300 * GB)
    # the trigger recorded the change now; move it back to 11 March 12:00 UTC
    [change] = await db.fetch(
        "SELECT from_cost_model_id, to_cost_model_id, from_limit, to_limit "
        "FROM customer_resource_plan_changes WHERE customer_resource_id = $1::uuid",
        rid,
    )
    assert tuple(change) == (small, medium, 100 * GB, 300 * GB)
    await db.execute(
        "UPDATE customer_resource_plan_changes SET changed_at = $2 "
        "WHERE customer_resource_id = $1::uuid",
        rid,
        dt.datetime(2026, 3, 11, 12, tzinfo=dt.UTC),
    )
    # small 10.5 of 31 days: 20 x 10.5/31 = 6.77; (130 - 100) x 0.50 = 15.00
    # medium 20.5 of 31 days: 50 x 20.5/31 = 33.06; 250 GB under 300: 0.00
    # total 6.77 + 15.00 + 33.06 + 0.00 = 54.83
    closed = await costs.close_periods(db, tz=UTC, money=MoneyPolicy(), now_ms=ms(2026, 4, 15))
    assert (key, ms(2026, 3, 1)) in [(k, p.start_ms) for k, p in closed]
    view = await one_view(db, customer, "2026-03", UTC, ms(2026, 4, 15))
    assert view.stored
    bill = view.breakdown
    got = [
        (line.plan and line.plan.split("(")[1].split(")")[0], line.kind, line.amount)
        for line in bill.lines
    ]
    assert got == [
        ("small", "base", Decimal("6.77")),
        ("small", "overage", Decimal("15.00")),
        ("medium", "base", Decimal("33.06")),
        ("medium", "overage", Decimal("0.00")),
    ]
    assert bill.total == Decimal("54.83")
    assert bill.usage == Decimal(380)
    assert bill.lines[0].proration is not None
    assert bill.lines[0].proration.active_ms == 10 * 86_400_000 + 12 * 3_600_000
    # April, after the change, is billed on medium alone
    april = await one_view(db, customer, "2026-04", UTC, ms(2026, 5, 2))
    assert [line.plan for line in april.breakdown.lines] == [None, None]
    assert april.breakdown.total == Decimal("50.00")
