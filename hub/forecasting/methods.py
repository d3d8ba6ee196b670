"""Point forecasters of daily usage totals, each with the spread it expects.

Each method takes the complete daily totals before the forecast origin (oldest
first) and a horizon ``h`` in days, and returns a :class:`Fit`: the ``h`` daily
totals it expects next (never below zero: usage does not run backwards) and,
for ``k = 1..h``, the standard deviation its own model gives the error of the
next ``k`` days' sum. The spread is only a yardstick: the interval comes from
backtest errors divided by it (see :mod:`hub.forecasting.forecast`), so a
model that is wrong about its noise still gets an honest interval; what the
yardstick contributes is how the error grows with the horizon. A method looks
only at a trailing window of the history, so an old level does not outweigh the
current one, and needs at least ``min_history`` days.

- ``linear_trend``: the plan's least-squares line through the last 30 daily
  totals, extrapolated day by day.
- ``weekly_trend``: least squares with one intercept per weekday and a common
  slope over the last 28 days (four whole weeks): a weekly pattern that drifts.
- ``weekly_profile``: the mean of each weekday over the last 28 days.
- ``seasonal_naive_drift``: the last week repeated, plus the drift of the
  weekly mean over the last 28 days.
- ``naive`` and ``seasonal_naive``: the last value, and the last week repeated;
  benchmarks for the evaluation, not candidates by default.

The least-squares fits are one routine: with a group per weekday (or a single
group) the slope is the within-group regression of value on day index and each
group's intercept is its mean less the slope times its mean index (the
Frisch-Waugh-Lovell form of the regression with weekday indicators). The same
orthogonality gives the variance of a forecast sum in closed form:
``s^2 (k + sum_g c_g^2 / n_g + D^2 / Sxx)`` for ``c_g`` forecast days of weekday
``g`` and ``D`` the sum of their index offsets, with ``s^2`` the residual
variance. So no matrix library is needed for a 30-point fit.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from typing import Final

import msgspec

__all__ = ["METHODS", "WEEK", "Fit", "Method"]

WEEK: Final = 7
TREND_WINDOW: Final = 30  # the plan's "last 30 days"
WEEKLY_WINDOW: Final = 4 * WEEK


class Fit(msgspec.Struct, frozen=True):
    """Daily forecasts and, per ``k``, the model's standard deviation of the ``k``-day sum."""

    points: list[float]
    spread: list[float]


Forecaster = Callable[[Sequence[float], int], Fit]


class Method(msgspec.Struct, frozen=True):
    """A named forecaster and the history it needs."""

    name: str
    min_history: int
    forecast: Forecaster


def _floor(y: Sequence[float]) -> float:
    """A spread for a series the model fits perfectly, so errors can still be divided by it."""
    return 1e-9 * (math.fsum(map(abs, y)) / len(y) + 1.0)


def _spread(y: Sequence[float], variance: float, terms: list[float]) -> list[float]:
    """``sqrt(variance * term)`` per horizon, never below :func:`_floor`."""
    floor = _floor(y)
    return [max(floor, math.sqrt(max(0.0, variance) * term)) for term in terms]


