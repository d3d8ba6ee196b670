"""The poller with the lean SNMP client against simulated routers whose clock the test
moves: wraps of both counter sizes, a reboot, ifIndex renumbering, a dead router, a slow
router, noSuchInstance and malformed answers. Readings are checked against the
simulator's exact ground truth; a failed poll is bridged by the next answer."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import anyio
import msgspec
import pytest
from _clock import ManualClock
from _metrics import sample

from edge_agent._exceptions import SnmpMalformedResponse
from edge_agent.config import TargetConfig, config_from_dict
from edge_agent.metrics import AgentMetrics
from edge_agent.poller import Poller
from edge_agent.snmp import FastV2cClient
from edge_agent.snmp import client as client_module
from edge_agent.snmp.client import IF_HC_IN_OCTETS, IF_HC_OUT_OCTETS, Oid, Value
from protocol import KafkaRecord, UsageGap, UsageReading, decode_record

pytestmark = pytest.mark.anyio

simulator = pytest.importorskip("simulator")

RATE = 1000  # octets/s in; out is half


class NoHcClient(FastV2cClient):
    """A router without the 64-bit counters: ifHC* answer noSuchInstance."""

    async def _get_chunk(self, target: TargetConfig, oids: Sequence[Oid]) -> dict[Oid, Value]:
        values = await super()._get_chunk(target, oids)
        for oid in values:
            if oid[:-1] in (IF_HC_IN_OCTETS, IF_HC_OUT_OCTETS):
                values[oid] = ("NoSuchInstance", None)
        return values


class FailingChunkClient(FastV2cClient):
    """A router whose answer to every GET chunk but the first is garbage."""

    chunks = 0

    async def _get_chunk(self, target: TargetConfig, oids: Sequence[Oid]) -> dict[Oid, Value]:
        self.chunks += 1
        if self.chunks > 1:
            raise SnmpMalformedResponse("truncated answer", target=target.name)
        return await super()._get_chunk(target, oids)


@dataclass
class Run:
    fleet: Any
    clock: ManualClock
    poller: Poller
    records: list[KafkaRecord] = field(default_factory=list)
    times: list[int] = field(default_factory=list)  # fleet ns of each poll

    async def poll(self, advance: int = 10) -> list[UsageReading | UsageGap]:
        # the agent stamps samples with its own wall clock (ms): let at least a few ms
        # pass, or two samples in the same millisecond are one instant, not an interval
        await anyio.sleep(0.005)
        self.clock.advance(advance)
        self.times.append(self.clock.ns)
        self.records.clear()
        await self.poller.poll_all()
        out = []
        for r in self.records:
            data = decode_record(r.value, r.headers).data
            assert isinstance(data, UsageReading | UsageGap)
            out.append(data)
        return out

    def truth(self, e: UsageReading, polls_back: int = 1) -> int:
        return self.since(e, self.times[-1 - polls_back])

    def since(self, e: UsageReading, t0_ns: int) -> int:
        """What the reading's interface carried from ``t0_ns`` to the last poll."""
        assert e.device is not None
        assert e.interface is not None
        assert e.direction is not None
        return int(
            self.fleet.bytes_between(e.device, e.interface, e.direction, t0_ns, self.times[-1])
        )


@asynccontextmanager
async def running(
    routers: int = 2,
    *,
    client: FastV2cClient | None = None,
    poll_deadline: float = 3.0,
    **fleet_args: Any,
) -> AsyncIterator[Run]:
    clock = ManualClock()
    fleet = simulator.Fleet.generate(
        routers=routers, interfaces=3, base_port=0, rate_bps=RATE, clock=clock, **fleet_args
    )
    client = client or FastV2cClient()
    try:
        async with fleet.serve(host="127.0.0.1"):
            config = config_from_dict(
                {
                    "agent_id": "sim",
                    "poll_deadline": poll_deadline,
                    "targets": [
                        {
                            "name": e.router,
                            "host": e.host,
                            "port": e.port,
                            "community": e.community,
                            "timeout": 1.0,
                            "retries": 1,
                        }
                        for e in fleet.endpoints
                    ],
                }
            )
            run = Run(fleet, clock, Poller(config, client, lambda r: _extend(run, r)))
            with anyio.fail_after(20):
                yield run
    finally:
        await client.aclose()


async def _extend(run: Run, records: list[KafkaRecord]) -> None:
    run.records.extend(records)


def readings(events: list[UsageReading | UsageGap]) -> list[UsageReading]:
    return [e for e in events if isinstance(e, UsageReading)]


