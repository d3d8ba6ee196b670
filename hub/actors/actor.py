"""``ResourceActor``: the live state of one customer resource.

An actor owns its period total (or level), its limit and thresholds, its open
episodes (threshold level, anomaly, forecast) and the compact statistics the
anomaly and forecast checks need, and handles one reading at a time (the
registry's shard worker guarantees that). State is compact on purpose —
``__slots__``, ints and floats, shared interned strings — because a hub
should hold a million of them; it can always be rebuilt from PostgreSQL
(:func:`ResourceActor.from_row`), where the batch transaction stores it.

Billing periods are calendar months in the billing time zone, numbered as
:mod:`hub.calendar` numbers them. A reading of a later period starts a new total
(and resolves an open forecast); a reading of an earlier period (late data)
is stored raw but not added to the current total.

Every decision uses event time (the reading's ``end_ms``), never the wall
clock, so replaying a partition decides exactly what the first run decided.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from math import exp as _exp
from math import sqrt as _sqrt

from protocol import UsageReading

from ..calendar import month_of_date
from ..checks.change import Change
from ..checks.forecast import predict
from ..checks.outcome import Outcome
from ..checks.reading import check
from ..checks.settings import CheckSettings
from ..checks.stats import Stats
from ..checks.thresholds import Level, Transition, evaluate, percent_to_bp
from ..storage.provision import ResourceRow

__all__ = [
    "MAX_TOTAL",
    "ActorFault",
    "Change",
    "CheckSettings",
    "Outcome",
    "ResourceActor",
]

#: the largest total PostgreSQL's BIGINT holds
MAX_TOTAL = 2**63 - 1


class ActorFault(Exception):
    """A reading an actor cannot apply (a poison message): it is dead-lettered."""


_NONE, _WARNING = Level.NONE, Level.WARNING
_NO_STATS = Stats()
_RAISE, _RESOLVE = Transition.RAISE, Transition.RESOLVE

_Tuning = tuple[CheckSettings, int, float, int, float, int, float, int, int, float, float]


def _tune(settings: CheckSettings) -> _Tuning:
    """The settings :meth:`ResourceActor.run` reads on every reading, as one flat tuple.

    The last settings seen are kept (one entry): the registry passes the same
    object every time, so the hot path unpacks a tuple instead of following
    ``settings.anomaly.window_ms`` and friends per reading.
    """
    global _tuning
    a, f = settings.anomaly, settings.forecast
    _tuning = (
        settings,
        a.window_ms,
        a.threshold,
        a.min_points,
        a.min_weight,
        a.min_span_ms,
        a.rel_floor,
        f.min_points,
        f.min_span_ms,
        f.min_confidence,
        1.0 - f.resolve_margin,
    )
    return _tuning


_tuning: _Tuning = _tune(CheckSettings())


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
        "version",
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
        stats: Stats = _NO_STATS,
        anomaly: bool = False,
        forecast: bool = False,
        cost_per_unit: str | None = None,
        version: int = 0,
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
        self.weight = stats.weight
        self.mean = stats.mean
        self.m2 = stats.m2
        self.last_ms = stats.last_ms
        self.points = stats.points
        self.first_ms = stats.first_ms
        self.anchor = stats.anchor
        self.anomaly = anomaly
        self.forecast = forecast
        self.cost_per_unit = sys.intern(cost_per_unit) if cost_per_unit else None
        #: ``customer_resources.total_version`` this actor's total was loaded at or last
        #: written over (see :func:`hub.storage.batch.write_batch`)
        self.version = version

    @classmethod
    def from_row(cls, row: ResourceRow, *, partition: int = -1) -> ResourceActor:
        period = -1
        if row.period_start is not None:
            period = month_of_date(row.period_start)
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
            stats=Stats(
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
            version=row.total_version,
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

        The readable path: the period bookkeeping here, then the reference
        checks, :func:`hub.checks.reading.check`. The registry's batch path,
        :meth:`run`, decides exactly the same with the checks inlined.
        """
        at = reading.end_ms
        value = reading.value
        gauge = reading.kind == "level"
        if period < self.period:
            return False
        total = value if gauge or period > self.period else self.total + value
        if total > MAX_TOTAL:
            raise ActorFault(f"total {total} would exceed 2^63-1")
        if period > self.period:
            self._new_period(period, at, out)
        self.total = total
        check(self, value, reading.start_ms, at, bounds[1], gauge, settings, out)
        return True

    def run(
        self,
        readings: Sequence[UsageReading],
        period: int,
        lo: float,
        hi: float,
        end: int,
        clock: Callable[[int], tuple[int, int, int]],
        settings: CheckSettings,
        out: list[Change],
    ) -> int:
        """Apply ``readings`` in order; returns how many were late (an earlier period).

        A reading whose ``end_ms`` falls in ``[lo, hi)`` belongs to billing
        month ``period``, which ends at ``end`` (ms); for any other reading
        ``clock(end_ms)`` answers ``(period, start, end)`` of its month.
        Appends the alert :class:`Change` values to ``out``. Raises
        :class:`ActorFault` for a reading it cannot apply; that reading
        leaves the state untouched, the earlier ones stay applied.

        This is the hot path (every reading of every resource): the checks of
        :func:`hub.checks.reading.check` are inlined here, sharing one decay
        factor, and the forecast's normal CDF is only evaluated when the pace
        actually reaches the limit (``resmon bench --only hub-core`` measures
        both paths). ``tests/hub/test_hub_checks.py`` holds it to the same
        decisions and state as :meth:`handle` on random series.
        """
        k = _tuning if _tuning[0] is settings else _tune(settings)
        (
            _,
            window_ms,
            threshold,
            min_points,
            min_weight,
            min_span_ms,
            rel_floor,
            f_min_points,
            f_min_span_ms,
            f_min_confidence,
            keep_ratio,
        ) = k
        late = 0
        for reading in readings:
            at = reading.end_ms
            if not lo <= at < hi:
                period, lo, hi = clock(at)
                end = hi
            value = reading.value
            gauge = reading.kind == "level"
            if period == self.period:  # the common case: the current month
                total = value if gauge else self.total + value
                if total > MAX_TOTAL:
                    raise ActorFault(f"total {total} would exceed 2^63-1")
            elif period < self.period:  # late: stored raw, not counted
                late += 1
                continue
            else:  # a new month starts a new total
                total = value
                if total > MAX_TOTAL:
                    raise ActorFault(f"total {total} would exceed 2^63-1")
                self._new_period(period, at, out)
            self.total = total
            start = reading.start_ms
            first = self.first_ms
            if not first:
                if gauge:
                    self.first_ms = first = at
                    self.anchor = value
                else:
                    self.first_ms = first = start
                    self.anchor = 0
            # anomaly: judge against the decayed history, then fold the point in
            x = float(value) if gauge else value * 1000.0 / (at - start or 1)
            weight = self.weight
            mean = self.mean
            m2 = self.m2
            last = self.last_ms
            seen = at
            if last and at > last:
                decay = _exp((last - at) / window_ms)
                weight *= decay
                m2 *= decay
            elif at < last:
                seen = last  # an out-of-order point folds in at the latest time seen
            points = self.points
            if points >= min_points and weight >= min_weight and seen - first >= min_span_ms:
                var = m2 / weight
                floor = rel_floor * (mean if mean >= 0 else -mean)
                std = _sqrt(var) if var > floor * floor else floor
                z = (x - mean) / (std if std > 1e-12 else 1e-12)
                if z > threshold or z < -threshold:
                    if not self.anomaly:
                        self.anomaly = True
                        out.append(
                            Change(
                                _RAISE, _NONE, _WARNING, total, 0, at, "anomaly", x, mean, z,
                            )
                        )  # fmt: skip
                elif self.anomaly:
                    self.anomaly = False
                    out.append(self._change(_RESOLVE, "anomaly", at, x, z))
            weight += 1.0
            delta = x - mean
            mean += delta / weight
            m2 += delta * (x - mean)
            self.weight = weight
            self.mean = mean
            self.m2 = m2
            self.last_ms = seen
            self.points = points = points + 1
            # thresholds (exact integers); the common case is one comparison
            limit = self.limit
            if limit is None:
                if self.level is not _NONE:
                    self._threshold(total, limit, settings, at, out)
                if self.forecast:
                    self.forecast = False
                    out.append(self._change(_RESOLVE, "forecast", at))
                continue
            if self.level is not _NONE or total * 10000 >= limit * self.warning_bp:
                self._threshold(total, limit, settings, at, out)
            # forecast
            if points <= f_min_points:
                continue
            forecast = self.forecast
            if total >= limit and not forecast:
                continue
            span = at - first
            elapsed = span / 1000.0
            remaining = (end - at) / 1000.0
            rate = (total - self.anchor) / elapsed if elapsed > 0 else 0.0
            projected = total + rate * (remaining if remaining > 0 else 0.0)
            if not forecast:
                if projected >= limit and rate > 0 and span >= f_min_span_ms:
                    got = predict(
                        total=total,
                        limit=limit,
                        since_ms=first,
                        base=self.anchor,
                        at_ms=at,
                        end_ms=end,
                        points=int(weight),
                        rate_std=_sqrt(m2 / weight),
                        gauge=gauge,
                    )
                    if got is not None and got[0] < end and got[1] >= f_min_confidence:
                        self.forecast = True
                        out.append(
                            Change(
                                _RAISE, _NONE, _WARNING, total, 10000, at,
                                "forecast", forecast_ms=got[0], confidence=got[1],
                            )
                        )  # fmt: skip
            elif total < limit and (rate <= 0 or projected < limit * keep_ratio):
                self.forecast = False
                out.append(self._change(_RESOLVE, "forecast", at))
        return late

    def _new_period(self, period: int, at: int, out: list[Change]) -> None:
        """Billing month ``period`` starts at ``at``: a new pace, and no forecast carried over."""
        self.period = period
        self.first_ms = 0
        if self.forecast:
            self.forecast = False
            out.append(self._change(_RESOLVE, "forecast", at))

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
    def stats(self) -> Stats:
        return Stats(
            self.weight,
            self.mean,
            self.m2,
            self.last_ms,
            self.points,
            self.first_ms,
            self.anchor,
        )

    def outcome(self, changes: list[Change] | None = None, late: int = 0) -> Outcome:
        """The actor's state as an :class:`Outcome` with ``changes`` and ``late`` readings."""
        return Outcome(
            self.key,
            self.resource_id,
            self.customer_id,
            self.resource_type,
            self.unit,
            self.kind,
            self.total,
            self.period,
            self.limit,
            self.level,
            [] if changes is None else changes,
            late,
            False,
            self.stats,
            [],
            self.cost_per_unit,
            self.version,
        )
