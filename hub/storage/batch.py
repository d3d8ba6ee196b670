"""The consumer's per-batch writes, all inside ONE PostgreSQL transaction.

The caller opens the transaction and calls, in order:
:func:`advance_offsets` (fencing: the batch's consumed offsets move only if
PostgreSQL still holds the offsets the batch started from, else
:class:`~hub.FencedError` and nothing is written), :func:`claim_events`
(dedup by CloudEvent identity, source and id, as :func:`event_key`: events
already in ``processed_events`` are dropped before they reach any total), then
:func:`write_batch` (raw readings by COPY, gaps, dead letters, period totals,
alert transitions). Totals are written compare-and-set too, over the
``total_version`` each actor was loaded with: a second fence, per resource, for
an actor left resident from an earlier ownership of its partition. Kafka
offsets are committed only after the transaction commits; on start the
consumer seeks to ``consumer_offsets``, so PostgreSQL is the source of truth
for what was consumed.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import uuid
from collections.abc import Sequence

import asyncpg  # type: ignore[import-untyped]
import msgspec

from protocol import UsageGap, UsageReading

from .._exceptions import FencedError
from ..alerts.records import AlertRecord
from ..checks.stats import Stats
from ._literals import array_literal

__all__ = [
    "DeadLetter",
    "OffsetMove",
    "ReadingRow",
    "TotalRow",
    "advance_offsets",
    "claim_events",
    "event_key",
    "legacy_cutover_ms",
    "reset_offset",
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
    #: as the Kafka client gives them: a header may have no value (None)
    headers: list[tuple[str, bytes | None]]


class ReadingRow(msgspec.Struct, frozen=True):
    resource_id: str
    event_id: str
    reading: UsageReading
    #: the CloudEvents source: with ``event_id`` the event's identity
    event_source: str


class TotalRow(msgspec.Struct, frozen=True):
    resource_id: str
    total: int
    period_start: dt.date | None
    #: the actor's statistics after the batch (see :mod:`hub.checks.stats`)
    stats: Stats = Stats()
    #: ``total_version`` the actor built on: the row is written only if it still holds it
    version: int = 0
    #: the Kafka partition the resource's readings came from (named if fenced)
    partition: int = -1
    key: str = ""


class OffsetMove(msgspec.Struct, frozen=True):
    """A partition's consumed offset moving from ``expected`` (None: no row yet) to ``next``."""

    topic: str
    partition: int
    expected: int | None
    next: int


_ADVANCE = """UPDATE consumer_offsets c SET next_offset = GREATEST(c.next_offset, u.o),
                  updated_at = now()
              FROM unnest($2::text[], $3::int[], $4::bigint[], $5::bigint[]) AS u(t, p, e, o)
              WHERE c.consumer_group = $1 AND c.topic = u.t AND c.partition = u.p
                AND c.next_offset = u.e
              RETURNING c.partition, c.next_offset"""
_FIRST = """INSERT INTO consumer_offsets (consumer_group, topic, partition, next_offset)
            SELECT $1, t, p, o FROM unnest($2::text[], $3::int[], $4::bigint[]) AS u(t, p, o)
            ON CONFLICT (consumer_group, topic, partition) DO NOTHING
            RETURNING partition, next_offset"""


async def advance_offsets(
    conn: asyncpg.Connection, group: str, moves: Sequence[OffsetMove]
) -> dict[int, int]:
    """Move the consumed offsets of a batch, compare-and-set; return partition -> stored.

    Call first in the batch's transaction: the rows stay locked until it
    ends, so a second instance working on the same partitions waits here and
    then finds the offsets moved. A partition whose stored offset is not the
    one the batch started from raises :class:`~hub.FencedError`: another
    instance applied records this one has not seen, and this instance's
    in-memory totals for those partitions are stale.
    """
    stored: dict[int, int] = {}
    known = [m for m in moves if m.expected is not None]
    if known:
        for r in await conn.fetch(
            _ADVANCE,
            group,
            [m.topic for m in known],
            [m.partition for m in known],
            [m.expected for m in known],
            [m.next for m in known],
        ):
            stored[int(r["partition"])] = int(r["next_offset"])
    first = [m for m in moves if m.expected is None]
    if first:
        for r in await conn.fetch(
            _FIRST,
            group,
            [m.topic for m in first],
            [m.partition for m in first],
            [m.next for m in first],
        ):
            stored[int(r["partition"])] = int(r["next_offset"])
    fenced = sorted(m.partition for m in moves if m.partition not in stored)
    if fenced:
        raise FencedError(fenced)
    return stored


