"""Threshold checks: pure functions over exact integers.

Percentages are carried as *basis points* (hundredths of a percent, an int:
80% -> 8000, 92.5% -> 9250), so every comparison is exact integer arithmetic:
``total * 10000 >= limit * bp``. No float ever decides whether a customer is
over a threshold.

An alert is an episode:

- NONE -> WARNING when the total reaches warning%;
- NONE or WARNING -> CRITICAL when it reaches critical% (from WARNING this is
  the escalation);
- WARNING or CRITICAL -> NONE (resolve) only once the total falls below
  ``warning% - gap`` (hysteresis, default gap 5 points), so a level that
  hovers around the threshold does not flap;
- anything else: no transition, so an alert is never repeated while the
  total stays above its threshold. A CRITICAL episode does not step down to
  WARNING; it stays CRITICAL until it resolves.
- ``limit is None`` (unlimited): no alerts; an open episode is resolved.
"""

from __future__ import annotations

import enum
from decimal import Decimal

__all__ = [
    "DEFAULT_CRITICAL_PERCENT",
    "DEFAULT_HYSTERESIS",
    "DEFAULT_WARNING_PERCENT",
    "Level",
    "Transition",
    "evaluate",
    "percent_to_bp",
]

#: thresholds of a resource provisioned without its own (``RESMON_WARNING_PERCENT`` /
#: ``RESMON_CRITICAL_PERCENT`` override them); the schema's column defaults match
DEFAULT_WARNING_PERCENT = Decimal(80)
DEFAULT_CRITICAL_PERCENT = Decimal(95)
#: resolve only below warning% minus this many points (``RESMON_HYSTERESIS_POINTS``)
DEFAULT_HYSTERESIS = Decimal(5)


class Level(enum.IntEnum):
    """The alert level a resource is in."""

    NONE = 0
    WARNING = 1
    CRITICAL = 2


class Transition(enum.Enum):
    """What changed; ``RAISE_CRITICAL`` from ``WARNING`` is an escalation."""

    NONE = "none"
    RAISE_WARNING = "raise_warning"
    RAISE_CRITICAL = "raise_critical"
    RESOLVE = "resolve"
    #: an anomaly or forecast episode opens (they have one level)
    RAISE = "raise"


def percent_to_bp(percent: Decimal | int | str) -> int:
    """``Decimal('92.5')`` -> 9250; refuses finer than a hundredth of a percent."""
    bp = Decimal(percent) * 100
    if bp != bp.to_integral_value():
        raise ValueError(f"percentage {percent} is finer than 0.01")
    return int(bp)


def evaluate(
    total: int,
    limit: int | None,
    warning_bp: int,
    critical_bp: int,
    current: Level,
    *,
    gap_bp: int = 500,
) -> tuple[Level, Transition]:
    """The new level of a resource at ``total`` and the transition that leads there."""
    if limit is None:
        if current is not Level.NONE:
            return Level.NONE, Transition.RESOLVE
        return Level.NONE, Transition.NONE
    scaled = total * 10000
    if scaled >= limit * critical_bp:
        if current is not Level.CRITICAL:
            return Level.CRITICAL, Transition.RAISE_CRITICAL
        return current, Transition.NONE
    if scaled >= limit * warning_bp:
        if current is Level.NONE:
            return Level.WARNING, Transition.RAISE_WARNING
        return current, Transition.NONE
    if current is not Level.NONE and scaled < limit * max(warning_bp - gap_bp, 0):
        return Level.NONE, Transition.RESOLVE
    return current, Transition.NONE
