"""The alert lifecycle an operator drives: ACTIVE -> ACKNOWLEDGED -> RESOLVED.

==============  ==============  =========================================
from            to              by
==============  ==============  =========================================
(new)           ACTIVE          the hub (threshold raise / escalation)
ACTIVE          ACKNOWLEDGED    an operator (``acknowledge``); silences repeats
ACTIVE          RESOLVED        the hub (recovered with hysteresis, escalated)
ACKNOWLEDGED    RESOLVED        or an operator (``resolve``, resolution manual)
==============  ==============  =========================================

Anything else (acknowledging a RESOLVED alert, resolving twice, ...) raises
:class:`IllegalTransitionError`; the API answers 409. PostgreSQL enforces the
same table with a trigger (migration 0010), and every transition, whoever made
it, lands in ``alert_transitions`` with actor, comment and time: the audit
trail, and the outbox the notifier routes from.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import uuid
from collections.abc import AsyncIterator
from typing import Final

import asyncpg  # type: ignore[import-untyped]
import msgspec

from .._exceptions import HubError, NotFoundError, storage_errors
from ..storage import queries
from ..storage.provision import Executor
from .records import plain

__all__ = [
    "ALLOWED",
    "IllegalTransitionError",
    "TransitionRow",
    "acknowledge",
    "get_alert",
    "history",
    "resolve",
]

#: status -> statuses an operator may move it to
ALLOWED: Final = {
    "ACTIVE": frozenset({"ACKNOWLEDGED", "RESOLVED"}),
    "ACKNOWLEDGED": frozenset({"RESOLVED"}),
    "RESOLVED": frozenset(),
}
_MAX_TEXT: Final = 2000


class IllegalTransitionError(HubError):
    """The alert's status does not allow the requested transition."""

    def __init__(self, alert_id: str, status: str, wanted: str, detail: str = "") -> None:
        self.alert_id = alert_id
        self.status = status
        self.wanted = wanted
        allowed = sorted(ALLOWED.get(status, ()))
        super().__init__(
            f"alert {alert_id} is {status}; it cannot become {wanted} "
            f"(allowed from {status}: {', '.join(allowed) or 'nothing, it is final'})"
            + (f"; {detail}" if detail else "")
        )


class TransitionRow(msgspec.Struct, frozen=True, rename="camel"):
    """One line of an alert's audit trail."""

    id: int
    alert_id: str
    episode_id: str
    transition: str
    from_status: str | None
    to_status: str
    severity: str
    actor: str | None
    comment: str | None
    resolution: str | None
    at: dt.datetime


def _uuid(alert_id: str) -> uuid.UUID:
    try:
        return uuid.UUID(alert_id)
    except ValueError:
        raise NotFoundError(f"alert {alert_id!r} not found (not a UUID)") from None


def _clean(text: str | None, what: str) -> str | None:
    if text is None:
        return None
    text = text.strip()
    if len(text) > _MAX_TEXT:
        raise ValueError(f"{what} is longer than {_MAX_TEXT} characters")
    return text or None


async def _transition(
    db: Executor, alert_id: str, wanted: str, by: str | None, comment: str | None, sql: str
) -> queries.AlertRow:
    aid = _uuid(alert_id)
    by, comment = _clean(by, "by"), _clean(comment, "comment")
    with storage_errors():
        async with _connection(db) as conn, conn.transaction():
            status = await conn.fetchval("SELECT status FROM alerts WHERE id = $1 FOR UPDATE", aid)
            if status is None:
                raise NotFoundError(f"alert {alert_id} not found")
            if wanted not in ALLOWED[status]:
                row = await get_alert(conn, alert_id)
                who = row.acknowledged_by if status == "ACKNOWLEDGED" else row.resolved_by
                when = row.acknowledged_at if status == "ACKNOWLEDGED" else row.resolved_at
                detail = f"{status.lower()} by {who or 'unknown'} at {when}" if when else ""
                raise IllegalTransitionError(alert_id, status, wanted, detail)
            await conn.execute(
                "SELECT set_config('resmon.actor', $1, true), "
                "set_config('resmon.comment', $2, true)",
                by or "",
                comment or "",
            )
            await conn.execute(sql, aid, by)
            return await get_alert(conn, alert_id)


async def acknowledge(
    db: Executor, alert_id: str, by: str, comment: str | None = None
) -> queries.AlertRow:
    """ACTIVE -> ACKNOWLEDGED by ``by``; repeats of the episode stop."""
    if not (by and by.strip()):
        raise ValueError("who acknowledges is required")
    return await _transition(
        db,
        alert_id,
        "ACKNOWLEDGED",
        by,
        comment,
        "UPDATE alerts SET status = 'ACKNOWLEDGED', acknowledged_by = $2, "
        "acknowledged_at = now() WHERE id = $1",
    )


async def resolve(
    db: Executor, alert_id: str, by: str | None, comment: str | None = None
) -> queries.AlertRow:
    """ACTIVE/ACKNOWLEDGED -> RESOLVED by an operator (resolution ``manual``)."""
    return await _transition(
        db,
        alert_id,
        "RESOLVED",
        by,
        comment,
        "UPDATE alerts SET status = 'RESOLVED', resolved_at = now(), resolved_by = $2, "
        "resolution = 'manual' WHERE id = $1",
    )


async def history(db: Executor, alert_id: str) -> list[TransitionRow]:
    """Every transition of the alert's episode, oldest first."""
    aid = _uuid(alert_id)
    with storage_errors():
        rows = await db.fetch(
            """SELECT t.id, t.alert_id::text AS alert_id, t.episode_id::text AS episode_id,
                      t.transition, t.from_status, t.to_status, t.severity, t.actor, t.comment,
                      t.resolution, t.at
               FROM alert_transitions t
               WHERE t.episode_id = (SELECT episode_id FROM alerts WHERE id = $1)
               ORDER BY t.id""",
            aid,
        )
        if not rows and not await db.fetchval("SELECT 1 FROM alerts WHERE id = $1", aid):
            raise NotFoundError(f"alert {alert_id} not found")
    return [TransitionRow(**dict(r)) for r in rows]


_ALERT: Final = queries.ALERTS_SELECT + "WHERE a.id = $1::uuid"


async def get_alert(db: Executor, alert_id: str) -> queries.AlertRow:
    """One alert as the API shows it; NotFoundError if there is none."""
    aid = _uuid(alert_id)
    with storage_errors():
        row = await db.fetchrow(_ALERT, aid)
    if row is None:
        raise NotFoundError(f"alert {alert_id} not found")
    values = dict(row)
    for field in ("current_value", "threshold_value"):
        if values[field] is not None:
            values[field] = plain(values[field])
    return queries.AlertRow(**values)


@contextlib.asynccontextmanager
async def _connection(db: Executor) -> AsyncIterator[asyncpg.Connection]:
    if isinstance(db, asyncpg.Pool):
        async with db.acquire() as conn:
            yield conn
    else:
        yield db
