"""Stored forecasts (``cost_forecasts``): the refresh that writes them, the reads that serve them.

The pure forecaster (:mod:`hub.forecasting`) turns daily totals into an
end-of-period usage forecast with calibrated 80 % / 95 % intervals; the pure
pricing (:mod:`hub.costs`) turns a usage into money. This module feeds the
first from ``usage_aggregates`` (``day`` buckets in the billing time zone),
prices the forecast and each interval bound with the resource's cost model,
and keeps one row per resource and billing period, replaced by each refresh.

* :func:`plan_forecast` is the pure step: a resource, its history and a day in,
  the row to store out (a forecast, or "no forecast" with its reason; a cost,
  or why there is none).
* :func:`refresh` runs it for every resource (or one customer's); a resource
  that fails is logged and counted and the others go on.
* :func:`run_refresh_loop` is the hub's scheduled task.
* :func:`stored_forecasts` reads the rows back for REST and the CLI.

``docs/forecasting.md`` ("Stored forecasts") describes the rules.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections import Counter
from collections.abc import Sequence
from decimal import Decimal
from typing import Any, Final
from zoneinfo import ZoneInfo

import anyio
import msgspec
import structlog

from .._exceptions import HubError, NotFoundError, UnreachableError, storage_errors
from ..calendar import next_first_day
from ..costs import (
    CostModel,
    MoneyPolicy,
    Percentile95,
    Period,
    PricingError,
    TimeOfUse,
    Volume,
    billing_period,
    minor_units,
    price,
)
from ..forecasting import NoForecast, UsageForecast, forecast_period
from ..metrics import HubMetrics
from .costs import model_of_row
from .forecast_alerts import OnAlerts, apply_forecast_alert
from .provision import Executor

__all__ = [
    "HISTORY_DAYS",
    "ForecastRow",
    "ForecastTarget",
    "RefreshSummary",
    "StoredForecast",
    "daily_history",
    "forecast_targets",
    "local_today",
    "plan_forecast",
    "refresh",
    "run_refresh_loop",
    "store_forecast",
    "stored_forecasts",
]

_log = structlog.get_logger(component="hub.storage.forecasts")

#: days of daily totals read per resource: the forecaster's 120 backtest origins,
#: the longest method window (30 days) and a whole period's horizon
HISTORY_DAYS: Final = 180
#: "no forecast" for a level (gauge) resource: the forecaster sums daily totals
LEVEL_RESOURCE: Final = "level_resource"


class ForecastTarget(msgspec.Struct, frozen=True):
    """One resource as its forecast needs it."""

    id: str
    resource_key: str
    customer_id: str
    kind: str
    #: catalog unit its cost is priced in
    unit: str
    limit_value: int | None
    #: the cost model, or None with ``cost_unavailable`` saying why
    model: CostModel | None
    cost_unavailable: str | None
    billing_start: dt.datetime | None
    #: bandwidth, cpu, ... (the forecast alert's message and unit)
    resource_type: str = ""


class ForecastRow(msgspec.Struct, frozen=True, kw_only=True):
    """One ``cost_forecasts`` row: a forecast or the reason there is none."""

    resource_id: str
    period_start: dt.date
    period_end: dt.date  # exclusive
    as_of: dt.date
    limit_value: int | None
    method: str | None = None
    used_to_date: int | None = None
    predicted_usage: int | None = None
    usage_80: tuple[int, int] | None = None
    usage_95: tuple[int, int] | None = None
    coverage_80: Decimal | None = None
    confidence_level: Decimal | None = None
    backtest_origins: int | None = None
    probability_above_limit: Decimal | None = None
    predicted_cost: Decimal | None = None
    cost_80: tuple[Decimal, Decimal] | None = None
    cost_95: tuple[Decimal, Decimal] | None = None
    currency: str | None = None
    cost_unavailable: str | None = None
    reason: str | None = None
    reason_detail: str | None = None


class RefreshSummary(msgspec.Struct):
    """What one refresh did."""

    made: int = 0
    no_forecast: dict[str, int] = msgspec.field(default_factory=dict)
    #: resource key -> the error that stopped its forecast
    failed: dict[str, str] = msgspec.field(default_factory=dict)


_TARGETS: Final = """
SELECT cr.id::text AS id, cr.resource_key, cr.customer_id, cr.kind, rc.unit, rc.cost_per_unit,
       rc.resource_type,
       cr.limit_value, cr.billing_start, cm.id::text AS model_id, cm.model_name,
       cm.billing_period, cm.base_cost, cm.overage_rate, cm.pricing::text AS pricing
