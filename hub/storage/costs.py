"""Cost breakdowns over PostgreSQL: what a resource is billed by, its usage, the stored bills.

The pure pricing code (:mod:`hub.costs`) prices one resource for one billing
period; this module feeds it from the database and keeps its results:

* the **model**: the resource's plan (``customer_resources.cost_model_id``:
  the plan's ``pricing`` JSON, else its base cost + overage rate), or without a
  plan the catalog's ``cost_per_unit`` for every unit;
* the **usage**: the ``month`` buckets of ``usage_aggregates`` (in the billing
  time zone) of the period - their total for a delta resource, their peak
  (``max_usage``) for a level - or, for a 95th-percentile model, 5-minute
  samples built from the raw ``usage_metrics`` rows (bytes per interface and
  direction). Gaps, over-speed samples, duplicates and rows without a direction
  found on the way are logged (``cost_samples_unbilled``), counted
  (``resmon_hub_cost_samples_unbilled_total{reason}``) and kept on the breakdown;
* **proration** from ``customer_resources.billing_start``;
* the **stored bill** of each closed period (``cost_breakdowns``). For a monthly
  period it is authoritative: :func:`close_periods` writes it and sets the
  month bucket's ``usage_aggregates.cost`` to its total in one transaction.
"""

from __future__ import annotations

import datetime as dt
import re
from collections import Counter
from collections.abc import Sequence
from decimal import Decimal
from typing import Any, Final
from zoneinfo import ZoneInfo

import asyncpg  # type: ignore[import-untyped]
import msgspec
import structlog

from .._exceptions import NotFoundError
from ..calendar import month_bounds_ms, month_number, month_of
from ..costs import (
    WINDOW_MS,
    Breakdown,
    CostModel,
    MoneyPolicy,
    Percentile95,
    Period,
    PlanSpan,
    PricingError,
    RateMeasure,
    Sample,
    TimeOfUse,
    Volume,
    billing_period,
    catalog_model,
    load_cost_model,
    measure_rate,
    plan_model,
    price,
    price_plan_change,
    split_hours,
)
from ..metrics import HubMetrics
from .provision import Executor

__all__ = [
    "UNBILLED_REASONS",
    "CostTarget",
    "CostView",
    "billed_in",
    "close_periods",
    "compute",
    "cost_targets",
    "cost_view",
    "model_of_row",
    "month_label",
    "parse_month",
    "period_of",
    "store",
    "target_from_row",
    "total_of",
    "views",
]

_log = structlog.get_logger(component="hub.storage.costs")
_EPOCH: Final = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_ONE_MS: Final = dt.timedelta(milliseconds=1)
_MONTH: Final = re.compile(r"(\d{4})-(\d{2})")
#: why a stored bandwidth row or span was not billed (the counter's ``reason`` label)
UNBILLED_REASONS: Final = ("no_data", "over_speed", "duplicate", "no_direction")


def _ts(ms: int) -> dt.datetime:
    return _EPOCH + ms * _ONE_MS


def _ms(at: dt.datetime) -> int:
    return (at - _EPOCH) // _ONE_MS


def parse_month(text: str) -> int:
    """``YYYY-MM`` as the hub numbers months; PricingError naming ``period`` otherwise."""
    got = _MONTH.fullmatch(text)
    if got is None or not 1 <= int(got[2]) <= 12 or int(got[1]) < 1970:
        raise PricingError("period", f"{text!r} is not a month written YYYY-MM (e.g. 2026-03)")
    return month_number(int(got[1]), int(got[2]))


def month_label(month: int) -> str:
    return f"{month // 12:04d}-{month % 12 + 1:02d}"


class CostTarget(msgspec.Struct, frozen=True):
    """One resource as its bill needs it."""

    id: str
    resource_key: str
    customer_id: str
    resource_type: str
    kind: str
    #: the catalog unit usage is billed in
    unit: str
    limit_value: int | None
    model: CostModel
    #: where the model came from, in words (shown on the breakdown's sources)
    model_source: str
    billing_start_ms: int | None
    speed_bps: int | None


