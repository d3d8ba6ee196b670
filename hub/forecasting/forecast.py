"""End-of-period usage forecasts with prediction intervals calibrated on the
resource's own history.

Input: the complete daily totals of a summed resource (bytes, requests,
seconds; ``int`` or ``Decimal`` base units) for consecutive days ending the day
before ``today``, and the billing period ``[start, end)`` (``end`` is the first
day of the next period). The period total is what the period has used before
``today`` (known) plus the usage of the ``h = end - today`` remaining days
(forecast, today included since its total is not complete).

How an answer is made:

1. **Rolling-origin backtest.** For every candidate method and every past
   origin ``t`` (the most recent :data:`MAX_ORIGINS` that leave the method its
   minimum history) the method is fitted on the days before ``t`` and its
   forecast of the next ``k`` days' sum, ``k = 1..h``, compared with what
   happened: a signed error per origin and horizon, and the same error divided
   by the spread the method's own model gave it (a *score*, see
   :mod:`hub.forecasting.methods`).
2. **Method choice.** The candidate with the smallest mean absolute error at the
   longest horizon (up to ``h``) on the origins every candidate shares. A weekly
   method needs three weeks of history before it is a candidate.
3. **Interval (normalised split-conformal).** The calibration horizon ``k`` is
   the longest up to ``h`` whose origins span :data:`MIN_WINDOWS` separate
   ``k``-day windows (overlapping windows are nearly the same draw; 30 origins
   of a 27-day sum say little more than one). At each origin, in time order,
   the choice of step 2 is replayed with only the errors known then, and that
   method's ``k``-day score is kept, so the interval also pays for wrong
   choices. The scores times the chosen method's spread for the remaining days
   (times the horizon growth the backtest measured, when the scores grow with
   the horizon faster than the spread does: :func:`_growth`) are the
   calibration errors; the ``1 - a`` interval is the point forecast plus
   their ``floor((n + 1) a/2)``-th and ``ceil((n + 1)(1 - a/2))``-th smallest
   (the extremes when ``n`` is too small for that rank), and never below what
   the period has already used.
4. **Measured coverage.** ``coverage_80`` / ``coverage_95`` replay step 3 in
   time order: from origin :data:`MIN_CALIBRATION` + 1 on, each calibration
   error is checked against the interval made from the errors before it only
   (at least five checks). ``confidence_level`` is the measured coverage of the
   95 % interval, in percent: a measurement on this resource's past, not a
   promise (``docs/forecasting.md`` measures how well the stated levels hold).

Less than :data:`MIN_HISTORY_DAYS` of history, a period younger than
:data:`MIN_PERIOD_AGE_DAYS`, or fewer than :data:`MIN_ORIGINS` backtest origins
for every candidate (17 days for the linear trend) give a :class:`NoForecast`
with the reason. The arithmetic is binary floating point
(these are statistical estimates, not bills); totals are returned as
``Decimal`` rounded half-even to the finest precision of the input.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import date, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Final, Literal

import msgspec

from .methods import METHODS, Method

__all__ = [
    "DEFAULT_METHODS",
    "MAX_ORIGINS",
    "MIN_CALIBRATION",
    "MIN_HISTORY_DAYS",
    "MIN_ORIGINS",
    "MIN_PERIOD_AGE_DAYS",
    "MIN_WINDOWS",
    "ForecastInputError",
    "Interval",
    "NoForecast",
    "UsageForecast",
    "forecast_period",
]

MIN_HISTORY_DAYS: Final = 7
MIN_PERIOD_AGE_DAYS: Final = 3
#: the coverage replay calibrates on at least this many errors before it checks one ...
MIN_CALIBRATION: Final = 5
#: ... and a method is a candidate only with this many backtest origins (5 checks)
MIN_ORIGINS: Final = MIN_CALIBRATION + 5
#: a horizon is calibrated on only when its origins span this many separate windows
MIN_WINDOWS: Final = 8
#: only the most recent origins count: the errors of last year say little about today
MAX_ORIGINS: Final = 120
DEFAULT_METHODS: Final = (
    "linear_trend",
    "weekly_trend",
    "weekly_profile",
    "seasonal_naive_drift",
    "seasonal_naive",
)

Number = int | Decimal
NoForecastReason = Literal["history_too_short", "period_too_young", "backtest_too_short"]


class ForecastInputError(ValueError):
    """Bad input to a forecast; ``where`` names the argument or history item."""

    def __init__(self, where: str, message: str) -> None:
        super().__init__(f"{where}: {message}")
        self.where = where


class Interval(msgspec.Struct, frozen=True):
    """A prediction interval of the period total, both ends included."""

    low: Decimal
    high: Decimal


class NoForecast(msgspec.Struct, frozen=True, kw_only=True):
    """Why there is no forecast: ``reason`` is a stable code, ``detail`` the numbers."""

    reason: NoForecastReason
    detail: str


class UsageForecast(msgspec.Struct, frozen=True, kw_only=True):
    """The forecast of one resource's total for one period."""

    period_start: date
    period_end: date  # exclusive
    today: date
    used_to_date: Decimal
    predicted: Decimal
    interval_80: Interval
    interval_95: Interval
    method: str
    #: measured coverage of the 95 % interval on this resource's backtest, percent
    confidence_level: Decimal
    coverage_80: float
    coverage_95: float
    #: origins the interval was calibrated on, and the horizon they were backtested at
    backtest_origins: int
    backtest_horizon: int
    #: the method's own standard deviation of the remaining days' sum: the calibration
    #: errors are the backtest's errors divided by the spread it had then, times this
    spread: float
    horizon_days: int
    #: mean absolute error of each candidate on the shared origins (the choice's evidence)
    candidate_mae: dict[str, float]
    #: the calibration errors of the remaining days' sum (actual - forecast), scaled to h
    errors: tuple[float, ...]
    point_remaining: float
    #: the factor the calibration errors were widened by to carry them from the
    #: backtest horizon to ``horizon_days`` (1: the spread's own growth sufficed)
    horizon_growth: float = 1.0

    def probability_above(self, limit: Number) -> float:
        """The share of calibration errors that would put the period total above ``limit``."""
        room = float(limit) - float(self.used_to_date)
        if room < 0:
            return 1.0
        over = sum(1 for e in self.errors if max(0.0, self.point_remaining + e) > room)
        return over / len(self.errors)


