"""Reads and operator actions the REST API needs, over PostgreSQL."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from decimal import Decimal
from typing import Any, Final

import msgspec

from protocol import RESOURCE_BASE_UNIT

from .._exceptions import NotFoundError, storage_errors
from ..alerts.records import display_unit, percentage, plain, to_unit
from ..checks.thresholds import Level
from .current import CachedUsage
from .provision import Executor

__all__ = [
    "ALERTS_SELECT",
    "AlertRow",
    "ResourceView",
    "current_usage",
    "customer_exists",
    "customer_resources",
    "list_alerts",
]


class ResourceView(msgspec.Struct, frozen=True, rename="camel"):
    id: str
    resource_key: str
    customer_id: str
    resource_type: str
    resource_name: str
    name: str | None
    kind: str
    unit: str
    catalog_unit: str
    current_usage: int
    usage_in_unit: str
    limit: int | None
    limit_in_unit: str | None
    percentage: str | None
    warning_threshold: Decimal
    critical_threshold: Decimal
    status: str
    period_start: dt.date | None
    auto_provisioned: bool
    updated_at: dt.datetime
    #: NONE, WARNING or CRITICAL: the open threshold episode
    alert_level: str
    #: milliseconds of the current billing period, up to now, that reported usage
    #: gaps cover (overlapping gaps counted once): usage there is unknown, not zero
    unknown_ms: int


class AlertRow(msgspec.Struct, frozen=True, rename="camel"):
    id: str
    customer_id: str
    resource_key: str
    resource_type: str
    alert_type: str
    severity: str
    message: str
    current_value: Decimal | None
    threshold_value: Decimal | None
    unit: str | None
    status: str
    acknowledged_by: str | None
    acknowledged_at: dt.datetime | None
    resolved_by: str | None
    resolved_at: dt.datetime | None
    resolution: str | None
    created_at: dt.datetime


_RESOURCES: Final = """
SELECT cr.id::text AS id, cr.resource_key, cr.customer_id, rc.resource_type, rc.resource_name,
       cr.name, cr.kind, rc.unit AS catalog_unit, cr.current_usage, cr.limit_value,
       cr.warning_threshold, cr.critical_threshold, cr.status, cr.period_start,
       cr.auto_provisioned, cr.updated_at,
       COALESCE((SELECT max(CASE a.alert_type WHEN 'THRESHOLD_CRITICAL' THEN 2
                                              WHEN 'THRESHOLD_WARNING' THEN 1 ELSE 0 END)
                 FROM alerts a
                 WHERE a.customer_resource_id = cr.id AND a.status <> 'RESOLVED'), 0)
           AS alert_level,
       COALESCE(u.unknown_ms, 0) AS unknown_ms