async def test_a_counter64_wrap_is_billed_exactly() -> None:
    async with running(in_initial=2**64 - 5_000, out_initial=2**64 - 2_000) as run:
        assert await run.poll() == []
        events = await run.poll()  # 10 s at 1000 octets/s: both counters wrapped
    assert len(events) == 12
    for e in readings(events):
        assert e.value == run.truth(e) > 0


async def test_a_counter32_wrap_is_billed_exactly_when_a_router_has_no_hc_counters() -> None:
    async with running(client=NoHcClient(), in_initial=2**32 - 5_000) as run:
        assert await run.poll() == []
        events = await run.poll()
    ins = [e for e in readings(events) if e.direction == "in"]
    assert len(ins) == 6
    for e in ins:
        assert e.value == run.truth(e) == 10 * RATE


async def test_a_reboot_is_a_gap_then_billing_resumes_exactly() -> None:
    async with running() as run:
        await run.poll()
        await run.poll()
        run.clock.advance(5)
        run.fleet.reboot("rtr-0001")
        events = await run.poll(5)
        after = await run.poll()
    gaps = [e for e in events if isinstance(e, UsageGap)]
    assert {(g.device, g.reason) for g in gaps} == {("rtr-0001", "reboot")}
    assert len(gaps) == 6
    assert {e.device for e in readings(events)} == {"rtr-0002"}
    assert len(readings(after)) == 12
    for e in readings(after):
        assert e.value == run.truth(e)


