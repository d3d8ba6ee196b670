"""Migrations: applied once, idempotent, concurrent-safe, refuse edited files."""

from __future__ import annotations

import anyio
import asyncpg  # type: ignore[import-untyped]
import pytest

from hub import MigrationError, migrate
from hub.storage import load_migrations

pytestmark = [pytest.mark.integration, pytest.mark.anyio]


async def test_migrations_apply_once_and_seed_the_default_catalog(pg_dsn: str) -> None:
    with anyio.fail_after(30):
        first = await migrate(pg_dsn)
        second = await migrate(pg_dsn)
        assert first == [m.version for m in load_migrations()]
        assert second == []
        conn = await asyncpg.connect(pg_dsn)
        try:
            rows = await conn.fetch(
                "SELECT resource_type, resource_name, unit, cost_per_unit "
                "FROM resource_catalogs ORDER BY resource_name"
            )
            tables = {
                r["tablename"]
                for r in await conn.fetch(
                    "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
                )
            }
        finally:
            await conn.close()
    assert [(r["resource_name"], r["unit"], str(r["cost_per_unit"])) for r in rows] == [
        ("API Requests", "request", "0.0010"),
        ("CPU Hours", "hour", "0.0500"),
        ("Cloud Storage 1TB", "GB", "0.0500"),
        ("Internet 100Mbps", "GB", "0.1000"),
        ("Internet 500Mbps", "GB", "0.0800"),
        ("Memory", "GB", "0.0000"),
    ]
    assert {
        "resource_catalogs",
        "customer_resources",
        "usage_metrics",
        "usage_aggregates",
        "alerts",
        "cost_models",
        "cost_forecasts",
        "tenants",
        "customers",
        "processed_events",
        "consumer_offsets",
        "dead_letters",
        "usage_gaps",
        "schema_migrations",
    } <= tables


async def test_concurrent_runs_apply_each_migration_once(pg_dsn: str) -> None:
    results: list[list[int]] = []

    async def run() -> None:
        results.append(await migrate(pg_dsn))

    with anyio.fail_after(30):
        async with anyio.create_task_group() as tg:
            for _ in range(4):
                tg.start_soon(run)
    applied = sorted(v for r in results for v in r)
    assert applied == [m.version for m in load_migrations()]


async def test_an_edited_applied_migration_is_refused(pg_dsn: str) -> None:
    with anyio.fail_after(30):
        await migrate(pg_dsn)
        conn = await asyncpg.connect(pg_dsn)
        try:
            await conn.execute("UPDATE schema_migrations SET checksum = 'x' WHERE version = 1")
        finally:
            await conn.close()
        with pytest.raises(MigrationError, match="changed after it was applied"):
            await migrate(pg_dsn)


async def test_unreachable_database_names_host_and_variable() -> None:
    from hub import UnreachableError

    with (
        anyio.fail_after(30),
        pytest.raises(UnreachableError, match=r"127\.0\.0\.1:1 .*DATABASE_URL"),
    ):
        await migrate("postgresql://nobody@127.0.0.1:1/x", address="127.0.0.1:1")