FROM customer_resources cr
JOIN resource_catalogs rc ON rc.id = cr.resource_catalog_id
LEFT JOIN cost_models cm ON cm.id = cr.cost_model_id
WHERE ($1::text IS NULL OR cr.customer_id = $1) AND ($2::text IS NULL OR cr.resource_key = $2)
ORDER BY cr.resource_key"""


def _model(row: Any) -> tuple[CostModel | None, str | None]:
    """The resource's cost model as its bill uses it, or why its forecast cannot be priced."""
    try:
        model, _ = model_of_row(row)
    except PricingError as exc:
        return None, f"cost model {row['model_id'] or 'of the catalog'}: {exc}"
    if isinstance(model.usage, Percentile95):
        return None, "billed on the 95th percentile of 5-minute rates, not on the period's volume"
    if isinstance(model.usage, TimeOfUse):
        return None, "peak/off-peak prices: the forecast of a volume does not say in which hours"
    if model.billing_period != "monthly":
        return None, f"{model.billing_period} plan: the forecast covers the billing month"
    return model, None


async def forecast_targets(
    db: Executor, *, customer_id: str | None = None, resource_key: str | None = None
) -> list[ForecastTarget]:
    """Every resource, a customer's, or one; NotFoundError naming an unknown customer/resource."""
    rows = await db.fetch(_TARGETS, customer_id, resource_key)
    if not rows and customer_id is not None:
        if not await db.fetchval("SELECT 1 FROM customers WHERE id = $1", customer_id):
            raise NotFoundError(f"customer {customer_id!r} not found")
        if resource_key is not None:
            raise NotFoundError(f"resource {resource_key!r} not found for customer {customer_id!r}")
    targets = []
    for row in rows:
        model, unavailable = _model(row)
        targets.append(
            ForecastTarget(
                id=row["id"],
                resource_key=row["resource_key"],
                customer_id=row["customer_id"],
                kind=row["kind"],
                unit=row["unit"],
                limit_value=row["limit_value"],
                model=model,
                cost_unavailable=unavailable,
                billing_start=row["billing_start"],
                resource_type=row["resource_type"],
            )
        )
    return targets


def _midnight(day: dt.date, tz: ZoneInfo) -> dt.datetime:
    return dt.datetime(day.year, day.month, day.day, tzinfo=tz)


async def daily_history(
    db: Executor, resource_id: str, *, today: dt.date, tz: ZoneInfo, days: int = HISTORY_DAYS
) -> list[tuple[dt.date, int]]:
    """Daily totals of the ``days`` before ``today`` (billing zone), from the first with data.

    A day without a bucket after the first one is 0 (no usage was recorded); the
    days before the first bucket are not history (the resource was not in use).
    """
    rows = await db.fetch(
        "SELECT (period_start AT TIME ZONE $2)::date AS day, total_usage FROM usage_aggregates "
        "WHERE customer_resource_id = $1::uuid AND period_type = 'day' "
        "AND period_start >= $3 AND period_start < $4 ORDER BY period_start",
        resource_id,
        tz.key,
        _midnight(today - dt.timedelta(days=days), tz),
        _midnight(today, tz),
    )
    if not rows:
        return []
    totals = {row["day"]: int(row["total_usage"] or 0) for row in rows}
    first = rows[0]["day"]
    return [
        (first + dt.timedelta(days=i), totals.get(first + dt.timedelta(days=i), 0))
        for i in range((today - first).days)
    ]


