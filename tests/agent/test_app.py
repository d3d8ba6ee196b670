"""The whole agent in-process: simulated routers -> agent -> Kafka, plus its status server."""

from __future__ import annotations

import contextlib
import errno
import itertools
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from _clock import ManualClock
from _metrics import sample
from anyio.abc import TaskGroup

from edge_agent._exceptions import SendError
from edge_agent.app import RunningAgent, _health, run_agent
from edge_agent.config import AgentConfig, config_from_dict
from edge_agent.forwarder import Sender
from edge_agent.sink import GAP_DETAIL
from protocol import UsageGap, UsageReading, decode_record

from .conftest import FakeClient, FakeRouter, tick


class CollectingSender:
    def __init__(self) -> None:
        self.ids: list[str] = []
        self.got = anyio.Event()

    async def start(self) -> None:
        pass

    async def send(self, records: Any) -> None:
        self.ids += [r.event_id for r in records]
        self.got.set()

    async def stop(self) -> None:
        pass


def agent_config(tmp_path: Path, targets: list[dict[str, Any]], **extra: Any) -> AgentConfig:
    return config_from_dict(
        {
            "agent_id": "e2e",
            "interval": 0.3,
            "jitter": 0,
            "targets": targets,
            "buffer": {"directory": str(tmp_path / "buffer"), "fsync": "interval"},
            "http": {"port": 0},
            **extra,
        }
    )


async def start_agent(
    tg: TaskGroup,
    config: AgentConfig,
    routers: dict[str, FakeRouter],
    clock: ManualClock,
    sender: Sender,
) -> RunningAgent:
    """Run an agent in ``tg`` against fake routers and a fake Kafka; return once it runs."""
    agent: RunningAgent = await tg.start(
        lambda task_status: run_agent(
            config, client=FakeClient(routers, clock), sender=sender, task_status=task_status
        )
    )
    return agent


@pytest.mark.anyio
async def test_run_agent_serves_health_and_metrics_and_shuts_down_cleanly(tmp_path: Path) -> None:
    import aiohttp

    clock, routers = one_router()
    config = agent_config(
        tmp_path, [{"name": "r1", "host": "192.0.2.1", "community": "CANARY-s3cr3t"}]
    )
    sender = CollectingSender()
    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            agent = await start_agent(tg, config, routers, clock, sender)
            assert agent.http_port
            for cycle in (1, 2):
                await agent.poller.wait_for_cycle(cycle)
                tick(clock, routers)
                routers["r1"].add("ge-0", "in", 1000)
            await sender.got.wait()
            base = f"http://127.0.0.1:{agent.http_port}"
            async with aiohttp.ClientSession() as session:
                async with session.get(f"{base}/healthz") as resp:
                    assert resp.status == 200
                    health = await resp.json()
                async with session.get(f"{base}/metrics") as resp:
                    assert resp.status == 200
                    metrics = await resp.text()
            tg.cancel_scope.cancel()
    assert health["status"] == "ok"
    assert health["agentId"] == "e2e"
    assert health["targets"]["r1"]["state"] == "ok"
    assert health["targets"]["r1"]["consecutiveFailures"] == 0
    assert "oldestAgeS" in health["buffer"]
    for name in (
        "resmon_agent_polls_total",
        "resmon_agent_poll_errors_total",
        "resmon_agent_buffer_records",
        "resmon_agent_buffer_bytes",
        "resmon_agent_buffer_oldest_age_seconds",
        "resmon_agent_buffer_dropped_total",
        "resmon_agent_buffer_corrupt_total",
        "resmon_agent_send_seconds",
        "resmon_agent_target_up",
        "resmon_agent_target_backoff_seconds",
    ):
        assert name in metrics, name
    assert "CANARY" not in metrics
    assert "CANARY" not in str(health)
    # the buffer was closed: it can be opened again, and the lock is released
    from edge_agent.buffer import DiskBuffer

    DiskBuffer.open(config.buffer).close()


