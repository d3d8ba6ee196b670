"""Scheduling: the global concurrency bound, the per-device request limit, and
exponential backoff of dead targets, visible in status and metrics, with no hole in
the reported timeline."""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import anyio
import pytest
from _clock import ManualClock
from _metrics import sample

from edge_agent.config import TargetConfig, config_from_dict
from edge_agent.metrics import AgentMetrics
from edge_agent.poller import Poller
from edge_agent.snmp import CounterSample
from edge_agent.snmp.client import SYS_UPTIME, CounterClient, Oid, Value
from protocol import KafkaRecord, UsageGap, UsageReading, decode_record

from .conftest import FakeClient, FakeRouter, tick

pytestmark = pytest.mark.anyio


class Concurrency:
    def __init__(self) -> None:
        self.now = 0
        self.max = 0

    async def hold(self, seconds: float) -> None:
        self.now += 1
        self.max = max(self.max, self.now)
        try:
            await anyio.sleep(seconds)
        finally:
            self.now -= 1


async def test_at_most_max_concurrency_targets_are_polled_at_once() -> None:
    names = [f"r{i}" for i in range(6)]
    clock = ManualClock()
    routers = {n: FakeRouter({"ge-0": "CUST:acme"}) for n in names}
    seen = Concurrency()

    class SlowClient(FakeClient):
        async def poll_counters(
            self, target: TargetConfig, if_indexes: Sequence[int]
        ) -> CounterSample:
            await seen.hold(0.05)
            return await super().poll_counters(target, if_indexes)

    config = config_from_dict(
        {
            "agent_id": "a",
            "max_concurrency": 2,
            "targets": [{"name": n, "host": "192.0.2.1", "community": "c"} for n in names],
        }
    )

    async def sink(records: list[KafkaRecord]) -> None:
        pass

    poller = Poller(config, SlowClient(routers, clock), sink)
    with anyio.fail_after(5):
        await poller.poll_all()
    assert seen.max == 2
    assert all(s["state"] == "ok" for s in poller.status().values())


async def test_requests_to_one_device_stay_within_its_max_in_flight() -> None:
    seen = Concurrency()

    class Chunked(CounterClient):
        async def _get_chunk(self, target: TargetConfig, oids: Sequence[Oid]) -> dict[Oid, Value]:
            await seen.hold(0.02)
            return {
                oid: ("TimeTicks", 5) if oid == SYS_UPTIME else ("Counter64", oid[-1])
                for oid in oids
            }

    target = config_from_dict(
        {
            "agent_id": "a",
            "targets": [{"name": "r", "host": "h", "community": "c", "max_in_flight": 3}],
        }
    ).targets[0]
    with anyio.fail_after(5):
        sample = await Chunked().poll_counters(target, list(range(1, 101)))  # 10 GETs
    assert seen.max == 3
    assert len(sample.interfaces) == 100
    assert sample.interfaces[77].in_octets is not None
    assert sample.interfaces[77].in_octets.value == 77


async def test_a_dead_router_is_backed_off_exponentially_and_its_outage_is_bridged_exactly() -> (
    None
):
    clock = ManualClock()
    routers = {n: FakeRouter({"ge-0": "CUST:acme"}) for n in ("r1", "r2")}
    records: list[KafkaRecord] = []

    async def sink(batch: list[KafkaRecord]) -> None:
        records.extend(batch)

    config = config_from_dict(
        {
            "agent_id": "a",
            "backoff_after_failures": 2,
            "backoff_max": 120,
            "targets": [{"name": n, "host": "192.0.2.1", "community": "c"} for n in routers],
        }
    )
    metrics = AgentMetrics()
    poller = Poller(
        config,
        FakeClient(routers, clock),
        sink,
        metrics=metrics,
        clock=clock.seconds,
        monotonic=clock.seconds,
    )

    def attempts() -> float:
        return sample(metrics, "resmon_agent_polls_total", target="r2")  # type: ignore[no-any-return]

    async def step(seconds: int = 30) -> None:
        tick(clock, routers, seconds)
        await poller.poll_all()

    with anyio.fail_after(5):
        await poller.poll_all()  # baselines
        routers["r2"].dead = True
        routers["r2"].add("ge-0", "in", 12_345)  # carried while the agent cannot see it
        await step()  # failure 1: tried again next cycle
        assert poller.status()["r2"]["state"] == "failing"
        await step()  # failure 2: backed off for one interval (60 s)
        assert poller.status()["r2"]["state"] == "backoff"
        assert poller.status()["r1"]["state"] == "ok"
        assert sample(metrics, "resmon_agent_target_backoff_seconds", target="r2") == 60
        assert sample(metrics, "resmon_agent_target_up", target="r2") == 0
        assert attempts() == 3
        await step()  # skipped
        assert attempts() == 3
        await step()  # 60 s later: tried, failure 3, backed off for 120 s (the maximum)
        assert attempts() == 4
        assert sample(metrics, "resmon_agent_target_backoff_seconds", target="r2") == 120
        for _ in range(3):
            await step()
        assert attempts() == 4
        assert sample(metrics, "resmon_agent_polls_skipped_total", target="r2") == 4
        assert sample(metrics, "resmon_agent_poll_errors_total", target="r2", kind="timeout") == 3
        assert not [r for r in records if b"r2" in r.value]  # no event while it is dead
        routers["r2"].add("ge-0", "in", 678)
        routers["r2"].dead = False
        answered = clock.ms + 30_000
        await step()  # tried again: it answers
        assert attempts() == 5
        assert poller.status()["r2"]["state"] == "ok"
        assert sample(metrics, "resmon_agent_target_up", target="r2") == 1
        await step()
    events = [decode_record(r.value, r.headers).data for r in records]
    r2 = [e for e in events if isinstance(e, UsageReading | UsageGap) and e.device == "r2"]
    for direction in ("in", "out"):
        timeline = sorted(
            (e.start_ms, e.end_ms, type(e).__name__) for e in r2 if e.direction == direction
        )
        # consecutive, no hole and no overlap, from the first baseline to the last poll:
        # the failed and skipped polls are bridged by one exact reading
        assert all(a[1] == b[0] for a, b in itertools.pairwise(timeline))
        assert timeline == [
            (1_700_000_000_000, answered, "UsageReading"),
            (answered, clock.ms, "UsageReading"),
        ]
    bridged = [e for e in r2 if e.start_ms == 1_700_000_000_000]
    assert {(e.direction, e.value) for e in bridged if isinstance(e, UsageReading)} == {
        ("in", 12_345 + 678),
        ("out", 0),
    }
