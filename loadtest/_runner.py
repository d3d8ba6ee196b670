"""``resmon loadtest run``: start everything a scenario needs, drive it, measure.

Order: servers (embedded, or the ``*_URL`` environment) -> migrations, topic
-> simulator fleet (this process) -> resources with their limits -> hubs ->
agents (child processes) -> scheduled events -> traffic stops -> drain until
every reading is stored -> collect -> stop in reverse order.
"""

from __future__ import annotations

import os
import secrets
import signal
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio
import structlog
import yaml

from resmon._ports import free_tcp_port
from simulator import Fleet

from ._collect import collect, consumer_lag, create_topic, db_totals
from ._procs import Child, ProcessSampler, metric_sum, scrape, spawn, stop
from ._result import Result
from ._scenario import Event, Scenario
from ._world import NS, World, build_world, set_limits

__all__ = ["RunOptions", "run_scenario"]

_log = structlog.get_logger(component="loadtest._runner")


@dataclass
class RunOptions:
    state_dir: Path = Path(".resmon-state/loadtest")
    env: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))
    progress: bool = True  #: a rich live table; False: a log line every few seconds
    own_database: bool = True  #: create a database per run on the server (dropped after)
    keep_database: bool = False  #: keep the per-run database to inspect it
    say: Callable[[str], None] = print