class CostView(msgspec.Struct, frozen=True, rename="camel"):
    """A resource's breakdown for one period, and whether it is the stored bill."""

    resource_key: str
    resource_type: str
    #: the billing period is over
    closed: bool
    #: read from ``cost_breakdowns`` (the bill as closed) rather than computed now
    stored: bool
    computed_at: dt.datetime | None
    breakdown: Breakdown


_TARGETS: Final = """
SELECT cr.id::text AS id, cr.resource_key, cr.customer_id, rc.resource_type, cr.kind,
       rc.unit, rc.cost_per_unit, cr.limit_value, cr.billing_start, cr.speed_bps,
       cm.id::text AS model_id, cm.model_name, cm.billing_period, cm.base_cost,
       cm.overage_rate, cm.pricing::text AS pricing
FROM customer_resources cr
JOIN resource_catalogs rc ON rc.id = cr.resource_catalog_id
LEFT JOIN cost_models cm ON cm.id = cr.cost_model_id
WHERE {where}
ORDER BY cr.resource_key"""


def model_of_row(row: Any) -> tuple[CostModel, str]:
    """A resource's cost model and its source in words, from a row with the ``cost_models``
    columns of ``_TARGETS`` (``model_id`` None: the catalog's cost per unit)."""
    model_id = row["model_id"]
    if model_id is None:
        source = f"resource_catalogs.cost_per_unit {row['cost_per_unit']} per {row['unit']}"
        return catalog_model(row["cost_per_unit"]), source
    name = row["model_name"] or ""
    if row["pricing"] is not None:
        return load_cost_model(row["pricing"]), f"cost_models {model_id} ({name}) pricing"
    model = plan_model(row["billing_period"], row["base_cost"], row["overage_rate"], name)
    return model, f"cost_models {model_id} ({name}) base cost + overage rate"


def target_from_row(row: Any) -> CostTarget:
    """A resource as its bill needs it, from a row with the columns of ``_TARGETS``."""
    where = f"resource {row['resource_key']}"
    try:
        model, source = model_of_row(row)
    except PricingError as exc:
        raise PricingError(f"{where}: cost model {exc.where}", exc.problem) from None
    start = row["billing_start"]
    return CostTarget(
        id=row["id"],
        resource_key=row["resource_key"],
        customer_id=row["customer_id"],
        resource_type=row["resource_type"],
        kind=row["kind"],
        unit=row["unit"],
        limit_value=row["limit_value"],
        model=model,
        model_source=source,
        billing_start_ms=None if start is None else _ms(start),
        speed_bps=row["speed_bps"],
    )


async def cost_targets(
    db: Executor, *, customer_id: str, resource_key: str | None = None
) -> list[CostTarget]:
    """The customer's resources (or the one named); NotFoundError naming what is unknown."""
    if resource_key is None:
        rows = await db.fetch(_TARGETS.format(where="cr.customer_id = $1"), customer_id)
    else:
        rows = await db.fetch(
            _TARGETS.format(where="cr.customer_id = $1 AND cr.resource_key = $2"),
            customer_id,
            resource_key,
        )
    if not rows:
        known = await db.fetchval("SELECT 1 FROM customers WHERE id = $1", customer_id)
        if not known:
            raise NotFoundError(f"customer {customer_id!r} not found")
        if resource_key is not None:
            raise NotFoundError(f"resource {resource_key!r} not found for customer {customer_id!r}")
    return [target_from_row(row) for row in rows]


def _active(target: CostTarget, period: Period) -> Period | None:
    """The part of ``period`` the resource was billed in (None: all of it)."""
    start = target.billing_start_ms
    if start is None or start <= period.start_ms:
        return None
    if start >= period.end_ms:
        raise PricingError(
            "billingStart",
            f"{target.resource_key}: billing starts at {_ts(start).isoformat()}, after the "
            f"period [{_ts(period.start_ms).isoformat()}, {_ts(period.end_ms).isoformat()})",
        )
    return Period(start, period.end_ms)


