"""Routing: alert transitions (the outbox) -> rows in the notification log.

The triggers of migration 0010 write every alert transition to
``alert_transitions`` in the same transaction as the alert row. The router
claims unrouted transitions (``FOR UPDATE SKIP LOCKED``: several hubs split
the work), applies the customer's preferences and inserts one
``notification_log`` row per channel (per phone number for SMS) with
``ON CONFLICT DO NOTHING`` on (episode, channel, target, transition): a
transition routed twice, by a restarted or a second hub, still yields one
notification. Marking the transitions routed commits with those rows.

Rules: SUPERSEDED (the WARNING row an escalation replaced) is never sent, the
ESCALATED row speaks for it; RESOLVED only with ``sendResolved``; each channel
has a minimum severity; below CRITICAL, quiet hours delay the send to their
end. A new row waits ``group_seconds`` so the customer's other alerts of that
window go out in the same message.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Final

import asyncpg  # type: ignore[import-untyped]
import structlog

from .._exceptions import NotFoundError
from .preferences import CHANNELS, Preferences, effective_preferences
from .settings import NotifyConfig

__all__ = ["NOTIFIED_TRANSITIONS", "plan", "route_pending", "schedule_repeats", "when"]

_log = structlog.get_logger(component="hub.notify.router")

NOTIFIED_TRANSITIONS: Final = frozenset({"RAISED", "ESCALATED", "ACKNOWLEDGED", "RESOLVED"})

_CLAIM: Final = """
SELECT t.id, t.alert_id, t.episode_id, t.customer_resource_id, t.transition, t.severity,
       cr.customer_id, c.tenant_id
FROM alert_transitions t
JOIN customer_resources cr ON cr.id = t.customer_resource_id
JOIN customers c ON c.id = cr.customer_id
WHERE t.routed_at IS NULL
ORDER BY t.id
LIMIT $1
FOR UPDATE OF t SKIP LOCKED
"""

_INSERT: Final = """
INSERT INTO notification_log (transition_id, alert_id, episode_id, customer_id, tenant_id,
    customer_resource_id, channel, target, transition_key, transition, severity,
    next_attempt_at, deadline_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)
ON CONFLICT (episode_id, channel, target, transition_key) DO NOTHING
"""


def plan(
    transition: str,
    severity: str,
    prefs: Preferences,
    config: NotifyConfig,
) -> list[tuple[str, str]]:
    """(channel, target) pairs a transition goes to; target is the phone for SMS, else ''."""
    if transition not in NOTIFIED_TRANSITIONS and transition != "REPEATED":
        return []
    if transition == "RESOLVED" and not prefs.send_resolved:
        return []
    out: list[tuple[str, str]] = []
    has_default = bool(config.slack_webhook_url)
    for channel in CHANNELS:
        if not prefs.wants(channel, severity):
            continue
        c = prefs.channel(channel)
        if channel == "email" and c.recipients and config.email_enabled:
            out.append((channel, ""))
        elif channel == "sms" and config.sms_enabled:
            out.extend((channel, phone) for phone in c.recipients)
        elif channel in ("slack", "webhook") and (c.url or (channel == "slack" and has_default)):
            out.append((channel, ""))
    return out


def when(
    severity: str, prefs: Preferences, config: NotifyConfig, now: dt.datetime
) -> tuple[dt.datetime, dt.datetime]:
    """(first attempt, deadline) of a new notification."""
    first = now + dt.timedelta(seconds=config.group_seconds)
    if severity != "CRITICAL" and (quiet_end := prefs.quiet_until(now)) is not None:
        first = max(first, quiet_end)
    return first, first + dt.timedelta(seconds=config.deadline_seconds)


async def route_pending(pool: asyncpg.Pool, config: NotifyConfig, limit: int = 200) -> int:
    """Route up to ``limit`` transitions; return how many notifications were created."""
    created = 0
    async with pool.acquire() as conn, conn.transaction():
        rows = await conn.fetch(_CLAIM, limit)
        if not rows:
            return 0
        now = await conn.fetchval("SELECT now()")
        prefs_of: dict[str, Preferences | None] = {}
        inserts: list[tuple[Any, ...]] = []
        for r in rows:
            customer = r["customer_id"]
            if customer not in prefs_of:
                try:
                    prefs_of[customer] = await effective_preferences(conn, customer)
                except NotFoundError:
                    prefs_of[customer] = None
            prefs = prefs_of[customer]
            if prefs is None:
                continue
            first, deadline = when(r["severity"], prefs, config, now)
            for channel, target in plan(r["transition"], r["severity"], prefs, config):
                dedup = f"{r['transition']}:{r['severity']}"
                inserts.append(
                    _row(r, r["id"], channel, target, dedup, r["transition"], first, deadline)
                )
        for values in inserts:
            status = await conn.execute(_INSERT, *values)
            created += int(status.rsplit(" ", 1)[-1])
        await conn.execute(
            "UPDATE alert_transitions SET routed_at = clock_timestamp() WHERE id = ANY($1)",
            [r["id"] for r in rows],
        )
    if created:
        _log.info("notifications_routed", transitions=len(rows), notifications=created)
    return created


async def schedule_repeats(pool: asyncpg.Pool, config: NotifyConfig) -> int:
    """Queue a reminder for ACTIVE (unacknowledged) alerts whose repeat interval passed.

    The n-th reminder of an alert has the key ``REPEATED:{severity}:{n}``, so two
    hubs scheduling the same reminder insert one row.
    """
    created = 0
    async with pool.acquire() as conn:
        rows = await conn.fetch(
            """SELECT a.id AS alert_id, a.episode_id, a.customer_resource_id, a.severity,
                      cr.customer_id, c.tenant_id, extract(epoch FROM now() - a.created_at) AS age,
                      (SELECT max(t.id) FROM alert_transitions t
                       WHERE t.alert_id = a.id AND t.transition IN ('RAISED', 'ESCALATED'))
                          AS transition_id,
                      now() AS now
               FROM alerts a
               JOIN customer_resources cr ON cr.id = a.customer_resource_id
               JOIN customers c ON c.id = cr.customer_id
               WHERE a.status = 'ACTIVE'"""
        )
        prefs_of: dict[str, Preferences] = {}
        for r in rows:
            if r["transition_id"] is None:
                continue
            customer = r["customer_id"]
            if customer not in prefs_of:
                try:
                    prefs_of[customer] = await effective_preferences(conn, customer)
                except NotFoundError:
                    continue
            prefs = prefs_of[customer]
            if not prefs.repeat_interval_minutes:
                continue
            n = int(float(r["age"]) // (prefs.repeat_interval_minutes * 60))
            if n < 1:
                continue
            first, deadline = when(r["severity"], prefs, config, r["now"])
            for channel, target in plan("REPEATED", r["severity"], prefs, config):
                dedup = f"REPEATED:{r['severity']}:{n}"
                values = _row(
                    r, r["transition_id"], channel, target, dedup, "REPEATED", first, deadline
                )
                status = await conn.execute(_INSERT, *values)
                created += int(status.rsplit(" ", 1)[-1])
    return created


def _row(
    r: Any,
    transition_id: Any,
    channel: str,
    target: str,
    dedup: str,
    transition: str,
    first: Any,
    deadline: Any,
) -> tuple[Any, ...]:
    """The values of one notification row (``_INSERT``) for alert row ``r``."""
    return (
        transition_id,
        r["alert_id"],
        r["episode_id"],
        r["customer_id"],
        r["tenant_id"],
        r["customer_resource_id"],
        channel,
        target,
        dedup,
        transition,
        r["severity"],
        first,
        deadline,
    )