def event_key(source: str, event_id: str) -> bytes:
    """The dedup key of a CloudEvent: a 16-byte digest of its ``source`` and ``id``.

    The CloudEvents identity of an event is the pair: two producers may use
    the same id. The event id never holds NUL (see
    :func:`hub.consumer.validate_event_id`), so the last NUL of the digested
    bytes separates the two and no other pair gives the same input. Fixed
    width keeps the ``processed_events`` index small however long the two are
    (the reasoning and figures are in migration 0019).
    """
    return hashlib.blake2b(
        b"%s\x00%s" % (source.encode(), event_id.encode()),
        digest_size=16,
        person=b"resmon-dedup",
    ).digest()


_CLAIM = """INSERT INTO processed_events (event_key, event_at)
            SELECT k, 'epoch'::timestamptz + ms * interval '1 millisecond'
            FROM unnest($1::bytea[], $2::bigint[]) AS u(k, ms)
            ON CONFLICT (event_key, event_at) DO NOTHING RETURNING event_key"""
#: the same, but an event that also has its bare id (its time is at or before the
#: cutover of migration 0019) is new only if the keys claimed before it lack that id
_CLAIM_LEGACY = """INSERT INTO processed_events (event_key, event_at)
                   SELECT k, at FROM (
                       SELECT k, legacy, 'epoch'::timestamptz + ms * interval '1 millisecond'
                       FROM unnest($1::bytea[], $2::bigint[], $3::text[]) AS u(k, ms, legacy)
                   ) AS u(k, legacy, at)
                   WHERE legacy IS NULL OR NOT EXISTS (
                       SELECT 1 FROM processed_events_legacy l
                       WHERE l.id = u.legacy AND l.event_at = u.at)
                   ON CONFLICT (event_key, event_at) DO NOTHING RETURNING event_key"""


async def claim_events(
    conn: asyncpg.Connection,
    events: Sequence[tuple[bytes, str, int]],
    *,
    legacy_until_ms: int | None = None,
) -> set[bytes]:
    """Record events as processed; return the keys that were not already (the new ones).

    ``events`` are (:func:`event_key`, CloudEvent id, interval end in ms): the
    end places the record in its month's partition, where a redelivery of the
    same event lands too. An event ending at or before ``legacy_until_ms``
    (see :func:`legacy_cutover_ms`) may have been claimed by id alone before
    migration 0019, so it is new only if that id and end are not there either.
    """
    if not events:
        return set()
    if legacy_until_ms is None or all(e[2] > legacy_until_ms for e in events):
        rows = await conn.fetch(_CLAIM, [e[0] for e in events], [e[2] for e in events])
    else:
        rows = await conn.fetch(
            _CLAIM_LEGACY,
            [e[0] for e in events],
            [e[2] for e in events],
            [e[1] if e[2] <= legacy_until_ms else None for e in events],
        )
    return {bytes(r["event_key"]) for r in rows}


async def legacy_cutover_ms(conn: asyncpg.Connection | asyncpg.Pool) -> int | None:
    """The latest event time a key claimed by id alone (before migration 0019) can have.

    None when there are no such keys (a database created at 0019 or later).
    """
    until = await conn.fetchval("SELECT legacy_until FROM dedup_cutover")
    return None if until is None else int(until.timestamp() * 1000)


def _text(value: str) -> str:
    """``value`` as PostgreSQL text and jsonb accept it: NUL (which neither can hold) as U+FFFD.

    Dead letters keep a record's raw bytes (``record_key``/``record_value``);
    this only applies to the readable copies, so burying a record never fails.
    """
    return value.replace("\x00", "\ufffd") if "\x00" in value else value


def _header_text(value: bytes | None) -> str | None:
    """A header value's readable copy; a header without a value (Kafka allows it) is null."""
    return None if value is None else _text(value.decode("utf-8", "replace"))


