"""Billing periods and proration: the exact duration ratio, shown on the breakdown."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from fractions import Fraction

import msgspec
import pytest

from hub.costs import (
    CostModel,
    Overage,
    Period,
    PlanSpan,
    PricingError,
    Volume,
    billing_period,
    price,
    price_plan_change,
    prorate,
)

DAY = 86_400_000


def _ms(*args: int) -> int:
    return int(datetime(*args, tzinfo=UTC).timestamp()) * 1000


MARCH = Period(_ms(2026, 3, 1), _ms(2026, 4, 1))


@pytest.mark.parametrize(
    ("at", "period", "tz", "days"),
    [
        (_ms(2026, 2, 14), "monthly", "UTC", 28),
        (_ms(2024, 2, 29), "monthly", "UTC", 29),
        (_ms(2026, 3, 31, 23), "monthly", "UTC", 31),
        (_ms(2024, 7, 1), "yearly", "UTC", 366),
        (_ms(2026, 7, 1), "yearly", "UTC", 365),
    ],
)
def test_billing_periods_in_utc(at: int, period: str, tz: str, days: int) -> None:
    found = billing_period(at, period, tz)  # type: ignore[arg-type]
    assert found.duration_ms == days * DAY
    assert found.start_ms <= at < found.end_ms


def test_a_local_month_with_a_clock_change_is_743_hours() -> None:
    # Berlin moves to summer time on 2026-03-29: March there is one hour short
    march = billing_period(_ms(2026, 3, 15), "monthly", "Europe/Berlin")
    assert march.start_ms == _ms(2026, 2, 28, 23)  # 00:00 CET = 23:00 UTC the day before
    assert march.duration_ms == 743 * 3_600_000
    with pytest.raises(PricingError, match="tz: 'Mars/Olympus' is not a known IANA time zone"):
        billing_period(0, "monthly", "Mars/Olympus")


def test_a_resource_starting_mid_month_pays_the_exact_share_of_the_base_cost() -> None:
    # active from 21 March 00:00 to the end: 11 of 31 days. 20.00 x 11/31 = 7.0967... -> 7.10
    active = Period(_ms(2026, 3, 21), _ms(2026, 4, 1))
    model = CostModel(base_cost=Decimal(20), usage=Overage(Decimal("0.5")))
    bill = price(model, Volume(3 * 10**9, "GB"), period=MARCH, active=active, limit_base=10**9)
    base, overage = bill.lines
    assert base.amount == Decimal("7.10")
    assert base.proration is not None
    assert base.proration.exact_ratio == Fraction(11, 31)
    assert base.proration.ratio == Decimal("0.354838709677")
    assert "prorated x 11/31" in base.description
    # usage is billed as measured, not scaled: (3 - 1) x 0.5 = 1.00
    assert overage.amount == Decimal("1.00")
    assert bill.total == Decimal("8.10")
    assert bill.proration == base.proration
    assert "exact duration ratio" in bill.rule


def test_a_plan_change_mid_period_is_two_prorated_breakdowns_adding_up_to_the_period() -> None:
    # 10 days on 31.00, then 21 days on 62.00: 31 x 10/31 + 62 x 21/31 = 10 + 42
    change = _ms(2026, 3, 11)
    before = price(
        CostModel(base_cost=Decimal(31)),
        Volume(0, "GB"),
        period=MARCH,
        active=Period(MARCH.start_ms, change),
    )
    after = price(
        CostModel(base_cost=Decimal(62)),
        Volume(0, "GB"),
        period=MARCH,
        active=Period(change, MARCH.end_ms),
    )
    assert (before.total, after.total) == (Decimal("10.00"), Decimal("42.00"))
    assert before.proration is not None
    assert after.proration is not None
    assert before.proration.exact_ratio + after.proration.exact_ratio == 1


def test_the_ratio_counts_milliseconds_not_days() -> None:
    # started at 12:00 on the last day: half a day of 31 -> 1/62 of 31.00 = 0.50
    active = Period(_ms(2026, 3, 31, 12), _ms(2026, 4, 1))
    bill = price(CostModel(base_cost=Decimal(31)), Volume(0, "GB"), period=MARCH, active=active)
    assert bill.total == Decimal("0.50")
    assert bill.proration is not None
    assert (bill.proration.active_ms, bill.proration.period_ms) == (DAY // 2, 31 * DAY)


def test_active_spans_are_clipped_and_whole_or_disjoint_ones_are_handled() -> None:
    assert prorate(MARCH, None) is None
    assert prorate(MARCH, Period(0, MARCH.end_ms + DAY)) is None  # covers the whole period
    clipped = prorate(MARCH, Period(MARCH.start_ms - DAY, MARCH.start_ms + DAY))
    assert clipped is not None
    assert clipped.active == Period(MARCH.start_ms, MARCH.start_ms + DAY)
    with pytest.raises(PricingError, match=r"active: .* does not overlap the billing period"):
        prorate(MARCH, Period(0, DAY))
    with pytest.raises(PricingError, match="endMs: 5 is not after startMs 5"):
        Period(5, 5)


def test_a_breakdown_encodes_to_json_with_decimal_strings_and_no_float() -> None:
    active = Period(_ms(2026, 3, 21), _ms(2026, 4, 1))
    bill = price(CostModel(base_cost=Decimal(20)), Volume(0, "GB"), period=MARCH, active=active)
    decoded = msgspec.json.decode(msgspec.json.encode(bill))

    def floats(value: object) -> list[object]:
        if isinstance(value, dict):
            return [f for item in value.values() for f in floats(item)]
        if isinstance(value, list):
            return [f for item in value for f in floats(item)]
        return [value] if isinstance(value, float) else []

    assert floats(decoded) == []
    assert decoded["total"] == "7.10"
    assert decoded["lines"][0]["proration"]["activeMs"] == 11 * DAY
    assert msgspec.json.decode(msgspec.json.encode(bill), type=type(bill)) == bill


def test_a_plan_change_mid_period_is_one_breakdown_with_each_plans_prorated_lines() -> None:
    # small (20.00 + 0.50/GB above 100 GB) until 11 March 12:00, then medium (50.00 + 0.50/GB
    # above 300 GB). March has 31 days: small 10.5 days, medium 20.5 days.
    #   small base  20 x 10.5/31 = 6.774193... -> 6.77
    #   small overage (130 - 100) x 0.50 = 15.00   (130 GB used while on small)
    #   medium base 50 x 20.5/31 = 33.064516... -> 33.06
    #   medium overage: 250 GB under 300 -> 0.00
    #   total 6.77 + 15.00 + 33.06 + 0.00 = 54.83
    change = _ms(2026, 3, 11, 12)
    small = CostModel(base_cost=Decimal(20), usage=Overage(Decimal("0.50")))
    medium = CostModel(base_cost=Decimal(50), usage=Overage(Decimal("0.50")))
    bill = price_plan_change(
        [
            PlanSpan(
                plan="small",
                model=small,
                active=Period(MARCH.start_ms, change),
                usage=Volume(130 * 10**9, "GB"),
                limit_base=100 * 10**9,
            ),
            PlanSpan(
                plan="medium",
                model=medium,
                active=Period(change, MARCH.end_ms),
                usage=Volume(250 * 10**9, "GB"),
                limit_base=300 * 10**9,
            ),
        ],
        period=MARCH,
    )
    got = [(line.plan, line.kind, line.unrounded, line.amount) for line in bill.lines]
    assert got == [
        ("small", "base", Decimal("6.774193548387"), Decimal("6.77")),
        ("small", "overage", Decimal("15"), Decimal("15.00")),
        ("medium", "base", Decimal("33.064516129032"), Decimal("33.06")),
        ("medium", "overage", Decimal("0"), Decimal("0.00")),
    ]
    assert bill.total == Decimal("54.83")
    small_base, medium_base = bill.lines[0].proration, bill.lines[2].proration
    assert small_base is not None
    assert medium_base is not None
    assert small_base.exact_ratio == Fraction(21, 62)  # 10.5 / 31
    assert medium_base.exact_ratio == Fraction(41, 62)  # 20.5 / 31
    assert small_base.exact_ratio + medium_base.exact_ratio == 1
    assert "prorated x 21/62" in bill.lines[0].description
    assert bill.usage == Decimal(380)
    assert bill.limit == Decimal(300)  # the plan it ends the period on
    assert bill.overage_percent == Decimal("26.666666666667")  # (380 - 300) / 300
    assert "plan changed inside the period" in bill.rule
    assert bill.model == medium


def test_plan_spans_that_overlap_or_leave_the_period_are_refused() -> None:
    base = CostModel(base_cost=Decimal(10))
    half = _ms(2026, 3, 16)

    def span(start: int, end: int) -> PlanSpan:
        return PlanSpan(plan="p", model=base, active=Period(start, end), usage=Volume(0, "GB"))

    with pytest.raises(PricingError) as err:
        price_plan_change(
            [span(MARCH.start_ms, half + DAY), span(half, MARCH.end_ms)], period=MARCH
        )
    assert err.value.where == "spans[1].active"
    with pytest.raises(PricingError) as err:
        price_plan_change([span(half, MARCH.end_ms + DAY)], period=MARCH)
    assert err.value.where == "spans[0].active"
    with pytest.raises(PricingError) as err:
        price_plan_change([], period=MARCH)
    assert err.value.where == "spans"