def billed_in(target: CostTarget, period: Period) -> bool:
    """Whether the resource's billing had begun before ``period`` ended."""
    return target.billing_start_ms is None or target.billing_start_ms < period.end_ms


_BUCKETS: Final = """
SELECT customer_resource_id::text AS rid, id::text AS id, period_start, total_usage, max_usage
FROM usage_aggregates
WHERE customer_resource_id = ANY($1::uuid[]) AND period_type = 'month'
  AND period_start >= $2 AND period_start < $3
ORDER BY period_start"""


async def _buckets(
    db: Executor, ids: Sequence[str], start_ms: int, end_ms: int
) -> dict[str, list[Any]]:
    """The month buckets of the resources ``ids`` starting in ``[start_ms, end_ms)``, by id."""
    by_id: dict[str, list[Any]] = {i: [] for i in ids}
    for row in await db.fetch(_BUCKETS, list(ids), _ts(start_ms), _ts(end_ms)):
        by_id[row["rid"]].append(row)
    return by_id


def _volume(target: CostTarget, period: Period, buckets: Sequence[Any]) -> tuple[Volume, list[str]]:
    """The period's usage from its month buckets, and the buckets named as its sources."""
    start, end = _ts(period.start_ms), _ts(period.end_ms)
    rows = [r for r in buckets if start <= r["period_start"] < end]
    level = target.kind == "level"
    if level:
        base = max((int(r["max_usage"] or 0) for r in rows), default=0)
    else:
        base = sum(int(r["total_usage"] or 0) for r in rows)
    what = "max_usage" if level else "total_usage"
    sources = [
        f"usage_aggregates {r['id']} month from {r['period_start'].isoformat()} "
        f"{what} {int(r[what] or 0)}"
        for r in rows
    ] or ["usage_aggregates: no month bucket in the period (usage 0)"]
    if level:
        sources.append("a level resource is billed on its peak level in the period")
    return Volume(base, target.unit), sources


async def _rate(
    db: Executor,
    target: CostTarget,
    model: Percentile95,
    span: Period,
    metrics: HubMetrics | None,
) -> tuple[RateMeasure, list[str]]:
    rows = await db.fetch(
        """SELECT metric_start, metric_timestamp, metric_value,
                  coalesce(metadata->>'device', '') AS device,
                  coalesce(metadata->>'interface', '') AS interface,
                  metadata->>'direction' AS direction
           FROM usage_metrics
           WHERE customer_resource_id = $1 AND metric_timestamp > $2 AND metric_start < $3""",
        target.id,
        _ts(span.start_ms),
        _ts(span.end_ms),
    )
    samples: list[Sample] = []
    undirected = 0
    for r in rows:
        if r["direction"] not in ("in", "out"):
            undirected += 1
            continue
        name = "/".join(p for p in (r["device"], r["interface"]) if p) or "-"
        samples.append(
            Sample(
                interface=name,
                direction=r["direction"],
                start_ms=_ms(r["metric_start"]),
                end_ms=_ms(r["metric_timestamp"]),
                bytes=r["metric_value"],
                speed_bps=target.speed_bps,
            )
        )
    measure = measure_rate(samples, span, model.direction)
    found: Counter[str] = Counter(gap.reason for gap in measure.gaps)
    found["duplicate"] = measure.duplicates
    found["no_direction"] = undirected
    for reason in UNBILLED_REASONS:
        if found[reason]:
            _log.warning(
                "cost_samples_unbilled",
                resource_key=target.resource_key,
                reason=reason,
                count=found[reason],
                period_start_ms=span.start_ms,
                period_end_ms=span.end_ms,
            )
            if metrics is not None:
                metrics.cost_samples_unbilled.labels(reason).inc(found[reason])
    sources = [
        f"usage_metrics: {len(rows)} raw rows in [{span.start_ms}, {span.end_ms}) ms "
        f"as {len(samples)} samples"
    ]
    if undirected:
        sources.append(f"usage_metrics: {undirected} rows without a direction, not billed")
    return measure, sources


