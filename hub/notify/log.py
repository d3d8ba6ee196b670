"""The notification log: claiming due rows, recording outcomes, reading it back.

Claiming is a short transaction: due rows (``PENDING`` and due, or ``SENDING``
with an expired lease: their worker died) are locked with ``FOR UPDATE SKIP
LOCKED`` and marked ``SENDING`` with this worker's id and a lease, and the
customer's other fresh rows on the same channel join them (grouping). The send
happens after that commit; the outcome is recorded only if the row is still
ours (``claimed_by``). A worker killed between sending and recording leaves a
``SENDING`` row whose lease runs out, so the notification is sent again at
most once more, and never lost. Two workers never hold the same row.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from decimal import ROUND_DOWN, Decimal
from typing import Any, Final

import asyncpg  # type: ignore[import-untyped]
import msgspec

from protocol import UnitError

from .._exceptions import storage_errors
from ..alerts.records import plain, to_unit
from ..storage.provision import Executor
from .message import Item

__all__ = [
    "Claimed",
    "LogRow",
    "claim_due",
    "list_log",
    "record_attempt",
    "record_sent",
    "release",
    "renew_lease",
]

_CLAIM: Final = """
WITH due AS (
    SELECT id FROM notification_log
    WHERE (status = 'PENDING' AND next_attempt_at <= now())
       OR (status = 'SENDING' AND lease_until < now())
    ORDER BY next_attempt_at
    LIMIT $1
    FOR UPDATE SKIP LOCKED
)
UPDATE notification_log n
SET status = 'SENDING', claimed_by = $2, lease_until = now() + make_interval(secs => $3),
    attempts = n.attempts + 1
FROM due WHERE n.id = due.id
RETURNING n.id, n.customer_id, n.channel, n.target
"""

_GROUP: Final = """
WITH mates AS (
    SELECT id FROM notification_log
    WHERE status = 'PENDING' AND attempts = 0
      AND customer_id = $1 AND channel = $2 AND target = $3
      AND next_attempt_at <= now() + make_interval(secs => $4)
    FOR UPDATE SKIP LOCKED
)
UPDATE notification_log n
SET status = 'SENDING', claimed_by = $5, lease_until = now() + make_interval(secs => $6),
    attempts = n.attempts + 1
FROM mates WHERE n.id = mates.id
RETURNING n.id
"""

_ITEMS: Final = """
SELECT n.id AS log_id, n.alert_id::text AS alert_id, n.episode_id::text AS episode_id,
       n.transition, n.severity, n.channel, n.target, n.customer_id, n.tenant_id::text AS tenant_id,
       n.customer_resource_id::text AS resource_id, n.attempts, n.deadline_at,
       a.alert_type, a.status AS alert_status, a.message, a.current_value, a.unit,
       cr.resource_key, cr.limit_value, rc.resource_type, t.actor, t.comment, t.at