FROM customer_resources cr JOIN resource_catalogs rc ON rc.id = cr.resource_catalog_id
CROSS JOIN LATERAL (  -- the resource's billing month (this month before its first reading)
    SELECT m AT TIME ZONE $2 AS ps, least((m + interval '1 month') AT TIME ZONE $2, now()) AS pe
    FROM (SELECT date_trunc('month', COALESCE(cr.period_start::timestamp,
                                              now() AT TIME ZONE $2)) AS m) period
) b
LEFT JOIN LATERAL (  -- the union of its gaps inside that month, in ms
    SELECT sum(floor(extract(epoch FROM (island.e - island.s)) * 1000))::bigint AS unknown_ms
    FROM (SELECT min(s) AS s, max(e) AS e
          FROM (SELECT s, e, sum(CASE WHEN s <= prev_e THEN 0 ELSE 1 END)
                                 OVER (ORDER BY s, e) AS n
                FROM (SELECT s, e, max(e) OVER (ORDER BY s, e ROWS BETWEEN UNBOUNDED PRECEDING
                                                                     AND 1 PRECEDING) AS prev_e
                      FROM (SELECT greatest(g.gap_start, b.ps) AS s, least(g.gap_end, b.pe) AS e
                            FROM usage_gaps g
                            WHERE g.resource_key = cr.resource_key
                              AND g.gap_start < b.pe AND g.gap_end > b.ps) clipped) ordered) marked
          GROUP BY n) island
) u ON true
WHERE cr.customer_id = $1 ORDER BY cr.resource_key
"""


def _view(row: Any) -> ResourceView:
    base = RESOURCE_BASE_UNIT.get(row["resource_type"], "byte")
    unit = display_unit(row["catalog_unit"], base)
    total, limit = int(row["current_usage"]), row["limit_value"]
    pct = percentage(total, limit)
    return ResourceView(
        id=row["id"],
        resource_key=row["resource_key"],
        customer_id=row["customer_id"],
        resource_type=row["resource_type"],
        resource_name=row["resource_name"],
        name=row["name"],
        kind=row["kind"],
        unit=base,
        catalog_unit=unit,
        current_usage=total,
        usage_in_unit=str(to_unit(total, unit)),
        limit=limit,
        limit_in_unit=str(to_unit(limit, unit)) if limit is not None else None,
        percentage=str(pct) if pct is not None else None,
        warning_threshold=row["warning_threshold"],
        critical_threshold=row["critical_threshold"],
        status=row["status"],
        period_start=row["period_start"],
        auto_provisioned=row["auto_provisioned"],
        updated_at=row["updated_at"],
        alert_level=Level(row["alert_level"]).name,
        unknown_ms=int(row["unknown_ms"]),
    )


async def customer_exists(db: Executor, customer_id: str) -> bool:
    with storage_errors():
        return bool(await db.fetchval("SELECT 1 FROM customers WHERE id = $1", customer_id))


async def customer_resources(
    db: Executor, customer_id: str, *, billing_tz: str = "UTC"
) -> list[ResourceView]:
    """Every resource of ``customer_id``; NotFoundError if the customer is unknown.

    ``billing_tz`` is the time zone billing months start in (``RESMON_BILLING_TZ``):
    it bounds the period whose unknown time ``unknown_ms`` sums.
    """
    with storage_errors():
        rows = await db.fetch(_RESOURCES, customer_id, billing_tz)
    if not rows and not await customer_exists(db, customer_id):
        raise NotFoundError(f"customer {customer_id!r} not found")
    return [_view(r) for r in rows]


async def current_usage(
    db: Executor, customer_id: str, *, billing_tz: str = "UTC"
) -> list[CachedUsage]:
    """The same view as the Redis cache, computed from PostgreSQL."""
    return [
        CachedUsage(
            resource_key=v.resource_key,
            resource_type=v.resource_type,
            usage=v.current_usage,
            unit=v.unit,
            limit=v.limit,
            catalog_unit=v.catalog_unit,
            usage_in_unit=v.usage_in_unit,
            limit_in_unit=v.limit_in_unit,
            percentage=v.percentage,
            level=v.alert_level,
            updated=int(v.updated_at.timestamp() * 1000),
            unknown_ms=v.unknown_ms,
        )
        for v in await customer_resources(db, customer_id, billing_tz=billing_tz)
    ]


#: an alert row as the API shows it (filters and ordering appended by the caller)
ALERTS_SELECT: Final = """
SELECT a.id::text AS id, cr.customer_id, cr.resource_key, rc.resource_type, a.alert_type,
       a.severity, a.message, a.current_value, a.threshold_value, a.unit, a.status,
       a.acknowledged_by, a.acknowledged_at, a.resolved_by, a.resolved_at, a.resolution,
       a.created_at
FROM alerts a
JOIN customer_resources cr ON cr.id = a.customer_resource_id
JOIN resource_catalogs rc ON rc.id = cr.resource_catalog_id
"""


async def list_alerts(
    db: Executor,
    *,
    status: str | None = None,
    customer_id: str | None = None,
    resource_key: str | None = None,
    limit: int = 100,
    tenant_id: str | None = None,
    customer_ids: Sequence[str] | None = None,
    severity: str | None = None,
    alert_type: str | None = None,
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
    after: tuple[dt.datetime, str] | None = None,
) -> list[AlertRow]:
    """Alerts, newest first (ties by id), filtered by the given fields (``tenant_id``:
    its customers' only; ``customer_ids``: those customers' only; ``since``/``until``:
    created in ``[since, until)``; ``after``: only those after that (created_at, id)
    in this order, for the next page)."""
    with storage_errors():
        rows = await db.fetch(
            ALERTS_SELECT  # noqa: S608 (constant text; values are parameters)
            + """WHERE ($1::text IS NULL OR a.status = $1)
                   AND ($2::text IS NULL OR cr.customer_id = $2)
                   AND ($3::text IS NULL OR cr.resource_key = $3)
                   AND ($5::uuid IS NULL OR cr.customer_id IN
                        (SELECT c.id FROM customers c WHERE c.tenant_id = $5::uuid))
                   AND ($6::text[] IS NULL OR cr.customer_id = ANY($6::text[]))
                   AND ($7::text IS NULL OR a.severity = $7)
                   AND ($8::text IS NULL OR a.alert_type = $8)
                   AND ($9::timestamptz IS NULL OR a.created_at >= $9)
                   AND ($10::timestamptz IS NULL OR a.created_at < $10)
                   AND ($11::timestamptz IS NULL OR a.created_at < $11
                        OR (a.created_at = $11 AND a.id > $12::uuid))
                 ORDER BY a.created_at DESC, a.id LIMIT $4""",
            status,
            customer_id,
            resource_key,
            limit,
            tenant_id,
            list(customer_ids) if customer_ids is not None else None,
            severity,
            alert_type,
            since,
            until,
            after[0] if after is not None else None,
            after[1] if after is not None else None,
        )
    return [_alert(r) for r in rows]


def _alert(row: Any) -> AlertRow:
    values = dict(row)
    for field in ("current_value", "threshold_value"):
        if values[field] is not None:
            values[field] = plain(values[field])
    return AlertRow(**values)