async def test_after_a_reboot_the_traffic_since_the_boot_is_billed_to_the_byte(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with running() as run:
        # the agent's clock is the fleet's, so sysUpTime and sample times agree exactly
        monkeypatch.setattr(client_module, "time", SimpleNamespace(time_ns=run.clock))
        await run.poll()
        await run.poll()
        t0 = run.clock.ns // 10**6
        run.clock.advance(4)
        run.fleet.reboot("rtr-0001")
        boot_ns = run.clock.ns
        events = await run.poll(6)
        t1 = run.clock.ns // 10**6
    rebooted = [e for e in events if e.device == "rtr-0001"]
    gaps = [e for e in rebooted if isinstance(e, UsageGap)]
    since = readings(rebooted)
    assert len(gaps) == len(since) == 6
    assert {(g.reason, g.start_ms, g.end_ms) for g in gaps} == {("reboot", t0, boot_ns // 10**6)}
    for e in since:
        assert (e.start_ms, e.end_ms) == (boot_ns // 10**6, t1)
        assert e.value == run.since(e, boot_ns) == 6 * (RATE if e.direction == "in" else RATE // 2)


async def test_counters_cleared_after_a_reboot_are_billed_from_the_clear_to_the_byte(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with running(routers=1) as run:
        monkeypatch.setattr(client_module, "time", SimpleNamespace(time_ns=run.clock))
        await run.poll()
        await run.poll()
        t0 = run.clock.ns // 10**6
        run.clock.advance(3)
        run.fleet.reboot("rtr-0001")
        run.clock.advance(2)
        run.fleet.clear_counters("rtr-0001")  # ifCounterDiscontinuityTime: 2 s after boot
        cleared_ns = run.clock.ns
        events = await run.poll(5)
    gaps = [e for e in events if isinstance(e, UsageGap)]
    assert {(g.reason, g.start_ms, g.end_ms) for g in gaps} == {("reboot", t0, cleared_ns // 10**6)}
    for e in readings(events):
        assert e.start_ms == cleared_ns // 10**6
        assert (
            e.value == run.since(e, cleared_ns) == 5 * (RATE if e.direction == "in" else RATE // 2)
        )
    assert len(readings(events)) == 6


async def test_counters_cleared_without_a_reboot_are_a_discontinuity_gap_then_exact() -> None:
    async with running(routers=1) as run:
        await run.poll()
        await run.poll()
        run.clock.advance(4)
        run.fleet.clear_counters("rtr-0001")
        events = await run.poll(6)
        after = await run.poll()
    assert {(type(e).__name__, getattr(e, "reason", None)) for e in events} == {
        ("UsageGap", "discontinuity")
    }
    assert len(readings(after)) == 6
    for e in readings(after):
        assert e.value == run.truth(e) > 0


async def test_ifindex_renumbering_after_a_reboot_keeps_usage_with_the_interface_name() -> None:
    async with running(routers=1) as run:
        await run.poll()
        before = {(e.interface, e.direction): e.customer_id for e in readings(await run.poll())}
        run.fleet.reboot("rtr-0001", renumber=True)
        await run.poll()  # the reboot gap; interfaces walked again
        after = readings(await run.poll())
    assert {(e.interface, e.direction): e.customer_id for e in after} == before
    for e in after:
        assert e.value == run.truth(e)


async def test_a_dead_router_is_bridged_exactly_when_it_answers_and_the_others_are_billed() -> None:
    async with running() as run:
        await run.poll()
        run.fleet.set_dead("rtr-0002")
        events = await run.poll()
        assert {(e.device, type(e).__name__) for e in events} == {("rtr-0001", "UsageReading")}
        assert run.poller.status()["rtr-0002"]["lastErrorKind"] == "timeout"
        run.fleet.set_dead("rtr-0002", False)
        after = await run.poll()
    bridged = [e for e in after if e.device == "rtr-0002"]
    assert len(bridged) == 6
    for e in readings(bridged):
        assert e.value == run.truth(e, polls_back=2) > 0  # both intervals, to the byte
    assert len(readings(bridged)) == 6


async def test_a_slow_router_costs_only_its_own_deadline() -> None:
    async with running(poll_deadline=0.8) as run:
        await run.poll()
        run.fleet.set_faults("rtr-0002", simulator.FaultConfig(delay_ms=1500))
        started = anyio.current_time()
        events = await run.poll()
        elapsed = anyio.current_time() - started
    # rtr-0002 answers after 1.5 s: past its 0.8 s deadline (an error, not an event)
    assert {(e.device, type(e).__name__) for e in events} == {("rtr-0001", "UsageReading")}
    for e in readings(events):
        assert e.value == run.truth(e)
    assert run.poller.status()["rtr-0002"]["lastErrorKind"] == "deadline"
    assert elapsed < 1.5  # bounded by the slow router's deadline, not more


async def test_malformed_answers_are_never_a_reading_and_are_bridged_once_it_answers() -> None:
    async with running() as run:
        await run.poll()
        run.fleet.set_faults("rtr-0002", simulator.FaultConfig(malformed=1.0))
        events = await run.poll()
        assert {e.device for e in events} == {"rtr-0001"}
        assert run.poller.status()["rtr-0002"]["lastErrorKind"] == "malformed"
        run.fleet.set_faults("rtr-0002", None)
        after = await run.poll()
    bridged = readings([e for e in after if e.device == "rtr-0002"])
    assert len(bridged) == 6
    assert not [e for e in after if isinstance(e, UsageGap)]
    for e in bridged:
        assert e.value == run.truth(e, polls_back=2) > 0


async def test_a_no_such_instance_counter_is_a_gap_not_a_zero() -> None:
    async with running(routers=1) as run:
        await run.poll()
        state = run.poller.states["rtr-0001"]
        assert state.interfaces is not None
        gone = "ge-0/0/1"
        iface = state.interfaces[gone]
        # the interface vanished from the router: its ifIndex answers noSuchInstance
        state.interfaces[gone] = msgspec.structs.replace(iface, if_index=4242)
        events = await run.poll()
    gaps = [e for e in events if isinstance(e, UsageGap)]
    assert {(g.interface, g.reason) for g in gaps} == {(gone, "counter_missing")}
    assert all(e.value == run.truth(e) for e in readings(events))


async def test_an_error_in_one_chunk_of_a_large_get_is_a_poll_error_of_its_own_kind() -> None:
    # 12 interfaces: the counters take two GET chunks, fetched concurrently
    fleet = simulator.Fleet.generate(routers=1, interfaces=12, base_port=0, rate_bps=RATE)
    client = FailingChunkClient()
    metrics = AgentMetrics()
    try:
        async with fleet.serve(host="127.0.0.1"):
            (e,) = fleet.endpoints
            config = config_from_dict(
                {
                    "agent_id": "sim",
                    "targets": [
                        {"name": e.router, "host": e.host, "port": e.port, "community": e.community}
                    ],
                }
            )
            poller = Poller(config, client, lambda r: _noop(r), metrics=metrics)
            with anyio.fail_after(20):
                with pytest.raises(SnmpMalformedResponse):
                    await client.poll_counters(config.targets[0], list(range(1, 13)))
                await poller.poll_all()
    finally:
        await client.aclose()
    assert sample(metrics, "resmon_agent_poll_errors_total", target=e.router, kind="malformed") == 1
    assert sample(metrics, "resmon_agent_poll_errors_total", target=e.router, kind="internal") == 0


async def _noop(records: list[KafkaRecord]) -> None:
    del records
