"""Optimization recommendations by hand (issue 12, section 4).

Each test writes the hand calculation beside the recommendations it asserts:
exactly those, with their savings, and none below the minimum.
"""

from __future__ import annotations

from decimal import Decimal

import pytest

from hub.costs import MoneyPolicy, PricingError, catalog_model, plan_model
from hub.costs.recommend import (
    Plan,
    RecommendSettings,
    ResourceHistory,
    recommend,
    recommendation_id,
)

GB = 10**9
D = Decimal

# bandwidth plans: base per month + 0.50 per GB above the plan's limit
SMALL = Plan(plan_id="small", model=plan_model("monthly", D(20), D("0.50")), limit_base=100 * GB)
MEDIUM = Plan(plan_id="medium", model=plan_model("monthly", D(50), D("0.50")), limit_base=300 * GB)
LARGE = Plan(plan_id="large", model=plan_model("monthly", D(90), D("0.50")), limit_base=1000 * GB)
CATALOG = [SMALL, MEDIUM, LARGE]


def bandwidth(
    plan: Plan, daily_gb: list[int] | list[str], periods_gb: tuple[int, ...] = ()
) -> ResourceHistory:
    return ResourceHistory(
        customer_id="cust-1",
        resource_key="cust-1/bandwidth/wan1",
        resource_type="bandwidth",
        unit="GB",
        kind="delta",
        plan=plan,
        daily=[int(D(str(gb)) * GB) for gb in daily_gb],
        periods=[gb * GB for gb in periods_gb],
    )


def storage(levels_gb: list[int], plan: Plan | None = None) -> ResourceHistory:
    return ResourceHistory(
        customer_id="cust-2",
        resource_key="cust-2/storage/s3",
        resource_type="storage",
        unit="GB",
        kind="level",
        plan=plan or Plan(plan_id="catalog", model=catalog_model(D("0.10"))),
        daily=[gb * GB for gb in levels_gb],
    )


def test_resize_down_to_the_cheapest_plan_that_covers_the_95th_percentile_with_headroom() -> None:
    # 27 days at 3 GB, 3 days at 5 GB. Rank ceil(0.95 x 30) = 29 -> the 29th of
    # the sorted days is 5 GB; a month of it is 5 x 30 = 150 GB, under half of
    # the 1000 GB limit (500). With 20 % headroom it needs 180 GB: medium (300)
    # covers it, small (100) does not. Large at 150 GB: 90.00; medium: 50.00.
    # Saving 40.00 a month.
    history = bandwidth(LARGE, [3] * 27 + [5] * 3)
    [rec] = recommend(history, CATALOG)
    assert (rec.kind, rec.direction, rec.target_plan_id) == ("RESIZE_RESOURCE", "down", "medium")
    assert rec.monthly_savings == D("40.00")
    assert rec.currency == "USD"
    assert rec.effort == "LOW"
    assert rec.evidence["p95DailyUsage"] == "5"
    assert rec.evidence["monthlyNeed"] == "150"
    assert rec.evidence["requiredWithHeadroom"] == "180"
    assert rec.evidence["currentMonthlyCost"] == "90.00"
    assert rec.evidence["targetMonthlyCost"] == "50.00"
    assert rec.evidence["monthlySavings"] == "40.00"


def test_resize_down_prefers_the_larger_saving() -> None:
    # 2 GB a day: 60 GB a month, 72 with headroom: small (100) and medium both
    # cover it. Large 90.00 -> small 20.00 saves 70.00, medium 40.00: small.
    [rec] = recommend(bandwidth(LARGE, [2] * 30), CATALOG)
    assert (rec.target_plan_id, rec.monthly_savings) == ("small", D("70.00"))


def test_resize_down_below_the_minimum_is_not_offered_and_the_minimum_is_inclusive() -> None:
    # Large at base 55: 55.00 - 50.00 (medium) = 5.00 a month, below 10.
    large = Plan(
        plan_id="large", model=plan_model("monthly", D(55), D("0.50")), limit_base=LARGE.limit_base
    )
    history = bandwidth(large, [3] * 27 + [5] * 3)
    assert recommend(history, [SMALL, MEDIUM, large]) == []
    # a minimum of exactly 5.00 lets it through
    [rec] = recommend(history, [SMALL, MEDIUM, large], settings=RecommendSettings(min_savings=D(5)))
    assert rec.monthly_savings == D("5.00")


def test_no_resize_down_when_the_95th_percentile_is_not_well_under_the_limit() -> None:
    # 17 GB a day: 510 GB a month, above half of 1000 GB: keep the plan.
    assert recommend(bandwidth(LARGE, [17] * 30), CATALOG) == []


def test_resize_up_when_the_overage_exceeds_the_price_step() -> None:
    # Small (limit 100 GB, base 20) used 200, 160, 240 GB in the last periods:
    # overage 50.00, 30.00, 70.00, on average 50.00 > the 30.00 step to medium.
    # Small billed 70, 50, 90 (average 70.00); medium 50 each (all under 300 GB).
    # Saving 70.00 - 50.00 = 20.00 a month.
    history = bandwidth(SMALL, [7] * 30, (200, 160, 240))
    [rec] = recommend(history, CATALOG)
    assert (rec.kind, rec.direction, rec.target_plan_id) == ("RESIZE_RESOURCE", "up", "medium")
    assert rec.monthly_savings == D("20.00")
    assert rec.evidence["averageOverage"] == "50.00"
    assert rec.evidence["priceStep"] == "30.00"
    assert rec.evidence["periodUsage"] == "200,160,240"


