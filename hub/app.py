"""The hub process: storage, cache, broker, actors, consumer and REST in one task group.

In-process use (tests, ``resmon demo``)::

    async with anyio.create_task_group() as tg:
        hub = await tg.start(run_hub, config)      # migrated, consuming, serving
        ...                                         # hub.http_url, hub.pool, hub.metrics
        tg.cancel_scope.cancel()                    # clean shutdown

``resmon hub run`` does the same and cancels on SIGINT / SIGTERM.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from functools import partial
from zoneinfo import ZoneInfo

import anyio
import asyncpg  # type: ignore[import-untyped]
import structlog
from aiokafka import AIOKafkaProducer
from anyio.abc import TaskStatus

from ._exceptions import HubError, single_hub_error, storage_errors
from .actors import Registry
from .api import ApiContext, create_app, serve
from .api.auth import forget_customers
from .config import HubConfig, redact
from .consumer import UsageConsumer
from .kafka import ensure_topics, start_producer
from .metrics import HubMetrics
from .outbox import Outbox, forecast_alert_outbox, optimization_outbox
from .storage import recommendations
from .storage.apikeys import tenants_of_customers
from .storage.costs import close_periods
from .storage.live import LivePublisher, LiveStream
from .storage.migrate import migrate
from .storage.partitions import drop_expired_partitions, retention_horizon_ms
from .storage.provision import CHANGES_CHANNEL
from .storage.redis_cache import RedisCache

__all__ = ["RunningHub", "run_hub"]

_log = structlog.get_logger(component="hub.app")


async def _keep_session(_conn: asyncpg.Connection) -> None:
    """Pool reset on release: nothing beyond asyncpg's own (rollback, drop listeners).

    The default reset runs ``RESET ALL; UNLISTEN *; CLOSE ALL; ...`` — one more
    round trip per ``acquire`` (each batch, each outbox delivery, each actor
    load). The hub leaves no session state behind: settings are
    transaction-local (``set_config(..., true)``), advisory locks
    transaction-scoped, cursors and listeners live inside an acquire.
    """


class RunningHub:
    """Handles to a running hub, given to the caller of ``tg.start(run_hub, config)``."""

    def __init__(
        self,
        config: HubConfig,
        pool: asyncpg.Pool,
        cache: RedisCache,
        registry: Registry,
        consumer: UsageConsumer,
        metrics: HubMetrics,
        http_port: int | None,
    ) -> None:
        self.config = config
        self.pool = pool
        self.cache = cache
        self.registry = registry
        self.consumer = consumer
        self.metrics = metrics
        self.http_port = http_port

    @property
    def http_url(self) -> str | None:
        """Base URL of the REST API, e.g. ``http://127.0.0.1:8080``."""
        if self.http_port is None:
            return None
        return f"http://{self.config.http_host}:{self.http_port}"


