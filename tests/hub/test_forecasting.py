"""End-of-period usage forecasts (hub.forecasting): pure functions, no servers.

The coverage test is seeded, so it is deterministic; its tolerance is stated
beside it. docs/forecasting.md has the full evaluation.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from datetime import date, timedelta
from decimal import Decimal

import pytest

from hub.forecasting import (
    DEFAULT_METHODS,
    ForecastInputError,
    NoForecast,
    UsageForecast,
    forecast_period,
)
from hub.forecasting.forecast import _growth, _Trial

FIRST = date(2026, 1, 5)  # a Monday


def days(values: list[int] | list[Decimal]) -> list[tuple[date, int | Decimal]]:
    return [(FIRST + timedelta(days=i), v) for i, v in enumerate(values)]


def at(offset: int) -> date:
    return FIRST + timedelta(days=offset)


def forecast(values: list[int], start: int, end: int, **kw: object) -> UsageForecast | NoForecast:
    """Forecast [at(start), at(end)) on the day after the last value."""
    return forecast_period(
        days(values),
        start=at(start),
        end=at(end),
        today=at(len(values)),
        **kw,  # type: ignore[arg-type]
    )


# -- no forecast, with the reason ---------------------------------------------------


def test_less_than_a_week_of_history_is_no_forecast() -> None:
    answer = forecast([10**9] * 6, start=0, end=30)
    assert answer == NoForecast(
        reason="history_too_short",
        detail="6 days of daily totals; a forecast needs at least 7",
    )


def test_a_period_younger_than_three_days_is_no_forecast_whatever_the_history() -> None:
    answer = forecast([10**9] * 62, start=60, end=90)  # two days into the period
    assert isinstance(answer, NoForecast)
    assert answer.reason == "period_too_young"
    assert "2 days old" in answer.detail


def test_a_week_of_history_is_too_little_to_calibrate_an_interval() -> None:
    answer = forecast([10**9 + i for i in range(12)], start=5, end=35)
    assert isinstance(answer, NoForecast)
    assert answer.reason == "backtest_too_short"
    assert "12 days" in answer.detail
    assert "at least 17 days" in answer.detail
    assert isinstance(forecast([10**9 + i for i in range(17)], start=5, end=35), UsageForecast)


# -- bad input names what is wrong and where ------------------------------------------


@pytest.mark.parametrize(
    ("history", "where", "words"),
    [
        ([*days([5] * 8), (at(9), 5)], "history[8]", "does not follow 2026-01-12"),
        (days([5] * 9 + [5.0]), "history[9]", "int or Decimal"),  # type: ignore[list-item]
        (days([5] * 9 + [True]), "history[9]", "int or Decimal"),
        (days([5] * 9 + [-1]), "history[9]", "negative"),
        (days([5] * 9 + [Decimal("NaN")]), "history[9]", "not finite"),
        (days([5] * 11), "history[10]", "not before today"),
        (days([5] * 9), "history[8]", "not on the day before today"),
        ([(at(0), 5, 6)], "history[0]", r"a \(date, total\) pair"),
    ],
)
def test_bad_history_is_refused_naming_the_item(
    history: list[tuple[date, int]], where: str, words: str
) -> None:
    with pytest.raises(ForecastInputError, match=words) as caught:
        forecast_period(history, start=at(0), end=at(30), today=at(10))
    assert caught.value.where == where
    assert str(caught.value).startswith(f"{where}: ")


def test_a_bad_period_or_method_is_refused() -> None:
    history = days([5] * 20)
    with pytest.raises(ForecastInputError, match="outside the period") as caught:
        forecast_period(history, start=at(21), end=at(40), today=at(20))
    assert caught.value.where == "today"
    with pytest.raises(ForecastInputError, match="before it starts"):
        forecast_period(history, start=at(10), end=at(10), today=at(20))
    with pytest.raises(ForecastInputError, match=r"unknown \['arima'\]") as caught:
        forecast_period(history, start=at(10), end=at(40), today=at(20), methods=["arima"])
    assert caught.value.where == "methods"


# -- exact on exact shapes --------------------------------------------------------------


@pytest.mark.parametrize("methods", [("linear_trend",), DEFAULT_METHODS])
def test_a_perfect_line_is_extended_exactly(methods: tuple[str, ...]) -> None:
    # 5 TB a day growing by 3 GB a day: the plan's least squares must land on the line
    line = [5 * 10**12 + 3 * 10**9 * t for t in range(40)]
    answer = forecast(line, start=31, end=59, methods=methods)
    assert isinstance(answer, UsageForecast)
    exact = sum(5 * 10**12 + 3 * 10**9 * t for t in range(31, 59))
    assert answer.predicted == exact
    assert answer.used_to_date == sum(line[31:])
    assert answer.method in {"linear_trend", "weekly_trend"}
    # no backtest error on a perfect line: both intervals shrink to the point (to a byte)
    for interval in (answer.interval_80, answer.interval_95):
        assert exact - 1 <= interval.low <= exact <= interval.high <= exact + 1


def test_a_perfect_weekly_pattern_is_recovered() -> None:
    week = [900, 1000, 1000, 950, 880, 400, 300]  # GB, Monday first
    history = [week[t % 7] * 10**9 for t in range(56)]
    answer = forecast(history, start=50, end=80)
    assert isinstance(answer, UsageForecast)
    exact = sum(week[t % 7] * 10**9 for t in range(50, 80))
    assert answer.predicted == exact
    assert answer.method in {"weekly_trend", "weekly_profile", "seasonal_naive"}
    assert answer.interval_95.low <= exact <= answer.interval_95.high
    # no real error to calibrate on: a width of a millionth of the total at most
    assert answer.interval_95.high - answer.interval_95.low < exact / 10**6
    # the plan's line cannot see the week: it misses by more than the weekend
    line = forecast(history, start=50, end=80, methods=("linear_trend",))
    assert isinstance(line, UsageForecast)
    assert abs(line.predicted - exact) > 10**10


def test_decimal_totals_keep_their_precision() -> None:
    history = [Decimal("2.50") + Decimal("0.25") * t for t in range(30)]
    answer = forecast_period(
        days(history), start=at(20), end=at(40), today=at(30), methods=("linear_trend",)
    )
    assert isinstance(answer, UsageForecast)
    assert answer.used_to_date == sum(history[20:])
    assert answer.predicted == sum(Decimal("2.50") + Decimal("0.25") * t for t in range(20, 40))
    assert answer.predicted.as_tuple().exponent == -2


# -- honest intervals ------------------------------------------------------------------------


def _noisy_weekly(rng: random.Random, length: int) -> list[int]:
    week = (1.08, 1.1, 1.1, 1.06, 1.0, 0.72, 0.62)
    slope = rng.uniform(0.0, 0.004)
    return [
        round(2e11 * (1 + slope * t) * week[t % 7] * max(0.0, rng.gauss(1.0, 0.06)))
        for t in range(length)
    ]


def test_intervals_cover_what_they_state_on_generated_series() -> None:
    # 30 seeded series (weekly pattern, a random slope, 6 % daily noise), forecast on
    # six days of a 30-day period after 90 days of history: 180 forecasts. Tolerance:
    # the 80 % interval covers 72-88 % and the 95 % one at least 90 % (the binomial
    # standard error at 180 draws is 3 points; the origins of one series are correlated).
    rng = random.Random(20261204)
    hits = {80: 0, 95: 0}
    total = 0
    for _ in range(30):
        y = _noisy_weekly(rng, 120)
        actual = sum(y[90:120])
        for age in (3, 7, 12, 17, 22, 27):
            answer = forecast(y[: 90 + age], start=90, end=120)
            assert isinstance(answer, UsageForecast)
            total += 1
            hits[80] += answer.interval_80.low <= actual <= answer.interval_80.high
            hits[95] += answer.interval_95.low <= actual <= answer.interval_95.high
    assert 0.72 <= hits[80] / total <= 0.88, hits
    assert hits[95] / total >= 0.90, hits


def test_confidence_level_is_measured_on_the_resources_own_history() -> None:
    rng = random.Random(7)
    calm = [round(1e9 * rng.gauss(1.0, 0.05)) for _ in range(120)]
    # the same, but the last 40 days are five times as noisy as the calibration expects
    stormy = calm[:80] + [round(1e9 * max(0.0, rng.gauss(1.0, 0.25))) for _ in range(40)]
    steady = forecast(calm, start=110, end=140)
    shaken = forecast(stormy, start=110, end=140)
    assert isinstance(steady, UsageForecast)
    assert isinstance(shaken, UsageForecast)
    assert steady.confidence_level == round(Decimal(100 * steady.coverage_95), 2)
    assert shaken.confidence_level < steady.confidence_level
    assert shaken.coverage_80 < steady.coverage_80
    assert steady.backtest_origins == len(steady.errors) >= 10


def test_probability_above_a_limit_follows_the_calibration_errors() -> None:
    rng = random.Random(3)
    answer = forecast([round(1e9 * rng.gauss(1.0, 0.1)) for _ in range(75)], start=60, end=90)
    assert isinstance(answer, UsageForecast)
    assert answer.probability_above(answer.used_to_date - 1) == 1.0
    assert answer.probability_above(answer.interval_95.high * 2) == 0.0
    assert 0.3 <= answer.probability_above(answer.predicted) <= 0.7
    assert answer.probability_above(answer.interval_80.high) <= 0.15


def _trials(scale: Callable[[int], float], horizons: int) -> list[dict[int, _Trial]]:
    """Backtest trials of one method over 60 origins whose scores are +-scale(k) at horizon k."""
    return [
        {t: _Trial(float(t), (-1) ** t * scale(k)) for t in range(60)}
        for k in range(1, horizons + 1)
    ]


def test_errors_growing_faster_than_the_spread_are_carried_to_the_horizon() -> None:
    # scores grow as sqrt(k): from k/2 = 5 to k = 10 by sqrt(2), i.e. as k^0.5, so from the
    # calibration horizon 10 to the period's 40 remaining days by (40 / 10)^0.5 = 2
    growing = {"m": _trials(math.sqrt, 40)}
    assert _growth(growing, ["m"], 10, 40) == pytest.approx(2.0)
    # scores that keep their scale (the spread grew right) or shrink: no widening
    assert _growth({"m": _trials(lambda k: 1.0, 40)}, ["m"], 10, 40) == 1.0
    assert _growth({"m": _trials(lambda k: 1 / k, 40)}, ["m"], 10, 40) == 1.0
    # calibrated at the period's own horizon: nothing to carry
    assert _growth(growing, ["m"], 40, 40) == 1.0
