"""Raw usage lives in monthly partitions; retention drops whole months."""

from __future__ import annotations

import datetime as dt

import asyncpg  # type: ignore[import-untyped]
import pytest

from hub import provision_resource
from hub.storage.partitions import drop_expired_partitions, ensure_partitions, month_of

pytestmark = [pytest.mark.integration, pytest.mark.anyio]


async def test_retention_drops_months_older_than_90_days_and_keeps_the_rest(
    db: asyncpg.Connection, hub_config: object, unique: str
) -> None:
    key = await provision_resource(db, f"c-{unique}", "bandwidth", None)
    rid = await db.fetchval("SELECT id FROM customer_resources WHERE resource_key = $1", key)
    pool = await asyncpg.create_pool(hub_config.database_url, min_size=1, max_size=2)  # type: ignore[attr-defined]
    try:
        months = [dt.datetime(2026, m, 15, tzinfo=dt.UTC) for m in (6, 7, 8, 9, 10, 11)]
        known: set[int] = set()
        await ensure_partitions(pool, [month_of(int(m.timestamp() * 1000)) for m in months], known)
        await db.executemany(
            """INSERT INTO usage_metrics (customer_resource_id, event_id, metric_start,
                   metric_timestamp, metric_value, metric_unit, kind)
               VALUES ($1, $2, $3, $3, 1, 'byte', 'delta')""",
            [(rid, f"e{i}", m) for i, m in enumerate(months)],
        )
        # nothing landed in the DEFAULT partition: every month had its own
        assert await db.fetchval("SELECT count(*) FROM usage_metrics_default") == 0
        now = dt.datetime(2026, 11, 28, tzinfo=dt.UTC)
        dropped = await drop_expired_partitions(db, 90, now)
        # August ended 2026-09-01, 88 days before: kept; July and June: gone
        assert dropped == ["usage_metrics_p202606", "usage_metrics_p202607"]
        assert await db.fetchval("SELECT count(*) FROM usage_metrics") == 4
        assert await drop_expired_partitions(db, 90, now) == []
    finally:
        await pool.close()
