"""``ResourceActor``: the live state of one customer resource.

An actor owns its period total (or level), its limit and thresholds, its open
episodes (threshold level, anomaly, forecast) and the compact statistics the
anomaly and forecast checks need, and handles one reading at a time (the
registry's shard worker guarantees that). State is compact on purpose —
``__slots__``, ints and floats, shared interned strings — because a hub
should hold a million of them; it can always be rebuilt from PostgreSQL
(:func:`ResourceActor.from_row`), where the batch transaction stores it.

Billing periods are calendar months in the billing time zone, numbered
``year * 12 + month - 1``. A reading of a later period starts a new total
(and resolves an open forecast); a reading of an earlier period (late data)
is stored raw but not added to the current total.

Every decision uses event time (the reading's ``end_ms``), never the wall
clock, so replaying a partition decides exactly what the first run decided.
"""

from __future__ import annotations

import datetime as dt
import sys
from math import exp as _exp
from math import sqrt as _sqrt
from zoneinfo import ZoneInfo

import msgspec

from protocol import UsageReading

from ..checks.anomaly import AnomalySettings
from ..checks.forecast import ForecastSettings, predict
from ..checks.thresholds import Level, Transition, evaluate, percent_to_bp
from ..storage.provision import ResourceRow

__all__ = [
    "MAX_TOTAL",
    "ActorFault",
    "Change",
    "CheckSettings",
    "Outcome",
    "ResourceActor",
    "period_of",
    "period_start",
]

#: the largest total PostgreSQL's BIGINT holds
MAX_TOTAL = 2**63 - 1


class ActorFault(Exception):
    """A reading an actor cannot apply (a poison message): it is dead-lettered."""


def period_of(ms: int, tz: ZoneInfo) -> int:
    """The billing month (``year * 12 + month - 1``) that instant ``ms`` falls in."""
    when = dt.datetime.fromtimestamp(ms / 1000, tz=tz)
    return when.year * 12 + when.month - 1