@pytest.mark.integration
@pytest.mark.snmp
@pytest.mark.anyio
async def test_simulated_routers_usage_reaches_kafka_matching_ground_truth(
    tmp_path: Path, kafka_bootstrap: str, unique: str
) -> None:
    simulator = pytest.importorskip("simulator")
    from aiokafka import AIOKafkaConsumer
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    topic = f"usage-{unique}"
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    with anyio.fail_after(30):
        await admin.start()
        try:
            await admin.create_topics([NewTopic(topic, num_partitions=2, replication_factor=1)])
        finally:
            await admin.close()

    fleet = simulator.Fleet.generate(routers=2, interfaces=2, base_port=0, rate_bps=10_000)
    with anyio.fail_after(60):
        async with fleet.serve(host="127.0.0.1"):
            targets = [
                {"name": e.router, "host": e.host, "port": e.port, "community": e.community}
                for e in fleet.endpoints
            ]
            targets.append(
                {"name": "dead", "host": "127.0.0.1", "port": 1, "community": "x", "timeout": 0.1}
            )
            config = agent_config(
                tmp_path,
                targets,
                kafka={"bootstrap_servers": kafka_bootstrap, "topic": topic, "linger_ms": 5},
            )
            consumer = AIOKafkaConsumer(
                topic, bootstrap_servers=kafka_bootstrap, auto_offset_reset="earliest"
            )
            await consumer.start()
            readings: list[UsageReading] = []
            try:
                async with anyio.create_task_group() as tg:
                    agent: RunningAgent = await tg.start(run_agent, config)
                    # 2 routers x 2 interfaces x 2 directions, two intervals' worth
                    while len(readings) < 16:
                        batches = await consumer.getmany(timeout_ms=500)
                        for messages in batches.values():
                            for msg in messages:
                                data = decode_record(msg.value, list(msg.headers)).data
                                if isinstance(data, UsageReading):
                                    readings.append(data)
                                else:
                                    assert isinstance(data, UsageGap)
                    await agent.buffer.wait_empty()
                    tg.cancel_scope.cancel()
            finally:
                await consumer.stop()
    assert {r.device for r in readings} == {"rtr-0001", "rtr-0002"}
    for r in readings:
        assert r.interface is not None
        assert r.direction is not None
        truth = fleet.bytes_between(
            r.device, r.interface, r.direction, r.start_ms / 1000, r.end_ms / 1000
        )
        # the agent stamps a sample when the answer arrives, the router counts when the
        # request arrives: allow the traffic of 0.2 s of latency jitter on a busy machine
        assert abs(r.value - truth) <= 10_000 * 0.2, (r, truth)
        assert r.value > 0
    assert (
        sample(agent.metrics, "resmon_agent_poll_errors_total", target="dead", kind="timeout") >= 1
    )


class RecordingSender:
    """Keeps every record Kafka would have acknowledged; refuses while ``down`` is set."""

    def __init__(self) -> None:
        self.records: list[Any] = []
        self.down = False

    async def start(self) -> None:
        pass

    async def send(self, records: Any) -> None:
        if self.down:
            raise SendError("broker down", acked=0)
        self.records += records

    async def stop(self) -> None:
        pass

    def events(self) -> list[UsageReading | UsageGap]:
        out = []
        for r in self.records:
            data = decode_record(r.value, r.headers).data
            assert isinstance(data, UsageReading | UsageGap)
            out.append(data)
        return out


def assert_timeline_exact(events: list[UsageReading | UsageGap], if_name: str) -> list[UsageGap]:
    """Per direction, the readings and gaps of ``if_name`` tile their span with no hole or
    overlap; returns the buffer_full gaps among them."""
    for direction in ("in", "out"):
        spans = sorted(
            (e.start_ms, e.end_ms)
            for e in events
            if e.interface == if_name and e.direction == direction
        )
        assert spans, direction
        for (_, end), (start, _) in itertools.pairwise(spans):
            assert start == end, spans
    return [
        e
        for e in events
        if isinstance(e, UsageGap) and e.reason == "buffer_full" and e.interface == if_name
    ]


class DiskFault:
    """Makes one of the buffer's ``os`` calls (``write``, ``fsync``) fail while ``on`` is set.

    ``injected`` counts the calls that failed, so a test can wait for a number of
    failed writes instead of for time.
    """

    def __init__(self, monkeypatch: pytest.MonkeyPatch, call: str, err: int) -> None:
        self.on = False
        self.injected = 0
        real = getattr(os, call)

        def failing(*args: Any) -> Any:
            if self.on:
                self.injected += 1
                raise OSError(err, os.strerror(err))
            return real(*args)

        monkeypatch.setattr(f"edge_agent.buffer.os.{call}", failing)


def one_router() -> tuple[ManualClock, dict[str, FakeRouter]]:
    """A clock and one router, ``r1``, with one customer interface."""
    return ManualClock(), {"r1": FakeRouter({"ge-0": "CUST:acme"})}


