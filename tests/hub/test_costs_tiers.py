"""Pricing shapes by hand: the plan's overage, per unit, graduated and volume tiers, packages.

Each test writes the hand calculation beside the figures it asserts.
"""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hub.costs import (
    Breakdown,
    CostModel,
    MoneyPolicy,
    Overage,
    Package,
    Period,
    PerUnit,
    PricingError,
    Tier,
    Tiered,
    Volume,
    billing_period,
    catalog_model,
    plan_model,
    price,
)
from hub.costs.tiers import graduated, volume

MARCH = Period(1772323200000, 1775001600000)  # 2026-03-01 .. 2026-04-01 UTC, 31 days
GB = 10**9
D = Decimal

TIERS = [
    Tier(D(100), unit_price=D("0.10")),  # (0, 100] GB at 0.10
    Tier(D(1000), unit_price=D("0.08"), flat_price=D(5)),  # (100, 1000] at 0.08, +5 on entry
    Tier(None, unit_price=D("0.05")),  # above 1000 at 0.05
]


def _bill(model: CostModel, base: int, unit: str = "GB", **kwargs: object) -> Breakdown:
    return price(model, Volume(base, unit), period=MARCH, **kwargs)  # type: ignore[arg-type]


def _amounts(bill: Breakdown) -> list[tuple[str, int | None, str]]:
    return [(line.kind, line.tier, str(line.amount)) for line in bill.lines]


@pytest.mark.parametrize(
    ("gigabytes", "lines", "total"),
    [
        (0, [], "0.00"),  # zero usage enters no tier
        (100, [("tier", 1, "10.00")], "10.00"),  # 100 x 0.10; exactly on the bound: tier 1 only
        # 100 x 0.10 = 10; 0.5 x 0.08 + 5 = 5.04
        (Fraction(201, 2), [("tier", 1, "10.00"), ("tier", 2, "5.04")], "15.04"),
        (1000, [("tier", 1, "10.00"), ("tier", 2, "77.00")], "87.00"),  # 900 x 0.08 + 5 = 77
        # last tier: 10 + 77 + 500 x 0.05 = 25
        (1500, [("tier", 1, "10.00"), ("tier", 2, "77.00"), ("tier", 3, "25.00")], "112.00"),
    ],
)
def test_graduated_tiers_by_hand(
    gigabytes: Fraction | int, lines: list[tuple[str, int, str]], total: str
) -> None:
    model = CostModel(usage=Tiered("graduated", TIERS))
    bill = _bill(model, int(gigabytes * GB))
    assert _amounts(bill) == lines
    assert bill.total == D(total)


@pytest.mark.parametrize(
    ("gigabytes", "tier", "total"),
    [
        (0, None, "0.00"),  # zero usage: no tier, nothing charged
        (100, 1, "10.00"),  # on the bound, inclusive: 100 x 0.10
        (Fraction(201, 2), 2, "13.04"),  # 100.5 x 0.08 + 5
        (101, 2, "13.08"),  # 101 x 0.08 + 5
        (1000, 2, "85.00"),  # 1000 x 0.08 + 5
        (1500, 3, "75.00"),  # last tier: every unit at 0.05
    ],
)
def test_volume_tiers_by_hand(gigabytes: Fraction | int, tier: int | None, total: str) -> None:
    bill = _bill(CostModel(usage=Tiered("volume", TIERS)), int(gigabytes * GB))
    assert [line.tier for line in bill.lines] == ([] if tier is None else [tier])
    assert bill.total == D(total)


def test_the_included_quota_comes_off_before_the_tiers() -> None:
    # 1250 GB used, 100 included: tiers see 1150 -> 100 x 0.10 + (900 x 0.08 + 5) + 150 x 0.05
    model = CostModel(base_cost=D(20), included=D(100), usage=Tiered("graduated", TIERS))
    bill = _bill(model, 1250 * GB)
    assert _amounts(bill) == [
        ("base", None, "20.00"),
        ("tier", 1, "10.00"),
        ("tier", 2, "77.00"),
        ("tier", 3, "7.50"),
    ]
    assert bill.total == D("114.50")
    assert bill.usage == D(1250)
    assert bill.limit == D(100)  # no resource limit given: the included quota is the allowance
    assert bill.overage_percent == D(1150)  # (1250 - 100) / 100 x 100


@pytest.mark.parametrize(
    ("requests", "packages", "total"),
    [
        (0, 0, "0.00"),
        (1000, 1, "0.50"),  # exactly one package
        (1001, 2, "1.00"),  # a started package counts whole
        (2500, 3, "1.50"),
    ],
)
def test_package_pricing_rounds_packages_up(requests: int, packages: int, total: str) -> None:
    model = CostModel(usage=Package(size=D(1000), price=D("0.50")))
    bill = _bill(model, requests, "request")
    assert [(line.kind, line.quantity) for line in bill.lines] == [("package", D(packages))]
    assert bill.total == D(total)


