"""Forecast check: will this resource reach its limit before the billing period ends?

For a summed resource (bandwidth, API calls, CPU hours) the pace is the
period's average rate, ``total / (now - period start)``; at that pace the
total reaches ``limit`` at ``now + (limit - total) / rate``. For a gauge
(storage, memory) the pace is the level's slope since the first point of the
period. The alert is raised when that instant falls before the period ends.

Confidence is the probability that the true pace is at least the pace the
limit needs, ``P(rate >= needed)``, with the rate's uncertainty taken from
the actor's decayed rate statistics (standard error ``std / sqrt(points)``),
through the normal CDF. It is reported with the alert (0-100 %); an alert is
raised only at or above ``min_confidence``, after ``min_points`` points and
once the period has been observed for ``min_span_ms`` (an hour), so a
resource a few minutes old does not cry wolf.
"""

from __future__ import annotations

import math

import msgspec

__all__ = ["ForecastSettings", "predict"]


class ForecastSettings(msgspec.Struct, frozen=True, kw_only=True):
    """Tunables of the forecast check (``RESMON_FORECAST_*``)."""

    min_points: int = 10
    #: the period must have been observed this long: a month is not extrapolated from minutes
    min_span_ms: int = 3_600_000
    #: raise at or above this confidence (0-1)
    min_confidence: float = 0.8
    #: a forecast episode resolves once the projected end-of-period total falls below
    #: ``limit * (1 - resolve_margin)`` (hysteresis against flapping)
    resolve_margin: float = 0.05


def _phi(z: float) -> float:
    return 0.5 * (1.0 + math.erf(z / math.sqrt(2.0)))


def predict(
    *,
    total: int,
    limit: int,
    since_ms: int,
    base: int,
    at_ms: int,
    end_ms: int,
    points: int,
    rate_std: float,
    gauge: bool = False,
) -> tuple[int, float, float] | None:
    """``(crossing_ms, confidence, projected_at_end)`` or None when no pace can be measured.

    ``base`` is the value at ``since_ms`` (0 for a summed resource, the first
    level of the period for a ``gauge``); ``rate_std`` is the standard deviation of
    the per-second rate (summed) or of the level (gauge: the slope's noise is
    taken as ``rate_std / elapsed``).
    """
    elapsed = (at_ms - since_ms) / 1000.0
    if elapsed <= 0 or total >= limit:
        return None
    rate = (total - base) / elapsed
    remaining = (end_ms - at_ms) / 1000.0
    projected = total + rate * max(remaining, 0.0)
    if rate <= 0:
        return None
    crossing_ms = at_ms + int((limit - total) / rate * 1000.0)
    needed = (limit - total) / remaining if remaining > 0 else math.inf
    se = rate_std / math.sqrt(max(points, 1))
    if gauge:  # a gauge: the noise of the level over the elapsed time
        se = rate_std / elapsed
    if math.isinf(needed):
        confidence = 0.0
    elif se <= 0:
        confidence = 1.0 if rate >= needed else 0.0
    else:
        confidence = _phi((rate - needed) / se)
    return crossing_ms, confidence, projected