def _metadata(r: UsageReading | UsageGap) -> str | None:
    if r.device is None and r.interface is None and r.direction is None and r.tenant_id is None:
        return None
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
    gaps: Sequence[tuple[str, str, UsageGap]],
    dead: Sequence[DeadLetter],
    totals: Sequence[TotalRow],
    alerts: Sequence[AlertRecord],
) -> list[str]:
    """Write one batch; return the ids of the alert rows inserted, in ``alerts`` order.

    ``gaps`` are (CloudEvents source, id, gap).
    """
    if readings:
        # readings of one poll share their interval: convert each instant once per batch
        when: dict[int, dt.datetime] = {}

        def ts(ms: int) -> dt.datetime:
            got = when.get(ms)
            if got is None:
                got = when[ms] = _ts(ms)
            return got

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
                "event_source",
            ],
            records=[
                (
                    r.resource_id,
                    r.event_id,
                    ts(r.reading.start_ms),
                    ts(r.reading.end_ms),
                    r.reading.value,
                    r.reading.unit,
                    r.reading.kind,
                    r.reading.source,
                    _metadata(r.reading),
                    r.event_source,
                )
                for r in readings
            ],
        )
    if gaps:
        await conn.executemany(
            """INSERT INTO usage_gaps (event_source, event_id, customer_id, resource_key,
                   resource_type, gap_start, gap_end, reason, source, detail, metadata)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11::jsonb)
               ON CONFLICT (event_source, event_id) DO NOTHING""",
            [
                (
                    src,
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
                for src, eid, g in gaps
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
                    _text(d.reason),
                    d.key,
                    d.value,
                    json.dumps([[_text(k), _header_text(v)] for k, v in d.headers]),
                )
                for d in dead
            ],
        )
    if totals:
        # each column as one array literal, cast in SQL: the client's per-element array
        # encoding costs more than the UPDATE (repr(float) round-trips exactly)
        cols = zip(*(msgspec.structs.astuple(t.stats) for t in totals), strict=True)
        written = await conn.fetch(
            """UPDATE customer_resources cr SET current_usage = u.total, period_start = u.ps,
                   stat_weight = u.w, stat_mean = u.mean, stat_m2 = u.m2, stat_last_ms = u.lm,
                   stat_points = u.pts, stat_first_ms = u.fm, stat_anchor = u.anchor,
                   total_version = u.v + 1, updated_at = now()
               FROM unnest($1::text::uuid[], $2::text::bigint[], $3::text::date[],
                           $4::text::float8[], $5::text::float8[], $6::text::float8[],
                           $7::text::bigint[], $8::text::bigint[], $9::text::bigint[],
                           $10::text::bigint[], $11::text::bigint[])
                    AS u(id, total, ps, w, mean, m2, lm, pts, fm, anchor, v)
               WHERE cr.id = u.id AND cr.total_version = u.v
               RETURNING cr.id::text AS id""",
            array_literal([str(t.resource_id) for t in totals]),
            array_literal([str(t.total) for t in totals]),
            array_literal(
                [t.period_start.isoformat() if t.period_start else "NULL" for t in totals]
            ),
            *[array_literal([repr(x) for x in c]) for c in cols],
            array_literal([str(t.version) for t in totals]),
        )
        if len(written) != len(totals):
            # another instance wrote some of these totals since this one loaded them:
            # what this batch computed is built on stale state (the caller rolls back)
            done = {r["id"] for r in written}
            stale = [t for t in totals if t.resource_id not in done]
            raise FencedError(
                sorted({t.partition for t in stale}),
                resources=sorted(t.key or t.resource_id for t in stale),
            )
    return await _write_alerts(conn, alerts) if alerts else []


