"""``resmon bench --only agent``: how fast the agent polls, against a naive pysnmp loop.

The simulated routers run in a child process (``resmon sim``), so this process's
CPU time is the agent's alone; a rate per CPU-second is a rate per core.

- **varbinds/s per core**: :class:`~edge_agent.snmp.FastV2cClient` polling the
  counters of 48-interface routers over and over (the poller's GETs: sysUpTime,
  ifHCIn/OutOctets, ifHighSpeed, ifCounterDiscontinuityTime: 30 varbinds a
  request), against a naive loop of pysnmp ``get_cmd`` calls asking the same
  OIDs, measured in the same run.
- **1,000 routers x 48 interfaces once**: the real :class:`~edge_agent.poller.Poller`
  (delta math, CloudEvents, the disk buffer) with the lean client, against
  routers sharing one UDP port (community ``public@<router>``): wall time and
  CPU seconds of one full cycle after the first (which discovers and takes
  baselines), against what the naive loop would need at its measured rate.
- **CPU per 1,000 counters, full agent path**: the whole agent
  (:func:`~edge_agent.app.run_agent`) on 200 routers x 48 interfaces at 10 s
  polls, with the disk buffer's fsyncs and Kafka acks from a tansu broker in a
  child process, against net-snmp's ``snmpbulkwalk`` walking the same counters
  of the same simulated fleet (see :func:`full_path_figures`).
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import anyio
import msgspec
import structlog

from edge_agent.config import AgentConfig, TargetConfig, config_from_dict
from edge_agent.snmp.client import (
    IF_COUNTER_DISCONTINUITY,
    IF_HC_IN_OCTETS,
    IF_HC_OUT_OCTETS,
    IF_HIGH_SPEED,
    OIDS_PER_INTERFACE,
    SYS_UPTIME,
    Oid,
)

from .runner import Figure

__all__ = ["FullPath", "full_path_figures", "suite"]

_INTERFACES = 48
_COMMAND = "resmon bench --only agent"


@contextmanager
def _simulator(routers: int, *, shared_port: bool) -> Iterator[list[dict[str, Any]]]:
    """Run ``resmon sim`` in a child process; yield its endpoints."""
    args = [
        sys.executable,
        "-c",
        "from resmon.cli import main; main()",
        "--log-level",
        "warning",
        "sim",
        "--routers",
        str(routers),
        "--interfaces",
        str(_INTERFACES),
        "--base-port",
        "0",
        "--json",
    ]
    if shared_port:
        args.append("--shared-port")
    proc = subprocess.Popen(  # noqa: S603 - our own interpreter and fixed arguments
        args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    )
    try:
        assert proc.stdout is not None
        endpoints = []
        for line in proc.stdout:
            if line.startswith("{"):
                endpoints.append(json.loads(line))
            if len(endpoints) == routers:
                break
        if len(endpoints) != routers:
            raise RuntimeError(f"the simulator gave {len(endpoints)} of {routers} endpoints")
        yield endpoints
    finally:
        proc.terminate()
        proc.wait(10)
        if proc.stdout is not None:
            proc.stdout.close()


def _config(endpoints: list[dict[str, Any]], **extra: Any) -> AgentConfig:
    targets = [
        {
            "name": e["router"],
            "host": e["host"],
            "port": e["port"],
            "community": e["community"],
            "timeout": 5.0,
        }
        for e in endpoints
    ]
    return config_from_dict({"agent_id": "bench", "targets": targets, **extra})


def _counter_oids(indexes: list[int]) -> list[Oid]:
    oids: list[Oid] = [SYS_UPTIME]
    for i in indexes:
        oids += [(*IF_HC_IN_OCTETS, i), (*IF_HC_OUT_OCTETS, i)]
        oids += [(*IF_HIGH_SPEED, i), (*IF_COUNTER_DISCONTINUITY, i)]
    return oids


async def _lean_rate(targets: list[TargetConfig], seconds: float) -> tuple[float, float]:
    """(varbinds per CPU-second, per wall-second) of the lean client polling ``targets``."""
    from edge_agent.snmp import FastV2cClient

    client = FastV2cClient()
    try:
        indexes = {t.name: [r.if_index for r in await client.walk_interfaces(t)] for t in targets}
        varbinds = 0
        cpu0, wall0 = time.process_time(), time.perf_counter()
        while time.perf_counter() - wall0 < seconds:
            async with anyio.create_task_group() as tg:
                for t in targets:
                    tg.start_soon(client.poll_counters, t, indexes[t.name])
            varbinds += sum(1 + OIDS_PER_INTERFACE * len(indexes[t.name]) for t in targets)
        cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    finally:
        await client.aclose()
    return varbinds / cpu, varbinds / wall


async def _naive_rate(targets: list[TargetConfig], seconds: float) -> tuple[float, float]:
    """The same OIDs through a plain loop of pysnmp ``get_cmd`` calls, 30 per request."""
    from pysnmp.hlapi.v3arch import asyncio as hl

    engine = hl.SnmpEngine()
    try:
        oids = _counter_oids(list(range(1, _INTERFACES + 1)))
        varbinds = 0
        cpu0, wall0 = time.process_time(), time.perf_counter()
        while time.perf_counter() - wall0 < seconds:
            for t in targets:
                assert t.community is not None
                transport = await hl.UdpTransportTarget.create((t.host, t.port), timeout=5)
                for start in range(0, len(oids), 30):
                    chunk = oids[start : start + 30]
                    error, status, _, got = await hl.get_cmd(
                        engine,
                        hl.CommunityData(t.community.get_secret_value(), mpModel=1),  # noqa: S508
                        transport,
                        hl.ContextData(),
                        *(hl.ObjectType(hl.ObjectIdentity(oid)) for oid in chunk),
                        lookupMib=False,
                    )
                    if error or status:
                        raise RuntimeError(f"naive loop: {error or status}")
                    varbinds += len(got)
                if time.perf_counter() - wall0 >= seconds:
                    break
        cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    finally:
        engine.close_dispatcher()
    return varbinds / cpu, varbinds / wall


async def _fleet_cycle(config: AgentConfig) -> tuple[float, float, float, int]:
    """(first cycle wall s, second cycle wall s, second cycle CPU s, events) of the Poller."""
    from edge_agent.buffer import DiskBuffer
    from edge_agent.poller import Poller
    from edge_agent.snmp import FastV2cClient

    with tempfile.TemporaryDirectory(prefix="resmon-bench-") as directory:
        buffer_config = config_from_dict(
            {"agent_id": "b", "targets": [], "buffer": {"directory": directory}}
        ).buffer
        buffer = DiskBuffer.open(buffer_config)
        client = FastV2cClient()
        try:
            poller = Poller(config, client, buffer.put)
            t0 = time.perf_counter()
            await poller.poll_all()
            first = time.perf_counter() - t0
            before = buffer.pending_records
            cpu0, t1 = time.process_time(), time.perf_counter()
            await poller.poll_all()
            wall, cpu = time.perf_counter() - t1, time.process_time() - cpu0
            events = buffer.pending_records - before
            failed = [n for n, s in poller.status().items() if s["state"] != "ok"]
            if failed:
                raise RuntimeError(f"{len(failed)} routers failed, e.g. {failed[:3]}")
        finally:
            await client.aclose()
            buffer.close()
    return first, wall, cpu, events


def suite(quick: bool) -> list[Figure]:
    """The agent's figures (see the module docstring)."""
    previous = structlog.get_config()
    structlog.configure(
        wrapper_class=structlog.make_filtering_bound_logger(30)  # warnings and up
    )
    try:
        return _suite(quick)
    finally:  # the caller's logging as it was (the tests run suites in-process)
        structlog.configure(**previous)