_HOUR_USAGE: Final = """
SELECT period_start, total_usage, max_usage FROM usage_aggregates
WHERE customer_resource_id = $1 AND period_type = 'hour'
  AND period_start >= $2 AND period_start < $3"""


async def _hours(
    db: Executor, target: CostTarget, tariff: TimeOfUse, span: Period, tz: ZoneInfo
) -> tuple[Volume, list[str]]:
    """The period's usage from its hour buckets, split into the tariff's peak and other hours."""
    if target.kind == "level":
        raise PricingError(
            f"resource {target.resource_key}: usage",
            "peak/off-peak prices bill a volume by the hour; a level resource has none",
        )
    rows = await db.fetch(_HOUR_USAGE, target.id, _ts(span.start_ms), _ts(span.end_ms))
    split = split_hours(
        [(_ms(r["period_start"]), int(r["total_usage"] or 0)) for r in rows], tariff, tz.key
    )
    sources = [
        f"usage_aggregates: {split.hours} hour buckets in [{span.start_ms}, {span.end_ms}) ms, "
        f"{split.peak_base} in the peak hours {tariff.window} ({tz.key}), "
        f"{split.off_peak_base} in the others"
    ]
    return Volume(split.base, target.unit, peak_base=split.peak_base), sources


_CHANGES: Final = """
SELECT c.customer_resource_id::text AS rid, c.changed_at, c.from_limit,
       f.id::text AS model_id, f.model_name, f.billing_period, f.base_cost, f.overage_rate,
       f.pricing::text AS pricing
FROM customer_resource_plan_changes c JOIN cost_models f ON f.id = c.from_cost_model_id
WHERE c.customer_resource_id = ANY($1::uuid[]) AND c.changed_at > $2 AND c.changed_at < $3
ORDER BY c.changed_at, c.id"""


async def plan_changes(
    db: Executor, ids: Sequence[str], start_ms: int, end_ms: int
) -> dict[str, list[Any]]:
    """The plan changes of the resources ``ids`` inside ``(start_ms, end_ms)``, by id."""
    by_id: dict[str, list[Any]] = {i: [] for i in ids}
    for row in await db.fetch(_CHANGES, list(ids), _ts(start_ms), _ts(end_ms)):
        by_id[row["rid"]].append(row)
    return by_id


async def _plan_changed(
    db: Executor,
    target: CostTarget,
    period: Period,
    active: Period | None,
    found: Sequence[Any],
    *,
    money: MoneyPolicy,
    tz: ZoneInfo | None,
) -> Breakdown | None:
    """The bill of a period in which the resource changed plan, or None if it did not.

    One span per plan: from the period start (or billing start) to the first
    change on the plan it was changed from, ..., the last change to the period
    end on the current plan. Each span's usage is the hour buckets starting in
    it (a change inside an hour counts that hour in the span it started in).
    """
    first = period.start_ms if active is None else active.start_ms
    changes = [c for c in found if first < _ms(c["changed_at"]) < period.end_ms]
    if not changes:
        return None
    where = f"resource {target.resource_key}: plan change"
    plans: list[tuple[str, CostModel, int | None]] = []
    bounds = [first]
    for change in changes:
        try:
            model, source = model_of_row({**dict(change), "cost_per_unit": None, "unit": ""})
        except PricingError as exc:
            raise PricingError(f"{where}: cost model {exc.where}", exc.problem) from None
        plans.append((source, model, change["from_limit"]))
        bounds.append(_ms(change["changed_at"]))
    plans.append((target.model_source, target.model, target.limit_value))
    bounds.append(period.end_ms)
    if any(isinstance(model.usage, Percentile95) for _, model, _ in plans):
        return None  # ranked over the whole period on the current plan (see compute)
    hours = await db.fetch(_HOUR_USAGE, target.id, _ts(first), _ts(period.end_ms))
    spans = []
    sources = []
    for (source, model, limit), start, end in zip(plans, bounds, bounds[1:], strict=False):
        rows = [r for r in hours if start <= _ms(r["period_start"]) < end]
        if target.kind == "level":
            base = max((int(r["max_usage"] or 0) for r in rows), default=0)
        else:
            base = sum(int(r["total_usage"] or 0) for r in rows)
        peak = None
        if isinstance(model.usage, TimeOfUse):
            if tz is None:
                raise PricingError("tz", "a peak/off-peak model needs the billing time zone")
            split = split_hours(
                [(_ms(r["period_start"]), int(r["total_usage"] or 0)) for r in rows],
                model.usage,
                tz.key,
            )
            peak = split.peak_base
        spans.append(
            PlanSpan(
                plan=source,
                model=model,
                active=Period(start, end),
                usage=Volume(base, target.unit, peak_base=peak),
                limit_base=limit,
            )
        )
        sources.append(f"{source} from {start} to {end} ms: {len(rows)} hour buckets, usage {base}")
    try:
        return price_plan_change(spans, period=period, money=money, sources=sources)
    except PricingError as exc:
        raise PricingError(f"{where}: {exc.where}", exc.problem) from None


