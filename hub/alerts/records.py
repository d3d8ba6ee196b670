"""Turning an actor's threshold :class:`~hub.checks.Change` into an alert.

Mapping (the alert contract's severities are LOW, MEDIUM, HIGH, CRITICAL):

==================  ====================  ==========
level reached       alert_type            severity
==================  ====================  ==========
WARNING             THRESHOLD_WARNING     HIGH
CRITICAL            THRESHOLD_CRITICAL    CRITICAL
anomaly             ANOMALY_DETECTED      MEDIUM
forecast            FORECAST_LIMIT        MEDIUM
==================  ====================  ==========

Threshold and forecast alerts are published as ``usage.threshold.v1``,
anomalies as ``resource.alert.v1``. An anomaly episode opens on a reading
whose z-score passes the threshold and resolves on the next normal reading;
a forecast episode opens when the pace reaches the limit before the period
ends ("will reach 100 % on <date>", with its confidence) and resolves when
the pace falls back (with a margin) or the period ends.

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

import datetime as dt
from decimal import ROUND_DOWN, Decimal
from typing import Any

import msgspec

from protocol import TYPE_ALERT, TYPE_THRESHOLD, AlertEvent, UnitError, from_base, unit_factor

from ..checks.change import Change
from ..checks.outcome import Outcome
from ..checks.thresholds import Level, Transition

__all__ = [
    "AlertRecord",
    "alert_record",
    "display_unit",
    "event_type",
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
    check: str = "threshold"
    z_score: float | None = None
    forecast_ms: int | None = None
    #: 0-100, two decimals
    confidence: Decimal | None = None


def event_type(record: AlertRecord) -> str:
    """The CloudEvent type ``record`` is published as."""
    return TYPE_ALERT if record.check == "anomaly" else TYPE_THRESHOLD


def _day(ms: int) -> str:
    return dt.datetime.fromtimestamp(ms / 1000, tz=dt.UTC).strftime("%Y-%m-%d %H:%M UTC")


def _other_record(outcome: Outcome, change: Change, unit: str) -> AlertRecord:
    limit = outcome.limit
    current = to_unit(change.total, unit)
    pct = percentage(change.total, limit)
    limit_d = to_unit(limit, unit) if limit is not None else None
    resolved = change.transition is Transition.RESOLVE
    what = f"{outcome.resource_type} usage of {outcome.key}"
    confidence = None
    if change.check == "anomaly":
        alert_type = "ANOMALY_DETECTED"
        rate = "level" if outcome.kind == "level" else "rate per second"
        message = (
            f"{what} is back to normal ({rate} {change.value:.6g}, z-score {change.z:.2f})"
            if resolved
            else f"{what} is anomalous: {rate} {change.value:.6g} against a mean of "
            f"{change.expected:.6g} (z-score {change.z:.2f})"
        )
    else:
        alert_type = "FORECAST_LIMIT"
        confidence = Decimal(change.confidence * 100).quantize(_CENT, rounding=ROUND_DOWN)
        message = (
            f"{what} is no longer on track to reach its {limit_d} {unit} limit this period"
            if resolved
            else f"{what} will reach 100 % of its {limit_d} {unit} limit on "
            f"{_day(change.forecast_ms)} at the current pace (confidence {confidence}%; "
            f"now {current} {unit}, {pct}%)"
        )
    return _record(
        outcome,
        change,
        alert_type=alert_type,
        severity="MEDIUM",
        status="RESOLVED" if resolved else "ACTIVE",
        message=message,
        current_value=current,
        threshold_value=limit_d if change.check == "forecast" else None,
        limit_value=limit_d,
        percentage=pct,
        unit=unit,
        z_score=change.z if change.check == "anomaly" else None,
        forecast_ms=change.forecast_ms or None,
        confidence=confidence,
    )


def alert_record(outcome: Outcome, change: Change, base_unit: str) -> AlertRecord:
    unit = display_unit(outcome.unit, base_unit)
    if change.check != "threshold":
        return _other_record(outcome, change, unit)
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
    return _record(
        outcome,
        change,
        alert_type=_TYPE[level],
        severity=_SEVERITY[level],
        status=status,
        message=message,
        current_value=current,
        threshold_value=threshold,
        limit_value=limit_d,
        percentage=pct,
        unit=unit,
    )


def _record(outcome: Outcome, change: Change, **fields: Any) -> AlertRecord:
    """An alert of ``outcome``'s resource for ``change``, with the fields that differ by check."""
    return AlertRecord(
        resource_id=outcome.resource_id,
        resource_key=outcome.key,
        customer_id=outcome.customer_id,
        resource_type=outcome.resource_type,
        transition=change.transition.value,
        at_ms=change.at_ms,
        check=change.check,
        **fields,
    )


def to_event(record: AlertRecord, alert_id: str) -> AlertEvent:
    """The payload published after the batch commits (type: :func:`event_type`)."""
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
        z_score=record.z_score,
        forecast_at_ms=record.forecast_ms or None,
        confidence=record.confidence,
    )