def _suite(quick: bool) -> list[Figure]:
    seconds = 1.0 if quick else 8.0
    routers = 5 if quick else 20
    fleet_size = 100 if quick else 1000
    with _simulator(routers, shared_port=False) as endpoints:
        targets = _config(endpoints).targets
        lean_cpu, lean_wall = anyio.run(_lean_rate, targets, seconds)
        naive_cpu, naive_wall = anyio.run(_naive_rate, targets, seconds)
    with _simulator(fleet_size, shared_port=True) as endpoints:
        config = _config(endpoints, interval=60.0)
        first, wall, cpu, events = anyio.run(_fleet_cycle, config)
    varbinds = fleet_size * (1 + OIDS_PER_INTERFACE * _INTERFACES)
    naive_seconds = varbinds / naive_wall
    size = f"{fleet_size:,} routers x {_INTERFACES} interfaces"
    return [
        *full_path_figures(quick),
        Figure(
            suite="agent",
            name="varbinds/s per core (lean v2c client, GET of counters)",
            value=lean_cpu,
            unit="varbinds/s",
            command=_COMMAND,
            target=20_000,
            baseline_name="naive pysnmp get_cmd loop",
            baseline_value=naive_cpu,
            notes=(
                f"{routers} simulated routers x {_INTERFACES} interfaces in a child process; "
                f"per agent CPU-second over {seconds:g} s. Wall-clock rates: lean "
                f"{lean_wall:,.0f}/s, naive {naive_wall:,.0f}/s."
            ),
        ),
        Figure(
            suite="agent",
            name=f"poll {size} once: wall time",
            value=wall,
            unit="s",
            command=_COMMAND,
            higher_is_better=False,
            target=60.0,
            baseline_name="naive pysnmp loop (at its measured rate)",
            baseline_value=naive_seconds,
            notes=(
                f"the Poller's second cycle: {events:,} events through delta math, "
                f"CloudEvents and the disk buffer; routers share one UDP port. The first "
                f"cycle (interface walks + baselines) took {first:.1f} s. The baseline is "
                f"{varbinds:,} varbinds at the naive loop's wall-clock rate."
            ),
        ),
        Figure(
            suite="agent",
            name=f"poll {size} once: agent CPU",
            value=cpu,
            unit="CPU s",
            command=_COMMAND,
            higher_is_better=False,
            target=60.0,
            baseline_name="naive pysnmp loop (at its measured rate)",
            baseline_value=varbinds / naive_cpu,
            notes="CPU seconds of the agent process for that cycle; under 60 = under one core "
            "at a 60 s interval.",
        ),
    ]


