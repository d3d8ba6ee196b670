"""Turning an actor's threshold :class:`~hub.actors.Change` into an alert.

Mapping (the plan lists severities LOW, MEDIUM, HIGH, CRITICAL):

==================  ====================  ==========
level reached       alert_type            severity
==================  ====================  ==========
WARNING             THRESHOLD_WARNING     HIGH
CRITICAL            THRESHOLD_CRITICAL    CRITICAL
==================  ====================  ==========

WARNING is HIGH rather than MEDIUM because it means the customer will run
over the limit within the period at the current pace; CRITICAL is what the
notifier sends by SMS.

Episodes in the ``alerts`` table: a raise inserts an ACTIVE row. An
escalation (WARNING -> CRITICAL) marks the open WARNING row RESOLVED with
``resolution = 'escalated'`` (superseded) and inserts an ACTIVE CRITICAL row,
so exactly one row of an episode is open at a time (a partial unique index
enforces it). A recovery below ``warning% - hysteresis`` marks the open row
RESOLVED with ``resolution = 'recovered'`` and ``resolved_at``. Values are in
the catalog unit as exact decimals.
"""

from __future__ import annotations

from decimal import ROUND_DOWN, Decimal

import msgspec

from protocol import AlertEvent, UnitError, from_base, unit_factor

from ..actors.actor import Change, Outcome
from ..checks.thresholds import Level, Transition

__all__ = [
    "AlertRecord",
    "alert_record",
    "display_unit",
    "percentage",
    "plain",
    "to_event",
    "to_unit",
]

_TYPE = {Level.WARNING: "THRESHOLD_WARNING", Level.CRITICAL: "THRESHOLD_CRITICAL"}
_SEVERITY = {Level.WARNING: "HIGH", Level.CRITICAL: "CRITICAL"}
_CENT = Decimal("0.01")


def display_unit(catalog_unit: str, base_unit: str) -> str:
    """The catalog unit if resmon can convert to it exactly, else the base unit."""
    try:
        base, _ = unit_factor(catalog_unit)
    except UnitError:
        return base_unit
    return catalog_unit if base == base_unit else base_unit


def plain(value: Decimal) -> Decimal:
    """``value`` without trailing zeros and never in exponent notation (1E+3 -> 1000)."""
    if value == value.to_integral_value():
        return value.quantize(Decimal(1))
    return value.normalize()


def to_unit(value: int, unit: str) -> Decimal:
    """``value`` base units in ``unit``, exactly."""
    return plain(from_base(value, unit))


def percentage(total: int, limit: int | None) -> Decimal | None:
    """``total`` as a percentage of ``limit``, truncated to 0.01 (None if unlimited/zero)."""
    if not limit:
        return None
    return (Decimal(total * 100) / Decimal(limit)).quantize(_CENT, rounding=ROUND_DOWN)


class AlertRecord(msgspec.Struct, frozen=True):
    """One alert transition, ready to write and publish."""

    resource_id: str
    resource_key: str
    customer_id: str
    resource_type: str
    transition: str
    #: THRESHOLD_WARNING / THRESHOLD_CRITICAL (the level reached, or left on resolve)
    alert_type: str
    severity: str
    status: str
    message: str
    current_value: Decimal
    threshold_value: Decimal | None
    limit_value: Decimal | None
    percentage: Decimal | None
    unit: str
    at_ms: int


def alert_record(outcome: Outcome, change: Change, base_unit: str) -> AlertRecord:
    unit = display_unit(outcome.unit, base_unit)
    limit = outcome.limit
    current = to_unit(change.total, unit)
    pct = percentage(change.total, limit)
    limit_d = to_unit(limit, unit) if limit is not None else None
    threshold = None
    if limit is not None:
        threshold = plain(from_base(limit, unit) * change.threshold_bp / 10000)
    if change.transition is Transition.RESOLVE:
        level = change.previous
        status = "RESOLVED"
        message = f"{outcome.resource_type} usage of {outcome.key} is back to {current} {unit}" + (
            f" ({pct}% of {limit_d} {unit})" if pct is not None else " (no limit)"
        )
    else:
        level = change.level
        status = "ACTIVE"
        verb = "escalated to" if change.previous is Level.WARNING else "reached"
        message = (
            f"{outcome.resource_type} usage of {outcome.key} {verb} "
            f"{level.name.lower()} threshold: {current} {unit} is {pct}% of the "
            f"{limit_d} {unit} limit (threshold {plain(Decimal(change.threshold_bp) / 100)}%)"
        )
    return AlertRecord(
        resource_id=outcome.resource_id,
        resource_key=outcome.key,
        customer_id=outcome.customer_id,
        resource_type=outcome.resource_type,
        transition=change.transition.value,
        alert_type=_TYPE[level],
        severity=_SEVERITY[level],
        status=status,
        message=message,
        current_value=current,
        threshold_value=threshold,
        limit_value=limit_d,
        percentage=pct,
        unit=unit,
        at_ms=change.at_ms,
    )


def to_event(record: AlertRecord, alert_id: str) -> AlertEvent:
    """The ``usage.threshold.v1`` payload published after the batch commits."""
    return AlertEvent(
        alert_id=alert_id,
        customer_id=record.customer_id,
        resource_type=record.resource_type,
        resource_key=record.resource_key,
        alert_type=record.alert_type,
        severity=record.severity,
        status=record.status,
        message=record.message,
        current_usage=record.current_value,
        threshold=record.threshold_value,
        limit=record.limit_value,
        percentage=record.percentage,
        unit=record.unit,
        at_ms=record.at_ms,
    )