async def compute(
    db: Executor,
    target: CostTarget,
    period: Period,
    *,
    money: MoneyPolicy,
    now_ms: int,
    metrics: HubMetrics | None = None,
    buckets: Sequence[Any] | None = None,
    tz: ZoneInfo | None = None,
    changes: Sequence[Any] | None = None,
) -> Breakdown:
    """The breakdown of ``target`` over ``period`` from what is stored now.

    ``buckets``: the resource's month buckets when the caller read them already
    (for many resources at once); else they are read here. ``tz``: the billing
    time zone, which a peak/off-peak (``timeOfUse``) model's hours are in.
    ``changes``: the resource's :func:`plan_changes` in the period, when the caller
    read them already; a change of plan inside the period gives one span per plan
    (:func:`~hub.costs.price_plan_change`).
    """
    active = _active(target, period)
    model = target.model
    if changes is None:
        changes = (await plan_changes(db, [target.id], period.start_ms, period.end_ms))[target.id]
    changed = await _plan_changed(db, target, period, active, changes, money=money, tz=tz)
    if changed is not None:
        return changed
    if isinstance(model.usage, Percentile95):
        end = min(period.end_ms, now_ms - now_ms % WINDOW_MS)
        start = period.start_ms if active is None else active.start_ms
        start += -start % WINDOW_MS  # a mid-window start: from the next whole window
        if end <= start:
            end = start + WINDOW_MS  # nothing measured yet: one empty window
        usage: Volume | RateMeasure
        usage, sources = await _rate(db, target, model.usage, Period(start, end), metrics)
        limit = None
    elif isinstance(model.usage, TimeOfUse):
        if tz is None:
            raise PricingError("tz", "a peak/off-peak model needs the billing time zone")
        usage, sources = await _hours(db, target, model.usage, period, tz)
        limit = target.limit_value
    else:
        if buckets is None:
            buckets = (await _buckets(db, [target.id], period.start_ms, period.end_ms))[target.id]
        usage, sources = _volume(target, period, buckets)
        limit = target.limit_value
    return price(
        model,
        usage,
        period=period,
        money=money,
        active=active,
        limit_base=limit,
        sources=[target.model_source, *sources],
    )


def period_of(target: CostTarget, month: int, tz: ZoneInfo) -> Period:
    start_ms, _ = month_bounds_ms(month, tz)
    return billing_period(start_ms, target.model.billing_period, tz.key)


_STORED: Final = """
SELECT b.breakdown::text AS breakdown, b.computed_at FROM cost_breakdowns b
WHERE b.customer_resource_id = $1 AND b.period_start = $2"""
_decode: Final = msgspec.json.Decoder(Breakdown)