def _whole(value: Decimal) -> int:
    return int(value.to_integral_value())


def _probability(value: float) -> Decimal:
    return Decimal(value).quantize(Decimal("0.0001"))


def _price_bounds(
    target: ForecastTarget,
    usages: Sequence[int],
    *,
    start: dt.date,
    tz: ZoneInfo,
    money: MoneyPolicy,
) -> list[Decimal]:
    """The bill's total for each usage, priced as the resource's bill would price it."""
    assert target.model is not None
    period = billing_period(int(_midnight(start, tz).timestamp() * 1000), "monthly", tz.key)
    active = None
    if target.billing_start is not None:
        begun = int(target.billing_start.timestamp() * 1000)
        if begun > period.start_ms:
            active = Period(begun, period.end_ms)
    return [
        price(
            target.model,
            Volume(usage, target.unit),
            period=period,
            money=money,
            active=active,
            limit_base=target.limit_value,
        ).total
        for usage in usages
    ]


def plan_forecast(
    target: ForecastTarget,
    history: Sequence[tuple[dt.date, int]],
    *,
    today: dt.date,
    tz: ZoneInfo,
    money: MoneyPolicy,
) -> ForecastRow:
    """The row to store for ``target`` on ``today`` (pure: no I/O).

    The period is the billing month ``today`` falls in. Raises ForecastInputError
    (bad history) or PricingError (a model the pricing refuses) for the caller to
    count as a failure of this resource.
    """
    start = today.replace(day=1)
    end = next_first_day(today)
    common: dict[str, Any] = {
        "resource_id": target.id,
        "period_start": start,
        "period_end": end,
        "as_of": today,
        "limit_value": target.limit_value,
    }
    if target.kind == "level":
        return ForecastRow(
            **common,
            reason=LEVEL_RESOURCE,
            reason_detail="a level (gauge) resource: forecasts cover summed usage only",
        )
    answer = forecast_period(history, start=start, end=end, today=today)
    if isinstance(answer, NoForecast):
        return ForecastRow(**common, reason=answer.reason, reason_detail=answer.detail)
    return _priced(target, answer, common, tz=tz, money=money)


def _priced(
    target: ForecastTarget,
    answer: UsageForecast,
    common: dict[str, Any],
    *,
    tz: ZoneInfo,
    money: MoneyPolicy,
) -> ForecastRow:
    usage_80 = (_whole(answer.interval_80.low), _whole(answer.interval_80.high))
    usage_95 = (_whole(answer.interval_95.low), _whole(answer.interval_95.high))
    predicted = _whole(answer.predicted)
    probability = None
    if target.limit_value is not None:
        probability = _probability(answer.probability_above(target.limit_value))
    cost: dict[str, Any] = {"cost_unavailable": target.cost_unavailable}
    next_period = _midnight(common["period_end"], tz)
    if target.billing_start is not None and target.billing_start >= next_period:
        cost = {"cost_unavailable": f"billing starts {target.billing_start}, after this period"}
    elif target.model is not None:
        usages = (predicted, *usage_80, *usage_95)
        totals = _price_bounds(target, usages, start=answer.period_start, tz=tz, money=money)
        cost = {
            "predicted_cost": totals[0],
            "cost_80": (totals[1], totals[2]),
            "cost_95": (totals[3], totals[4]),
            "currency": money.currency,
        }
    return ForecastRow(
        **common,
        method=answer.method,
        used_to_date=_whole(answer.used_to_date),
        predicted_usage=predicted,
        usage_80=usage_80,
        usage_95=usage_95,
        coverage_80=Decimal(answer.coverage_80 * 100).quantize(Decimal("0.01")),
        confidence_level=answer.confidence_level.quantize(Decimal("0.01")),
        backtest_origins=answer.backtest_origins,
        probability_above_limit=probability,
        **cost,
    )