# -- the full agent path: CPU per 1,000 counters ---------------------------------

#: the counters a poll collects per interface (ifHCInOctets and ifHCOutOctets); the
#: poller also GETs ifHighSpeed and ifCounterDiscontinuityTime, which it does not report
_COUNTERS_PER_INTERFACE = 2
_IF_HC_COLUMNS = (".".join(map(str, IF_HC_IN_OCTETS)), ".".join(map(str, IF_HC_OUT_OCTETS)))
#: the event loop ``resmon agent run`` gives the agent (uvloop, where there is one)
_AGENT_LOOP: dict[str, Any] = {"use_uvloop": sys.platform != "win32"}
#: quoted from the issue that set the target, not measured here
_REFERENCE = "snmp_exporter + Prometheus 0.037, collectd 0.014 CPU s per 1,000 counters"


@contextmanager
def _broker() -> Iterator[str]:
    """A tansu broker in a child process (as the tests start it); yield its bootstrap."""
    from resmon.embedded import broker_argv

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    proc = subprocess.Popen(  # noqa: S603 - the broker binary of our own wheel
        broker_argv(port), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"the broker exited with code {proc.returncode}")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError("the broker did not listen within 20 s") from None
                time.sleep(0.1)
        yield f"127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class FullPath(msgspec.Struct, frozen=True, kw_only=True):
    """What one run of the whole agent measured."""

    cpu_s: float
    wall_s: float
    cycles: int
    counters: int
    events: int
    sent: int

    @property
    def per_1000(self) -> float:
        return self.cpu_s / self.counters * 1000


async def _full_path(
    endpoints: list[dict[str, Any]],
    bootstrap: str,
    *,
    interval: float,
    cycles: int,
    profiler: Any = None,
) -> FullPath:
    """Run the whole agent (:func:`~edge_agent.app.run_agent`) for ``cycles`` cycles.

    The window opens when the first cycle (interface walks and baselines) is done
    and its records are acknowledged by the broker, and closes when ``cycles``
    more cycles are done and all their records are acknowledged: the agent's CPU
    in between (this process: the poller, deltas, CloudEvents, the buffer's
    writes and fsyncs, aiokafka and zstd) over the counters those cycles collected.
    A ``profiler`` (``cProfile.Profile()``, ...) is enabled for that window only.
    """
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    from edge_agent.app import RunningAgent, run_agent

    topic = "bench-usage-raw"
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, num_partitions=2, replication_factor=1)])
    finally:
        await admin.close()
    with tempfile.TemporaryDirectory(prefix="resmon-bench-") as directory:
        config = _config(
            endpoints,
            interval=interval,
            jitter=0.0,
            kafka={"bootstrap_servers": bootstrap, "topic": topic},
            buffer={"directory": directory},
            http={"enabled": False},
        )
        async with anyio.create_task_group() as tg:
            agent: RunningAgent = await tg.start(run_agent, config)
            await agent.poller.wait_for_cycle(1)
            await agent.buffer.wait_empty()
            failed = [n for n, s in agent.poller.status().items() if s["state"] != "ok"]
            if failed:
                raise RuntimeError(f"{len(failed)} routers failed, e.g. {failed[:3]}")
            first = agent.poller.cycles
            sent0, acked0 = agent.forwarder.sent, agent.buffer.acked
            if profiler is not None:
                profiler.enable()
            cpu0, wall0 = time.process_time(), time.perf_counter()
            await agent.poller.wait_for_cycle(first + cycles)
            await agent.buffer.wait_empty()
            cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
            if profiler is not None:
                profiler.disable()
            done = agent.poller.cycles - first
            sent, events = agent.forwarder.sent - sent0, agent.buffer.acked - acked0
            dropped = agent.buffer.dropped
            failed = [n for n, s in agent.poller.status().items() if s["state"] != "ok"]
            tg.cancel_scope.cancel()
    if failed:
        raise RuntimeError(f"{len(failed)} routers failed, e.g. {failed[:3]}")
    if dropped:
        raise RuntimeError(f"the buffer dropped {dropped:,} records")
    if sent != events:
        raise RuntimeError(f"{events:,} records buffered but {sent:,} acknowledged by Kafka")
    counters = done * len(endpoints) * _INTERFACES * _COUNTERS_PER_INTERFACE
    return FullPath(
        cpu_s=cpu, wall_s=wall, cycles=done, counters=counters, events=events, sent=sent
    )


