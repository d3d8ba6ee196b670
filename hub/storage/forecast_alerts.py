"""FORECAST_LIMIT alerts from the stored forecasts (``cost_forecasts``).

After the refresh stores a resource's forecast, :func:`apply_forecast_alert`
compares it with the resource's open stored-forecast alert and moves the alert
through the ordinary lifecycle (an ``alerts`` row; the triggers of migration
0010 write the audit trail and queue the notifications):

* **raise** when the forecast's period total is above the limit
  (``predicted_usage > limit_value``), with the calibrated probability
  ``P(total > limit)`` as the alert's confidence;
* **keep** while later forecasts of the same period still say so (one open
  alert per resource and period: no duplicate on each refresh), and while a
  later refresh gives "no forecast" (that says nothing new);
* **resolve** ``forecast_cleared`` when a later forecast of that period puts
  the total below ``limit x (1 - resolve_margin)`` (hysteresis against
  flapping), ``limit_removed`` when the resource no longer has a limit, and
  ``period_ended`` when the refresh forecasts a later period.

An alert an operator resolved (resolution ``manual``) is not raised again for
the same period. The actors' pace-based FORECAST_LIMIT alerts
(``forecast_period_start`` NULL) are a separate episode the refresh never
touches (migration 0028).

:func:`decide` is the pure rule; :func:`apply_forecast_alert` reads the open
alert, writes the change and hands the records to ``on_alerts`` (the hub
writes their CloudEvents to its outbox) in one transaction.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Awaitable, Callable
from decimal import ROUND_DOWN, Decimal
from typing import TYPE_CHECKING, Final

import asyncpg  # type: ignore[import-untyped]
import msgspec

from protocol import RESOURCE_BASE_UNIT

from ..alerts.records import AlertRecord, display_unit, percentage, to_unit
from .provision import Executor, connection

if TYPE_CHECKING:  # forecasts.py calls this module after each stored forecast
    from .forecasts import ForecastRow, ForecastTarget

__all__ = [
    "FORECAST_ALERT_TYPE",
    "AlertChange",
    "OpenForecastAlert",
    "apply_forecast_alert",
    "decide",
]

FORECAST_ALERT_TYPE: Final = "FORECAST_LIMIT"
_SEVERITY: Final = "MEDIUM"
_CENT: Final = Decimal("0.01")

#: ``on_alerts(conn, [(alert id, record), ...])``, called in the alert's transaction
OnAlerts = Callable[[asyncpg.Connection, list[tuple[str, AlertRecord]]], Awaitable[object]]


class OpenForecastAlert(msgspec.Struct, frozen=True):
    """The resource's open stored-forecast alert."""

    id: str
    period_start: dt.date
    status: str


class AlertChange(msgspec.Struct, frozen=True):
    """What a new forecast does to the resource's stored-forecast alert."""

    #: the open alert to resolve and the resolution, or None
    resolve: tuple[str, str] | None = None
    #: whether to raise a new alert for the forecast's period
    raise_alert: bool = False


def _says_over(row: ForecastRow) -> bool:
    return (
        row.reason is None
        and row.limit_value is not None
        and row.predicted_usage is not None
        and row.predicted_usage > row.limit_value
    )


def _cleared(row: ForecastRow, margin: Decimal) -> bool:
    if row.reason is not None or row.predicted_usage is None or row.limit_value is None:
        return False
    return Decimal(row.predicted_usage) < Decimal(row.limit_value) * (1 - margin)


def decide(
    row: ForecastRow,
    open_alert: OpenForecastAlert | None,
    *,
    manually_resolved: bool,
    resolve_margin: Decimal,
) -> AlertChange:
    """The alert change ``row`` calls for (pure).

    ``manually_resolved``: an operator resolved this resource's alert for
    ``row``'s period already.
    """
    resolve: tuple[str, str] | None = None
    current = open_alert
    if current is not None and current.period_start < row.period_start:
        resolve, current = (current.id, "period_ended"), None
    elif current is not None and row.limit_value is None:
        resolve, current = (current.id, "limit_removed"), None
    elif current is not None and _cleared(row, resolve_margin):
        resolve, current = (current.id, "forecast_cleared"), None
    raise_alert = current is None and _says_over(row) and not manually_resolved
    return AlertChange(resolve=resolve, raise_alert=raise_alert)


def _probability_pct(row: ForecastRow) -> Decimal | None:
    if row.probability_above_limit is None:
        return None
    return (row.probability_above_limit * 100).quantize(_CENT, rounding=ROUND_DOWN)


