"""Recommendation job benchmark for ``resmon bench``: 10,000 resources, 30 days each.

A fresh PostgreSQL database (``DATABASE_URL``, or an embedded server when
unset) gets 10,000 bandwidth resources (1,000 with ``--quick``) on the largest
of three plans of their catalog, created 60 days ago, each with 30 day
buckets of ``usage_aggregates`` (300,000 rows) whose sizes differ per
resource, so that some are resized down, some are idle and some keep their
plan. The figure is the time of one :func:`hub.storage.recommendations.run`
over all of them (target: under 60 s); the baseline is the engine alone
(:func:`hub.costs.recommend.recommend` on the same histories, no PostgreSQL).
"""

from __future__ import annotations

import time
from decimal import Decimal
from zoneinfo import ZoneInfo

import anyio
import asyncpg  # type: ignore[import-untyped]

from hub.costs import MoneyPolicy, plan_model
from hub.costs.recommend import Plan, RecommendSettings, ResourceHistory, recommend
from hub.metrics import HubMetrics
from hub.storage import migrate, recommendations
from hub.storage.provision import DEFAULT_TENANT

from .hub_e2e import _servers
from .runner import Figure

__all__ = ["suite"]

_GB = 10**9
#: (name, base cost, limit GB); 0.50 per GB above the limit
_PLANS = (("small", 20, 100), ("medium", 50, 300), ("large", 90, 1000))


async def _history(db: asyncpg.Connection, n: int) -> None:
    catalog = await db.fetchval(
        "SELECT id FROM resource_catalogs WHERE resource_type = 'bandwidth' "
        "ORDER BY created_at, resource_name LIMIT 1"
    )
    ids = {}
    for name, base, limit in _PLANS:
        ids[name] = await db.fetchval(
            "INSERT INTO cost_models (tenant_id, model_name, billing_period, base_cost, "
            "overage_rate, resource_catalog_id, limit_value) VALUES ($1, $2, 'monthly', $3, "
            "0.50, $4, $5) RETURNING id",
            DEFAULT_TENANT,
            name,
            base,
            catalog,
            limit * _GB,
        )
    await db.execute(
        "INSERT INTO customers (id, tenant_id) SELECT 'bench' || g, $1::uuid "
        "FROM generate_series(0, $2 - 1) g",
        DEFAULT_TENANT,
        n,
    )
    await db.execute(
        """INSERT INTO customer_resources (customer_id, resource_catalog_id, resource_key, kind,
               limit_value, cost_model_id, created_at)
           SELECT 'bench' || g, $1, 'bench' || g || '/bandwidth', 'delta', $2, $3,
                  now() - interval '60 days'
           FROM generate_series(0, $4 - 1) g""",
        catalog,
        1000 * _GB,
        ids["large"],
        n,
    )
    # 0 to 40 GB a day depending on the resource, varying by day
    await db.execute(
        """INSERT INTO usage_aggregates (customer_resource_id, period_type, period_start,
               period_end, min_usage, max_usage, total_usage, sample_count)
           SELECT cr.id, 'day', d, d + interval '1 day', 0, u.v, u.v, 24
           FROM customer_resources cr,
                generate_series(date_trunc('day', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'
                                - interval '30 days',
                                date_trunc('day', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'
                                - interval '1 day', interval '1 day') d,
                LATERAL (SELECT ((hashtext(cr.resource_key)::bigint & 63) % 41
                                 + (extract(day FROM d)::int % 3)) * 1000000000 AS v) u
           WHERE cr.customer_id LIKE 'bench%'"""
    )


def _pure(n: int) -> float:
    """Seconds the engine alone takes for ``n`` histories like the database's."""
    plans = [
        Plan(
            plan_id=name,
            model=plan_model("monthly", Decimal(base), Decimal("0.50")),
            limit_base=limit * _GB,
        )
        for name, base, limit in _PLANS
    ]
    histories = [
        ResourceHistory(
            customer_id=f"bench{i}",
            resource_key=f"bench{i}/bandwidth",
            resource_type="bandwidth",
            unit="GB",
            kind="delta",
            plan=plans[2],
            daily=[((i * 7919) % 41 + day % 3) * _GB for day in range(30)],
        )
        for i in range(n)
    ]
    settings, money = RecommendSettings(), MoneyPolicy()
    t = time.perf_counter()
    for history in histories:
        recommend(history, plans, settings=settings, money=money)
    return time.perf_counter() - t


async def _run(quick: bool) -> list[Figure]:
    n = 1_000 if quick else 10_000
    cmd = "resmon bench --only recommend" + (" --quick" if quick else "")
    async with _servers() as (dsn, _redis, _kafka):
        await migrate(dsn)
        db = await asyncpg.connect(dsn)
        try:
            await _history(db, n)
            t = time.perf_counter()
            result = await recommendations.run(
                db,
                settings=RecommendSettings(),
                money=MoneyPolicy(),
                tz=ZoneInfo("UTC"),
                now_ms=time.time_ns() // 1_000_000,
                metrics=HubMetrics(),
            )
            took = time.perf_counter() - t
        finally:
            await db.close()
    if result.resources != n or result.failed:
        raise RuntimeError(f"assessed {result.resources} resources ({result.failed} failed)")
    pure = _pure(n)
    return [
        Figure(
            suite="recommend",
            name=f"daily recommendation job, {n:,} resources x 30 days",
            value=took,
            unit="s",
            command=cmd,
            higher_is_better=False,
            target=60.0,
            baseline_name="the engine alone (hub.costs.recommend, no PostgreSQL)",
            baseline_value=pure,
            notes=f"{len(result.created):,} recommendations stored",
        )
    ]


def suite(quick: bool) -> list[Figure]:
    return anyio.run(_run, quick)
