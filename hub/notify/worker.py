"""The notifier: routes transitions, delivers due notifications, retries, dead-letters.

It runs in the hub's task group, apart from the actors: a slow SMTP server
delays only notifications, never threshold checks. Each tick it

1. routes new alert transitions into the notification log (:mod:`.router`);
2. queues reminders for unacknowledged alerts (repeat interval);
3. claims due notifications and sends each group as one message, at most
   ``concurrency`` at a time;
4. records the outcome: SENT; a retry with jittered exponential backoff (or the
   server's ``Retry-After``); DEAD once the deadline passes or the error is
   permanent (visible at ``GET /api/notifications?status=DEAD`` and in
   ``resmon_notify_dead_letters_total``); SUPPRESSED when inhibited (a CRITICAL
   alert is open on the resource), silenced (acknowledged before a reminder),
   or the channel was turned off.

Per-tenant rate limits (``rateLimitsPerHour`` in the tenant default) defer
messages over the limit (per clock hour, counted atomically in PostgreSQL) to the
next minute.
"""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Mapping
from typing import Final

import aiohttp
import anyio
import asyncpg  # type: ignore[import-untyped]
import structlog
from anyio.abc import TaskStatus
from prometheus_client import CollectorRegistry, Counter

from .._exceptions import HubError, NotFoundError
from ._exceptions import DeliveryError
from .channels import (
    Channel,
    EmailChannel,
    SlackChannel,
    Target,
    TwilioChannel,
    WebhookChannel,
)
from .log import Claimed, claim_due, record_attempt, record_sent, release, renew_lease
from .message import Message
from .preferences import Preferences, effective_preferences, stored_preferences
from .router import route_pending, schedule_repeats
from .settings import NotifyConfig
from .ssrf import GuardedResolver

__all__ = ["Notifier", "NotifyMetrics", "backoff", "default_channels", "run_notifier"]

_log = structlog.get_logger(component="hub.notify.worker")
_INHIBITABLE: Final = frozenset({"RAISED", "ESCALATED", "REPEATED"})


class NotifyMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        r = registry or CollectorRegistry(auto_describe=True)
        self.registry = r
        self.sent = Counter("resmon_notify_sent", "Messages delivered", ["channel"], registry=r)
        self.retries = Counter(
            "resmon_notify_retries", "Failed attempts that will be retried", ["channel"], registry=r
        )
        self.dead = Counter(
            "resmon_notify_dead_letters",
            "Notifications given up on (deadline or permanent error)",
            ["channel"],
            registry=r,
        )
        self.suppressed = Counter(
            "resmon_notify_suppressed", "Notifications not sent on purpose", ["reason"], registry=r
        )
        self.rate_limited = Counter(
            "resmon_notify_rate_limited",
            "Messages deferred by a tenant rate limit",
            ["channel"],
            registry=r,
        )
        self.rounds = Counter(
            "resmon_notify_rounds",
            "Notifier rounds run, failed ones included (each reads the log once)",
            registry=r,
        )
        self.tick_failures = Counter(
            "resmon_notify_tick_failures",
            "Notifier rounds that failed (the worker waits a poll interval and goes on)",
            registry=r,
        )


def backoff(attempt: int, base: float, cap: float, retry_after: float | None = None) -> float:
    """Seconds before the next attempt: full-jitter exponential, or Retry-After if longer."""
    delay = min(cap, base * 2 ** max(0, attempt - 1))
    delay = random.uniform(delay / 2, delay)
    if retry_after is not None:
        delay = max(delay, min(retry_after, cap))
    return delay


