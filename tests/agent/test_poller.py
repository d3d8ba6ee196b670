"""The poller turns counters into exact readings, per target; a failed poll is bridged
by the next answer, and reboots and missing counters are gaps."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import pytest
import structlog
from _clock import ManualClock
from _metrics import sample

from edge_agent.config import AgentConfig, config_from_dict
from edge_agent.metrics import AgentMetrics
from edge_agent.poller import Poller
from protocol import KafkaRecord, UsageGap, UsageReading, decode_record

from .conftest import FakeClient, FakeRouter, Snmpd, tick


def make_config(*names: str, **extra: object) -> AgentConfig:
    return config_from_dict(
        {
            "agent_id": "agent-1",
            "targets": [{"name": n, "host": "192.0.2.1", "community": "public"} for n in names],
            **extra,
        }
    )


class Setup:
    def __init__(self, *names: str, **extra: object) -> None:
        self.clock = ManualClock()
        self.routers = {
            n: FakeRouter({"ge-0/0/0": "CUST:acme", "ge-0/0/1": "CUST:bob:c2", "lo0": ""})
            for n in names
        }
        self.client = FakeClient(self.routers, self.clock)
        self.records: list[KafkaRecord] = []
        self.metrics = AgentMetrics()

        async def sink(records: list[KafkaRecord]) -> None:
            self.records += records

        self.poller = Poller(
            make_config(*names, **extra),
            self.client,
            sink,
            metrics=self.metrics,
            clock=self.clock.seconds,
        )

    def events(self) -> list[UsageReading | UsageGap]:
        out = []
        for r in self.records:
            data = decode_record(r.value, r.headers).data
            assert isinstance(data, UsageReading | UsageGap)
            out.append(data)
        self.records.clear()
        return out

    def tick(self, seconds: int = 60) -> None:
        tick(self.clock, self.routers, seconds)


@pytest.mark.anyio
async def test_the_second_poll_yields_exact_readings_per_interface_and_direction() -> None:
    s = Setup("r1")
    with anyio.fail_after(5):
        await s.poller.poll_all()
        assert s.events() == []  # first poll: baselines only
        t0 = s.clock.ms
        s.tick()
        s.routers["r1"].add("ge-0/0/0", "in", 123_456)
        s.routers["r1"].add("ge-0/0/1", "out", 42)
        await s.poller.poll_all()
    readings = {(e.interface, e.direction): e for e in s.events()}
    assert set(readings) == {
        ("ge-0/0/0", "in"),
        ("ge-0/0/0", "out"),
        ("ge-0/0/1", "in"),
        ("ge-0/0/1", "out"),
    }
    acme_in = readings[("ge-0/0/0", "in")]
    assert isinstance(acme_in, UsageReading)
    assert acme_in.value == 123_456
    assert acme_in.unit == "byte"
    assert acme_in.kind == "delta"
    assert (acme_in.start_ms, acme_in.end_ms) == (t0, s.clock.ms)
    assert acme_in.device == "r1"
    assert acme_in.resource_key == "acme/bandwidth"
    bob_out = readings[("ge-0/0/1", "out")]
    assert isinstance(bob_out, UsageReading)
    assert bob_out.value == 42
    assert bob_out.resource_key == "bob/bandwidth/c2"


@pytest.mark.anyio
async def test_events_carry_the_agent_as_cloudevents_source_and_stable_ids() -> None:
    s = Setup("r1")
    with anyio.fail_after(5):
        await s.poller.poll_all()
        s.tick()
        await s.poller.poll_all()
    record = s.records[0]
    decoded = decode_record(record.value, record.headers)
    assert decoded.source == "urn:resmon:agent:agent-1"
    assert decoded.id == record.event_id
    assert record.key == b"acme/bandwidth"


@pytest.mark.anyio
async def test_the_configured_tenant_travels_in_every_cloudevent() -> None:
    s = Setup("r1", tenant_id="acme-isp")
    with anyio.fail_after(5):
        await s.poller.poll_all()
        s.tick()
        await s.poller.poll_all()
    assert s.records
    for record in s.records:
        assert b'"tenantId":"acme-isp"' in record.value
    assert {e.tenant_id for e in s.events()} == {"acme-isp"}
    untagged = Setup("r1")
    with anyio.fail_after(5):
        await untagged.poller.poll_all()
        untagged.tick()
        await untagged.poller.poll_all()
    assert {e.tenant_id for e in untagged.events()} == {None}


@pytest.mark.anyio
async def test_a_dead_router_is_an_error_then_bridged_exactly_and_does_not_stop_the_others() -> (
    None
):
    s = Setup("r1", "r2")
    with anyio.fail_after(5):
        await s.poller.poll_all()
        t0 = s.clock.ms
        s.tick()
        s.routers["r2"].dead = True
        s.routers["r1"].add("ge-0/0/0", "in", 10)
        s.routers["r2"].add("ge-0/0/0", "in", 1_000)
        await s.poller.poll_all()
        events = s.events()
        # the failure is an error in the metrics and /healthz, not an event
        assert all(isinstance(e, UsageReading) for e in events)
        assert {e.device for e in events} == {"r1"}
        assert sample(s.metrics, "resmon_agent_poll_errors_total", target="r2", kind="timeout") == 1
        assert s.poller.status()["r2"]["state"] == "failing"
        assert s.poller.status()["r2"]["lastErrorKind"] == "timeout"
        s.tick()
        s.routers["r2"].dead = False
        s.routers["r2"].add("ge-0/0/0", "in", 234)
        await s.poller.poll_all()
    r2 = {(e.interface, e.direction): e for e in s.events() if e.device == "r2"}
    assert len(r2) == 4
    # one exact reading over both intervals: not a byte lost, none invented
    assert all(isinstance(e, UsageReading) for e in r2.values())
    assert {(e.start_ms, e.end_ms) for e in r2.values()} == {(t0, s.clock.ms)}
    acme_in = r2[("ge-0/0/0", "in")]
    assert isinstance(acme_in, UsageReading)
    assert acme_in.value == 1_234
    assert s.poller.status()["r2"]["state"] == "ok"


@pytest.mark.anyio
async def test_every_line_about_a_router_names_it_and_no_other() -> None:
    s = Setup("r1", "r2")
    with anyio.fail_after(5), structlog.testing.capture_logs() as logs:
        await s.poller.poll_all()  # discovery of both
        s.routers["r2"].dead = True
        for _ in range(4):  # failures, then backoff
            s.tick()
            await s.poller.poll_all()
    about = {e["event"]: e.get("target") for e in logs if e["event"] != "poll_cycle"}
    assert about.keys() >= {"interfaces_discovered", "poll_failed", "target_backed_off"}
    failing = [e for e in logs if e["event"] in {"poll_failed", "target_backed_off"}]
    assert failing
    assert {e["target"] for e in failing} == {"r2"}
    discovered = [e for e in logs if e["event"] == "interfaces_discovered"]
    assert sorted(e["target"] for e in discovered) == ["r1", "r2"]
    assert all(e["component"] == "edge_agent.poller" for e in discovered + failing)


@pytest.mark.anyio
async def test_a_hanging_router_costs_only_its_own_deadline() -> None:
    s = Setup("r1", "r2", poll_deadline=0.2)
    with anyio.fail_after(5):
        await s.poller.poll_all()
        s.tick()
        s.routers["r2"].hang = True
        await s.poller.poll_all()
    events = s.events()
    assert {(e.device, type(e).__name__) for e in events} == {("r1", "UsageReading")}
    assert sample(s.metrics, "resmon_agent_poll_errors_total", target="r2", kind="deadline") == 1


@pytest.mark.anyio
async def test_a_reboot_with_renumbering_is_a_gap_and_usage_stays_with_the_interface_name() -> None:
    s = Setup("r1")
    with anyio.fail_after(5):
        await s.poller.poll_all()
        t0 = s.clock.ms
        s.tick()
        s.routers["r1"].reboot(renumber=True)  # 0.1 s before the next poll
        s.routers["r1"].add("ge-0/0/0", "in", 500)
        await s.poller.poll_all()
        events = s.events()
        # up to the boot: unknown; since the boot: the counters, billed to the same names
        boot = s.clock.ms - 100
        assert {(type(e).__name__, e.start_ms, e.end_ms) for e in events} == {
            ("UsageGap", t0, boot),
            ("UsageReading", boot, s.clock.ms),
        }
        since_boot = {(e.interface, e.direction): e for e in events if isinstance(e, UsageReading)}
        assert since_boot[("ge-0/0/0", "in")].value == 500
        assert since_boot[("ge-0/0/0", "in")].resource_key == "acme/bandwidth"
        s.tick()
        s.routers["r1"].add("ge-0/0/0", "in", 700)
        await s.poller.poll_all()
    readings = {(e.interface, e.direction): e for e in s.events()}
    acme_in = readings[("ge-0/0/0", "in")]
    assert isinstance(acme_in, UsageReading)
    assert acme_in.value == 700
    assert acme_in.resource_key == "acme/bandwidth"


@pytest.mark.anyio
async def test_a_reboot_during_an_outage_is_a_gap_up_to_the_boot_even_if_uptime_grew() -> None:
    s = Setup("r1")
    with anyio.fail_after(5):
        await s.poller.poll_all()
        t0 = s.clock.ms
        walks = s.client.walks
        s.routers["r1"].dead = True
        s.tick(3600)
        await s.poller.poll_all()  # fails: nothing reported
        assert s.events() == []
        s.routers["r1"].reboot(renumber=True)
        s.routers["r1"].add("ge-0/0/0", "in", 500)
        s.tick(1800)  # sysUpTime is now larger than at t0, but shorter than the outage
        s.routers["r1"].dead = False
        await s.poller.poll_all()
        events = s.events()
        assert s.client.walks == walks + 1  # the reboot was noticed: interfaces mapped again
        boot = s.clock.ms - 1_800_000 - 100
        gaps = [e for e in events if isinstance(e, UsageGap)]
        assert len(gaps) == 4
        assert all(g.reason == "reboot" for g in gaps)
        assert {(g.start_ms, g.end_ms) for g in gaps} == {(t0, boot)}
        since_boot = {(e.interface, e.direction): e for e in events if isinstance(e, UsageReading)}
        assert {(e.start_ms, e.end_ms) for e in since_boot.values()} == {(boot, s.clock.ms)}
        assert since_boot[("ge-0/0/0", "in")].value == 500
        s.tick()
        s.routers["r1"].add("ge-0/0/0", "in", 700)
        await s.poller.poll_all()
    readings = {(e.interface, e.direction): e for e in s.events()}
    acme_in = readings[("ge-0/0/0", "in")]
    assert isinstance(acme_in, UsageReading)
    assert acme_in.value == 700
    assert acme_in.resource_key == "acme/bandwidth"


@pytest.mark.anyio
async def test_a_reboot_gap_says_reboot() -> None:
    s = Setup("r1")
    with anyio.fail_after(5):
        await s.poller.poll_all()
        s.tick()
        s.routers["r1"].reboot()
        await s.poller.poll_all()
    assert {e.reason for e in s.events() if isinstance(e, UsageGap)} == {"reboot"}


@pytest.mark.anyio
async def test_a_missing_counter_is_a_gap_not_a_zero_reading() -> None:
    s = Setup("r1")
    with anyio.fail_after(5):
        await s.poller.poll_all()
        s.tick()
        s.routers["r1"].missing.add(("ge-0/0/0", "in"))
        await s.poller.poll_all()
    acme_in = [e for e in s.events() if (e.interface, e.direction) == ("ge-0/0/0", "in")]
    assert len(acme_in) == 1
    assert isinstance(acme_in[0], UsageGap)
    assert acme_in[0].reason == "counter_missing"


@pytest.mark.anyio
async def test_the_run_loop_polls_at_aligned_ticks_until_cancelled() -> None:
    s = Setup("r1", interval=0.05, jitter=0)
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            await tg.start(s.poller.run)
            await s.poller.wait_for_cycle(3)
            tg.cancel_scope.cancel()
    assert s.client.walks == 1
    assert s.poller.next_tick(100.0) == pytest.approx(100.05)
    assert s.poller.next_tick(100.01) == pytest.approx(100.05)


@pytest.mark.snmp
@pytest.mark.anyio
async def test_poll_errors_never_log_or_send_the_community(snmpd: Snmpd) -> None:
    """With the real pysnmp client: a dead router and one that ignores a wrong community."""
    from edge_agent.snmp import PysnmpClient

    canary = "CANARY-s3cr3t"
    host, port = snmpd
    config = config_from_dict(
        {
            "agent_id": "agent-1",
            "targets": [
                {"name": name, "host": h, "port": p, "community": canary, "timeout": 0.2}
                for name, h, p in [("dead", "127.0.0.1", 1), ("wrong", host, port)]
            ],
        }
    )
    records: list[KafkaRecord] = []

    async def sink(batch: list[KafkaRecord]) -> None:
        records.extend(batch)

    # a first poll through a fake client gives both targets baselines; the failures
    # below keep them (no event) and log the real error message
    clock = ManualClock()
    routers = {n: FakeRouter({"ge-0": "CUST:acme"}) for n in ("dead", "wrong")}
    poller = Poller(config, FakeClient(routers, clock), sink, metrics=AgentMetrics())
    await poller.poll_all()
    client = PysnmpClient()
    poller.client = client
    try:
        with anyio.fail_after(10), structlog.testing.capture_logs() as logs:
            await poller.poll_all()
    finally:
        await client.aclose()
    assert [entry["event"] for entry in logs].count("poll_failed") == 2
    assert records == []
    assert canary not in repr(logs)
    assert all(canary.encode() not in r.value for r in records)
    assert all(canary.encode() not in v for r in records for _, v in r.headers)


@pytest.mark.anyio
async def test_after_an_agent_restart_the_unmeasured_time_is_an_agent_restart_gap(
    tmp_path: Path,
) -> None:
    checkpoint = tmp_path / "poller.checkpoint"
    synced: list[int] = []
    s = Setup("r1")
    s.poller = Poller(
        s.poller.config,
        s.client,
        s.poller.sink,
        clock=s.clock.seconds,
        checkpoint=checkpoint,
        before_checkpoint=lambda: synced.append(1),
    )
    with anyio.fail_after(5):
        await s.poller.poll_all()
        s.tick()
        await s.poller.poll_all()
        last_end = s.clock.ms
        assert synced  # events are made durable before the checkpoint is written
        s.events()
        # the agent restarts: a new poller, the same checkpoint
        restarted = Poller(
            s.poller.config, s.client, s.poller.sink, clock=s.clock.seconds, checkpoint=checkpoint
        )
        s.tick(300)
        await restarted.poll_all()
        gaps = s.events()
        assert len(gaps) == 4
        assert all(isinstance(g, UsageGap) and g.reason == "agent_restart" for g in gaps)
        assert {(g.start_ms, g.end_ms) for g in gaps} == {(last_end, s.clock.ms)}
        s.tick()
        s.routers["r1"].add("ge-0/0/0", "in", 99)
        await restarted.poll_all()
    readings = {(e.interface, e.direction): e for e in s.events()}
    assert isinstance(readings[("ge-0/0/0", "in")], UsageReading)
    assert readings[("ge-0/0/0", "in")].value == 99


def test_an_unreadable_checkpoint_is_ignored(tmp_path: Path) -> None:
    checkpoint = tmp_path / "poller.checkpoint"
    checkpoint.write_bytes(b"\xff\x00garbage")
    s = Setup("r1")
    poller = Poller(s.poller.config, s.client, s.poller.sink, checkpoint=checkpoint)
    assert poller.states["r1"].tracks == {}


@pytest.mark.anyio
async def test_an_unexpected_client_error_fails_only_that_router() -> None:
    s = Setup("r1", "r2")

    with anyio.fail_after(5):
        await s.poller.poll_all()
        s.tick()
        s.routers["r2"].explode = True
        with structlog.testing.capture_logs():
            await s.poller.poll_all()
    events = s.events()
    assert {(e.device, type(e).__name__) for e in events} == {("r1", "UsageReading")}
    assert sample(s.metrics, "resmon_agent_poll_errors_total", target="r2", kind="internal") == 1
    assert s.poller.status()["r2"]["lastErrorKind"] == "internal"


# -- nothing stops polling or skips a reading without a log line and a counter ------------


@pytest.mark.anyio
async def test_an_error_while_accounting_one_router_fails_only_its_poll_and_the_next_bridges_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    s = Setup("r1", "r2")
    encode = Poller._encode
    broken = {"r2"}

    def flaky_encode(self: Poller, target: Any, *args: Any) -> KafkaRecord:
        if target.name in broken:
            raise ValueError("a bug in the accounting")
        return encode(self, target, *args)

    monkeypatch.setattr(Poller, "_encode", flaky_encode)
    with anyio.fail_after(5):
        await s.poller.poll_all()
        t0 = s.clock.ms
        s.tick()
        s.routers["r2"].add("ge-0/0/0", "in", 100)
        with structlog.testing.capture_logs() as logs:
            await s.poller.poll_all()
        assert {e.device for e in s.events()} == {"r1"}
        assert "poll_crashed" in [entry["event"] for entry in logs]
        assert (
            sample(s.metrics, "resmon_agent_poll_errors_total", target="r2", kind="internal") == 1
        )
        assert s.poller.status()["r2"]["state"] == "failing"
        broken.clear()
        s.tick()
        s.routers["r2"].add("ge-0/0/0", "in", 23)
        await s.poller.poll_all()
    r2 = {(e.interface, e.direction): e for e in s.events() if e.device == "r2"}
    assert {(e.start_ms, e.end_ms) for e in r2.values()} == {(t0, s.clock.ms)}
    assert isinstance(r2[("ge-0/0/0", "in")], UsageReading)
    assert r2[("ge-0/0/0", "in")].value == 123


@pytest.mark.anyio
async def test_a_sink_that_raises_fails_that_poll_only_and_the_next_cycle_runs() -> None:
    s = Setup("r1")
    calls = 0

    async def exploding_sink(records: list[KafkaRecord]) -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("sink bug")
        s.records.extend(records)

    s.poller.sink = exploding_sink
    with anyio.fail_after(5):
        await s.poller.poll_all()  # baselines: nothing to sink
        s.tick()
        with structlog.testing.capture_logs() as logs:
            await s.poller.poll_all()
        assert "poll_crashed" in [entry["event"] for entry in logs]
        assert (
            sample(s.metrics, "resmon_agent_poll_errors_total", target="r1", kind="internal") == 1
        )
        s.tick()
        await s.poller.poll_all()
    assert s.poller.cycles == 3
    assert len(s.events()) == 4


@pytest.mark.anyio
async def test_samples_taken_while_the_agent_clock_is_behind_are_logged_counted_and_bridged() -> (
    None
):
    s = Setup("r1")
    with anyio.fail_after(5):
        await s.poller.poll_all()
        s.tick()
        await s.poller.poll_all()
        t1 = s.clock.ms
        s.events()
        s.clock.ms -= 30_000  # the agent's clock steps back
        s.routers["r1"].add("ge-0/0/0", "in", 10)
        with structlog.testing.capture_logs() as logs:
            await s.poller.poll_all()
        assert s.events() == []
        assert "samples_ignored" in [entry["event"] for entry in logs]
        assert sample(s.metrics, "resmon_agent_samples_ignored_total", target="r1") == 4
        s.clock.ms = t1 + 60_000
        s.routers["r1"].add("ge-0/0/0", "in", 5)
        await s.poller.poll_all()
    readings = {(e.interface, e.direction): e for e in s.events()}
    assert isinstance(readings[("ge-0/0/0", "in")], UsageReading)
    assert readings[("ge-0/0/0", "in")].value == 15
    assert (readings[("ge-0/0/0", "in")].start_ms, readings[("ge-0/0/0", "in")].end_ms) == (
        t1,
        t1 + 60_000,
    )


@pytest.mark.anyio
async def test_an_interface_that_leaves_the_mapping_and_returns_reports_its_absence_as_a_gap() -> (
    None
):
    s = Setup("r1", rediscover_interval=1e-9)  # walk the table on every poll
    with anyio.fail_after(5):
        await s.poller.poll_all()
        s.tick()
        await s.poller.poll_all()
        last_report = s.clock.ms
        s.events()
        s.routers["r1"].aliases["ge-0/0/1"] = ""  # no longer a customer's
        s.tick()
        with structlog.testing.capture_logs() as logs:
            await s.poller.poll_all()
        assert {e.interface for e in s.events()} == {"ge-0/0/0"}
        assert "interfaces_unmapped" in [entry["event"] for entry in logs]
        assert sample(s.metrics, "resmon_agent_counters_unmapped_total", target="r1") == 2
        s.routers["r1"].aliases["ge-0/0/1"] = "CUST:bob:c2"
        s.tick()
        await s.poller.poll_all()
        back = [e for e in s.events() if e.interface == "ge-0/0/1"]
        assert len(back) == 2
        assert all(isinstance(g, UsageGap) and g.reason == "discontinuity" for g in back)
        assert {(g.start_ms, g.end_ms) for g in back} == {(last_report, s.clock.ms)}
        s.tick()
        s.routers["r1"].add("ge-0/0/1", "out", 77)
        await s.poller.poll_all()
    readings = {(e.interface, e.direction): e for e in s.events()}
    assert isinstance(readings[("ge-0/0/1", "out")], UsageReading)
    assert readings[("ge-0/0/1", "out")].value == 77


async def run_cycles(s: Setup, count: int, hold_s: float) -> list[dict[str, Any]]:
    """Run the loop on the manual clock until ``count`` cycles are done; the first
    cycle's sink holds it ``hold_s`` seconds (the clock moves on meanwhile)."""
    s.clock.ms = 1_700_000_000_000  # on a tick
    slow = True

    async def slow_sink(records: list[KafkaRecord]) -> None:
        nonlocal slow
        if slow:
            slow = False
            s.clock.ms += round(hold_s * 1000)
        s.records.extend(records)

    s.poller.sink = slow_sink
    with anyio.fail_after(5), structlog.testing.capture_logs() as logs:
        await s.poller.poll_all()  # baselines, so the next cycle has records to store
        s.clock.ms += 1  # the loop's first cycle samples later than the baselines
        async with anyio.create_task_group() as tg:
            await tg.start(s.poller.run)
            await s.poller.wait_for_cycle(count)
            tg.cancel_scope.cancel()
    return logs


