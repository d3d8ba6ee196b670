"""A scripted usage series and the alerts it must give (shared by the hub tests)."""

from __future__ import annotations

import datetime as dt

from _hub_testing import minute_reading

from protocol import UsageReading

#: 2025-11-01T00:00:00Z, the start of a billing month
NOV = int(dt.datetime(2025, 11, 1, tzinfo=dt.UTC).timestamp() * 1000)
DEC = int(dt.datetime(2025, 12, 1, tzinfo=dt.UTC).timestamp() * 1000)
STEP = 600_000  # a reading every 10 minutes
LIMIT = 2_000_000_000  # 2 GB: at ~1 MB / 10 min the month would end near 4.3 GB
SPIKE = 1000
COUNT = 1950  # past 95 % (critical) of the limit


def value(i: int) -> int:
    """~1 MB per reading with a deterministic +-10 % wiggle, and one 10x spike."""
    if i == SPIKE:
        return 10_000_000
    return 1_000_000 + ((i * 7919) % 201 - 100) * 1000


def reading(key: str, i: int, v: int | None = None, *, start: int = NOV) -> UsageReading:
    """Reading ``i`` of the series: :func:`value` (or ``v``) bytes over the ``i``-th step."""
    return minute_reading(key, i, value(i) if v is None else v, start_ms=start, step_ms=STEP)


def first_index_reaching(fraction_bp: int) -> int:
    """Index of the reading whose running total first reaches ``fraction_bp`` of LIMIT."""
    total = 0
    for i in range(COUNT):
        total += value(i)
        if total * 10000 >= LIMIT * fraction_bp:
            return i
    raise AssertionError("the series never gets there")


def model_alerts(readings: list[UsageReading], limit: int | None) -> list[tuple[str, str]]:
    """What the hub must alert for one resource's ``readings``: ``(alert_type, status)``.

    Runs the same actor code in memory, uninterrupted: the reference a hub
    that is killed, restarted or rebalanced must match exactly.
    """
    from hub.actors.actor import CheckSettings, ResourceActor
    from hub.calendar import month_of
    from hub.checks import Level, Transition

    first = readings[0]
    actor = ResourceActor(
        key=first.resource_key,
        resource_id="-",
        customer_id=first.customer_id,
        resource_type=first.resource_type,
        unit="GB",
        kind=first.kind,
        total=0,
        period=-1,
        limit=limit,
        warning_bp=8000,
        critical_bp=9500,
        level=Level.NONE,
    )
    utc = dt.UTC
    out: list[tuple[str, str]] = []
    changes: list = []  # type: ignore[type-arg]
    for r in readings:
        period = month_of(r.end_ms, utc)  # type: ignore[arg-type]
        y, m = divmod(period + 1, 12)
        end = int(dt.datetime(y, m + 1, 1, tzinfo=utc).timestamp() * 1000)
        actor.handle(r, period, (0, end), CheckSettings(), changes)
    for c in changes:
        if c.check == "anomaly":
            kind = "ANOMALY_DETECTED"
        elif c.check == "forecast":
            kind = "FORECAST_LIMIT"
        else:
            level = c.previous if c.transition is Transition.RESOLVE else c.level
            kind = f"THRESHOLD_{level.name}"
        out.append((kind, "RESOLVED" if c.transition is Transition.RESOLVE else "ACTIVE"))
    return out
