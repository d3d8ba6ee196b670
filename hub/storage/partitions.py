"""Monthly partitions of ``usage_metrics`` and retention by dropping them.

``usage_metrics`` is ``PARTITION BY RANGE (metric_timestamp)`` with one
partition per UTC month (``usage_metrics_pYYYYMM``) and a DEFAULT partition
that only catches a month nobody created yet. Before a batch's COPY the
consumer calls :func:`ensure_partitions` for the months in it (a short
transaction of its own, under an advisory lock, so two hubs never race and
the batch transaction never takes a lock on the parent table).

Retention drops whole partitions whose month ended more than
``retention_days`` ago (default 90): no ``DELETE`` scan, no bloat. Raw rows
are therefore kept between ``retention_days`` and ``retention_days`` + one
month; aggregates are kept forever.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

import asyncpg  # type: ignore[import-untyped]
import structlog

__all__ = ["drop_expired_partitions", "ensure_partitions", "month_of", "partition_name"]

_log = structlog.get_logger("hub.storage.partitions")
_LOCK = 0x7265736D6F6E  # "resmon"


def month_of(ms: int) -> int:
    """UTC month of instant ``ms`` as ``year * 12 + month - 1``."""
    d = dt.datetime.fromtimestamp(ms / 1000, tz=dt.UTC)
    return d.year * 12 + d.month - 1


def _start(month: int) -> dt.datetime:
    return dt.datetime(month // 12, month % 12 + 1, 1, tzinfo=dt.UTC)


def partition_name(month: int) -> str:
    return f"usage_metrics_p{month // 12:04d}{month % 12 + 1:02d}"


async def ensure_partitions(pool: asyncpg.Pool, months: Iterable[int], known: set[int]) -> None:
    """Create the partitions of ``months`` not in ``known`` (updated in place)."""
    missing = sorted(set(months) - known)
    if not missing:
        return
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", _LOCK)
        existing = {
            r["relname"]
            for r in await conn.fetch(
                """SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
                   WHERE i.inhparent = 'usage_metrics'::regclass"""
            )
        }
        for month in missing:
            name = partition_name(month)
            if name not in existing:
                try:
                    async with conn.transaction():
                        await conn.execute(
                            f'CREATE TABLE "{name}" PARTITION OF usage_metrics '
                            "FOR VALUES FROM ($1) TO ($2)".replace(
                                "$1", _lit(_start(month))
                            ).replace("$2", _lit(_start(month + 1)))
                        )
                    _log.info("partition_created", partition=name)
                except asyncpg.PostgresError as exc:  # rows of that month sit in DEFAULT
                    _log.warning("partition_not_created", partition=name, error=str(exc))
            known.add(month)


def _lit(when: dt.datetime) -> str:
    return f"'{when.isoformat()}'"


async def drop_expired_partitions(
    conn: asyncpg.Connection | asyncpg.Pool, retention_days: int, now: dt.datetime | None = None
) -> list[str]:
    """Drop the monthly partitions that ended more than ``retention_days`` ago."""
    now = now or dt.datetime.now(dt.UTC)
    cutoff = now - dt.timedelta(days=retention_days)
    rows = await conn.fetch(
        """SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
           WHERE i.inhparent = 'usage_metrics'::regclass AND c.relname ~ '^usage_metrics_p[0-9]{6}$'
           ORDER BY c.relname"""
    )
    dropped = []
    for r in rows:
        name = r["relname"]
        month = int(name[-6:-2]) * 12 + int(name[-2:]) - 1
        if _start(month + 1) <= cutoff:
            await conn.execute(f'DROP TABLE IF EXISTS "{name}"')
            dropped.append(name)
            _log.info("partition_dropped", partition=name)
    return dropped