@dataclass
class _Run:
    scenario: Scenario
    world: World
    fleet_: Fleet | None
    urls: Any
    run_id: str
    opts: RunOptions
    hubs: list[Child] = field(default_factory=list)
    agents: list[Child] = field(default_factory=list)
    sampler: ProcessSampler = field(default_factory=ProcessSampler)
    timeline: list[dict[str, float]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    max_lag: int = 0
    left_in_buffers: int = 0
    #: the last /metrics pages scraped from each agent and hub (the stage histograms)
    agent_pages: dict[str, dict[str, float]] = field(default_factory=dict)
    hub_pages: dict[str, dict[str, float]] = field(default_factory=dict)
    started_mono: float = field(default_factory=time.monotonic)
    #: RESMON_API_KEY_SECRET of this run's hubs
    key_secret: str = field(default_factory=lambda: secrets.token_hex(32))

    @property
    def fleet(self) -> Fleet:
        assert self.fleet_ is not None, "the fleet is created once the hubs are up"
        return self.fleet_

    @fleet.setter
    def fleet(self, fleet: Fleet) -> None:
        self.fleet_ = fleet

    @property
    def topic(self) -> str:
        return f"usage-{self.run_id}"

    @property
    def group(self) -> str:
        return f"hub-{self.run_id}"


async def run_scenario(scenario: Scenario, opts: RunOptions | None = None) -> Result:
    """Run ``scenario`` end to end and return its measured :class:`Result`."""
    from resmon.embedded import embedded_servers

    opts = opts or RunOptions()
    run_id = f"lt{uuid.uuid4().hex[:8]}"
    started = datetime.now(UTC)
    world = build_world(scenario, run_id)
    opts.state_dir.mkdir(parents=True, exist_ok=True)
    set_limits(world)
    async with embedded_servers(opts.state_dir / "servers", opts.env, progress=opts.say) as urls:
        from hub.storage.migrate import migrate

        given = urls
        if opts.own_database:
            urls = await _own_database(urls, run_id, opts)
        await migrate(urls.database_url)
        await create_topic(urls.kafka_bootstrap_servers, f"usage-{run_id}", scenario.partitions)
        run = _Run(scenario, world, None, urls, run_id, opts)
        run.sampler.add("runner+simulator", os.getpid())
        run.sampler.find_servers()
        if "broker" not in run.sampler.cpu_s:
            run.notes.append("broker given by KAFKA_BOOTSTRAP_SERVERS: not measured, not paused")
        await _provision(run)
        try:
            for _ in range(scenario.hubs):
                _start_hub(run)
            await _wait_up(run.hubs, 90)
            # the epoch: scenario time starts now, once the hubs are up
            run.fleet = Fleet(world.config)
            run.started_mono = time.monotonic()
            async with run.fleet.serve("127.0.0.1"):
                result = await _drive(run)
        finally:
            with anyio.CancelScope(shield=True):
                for child in [*run.agents, *run.hubs]:
                    await stop(child)
                if urls is not given and not opts.keep_database:
                    await _drop_database(given, urls)
                elif urls is not given:
                    from hub.config import redact

                    opts.say(f"[loadtest] kept the run's database: {redact(urls.database_url)}")
    result.started = started.strftime("%Y-%m-%d %H:%M:%S UTC")
    return result


async def _own_database(urls: Any, run_id: str, opts: RunOptions) -> Any:
    """A fresh database for this run on the same server, so runs never share
    state or migrations; falls back to the given database if it cannot create one."""
    import dataclasses

    import asyncpg  # type: ignore[import-untyped]

    name = f"resmon_{run_id}"
    try:
        conn = await asyncpg.connect(urls.database_url)
        try:
            await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()
    except (OSError, asyncpg.PostgresError) as exc:
        _log.warning("loadtest.own_database_failed", error=type(exc).__name__)
        return urls
    base, _, rest = urls.database_url.rpartition("/")
    query = rest.partition("?")[1:]
    url = f"{base}/{name}{''.join(query)}"
    opts.say(f"[loadtest] database {name} on the same server")
    return dataclasses.replace(urls, database_url=url)


async def _drop_database(given: Any, own: Any) -> None:
    import asyncpg

    name = own.database_url.rpartition("/")[2].partition("?")[0]
    try:
        conn = await asyncpg.connect(given.database_url)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()
    except (OSError, asyncpg.PostgresError) as exc:
        _log.warning("loadtest.drop_database_failed", database=name, error=type(exc).__name__)


async def _provision(run: _Run) -> None:
    import asyncpg

    from hub.storage.provision import provision_resource

    s = run.scenario
    pool = await asyncpg.create_pool(run.urls.database_url, min_size=1, max_size=4)
    try:

        async def one(res: Any) -> None:
            res.key = await provision_resource(
                pool,
                res.customer,
                "bandwidth",
                res.limit,
                None,
                s.warning_percent,
                s.critical_percent,
            )

        limiter = anyio.CapacityLimiter(4)

        async def limited(res: Any) -> None:
            async with limiter:
                await one(res)

        t0 = time.monotonic()
        async with anyio.create_task_group() as tg:
            for res in run.world.resources:
                tg.start_soon(limited, res)
        _log.info(
            "loadtest.provisioned", resources=len(run.world.resources), s=time.monotonic() - t0
        )
    finally:
        await pool.close()


def _start_hub(run: _Run) -> Child:
    port = free_tcp_port()
    s = run.scenario
    env = {
        "DATABASE_URL": run.urls.database_url,
        "REDIS_URL": run.urls.redis_url,
        "KAFKA_BOOTSTRAP_SERVERS": run.urls.kafka_bootstrap_servers,
        "RESMON_HUB_HTTP": f"127.0.0.1:{port}",
        "RESMON_HUB_GROUP": run.group,
        "RESMON_HUB_USAGE_TOPIC": run.topic,
        "RESMON_HUB_ALERTS_TOPIC": f"alerts-{run.run_id}",
        "RESMON_HUB_SESSION_MS": "3000",
        # the load test calls only /metrics, which needs no key; the hub needs a secret
        "RESMON_API_KEY_SECRET": run.key_secret,
        "RESMON_WARNING_PERCENT": str(s.warning_percent),
        "RESMON_CRITICAL_PERCENT": str(s.critical_percent),
    }
    n = len(run.hubs) + 1
    child = spawn(
        f"hub-{n}",
        ["hub", "run"],
        run.opts.state_dir / run.run_id / f"hub-{n}.log",
        f"http://127.0.0.1:{port}/metrics",
        env,
    )
    run.hubs.append(child)
    run.sampler.add(child.label, child.proc.pid)
    return child


def _target(run: _Run, e: Any) -> dict[str, object]:
    """The agent's target entry for simulator endpoint ``e`` (v2c, or v3 for its share)."""
    s = run.scenario
    target: dict[str, object] = {
        "name": e.router,
        "host": e.host,
        "port": e.port,
        "timeout": s.timeout,
        "retries": s.retries,
        "max_repetitions": s.max_repetitions,
    }
    user = run.world.v3_user
    if user is not None and e.router in run.world.v3_routers:
        target |= {
            "version": "3",
            "security_name": user.name,
            "security_level": "authPriv",
            "auth_protocol": "SHA",
            "auth_key": user.auth_key,
            "priv_protocol": "AES",
            "priv_key": user.priv_key,
        }
    else:
        target["community"] = e.community
    return target


def _start_agent(run: _Run, n: int, endpoints: list[Any]) -> Child:
    s = run.scenario
    port = free_tcp_port()
    base = run.opts.state_dir / run.run_id
    config = {
        "agent_id": f"{run.run_id}-agent-{n}",
        "interval": s.interval,
        "jitter": min(s.interval * 0.5, 1.0),
        "max_concurrency": 256,
        "backoff_max": max(4 * s.interval, 5.0),  # a dead router comes back within the run
        "targets": [_target(run, e) for e in endpoints],
        "mapping": [{"pattern": r"^CUST:(?P<customer>\S+)", "direction": "both"}],
        "kafka": {
            "bootstrap_servers": run.urls.kafka_bootstrap_servers,
            "topic": run.topic,
        },
        "buffer": {"directory": str(base / f"agent-{n}-buffer")},
        "http": {"host": "127.0.0.1", "port": port},
    }
    path = base / f"agent-{n}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    child = spawn(
        f"agent-{n}", ["agent", "run", "-c", str(path)], base / f"agent-{n}.log",
        f"http://127.0.0.1:{port}/metrics", {},
    )  # fmt: skip
    run.agents.append(child)
    run.sampler.add(child.label, child.proc.pid)
    return child


