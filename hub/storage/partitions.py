"""Monthly partitions of ``usage_metrics`` and ``processed_events``; retention by dropping them.

Both tables are ``PARTITION BY RANGE`` on the end of an event's interval
(``metric_timestamp``, ``event_at``) with one partition per UTC month
(``usage_metrics_pYYYYMM``, ``processed_events_pYYYYMM``) and a DEFAULT
partition that only catches a month nobody created yet. Before a batch's
writes the consumer calls :func:`ensure_partitions` for the months in it (a
short transaction of its own, under an advisory lock, so two hubs never race
and the batch transaction never takes a lock on a parent table).

Retention drops whole partitions whose month ended more than
``retention_days`` ago (default 90): no ``DELETE`` scan, no bloat; also
those of ``processed_events_legacy`` (the keys claimed before migration
0019, never written since). Raw rows
and dedup records are therefore kept between ``retention_days`` and
``retention_days`` + one month; aggregates are kept forever. An event older
than :func:`retention_horizon_ms` may have lost its dedup record, so the
consumer refuses it (dead letter) rather than risk counting it twice.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

import asyncpg  # type: ignore[import-untyped]
import structlog

from ..calendar import UTC, month_number, month_of, month_of_date, month_start, yyyymm

__all__ = [
    "PARTITIONED",
    "RETIRED",
    "drop_expired_partitions",
    "ensure_partitions",
    "partition_name",
    "retention_horizon_ms",
    "storage_month",
]

#: the tables partitioned by month, each with ``<table>_pYYYYMM`` partitions
PARTITIONED = ("usage_metrics", "processed_events")
#: partitioned the same way but no longer written (no new months): retention only.
#: ``processed_events_legacy`` holds the keys claimed by id alone before migration 0019.
RETIRED = ("processed_events_legacy",)

_log = structlog.get_logger(component="hub.storage.partitions")
_LOCK = 0x7265736D6F6E  # "resmon"


def storage_month(ms: int) -> int:
    """The storage month (UTC, see :mod:`hub.calendar`) of instant ``ms``."""
    return month_of(ms, UTC)


def _start(month: int) -> dt.datetime:
    return month_start(month, UTC)


def partition_name(month: int, table: str = "usage_metrics") -> str:
    return f"{table}_p{yyyymm(month)}"


def retention_horizon_ms(retention_days: int, now: dt.datetime | None = None) -> int:
    """Events ending before this instant (ms) may have had their month dropped.

    A month is dropped once it ended ``retention_days`` ago, so everything
    before the start of the month holding that cutoff can be gone.
    """
    now = now or dt.datetime.now(dt.UTC)
    cutoff = now - dt.timedelta(days=retention_days)
    return int(_start(month_of_date(cutoff.date())).timestamp() * 1000)


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
                   WHERE i.inhparent = ANY($1::regclass[])""",
                list(PARTITIONED),
            )
        }
        for month in missing:
            for table in PARTITIONED:
                name = partition_name(month, table)
                if name in existing:
                    continue
                lo, hi = _lit(_start(month)), _lit(_start(month + 1))
                try:
                    async with conn.transaction():
                        await conn.execute(
                            f'CREATE TABLE "{name}" PARTITION OF {table} '
                            f"FOR VALUES FROM ({lo}) TO ({hi})"
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
           WHERE i.inhparent = ANY($1::regclass[]) AND c.relname ~ '_p[0-9]{6}$'
           ORDER BY c.relname""",
        [*PARTITIONED, *RETIRED],
    )
    dropped = []
    for r in rows:
        name = r["relname"]
        month = month_number(int(name[-6:-2]), int(name[-2:]))
        if _start(month + 1) <= cutoff:
            await conn.execute(f'DROP TABLE IF EXISTS "{name}"')
            dropped.append(name)
            _log.info("partition_dropped", partition=name)
    return dropped