#: close the open episode (threshold / anomaly / forecast family) of each (resource,
#: family) of a round; returns what it closed. The forecast family is the actor's
#: pace-based alert; the stored-forecast alerts (forecast_period_start set) belong to
#: the forecast refresh (hub/storage/forecast_alerts.py)
_CLOSE_MANY = """UPDATE alerts al SET status = 'RESOLVED', resolved_at = now(),
                     resolution = u.resolution, resolved_by = 'hub'
                 FROM unnest($1::int[], $2::uuid[], $3::text[], $4::text[])
                      AS u(i, rid, family, resolution)
                 WHERE al.customer_resource_id = u.rid AND al.status <> 'RESOLVED'
                   AND CASE u.family
                       WHEN 'threshold' THEN al.alert_type LIKE 'THRESHOLD\\_%'
                       WHEN 'anomaly' THEN al.alert_type = 'ANOMALY_DETECTED'
                       WHEN 'forecast' THEN al.alert_type = 'FORECAST_LIMIT'
                           AND al.forecast_period_start IS NULL END
                 RETURNING u.i, al.id::text AS id"""
_FAMILIES = frozenset({"threshold", "anomaly", "forecast"})
_INSERT_MANY = """INSERT INTO alerts (id, customer_resource_id, alert_type, severity, message,
                      current_value, threshold_value, unit, status, z_score, forecast_at,
                      confidence)
                  SELECT id, rid, t, sev, msg, cur, thr, unit, 'ACTIVE', z, fa, conf
                  FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::text[],
                              $6::numeric[], $7::numeric[], $8::text[], $9::float8[],
                              $10::timestamptz[], $11::numeric[]) WITH ORDINALITY
                       AS u(id, rid, t, sev, msg, cur, thr, unit, z, fa, conf, ord)
                  ORDER BY ord"""


async def _write_alerts(conn: asyncpg.Connection, alerts: Sequence[AlertRecord]) -> list[str]:
    """Write alert transitions, set-based, with the effect of writing them one by one.

    Each transition closes the open episode of its resource and family ("escalated",
    or "recovered" for a resolution), then an ACTIVE one opens a new row. Transitions
    of different (resource, family) pairs are independent, so they go in rounds: the
    k-th transition of every pair in round k, one UPDATE and one INSERT per round
    (nearly always a single round) instead of two statements per transition.
    Returns the row id per transition, in ``alerts`` order ("" for a resolution that
    found nothing open).
    """
    ids = [""] * len(alerts)
    rounds: list[list[int]] = []
    seen: dict[tuple[str, str], int] = {}
    for i, a in enumerate(alerts):
        if a.check not in _FAMILIES:
            raise ValueError(f"unknown alert check {a.check!r}")
        k = seen.get((a.resource_id, a.check), 0)
        seen[(a.resource_id, a.check)] = k + 1
        if k == len(rounds):
            rounds.append([])
        rounds[k].append(i)
    for members in rounds:
        closed = await conn.fetch(
            _CLOSE_MANY,
            members,
            [alerts[i].resource_id for i in members],
            [alerts[i].check for i in members],
            ["recovered" if alerts[i].status == "RESOLVED" else "escalated" for i in members],
        )
        for row in closed:
            # the episode's row, if one was open (a manual resolve may have closed it already)
            if alerts[row["i"]].status == "RESOLVED":
                ids[row["i"]] = str(row["id"])
        opened = [i for i in members if alerts[i].status != "RESOLVED"]
        if not opened:
            continue
        new = [(i, str(uuid.uuid4())) for i in opened]
        await conn.execute(
            _INSERT_MANY,
            [n for _, n in new],
            *(
                list(c)
                for c in zip(
                    *(
                        (
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
                        for a in (alerts[i] for i in opened)
                    ),
                    strict=True,
                )
            ),
        )
        for i, n in new:
            ids[i] = n
    return ids


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


async def reset_offset(
    conn: asyncpg.Connection | asyncpg.Pool,
    group: str,
    topic: str,
    partition: int,
    *,
    expected: int,
    new: int,
) -> bool:
    """Move a stored offset to ``new`` (backwards too), compare-and-set over ``expected``.

    For a stored offset that lies outside the broker's log (the topic was
    recreated, or retention removed what it pointed at). False when another
    instance moved it meanwhile; that instance's position stands.
    """
    moved = await conn.fetchval(
        "UPDATE consumer_offsets SET next_offset = $5, updated_at = now() "
        "WHERE consumer_group = $1 AND topic = $2 AND partition = $3 AND next_offset = $4 "
        "RETURNING next_offset",
        group,
        topic,
        partition,
        expected,
        new,
    )
    return moved is not None