def _grouped_line(y: Sequence[float], h: int, groups: int, trend: bool) -> Fit:
    """Least squares ``y[t] = a[t % groups] + slope * t`` (slope 0 without ``trend``)."""
    n = len(y)
    counts = [len(range(g, n, groups)) for g in range(groups)]
    mean_t = [math.fsum(range(g, n, groups)) / counts[g] for g in range(groups)]
    mean_y = [math.fsum(y[g::groups]) / counts[g] for g in range(groups)]
    sxx = math.fsum((t - mean_t[t % groups]) ** 2 for t in range(n))
    sxy = math.fsum((t - mean_t[t % groups]) * (y[t] - mean_y[t % groups]) for t in range(n))
    slope = sxy / sxx if trend and sxx > 0 else 0.0
    residuals = [y[t] - mean_y[t % groups] - slope * (t - mean_t[t % groups]) for t in range(n)]
    rss = math.fsum(r * r for r in residuals)
    dof = n - groups - (1 if trend else 0)
    variance = rss / dof if dof > 0 else 0.0
    # day-to-day noise that persists (an AR(1) of lag-1 correlation rho) adds up faster
    lag1 = math.fsum(a * b for a, b in itertools.pairwise(residuals))
    rho = min(0.95, max(0.0, lag1 / rss)) if rss > 0 else 0.0
    inflation = (1 + rho) / (1 - rho)
    points, terms = [], []
    seen = [0] * groups
    offset = 0.0
    noise = 0.0  # sum over forecast days i, j <= the current one of rho^|i - j|
    reach = 0.0  # sum over d = 1..(days so far - 1) of rho^d
    for t in range(n, n + h):
        g = t % groups
        points.append(max(0.0, mean_y[g] + slope * (t - mean_t[g])))
        seen[g] += 1
        offset += t - mean_t[g]
        noise += 1 + 2 * reach
        reach = rho * (1 + reach)
        share = math.fsum(c * c / counts[i] for i, c in enumerate(seen) if c)
        slope_term = offset * offset / sxx if trend and sxx > 0 else 0.0
        terms.append(noise + inflation * (share + slope_term))
    return Fit(points, _spread(y, variance, terms))


def linear_trend(y: Sequence[float], h: int) -> Fit:
    return _grouped_line(y[-TREND_WINDOW:], h, 1, trend=True)


def weekly_trend(y: Sequence[float], h: int) -> Fit:
    return _grouped_line(y[-WEEKLY_WINDOW:], h, WEEK, trend=True)


def weekly_profile(y: Sequence[float], h: int) -> Fit:
    return _grouped_line(y[-WEEKLY_WINDOW:], h, WEEK, trend=False)


def _repeat(y: Sequence[float], h: int, lag: int, drift: float) -> Fit:
    """Day ``k`` ahead is the day ``lag`` days (a whole number of them) before it, plus drift.

    Noise variance from the ``lag``-differences (half their mean square); a source
    day used ``c`` times adds ``c^2`` of it to the sum.
    """
    n = len(y)
    diffs = [y[t] - y[t - lag] for t in range(lag, n)]
    variance = math.fsum(d * d for d in diffs) / (2 * len(diffs)) if diffs else 0.0
    points, terms, uses = [], [], [0] * lag
    for k in range(1, h + 1):
        back = lag * ((k - 1) // lag + 1)  # the same phase in the last observed cycle
        points.append(max(0.0, y[n - 1 + k - back] + drift * back))
        uses[(k - 1) % lag] += 1
        terms.append(k + math.fsum(c * c for c in uses))
    return Fit(points, _spread(y, variance, terms))


def seasonal_naive(y: Sequence[float], h: int) -> Fit:
    return _repeat(y[-WEEKLY_WINDOW:], h, WEEK, 0.0)


def seasonal_naive_drift(y: Sequence[float], h: int) -> Fit:
    recent = y[-WEEKLY_WINDOW:]
    first = math.fsum(recent[:WEEK]) / WEEK
    last = math.fsum(recent[-WEEK:]) / WEEK
    return _repeat(recent, h, WEEK, (last - first) / (len(recent) - WEEK))


def naive(y: Sequence[float], h: int) -> Fit:
    return _repeat(y[-TREND_WINDOW:], h, 1, 0.0)


#: every method by name; three weeks of history before a weekly method is tried
METHODS: Final[dict[str, Method]] = {
    m.name: m
    for m in (
        Method("linear_trend", WEEK, linear_trend),
        Method("weekly_trend", 3 * WEEK, weekly_trend),
        Method("weekly_profile", 3 * WEEK, weekly_profile),
        Method("seasonal_naive_drift", 3 * WEEK, seasonal_naive_drift),
        Method("naive", 2, naive),
        Method("seasonal_naive", 2 * WEEK, seasonal_naive),
    )
}
