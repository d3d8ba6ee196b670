"""Wire the agent together: config -> SNMP client -> poller -> disk buffer -> forwarder.

:func:`run_agent` runs everything in one anyio task group with a small aiohttp
status server (``/healthz``, ``/metrics``) and returns only when cancelled,
after stopping the Kafka producer, syncing and closing the buffer and
releasing the SNMP engine. ``task_status.started()`` hands the caller a
:class:`RunningAgent` (its buffer, metrics and the status server's port), so
the demo and end-to-end tests can run an agent in-process::

    async with anyio.create_task_group() as tg:
        agent = await tg.start(run_agent, config)
        ...
        tg.cancel_scope.cancel()
"""

from __future__ import annotations

import json
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import anyio
import msgspec
import structlog
from anyio.abc import TaskStatus

from ._exceptions import AgentError
from .buffer import DiskBuffer
from .config import AgentConfig
from .forwarder import Forwarder, KafkaSender, Sender
from .gapstore import GapJournal
from .metrics import AgentMetrics
from .poller import Poller
from .sink import BufferSink
from .snmp import FastV2cClient, SnmpClient

__all__ = ["RunningAgent", "run_agent"]

log = structlog.get_logger(component="edge_agent.app")


class RunningAgent(msgspec.Struct, frozen=True):
    """Handles to a running agent, for tests, the demo and the status server."""

    config: AgentConfig
    buffer: DiskBuffer
    metrics: AgentMetrics
    poller: Poller
    forwarder: Forwarder
    #: what the poller writes through: it reports what the buffer could not keep as gaps
    sink: BufferSink
    #: the status server's port (``None`` when ``http.enabled`` is false)
    http_port: int | None


def _oldest_age(buffer: DiskBuffer) -> float:
    """Seconds since the oldest unacknowledged record's event time (``ce_time``)."""
    oldest = buffer.peek(1)
    if not oldest:
        return 0.0
    raw = dict(oldest[0].record.headers).get("ce_time")
    if raw is None:
        return 0.0
    try:
        at = datetime.fromisoformat(raw.decode().replace("Z", "+00:00"))
    except ValueError:
        return 0.0
    return max(0.0, time.time() - at.timestamp())


def _refresh_gauges(agent: RunningAgent) -> None:
    m, b = agent.metrics, agent.buffer
    m.buffer_oldest_age.set(_oldest_age(b))
    m.buffer_records.set(b.pending_records)
    m.buffer_bytes.set(b.pending_bytes)
    m.observe_buffer_totals(
        dropped=b.dropped,
        corrupt=b.corrupt,
        corrupt_salvaged=b.corrupt_salvaged,
        blocks=b.blocks,
        blocked_seconds=b.blocked_seconds,
    )
    m.buffer_unreported_spans.set(agent.sink.unreported_spans)


def _health(agent: RunningAgent) -> dict[str, Any]:
    return {
        # degraded: the buffer cannot be written; polling goes on, readings become gaps
        "status": "degraded" if agent.sink.failing else "ok",
        "agentId": agent.config.agent_id,
        "cycles": agent.poller.cycles,
        "targets": agent.poller.status(),
        "buffer": {
            "oldestAgeS": round(_oldest_age(agent.buffer), 3),
            "pendingRecords": agent.buffer.pending_records,
            "pendingBytes": agent.buffer.pending_bytes,
            "dropped": agent.buffer.dropped,
            "corrupt": agent.buffer.corrupt,
            "writable": not agent.sink.failing,
            "writeErrors": agent.sink.write_errors,
            "unreportedSpans": agent.sink.unreported_spans,
            "gapsHeld": agent.sink.holding,
            "blocked": agent.buffer.blocking,
            "blockedSeconds": round(agent.buffer.blocked_seconds, 3),
            "corruptSalvaged": agent.buffer.corrupt_salvaged,
        },
        "deadLettered": agent.forwarder.dead_lettered,
        "sent": agent.forwarder.sent,
    }


