"""Cost breakdowns from PostgreSQL: each pricing shape on a generated history, to the cent.

Each test writes a usage history the way the hub does (month buckets through
``write_aggregates`` in the billing time zone; raw bandwidth rows in
``usage_metrics``), prices it with ``hub.storage.costs`` and checks the lines
against the hand calculation written beside them.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from zoneinfo import ZoneInfo

import anyio
import asyncpg  # type: ignore[import-untyped]
import pytest
from _cost_fixtures import HOUR, MBPS_WINDOW, ms, raw_rows, readings, resource, windows
from _hub_testing import wait_for

from hub import HubConfig, run_hub
from hub.costs import MoneyPolicy, PricingError
from hub.metrics import HubMetrics
from hub.storage import costs

pytestmark = [pytest.mark.integration, pytest.mark.anyio]

UTC = ZoneInfo("UTC")
BERLIN = ZoneInfo("Europe/Berlin")
USD = MoneyPolicy()
MARCH = 2026 * 12 + 2
APRIL = MARCH + 1
AFTER = ms(2026, 5, 2)  # "now" for the closed-period tests


async def view(
    db: asyncpg.Connection,
    customer: str,
    key: str,
    month: int,
    *,
    tz: ZoneInfo = UTC,
    now_ms: int = AFTER,
    metrics: HubMetrics | None = None,
) -> costs.CostView:
    (target,) = await costs.cost_targets(db, customer_id=customer, resource_key=key)
    return await costs.cost_view(
        db, target, month, tz=tz, money=USD, now_ms=now_ms, metrics=metrics
    )


def amounts(v: costs.CostView) -> list[tuple[str, Decimal]]:
    return [(line.kind, line.amount) for line in v.breakdown.lines]


def march_history() -> list[tuple[int, int, int]]:
    """744 half-hour readings in March 2026 (UTC): reading i moves 2 GB + i MB."""
    start = ms(2026, 3, 1)
    return [
        (start + i * HOUR, start + i * HOUR + HOUR // 2, 2_000_000_000 + i * 1_000_000)
        for i in range(744)
    ]


async def test_per_unit_catalog_price(db: asyncpg.Connection, unique: str) -> None:
    customer = f"cust-{unique}"
    key, rid = await resource(db, customer, "bandwidth")  # catalog: 0.10 per GB
    outside = [(ms(2026, 2, 27), ms(2026, 2, 28), 9 * 10**12), (ms(2026, 4, 2), ms(2026, 4, 3), 7)]
    await readings(db, key, rid, march_history() + outside)
    v = await view(db, customer, key, MARCH)
    # hand: sum = 744 x 2e9 + 1e6 x (0 + ... + 743) = 1,488e9 + 276,396e6 = 1,764,396,000,000 B
    # = 1764.396 GB; x 0.10 = 176.4396 -> 176.44 (half-even to the cent)
    bill = v.breakdown
    assert bill.inputs.usage_base == 1_764_396_000_000
    assert bill.usage == Decimal("1764.396")
    assert bill.unit == "GB"
    assert amounts(v) == [("usage", Decimal("176.44"))]
    assert bill.lines[0].unrounded == Decimal("176.4396")
    assert bill.total == Decimal("176.44")
    assert bill.currency == "USD"
    assert bill.limit is None
    assert bill.overage_percent is None
    assert "every GB at 0.1000" in bill.rule
    assert "half-even" in bill.rule
    assert bill.inputs.sources[0] == "resource_catalogs.cost_per_unit 0.1000 per GB"
    assert (
        "month from 2026-03-01T00:00:00+00:00 total_usage 1764396000000" in bill.inputs.sources[1]
    )
    assert v.closed
    assert not v.stored


async def test_overage_above_the_limit_in_the_billing_time_zone(
    db: asyncpg.Connection, unique: str
) -> None:
    customer = f"cust-{unique}"
    key, rid = await resource(
        db, customer, "bandwidth", limit=1000 * 10**9, plan=("49.99", "0.015")
    )
    day = 41_150_000_000  # 41.15 GB a day
    history = [(ms(2026, 4, d, 12), ms(2026, 4, d, 13), day) for d in range(2, 31)]
    # 2026-03-31 22:00-22:30 UTC is 1 April 00:00-00:30 in Berlin (CEST): April's first day
    history.append((ms(2026, 3, 31, 22), ms(2026, 3, 31, 22, 30), day))
    # ...while 21:00-21:30 UTC is still 31 March in Berlin: March, not billed in April
    history.append((ms(2026, 3, 31, 21), ms(2026, 3, 31, 21, 30), 500 * 10**9))
    await readings(db, key, rid, history, tz="Europe/Berlin")
    v = await view(db, customer, key, APRIL, tz=BERLIN)
    # hand: 30 x 41.15 = 1234.5 GB; base 49.99; overage (1234.5 - 1000) x 0.015 = 3.5175 -> 3.52;
    # total 49.99 + 3.52 = 53.51; overage % = 234.5 / 1000 x 100 = 23.45
    bill = v.breakdown
    assert bill.usage == Decimal("1234.5")
    assert amounts(v) == [("base", Decimal("49.99")), ("overage", Decimal("3.52"))]
    assert bill.total == Decimal("53.51")
    assert bill.limit == Decimal(1000)
    assert bill.overage_percent == Decimal("23.45")
    assert bill.period.start_ms == ms(2026, 4, 1, tz=BERLIN)
    assert "base cost + overage rate" in bill.inputs.sources[0]


async def test_graduated_tiers(db: asyncpg.Connection, unique: str) -> None:
    customer = f"cust-{unique}"
    tiers = [
        {"upTo": 100, "unitPrice": "0.10"},
        {"upTo": 1000, "unitPrice": "0.08", "flatPrice": "5"},
        {"unitPrice": "0.05"},
    ]
    key, rid = await resource(
        db, customer, "bandwidth", model={"usage": {"type": "tiered", "mode": "graduated",
                                                     "tiers": tiers}}
    )  # fmt: skip
    # 1500 GB as 15 days of 100 GB
    await readings(
        db, key, rid, [(ms(2026, 3, d), ms(2026, 3, d, 1), 10**11) for d in range(1, 16)]
    )
    v = await view(db, customer, key, MARCH)
    # hand: tier 1: 100 x 0.10 = 10.00; tier 2: 900 x 0.08 + 5 = 77.00; tier 3: 500 x 0.05 =
    # 25.00; total 112.00
    assert amounts(v) == [
        ("tier", Decimal("10.00")),
        ("tier", Decimal("77.00")),
        ("tier", Decimal("25.00")),
    ]
    assert [line.tier for line in v.breakdown.lines] == [1, 2, 3]
    assert v.breakdown.total == Decimal("112.00")
    assert "graduated tiers" in v.breakdown.rule


def bandwidth_series(start: int) -> list[tuple[str | None, int, int, int, str]]:
    """The docs' 20 windows (in = i Mbps, out = 21 - i) plus what must not be billed."""
    rows: list[tuple[str | None, int, int, int, str]] = []
    for i, w in enumerate(windows(start, 20), start=1):
        if i == 5:  # window 5 inbound split over two samples: the same as one
            rows.append(("in", w, w + 150_000, 100_000_000, "wan"))
            rows.append(("in", w + 150_000, w + 300_000, 5 * MBPS_WINDOW - 100_000_000, "wan"))
        else:
            rows.append(("in", w, w + 300_000, i * MBPS_WINDOW, "wan"))
        rows.append(("out", w, w + 300_000, (21 - i) * MBPS_WINDOW, "wan"))
    w20 = windows(start, 20)[-1]
    rows.append(("out", w20, w20 + 300_000, MBPS_WINDOW, "wan"))  # a duplicate of window 20 out
    w21 = windows(start, 21)[-1]
    rows.append(("in", w21, w21 + 300_000, 1000 * MBPS_WINDOW, "wan"))  # 1000 Mbps on 100 Mbps
    rows.append((None, w21, w21 + 300_000, 123, "wan"))  # a row without a direction
    return rows


