"""``Change``: one alert transition a reading caused (threshold, anomaly or forecast)."""

from __future__ import annotations

import msgspec

from .thresholds import Level, Transition

__all__ = ["Change"]


class Change(msgspec.Struct, frozen=True, gc=False):
    """An alert transition caused by one reading.

    ``check`` is ``threshold``, ``anomaly`` or ``forecast``. Anomaly and
    forecast episodes have one level: ``WARNING`` while open. (Scalars only,
    so never part of a reference cycle: not tracked by the garbage collector.)
    """

    transition: Transition
    previous: Level
    level: Level
    total: int
    #: the threshold crossed (warning or critical), in basis points of the limit
    threshold_bp: int
    at_ms: int
    check: str = "threshold"
    #: anomaly: the observation (rate per second, or level) and the history's mean
    value: float = 0.0
    expected: float = 0.0
    z: float = 0.0
    #: forecast: when the limit is reached at the current pace, and how sure we are (0-1)
    forecast_ms: int = 0
    confidence: float = 0.0