@pytest.mark.anyio
async def test_a_cycle_that_ends_after_the_next_tick_starts_the_next_at_once_without_skipping() -> (
    None
):
    s = Setup("r1", interval=10, jitter=0)
    # the loop's first cycle ends 0.5 s after the next tick; the second starts at once
    # (the clock does not move, so waiting for a tick would never end)
    logs = await run_cycles(s, 3, hold_s=10.5)
    assert "poll_cycle_overran" not in [entry["event"] for entry in logs]
    assert sample(s.metrics, "resmon_agent_poll_ticks_missed_total") == 0


@pytest.mark.anyio
async def test_a_cycle_that_runs_past_more_than_one_tick_skips_them_logged_and_counted() -> None:
    s = Setup("r1", interval=10, jitter=0)
    logs = await run_cycles(s, 3, hold_s=39.998)  # past the ticks at +10, +20 and +30
    assert "poll_cycle_overran" in [entry["event"] for entry in logs]
    # the ticks at +10 and +20 are skipped; the one at +30 runs late, at once
    assert sample(s.metrics, "resmon_agent_poll_ticks_missed_total") == 2


@pytest.mark.anyio
async def test_a_failed_sync_skips_the_checkpoint_and_polling_goes_on(tmp_path: Path) -> None:
    checkpoint = tmp_path / "poller.checkpoint"

    def full_disk() -> None:
        raise OSError(28, "No space left on device")

    s = Setup("r1")
    s.poller = Poller(
        s.poller.config,
        s.client,
        s.poller.sink,
        metrics=s.metrics,
        clock=s.clock.seconds,
        checkpoint=checkpoint,
        before_checkpoint=full_disk,
    )
    with anyio.fail_after(5):
        await s.poller.poll_all()
        s.tick()
        with structlog.testing.capture_logs() as logs:
            await s.poller.poll_all()
    assert len(s.events()) == 4
    assert not checkpoint.exists()  # the events were not made durable: no checkpoint
    assert "checkpoint_skipped" in [entry["event"] for entry in logs]
    assert sample(s.metrics, "resmon_agent_checkpoint_errors_total", op="sync") == 2


def test_an_unreadable_checkpoint_is_logged_and_counted(tmp_path: Path) -> None:
    checkpoint = tmp_path / "poller.checkpoint"
    checkpoint.write_bytes(b"\xff\x00garbage")
    s = Setup("r1")
    with structlog.testing.capture_logs() as logs:
        Poller(s.poller.config, s.client, s.poller.sink, metrics=s.metrics, checkpoint=checkpoint)
    assert "checkpoint_unreadable" in [entry["event"] for entry in logs]
    assert sample(s.metrics, "resmon_agent_checkpoint_errors_total", op="read") == 1