@pytest.mark.parametrize(
    ("mode", "rate", "overage", "total"),
    [
        # in 1..20 and out 20..1 ranked apart: 19th of each is 19 Mbps -> 9 over the CDR
        ("max_of_directions", "19", "22.50", "122.50"),
        # in + out = 21 in every window -> 11 over
        ("sum_of_directions", "21", "27.50", "127.50"),
        # max(in, out) per window: 11, 11, 12, 12, ..., 20, 20 -> 19th is 20 -> 10 over
        ("max_per_window", "20", "25.00", "125.00"),
    ],
)
async def test_95th_percentile_on_a_known_series(
    db: asyncpg.Connection, unique: str, mode: str, rate: str, overage: str, total: str
) -> None:
    customer = f"cust-{unique}"
    model = {
        "baseCost": "100",
        "usage": {"type": "percentile95", "committedMbps": 10, "overagePerMbps": "2.50",
                  "direction": mode},
    }  # fmt: skip
    key, rid = await resource(db, customer, "bandwidth", model=model, speed_bps=100 * 10**6)
    start = ms(2026, 3, 1)
    await raw_rows(db, rid, bandwidth_series(start))
    metrics = HubMetrics()
    v = await view(db, customer, key, MARCH, metrics=metrics)
    # hand: 20 ranked windows (the over-speed one is left out), rank ceil(0.95 x 20) = 19;
    # bill = 100 + (95th - 10) x 2.50
    bill = v.breakdown
    measure = bill.inputs.rate
    assert measure is not None
    assert (measure.ranked, measure.rank, measure.windows) == (20, 19, 8928)
    assert bill.usage == Decimal(rate)
    assert bill.unit == "Mbps"
    assert bill.limit == Decimal(10)
    assert amounts(v) == [("base", Decimal("100.00")), ("overage", Decimal(overage))]
    assert bill.total == Decimal(total)
    assert measure.duplicates == 1
    over = [(g.direction, g.start_ms) for g in measure.gaps if g.reason == "over_speed"]
    assert over == [("in", start + 20 * 300_000)]
    no_data = sorted((g.direction, g.start_ms, g.end_ms) for g in measure.gaps
                     if g.reason == "no_data")  # fmt: skip
    end = ms(2026, 4, 1)
    assert no_data == [("in", start + 21 * 300_000, end), ("out", start + 20 * 300_000, end)]
    assert "rows without a direction" in bill.inputs.sources[-1]
    for reason, count in [("over_speed", 1), ("no_data", 2), ("duplicate", 1), ("no_direction", 1)]:
        got = metrics.registry.get_sample_value(
            "resmon_hub_cost_samples_unbilled_total", {"reason": reason}
        )
        assert got == count, reason