def period_start(period: int) -> dt.date:
    """First day of billing month ``period``."""
    return dt.date(period // 12, period % 12 + 1, 1)


class CheckSettings(msgspec.Struct, frozen=True, kw_only=True):
    """What the checks of every actor are tuned with (from :class:`~hub.HubConfig`)."""

    gap_bp: int = 500
    anomaly: AnomalySettings = AnomalySettings()
    forecast: ForecastSettings = ForecastSettings()


class Change(msgspec.Struct, frozen=True):
    """An alert transition caused by one reading.

    ``check`` is ``threshold``, ``anomaly`` or ``forecast``. Anomaly and
    forecast episodes have one level: ``WARNING`` while open.
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


class Outcome(msgspec.Struct):
    """What one actor did with its readings of one batch."""

    key: str
    resource_id: str
    customer_id: str
    resource_type: str
    unit: str
    kind: str
    total: int
    period: int
    limit: int | None
    level: Level
    changes: list[Change]
    #: readings of an earlier billing period: stored, not counted
    late: int = 0
    provisioned: bool = False
    #: the actor's statistics after the batch (stored with the total)
    stats: tuple[float, float, float, int, int, int, int] = (0.0, 0.0, 0.0, 0, 0, 0, 0)
    #: (reading, reason) the actor refused: dead-lettered, not stored, not counted
    poisoned: list[tuple[UsageReading, str]] = []
    cost_per_unit: str | None = None


_NONE, _WARNING = Level.NONE, Level.WARNING


class ResourceActor:
    """One resource's state and behaviour; see the module docstring."""

    __slots__ = (
        "anchor",
        "anomaly",
        "cost_per_unit",
        "critical_bp",
        "customer_id",
        "first_ms",
        "forecast",
        "key",
        "kind",
        "last_ms",
        "last_used",
        "level",
        "limit",
        "m2",
        "mean",
        "partition",
        "period",
        "points",
        "resource_id",
        "resource_type",
        "total",
        "unit",
        "warning_bp",
        "weight",
    )

    def __init__(
        self,
        *,
        key: str,
        resource_id: str,
        customer_id: str,
        resource_type: str,
        unit: str,
        kind: str,
        total: int,
        period: int,
        limit: int | None,
        warning_bp: int,
        critical_bp: int,
        level: Level,
        partition: int = -1,
        stats: tuple[float, float, float, int, int, int, int] = (0.0, 0.0, 0.0, 0, 0, 0, 0),
        anomaly: bool = False,
        forecast: bool = False,
        cost_per_unit: str | None = None,
    ) -> None:
        self.key = key
        self.resource_id = resource_id
        self.customer_id = sys.intern(customer_id)
        self.resource_type = sys.intern(resource_type)
        self.unit = sys.intern(unit)
        self.kind = sys.intern(kind)
        self.total = total
        self.period = period
        self.limit = limit
        self.warning_bp = warning_bp
        self.critical_bp = critical_bp
        self.level = level
        self.partition = partition
        self.last_used = 0.0
        (
            self.weight,
            self.mean,
            self.m2,
            self.last_ms,
            self.points,
            self.first_ms,
            self.anchor,
        ) = stats
        self.anomaly = anomaly
        self.forecast = forecast
        self.cost_per_unit = sys.intern(cost_per_unit) if cost_per_unit else None

    @classmethod
    def from_row(cls, row: ResourceRow, *, partition: int = -1) -> ResourceActor:
        period = -1
        if row.period_start is not None:
            period = row.period_start.year * 12 + row.period_start.month - 1
        return cls(
            key=row.resource_key,
            resource_id=row.id,
            customer_id=row.customer_id,
            resource_type=row.resource_type,
            unit=row.unit,
            kind=row.kind,
            total=row.current_usage,
            period=period,
            limit=row.limit_value,
            warning_bp=percent_to_bp(row.warning_threshold),
            critical_bp=percent_to_bp(row.critical_threshold),
            level=Level(row.alert_level),
            partition=partition,
            stats=(
                row.stat_weight,
                row.stat_mean,
                row.stat_m2,
                row.stat_last_ms,
                row.stat_points,
                row.stat_first_ms,
                row.stat_anchor,
            ),
            anomaly=row.anomaly_open,
            forecast=row.forecast_open,
            cost_per_unit=None if row.cost_per_unit is None else str(row.cost_per_unit),
        )

    def handle(
        self,
        reading: UsageReading,
        period: int,
        bounds: tuple[int, int],
        settings: CheckSettings,
        out: list[Change],
    ) -> bool:
        """Apply one reading of billing month ``period`` (``bounds``: its start/end in ms).

        Appends the alert :class:`Change` values it caused to ``out``; returns
        False when the reading was late (an earlier period) and not counted.
        Raises :class:`ActorFault` (state untouched) for a reading it cannot apply.

        This is the hot path (every reading of every resource): the anomaly
        and forecast math of :mod:`hub.checks` is inlined here, sharing one
        decay factor, and the forecast's normal CDF is only evaluated when the
        pace actually reaches the limit. ``tests/hub/test_hub_checks.py``
        holds it to the same answers as the reference functions.
        """
        if period < self.period:
            return False
        value = reading.value
        gauge = reading.kind == "level"
        at = reading.end_ms
        new_period = period > self.period
        base = 0 if new_period else self.total
        total = value if gauge else base + value
        if total > MAX_TOTAL:
            raise ActorFault(f"total {total} would exceed 2^63-1")
        if new_period:
            self.period = period
            self.first_ms = 0
            if self.forecast:
                self.forecast = False
                out.append(self._change(Transition.RESOLVE, "forecast", at))
        self.total = total
        if not self.first_ms:
            self.first_ms = at if gauge else reading.start_ms
            self.anchor = value if gauge else 0
        # anomaly: judge against the decayed history, then fold the point in
        start = reading.start_ms
        x = float(value) if gauge else value * 1000.0 / (at - start or 1)
        a = settings.anomaly
        weight, mean, m2, last = self.weight, self.mean, self.m2, self.last_ms
        if last and at > last:
            decay = _exp((last - at) / a.window_ms)
            weight *= decay
            m2 *= decay
        elif at < last:
            at = last  # an out-of-order point folds in at the latest time seen
        points = self.points
        if (
            points >= a.min_points
            and weight >= a.min_weight
            and at - self.first_ms >= a.min_span_ms
        ):
            var = m2 / weight
            floor = a.rel_floor * (mean if mean >= 0 else -mean)
            std = _sqrt(var) if var > floor * floor else floor
            z = (x - mean) / (std if std > 1e-12 else 1e-12)
            if z > a.threshold or z < -a.threshold:
                if not self.anomaly:
                    self.anomaly = True
                    out.append(
                        Change(
                            Transition.RAISE, _NONE, _WARNING, total, 0, reading.end_ms,
                            "anomaly", x, mean, z,
                        )
                    )  # fmt: skip
            elif self.anomaly:
                self.anomaly = False
                out.append(self._change(Transition.RESOLVE, "anomaly", reading.end_ms, x, z))
        weight += 1.0
        delta = x - mean
        mean += delta / weight
        m2 += delta * (x - mean)
        self.weight, self.mean, self.m2, self.last_ms = weight, mean, m2, at
        self.points = points = points + 1
        at = reading.end_ms
        # thresholds (exact integers); the common case is one comparison
        limit = self.limit
        level = self.level
        if limit is None:
            if level is not _NONE:
                self._threshold(total, limit, settings, at, out)
        elif level is not _NONE or total * 10000 >= limit * self.warning_bp:
            self._threshold(total, limit, settings, at, out)
        # forecast
        if limit is None:
            if self.forecast:
                self.forecast = False
                out.append(self._change(Transition.RESOLVE, "forecast", at))
            return True
        f = settings.forecast
        if points <= f.min_points or (total >= limit and not self.forecast):
            return True
        elapsed = (at - self.first_ms) / 1000.0
        remaining = (bounds[1] - at) / 1000.0
        rate = (total - self.anchor) / elapsed if elapsed > 0 else 0.0
        projected = total + rate * (remaining if remaining > 0 else 0.0)
        if not self.forecast:
            if projected >= limit and rate > 0 and at - self.first_ms >= f.min_span_ms:
                got = predict(
                    total=total,
                    limit=limit,
                    since_ms=self.first_ms,
                    base=self.anchor,
                    at_ms=at,
                    end_ms=bounds[1],
                    points=int(weight),
                    rate_std=_sqrt(m2 / weight),
                    gauge=gauge,
                )
                if got is not None and got[0] < bounds[1] and got[1] >= f.min_confidence:
                    self.forecast = True
                    out.append(
                        Change(
                            Transition.RAISE, _NONE, _WARNING, total, 10000, at,
                            "forecast", forecast_ms=got[0], confidence=got[1],
                        )
                    )  # fmt: skip
        elif total < limit and (rate <= 0 or projected < limit * (1.0 - f.resolve_margin)):
            self.forecast = False
            out.append(self._change(Transition.RESOLVE, "forecast", at))
        return True

    def _threshold(
        self, total: int, limit: int | None, settings: CheckSettings, at: int, out: list[Change]
    ) -> None:
        previous = self.level
        level, transition = evaluate(
            total, limit, self.warning_bp, self.critical_bp, previous, gap_bp=settings.gap_bp
        )
        if transition is not Transition.NONE:
            self.level = level
            threshold = self.critical_bp if level is Level.CRITICAL else self.warning_bp
            out.append(Change(transition, previous, level, total, threshold, at))

    def _change(
        self, transition: Transition, check: str, at: int, x: float = 0.0, z: float = 0.0
    ) -> Change:
        return Change(transition, _WARNING, _NONE, self.total, 0, at, check, x, self.mean, z)

    @property
    def stats(self) -> tuple[float, float, float, int, int, int, int]:
        return (
            self.weight,
            self.mean,
            self.m2,
            self.last_ms,
            self.points,
            self.first_ms,
            self.anchor,
        )

    def outcome(self) -> Outcome:
        return Outcome(
            key=self.key,
            resource_id=self.resource_id,
            customer_id=self.customer_id,
            resource_type=self.resource_type,
            unit=self.unit,
            kind=self.kind,
            total=self.total,
            period=self.period,
            limit=self.limit,
            level=self.level,
            changes=[],
            cost_per_unit=self.cost_per_unit,
        )