async def _wait_up(children: list[Child], limit: float) -> None:
    with anyio.fail_after(limit):
        for child in children:
            while not await scrape(child.metrics_url, limit=1.0):
                if child.proc.poll() is not None:
                    tail = child.log.read_text(errors="replace")[-2000:]
                    raise RuntimeError(f"{child.label} exited ({child.proc.returncode}):\n{tail}")
                await anyio.sleep(0.2)


async def _sleep_until_epoch(run: _Run, seconds: float) -> None:
    delay = (run.fleet.epoch_ns + seconds * NS - time.time_ns()) / NS
    if delay > 0:
        await anyio.sleep(delay)


async def _event(run: _Run, event: Event) -> None:
    await _sleep_until_epoch(run, event.at_s)
    fleet = run.fleet
    names = [fleet.routers[i] for i in event.routers]
    _log.info("loadtest.event", action=event.action, routers=names, at_s=event.at_s)
    if event.action in ("reboot", "renumber"):
        for name in names:
            fleet.reboot(name, renumber=event.action == "renumber")
    elif event.action in ("dead", "alive"):
        for name in names:
            fleet.set_dead(name, event.action == "dead")
    elif event.action == "faults":
        for name in names:
            fleet.set_faults(name, event.faults)
    elif event.action == "add_hub":
        _start_hub(run)
    elif event.action == "hub_pause":
        pids = [h.proc.pid for h in run.hubs if h.proc.poll() is None]
        for pid in pids:
            os.kill(pid, signal.SIGSTOP)
        try:
            await anyio.sleep(event.duration_s)
        finally:
            for pid in pids:
                os.kill(pid, signal.SIGCONT)
        run.notes.append(
            f"hubs paused (SIGSTOP) at {event.at_s:g} s for {event.duration_s:g} s: a backlog"
        )
    elif event.action == "broker_pause":
        proc = run.sampler.pid("broker")
        if proc is None:
            run.notes.append("broker_pause skipped: the broker is not a child of this run")
            return
        os.kill(proc, signal.SIGSTOP)
        try:
            await anyio.sleep(event.duration_s)
        finally:
            os.kill(proc, signal.SIGCONT)
        run.notes.append(
            f"broker paused (SIGSTOP) at {event.at_s:g} s for {event.duration_s:g} s, then SIGCONT"
        )