async def run_hub(
    config: HubConfig,
    *,
    http: bool = True,
    task_status: TaskStatus[RunningHub] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Migrate, connect, and run the hub until cancelled.

    ``task_status.started`` receives a :class:`RunningHub` once the consumer
    has joined its group and (if ``http``) the API listens; ``http_port=0``
    in the config binds a free port.
    """
    _log.info(
        "hub_starting",
        database=redact(config.database_url),
        redis=redact(config.redis_url),
        kafka=config.kafka_bootstrap_servers,
        group=config.consumer_group,
    )
    applied = await migrate(config.database_url, address=config.database_address)
    if applied:
        _log.info("migrations_applied", versions=applied)
    with storage_errors(config.database_address):
        pool = await asyncpg.create_pool(
            config.database_url, min_size=1, max_size=10, timeout=10, reset=_keep_session
        )
    cache = RedisCache.from_url(
        config.redis_url,
        prefix=config.redis_prefix,
        ttl=config.cache_ttl_seconds,
        address=config.redis_address,
    )
    producer = None
    try:
        await cache.ping()
        await ensure_topics(config)
        producer = await start_producer(config)
        metrics = HubMetrics()
        registry = Registry(
            pool,
            tz=ZoneInfo(config.billing_tz),
            settings=config.check_settings(),
            max_restarts=config.restart_budget,
            restart_window=config.restart_window_seconds,
            shards=config.actor_shards,
            mailbox_size=config.mailbox_size,
            idle_seconds=config.actor_idle_seconds,
            default_warning=config.warning_percent,
            default_critical=config.critical_percent,
        )
        stream = LiveStream(
            cache.client,
            prefix=config.redis_prefix,
            maxlen=config.stream_backlog,
            address=config.redis_address,
        )

        async def tenants(customers: list[str]) -> dict[str, str]:
            return await tenants_of_customers(pool, customers)

        live = LivePublisher(stream, tenants)
        outbox = Outbox(pool, producer, cache, metrics, live=live)
        consumer = UsageConsumer(config, pool, registry, outbox=outbox, metrics=metrics)
        try:
            hub = RunningHub(config, pool, cache, registry, consumer, metrics, None)
            await _serve_all(hub, producer, http, task_status)
        except BaseExceptionGroup as group:
            if (error := single_hub_error(group)) is not None:
                raise error from None
            raise
    finally:
        with anyio.CancelScope(shield=True):
            if producer is not None:
                await producer.stop()
            await cache.aclose()
            await pool.close()
            _log.info("hub_stopped")


async def _serve_all(
    hub: RunningHub,
    producer: AIOKafkaProducer,
    http: bool,
    task_status: TaskStatus[RunningHub],
) -> None:
    config = hub.config
    async with anyio.create_task_group() as tg:
        await tg.start(hub.registry.run)
        await tg.start(hub.consumer.outbox.run)
        tg.start_soon(_retention, hub)
        tg.start_soon(_forecasts, hub)  # scheduled forecast refresh: hub/storage/forecasts.py
        tg.start_soon(_recommend_daily, hub)
        if hub.consumer.outbox.live is not None:
            tg.start_soon(hub.consumer.outbox.live.run, _stream_failed(hub))
        await tg.start(hub.consumer.run)
        await tg.start(_watch_resource_changes, hub)
        if config.notify is not None:  # notifications run apart from the actors
            from .notify import run_notifier

            await tg.start(run_notifier, hub.pool, config.notify, hub.metrics.registry)
        if http:
            context = ApiContext(
                config=config,
                db=hub.pool,
                metrics=hub.metrics,
                cache=hub.cache,
                producer=producer,
                live=hub.consumer.outbox.live,
            )
            app = create_app(context)
            served = partial(serve, access_log=config.access_log)
            hub.http_port = await tg.start(served, app, config.http_host, config.http_port)
            _log.info("hub_started", http=f"{config.http_host}:{hub.http_port}")
        else:
            _log.info("hub_started", http=None)
        task_status.started(hub)


def _stream_failed(hub: RunningHub) -> Callable[[HubError], None]:
    def failed(exc: HubError) -> None:
        hub.metrics.side_effect_failures.labels("stream").inc()
        _log.warning("stream_publish_failed", error=str(exc))

    return failed


async def _retention(hub: RunningHub) -> None:
    """Drop expired ``usage_metrics`` partitions and ingest keys, close ended billing periods,
    at start and then hourly."""
    while True:
        try:
            with storage_errors(hub.config.database_address):
                async with hub.pool.acquire() as conn:
                    if await drop_expired_partitions(conn, hub.config.retention_days):
                        hub.consumer.forget_partitions()
                    # ingest idempotency keys live as long as the dedup records
                    await conn.execute(
                        "DELETE FROM ingest_keys "
                        "WHERE created_at < now() - make_interval(days => $1)",
                        hub.config.retention_days,
                    )
                    await _close_cost_periods(hub, conn)
        except HubError as exc:
            hub.metrics.storage_failures.labels("retention").inc()
            _log.warning("retention_failed", error=str(exc), retry_in_s=60)
            await anyio.sleep(60)
            continue
        await anyio.sleep(3600)


#: seconds between two runs of the recommendation job
RECOMMEND_EVERY_S = 86_400


async def _recommend_daily(hub: RunningHub) -> None:
    """Run the optimization recommendation job at start and then daily.

    Every hub of a group may run it: recommendations are upserted by their
    deterministic id, so a second run finds them stored and publishes nothing.
    New ones go out as CloudEvents through the outbox.
    """
    while True:
        now_ms = time.time_ns() // 1_000_000
        try:
            with storage_errors(hub.config.database_address):
                async with hub.pool.acquire() as conn:
                    await recommendations.run(
                        conn,
                        settings=hub.config.recommend_settings,
                        money=hub.config.money,
                        tz=ZoneInfo(hub.config.billing_tz),
                        now_ms=now_ms,
                        metrics=hub.metrics,
                        on_created=optimization_outbox(hub.config.source, now_ms),
                    )
        except HubError as exc:
            hub.metrics.storage_failures.labels("recommend").inc()
            _log.warning("recommend_failed_run", error=str(exc), retry_in_s=600)
            await anyio.sleep(600)
            continue
        await anyio.sleep(RECOMMEND_EVERY_S)


async def _close_cost_periods(hub: RunningHub, conn: asyncpg.Connection) -> None:
    """Store the bills of the billing periods that ended (hub.storage.costs.close_periods)."""
    now_ms = time.time_ns() // 1_000_000
    await close_periods(
        conn,
        tz=ZoneInfo(hub.config.billing_tz),
        money=hub.config.money,
        now_ms=now_ms,
        since_ms=retention_horizon_ms(hub.config.retention_days),
        metrics=hub.metrics,
    )


async def _watch_resource_changes(
    hub: RunningHub, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED
) -> None:
    """Retire the actor of a resource whose limit or thresholds were changed in PostgreSQL.

    Notices can be missed in two ways, and neither loses a change: a bulk
    change may notify faster than actors are retired one by one (past 1,024
    queued notices), and the listening connection may end (a PostgreSQL
    restart, a network cut). Either way every actor is retired (each reloads
    from PostgreSQL on its next reading), every cached usage entry in Redis is
    dropped, ``resmon_hub_resource_change_overflows`` counts it, and a lost
    connection is replaced (retrying every few seconds until PostgreSQL answers).
    """
    first = True
    while True:
        try:
            with storage_errors(hub.config.database_address):
                async with hub.pool.acquire() as conn:
                    # once listening again, whatever changed meanwhile went unheard
                    await _listen_for_changes(
                        hub,
                        conn,
                        task_status if first else None,
                        missed=None if first else "the listening connection ended",
                    )
        except HubError as exc:
            if first:
                raise  # at start: the hub does not come up without its database
            hub.metrics.storage_failures.labels("change_listener").inc()
            _log.error("resource_change_listener_failed", error=str(exc), retry_in_s=2)
            await anyio.sleep(2)
        first = False


async def _reload_everything(hub: RunningHub, why: str) -> None:
    _log.warning("resource_changes_missed", why=why, reloading="every actor")
    await hub.registry.forget(lambda _actor: True)
    forget_customers(None)
    if hub.consumer.outbox.live is not None:
        hub.consumer.outbox.live.forget_customers(None)
    hub.consumer.customer_tenants.clear()
    try:
        await hub.cache.forget_all_usage()
    except HubError as exc:  # the cached usage stays stale until its TTL runs out
        hub.metrics.side_effect_failures.labels("redis").inc()
        _log.warning("cache_update_failed", error=str(exc))
    hub.metrics.change_overflows.inc()  # counted once done: tests and operators wait on it


async def _listen_for_changes(
    hub: RunningHub,
    conn: asyncpg.Connection,
    task_status: TaskStatus[None] | None,
    *,
    missed: str | None,
) -> None:
    """Apply change notices on ``conn`` until it ends; first reload everything if ``missed``."""
    send, receive = anyio.create_memory_object_stream[str](1024)
    overflowed = lost = False

    def on_notify(_conn: object, _pid: int, _channel: str, key: str) -> None:
        nonlocal overflowed
        try:
            send.send_nowait(key)
        except anyio.WouldBlock:
            overflowed = True

    def on_end(_conn: object) -> None:
        nonlocal lost
        lost = True
        with contextlib.suppress(anyio.WouldBlock, anyio.ClosedResourceError):
            send.send_nowait("")  # wake the loop; a full queue wakes it anyway

    with send, receive:
        await conn.add_listener(CHANGES_CHANNEL, on_notify)
        conn.add_termination_listener(on_end)
        try:
            if missed is not None:
                await _reload_everything(hub, missed)
            if task_status is not None:
                task_status.started()
            async for key in receive:
                if lost:
                    _log.warning("resource_change_listener_lost")
                    return
                if overflowed:
                    overflowed = False
                    while True:  # what is queued now is covered by the reload below
                        try:
                            receive.receive_nowait()
                        except anyio.WouldBlock:
                            break
                    await _reload_everything(hub, "more notices than the queue holds")
                    continue
                await hub.registry.forget_keys([key])
                forget_customers([key.split("/", 1)[0]])  # a deleted customer: its tenant
                if hub.consumer.outbox.live is not None:
                    hub.consumer.outbox.live.forget_customers([key.split("/", 1)[0]])
                hub.consumer.customer_tenants.pop(key.split("/", 1)[0], None)
                try:
                    await hub.cache.forget_customer(key.split("/", 1)[0])
                except HubError as exc:  # the cached usage stays stale until its TTL runs out
                    hub.metrics.side_effect_failures.labels("redis").inc()
                    _log.warning("cache_update_failed", error=str(exc))
                _log.info("resource_reloading", resource_key=key)
        finally:
            # when lost, the pool has already taken the closed connection back
            if not lost and not conn.is_closed():
                conn.remove_termination_listener(on_end)
                with anyio.CancelScope(shield=True):
                    try:
                        await conn.remove_listener(CHANGES_CHANNEL, on_notify)
                    except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as exc:
                        _log.warning("resource_change_unlisten_failed", error=str(exc))


async def _forecasts(hub: RunningHub) -> None:
    """Refresh the stored forecasts a minute after start, then each RESMON_FORECAST_REFRESH_S."""
    from .storage.forecasts import run_refresh_loop

    await run_refresh_loop(
        hub.pool,
        interval_s=hub.config.forecast_refresh_seconds,
        tz=ZoneInfo(hub.config.billing_tz),
        money=hub.config.money,
        metrics=hub.metrics,
        address=hub.config.database_address,
        on_alerts=forecast_alert_outbox(hub.config.source, hub.config.alerts_topic),
    )