_UPSERT: Final = """
INSERT INTO cost_forecasts AS f (
    customer_resource_id, forecast_period_start, forecast_period_end, as_of, limit_value, method,
    used_to_date, predicted_usage, usage_low_80, usage_high_80, usage_low_95, usage_high_95,
    coverage_80, confidence_level, backtest_origins, probability_above_limit, predicted_cost,
    cost_low_80, cost_high_80, cost_low_95, cost_high_95, currency, cost_unavailable, reason,
    reason_detail, computed_at)
VALUES ($1::uuid, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18,
        $19, $20, $21, $22, $23, $24, $25, now())
ON CONFLICT (customer_resource_id, forecast_period_start) DO UPDATE SET
    forecast_period_end = EXCLUDED.forecast_period_end, as_of = EXCLUDED.as_of,
    limit_value = EXCLUDED.limit_value, method = EXCLUDED.method,
    used_to_date = EXCLUDED.used_to_date, predicted_usage = EXCLUDED.predicted_usage,
    usage_low_80 = EXCLUDED.usage_low_80, usage_high_80 = EXCLUDED.usage_high_80,
    usage_low_95 = EXCLUDED.usage_low_95, usage_high_95 = EXCLUDED.usage_high_95,
    coverage_80 = EXCLUDED.coverage_80, confidence_level = EXCLUDED.confidence_level,
    backtest_origins = EXCLUDED.backtest_origins,
    probability_above_limit = EXCLUDED.probability_above_limit,
    predicted_cost = EXCLUDED.predicted_cost, cost_low_80 = EXCLUDED.cost_low_80,
    cost_high_80 = EXCLUDED.cost_high_80, cost_low_95 = EXCLUDED.cost_low_95,
    cost_high_95 = EXCLUDED.cost_high_95, currency = EXCLUDED.currency,
    cost_unavailable = EXCLUDED.cost_unavailable, reason = EXCLUDED.reason,
    reason_detail = EXCLUDED.reason_detail, computed_at = now()"""


def _pair(pair: tuple[Any, Any] | None) -> tuple[Any, Any]:
    return (None, None) if pair is None else pair


async def store_forecast(db: Executor, row: ForecastRow) -> None:
    """Write ``row``, replacing the resource's forecast of the same period."""
    await db.execute(
        _UPSERT,
        row.resource_id,
        row.period_start,
        row.period_end,
        row.as_of,
        row.limit_value,
        row.method,
        row.used_to_date,
        row.predicted_usage,
        *_pair(row.usage_80),
        *_pair(row.usage_95),
        row.coverage_80,
        row.confidence_level,
        row.backtest_origins,
        row.probability_above_limit,
        row.predicted_cost,
        *_pair(row.cost_80),
        *_pair(row.cost_95),
        row.currency,
        row.cost_unavailable,
        row.reason,
        row.reason_detail,
    )


def local_today(tz: ZoneInfo, now: dt.datetime | None = None) -> dt.date:
    """Today's date in the billing time zone."""
    return (now or dt.datetime.now(dt.UTC)).astimezone(tz).date()


#: a stored-forecast alert resolves once the forecast falls below limit x (1 - this)
ALERT_RESOLVE_MARGIN: Final = Decimal("0.05")


async def _refresh_one(
    db: Executor,
    target: ForecastTarget,
    *,
    today: dt.date,
    tz: ZoneInfo,
    money: MoneyPolicy,
    on_alerts: OnAlerts | None,
    metrics: HubMetrics,
) -> ForecastRow:
    history = await daily_history(db, target.id, today=today, tz=tz)
    # ~10-40 ms of CPU per resource: in a worker thread, so that the hub's event loop
    # (the consumer, the REST API) keeps being scheduled during a refresh
    row = await anyio.to_thread.run_sync(
        functools.partial(plan_forecast, target, history, today=today, tz=tz, money=money)
    )
    await store_forecast(db, row)
    changed = await apply_forecast_alert(
        db,
        target,
        target.resource_type,
        row,
        resolve_margin=ALERT_RESOLVE_MARGIN,
        on_alerts=on_alerts,
    )
    for alert_id, record in changed:
        metrics.forecast_alerts.labels(record.status.lower()).inc()
        _log.info(
            "forecast_alert",
            resource_key=target.resource_key,
            alert_id=alert_id,
            status=record.status,
            period_start=row.period_start.isoformat(),
            probability=str(row.probability_above_limit),
        )
    return row


