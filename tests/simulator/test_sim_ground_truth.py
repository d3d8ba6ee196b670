"""Counters are a pure function of time, and the fleet tells the truth about them."""

from __future__ import annotations

import itertools

import pytest
from _clock import ManualClock
from hypothesis import given
from hypothesis import strategies as st
from simtest_helpers import T0, ask, request

from simulator import (
    OIDS,
    Fleet,
    FleetConfig,
    InterfaceConfig,
    RouterConfig,
    SimulatorError,
    UnknownRouterError,
)
from simulator._ber import Value
from snmpber import COUNTER32, GET, GETNEXT, TIMETICKS

NS = 1_000_000_000


def test_counters_grow_at_the_configured_rate_in_each_direction(
    small_fleet: Fleet, clock: ManualClock
) -> None:
    assert small_fleet.octets("r1", "ge-0/0/1", "in") == 0
    t = clock.advance(3.5)
    assert small_fleet.octets("r1", "ge-0/0/1", "in") == 3_500_000_000
    assert small_fleet.octets("r1", "ge-0/0/0", "out", at=t) == 875
    assert small_fleet.bytes_between("r1", "ge-0/0/1", "in", T0, t) == 3_500_000_000


def test_counter32_wraps_while_the_64_bit_counter_keeps_growing(
    small_fleet: Fleet, clock: ManualClock
) -> None:
    agent = small_fleet.agent("r1")
    before = ask(agent, request(GET, (*OIDS.ifInOctets, 1))).pdu.varbinds[0][1]
    clock.advance(1)
    after = ask(agent, request(GET, (*OIDS.ifInOctets, 1))).pdu.varbinds[0][1]
    assert before == Value(COUNTER32, 2**32 - 500)
    assert after == Value(COUNTER32, 500)
    assert (after.value - before.value) % 2**32 == small_fleet.bytes_between(  # type: ignore[operator]
        "r1", "ge-0/0/0", "in", T0, clock.ns
    )


def test_counter64_wraps_at_two_to_the_64(clock: ManualClock) -> None:
    iface = InterfaceConfig(name="e0", in_rate=100, in_initial=2**64 - 50)
    fleet = Fleet(
        FleetConfig(base_port=0, routers=[RouterConfig(name="r", interfaces=[iface])]), clock=clock
    )
    assert fleet.octets("r", "e0", "in", at=T0 + NS) == 50


def test_ramp_increases_the_rate_linearly(small_fleet: Fleet) -> None:
    # rate 5 octets/s, ramp 2 octets/s per s: after 10 s, 5*10 + 2*10*10/2 = 150
    assert small_fleet.octets("r1", "xe-1/0/0", "in", at=T0 + 10 * NS) == 150
    assert small_fleet.bytes_between("r1", "xe-1/0/0", "in", T0 + 10 * NS, T0 + 20 * NS) == 350


@given(st.lists(st.integers(0, 10**13), min_size=2, max_size=20))
def test_counter_deltas_between_readings_sum_to_bytes_between(offsets: list[int]) -> None:
    clock = ManualClock()
    iface = InterfaceConfig(name="e0", in_rate=123_456_789, in_ramp=777, in_initial=2**32 - 1)
    fleet = Fleet(
        FleetConfig(base_port=0, routers=[RouterConfig(name="r", interfaces=[iface])]), clock=clock
    )
    times = sorted(T0 + o for o in offsets)
    readings = [fleet.octets("r", "e0", "in", at=t) for t in times]
    deltas = [(b - a) % 2**32 for a, b in itertools.pairwise(readings)]
    total = fleet.bytes_between("r", "e0", "in", times[0], times[-1])
    assert sum(deltas) % 2**32 == total % 2**32
    assert all(b >= a for a, b in itertools.pairwise(readings))
    assert total == sum(
        fleet.bytes_between("r", "e0", "in", a, b) for a, b in itertools.pairwise(times)
    )