async def step(agent: RunningAgent, clock: ManualClock, routers: dict[str, FakeRouter]) -> None:
    """Let the agent complete one more cycle, then add a minute of traffic on every interface."""
    await agent.poller.wait_for_cycle(agent.poller.cycles + 1)
    tick(clock, routers)
    for router in routers.values():
        for name in router.names:
            router.add(name, "in", 1000)
            router.add(name, "out", 10)


@pytest.mark.anyio
async def test_a_disk_full_buffer_keeps_the_agent_polling_and_the_lost_span_becomes_a_gap(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    disk_full = DiskFault(monkeypatch, "write", errno.ENOSPC)
    clock, routers = one_router()
    config = agent_config(tmp_path, [{"name": "r1", "host": "192.0.2.1", "community": "x"}])
    sender = RecordingSender()
    with anyio.fail_after(20):
        async with anyio.create_task_group() as tg:
            agent = await start_agent(tg, config, routers, clock, sender)
            while agent.buffer.appended == 0:  # a first reading is stored
                await step(agent, clock, routers)
            disk_full.on = True
            while disk_full.injected < 3:  # three polls whose writes fail
                await step(agent, clock, routers)
            polled = sample(agent.metrics, "resmon_agent_polls_total", target="r1")
            await step(agent, clock, routers)
            await step(agent, clock, routers)
            assert (
                sample(agent.metrics, "resmon_agent_polls_total", target="r1") > polled
            )  # still polling
            assert agent.poller.status()["r1"]["state"] == "ok"
            health = _health(agent)
            assert health["status"] == "degraded"
            assert health["buffer"]["writable"] is False
            assert health["buffer"]["writeErrors"] == agent.sink.write_errors
            assert agent.sink.write_errors >= 3
            assert (
                sample(agent.metrics, "resmon_agent_buffer_write_errors_total")
                == agent.sink.write_errors
            )
            lost = agent.sink.write_errors
            appended = agent.buffer.appended
            disk_full.on = False  # space returns
            while not any(
                isinstance(e, UsageGap) and e.reason == "buffer_full" for e in sender.events()
            ):
                await step(agent, clock, routers)
            assert agent.buffer.appended > appended
            assert _health(agent)["status"] == "ok"
            assert _health(agent)["buffer"]["writable"] is True
            await agent.buffer.wait_empty()
            tg.cancel_scope.cancel()
    assert agent.sink.write_errors == lost  # nothing more lost once the disk had room
    assert agent.sink.unreported_spans == 0
    gaps = assert_timeline_exact(sender.events(), "ge-0")
    assert len(gaps) == 2  # one per direction, over the whole span the failed writes lost
    assert {g.detail for g in gaps} == {GAP_DETAIL}
    from edge_agent.buffer import DiskBuffer

    with DiskBuffer.open(config.buffer) as buffer:
        assert buffer.corrupt == 0


@contextlib.contextmanager
def tiny_filesystem(where: Path, size: str) -> Iterator[Path]:
    """A tmpfs of ``size`` mounted at ``where``; skips the test where mounting is not allowed."""
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a tmpfs needs root and mount(8)")
    where.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


@pytest.mark.anyio
async def test_on_a_real_filesystem_that_fills_up_the_agent_polls_on_and_recovers(
    tmp_path: Path,
) -> None:
    with tiny_filesystem(tmp_path / "disk", "1m") as disk:
        # leave room for a few cycles only; removing the filler is the space coming back
        filler = disk / "filler"
        stat = os.statvfs(disk)
        filler.write_bytes(b"\0" * (stat.f_bavail * stat.f_frsize - 24 * 1024))
        clock = ManualClock()
        names = [f"ge-{i}" for i in range(20)]
        routers = {"r1": FakeRouter({n: f"CUST:c{i}" for i, n in enumerate(names)})}
        config = config_from_dict(
            {
                "agent_id": "tmpfs",
                "interval": 0.3,
                "jitter": 0,
                "targets": [{"name": "r1", "host": "192.0.2.1", "community": "x"}],
                "buffer": {"directory": str(disk / "buffer"), "fsync": "interval"},
                "http": {"enabled": False},
            }
        )
        sender = RecordingSender()

        with anyio.fail_after(60):
            async with anyio.create_task_group() as tg:
                agent = await start_agent(tg, config, routers, clock, sender)
                while agent.sink.write_errors == 0:  # until the filesystem is full
                    await step(agent, clock, routers)
                polled, lost = agent.poller.cycles, agent.sink.write_errors
                await step(agent, clock, routers)
                await step(agent, clock, routers)
                assert agent.poller.cycles > polled  # still polling
                assert agent.sink.write_errors > lost  # and still counting what is lost
                assert agent.buffer.write_failures >= 2
                filler.unlink()  # space returns
                while not any(
                    isinstance(e, UsageGap) and e.reason == "buffer_full" for e in sender.events()
                ):
                    await step(agent, clock, routers)
                await agent.buffer.wait_empty()
                tg.cancel_scope.cancel()
        assert agent.sink.unreported_spans == 0
        for n in names:
            assert len(assert_timeline_exact(sender.events(), n)) >= 2, n  # in and out
        from edge_agent.buffer import DiskBuffer

        with DiskBuffer.open(config.buffer) as buffer:
            assert buffer.corrupt == 0


@pytest.mark.anyio
async def test_spans_still_waiting_when_the_agent_stops_are_written_as_gaps_before_it_exits(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    disk_full = DiskFault(monkeypatch, "write", errno.ENOSPC)
    clock, routers = one_router()
    config = agent_config(tmp_path, [{"name": "r1", "host": "192.0.2.1", "community": "x"}])
    sender = RecordingSender()
    with anyio.fail_after(20):
        async with anyio.create_task_group() as tg:
            agent = await start_agent(tg, config, routers, clock, sender)
            while agent.buffer.appended == 0:
                await step(agent, clock, routers)
            await agent.buffer.wait_empty()
            sender.down = True  # what is written from now on stays in the buffer
            disk_full.on = True
            while disk_full.injected < 2:
                await step(agent, clock, routers)
            assert agent.sink.unreported_spans == 2  # in and out
            disk_full.on = False  # space returns, and the agent is stopped at once
            tg.cancel_scope.cancel()
    assert agent.sink.unreported_spans == 0
    from edge_agent.buffer import DiskBuffer

    with DiskBuffer.open(config.buffer) as buffer:
        pending = [decode_record(r.record.value, r.record.headers).data for r in buffer.peek(100)]
    gaps = [e for e in pending if isinstance(e, UsageGap) and e.reason == "buffer_full"]
    assert len(gaps) == 2
    everything = sender.events() + [e for e in pending if isinstance(e, UsageReading | UsageGap)]
    assert len(assert_timeline_exact(everything, "ge-0")) == 2


@pytest.mark.anyio
async def test_a_failing_fsync_in_housekeeping_is_logged_counted_retried_and_not_the_end(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import structlog

    fsync_fails = DiskFault(monkeypatch, "fsync", errno.EIO)
    clock, routers = one_router()
    config = config_from_dict(
        {
            "agent_id": "fsync",
            "interval": 0.3,
            "jitter": 0,
            "targets": [{"name": "r1", "host": "192.0.2.1", "community": "x"}],
            "buffer": {
                "directory": str(tmp_path / "buffer"),
                "fsync": "interval",
                "fsync_interval_ms": 20,
            },
            "http": {"enabled": False},
        }
    )
    sender = RecordingSender()
    sender.down = True  # records stay in the buffer: there is always something to sync
    with structlog.testing.capture_logs() as logs, anyio.fail_after(20):
        async with anyio.create_task_group() as tg:
            agent = await start_agent(tg, config, routers, clock, sender)
            await step(agent, clock, routers)
            fsync_fails.on = True
            while fsync_fails.injected < 6:
                await step(agent, clock, routers)  # polling goes on meanwhile
            cycles = agent.poller.cycles
            await step(agent, clock, routers)
            assert agent.poller.cycles > cycles
            fsync_fails.on = False
            await step(agent, clock, routers)
            errors = sample(agent.metrics, "resmon_agent_buffer_sync_errors_total")
            await step(agent, clock, routers)
            await step(agent, clock, routers)
            assert (
                sample(agent.metrics, "resmon_agent_buffer_sync_errors_total") == errors
            )  # retried, and fine
            agent.buffer.sync_if_due()
            tg.cancel_scope.cancel()
    failed = [e for e in logs if e["event"] == "buffer_sync_failed"]
    assert len(failed) >= 3
    assert "Input/output error" in failed[0]["error"]
    assert sample(agent.metrics, "resmon_agent_buffer_sync_errors_total") == len(failed)
    assert not agent.buffer._dirty  # the records were made durable once fsync worked again