async def refresh(
    db: Executor,
    *,
    tz: ZoneInfo,
    money: MoneyPolicy,
    metrics: HubMetrics,
    today: dt.date | None = None,
    customer_id: str | None = None,
    on_alerts: OnAlerts | None = None,
) -> RefreshSummary:
    """Forecast and store every resource (or ``customer_id``'s) for the current billing month.

    Each stored forecast then raises, keeps or resolves the resource's
    stored-forecast FORECAST_LIMIT alert (:mod:`hub.storage.forecast_alerts`);
    ``on_alerts(conn, [(alert id, record)])`` is called in that alert's
    transaction (the hub writes the CloudEvents to its outbox there).

    A resource whose forecast fails (bad history, a model the pricing refuses, a
    value the table cannot hold, a statement PostgreSQL refuses) is logged and
    counted under ``resmon_hub_forecast_failures_total`` and skipped; the others
    go on. Losing the database altogether raises (UnreachableError / StorageError).
    """
    day = today or local_today(tz)
    targets = await forecast_targets(db, customer_id=customer_id)
    summary = RefreshSummary()
    reasons: Counter[str] = Counter()
    for target in targets:
        try:
            with storage_errors():
                row = await _refresh_one(
                    db,
                    target,
                    today=day,
                    tz=tz,
                    money=money,
                    on_alerts=on_alerts,
                    metrics=metrics,
                )
        except UnreachableError:
            raise
        except Exception as exc:  # one resource's failure never stops the others
            summary.failed[target.resource_key] = str(exc)
            metrics.forecast_failures.labels("resource").inc()
            _log.warning(
                "forecast_failed",
                resource_key=target.resource_key,
                error=str(exc),
                error_type=type(exc).__name__,
            )
            continue
        if row.reason is not None:
            reasons[row.reason] += 1
            metrics.forecasts_none.labels(row.reason).inc()
        else:
            summary.made += 1
            metrics.forecasts_made.inc()
            if row.cost_unavailable is not None:
                metrics.forecast_cost_unavailable.inc()
                _log.info(
                    "forecast_cost_unavailable",
                    resource_key=target.resource_key,
                    reason=row.cost_unavailable,
                )
    summary.no_forecast = dict(reasons)
    _log.info(
        "forecasts_refreshed",
        day=day.isoformat(),
        made=summary.made,
        no_forecast=summary.no_forecast,
        failed=len(summary.failed),
    )
    return summary


async def run_refresh_loop(
    pool: Executor,
    *,
    interval_s: float,
    tz: ZoneInfo,
    money: MoneyPolicy,
    metrics: HubMetrics,
    address: str = "PostgreSQL",
    first_delay_s: float = 60.0,
    on_alerts: OnAlerts | None = None,
) -> None:
    """The hub's scheduled refresh: ``first_delay_s`` after start, then every ``interval_s``.

    The first refresh waits a minute so that it does not compete with a starting
    hub's catch-up on the topic (the stored rows of the last refresh stay served).

    A refresh that cannot reach PostgreSQL is logged, counted
    (``resmon_hub_forecast_failures_total{scope="refresh"}``) and tried again after a
    minute (or the interval, if shorter); it never stops the hub.
    """
    await anyio.sleep(first_delay_s)
    while True:
        try:
            with storage_errors(address):
                await refresh(pool, tz=tz, money=money, metrics=metrics, on_alerts=on_alerts)
        except HubError as exc:
            metrics.forecast_failures.labels("refresh").inc()
            retry = min(60.0, interval_s)
            _log.warning("forecast_refresh_failed", error=str(exc), retry_in_s=retry)
            await anyio.sleep(retry)
            continue
        await anyio.sleep(interval_s)