class Notifier:
    """One delivery worker; several (in one or many hubs) share the log safely."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        config: NotifyConfig,
        metrics: NotifyMetrics,
        channels: Mapping[str, Channel],
        *,
        concurrency: int = 16,
    ) -> None:
        self.pool = pool
        self.config = config
        self.metrics = metrics
        self.channels = dict(channels)
        self._concurrency = concurrency
        self._limit = anyio.CapacityLimiter(concurrency)
        self._next_repeat_check = 0.0

    async def tick(self) -> int:
        """One round of routing and delivery; returns the messages handled."""
        await route_pending(self.pool, self.config)
        if (now := anyio.current_time()) >= self._next_repeat_check:
            self._next_repeat_check = now + self.config.repeat_check_seconds
            await schedule_repeats(self.pool, self.config)
        claimed = await claim_due(
            self.pool,
            self.config.worker_id,
            # no more than can be sent at once: a claimed group waiting for a slot
            # lets its lease run down (see renew_lease)
            limit=min(self.config.batch_size, self._concurrency),
            lease=self.config.lease_seconds,
            group_seconds=self.config.group_seconds,
        )
        async with anyio.create_task_group() as tg:
            for group in claimed:
                tg.start_soon(self._deliver_one, group)
        return len(claimed)

    async def _deliver_one(self, group: Claimed) -> None:
        async with self._limit:
            try:
                await self.deliver(group)
            except HubError as exc:
                # storage trouble: the lease runs out and the group is retried
                _log.error("notify_record_failed", channel=group.channel, error=str(exc))

    async def deliver(self, group: Claimed) -> None:
        worker, c = self.config.worker_id, self.config
        try:
            prefs = await effective_preferences(self.pool, group.customer_id)
        except NotFoundError:
            prefs = None
        live: list[int] = []
        items = []
        for item in group.items:
            reason = await self._suppress_reason(
                item.transition, item.severity, group, item.log_id, prefs
            )
            if reason is not None:
                await record_attempt(
                    self.pool, worker, [item.log_id], outcome="suppressed", error=reason
                )
                self.metrics.suppressed.labels(reason.split(":")[0]).inc()
                _log.info(
                    "notify_suppressed", channel=group.channel, alert=item.alert_id, reason=reason
                )
                continue
            live.append(item.log_id)
            items.append(item)
        if not live or prefs is None:
            return
        over, slot = await self._reserve_rate_slot(group)
        if over:
            later = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=60)
            # deferred within each row's own deadline; past it the row is dead (visible)
            late = [i for i in live if later > group.meta[i][1]]
            keep = [i for i in live if later <= group.meta[i][1]]
            if keep:
                await record_attempt(
                    self.pool,
                    worker,
                    keep,
                    outcome="deferred",
                    error="tenant rate limit",
                    next_attempt_at=later,
                )
            if late:
                await record_attempt(
                    self.pool,
                    worker,
                    late,
                    outcome="dead",
                    error="tenant rate limit reached until the delivery deadline",
                )
                self.metrics.dead.labels(group.channel).inc(len(late))
                _log.error("notify_dead_letter", channel=group.channel, error="tenant rate limit")
            self.metrics.rate_limited.labels(group.channel).inc()
            return
        # the group may have waited for a delivery slot: send only for rows still ours
        mine = set(await renew_lease(self.pool, worker, live, c.lease_seconds))
        if len(mine) != len(live):
            _log.warning("notify_lease_lost", channel=group.channel, lost=len(live) - len(mine))
            live = [i for i in live if i in mine]
            items = [item for item in items if item.log_id in mine]
            if not live:
                return
        channel = self.channels.get(group.channel)
        message = Message(group.customer_id, group.channel, tuple(items), c.dashboard_url)
        try:
            if channel is None:
                raise DeliveryError(f"{group.channel}: channel not configured", retryable=False)
            await channel.send(message, self._target(group, prefs))
        except DeliveryError as exc:
            await self._release_rate_slot(group, slot)
            await self._failed(group, live, exc)
            return
        except Exception as exc:  # a bug in a channel must not stop the notifier
            # no traceback: library messages can carry the URL (and its token)
            _log.error("notify_channel_crashed", channel=group.channel, error=type(exc).__name__)
            await self._release_rate_slot(group, slot)
            await self._failed(group, live, DeliveryError(f"{group.channel}: {type(exc).__name__}"))
            return
        kept = await record_sent(self.pool, worker, live)
        self.metrics.sent.labels(group.channel).inc()
        _log.info(
            "notify_sent",
            channel=group.channel,
            customer=group.customer_id,
            alerts=len(live),
            recorded=kept,
        )

    def _target(self, group: Claimed, prefs: Preferences) -> Target:
        p = prefs.channel(group.channel)
        if group.channel == "sms":
            return Target(recipients=(group.target,))
        return Target(recipients=tuple(p.recipients), url=p.url, secret=p.secret)

    async def _suppress_reason(
        self, transition: str, severity: str, group: Claimed, log_id: int, prefs: Preferences | None
    ) -> str | None:
        _attempt, _deadline, resource_id, alert_status = group.meta[log_id]
        if prefs is None or not prefs.wants(group.channel, severity):
            return "disabled: channel off or severity below its minimum"
        if transition == "REPEATED" and alert_status != "ACTIVE":
            return f"silenced: alert is {alert_status}"
        if transition in _INHIBITABLE and severity != "CRITICAL":
            critical = await self.pool.fetchval(
                """SELECT 1 FROM alerts WHERE customer_resource_id = $1::uuid
                       AND severity = 'CRITICAL' AND status <> 'RESOLVED' LIMIT 1""",
                resource_id,
            )
            if critical:
                return "inhibited: a CRITICAL alert is open on the same resource"
        return None

    async def _reserve_rate_slot(self, group: Claimed) -> tuple[bool, dt.datetime | None]:
        """(over the tenant's limit, the clock hour a slot was reserved in, if one was)."""
        try:
            tenant = await stored_preferences(self.pool, tenant_id=group.tenant_id)
        except NotFoundError:
            return False, None
        limit = tenant.preferences.rate_limits_per_hour.get(group.channel)
        if limit is None:
            return False, None
        if limit < 1:
            return True, None
        # reserve one message of this clock hour atomically (several hubs share the count)
        hour = await self.pool.fetchval(
            """INSERT INTO notification_rate (tenant_id, channel, hour, sent)
               VALUES ($1::uuid, $2, date_trunc('hour', now()), 1)
               ON CONFLICT (tenant_id, channel, hour) DO UPDATE
               SET sent = notification_rate.sent + 1 WHERE notification_rate.sent < $3
               RETURNING hour""",
            group.tenant_id,
            group.channel,
            limit,
        )
        return hour is None, hour

    async def _release_rate_slot(self, group: Claimed, hour: dt.datetime | None) -> None:
        """Give back the slot of a send that failed: the limit counts messages sent."""
        if hour is None:
            return
        await self.pool.execute(
            """UPDATE notification_rate SET sent = sent - 1
               WHERE tenant_id = $1::uuid AND channel = $2 AND hour = $3 AND sent > 0""",
            group.tenant_id,
            group.channel,
            hour,
        )

    async def _failed(self, group: Claimed, ids: list[int], exc: DeliveryError) -> None:
        c = self.config
        attempt = max(group.meta[i][0] for i in ids)
        delay = backoff(attempt, c.retry_base_seconds, c.retry_max_seconds, exc.retry_after)
        next_at = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=delay)
        # each row by its own deadline: a fresh alert grouped with an old failing one
        # is not dead-lettered with it
        dead = [i for i in ids if not exc.retryable or next_at > group.meta[i][1]]
        retry = [i for i in ids if i not in dead]
        for rows, outcome in ((dead, "dead"), (retry, "retry")):
            if rows:
                await record_attempt(
                    self.pool,
                    c.worker_id,
                    rows,
                    outcome=outcome,
                    error=str(exc),
                    status_code=exc.status,
                    retry_after=exc.retry_after,
                    next_attempt_at=next_at if outcome == "retry" else None,
                )
        if dead:
            self.metrics.dead.labels(group.channel).inc(len(dead))
            _log.error("notify_dead_letter", channel=group.channel, attempt=attempt, error=str(exc))
        if retry:
            self.metrics.retries.labels(group.channel).inc()
            _log.warning(
                "notify_retry",
                channel=group.channel,
                attempt=attempt,
                in_seconds=round(delay, 3),
                error=str(exc),
            )

    async def run(self, *, task_status: TaskStatus[Notifier] = anyio.TASK_STATUS_IGNORED) -> None:
        task_status.started(self)
        try:
            while True:
                try:
                    handled = await self.tick()
                except Exception as exc:  # e.g. a database error outside storage_errors:
                    # the notifier must not take the hub's consumer and API down with it
                    self.metrics.tick_failures.inc()
                    error = (
                        str(exc) if isinstance(exc, HubError) else f"{type(exc).__name__}: {exc}"
                    )
                    _log.error("notify_tick_failed", error=error)
                    handled = 0
                self.metrics.rounds.inc()
                if not handled:
                    await anyio.sleep(self.config.poll_seconds)
        finally:
            with anyio.CancelScope(shield=True):
                try:
                    await release(self.pool, self.config.worker_id)
                except HubError as exc:
                    _log.warning("notify_release_failed", error=str(exc))


