"""Peak and off-peak prices (``timeOfUse``) and the SCHEDULE_OFF_PEAK advice, by hand.

Each test writes the hand calculation beside the figures it asserts, to the cent.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import msgspec
import pytest
from test_costs_recommend import bandwidth

from hub.costs import (
    CostModel,
    MoneyPolicy,
    PricingError,
    TimeOfUse,
    Volume,
    billing_period,
    load_cost_model,
    price,
    split_hours,
)
from hub.costs.recommend import Plan, RecommendSettings, ResourceHistory, recommend

GB = 10**9
D = Decimal
HOUR_MS = 3_600_000
#: peak 08:00-20:00 at 0.12 per GB, the other hours at 0.05
TARIFF = TimeOfUse(peak_start=8, peak_end=20, peak_price=D("0.12"), off_peak_price=D("0.05"))
MODEL = CostModel(base_cost=D("10.00"), usage=TARIFF)


def march(tz: str = "UTC"):  # type: ignore[no-untyped-def]
    start = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)
    return billing_period(int(start.timestamp() * 1000), "monthly", tz)


def test_the_peak_and_off_peak_lines_are_each_rounded_once_and_add_up() -> None:
    # peak 123.456789 GB x 0.1234 = 15.2345677626 -> 15.23
    # off-peak (130.456790 - 123.456789) = 7.000001 GB x 0.0456 = 0.3192000456 -> 0.32
    # base 10.00; total 10.00 + 15.23 + 0.32 = 25.55
    model = load_cost_model(
        '{"baseCost": "10.00", "usage": {"type": "timeOfUse", "peakStart": 8, "peakEnd": 20,'
        ' "peakPrice": "0.1234", "offPeakPrice": "0.0456"}}'
    )
    bill = price(model, Volume(130_456_790_000, "GB", peak_base=123_456_789_000), period=march())
    lines = {line.kind: line for line in bill.lines}
    assert lines["peak"].quantity == D("123.456789")
    assert lines["peak"].unrounded == D("15.2345677626")
    assert lines["peak"].amount == D("15.23")
    assert lines["peak"].unit_price == D("0.1234")
    assert lines["offPeak"].quantity == D("7.000001")
    assert lines["offPeak"].unrounded == D("0.3192000456")
    assert lines["offPeak"].amount == D("0.32")
    assert lines["base"].amount == D("10.00")
    assert bill.total == D("25.55")
    assert bill.inputs.peak_base == 123_456_789_000
    assert "peak hours 08:00-20:00" in bill.rule
    assert [line.kind for line in bill.lines] == ["base", "peak", "offPeak"]


def test_the_hours_are_split_in_the_billing_time_zone_summer_time_included() -> None:
    # 06:00 UTC is 07:00 in Berlin in January (off-peak), 08:00 in July (peak);
    # 19:00 UTC is 20:00 in January and 18:00 UTC is 20:00 in July (off-peak: the
    # window ends at 20:00)
    def at(day: dt.date, hour: int) -> int:
        moment = dt.datetime(day.year, day.month, day.day, hour, tzinfo=dt.UTC)
        return int(moment.timestamp() * 1000)

    jan, jul = dt.date(2026, 1, 15), dt.date(2026, 7, 15)
    buckets = [
        (at(jan, 6), 1),
        (at(jan, 7), 10),
        (at(jan, 18), 100),
        (at(jan, 19), 1000),
        (at(jul, 6), 10_000),
        (at(jul, 17), 100_000),
        (at(jul, 18), 1_000_000),
    ]
    split = split_hours(buckets, TARIFF, "Europe/Berlin")
    # peak: jan 08:00 (10), jan 19:00 (100), jul 08:00 (10,000), jul 19:00 (100,000)
    assert split.peak_base == 110_110
    # off-peak: jan 07:00 (1), jan 20:00 (1,000), jul 20:00 (1,000,000)
    assert split.off_peak_base == 1_001_001
    assert split.hours == 7
    # a window over midnight: 22 to 6
    night = TimeOfUse(peak_start=22, peak_end=6, peak_price=D(1), off_peak_price=D(0))
    assert [h for h in range(24) if night.is_peak(h)] == [0, 1, 2, 3, 4, 5, 22, 23]
    with pytest.raises(PricingError, match=r"hours\[1\]"):
        split_hours([(0, 1), (HOUR_MS, -1)], TARIFF, "UTC")


def test_bad_time_of_use_models_and_usages_name_the_field() -> None:
    bad = [
        ('"peakStart": 25, "peakEnd": 20', "$.usage.peakStart"),
        ('"peakStart": 8, "peakEnd": 8', "$.usage.peakEnd"),
        ('"peakStart": 0, "peakEnd": 24', "$.usage.peakEnd"),
    ]
    for hours, where in bad:
        with pytest.raises(PricingError) as err:
            load_cost_model(
                '{"usage": {"type": "timeOfUse", ' + hours + ', "peakPrice": "0.1",'
                ' "offPeakPrice": "0.05"}}'
            )
        assert err.value.where == where, (hours, err.value)
    with pytest.raises(PricingError) as err:
        load_cost_model(
            '{"included": 5, "usage": {"type": "timeOfUse", "peakStart": 8, "peakEnd": 20,'
            ' "peakPrice": "0.1", "offPeakPrice": "0.05"}}'
        )
    assert err.value.where == "$.included"
    with pytest.raises(PricingError) as err:
        price(MODEL, Volume(10 * GB, "GB"), period=march())
    assert err.value.where == "usage.peakBase"
    with pytest.raises(PricingError) as err:
        Volume(10, "GB", peak_base=11)
    assert err.value.where == "usage.peakBase"


def history(peak_gb: str, off_gb: str, days: int = 30) -> ResourceHistory:
    """``days`` days of ``peak_gb`` in the peak hours and ``off_gb`` outside, on MODEL."""
    peak = int(D(peak_gb) * GB)
    daily = bandwidth(Plan(plan_id="tou", model=MODEL), [str(D(peak_gb) + D(off_gb))] * days)
    return msgspec.structs.replace(daily, peak_daily=[peak] * days)


def test_usage_concentrated_in_peak_hours_is_advised_off_peak_with_the_savings() -> None:
    # 30 days of 10 GB in peak hours and 2 GB outside: 300 GB peak of 360 (83.3 % >= 60 %).
    # Now:     10.00 + 300 x 0.12 = 36.00 + 60 x 0.05 = 3.00 -> 49.00
    # Half the peak moved (150 GB): 10.00 + 150 x 0.12 = 18.00 + 210 x 0.05 = 10.50 -> 38.50
    # Saving 49.00 - 38.50 = 10.50 >= 10
    [rec] = recommend(history("10", "2"), [], money=MoneyPolicy())
    assert rec.kind == "SCHEDULE_OFF_PEAK"
    assert rec.monthly_savings == D("10.50")
    assert rec.effort == "MEDIUM"
    assert rec.evidence["usage"] == "360"
    assert rec.evidence["peakUsage"] == "300"
    assert rec.evidence["peakShare"] == "0.833333333333"  # 300 / 360, shown to 12 places
    assert rec.evidence["peakWindow"] == "08:00-20:00"
    assert rec.evidence["shiftedUsage"] == "150"
    assert rec.evidence["currentMonthlyCost"] == "49.00"
    assert rec.evidence["shiftedMonthlyCost"] == "38.50"
    assert rec.evidence["monthlySavings"] == "10.50"
    # the same advice is the same id tomorrow, whatever the figures
    [again] = recommend(history("11", "2"), [], money=MoneyPolicy())
    assert again.recommendation_id == rec.recommendation_id


def test_no_off_peak_advice_below_the_minimum_or_when_usage_is_not_concentrated() -> None:
    # 8 GB peak, 2 GB off-peak a day: 240 GB of 300 (80 %).
    # Now 10.00 + 28.80 + 3.00 = 41.80; half moved: 10.00 + 14.40 + 9.00 = 33.40;
    # saving 8.40 < 10: nothing
    assert recommend(history("8", "2"), [], money=MoneyPolicy()) == []
    # ... unless the minimum is lower
    [rec] = recommend(
        history("8", "2"), [], settings=RecommendSettings(min_savings=D(8)), money=MoneyPolicy()
    )
    assert rec.monthly_savings == D("8.40")
    # 20 GB peak, 20 GB off-peak a day: 50 % < 60 %, although moving would save 18.00
    assert recommend(history("20", "20"), [], money=MoneyPolicy()) == []
    # fewer than 30 days: nothing yet
    assert recommend(history("10", "2", days=29), [], money=MoneyPolicy()) == []
    # a history without the peak split is refused, naming it
    bare = history("10", "2")
    with pytest.raises(PricingError) as err:
        recommend(ResourceHistory(**{**_fields(bare), "peak_daily": None}), [], money=MoneyPolicy())
    assert err.value.where == "peakDaily"


def _fields(h: ResourceHistory) -> dict[str, object]:
    return {f: getattr(h, f) for f in h.__struct_fields__}