class StoredForecast(msgspec.Struct, frozen=True, rename="camel", omit_defaults=True):
    """A stored row as REST and the CLI show it (numbers in base units / currency)."""

    resource_key: str
    period_start: dt.date
    period_end: dt.date
    as_of: dt.date
    computed_at: dt.datetime
    forecast: bool
    limit: int | None = None
    method: str | None = None
    used_to_date: int | None = None
    predicted_usage: int | None = None
    usage_interval_80: tuple[int, int] | None = None
    usage_interval_95: tuple[int, int] | None = None
    coverage_80: Decimal | None = None
    confidence_level: Decimal | None = None
    backtest_origins: int | None = None
    probability_above_limit: Decimal | None = None
    currency: str | None = None
    predicted_cost: Decimal | None = None
    cost_interval_80: tuple[Decimal, Decimal] | None = None
    cost_interval_95: tuple[Decimal, Decimal] | None = None
    cost_unavailable: str | None = None
    reason: str | None = None
    reason_detail: str | None = None


def _both(row: Any, low: str, high: str) -> tuple[Any, Any] | None:
    return None if row[low] is None else (row[low], row[high])


def _money(row: Any, column: str) -> Decimal | None:
    """An amount at its currency's minor units (the column keeps 4 places)."""
    if row[column] is None:
        return None
    amount = Decimal(row[column])
    if row["currency"] is None:
        return amount
    return amount.quantize(Decimal(1).scaleb(-minor_units(row["currency"].strip())))


def _money_pair(row: Any, low: str, high: str) -> tuple[Decimal, Decimal] | None:
    pair = _both(row, low, high)
    return None if pair is None else (_money(row, low), _money(row, high))  # type: ignore[return-value]


async def stored_forecasts(
    db: Executor, *, customer_id: str, resource_key: str | None = None
) -> list[StoredForecast]:
    """The customer's newest stored forecast per resource (of its latest period)."""
    known = await db.fetchval("SELECT 1 FROM customers WHERE id = $1", customer_id)
    if not known:
        raise NotFoundError(f"customer {customer_id!r} not found")
    rows = await db.fetch(
        "SELECT DISTINCT ON (cr.resource_key) cr.resource_key, f.* FROM cost_forecasts f "
        "JOIN customer_resources cr ON cr.id = f.customer_resource_id "
        "WHERE cr.customer_id = $1 AND ($2::text IS NULL OR cr.resource_key = $2) "
        "AND f.computed_at IS NOT NULL AND f.as_of IS NOT NULL "
        "ORDER BY cr.resource_key, f.forecast_period_start DESC",
        customer_id,
        resource_key,
    )
    if (
        not rows
        and resource_key is not None
        and not await db.fetchval(
            "SELECT 1 FROM customer_resources WHERE customer_id = $1 AND resource_key = $2",
            customer_id,
            resource_key,
        )
    ):
        raise NotFoundError(f"resource {resource_key!r} not found for customer {customer_id!r}")
    return [
        StoredForecast(
            resource_key=row["resource_key"],
            period_start=row["forecast_period_start"],
            period_end=row["forecast_period_end"],
            as_of=row["as_of"],
            computed_at=row["computed_at"],
            forecast=row["reason"] is None,
            limit=row["limit_value"],
            method=row["method"],
            used_to_date=row["used_to_date"],
            predicted_usage=row["predicted_usage"],
            usage_interval_80=_both(row, "usage_low_80", "usage_high_80"),
            usage_interval_95=_both(row, "usage_low_95", "usage_high_95"),
            coverage_80=row["coverage_80"],
            confidence_level=row["confidence_level"],
            backtest_origins=row["backtest_origins"],
            probability_above_limit=row["probability_above_limit"],
            currency=None if row["currency"] is None else row["currency"].strip(),
            predicted_cost=_money(row, "predicted_cost"),
            cost_interval_80=_money_pair(row, "cost_low_80", "cost_high_80"),
            cost_interval_95=_money_pair(row, "cost_low_95", "cost_high_95"),
            cost_unavailable=row["cost_unavailable"],
            reason=row["reason"],
            reason_detail=row["reason_detail"],
        )
        for row in rows
    ]
