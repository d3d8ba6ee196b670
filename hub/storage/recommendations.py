"""Optimization recommendations from PostgreSQL (issue 12, section 4; migration 0023).

:func:`run` is the daily job: it loads each resource's plan, the last days'
``usage_aggregates`` day buckets and its last closed months, asks
:func:`hub.costs.recommend.recommend` for advice and upserts each
recommendation by its deterministic id, so the same advice is one row however
often the job runs (its savings and evidence are refreshed; its status is kept).
:func:`listing` reads them back.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Awaitable, Callable, Sequence
from decimal import Decimal
from typing import Any, Final
from zoneinfo import ZoneInfo

import asyncpg  # type: ignore[import-untyped]
import msgspec
import structlog

from .._exceptions import HubError, NotFoundError
from ..costs import MoneyPolicy, PricingError, TimeOfUse, load_cost_model, plan_model
from ..costs.recommend import Plan, Recommendation, RecommendSettings, ResourceHistory, recommend
from ..metrics import HubMetrics
from .costs import target_from_row
from .provision import Executor, connection, set_plan

__all__ = [
    "STATUSES",
    "RecommendationStateError",
    "RunResult",
    "StoredRecommendation",
    "apply",
    "dismiss",
    "listing",
    "run",
]

_log = structlog.get_logger(component="hub.storage.recommendations")

STATUSES: Final = ("open", "applied", "dismissed")

#: closed months the resize-up rule looks at
PERIODS: Final = 3
#: resources loaded and written per transaction
CHUNK: Final = 1000

_RESOURCES: Final = """
SELECT cr.id::text AS id, cr.resource_key, cr.customer_id, rc.resource_type, cr.kind,
       rc.unit, rc.cost_per_unit, cr.limit_value, cr.billing_start, cr.speed_bps,
       cm.id::text AS model_id, cm.model_name, cm.billing_period, cm.base_cost,
       cm.overage_rate, cm.pricing::text AS pricing,
       cr.resource_catalog_id::text AS catalog_id, cr.created_at
FROM customer_resources cr
JOIN resource_catalogs rc ON rc.id = cr.resource_catalog_id
LEFT JOIN cost_models cm ON cm.id = cr.cost_model_id
WHERE cr.status = 'ACTIVE' AND ($1::text IS NULL OR cr.customer_id = $1)
ORDER BY cr.resource_key"""

_PLANS: Final = """
SELECT cm.id::text AS model_id, cm.model_name, cm.billing_period, cm.base_cost,
       cm.overage_rate, cm.pricing::text AS pricing, cm.limit_value,
       cm.resource_catalog_id::text AS catalog_id
FROM cost_models cm
WHERE cm.is_active AND cm.resource_catalog_id IS NOT NULL AND cm.limit_value IS NOT NULL
ORDER BY cm.id"""

_BUCKETS: Final = """
SELECT customer_resource_id::text AS rid, period_type, period_start, total_usage, max_usage
FROM usage_aggregates
WHERE customer_resource_id = ANY($1::uuid[])
  AND ((period_type = 'day' AND period_start >= $2 AND period_start < $3)
    OR (period_type = 'month' AND period_end <= $3 AND period_start >= $4))
ORDER BY customer_resource_id, period_start"""

_HOURS: Final = """
SELECT customer_resource_id::text AS rid, period_start, total_usage
FROM usage_aggregates
WHERE customer_resource_id = ANY($1::uuid[]) AND period_type = 'hour'
  AND period_start >= $2 AND period_start < $3"""

_UPSERT: Final = """
INSERT INTO recommendations (id, customer_id, customer_resource_id, kind, direction,
    target_cost_model_id, monthly_savings, currency, effort, description, evidence)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11::jsonb)
ON CONFLICT (id) DO UPDATE SET monthly_savings = EXCLUDED.monthly_savings,
    currency = EXCLUDED.currency, description = EXCLUDED.description,
    evidence = EXCLUDED.evidence, effort = EXCLUDED.effort, last_seen = now()
