"""Time the stored-forecast refresh (``hub.storage.forecasts.refresh``) on PostgreSQL.

Creates a scratch database next to ``--dsn``'s, gives ``--resources`` bandwidth
resources ``--days`` of daily buckets each (a weekday profile with seeded 5 %
noise), times one refresh of all of them and drops the database:

    .venv/bin/python -m benchmarks.forecast_refresh --dsn postgresql://postgres@127.0.0.1:5432/test
"""

from __future__ import annotations

import datetime as dt
import random
import time
import uuid
from zoneinfo import ZoneInfo

import anyio
import asyncpg  # type: ignore[import-untyped]
import click

from hub import migrate, provision_resource
from hub.costs import MoneyPolicy
from hub.metrics import HubMetrics
from hub.storage.forecasts import refresh

AS_OF = dt.date(2026, 3, 15)
PROFILE = (1.0, 1.05, 1.0, 0.95, 0.9, 0.6, 0.7)  # Monday first


async def _run(dsn: str, resources: int, days: int) -> str:
    first = AS_OF - dt.timedelta(days=days)
    conn = await asyncpg.connect(dsn)
    try:
        for i in range(resources):
            key = await provision_resource(conn, f"bench-{i:05d}", "bandwidth", 10**13)
            rid = await conn.fetchval(
                "SELECT id FROM customer_resources WHERE resource_key=$1", key
            )
            rng = random.Random(i)
            rows = []
            for n in range(days):
                day = first + dt.timedelta(days=n)
                start = dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC)
                total = int(2 * 10**11 * PROFILE[day.weekday()] * rng.gauss(1.0, 0.05))
                rows.append((rid, start, start + dt.timedelta(days=1), total))
            await conn.executemany(
                "INSERT INTO usage_aggregates (customer_resource_id, period_type, period_start, "
                "period_end, total_usage) VALUES ($1, 'day', $2, $3, $4)",
                rows,
            )
        began = time.perf_counter()
        summary = await refresh(
            conn, tz=ZoneInfo("UTC"), money=MoneyPolicy(), metrics=HubMetrics(), today=AS_OF
        )
        took = time.perf_counter() - began
    finally:
        await conn.close()
    return (
        f"{resources} resources x {days} days: refresh {took:.2f} s, "
        f"{took / resources * 1000:.1f} ms per resource (stored {summary.made}, "
        f"no forecast {summary.no_forecast}, failed {len(summary.failed)})"
    )


@click.command()
@click.option("--dsn", required=True, help="a PostgreSQL database to create the scratch one from")
@click.option("--resources", default=200, show_default=True)
@click.option("--days", default=134, show_default=True, help="days of history per resource")
def main(dsn: str, resources: int, days: int) -> None:
    base, _, _ = dsn.rpartition("/")
    name = f"resmon_bench_{uuid.uuid4().hex[:10]}"

    async def run() -> str:
        admin = await asyncpg.connect(dsn)
        await admin.execute(f'CREATE DATABASE "{name}"')
        try:
            await migrate(f"{base}/{name}")
            return await _run(f"{base}/{name}", resources, days)
        finally:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            await admin.close()

    click.echo(anyio.run(run))


if __name__ == "__main__":
    main()