async def _start_http(config: AgentConfig, holder: list[RunningAgent]) -> tuple[Any, int]:
    from aiohttp import web

    async def healthz(request: web.Request) -> web.Response:
        return web.json_response(_health(holder[0]), dumps=json.dumps)

    async def metrics(request: web.Request) -> web.Response:
        _refresh_gauges(holder[0])
        return web.Response(
            body=holder[0].metrics.render(), content_type="text/plain", charset="utf-8"
        )

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, config.http.host, config.http.port)
    try:
        await site.start()
    except OSError as exc:
        await runner.cleanup()
        raise AgentError(
            f"cannot serve status on {config.http.host}:{config.http.port}: {exc.strerror or exc}"
        ) from None
    port = int(runner.addresses[0][1])
    return runner, port


async def _housekeeping(agent: RunningAgent) -> None:
    """Sync the buffer when the fsync interval is due and keep the gauges fresh.

    A failed sync (an I/O error of the disk) does not end the agent: it is
    logged (``buffer_sync_failed``), counted (``resmon_agent_buffer_sync_errors_total``)
    and tried again at the next period (the records stay marked unsynced).
    """
    period = min(1.0, agent.config.buffer.fsync_interval_ms / 1000)
    failing = False
    while True:
        await anyio.sleep(period)
        try:
            agent.buffer.sync_if_due()
        except OSError as exc:
            agent.metrics.buffer_sync_errors.inc()
            log.error(
                "buffer_sync_failed",
                directory=str(agent.buffer.directory),
                error=str(exc),
                retry_in_s=period,
            )
            failing = True
        else:
            if failing:
                log.info("buffer_sync_recovered", directory=str(agent.buffer.directory))
            failing = False
        try:
            _refresh_gauges(agent)
        except Exception as exc:  # reading the oldest record's time: the gauges wait
            agent.metrics.housekeeping_errors.inc()
            log.warning("gauges_refresh_failed", error=f"{type(exc).__name__}: {exc}")


async def run_agent(
    config: AgentConfig,
    *,
    client: SnmpClient | None = None,
    sender: Sender | None = None,
    task_status: TaskStatus[RunningAgent] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Run the agent until cancelled. ``client`` and ``sender`` default to the real ones."""
    metrics = AgentMetrics()
    buffer = DiskBuffer.open(config.buffer)
    owns_client = client is None
    snmp: SnmpClient = client if client is not None else FastV2cClient()
    runner: Any = None
    sink: BufferSink | None = None
    try:
        forwarder = Forwarder(
            buffer,
            sender if sender is not None else KafkaSender(config.kafka),
            batch_size=config.kafka.max_batch_records,
            metrics=metrics,
        )
        journal = GapJournal(
            Path(config.buffer.directory),
            reserve=config.buffer.gap_reserve_bytes,
            fsync=config.buffer.fsync == "always",
            metrics=metrics,
        )
        sink = BufferSink(buffer, metrics=metrics, journal=journal)
        forwarder.on_refused = sink.refused
        poller = Poller(
            config,
            snmp,
            sink,
            metrics=metrics,
            checkpoint=Path(config.buffer.directory) / "poller.checkpoint",
            before_checkpoint=sink.sync,
        )
        holder: list[RunningAgent] = []
        port = None
        if config.http.enabled:
            runner, port = await _start_http(config, holder)
        agent = RunningAgent(config, buffer, metrics, poller, forwarder, sink, port)
        holder.append(agent)
        async with anyio.create_task_group() as tg:
            await tg.start(forwarder.run)
            tg.start_soon(_housekeeping, agent)
            await tg.start(poller.run)
            log.info(
                "agent_started",
                agent_id=config.agent_id,
                targets=len(config.targets),
                http_port=port,
                pending=buffer.pending_records,
            )
            task_status.started(agent)
    finally:
        with anyio.CancelScope(shield=True):
            if runner is not None:
                await runner.cleanup()
            if owns_client:
                await snmp.aclose()
        if sink is not None:
            sink.flush()  # spans still waiting are written as gaps before the buffer closes
            if sink.journal is not None:
                sink.journal.close()
        buffer.close()
        log.info("agent_stopped", agent_id=config.agent_id)