async def test_proration_for_a_resource_that_started_mid_month(
    db: asyncpg.Connection, unique: str
) -> None:
    customer = f"cust-{unique}"
    key, rid = await resource(
        db,
        customer,
        "bandwidth",
        plan=("20.00", None),
        billing_start=dt.datetime(2026, 3, 21, tzinfo=dt.UTC),
    )
    await readings(db, key, rid, [(ms(2026, 3, 22), ms(2026, 3, 23), 10**9)])
    v = await view(db, customer, key, MARCH)
    # hand: active 21 March 00:00 to 1 April = 11 of 31 days; 20.00 x 11/31 = 7.0967... -> 7.10
    bill = v.breakdown
    assert amounts(v) == [("base", Decimal("7.10"))]
    assert bill.total == Decimal("7.10")
    assert bill.proration is not None
    assert (bill.proration.active_ms, bill.proration.period_ms) == (
        11 * 86_400_000,
        31 * 86_400_000,
    )
    assert "prorated" in bill.rule
    assert "x 11/31" in bill.lines[0].description
    # February is before its billing started: no bill, named
    with pytest.raises(Exception, match="billing starts at 2026-03-21"):
        await view(db, customer, key, MARCH - 1)


async def test_closed_periods_are_stored_and_the_month_bucket_cost_follows(
    db: asyncpg.Connection, unique: str
) -> None:
    customer = f"cust-{unique}"
    key, rid = await resource(db, customer, "bandwidth")
    await readings(db, key, rid, march_history())
    await readings(db, key, rid, [(ms(2026, 4, 2), ms(2026, 4, 2, 1), 10**9)])  # April, open

    async def bucket_cost(month_start: dt.datetime) -> Decimal:
        return await db.fetchval(
            "SELECT cost FROM usage_aggregates WHERE customer_resource_id = $1 "
            "AND period_type = 'month' AND period_start = $2",
            rid,
            month_start,
        )

    march = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)
    # the batch upsert's catalog cost, to 4 places
    assert await bucket_cost(march) == Decimal("176.4396")
    now = ms(2026, 4, 15)
    closed = await costs.close_periods(db, tz=UTC, money=USD, now_ms=now)
    assert [(k, p.start_ms) for k, p in closed] == [(key, ms(2026, 3, 1))]  # April is open
    assert await bucket_cost(march) == Decimal("176.44")  # = the stored bill's total
    row = await db.fetchrow(
        "SELECT total, currency, rule, lines, inputs FROM cost_breakdowns "
        "WHERE customer_resource_id = $1",
        rid,
    )
    assert row["total"] == Decimal("176.44")
    assert row["currency"] == "USD"
    assert '"amount": "176.44"' in row["lines"]
    assert "1764396000000" in row["inputs"]
    stored = await view(db, customer, key, MARCH, now_ms=now)
    assert stored.stored
    assert stored.breakdown.total == Decimal("176.44")
    assert await costs.close_periods(db, tz=UTC, money=USD, now_ms=now) == []  # nothing new

    # a late March reading: the bucket moves (its cost is the upsert's again), the next
    # close recomputes the bill and sets the bucket's cost to the new total
    await readings(db, key, rid, [(ms(2026, 3, 31, 12), ms(2026, 3, 31, 13), 5 * 10**7)])
    assert await bucket_cost(march) == Decimal("176.4446")
    closed = await costs.close_periods(db, tz=UTC, money=USD, now_ms=now)
    assert [k for k, _ in closed] == [key]
    # hand: 1764.446 GB x 0.10 = 176.4446 -> 176.44; the bucket's cost is the bill's again
    assert await bucket_cost(march) == Decimal("176.44")
    again = await view(db, customer, key, MARCH, now_ms=now)
    assert again.stored
    assert again.breakdown.inputs.usage_base == 1_764_446_000_000