def _record(
    target: ForecastTarget, resource_type: str, row: ForecastRow, *, resolved: str | None
) -> AlertRecord:
    base = RESOURCE_BASE_UNIT.get(resource_type, "byte")
    unit = display_unit(target.unit, base)
    limit = row.limit_value
    used = row.used_to_date or 0
    limit_d = to_unit(limit, unit) if limit is not None else None
    what = f"{resource_type} usage of {target.resource_key}"
    period = f"{row.period_start.isoformat()} to {row.period_end.isoformat()}"
    confidence = _probability_pct(row)
    if resolved is None:
        assert row.predicted_usage is not None
        assert row.usage_95 is not None
        low, high = (to_unit(v, unit) for v in row.usage_95)
        message = (
            f"{what} is forecast to total {to_unit(row.predicted_usage, unit)} {unit} in the "
            f"period {period} (95 % interval {low}-{high} {unit}), above its {limit_d} {unit} "
            f"limit: probability {confidence}% (forecast as of {row.as_of.isoformat()}, "
            f"method {row.method}; used so far {to_unit(used, unit)} {unit})"
        )
    elif resolved == "forecast_cleared":
        predicted = to_unit(row.predicted_usage or 0, unit)
        message = (
            f"{what} is no longer forecast above its {limit_d} {unit} limit in the period "
            f"{period} (forecast {predicted} {unit} as of {row.as_of.isoformat()})"
        )
    elif resolved == "limit_removed":
        message = f"{what} has no limit any more; the forecast alert is closed"
    else:
        message = f"{what}: the period of the forecast alert has ended"
    return AlertRecord(
        resource_id=target.id,
        resource_key=target.resource_key,
        customer_id=target.customer_id,
        resource_type=resource_type,
        transition="resolve" if resolved else "raise",
        alert_type=FORECAST_ALERT_TYPE,
        severity=_SEVERITY,
        status="RESOLVED" if resolved else "ACTIVE",
        message=message,
        current_value=to_unit(used, unit),
        threshold_value=limit_d,
        limit_value=limit_d,
        percentage=percentage(used, limit),
        unit=unit,
        at_ms=int(dt.datetime.now(dt.UTC).timestamp() * 1000),
        check="forecast",
        confidence=confidence if resolved is None else None,
    )


_OPEN: Final = """
SELECT id::text AS id, forecast_period_start, status FROM alerts
WHERE customer_resource_id = $1::uuid AND alert_type = 'FORECAST_LIMIT'
  AND forecast_period_start IS NOT NULL AND status <> 'RESOLVED'
FOR UPDATE"""
_MANUAL: Final = """
SELECT EXISTS (SELECT 1 FROM alerts WHERE customer_resource_id = $1::uuid
               AND alert_type = 'FORECAST_LIMIT' AND forecast_period_start = $2
               AND resolution = 'manual')"""
_RESOLVE: Final = """
UPDATE alerts SET status = 'RESOLVED', resolved_at = now(), resolved_by = 'hub',
       resolution = $2
WHERE id = $1::uuid AND status <> 'RESOLVED'
RETURNING id::text"""
_RAISE: Final = """
INSERT INTO alerts (id, customer_resource_id, alert_type, severity, message, current_value,
                    threshold_value, unit, status, confidence, forecast_period_start)
VALUES ($1::uuid, $2::uuid, 'FORECAST_LIMIT', $3, $4, $5, $6, $7, 'ACTIVE', $8, $9)
ON CONFLICT (customer_resource_id) WHERE status <> 'RESOLVED'
    AND alert_type = 'FORECAST_LIMIT' AND forecast_period_start IS NOT NULL
DO NOTHING
RETURNING id::text"""


async def apply_forecast_alert(
    db: Executor,
    target: ForecastTarget,
    resource_type: str,
    row: ForecastRow,
    *,
    resolve_margin: Decimal,
    on_alerts: OnAlerts | None = None,
) -> list[tuple[str, AlertRecord]]:
    """Raise, keep or resolve ``target``'s stored-forecast alert for ``row``.

    Returns the transitions written as ``(alert id, record)``; ``on_alerts`` gets
    them in the same transaction. A second hub refreshing at the same time finds
    the row locked or the open alert already there: it writes nothing twice.
    """
    async with connection(db) as conn, conn.transaction():
        found = await conn.fetchrow(_OPEN, target.id)
        open_alert = (
            OpenForecastAlert(found["id"], found["forecast_period_start"], found["status"])
            if found is not None
            else None
        )
        manual = bool(await conn.fetchval(_MANUAL, target.id, row.period_start))
        change = decide(row, open_alert, manually_resolved=manual, resolve_margin=resolve_margin)
        written: list[tuple[str, AlertRecord]] = []
        if change.resolve is not None:
            alert_id, resolution = change.resolve
            if await conn.fetchval(_RESOLVE, alert_id, resolution) is not None:
                written.append((alert_id, _record(target, resource_type, row, resolved=resolution)))
        if change.raise_alert:
            record = _record(target, resource_type, row, resolved=None)
            new_id = await conn.fetchval(
                _RAISE,
                str(uuid.uuid4()),
                target.id,
                record.severity,
                record.message,
                record.current_value,
                record.threshold_value,
                record.unit,
                record.confidence,
                row.period_start,
            )
            if new_id is not None:
                written.append((new_id, record))
        if written and on_alerts is not None:
            await on_alerts(conn, written)
        return written
