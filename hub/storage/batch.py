"""The consumer's per-batch writes, all inside ONE PostgreSQL transaction.

The caller opens the transaction and calls, in order:
:func:`claim_events` (dedup by CloudEvent id: ids already in
``processed_events`` are dropped before they reach any total), then
:func:`write_batch` (raw readings by COPY, gaps, dead letters, period totals,
alert transitions, consumed offsets). Kafka offsets are committed only after
the transaction commits; on start the consumer seeks to ``consumer_offsets``,
so PostgreSQL is the source of truth for what was consumed.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable, Sequence

import asyncpg  # type: ignore[import-untyped]
import msgspec

from protocol import UsageGap, UsageReading

from ..alerts.records import AlertRecord

__all__ = [
    "DeadLetter",
    "ReadingRow",
    "TotalRow",
    "claim_events",
    "stored_offsets",
    "write_batch",
]

_UTC = dt.UTC


def _ts(ms: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(ms / 1000, tz=_UTC)


class DeadLetter(msgspec.Struct, frozen=True):
    topic: str
    partition: int
    offset: int
    reason: str
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]]


class ReadingRow(msgspec.Struct, frozen=True):
    resource_id: str
    event_id: str
    reading: UsageReading


class TotalRow(msgspec.Struct, frozen=True):
    resource_id: str
    total: int
    period_start: dt.date | None
    #: the actor's statistics: weight, mean, m2, last_ms, points, first_ms, anchor
    stats: tuple[float, float, float, int, int, int, int] = (0.0, 0.0, 0.0, 0, 0, 0, 0)


async def claim_events(conn: asyncpg.Connection, ids: Sequence[str]) -> set[str]:
    """Record ``ids`` as processed; return those that were not already (the new ones)."""
    if not ids:
        return set()
    rows = await conn.fetch(
        """INSERT INTO processed_events (id) SELECT unnest($1::text[])
           ON CONFLICT (id) DO NOTHING RETURNING id""",
        list(ids),
    )
    return {r["id"] for r in rows}


def _metadata(r: UsageReading | UsageGap) -> str | None:
    meta = {
        k: v
        for k, v in (
            ("device", r.device),
            ("interface", r.interface),
            ("direction", r.direction),
            ("tenantId", r.tenant_id),
        )
        if v is not None
    }
    return json.dumps(meta) if meta else None


async def write_batch(
    conn: asyncpg.Connection,
    *,
    group: str,
    readings: Sequence[ReadingRow],
    gaps: Sequence[tuple[str, UsageGap]],
    dead: Sequence[DeadLetter],
    totals: Sequence[TotalRow],
    alerts: Sequence[AlertRecord],
    offsets: Iterable[tuple[str, int, int]],
) -> list[str]:
    """Write one batch; return the ids of the alert rows inserted, in ``alerts`` order."""
    if readings:
        await conn.copy_records_to_table(
            "usage_metrics",
            columns=[
                "customer_resource_id",
                "event_id",
                "metric_start",
                "metric_timestamp",
                "metric_value",
                "metric_unit",
                "kind",
                "source",
                "metadata",
            ],
            records=[
                (
                    r.resource_id,
                    r.event_id,
                    _ts(r.reading.start_ms),
                    _ts(r.reading.end_ms),
                    r.reading.value,
                    r.reading.unit,
                    r.reading.kind,
                    r.reading.source,
                    _metadata(r.reading),
                )
                for r in readings
            ],
        )
    if gaps:
        await conn.executemany(
            """INSERT INTO usage_gaps (event_id, customer_id, resource_key, resource_type,
                   gap_start, gap_end, reason, source, detail, metadata)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10::jsonb)
               ON CONFLICT (event_id) DO NOTHING""",
            [
                (
                    eid,
                    g.customer_id,
                    g.resource_key,
                    g.resource_type,
                    _ts(g.start_ms),
                    _ts(g.end_ms),
                    g.reason,
                    g.source,
                    g.detail,
                    _metadata(g),
                )
                for eid, g in gaps
            ],
        )
    if dead:
        await conn.executemany(
            """INSERT INTO dead_letters (topic, partition, kafka_offset, reason, record_key,
                   record_value, headers)
               VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb)
               ON CONFLICT (topic, partition, kafka_offset) DO NOTHING""",
            [
                (
                    d.topic,
                    d.partition,
                    d.offset,
                    d.reason,
                    d.key,
                    d.value,
                    json.dumps([[k, v.decode("utf-8", "replace")] for k, v in d.headers]),
                )
                for d in dead
            ],
        )
    if totals:
        cols = list(zip(*(t.stats for t in totals), strict=True))
        await conn.execute(
            """UPDATE customer_resources cr SET current_usage = u.total, period_start = u.ps,
                   stat_weight = u.w, stat_mean = u.mean, stat_m2 = u.m2, stat_last_ms = u.lm,
                   stat_points = u.pts, stat_first_ms = u.fm, stat_anchor = u.anchor,
                   updated_at = now()
               FROM unnest($1::uuid[], $2::bigint[], $3::date[], $4::float8[], $5::float8[],
                           $6::float8[], $7::bigint[], $8::int[], $9::bigint[], $10::bigint[])
                    AS u(id, total, ps, w, mean, m2, lm, pts, fm, anchor)
               WHERE cr.id = u.id""",
            [t.resource_id for t in totals],
            [t.total for t in totals],
            [t.period_start for t in totals],
            *[list(c) for c in cols],
        )
    alert_ids = [await _write_alert(conn, a) for a in alerts]
    await conn.executemany(
        """INSERT INTO consumer_offsets (consumer_group, topic, partition, next_offset)
           VALUES ($1, $2, $3, $4)
           ON CONFLICT (consumer_group, topic, partition) DO UPDATE
           SET next_offset = GREATEST(consumer_offsets.next_offset, EXCLUDED.next_offset),
               updated_at = now()""",
        [(group, topic, partition, offset) for topic, partition, offset in offsets],
    )
    return alert_ids


_CLOSE = """UPDATE alerts SET status = 'RESOLVED', resolved_at = now(), resolution = $2,
               resolved_by = 'hub'
           WHERE customer_resource_id = $1::uuid AND status <> 'RESOLVED' AND {family}
           RETURNING id::text"""
#: close the open episode of one family (threshold / anomaly / forecast)
_CLOSE_FAMILY = {
    "threshold": _CLOSE.format(family="alert_type LIKE 'THRESHOLD\\_%'"),
    "anomaly": _CLOSE.format(family="alert_type = 'ANOMALY_DETECTED'"),
    "forecast": _CLOSE.format(family="alert_type = 'FORECAST_LIMIT'"),
}


async def _write_alert(conn: asyncpg.Connection, a: AlertRecord) -> str:
    resolution = "recovered" if a.status == "RESOLVED" else "escalated"
    closed = await conn.fetchval(
        _CLOSE_FAMILY[a.check],
        a.resource_id,
        resolution,
    )
    if a.status == "RESOLVED":
        # the episode's row, if one was open (a manual resolve may have closed it already)
        return str(closed) if closed is not None else ""
    alert_id = await conn.fetchval(
        """INSERT INTO alerts (customer_resource_id, alert_type, severity, message,
               current_value, threshold_value, unit, status, z_score, forecast_at, confidence)
           VALUES ($1::uuid, $2, $3, $4, $5, $6, $7, 'ACTIVE', $8, $9, $10) RETURNING id::text""",
        a.resource_id,
        a.alert_type,
        a.severity,
        a.message,
        a.current_value,
        a.threshold_value,
        a.unit,
        a.z_score,
        _ts(a.forecast_ms) if a.forecast_ms else None,
        a.confidence,
    )
    return str(alert_id)


async def stored_offsets(
    conn: asyncpg.Connection | asyncpg.Pool, group: str, topic: str
) -> dict[int, int]:
    """partition -> next offset recorded for ``group`` on ``topic``."""
    rows = await conn.fetch(
        "SELECT partition, next_offset FROM consumer_offsets "
        "WHERE consumer_group = $1 AND topic = $2",
        group,
        topic,
    )
    return {int(r["partition"]): int(r["next_offset"]) for r in rows}