async def test_unknown_customer_and_resource_and_period_are_named(
    db: asyncpg.Connection, unique: str
) -> None:
    customer = f"cust-{unique}"
    await resource(db, customer, "bandwidth")
    with pytest.raises(Exception, match=f"customer 'nobody-{unique}' not found"):
        await costs.cost_targets(db, customer_id=f"nobody-{unique}")
    with pytest.raises(Exception, match=f"resource '{customer}/cpu' not found"):
        await costs.cost_targets(db, customer_id=customer, resource_key=f"{customer}/cpu")
    for bad in ("2026-13", "26-03", "march"):
        with pytest.raises(PricingError, match=r"period: .* is not a month written YYYY-MM"):
            costs.parse_month(bad)


async def test_the_running_hub_closes_ended_periods(
    db: asyncpg.Connection, hub_config: HubConfig, unique: str
) -> None:
    customer = f"cust-{unique}"
    key, rid = await resource(db, customer, "bandwidth")
    await readings(db, key, rid, march_history())
    with anyio.fail_after(60):
        async with anyio.create_task_group() as tg:
            await tg.start(run_hub, hub_config)
            # hand: as in the per-unit test, 1764.396 GB x 0.10 = 176.4396 -> 176.44
            await wait_for(
                db,
                "SELECT total FROM cost_breakdowns WHERE customer_resource_id = $1",
                Decimal("176.44"),
                rid,
            )
            tg.cancel_scope.cancel()
    cost = await db.fetchval(
        "SELECT cost FROM usage_aggregates WHERE customer_resource_id = $1 "
        "AND period_type = 'month'",
        rid,
    )
    assert cost == Decimal("176.44")


async def test_a_bad_cost_model_is_named_counted_and_the_others_still_close(
    db: asyncpg.Connection, unique: str
) -> None:
    customer = f"cust-{unique}"
    good, good_id = await resource(db, customer, "bandwidth")
    bad_tiers = {"usage": {"type": "tiered", "mode": "graduated",
                           "tiers": [{"upTo": 100, "unitPrice": "1"}, {"upTo": 100}]}}  # fmt: skip
    bad, bad_id = await resource(db, customer, "bandwidth", name="b", model=bad_tiers)
    for key, rid in ((good, good_id), (bad, bad_id)):
        await readings(db, key, rid, [(ms(2026, 3, 2), ms(2026, 3, 2, 1), 10**9)])
    metrics = HubMetrics()
    closed = await costs.close_periods(db, tz=UTC, money=USD, now_ms=AFTER, metrics=metrics)
    assert [k for k, _ in closed] == [good]
    assert metrics.registry.get_sample_value("resmon_hub_cost_close_failures_total") == 1
    with pytest.raises(PricingError, match=rf"resource {bad}: cost model \$\.usage\.tiers\[1\]"):
        await costs.cost_targets(db, customer_id=customer, resource_key=bad)