def test_no_resize_up_when_the_overage_is_under_the_step() -> None:
    # 140 GB each period: overage 20.00 <= the 30.00 step.
    assert recommend(bandwidth(SMALL, [7] * 30, (140, 140, 140)), CATALOG) == []


def test_resize_up_without_a_month_of_daily_history() -> None:
    # the up rule reads closed periods only: 10 days of daily usage are enough
    [rec] = recommend(bandwidth(SMALL, [7] * 10, (200, 160, 240)), CATALOG)
    assert (rec.direction, rec.monthly_savings) == ("up", D("20.00"))


def test_an_idle_resource_that_costs_money_is_waste_and_nothing_else() -> None:
    # Medium (limit 300 GB): the floor is 1 % of it, 3 GB. 0.09 GB a day for 30
    # days is 2.7 GB in all: idle; billed 50.00 a month: remove it, saving 50.00.
    # (It would otherwise also fit small; only the removal is offered.)
    [rec] = recommend(bandwidth(MEDIUM, ["0.09"] * 30), CATALOG)
    assert (rec.kind, rec.monthly_savings, rec.effort) == ("ELIMINATE_WASTE", D("50.00"), "MEDIUM")
    assert rec.evidence["usage"] == "2.7"
    assert rec.evidence["idleFloor"] == "3"


def test_one_busy_day_is_not_idle() -> None:
    # 29 days at 0.09 GB and one at 0.39: 2.61 + 0.39 = 3 GB, the floor: not
    # idle. As a resize the 95th (rank 29 -> 0.09 GB) needs 2.7 GB a month,
    # 3.24 with headroom: small covers it, 50.00 - 20.00 = 30.00 saved.
    [rec] = recommend(bandwidth(MEDIUM, ["0.09"] * 29 + ["0.39"]), CATALOG)
    assert (rec.kind, rec.direction, rec.monthly_savings) == ("RESIZE_RESOURCE", "down", D("30.00"))


def test_an_idle_resource_that_costs_nothing_is_not_waste() -> None:
    # catalog billing at 0.10 per GB, unlimited (floor 1 GB), nothing used: 0.00
    assert recommend(storage([0] * 30), []) == []


def test_steady_storage_growth_is_compressed() -> None:
    # 1000 + 20 d GB for d = 0..29: slope 20 GB a day, R^2 = 1. Now 1580 GB
    # (158.00 at 0.10); in 30 days + 600 GB = 2180 GB (218.00): growth costs 60.00.
    # Compressing half the growth: 1580 + 300 = 1880 GB (188.00). Saving 30.00.
    [rec] = recommend(storage([1000 + 20 * d for d in range(30)]), [])
    assert (rec.kind, rec.monthly_savings) == ("COMPRESS_DATA", D("30.00"))
    assert rec.evidence["slopePerDay"] == "20"
    assert rec.evidence["r2"] == "1"
    assert rec.evidence["growthCost"] == "60.00"
    assert rec.evidence["projectedLevel"] == "2180"


def test_slow_or_unsteady_growth_is_not_compressed() -> None:
    # 2 GB a day: 60 GB in a month, half of it 30 GB x 0.10 = 3.00, below 10
    assert recommend(storage([1000 + 2 * d for d in range(30)]), []) == []
    # up and down by 500 GB: slope small, R^2 far below 0.8
    assert recommend(storage([1000 + (500 if d % 2 else 0) + d for d in range(30)]), []) == []


def test_less_than_the_window_gives_no_daily_advice() -> None:
    assert recommend(bandwidth(LARGE, [3] * 29), CATALOG) == []
    assert recommend(storage([1000 + 20 * d for d in range(29)]), []) == []


def test_ids_are_stable_across_days_and_differ_by_action() -> None:
    first = recommend(bandwidth(LARGE, [3] * 30), CATALOG)[0]
    later = recommend(bandwidth(LARGE, [3] * 20 + [4] * 10), CATALOG)[0]
    assert first.monthly_savings == D("40.00")
    assert later.target_plan_id == "medium"
    assert first.recommendation_id == later.recommendation_id
    to_small = recommendation_id("RESIZE_RESOURCE", "cust-1", "cust-1/bandwidth/wan1", "down:small")
    assert to_small != first.recommendation_id
    assert first.recommendation_id == recommendation_id(
        "RESIZE_RESOURCE", "cust-1", "cust-1/bandwidth/wan1", "down:medium"
    )


def test_savings_are_in_the_configured_currency() -> None:
    [rec] = recommend(bandwidth(LARGE, [2] * 30), CATALOG, money=MoneyPolicy("EUR"))
    assert (rec.currency, rec.monthly_savings) == ("EUR", D("70.00"))


def test_bad_input_is_refused_naming_it() -> None:
    history = bandwidth(LARGE, ["1", "-5"])
    with pytest.raises(PricingError, match=r"daily\[1\]"):
        recommend(history, CATALOG)
    with pytest.raises(PricingError, match="minSavings"):
        RecommendSettings(min_savings=D(-1))
    with pytest.raises(PricingError, match="underFraction"):
        RecommendSettings(under_fraction=D(2))
