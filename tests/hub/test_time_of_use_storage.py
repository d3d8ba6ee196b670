"""Peak/off-peak prices on PostgreSQL: bills from hour buckets, and the off-peak advice job.

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
    [view] = await costs.views(
        db,
        customer,
        costs.parse_month("2026-02"),
        tz=BERLIN,
        money=MoneyPolicy(),
        now_ms=ms(2026, 3, 15),
    )
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