def _check_history(history: Sequence[tuple[date, Number]], today: date) -> tuple[list[float], int]:
    """(totals as floats, decimal places) after checking every item."""
    values: list[float] = []
    places = 0
    previous: date | None = None
    for i, item in enumerate(history):
        where = f"history[{i}]"
        if not (isinstance(item, tuple) and len(item) == 2):
            raise ForecastInputError(where, f"expected a (date, total) pair, got {item!r}")
        day, total = item
        if not isinstance(day, date):
            raise ForecastInputError(where, f"the day must be a date, got {day!r}")
        if isinstance(total, bool) or not isinstance(total, int | Decimal):
            raise ForecastInputError(
                where, f"the total for {day} must be int or Decimal base units, got {total!r}"
            )
        if isinstance(total, Decimal) and not total.is_finite():
            raise ForecastInputError(where, f"the total for {day} is not finite: {total}")
        if total < 0:
            raise ForecastInputError(where, f"the total for {day} is negative: {total}")
        if day >= today:
            raise ForecastInputError(
                where, f"{day} is not before today ({today}): only complete days are history"
            )
        if previous is not None and day != previous + timedelta(days=1):
            raise ForecastInputError(
                where,
                f"{day} does not follow {previous}: give every day, zero usage as 0, oldest first",
            )
        if isinstance(total, Decimal):
            exponent = total.as_tuple().exponent
            assert isinstance(exponent, int)  # finite, checked above
            places = max(places, -exponent)
        previous = day
        values.append(float(total))
    if previous is not None and previous != today - timedelta(days=1):
        raise ForecastInputError(
            f"history[{len(values) - 1}]",
            f"the history ends on {previous}, not on the day before today ({today}): "
            "give the missing days, zero usage as 0",
        )
    return values, places


def _bounds(errors: Sequence[float], alpha: float) -> tuple[float, float]:
    """Split-conformal lower and upper error quantiles for a ``1 - alpha`` interval."""
    ranked = sorted(errors)
    n = len(ranked)
    lo = max(1, math.floor((n + 1) * alpha / 2))
    hi = min(n, math.ceil((n + 1) * (1 - alpha / 2)))
    return ranked[lo - 1], ranked[hi - 1]