def _bulkwalk_cpu(endpoints: list[dict[str, Any]], rounds: int) -> tuple[float, int]:
    """(CPU seconds of the ``snmpbulkwalk`` processes, counters walked) over ``rounds`` rounds.

    Each round walks ifHCInOctets and ifHCOutOctets of every router, one process
    per column and router, as a cron job would. Only the walks' CPU is counted
    (``RUSAGE_CHILDREN`` around them: the simulator and broker are not reaped here).
    """
    exe = shutil.which("snmpbulkwalk")
    if exe is None:
        raise RuntimeError("snmpbulkwalk not found (install net-snmp's client: make system-deps)")
    env = {**os.environ, "MIBS": "", "MIBDIRS": ""}  # numeric OIDs: no MIB parsing
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    counters = 0
    for _ in range(rounds):
        for e in endpoints:
            for column in _IF_HC_COLUMNS:
                out = subprocess.run(  # noqa: S603 - net-snmp's client, fixed arguments
                    [
                        exe,
                        "-v2c",
                        "-c",
                        e["community"],
                        "-On",
                        "-Oq",
                        "-Cr50",
                        "-t",
                        "5",
                        f"{e['host']}:{e['port']}",
                        column,
                    ],
                    env=env,
                    capture_output=True,
                    text=True,
                    check=True,
                ).stdout
                got = out.count("\n")
                if got != _INTERFACES:
                    raise RuntimeError(f"snmpbulkwalk of {e['router']} gave {got} counters")
                counters += got
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return cpu, counters


def full_path_figures(quick: bool) -> list[Figure]:
    """CPU seconds per 1,000 counters of the whole agent against snmpbulkwalk, same fleet."""
    routers = 20 if quick else 200
    cycles = 2 if quick else 4
    interval = 10.0
    with _simulator(routers, shared_port=True) as endpoints, _broker() as bootstrap:
        run = anyio.run(
            lambda: _full_path(endpoints, bootstrap, interval=interval, cycles=cycles),
            backend_options=_AGENT_LOOP,
        )
        walk_cpu, walked = _bulkwalk_cpu(endpoints, 1 if quick else 2)
    walk_per_1000 = walk_cpu / walked * 1000
    load = os.getloadavg()[0]  # CPU seconds grow on a busy machine: say how busy it was
    return [
        Figure(
            suite="agent",
            name=(
                f"full agent path, {routers} routers x {_INTERFACES} interfaces at "
                f"{interval:g} s: CPU per 1,000 counters"
            ),
            value=run.per_1000,
            unit="CPU s",
            command=_COMMAND,
            higher_is_better=False,
            target=0.037,
            baseline_name="net-snmp snmpbulkwalk of the same counters",
            baseline_value=walk_per_1000,
            notes=(
                f"the agent (run_agent on uvloop, as `resmon agent run` runs it: SNMP "
                f"over UDP to `resmon sim` in a child process, "
                f"deltas, CloudEvents, the disk buffer with its fsyncs, aiokafka with zstd "
                f"and acks=all from a tansu broker in a child process) for {run.cycles} "
                f"cycles after the first: {run.counters:,} counters (ifHCIn/OutOctets), "
                f"{run.events:,} events, all {run.sent:,} acknowledged; {run.cpu_s:.2f} CPU s "
                f"of the agent process in {run.wall_s:.1f} s wall. The baseline is the CPU "
                f"of one snmpbulkwalk process per router and column ({walked:,} counters, "
                f"{walk_cpu:.2f} CPU s), process start included. Reference figures quoted, "
                f"not measured: {_REFERENCE}. Load average at the end: {load:.1f} on "
                f"{os.cpu_count()} CPUs."
            ),
        )
    ]