def test_package_pricing_after_an_included_quota() -> None:
    # 1500 requests, 500 included: 1000 billable = 1 package of 1000
    model = CostModel(included=D(500), usage=Package(size=D(1000), price=D("0.50")))
    assert _bill(model, 1500, "request").total == D("0.50")


def test_the_plans_base_cost_plus_overage_above_the_limit() -> None:
    # base 49.99; 1234.5 GB against a 1000 GB limit: 234.5 x 0.015 = 3.5175 -> 3.52
    model = CostModel(base_cost=D("49.99"), usage=Overage(D("0.015")))
    bill = _bill(model, 1_234_500_000_000, limit_base=1000 * GB)
    assert _amounts(bill) == [("base", None, "49.99"), ("overage", None, "3.52")]
    assert bill.lines[1].unrounded == D("3.5175")
    assert bill.lines[1].quantity == D("234.5")
    assert bill.total == D("53.51")
    assert bill.limit == D(1000)
    assert bill.overage_percent == D("23.45")  # 234.5 / 1000 x 100
    assert bill.inputs.usage_base == 1_234_500_000_000
    assert bill.inputs.base_unit == "byte"


def test_the_plans_model_under_the_limit_and_unlimited() -> None:
    model = CostModel(base_cost=D("49.99"), usage=Overage(D("0.015")))
    under = _bill(model, 999 * GB, limit_base=1000 * GB)
    assert _amounts(under) == [("base", None, "49.99"), ("overage", None, "0.00")]
    assert under.overage_percent == 0
    unlimited = _bill(model, 5000 * GB)
    assert unlimited.total == D("49.99")
    assert unlimited.limit is None
    assert unlimited.overage_percent is None


def test_a_yearly_plan_bills_the_year_against_the_limit() -> None:
    # 2026: 365 days. 12,500 GB against 12,000: 500 x 0.02 = 10; base 499
    year = billing_period(MARCH.start_ms, "yearly")
    model = CostModel(billing_period="yearly", base_cost=D(499), usage=Overage(D("0.02")))
    bill = price(model, Volume(12_500 * GB, "GB"), period=year, limit_base=12_000 * GB)
    assert bill.billing_period == "yearly"
    assert bill.period.duration_ms == 365 * 86_400_000
    assert bill.total == D("509.00")
    assert bill.lines[0].description == "base cost per year"


def test_the_catalog_cost_per_unit_rounds_each_line_half_even() -> None:
    # 12,345 requests x 0.001 = 12.345: half-even 12.34, half-up 12.35
    model = CostModel(usage=PerUnit(D("0.001")))
    assert _bill(model, 12_345, "request").total == D("12.34")
    half_up = MoneyPolicy("USD", "half_up")
    assert _bill(model, 12_345, "request", money=half_up).total == D("12.35")


def test_cpu_milliseconds_billed_per_hour_exactly() -> None:
    # 5,400,000 ms = 1.5 h at 0.05 = 0.075 -> half-even 0.08 (7.5 cents to the even 8)
    bill = _bill(CostModel(usage=PerUnit(D("0.05"))), 5_400_000, "hour")
    assert bill.usage == D("1.5")
    assert bill.total == D("0.08")
    # 1 s = 1000 ms = 1/3600 h: not a finite decimal; shown to 12 places, rounded from the
    # exact value
    tiny = _bill(CostModel(usage=PerUnit(D(90))), 1000, "hour")
    assert tiny.usage == D("0.000277777778")
    assert tiny.total == D("0.02")  # 90 / 3600 = 0.025 -> 0.02


def test_a_volume_model_refuses_a_rate_and_bad_usage() -> None:
    with pytest.raises(PricingError, match=r"usage\.base: -1"):
        Volume(-1, "GB")
    with pytest.raises(PricingError, match=r"usage\.unit: unknown unit 'furlong'"):
        Volume(1, "furlong")
    with pytest.raises(PricingError, match="limitBase: -1 is not a whole count"):
        _bill(CostModel(), 1, limit_base=-1)


def test_a_limit_in_milliseconds_is_exact_in_hours() -> None:
    # limit 1 ms = 1/3,600,000 h (no finite decimal): 7,200,001 ms used -> 2 h over
    bill = _bill(CostModel(usage=Overage(D(3))), 7_200_001, "hour", limit_base=1)
    assert bill.lines[0].quantity == 2
    assert bill.total == D("6.00")


def test_cost_model_rows_become_models() -> None:
    plan = plan_model("yearly", D("499.00"), D("0.0200"), name="Business")
    assert plan == CostModel("yearly", D("499.00"), usage=Overage(D("0.0200")), name="Business")
    assert plan_model("monthly", None, None) == CostModel()  # NULLs: nothing charged
    with pytest.raises(PricingError, match="billingPeriod: 'weekly' is not one of monthly, yearly"):
        plan_model("weekly", D(1), D(1))
    assert catalog_model(D("0.1000")).usage == PerUnit(D("0.1000"))
    assert catalog_model(None).usage is None
    # the catalog's seeded price: 523.5 GB at 0.10 per GB = 52.35
    assert _bill(catalog_model(D("0.10")), 523_500_000_000).total == D("52.35")


