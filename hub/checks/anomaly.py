"""Anomaly check: z-score of a reading against an exponentially decayed window.

The rule the hub implements is "z-score > 3 against the readings of the last 24 h, once
more than 10 points exist". Scanning 24 h of raw rows per reading is what a
hub of a million resources cannot afford, so an actor keeps four numbers
instead (West's weighted incremental mean/variance with exponential decay):

- ``weight``: the decayed number of points (each point starts at 1 and decays
  by ``exp(-age / window)``), so the last ``window`` carries ~63 % of it;
- ``mean`` and ``m2``: the decayed mean and sum of squared deviations;
- ``last_ms``: event time of the last point (decay uses event time, never the
  wall clock, so a replay decides exactly as the first run did);

plus ``points``, an exact count of points seen. The observation is the
*rate* of a summed resource (value per second of its interval, so readings
of different lengths compare) or the *level* of a gauge.

Robust for new resources: no verdict before ``min_points`` points, before
``min_weight`` of decayed weight and before the history of the billing
period spans ``min_span_ms`` (one hour by default: ten readings a minute
apart are not a baseline); the standard deviation is floored at
``rel_floor`` of the mean (and an absolute epsilon), so a perfectly flat
series does not turn its first wiggle into an infinite z-score, while a
10x jump still stands out. The reading is judged against the history
*before* it, then folded in.
"""

from __future__ import annotations

import math

import msgspec

__all__ = ["AnomalySettings", "fold", "zscore"]


class AnomalySettings(msgspec.Struct, frozen=True, kw_only=True):
    """Tunables of the anomaly check (``RESMON_ANOMALY_*``)."""

    #: decay time constant: the "last 24 h" of the rule, in milliseconds
    window_ms: int = 24 * 3600 * 1000
    #: |z| above this is an anomaly
    threshold: float = 3.0
    #: more than this many points must exist before any verdict
    min_points: int = 10
    #: decayed weight needed too (points long ago no longer count as history)
    min_weight: float = 5.0
    #: the period's history must span this long before any verdict
    min_span_ms: int = 3_600_000
    #: standard deviation floor, as a fraction of |mean|
    rel_floor: float = 0.01


def zscore(
    x: float, weight: float, mean: float, m2: float, last_ms: int, at_ms: int, s: AnomalySettings
) -> float | None:
    """``x``'s z-score against the decayed history, or None if its weight is too small."""
    if last_ms and at_ms > last_ms:
        decay = math.exp((last_ms - at_ms) / s.window_ms)
        weight *= decay
        m2 *= decay
    if weight < s.min_weight:
        return None
    var = m2 / weight
    floor = s.rel_floor * abs(mean)
    std = math.sqrt(var) if var > floor * floor else floor
    if std < 1e-12:
        std = 1e-12
    return (x - mean) / std


def fold(
    x: float, weight: float, mean: float, m2: float, last_ms: int, at_ms: int, window_ms: int
) -> tuple[float, float, float, int]:
    """The state after adding ``x`` at ``at_ms``: ``(weight, mean, m2, last_ms)``."""
    if last_ms and at_ms > last_ms:
        decay = math.exp((last_ms - at_ms) / window_ms)
        weight *= decay
        m2 *= decay
    else:
        at_ms = max(at_ms, last_ms)
    weight += 1.0
    delta = x - mean
    mean += delta / weight
    m2 += delta * (x - mean)
    return weight, mean, m2, at_ms