def test_reboot_resets_uptime_and_counters_but_traffic_keeps_counting(
    small_fleet: Fleet, clock: ManualClock
) -> None:
    clock.advance(100)
    before = small_fleet.octets("r1", "ge-0/0/1", "in")
    assert small_fleet.uptime_ticks("r1") == 10_000
    small_fleet.reboot("r1")
    reboot_at = clock.ns
    assert small_fleet.uptime_ticks("r1") == 0
    assert small_fleet.octets("r1", "ge-0/0/1", "in") == 0
    clock.advance(2)
    reply = ask(small_fleet.agent("r1"), request(GET, (*OIDS.sysUpTime, 0)))
    assert reply.pdu.varbinds[0][1] == Value(TIMETICKS, 200)
    assert small_fleet.octets("r1", "ge-0/0/1", "in") == 2 * 10**9
    assert small_fleet.bytes_between("r1", "ge-0/0/1", "in", T0, clock.ns) == 102 * 10**9
    # history stays a pure function of time
    assert small_fleet.octets("r1", "ge-0/0/1", "in", at=reboot_at - 1) == before - 1


def test_clearing_counters_restarts_them_at_zero_and_sets_if_counter_discontinuity_time(
    small_fleet: Fleet, clock: ManualClock
) -> None:
    disc = (*OIDS.ifCounterDiscontinuityTime, 2)
    clock.advance(100)
    assert ask(small_fleet.agent("r1"), request(GET, disc)).pdu.varbinds[0][1] == Value(
        TIMETICKS, 0
    )
    small_fleet.clear_counters("r1")
    assert small_fleet.octets("r1", "ge-0/0/1", "in") == 0
    assert small_fleet.uptime_ticks("r1") == 10_000  # no reboot
    clock.advance(2)
    reply = ask(small_fleet.agent("r1"), request(GET, disc))
    assert reply.pdu.varbinds[0][1] == Value(TIMETICKS, 10_000)  # sysUpTime of the clear
    assert small_fleet.octets("r1", "ge-0/0/1", "in") == 2 * 10**9
    # a reboot after it restarts the counters again and resets the discontinuity time
    small_fleet.reboot("r1")
    clock.advance(1)
    assert small_fleet.octets("r1", "ge-0/0/1", "in") == 10**9
    reply = ask(small_fleet.agent("r1"), request(GET, disc))
    assert reply.pdu.varbinds[0][1] == Value(TIMETICKS, 0)
    with pytest.raises(SimulatorError, match="after the last boot and clear"):
        small_fleet.clear_counters("r1", at=T0)


def test_reboot_with_renumbering_moves_interfaces_to_other_if_indexes(
    small_fleet: Fleet, clock: ManualClock
) -> None:
    clock.advance(1)
    small_fleet.reboot("r1", renumber=True)
    agent = small_fleet.agent("r1")
    reply = ask(agent, request(GETNEXT, OIDS.ifName, (*OIDS.ifName, 1), (*OIDS.ifName, 2)))
    assert [v.value for _, v in reply.pdu.varbinds] == [b"xe-1/0/0", b"ge-0/0/1", b"ge-0/0/0"]
    assert small_fleet.router("r1").if_index("ge-0/0/0") == 3


def test_a_reboot_must_come_after_the_previous_boot(small_fleet: Fleet) -> None:
    with pytest.raises(SimulatorError, match="after the last boot"):
        small_fleet.reboot("r1", at=T0 - 1)


def test_configured_uptime_starts_sysuptime_ahead(clock: ManualClock) -> None:
    router = RouterConfig(name="r", uptime=86_400.5)
    fleet = Fleet(FleetConfig(base_port=0, routers=[router]), clock=clock)
    assert fleet.uptime_ticks("r") == 8_640_050


def test_float_seconds_and_integer_nanoseconds_mean_the_same_time(small_fleet: Fleet) -> None:
    t_ns = T0 + 1_500_000_000
    assert small_fleet.octets("r1", "ge-0/0/1", "in", at=t_ns) == small_fleet.octets(
        "r1", "ge-0/0/1", "in", at=t_ns / NS
    )


def test_unknown_names_raise_unknown_router_error(small_fleet: Fleet) -> None:
    with pytest.raises(UnknownRouterError, match="no router named 'nope'"):
        small_fleet.octets("nope", "ge-0/0/0", "in")
    with pytest.raises(UnknownRouterError, match="no interface 'eth9'"):
        small_fleet.octets("r1", "eth9", "in")
    with pytest.raises(ValueError, match="direction"):
        small_fleet.octets("r1", "ge-0/0/0", "sideways")  # type: ignore[arg-type]
