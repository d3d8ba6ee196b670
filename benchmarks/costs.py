"""Cost breakdown benchmark for ``resmon bench``: closing a month for 10,000 resources.

A fresh PostgreSQL database (``DATABASE_URL``, or an embedded server when
unset) gets 10,000 resources (1,000 with ``--quick``) with a March 2026 month
bucket each: a third billed at the catalog's price per GB, a third on a plan
of base cost + overage above a limit, a third on graduated tiers. The figure
is the rate at which :func:`hub.storage.costs.close_periods` computes and
stores their breakdowns (read the model and the bucket, price, write the bill
and the bucket's cost). The baseline is the pricing alone, the same models and
usage with no PostgreSQL: the ceiling the storage work is set against.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from zoneinfo import ZoneInfo

import anyio
import asyncpg  # type: ignore[import-untyped]

from hub.costs import MoneyPolicy, Period, Volume, price
from hub.storage import migrate
from hub.storage.costs import close_periods, cost_targets, period_of
from hub.storage.provision import DEFAULT_TENANT

from .hub_e2e import _servers
from .runner import Figure

__all__ = ["suite"]

_UTC = ZoneInfo("UTC")
_MARCH = 2026 * 12 + 2
_TIERS = {
    "usage": {
        "type": "tiered",
        "mode": "graduated",
        "tiers": [
            {"upTo": 100, "unitPrice": "0.10"},
            {"upTo": 1000, "unitPrice": "0.08", "flatPrice": "5"},
            {"unitPrice": "0.05"},
        ],
    }
}


async def _history(db: asyncpg.Connection, prefix: str, n: int) -> None:
    plan = await db.fetchval(
        "INSERT INTO cost_models (tenant_id, model_name, billing_period, base_cost, "
        "overage_rate) VALUES ($1, 'bench plan', 'monthly', 49.99, 0.015) RETURNING id",
        DEFAULT_TENANT,
    )
    tiers = await db.fetchval(
        "INSERT INTO cost_models (tenant_id, model_name, billing_period, pricing) "
        "VALUES ($1, 'bench tiers', 'monthly', $2::jsonb) RETURNING id",
        DEFAULT_TENANT,
        json.dumps(_TIERS),
    )
    await db.execute(
        "INSERT INTO customers (id, tenant_id) SELECT $1 || g, $2::uuid "
        "FROM generate_series(0, $3 - 1) g",
        prefix,
        DEFAULT_TENANT,
        n,
    )
    await db.execute(
        """INSERT INTO customer_resources (customer_id, resource_catalog_id, resource_key, kind,
               limit_value, cost_model_id)
           SELECT $1 || g, (SELECT id FROM resource_catalogs WHERE resource_type = 'bandwidth'
                            ORDER BY created_at, resource_name LIMIT 1),
                  $1 || g || '/bandwidth', 'delta', 1000000000000,
                  CASE g % 3 WHEN 1 THEN $3::uuid WHEN 2 THEN $4::uuid END
           FROM generate_series(0, $2 - 1) g""",
        prefix,
        n,
        plan,
        tiers,
    )
    # a month bucket each: up to ~2 TB, different for every resource
    await db.execute(
        """INSERT INTO usage_aggregates (customer_resource_id, period_type, period_start,
               period_end, min_usage, max_usage, total_usage, sample_count, avg_usage,
               unit_factor, cost_per_unit, cost)
           SELECT cr.id, 'month', '2026-03-01T00:00:00Z', '2026-04-01T00:00:00Z', 0, 0, u.total,
                  744, round(u.total / 744, 4), 1000000000, 0.10,
                  round(u.total / 1000000000 * 0.10, 4)
           FROM customer_resources cr,
                LATERAL (SELECT (hashtext(cr.resource_key)::bigint & 2047) * 1000000000
                                + length(cr.resource_key) * 12345 AS total) u
           WHERE cr.customer_id LIKE $1 || '%'""",
        prefix,
    )


async def _run(quick: bool) -> list[Figure]:
    n = 1_000 if quick else 10_000
    cmd = "resmon bench --only costs" + (" --quick" if quick else "")
    money = MoneyPolicy()
    after = int(dt.datetime(2026, 4, 2, tzinfo=dt.UTC).timestamp() * 1000)
    async with _servers() as (dsn, _redis, _kafka):
        await migrate(dsn)
        db = await asyncpg.connect(dsn)
        try:
            await _history(db, "bench", n)
            t = time.perf_counter()
            closed = await close_periods(db, tz=_UTC, money=money, now_ms=after)
            took = time.perf_counter() - t
            if len(closed) != n:
                raise RuntimeError(f"closed {len(closed)} periods, expected {n}")
            # the baseline's inputs: each resource's model and March total, read up front
            totals = {
                r["key"]: int(r["total_usage"])
                for r in await db.fetch(
                    "SELECT cr.resource_key AS key, a.total_usage FROM usage_aggregates a "
                    "JOIN customer_resources cr ON cr.id = a.customer_resource_id"
                )
            }
            targets = []
            for i in range(n):
                targets.extend(await cost_targets(db, customer_id=f"bench{i}"))
        finally:
            await db.close()
    period: Period = period_of(targets[0], _MARCH, _UTC)
    t = time.perf_counter()
    for target in targets:
        price(
            target.model,
            Volume(totals[target.resource_key], target.unit),
            period=period,
            money=money,
            limit_base=target.limit_value,
        )
    pure = len(targets) / (time.perf_counter() - t)
    return [
        Figure(
            suite="costs",
            name=f"closed-month breakdowns computed and stored, {n:,} resources",
            value=n / took,
            unit="breakdowns/s",
            command=cmd,
            baseline_name="pricing alone (hub.costs.price, no PostgreSQL)",
            baseline_value=pure,
            notes=f"{took:.1f} s for the month; a third each per-unit, base + overage, "
            "graduated tiers",
        )
    ]


def suite(quick: bool) -> list[Figure]:
    return anyio.run(_run, quick)