async def cost_view(
    db: Executor,
    target: CostTarget,
    month: int,
    *,
    tz: ZoneInfo,
    money: MoneyPolicy,
    now_ms: int,
    metrics: HubMetrics | None = None,
) -> CostView:
    """The bill of the period holding ``month``: the stored one if closed and kept, else now."""
    period = period_of(target, month, tz)
    if not billed_in(target, period):
        raise NotFoundError(
            f"resource {target.resource_key!r} has no bill for {month_label(month)}: its "
            f"billing starts at {_ts(target.billing_start_ms or 0).isoformat()}"
        )
    closed = period.end_ms <= now_ms
    if closed:
        row = await db.fetchrow(_STORED, target.id, _ts(period.start_ms))
        if row is not None:
            return CostView(
                target.resource_key,
                target.resource_type,
                closed=True,
                stored=True,
                computed_at=row["computed_at"],
                breakdown=_decode.decode(row["breakdown"]),
            )
    bill = await compute(db, target, period, money=money, now_ms=now_ms, metrics=metrics, tz=tz)
    return CostView(
        target.resource_key,
        target.resource_type,
        closed=closed,
        stored=False,
        computed_at=None,
        breakdown=bill,
    )


async def views(
    db: Executor,
    customer_id: str,
    month: int,
    resource_key: str | None = None,
    *,
    tz: ZoneInfo,
    money: MoneyPolicy,
    now_ms: int,
    metrics: HubMetrics | None = None,
) -> list[CostView]:
    """The bills of the customer's resources (or the one named) for the period holding ``month``.

    Listing a customer leaves out resources whose billing began after that period.
    NotFoundError names an unknown customer or resource; PricingError names the
    resource and the field of a cost model or sample that cannot be priced.
    """
    got = []
    for target in await cost_targets(db, customer_id=customer_id, resource_key=resource_key):
        if resource_key is None and not billed_in(target, period_of(target, month, tz)):
            continue
        try:
            got.append(
                await cost_view(
                    db, target, month, tz=tz, money=money, now_ms=now_ms, metrics=metrics
                )
            )
        except PricingError as exc:
            raise PricingError(
                f"resource {target.resource_key}: {exc.where}", exc.problem
            ) from None
    return got


_encode: Final = msgspec.json.Encoder(decimal_format="string")

#: closed month buckets with no stored bill, or one computed before the bucket last moved
_TO_CLOSE: Final = """
SELECT DISTINCT a.customer_resource_id::text AS id, a.period_start
FROM usage_aggregates a
JOIN customer_resources cr ON cr.id = a.customer_resource_id
LEFT JOIN cost_models cm ON cm.id = cr.cost_model_id
LEFT JOIN cost_breakdowns b ON b.customer_resource_id = a.customer_resource_id
     AND b.period_start = CASE WHEN cm.billing_period = 'yearly'
         THEN date_trunc('year', a.period_start, $2) ELSE a.period_start END
WHERE a.period_type = 'month' AND a.period_end <= $1 AND a.period_start >= $3
  AND (b.id IS NULL OR a.updated_at > b.computed_at)
ORDER BY 1, 2"""


_INSERT_BILL: Final = """
INSERT INTO cost_breakdowns AS b (customer_resource_id, period_start, period_end,
    billing_period, currency, total, lines, rule, inputs, breakdown)
VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb, $8, $9::jsonb, $10::jsonb)
ON CONFLICT (customer_resource_id, period_start) DO UPDATE SET
    period_end = EXCLUDED.period_end, billing_period = EXCLUDED.billing_period,
    currency = EXCLUDED.currency, total = EXCLUDED.total, lines = EXCLUDED.lines,
    rule = EXCLUDED.rule, inputs = EXCLUDED.inputs, breakdown = EXCLUDED.breakdown,
    computed_at = now()"""

# the bill is authoritative for its month: the bucket's cost is its total
_BUCKET_COST: Final = """
UPDATE usage_aggregates SET cost = $3
WHERE customer_resource_id = $1 AND period_type = 'month' AND period_start = $2"""