RETURNING (xmax = 0) AS created"""


class RunResult(msgspec.Struct):
    """What one run of the job did."""

    resources: int = 0
    created: list[Recommendation] = msgspec.field(default_factory=list)
    refreshed: int = 0
    failed: int = 0


class StoredRecommendation(msgspec.Struct, frozen=True, rename="camel"):
    """A recommendation as stored, with its status."""

    recommendation_id: str
    customer_id: str
    resource_key: str
    kind: str
    direction: str
    target_plan_id: str | None
    monthly_savings: str
    currency: str
    effort: str
    description: str
    evidence: dict[str, str]
    status: str
    status_by: str | None
    status_at: dt.datetime | None
    reason: str | None
    first_seen: dt.datetime
    last_seen: dt.datetime


def _current(row: Any) -> Plan:
    """The plan a resource is billed on, named by its cost_models id (or its catalog's)."""
    target = target_from_row(row)
    plan_id = row["model_id"] or f"catalog {row['catalog_id']}"
    return Plan(plan_id=plan_id, model=target.model, limit_base=row["limit_value"])


def _is_tou(plan: Plan) -> bool:
    return isinstance(plan.model.usage, TimeOfUse)


def _offer(row: Any) -> Plan:
    """A plan of the catalog a resource could move to, with the limit that comes with it."""
    try:
        if row["pricing"] is not None:
            model = load_cost_model(row["pricing"])
        else:
            model = plan_model(row["billing_period"], row["base_cost"], row["overage_rate"])
    except PricingError as exc:
        raise PricingError(f"cost model {row['model_id']}: {exc.where}", exc.problem) from None
    return Plan(plan_id=row["model_id"], model=model, limit_base=row["limit_value"])


def _day_starts(now_ms: int, tz: ZoneInfo, days: int) -> list[dt.datetime]:
    """The starts of the ``days`` whole days before today in the billing time zone, and today's."""
    today = dt.datetime.fromtimestamp(now_ms / 1000, tz).date()
    return [
        dt.datetime.combine(today - dt.timedelta(days=back), dt.time(), tz)
        for back in range(days, -1, -1)
    ]


def _peak_daily(
    tariff: TimeOfUse, hours: Sequence[Any], starts: Sequence[dt.datetime], tz: ZoneInfo
) -> list[int]:
    """The usage of each day of the window in the tariff's peak hours (local hours of ``tz``)."""
    index = {start.date(): i for i, start in enumerate(starts[:-1])}
    peak = [0] * (len(starts) - 1)
    for bucket in hours:
        local = bucket["period_start"].astimezone(tz)
        day = index.get(local.date())
        if day is not None and tariff.is_peak(local.hour):
            peak[day] += int(bucket["total_usage"] or 0)
    return peak


def _history(
    row: Any,
    plan: Plan,
    buckets: Sequence[Any],
    starts: Sequence[dt.datetime],
    hours: Sequence[Any] = (),
    tz: ZoneInfo | None = None,
) -> ResourceHistory:
    level = row["kind"] == "level"
    by_day: dict[dt.datetime, int] = {}
    months: list[int] = []
    for bucket in buckets:
        value = bucket["max_usage"] if level else bucket["total_usage"]
        if bucket["period_type"] == "month":
            months.append(int(value or 0))
        else:
            by_day[bucket["period_start"]] = int(value or 0)
    daily: list[int] = []
    if row["created_at"] <= starts[0]:
        # a day without a bucket moved nothing (a level stays where it was)
        last = 0
        for start in starts[:-1]:
            last = by_day.get(start, last if level else 0)
            daily.append(last)
    peak_daily = None
    if isinstance(plan.model.usage, TimeOfUse) and tz is not None:
        peak_daily = (
            _peak_daily(plan.model.usage, hours, starts, tz)[-len(daily) :] if daily else []
        )
    return ResourceHistory(
        customer_id=row["customer_id"],
        resource_key=row["resource_key"],
        resource_type=row["resource_type"],
        unit=row["unit"],
        kind="level" if level else "delta",
        plan=plan,
        daily=daily,
        periods=months[-PERIODS:],
        peak_daily=peak_daily,
    )


async def run(
    conn: asyncpg.Connection,
    *,
    settings: RecommendSettings,
    money: MoneyPolicy,
    tz: ZoneInfo,
    now_ms: int,
    metrics: HubMetrics,
    customer_id: str | None = None,
    on_created: Callable[[asyncpg.Connection, list[Recommendation]], Awaitable[object]]
    | None = None,
) -> RunResult:
    """Recommend for every active resource (or the customer's) and upsert the advice.

    ``on_created(conn, recommendations)`` is called in the transaction that
    stores new ones (the hub writes their CloudEvents to its outbox there, so
    they are published exactly when the rows commit).
    """
    if customer_id is not None and not await conn.fetchval(
        "SELECT 1 FROM customers WHERE id = $1", customer_id
    ):
        raise NotFoundError(f"customer {customer_id!r} not found")
    starts = _day_starts(now_ms, tz, settings.window_days)
    first_month = dt.datetime.combine(
        (starts[-1] - dt.timedelta(days=31 * (PERIODS + 1))).date().replace(day=1), dt.time(), tz
    )
    catalogs: dict[str, list[Plan]] = {}
    for row in await conn.fetch(_PLANS):
        try:
            catalogs.setdefault(row["catalog_id"], []).append(_offer(row))
        except PricingError as exc:
            _log.error("recommend_plan_refused", cost_model=row["model_id"], error=str(exc))
            metrics.recommend_failures.labels(reason="plan").inc()
    rows = await conn.fetch(_RESOURCES, customer_id)
    result = RunResult(resources=len(rows))
    for offset in range(0, len(rows), CHUNK):
        chunk = rows[offset : offset + CHUNK]
        ids = [row["id"] for row in chunk]
        buckets: dict[str, list[Any]] = {}
        for bucket in await conn.fetch(_BUCKETS, ids, starts[0], starts[-1], first_month):
            buckets.setdefault(bucket["rid"], []).append(bucket)
        plans: dict[str, Plan | PricingError] = {}
        for row in chunk:
            try:
                plans[row["id"]] = _current(row)
            except PricingError as exc:
                plans[row["id"]] = exc
        # hour buckets only for the resources on peak/off-peak prices
        tou = [i for i, p in plans.items() if isinstance(p, Plan) and _is_tou(p)]
        hours: dict[str, list[Any]] = {}
        if tou:
            for bucket in await conn.fetch(_HOURS, tou, starts[0], starts[-1]):
                hours.setdefault(bucket["rid"], []).append(bucket)
        writes: list[tuple[Any, Recommendation]] = []
        for row in chunk:
            try:
                plan = plans[row["id"]]
                if isinstance(plan, PricingError):
                    raise plan
                history = _history(
                    row, plan, buckets.get(row["id"], []), starts, hours.get(row["id"], []), tz
                )
                found = recommend(
                    history, catalogs.get(row["catalog_id"], []), settings=settings, money=money
                )
            except PricingError as exc:
                _log.error("recommend_failed", resource_key=row["resource_key"], error=str(exc))
                metrics.recommend_failures.labels(reason="resource").inc()
                result.failed += 1
                continue
            writes.extend((row, rec) for rec in found)
        async with conn.transaction():
            new: list[Recommendation] = []
            for row, rec in writes:
                created = await conn.fetchval(
                    _UPSERT,
                    rec.recommendation_id,
                    rec.customer_id,
                    row["id"],
                    rec.kind,
                    rec.direction,
                    rec.target_plan_id or None,
                    rec.monthly_savings,
                    rec.currency,
                    rec.effort,
                    rec.description,
                    json.dumps(rec.evidence),
                )
                if created:
                    await conn.execute(
                        "INSERT INTO recommendation_audit (recommendation_id, action, actor, "
                        "details) VALUES ($1, 'created', 'recommend job', $2::jsonb)",
                        rec.recommendation_id,
                        json.dumps({"monthlySavings": str(rec.monthly_savings)}),
                    )
                    new.append(rec)
                    metrics.recommendations.labels(kind=rec.kind).inc()
                else:
                    result.refreshed += 1
            if new and on_created is not None:
                await on_created(conn, new)
            result.created.extend(new)
    _log.info(
        "recommend_run",
        resources=result.resources,
        created=len(result.created),
        refreshed=result.refreshed,
        failed=result.failed,
    )
    return result


_LIST: Final = """
SELECT r.id::text AS id, r.customer_id, cr.resource_key, r.kind, r.direction,
       r.target_cost_model_id::text AS target, r.monthly_savings::text AS savings, r.currency,
       r.effort, r.description, r.evidence::text AS evidence, r.status, r.status_by,
       r.status_at, r.reason, r.first_seen, r.last_seen
FROM recommendations r
JOIN customer_resources cr ON cr.id = r.customer_resource_id
WHERE {where}
ORDER BY r.monthly_savings DESC, r.id"""


async def listing(
    db: Executor,
    *,
    customer_id: str | None = None,
    status: str | None = None,
    tenant_id: str | None = None,
    customer_ids: Sequence[str] | None = None,
    limit: int | None = None,
    after: tuple[Decimal, str] | None = None,
) -> list[StoredRecommendation]:
    """Stored recommendations, largest saving first (ties by id); ValueError naming a bad
    status.

    ``tenant_id``: only its customers'; ``customer_ids``: only those customers';
    at most ``limit``; ``after`` (monthly saving, id): only those after it in this
    order, for the next page.
    """
    if status is not None and status not in STATUSES:
        raise ValueError(f"status {status!r} is not one of {', '.join(STATUSES)}")
    where = (
        "($1::text IS NULL OR r.customer_id = $1) AND ($2::text IS NULL OR r.status = $2)"
        " AND ($3::uuid IS NULL OR r.customer_id IN"
        " (SELECT c.id FROM customers c WHERE c.tenant_id = $3::uuid))"
        " AND ($4::text[] IS NULL OR r.customer_id = ANY($4::text[]))"
        " AND ($5::numeric IS NULL OR r.monthly_savings < $5"
        " OR (r.monthly_savings = $5 AND r.id > $6::uuid))"
    )
    rows = await db.fetch(
        _LIST.format(where=where) + " LIMIT $7",
        customer_id,
        status,
        tenant_id,
        list(customer_ids) if customer_ids is not None else None,
        after[0] if after is not None else None,
        after[1] if after is not None else None,
        limit,
    )
    return [_stored(row) for row in rows]


async def customer_of(db: Executor, recommendation_id: str) -> str | None:
    """The customer a recommendation is for, or None if there is no such recommendation."""
    try:
        rid = str(uuid.UUID(recommendation_id))
    except ValueError:
        return None
    got = await db.fetchval("SELECT customer_id FROM recommendations WHERE id = $1::uuid", rid)
    return None if got is None else str(got)


def _stored(row: Any) -> StoredRecommendation:
    return StoredRecommendation(
        recommendation_id=row["id"],
        customer_id=row["customer_id"],
        resource_key=row["resource_key"],
        kind=row["kind"],
        direction=row["direction"],
        target_plan_id=row["target"],
        monthly_savings=row["savings"],
        currency=row["currency"],
        effort=row["effort"],
        description=row["description"],
        evidence=json.loads(row["evidence"]),
        status=row["status"],
        status_by=row["status_by"],
        status_at=row["status_at"],
        reason=row["reason"],
        first_seen=row["first_seen"],
        last_seen=row["last_seen"],
    )


class RecommendationStateError(HubError):
    """The recommendation is no longer open (applied or dismissed already)."""


async def _open(conn: asyncpg.Connection, recommendation_id: str) -> Any:
    """The open recommendation, locked for this transaction; errors naming what is wrong."""
    try:
        rid = str(uuid.UUID(recommendation_id))
    except ValueError:
        raise NotFoundError(f"recommendation {recommendation_id!r} not found") from None
    row = await conn.fetchrow(
        "SELECT r.status, r.kind, r.direction, r.target_cost_model_id::text AS target, "
        "cr.resource_key, cr.limit_value, cr.cost_model_id::text AS plan "
        "FROM recommendations r JOIN customer_resources cr ON cr.id = r.customer_resource_id "
        "WHERE r.id = $1 FOR UPDATE OF r",
        rid,
    )
    if row is None:
        raise NotFoundError(f"recommendation {recommendation_id!r} not found")
    if row["status"] != "open":
        raise RecommendationStateError(
            f"recommendation {recommendation_id} is {row['status']}, not open"
        )
    return row


async def _close(
    conn: asyncpg.Connection,
    recommendation_id: str,
    status: str,
    actor: str,
    reason: str | None,
    details: dict[str, Any],
) -> StoredRecommendation:
    await conn.execute(
        "UPDATE recommendations SET status = $2, status_by = $3, status_at = now(), reason = $4 "
        "WHERE id = $1",
        recommendation_id,
        status,
        actor,
        reason,
    )
    await conn.execute(
        "INSERT INTO recommendation_audit (recommendation_id, action, actor, reason, details) "
        "VALUES ($1, $2, $3, $4, $5::jsonb)",
        recommendation_id,
        status,
        actor,
        reason,
        json.dumps(details),
    )
    row = await conn.fetchrow(_LIST.format(where="r.id = $1"), recommendation_id)
    return _stored(row)


def _who(actor: str) -> str:
    if not actor or not actor.strip():
        raise ValueError("who applies or dismisses is required")
    return actor.strip()


async def apply(db: Executor, recommendation_id: str, actor: str) -> StoredRecommendation:
    """Mark the recommendation applied by ``actor``, audited; a resize moves the resource.

    A resize puts the resource on the target plan with that plan's limit
    (:func:`~.provision.set_plan`: the running hubs reload it). The other kinds
    (removing a resource, compressing data) are done by people; applying one
    records that it was done.
    """
    who = _who(actor)
    async with connection(db) as conn, conn.transaction():
        row = await _open(conn, recommendation_id)
        details: dict[str, Any] = {}
        if row["kind"] == "RESIZE_RESOURCE":
            plan = await conn.fetchrow(
                "SELECT limit_value FROM cost_models WHERE id = $1 AND is_active "
                "AND limit_value IS NOT NULL",
                row["target"],
            )
            if plan is None:
                raise RecommendationStateError(
                    f"recommendation {recommendation_id}: plan {row['target']} is no longer "
                    "offered (inactive or without a limit)"
                )
            limit = plan["limit_value"]
            await set_plan(conn, row["resource_key"], row["target"], limit)
            details = {
                "resourceKey": row["resource_key"],
                "fromPlan": row["plan"],
                "toPlan": row["target"],
                "fromLimit": row["limit_value"],
                "toLimit": limit,
            }
        return await _close(conn, str(uuid.UUID(recommendation_id)), "applied", who, None, details)


async def dismiss(
    db: Executor, recommendation_id: str, actor: str, reason: str
) -> StoredRecommendation:
    """Mark the recommendation dismissed by ``actor`` for ``reason`` (required), audited."""
    who = _who(actor)
    if not reason or not reason.strip():
        raise ValueError("a reason for dismissing is required")
    async with connection(db) as conn, conn.transaction():
        await _open(conn, recommendation_id)
        rid = str(uuid.UUID(recommendation_id))
        return await _close(conn, rid, "dismissed", who, reason.strip(), {})