FROM notification_log n
JOIN alerts a ON a.id = n.alert_id
JOIN customer_resources cr ON cr.id = n.customer_resource_id
JOIN resource_catalogs rc ON rc.id = cr.resource_catalog_id
JOIN alert_transitions t ON t.id = n.transition_id
WHERE n.id = ANY($1)
ORDER BY n.id
"""


class Claimed(msgspec.Struct, frozen=True):
    """Rows claimed together: one message for (customer, channel, target)."""

    customer_id: str
    tenant_id: str
    channel: str
    target: str
    items: tuple[Item, ...]
    #: log id -> (attempt number, deadline, resource id, alert status)
    meta: dict[int, tuple[int, dt.datetime, str, str]]


def _pct(current: Decimal | None, limit: Decimal | None) -> Decimal | None:
    if current is None or not limit:
        return None
    return (current * 100 / limit).quantize(Decimal("0.01"), rounding=ROUND_DOWN)


def _item(r: Any) -> Item:
    limit = None
    if r["limit_value"] is not None and r["unit"]:
        try:
            limit = to_unit(int(r["limit_value"]), r["unit"])
        except UnitError:
            limit = None
    current = r["current_value"]
    return Item(
        log_id=r["log_id"],
        alert_id=r["alert_id"],
        episode_id=r["episode_id"],
        transition=r["transition"],
        severity=r["severity"],
        alert_type=r["alert_type"],
        status=r["alert_status"],
        customer_id=r["customer_id"],
        resource_key=r["resource_key"],
        resource_type=r["resource_type"],
        text=r["message"],
        current_value=plain(current) if current is not None else None,
        limit_value=limit,
        percentage=_pct(current, limit),
        unit=r["unit"],
        actor=r["actor"],
        comment=r["comment"],
        at=r["at"],
    )


async def claim_due(
    pool: asyncpg.Pool, worker: str, *, limit: int, lease: float, group_seconds: float
) -> list[Claimed]:
    """Claim due notifications (and their group mates) for ``worker``."""
    with storage_errors():
        async with pool.acquire() as conn, conn.transaction():
            rows = await conn.fetch(_CLAIM, limit, worker, lease)
            keys = {(r["customer_id"], r["channel"], r["target"]) for r in rows}
            ids = [r["id"] for r in rows]
            for customer, channel, target in keys:
                mates = await conn.fetch(
                    _GROUP, customer, channel, target, group_seconds, worker, lease
                )
                ids.extend(m["id"] for m in mates)
            if not ids:
                return []
            details = await conn.fetch(_ITEMS, ids)
    groups: dict[tuple[str, str, str], list[Any]] = {}
    for d in details:
        groups.setdefault((d["customer_id"], d["channel"], d["target"]), []).append(d)
    return [
        Claimed(
            customer_id=customer,
            tenant_id=members[0]["tenant_id"],
            channel=channel,
            target=target,
            items=tuple(_item(m) for m in members),
            meta={
                m["log_id"]: (m["attempts"], m["deadline_at"], m["resource_id"], m["alert_status"])
                for m in members
            },
        )
        for (customer, channel, target), members in groups.items()
    ]


async def renew_lease(pool: asyncpg.Pool, worker: str, ids: list[int], lease: float) -> list[int]:
    """Extend this worker's lease on ``ids`` just before sending; return the ids still ours.

    A claimed group may wait for a free delivery slot; if its lease ran out
    meanwhile another worker may have claimed (and sent) it. Only rows whose
    lease is still running are renewed, so a message goes out only for rows
    no other worker can hold.
    """
    with storage_errors():
        rows = await pool.fetch(
            """UPDATE notification_log SET lease_until = now() + make_interval(secs => $3)
               WHERE id = ANY($1) AND claimed_by = $2 AND status = 'SENDING'
                 AND lease_until > now()
               RETURNING id""",
            ids,
            worker,
            lease,
        )
    return [int(r["id"]) for r in rows]


async def record_sent(pool: asyncpg.Pool, worker: str, ids: list[int]) -> int:
    """Mark ``ids`` SENT as one message; returns how many were still ours."""
    message_id = uuid.uuid4()
    with storage_errors():
        async with pool.acquire() as conn, conn.transaction():
            rows = await conn.fetch(
                """UPDATE notification_log SET status = 'SENT', sent_at = now(), message_id = $3,
                       lease_until = NULL, last_error = NULL
                   WHERE id = ANY($1) AND claimed_by = $2 AND status = 'SENDING'
                   RETURNING id, attempts""",
                ids,
                worker,
                message_id,
            )
            await conn.executemany(
                "INSERT INTO notification_attempts (log_id, attempt, worker, outcome) "
                "VALUES ($1, $2, $3, 'sent')",
                [(r["id"], r["attempts"], worker) for r in rows],
            )
    return len(rows)


async def record_attempt(
    pool: asyncpg.Pool,
    worker: str,
    ids: list[int],
    *,
    outcome: str,
    error: str,
    status_code: int | None = None,
    retry_after: float | None = None,
    next_attempt_at: dt.datetime | None = None,
) -> None:
    """A failed/deferred/suppressed attempt: back to PENDING (retry), DEAD or SUPPRESSED."""
    new_status = {"retry": "PENDING", "deferred": "PENDING", "dead": "DEAD"}.get(
        outcome, "SUPPRESSED"
    )
    with storage_errors():
        async with pool.acquire() as conn, conn.transaction():
            rows = await conn.fetch(
                """UPDATE notification_log SET status = $3, last_error = $4,
                       next_attempt_at = COALESCE($5, next_attempt_at), lease_until = NULL,
                       attempts = attempts - CASE WHEN $6 THEN 1 ELSE 0 END
                   WHERE id = ANY($1) AND claimed_by = $2 AND status = 'SENDING'
                   RETURNING id, attempts""",
                ids,
                worker,
                new_status,
                error[:1000],
                next_attempt_at,
                outcome in ("deferred", "suppressed"),
            )
            await conn.executemany(
                "INSERT INTO notification_attempts (log_id, attempt, worker, outcome, "
                "status_code, retry_after, error) VALUES ($1, $2, $3, $4, $5, $6, $7)",
                [
                    (
                        r["id"],
                        r["attempts"],
                        worker,
                        outcome,
                        status_code,
                        Decimal(str(round(retry_after, 3))) if retry_after is not None else None,
                        error[:1000],
                    )
                    for r in rows
                ],
            )


async def release(pool: asyncpg.Pool, worker: str) -> None:
    """On shutdown: give back rows claimed but not sent (their next owner sends them)."""
    with storage_errors():
        await pool.execute(
            """UPDATE notification_log SET status = 'PENDING', lease_until = NULL,
                   attempts = attempts - 1
               WHERE claimed_by = $1 AND status = 'SENDING'""",
            worker,
        )


class LogRow(msgspec.Struct, frozen=True, rename="camel"):
    """A notification as the API shows it (no recipients' secrets; phone numbers masked)."""

    id: int
    alert_id: str
    episode_id: str
    customer_id: str
    channel: str
    target: str
    transition: str
    severity: str
    status: str
    attempts: int
    next_attempt_at: dt.datetime
    deadline_at: dt.datetime
    last_error: str | None
    sent_at: dt.datetime | None
    created_at: dt.datetime
    history: list[dict[str, Any]]


def _mask_phone(target: str) -> str:
    return f"{target[:3]}***{target[-2:]}" if len(target) > 6 else target


async def list_log(
    db: Executor,
    *,
    status: str | None = None,
    customer_id: str | None = None,
    alert_id: str | None = None,
    limit: int = 100,
    tenant_id: str | None = None,
    customer_ids: Sequence[str] | None = None,
    before_id: int | None = None,
) -> list[LogRow]:
    """The log, newest first (``tenant_id``/``customer_ids``: only theirs; ``before_id``:
    only entries older than that one, for the next page)."""
    with storage_errors():
        rows = await db.fetch(
            """SELECT n.id, n.alert_id::text AS alert_id, n.episode_id::text AS episode_id,
                      n.customer_id, n.channel, n.target, n.transition, n.severity, n.status,
                      n.attempts, n.next_attempt_at, n.deadline_at, n.last_error, n.sent_at,
                      n.created_at,
                      COALESCE((SELECT json_agg(json_build_object(
                                   'attempt', x.attempt, 'outcome', x.outcome,
                                   'statusCode', x.status_code, 'retryAfter', x.retry_after,
                                   'error', x.error, 'at', x.at) ORDER BY x.id)
                                FROM notification_attempts x WHERE x.log_id = n.id), '[]')
                          AS history
               FROM notification_log n
               WHERE ($1::text IS NULL OR n.status = $1)
                 AND ($2::text IS NULL OR n.customer_id = $2)
                 AND ($3::uuid IS NULL OR n.alert_id = $3::uuid)
                 AND ($5::uuid IS NULL OR n.tenant_id = $5::uuid)
                 AND ($6::text[] IS NULL OR n.customer_id = ANY($6::text[]))
                 AND ($7::bigint IS NULL OR n.id < $7)
               ORDER BY n.id DESC LIMIT $4""",
            status,
            customer_id,
            alert_id,
            limit,
            tenant_id,
            list(customer_ids) if customer_ids is not None else None,
            before_id,
        )
    out = []
    for r in rows:
        values = dict(r)
        values["target"] = _mask_phone(values["target"])
        values["history"] = msgspec.json.decode(values["history"])
        out.append(LogRow(**values))
    return out