async def store(conn: asyncpg.Connection, bills: Sequence[tuple[CostTarget, Breakdown]]) -> None:
    """Keep ``bills`` as their closed periods' breakdowns; a monthly one sets its bucket's cost.

    One transaction: the stored bill and the bucket's cost never disagree.
    """
    async with conn.transaction():
        await conn.executemany(
            _INSERT_BILL,
            [
                (
                    target.id,
                    _ts(bill.period.start_ms),
                    _ts(bill.period.end_ms),
                    bill.billing_period,
                    bill.currency,
                    bill.total,
                    _encode.encode(bill.lines).decode(),
                    bill.rule,
                    _encode.encode(bill.inputs).decode(),
                    _encode.encode(bill).decode(),
                )
                for target, bill in bills
            ],
        )
        await conn.executemany(
            _BUCKET_COST,
            [
                (target.id, _ts(bill.period.start_ms), bill.total)
                for target, bill in bills
                if bill.billing_period == "monthly"
            ],
        )


#: bills written per transaction by close_periods
_CHUNK: Final = 1000


async def close_periods(
    conn: asyncpg.Connection,
    *,
    tz: ZoneInfo,
    money: MoneyPolicy,
    now_ms: int,
    since_ms: int = 0,
    metrics: HubMetrics | None = None,
) -> list[tuple[str, Period]]:
    """Store the bill of every closed period not yet stored (or changed since); return them.

    A period is closed when its end is past ``now_ms``. Only months starting at
    ``since_ms`` or later are looked at (the hub passes its retention horizon:
    before it the raw rows a 95th-percentile bill needs are gone). A resource whose cost
    model cannot be read is logged, counted (``resmon_hub_cost_close_failures``)
    and skipped; the others are still closed.
    """
    due = await conn.fetch(_TO_CLOSE, _ts(now_ms), tz.key, _ts(since_ms))
    targets: dict[str, CostTarget] = {}
    ids = sorted({row["id"] for row in due})
    if ids:
        rows = await conn.fetch(_TARGETS.format(where="cr.id = ANY($1::uuid[])"), ids)
        for row in rows:
            try:
                targets[row["id"]] = target_from_row(row)
            except PricingError as exc:
                _log.error("cost_close_failed", resource_key=row["resource_key"], error=str(exc))
                if metrics is not None:
                    metrics.cost_close_failures.inc()
    work: list[tuple[CostTarget, Period]] = []
    done: set[tuple[str, int]] = set()
    for row in due:
        target = targets.get(row["id"])
        if target is None:
            continue
        period = period_of(target, month_of(_ms(row["period_start"]), tz), tz)
        if period.end_ms > now_ms or (target.id, period.start_ms) in done:
            continue  # a yearly period still running, or already closed in this pass
        done.add((target.id, period.start_ms))
        work.append((target, period))
    closed: list[tuple[str, Period]] = []
    for at in range(0, len(work), _CHUNK):
        chunk = work[at : at + _CHUNK]
        buckets = await _buckets(
            conn,
            sorted({t.id for t, _ in chunk}),
            min(p.start_ms for _, p in chunk),
            max(p.end_ms for _, p in chunk),
        )
        changes = await plan_changes(
            conn,
            sorted({t.id for t, _ in chunk}),
            min(p.start_ms for _, p in chunk),
            max(p.end_ms for _, p in chunk),
        )
        bills: list[tuple[CostTarget, Breakdown]] = []
        for target, period in chunk:
            try:
                bill = await compute(
                    conn,
                    target,
                    period,
                    money=money,
                    now_ms=now_ms,
                    metrics=metrics,
                    buckets=buckets[target.id],
                    tz=tz,
                    changes=changes[target.id],
                )
            except PricingError as exc:
                _log.error("cost_close_failed", resource_key=target.resource_key, error=str(exc))
                if metrics is not None:
                    metrics.cost_close_failures.inc()
                continue
            bills.append((target, bill))
        await store(conn, bills)
        closed.extend((target.resource_key, bill.period) for target, bill in bills)
    if closed:
        _log.info("cost_periods_closed", count=len(closed))
    return closed


def total_of(views: Sequence[CostView]) -> Decimal:
    """The sum of the views' totals (each already the sum of its rounded lines)."""
    return sum((v.breakdown.total for v in views), Decimal(0))
