"""The checks of one reading, written plainly from the functions of this package.

:func:`check` is the reference: threshold (:func:`~hub.checks.thresholds.evaluate`),
anomaly (:func:`~hub.checks.anomaly.zscore` then :func:`~hub.checks.anomaly.fold`)
and forecast (:func:`~hub.checks.forecast.predict`), in that order, over
the state of one resource (anything with the attributes of
:class:`CheckedResource`, in practice a :class:`~hub.actors.actor.ResourceActor`).

:meth:`ResourceActor.handle <hub.actors.actor.ResourceActor.handle>` calls
it. The registry's batch path, :meth:`ResourceActor.run
<hub.actors.actor.ResourceActor.run>`, inlines the same arithmetic for
speed (it shares one decay factor between the z-score and the fold, and
skips the forecast's normal CDF unless the pace reaches the limit);
``resmon bench --only hub-core`` shows the difference, and
``tests/hub/test_hub_checks.py`` holds the two to identical decisions and
state on random series.
"""

from __future__ import annotations

from math import sqrt
from typing import Protocol

from .anomaly import fold, zscore
from .change import Change
from .forecast import predict
from .settings import CheckSettings
from .thresholds import Level, Transition, evaluate

__all__ = ["CheckedResource", "check"]


class CheckedResource(Protocol):
    """The state :func:`check` reads and updates (see :class:`~hub.checks.stats.Stats`)."""

    total: int
    limit: int | None
    level: Level
    warning_bp: int
    critical_bp: int
    anomaly: bool
    forecast: bool
    weight: float
    mean: float
    m2: float
    last_ms: int
    points: int
    first_ms: int
    anchor: int


def _resolved(r: CheckedResource, check: str, at: int, x: float = 0.0, z: float = 0.0) -> Change:
    return Change(
        Transition.RESOLVE, Level.WARNING, Level.NONE, r.total, 0, at, check, x, r.mean, z
    )


def check(
    r: CheckedResource,
    value: int,
    start_ms: int,
    at_ms: int,
    end_ms: int,
    gauge: bool,
    settings: CheckSettings,
    out: list[Change],
) -> None:
    """Run every check for a reading ``value`` over ``[start_ms, at_ms)``; ``r.total`` is applied.

    ``end_ms`` is when the reading's billing period ends. Transitions are
    appended to ``out``; ``r``'s statistics and open episodes are updated.
    """
    a, f = settings.anomaly, settings.forecast
    total = r.total
    if not r.first_ms:
        r.first_ms = at_ms if gauge else start_ms
        r.anchor = value if gauge else 0
    first = r.first_ms
    # anomaly: judge against the history before this point, then fold the point in
    x = float(value) if gauge else value * 1000.0 / (at_ms - start_ms or 1)
    seen = max(at_ms, r.last_ms)
    if r.points >= a.min_points and seen - first >= a.min_span_ms:
        z = zscore(x, r.weight, r.mean, r.m2, r.last_ms, at_ms, a)
        if z is not None:
            if abs(z) > a.threshold:
                if not r.anomaly:
                    r.anomaly = True
                    out.append(
                        Change(
                            Transition.RAISE, Level.NONE, Level.WARNING, total, 0, at_ms,
                            "anomaly", x, r.mean, z,
                        )
                    )  # fmt: skip
            elif r.anomaly:
                r.anomaly = False
                out.append(_resolved(r, "anomaly", at_ms, x, z))
    r.weight, r.mean, r.m2, r.last_ms = fold(
        x, r.weight, r.mean, r.m2, r.last_ms, at_ms, a.window_ms
    )
    r.points += 1
    # thresholds (exact integers)
    limit = r.limit
    if limit is None or r.level is not Level.NONE or total * 10000 >= limit * r.warning_bp:
        previous = r.level
        level, transition = evaluate(
            total, limit, r.warning_bp, r.critical_bp, previous, gap_bp=settings.gap_bp
        )
        if transition is not Transition.NONE:
            r.level = level
            bp = r.critical_bp if level is Level.CRITICAL else r.warning_bp
            out.append(Change(transition, previous, level, total, bp, at_ms))
    # forecast: will the period's total reach the limit before the period ends?
    if limit is None:
        if r.forecast:
            r.forecast = False
            out.append(_resolved(r, "forecast", at_ms))
        return
    if r.points <= f.min_points or (total >= limit and not r.forecast):
        return
    got = predict(
        total=total,
        limit=limit,
        since_ms=first,
        base=r.anchor,
        at_ms=at_ms,
        end_ms=end_ms,
        points=int(r.weight),
        rate_std=sqrt(r.m2 / r.weight),
        gauge=gauge,
    )
    if not r.forecast:
        if (
            got is not None
            and got[2] >= limit
            and at_ms - first >= f.min_span_ms
            and got[0] < end_ms
            and got[1] >= f.min_confidence
        ):
            r.forecast = True
            out.append(
                Change(
                    Transition.RAISE, Level.NONE, Level.WARNING, total, 10000, at_ms,
                    "forecast", forecast_ms=got[0], confidence=got[1],
                )
            )  # fmt: skip
    elif total < limit and (got is None or got[2] < limit * (1.0 - f.resolve_margin)):
        r.forecast = False
        out.append(_resolved(r, "forecast", at_ms))