async def _sample(run: _Run) -> dict[str, float]:
    agent_pages = [await scrape(a.metrics_url) for a in run.agents]
    hub_pages = [await scrape(h.metrics_url) for h in run.hubs]
    for child, page in zip([*run.agents, *run.hubs], [*agent_pages, *hub_pages], strict=True):
        if page:  # a stopped or busy process keeps its last page
            pages = run.agent_pages if child in run.agents else run.hub_pages
            pages[child.label] = page
    lag = await consumer_lag(run.urls, run.topic, run.group)
    if lag is not None:
        run.max_lag = max(run.max_lag, lag)
    run.sampler.sample()
    stats = run.fleet.stats
    point = {
        "t": (time.time_ns() - run.fleet.epoch_ns) / NS,
        "polls": sum(metric_sum(p, "resmon_agent_polls_total") for p in agent_pages),
        "poll_errors": sum(metric_sum(p, "resmon_agent_poll_errors_total") for p in agent_pages),
        "produced": sum(metric_sum(p, "resmon_agent_readings_total") for p in agent_pages),
        "acked": sum(metric_sum(p, "resmon_agent_records_sent_total") for p in agent_pages),
        "buffered": sum(metric_sum(p, "resmon_agent_buffer_records") for p in agent_pages),
        "consumed": sum(metric_sum(p, "resmon_hub_readings_consumed_total") for p in hub_pages),
        "dup_dropped": sum(metric_sum(p, "resmon_hub_duplicates_dropped_total") for p in hub_pages),
        "lag": float(lag if lag is not None else -1),
        "sim_requests": float(stats.requests),
    }
    # counters of a scrape that failed (paused broker, busy process) must not go backwards
    if run.timeline:
        last = run.timeline[-1]
        for k in ("polls", "poll_errors", "produced", "acked", "consumed", "dup_dropped"):
            point[k] = max(point[k], last[k])
    run.timeline.append(point)
    return point


async def _drive(run: _Run) -> Result:
    s = run.scenario
    from ._progress import Progress

    endpoints = run.fleet.endpoints
    per = -(-len(endpoints) // s.agents)
    for n in range(s.agents):
        _start_agent(run, n + 1, endpoints[n * per : (n + 1) * per])
    await _wait_up(run.agents, 60)
    if (time.time_ns() - run.fleet.epoch_ns) / NS > s.warmup_s - s.interval:
        run.notes.append("warmup was shorter than the start-up: the first polls may miss traffic")
    end_s = s.warmup_s + s.traffic_s
    progress = Progress(run.scenario, enabled=run.opts.progress, say=run.opts.say)
    drain_started = 0.0
    drained_at: float | None = None
    still, last_billed = 0, -1
    with progress:
        async with anyio.create_task_group() as tg:
            for event in s.events:
                tg.start_soon(_event, run, event)
            while True:
                point = await _sample(run)
                totals = await db_totals(run.urls.database_url, run.world)
                progress.update(point, totals, run.world)
                if point["t"] >= end_s + 2 * s.interval:
                    if not drain_started:
                        drain_started = time.monotonic()
                        # the agents' last polls saw the final counters; stop them so the
                        # drain measures catching up, not the endless zero-delta stream
                        # let the agents' forwarders empty their disk buffers first (a few
                        # intervals at most), then read their last counters
                        with anyio.move_on_after(max(3 * s.interval, 10.0)):
                            while (point := await _sample(run))["buffered"] > 0:  # noqa: ASYNC110
                                await anyio.sleep(0.2)
                        buffered = point["buffered"]
                        run.left_in_buffers = int(buffered)
                        with anyio.CancelScope(shield=True):
                            for agent in run.agents:
                                await stop(agent)
                        if buffered:
                            run.notes.append(
                                f"{buffered:,.0f} readings were still in agent disk buffers when "
                                "the agents were stopped (kept on disk for their next start; "
                                "not counted as lost)"
                            )
                    exact_done = totals["exact_matching"] == totals["exact"]
                    applied = point["consumed"] + point["dup_dropped"]
                    settled = point["lag"] == 0 and applied >= point["produced"] > 0
                    still = still + 1 if totals["billed"] == last_billed else 0
                    last_billed = totals["billed"]
                    # done: every exact resource bills its truth, or nothing moves any more
                    if settled and (exact_done or still >= 3):
                        drained_at = time.monotonic()
                        break
                    if time.monotonic() - drain_started > s.drain_timeout_s:
                        run.notes.append(f"drain timed out after {s.drain_timeout_s:g} s")
                        break
                await anyio.sleep(s.sample_every_s)
            tg.cancel_scope.cancel()
    drain_s = (drained_at or time.monotonic()) - (drain_started or time.monotonic())
    drain_s += 2 * s.interval
    return await collect(run, drain_s)
