"""``ResourceActor``: the live state of one customer resource.

An actor owns its period total (or level), its limit and thresholds and its
current alert level, and handles one reading at a time (the registry's shard
worker guarantees that). State is compact on purpose — ``__slots__``, ints,
shared interned strings — because a hub should hold a million of them; it
can always be rebuilt from PostgreSQL (:func:`ResourceActor.from_row`).

Billing periods are calendar months in the billing time zone, numbered
``year * 12 + month - 1``. A reading of a later period starts a new total; a
reading of an earlier period (late data) is stored raw but not added to the
current total.
"""

from __future__ import annotations

import datetime as dt
import sys
from zoneinfo import ZoneInfo

import msgspec

from protocol import UsageReading

from ..checks.thresholds import Level, Transition, evaluate, percent_to_bp
from ..storage.provision import ResourceRow

__all__ = ["Change", "Outcome", "ResourceActor", "period_of", "period_start"]


def period_of(ms: int, tz: ZoneInfo) -> int:
    """The billing month (``year * 12 + month - 1``) that instant ``ms`` falls in."""
    when = dt.datetime.fromtimestamp(ms / 1000, tz=tz)
    return when.year * 12 + when.month - 1


def period_start(period: int) -> dt.date:
    """First day of billing month ``period``."""
    return dt.date(period // 12, period % 12 + 1, 1)


class Change(msgspec.Struct, frozen=True):
    """An alert transition caused by one reading."""

    transition: Transition
    previous: Level
    level: Level
    total: int
    #: the threshold crossed (warning or critical), in basis points of the limit
    threshold_bp: int
    at_ms: int


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


class ResourceActor:
    """One resource's state and behaviour; see the module docstring."""

    __slots__ = (
        "critical_bp",
        "customer_id",
        "key",
        "kind",
        "last_used",
        "level",
        "limit",
        "partition",
        "period",
        "resource_id",
        "resource_type",
        "total",
        "unit",
        "warning_bp",
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
        )

    def handle(self, reading: UsageReading, period: int, *, gap_bp: int) -> Change | bool | None:
        """Apply one reading of billing month ``period``.

        Returns the alert :class:`Change` it caused, ``None`` when it changed
        no alert, or ``False`` when it was late (an earlier period) and not
        counted.
        """
        if period < self.period:
            return False
        if period > self.period:
            self.period = period
            self.total = 0
        if reading.kind == "level":
            self.total = reading.value
        else:
            self.total += reading.value
        previous = self.level
        level, transition = evaluate(
            self.total, self.limit, self.warning_bp, self.critical_bp, previous, gap_bp=gap_bp
        )
        if transition is Transition.NONE:
            return None
        self.level = level
        threshold = self.critical_bp if level is Level.CRITICAL else self.warning_bp
        return Change(
            transition=transition,
            previous=previous,
            level=level,
            total=self.total,
            threshold_bp=threshold,
            at_ms=reading.end_ms,
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
        )