def _replayed_coverage(errors: Sequence[float], alpha: float) -> float:
    """Share of origins whose error fell inside the interval calibrated on earlier origins."""
    checks = range(MIN_CALIBRATION, len(errors))
    hits = 0
    for i in checks:
        lo, hi = _bounds(errors[:i], alpha)
        hits += lo <= errors[i] <= hi
    return hits / len(checks)


class _Trial(msgspec.Struct, frozen=True, gc=False):
    error: float  # actual - forecast of the horizon's sum
    score: float  # error / the method's own spread for that horizon


def _backtest(y: Sequence[float], method: Method, h: int) -> list[dict[int, _Trial]]:
    """``[k - 1][origin]`` -> the trial of the ``k``-day sum from that origin, ``k = 1..h``.

    One fit per origin serves every horizon; only the most recent
    :data:`MAX_ORIGINS` origins count.
    """
    n = len(y)
    by_horizon: list[dict[int, _Trial]] = [{} for _ in range(h)]
    for t in range(max(method.min_history, n - MAX_ORIGINS), n):
        ahead = min(h, n - t)
        fit = method.forecast(y[:t], ahead)
        error = 0.0
        for k in range(ahead):
            error += y[t + k] - fit.points[k]
            by_horizon[k][t] = _Trial(error, error / fit.spread[k])
    return by_horizon


def _calibration_horizon(trials: list[dict[int, _Trial]], h: int) -> int:
    """The longest horizon whose origins span :data:`MIN_WINDOWS` separate windows."""
    return max(k for k in range(1, h + 1) if len(trials[k - 1]) >= MIN_WINDOWS * k)


def _replayed_choice(
    tests: dict[str, list[dict[int, _Trial]]], names: Sequence[str], k: int
) -> dict[int, float]:
    """The ``k``-day scores, in time order, of the method the choice would have made then.

    At each origin the choice is replayed with what was known at that moment:
    the smallest mean absolute ``k``-day error over the origins whose ``k`` days
    had passed (the first candidate before there are any). Calibrating on these
    scores rather than on the winner's own makes the interval pay for the
    choice's mistakes, instead of for the luck of the method that won.
    """
    at_k = {name: tests[name][k - 1] for name in names}
    total = dict.fromkeys(names, 0.0)
    count = dict.fromkeys(names, 0)
    scores: dict[int, float] = {}
    for t in sorted(set().union(*at_k.values())):
        known = t - k  # origins up to here have had their k days
        for name in names:
            if (trial := at_k[name].get(known)) is not None:
                total[name] += abs(trial.error)
                count[name] += 1
        here = [name for name in names if t in at_k[name]]
        rated = [name for name in here if count[name]]
        best = min(rated, key=lambda name: total[name] / count[name]) if rated else here[0]
        scores[t] = at_k[best][t].score
    return scores


def _growth(
    tests: dict[str, list[dict[int, _Trial]]], names: Sequence[str], k: int, h: int
) -> float:
    """How much wider than the spread says the errors get from horizon ``k`` to ``h``.

    The scores are errors in units of the method's own spread: if the spread grew
    with the horizon as fast as the errors do, their scale would not change with
    it. The backtest measures that scale (mean absolute score of the replayed
    choice, on the origins both horizons share) at ``k`` and at ``k / 2``; a
    scale that grows by ``r`` from ``k / 2`` to ``k`` is carried on to ``h`` as
    ``(h / k) ** log2(r)``. Only growth is carried (a factor of at least 1): the
    spread's own growth with the horizon is the floor, so a scale that happens
    to shrink on this history does not narrow the interval.
    """
    half = k // 2
    if k >= h or half < 2:
        return 1.0
    at_k = _replayed_choice(tests, names, k)
    at_half = _replayed_choice(tests, names, half)
    shared = [t for t in at_k if t in at_half]
    if len(shared) < MIN_ORIGINS:
        return 1.0
    scale_k = math.fsum(abs(at_k[t]) for t in shared)
    scale_half = math.fsum(abs(at_half[t]) for t in shared)
    if scale_half <= 0 or scale_k <= scale_half:
        return 1.0
    return float((h / k) ** (math.log(scale_k / scale_half) / math.log(k / half)))