# -- property tests: tiers against a plain unit-by-unit reference ----------------------------


def _reference_graduated(units: int, tiers: list[Tier]) -> Fraction:
    """Walk the units one by one; each costs its tier's price; a touched tier adds its flat."""
    total, touched = Fraction(0), set()
    for unit in range(1, units + 1):
        index = next(i for i, t in enumerate(tiers) if t.up_to is None or unit <= t.up_to)
        total += Fraction(tiers[index].unit_price)
        touched.add(index)
    return total + sum((Fraction(tiers[i].flat_price) for i in touched), Fraction(0))


def _reference_volume(units: int, tiers: list[Tier]) -> Fraction:
    """The tier of the last unit prices all of them."""
    if units == 0:
        return Fraction(0)
    tier = next(t for t in tiers if t.up_to is None or units <= t.up_to)
    return units * Fraction(tier.unit_price) + Fraction(tier.flat_price)


prices = st.decimals(min_value=0, max_value=2, places=4)


@st.composite
def tier_lists(draw: st.DrawFn) -> list[Tier]:
    bounds = sorted(draw(st.sets(st.integers(1, 400), max_size=5)))
    return [
        Tier(D(bound) if bound is not None else None, draw(prices), draw(prices))
        for bound in [*bounds, None]
    ]


@given(tier_lists(), st.integers(0, 600))
def test_graduated_and_volume_match_the_unit_by_unit_reference(
    tiers: list[Tier], units: int
) -> None:
    quantity = Fraction(units)
    assert sum(c.amount for c in graduated(quantity, tiers, "GB")) == _reference_graduated(
        units, tiers
    )
    assert sum(c.amount for c in volume(quantity, tiers, "GB")) == _reference_volume(units, tiers)


@given(tier_lists(), st.integers(0, 600), st.sampled_from(["graduated", "volume"]))
def test_a_breakdown_total_is_the_sum_of_its_rounded_lines(
    tiers: list[Tier], units: int, mode: str
) -> None:
    model = CostModel(base_cost=D("9.99"), usage=Tiered(mode, tiers))  # type: ignore[arg-type]
    bill = _bill(model, units * GB)
    assert bill.total == sum((line.amount for line in bill.lines), D(0))
    for line in bill.lines:
        assert line.amount.as_tuple().exponent == -2
        assert abs(line.amount - line.unrounded) <= D("0.005")


@given(tier_lists(), st.integers(0, 600), st.integers(0, 50))
def test_graduated_charges_never_fall_as_usage_grows(
    tiers: list[Tier], units: int, more: int
) -> None:
    def total(n: int) -> Fraction:
        return sum((c.amount for c in graduated(Fraction(n), tiers, "GB")), Fraction(0))

    assert total(units + more) >= total(units)


def test_each_line_is_rounded_once_and_the_total_is_their_sum_not_a_rounded_sum() -> None:
    # two tiers of 1 GB at 0.005: each line 0.005 -> 0.00 (half-even), total 0.00, not
    # round(0.01) = 0.01; half-up makes each 0.01 and the total 0.02
    tiers = [Tier(D(1), unit_price=D("0.005")), Tier(None, unit_price=D("0.005"))]
    model = CostModel(usage=Tiered("graduated", tiers))
    assert [str(line.amount) for line in _bill(model, 2 * GB).lines] == ["0.00", "0.00"]
    assert _bill(model, 2 * GB).total == D("0.00")
    assert _bill(model, 2 * GB, money=MoneyPolicy("USD", "half_up")).total == D("0.02")


def test_a_currency_without_decimals_rounds_to_whole_units() -> None:
    # 1234.5 GB x 3 JPY = 3703.5 -> half-even 3704
    bill = _bill(CostModel(usage=PerUnit(D(3))), 1_234_500_000_000, money=MoneyPolicy("JPY"))
    assert bill.currency == "JPY"
    assert bill.total == D(3704)
    assert str(bill.total) == "3704"


def test_the_example_in_docs_costs_md_runs_and_gives_its_total() -> None:
    from pathlib import Path

    text = (Path(__file__).resolve().parents[2] / "docs" / "costs.md").read_text()
    example = text.split("```python\n", 1)[1].split("```", 1)[0]
    scope: dict[str, object] = {"at_ms": MARCH.start_ms}
    exec(example, scope)
    bill = scope["bill"]
    assert isinstance(bill, Breakdown)
    assert bill.total == D("53.51")  # as the example's comment says


def test_the_callers_sources_are_kept_on_the_breakdown() -> None:
    bill = _bill(CostModel(usage=PerUnit(D(1))), GB, sources=["usage_aggregates:42"])
    assert bill.inputs.sources == ("usage_aggregates:42",)