def default_channels(
    config: NotifyConfig, http: aiohttp.ClientSession, guarded: aiohttp.ClientSession
) -> dict[str, Channel]:
    return {
        "email": EmailChannel(config),
        "sms": TwilioChannel(config, http),
        "slack": SlackChannel(config, guarded),
        "webhook": WebhookChannel(config, guarded),
    }


async def run_notifier(
    pool: asyncpg.Pool,
    config: NotifyConfig,
    registry: CollectorRegistry | None = None,
    *,
    channels: Mapping[str, Channel] | None = None,
    task_status: TaskStatus[Notifier] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Run a :class:`Notifier` with the real channels until cancelled."""
    timeout = aiohttp.ClientTimeout(total=config.http_timeout)
    async with (
        aiohttp.ClientSession(timeout=timeout, trust_env=False) as http,
        aiohttp.ClientSession(
            timeout=timeout,
            trust_env=False,
            connector=aiohttp.TCPConnector(resolver=GuardedResolver(config.allow_networks)),
        ) as guarded,
    ):
        notifier = Notifier(
            pool,
            config,
            NotifyMetrics(registry),
            channels if channels is not None else default_channels(config, http, guarded),
        )
        _log.info("notifier_started", config=repr(config), worker=config.worker_id)
        await notifier.run(task_status=task_status)