def _decimal(value: float, places: int) -> Decimal:
    return Decimal(value).quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_EVEN)


def _resolve_methods(methods: Sequence[str]) -> list[Method]:
    if not methods:
        raise ForecastInputError("methods", "name at least one method")
    unknown = [name for name in methods if name not in METHODS]
    if unknown:
        raise ForecastInputError(
            "methods", f"unknown {unknown}; known: {', '.join(sorted(METHODS))}"
        )
    return [METHODS[name] for name in methods]


def forecast_period(
    history: Sequence[tuple[date, Number]],
    *,
    start: date,
    end: date,
    today: date,
    methods: Sequence[str] = DEFAULT_METHODS,
) -> UsageForecast | NoForecast:
    """Forecast the total of the period ``[start, end)`` as seen on ``today``."""
    if end <= start:
        raise ForecastInputError("end", f"the period ends ({end}) before it starts ({start})")
    if not start <= today < end:
        raise ForecastInputError("today", f"{today} is outside the period [{start}, {end})")
    candidates = _resolve_methods(methods)
    y, places = _check_history(history, today)
    n, h, age = len(y), (end - today).days, (today - start).days
    if n < MIN_HISTORY_DAYS:
        return NoForecast(
            reason="history_too_short",
            detail=f"{n} days of daily totals; a forecast needs at least {MIN_HISTORY_DAYS}",
        )
    if age < MIN_PERIOD_AGE_DAYS:
        return NoForecast(
            reason="period_too_young",
            detail=f"the period is {age} days old; a forecast needs {MIN_PERIOD_AGE_DAYS}",
        )
    tests = {m.name: _backtest(y, m, h) for m in candidates}
    candidates = [m for m in candidates if len(tests[m.name][0]) >= MIN_ORIGINS]
    if not candidates:
        need = min(METHODS[name].min_history for name in tests) + MIN_ORIGINS
        return NoForecast(
            reason="backtest_too_short",
            detail=f"{n} days of daily totals give fewer than {MIN_ORIGINS} backtest origins; "
            f"calibrating an interval needs at least {need} days",
        )
    # the choice: mean absolute error at the longest horizon all candidates share origins at
    for k in range(h, 0, -1):
        shared = set.intersection(*(set(tests[m.name][k - 1]) for m in candidates))
        if shared:
            break
    mae = {
        m.name: math.fsum(abs(tests[m.name][k - 1][t].error) for t in shared) / len(shared)
        for m in candidates
    }
    chosen = min(candidates, key=lambda m: mae[m.name])  # ties: the earlier candidate
    horizon = min(_calibration_horizon(tests[m.name], h) for m in candidates)
    fit = chosen.forecast(y, h)
    spread = fit.spread[-1]
    names = [m.name for m in candidates]
    growth = _growth(tests, names, horizon, h)
    errors = tuple(
        score * spread * growth for score in _replayed_choice(tests, names, horizon).values()
    )

    used = sum((Decimal(total) for day, total in history if day >= start), Decimal(0))
    remaining = math.fsum(fit.points)

    def interval(alpha: float) -> Interval:
        lo, hi = _bounds(errors, alpha)
        return Interval(
            low=used + _decimal(max(0.0, remaining + lo), places),
            high=used + _decimal(max(0.0, remaining + hi), places),
        )

    coverage_95 = _replayed_coverage(errors, 0.05)
    return UsageForecast(
        period_start=start,
        period_end=end,
        today=today,
        used_to_date=used,
        predicted=used + _decimal(remaining, places),
        interval_80=interval(0.20),
        interval_95=interval(0.05),
        method=chosen.name,
        confidence_level=_decimal(100 * coverage_95, 2),
        coverage_80=_replayed_coverage(errors, 0.20),
        coverage_95=coverage_95,
        backtest_origins=len(errors),
        backtest_horizon=horizon,
        spread=spread,
        horizon_days=h,
        candidate_mae=mae,
        errors=errors,
        point_remaining=remaining,
        horizon_growth=growth,
    )
