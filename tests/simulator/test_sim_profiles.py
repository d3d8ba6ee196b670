"""Traffic profiles, the traffic window and injected faults."""

from __future__ import annotations

import pytest
from _clock import ManualClock
from hypothesis import example, given, settings
from hypothesis import strategies as st
from simtest_helpers import T0, request

from simulator import (
    AnomalyConfig,
    BerError,
    FaultConfig,
    Fleet,
    FleetConfig,
    InterfaceConfig,
    RouterConfig,
)
from simulator._ber import decode_message
from simulator._mib import OIDS
from snmpber import GET

NS = 1_000_000_000


def _fleet(clock: ManualClock, **iface: object) -> Fleet:
    config = FleetConfig(
        base_port=0,
        routers=[RouterConfig(name="r", interfaces=[InterfaceConfig(name="ge-0", **iface)])],  # type: ignore[arg-type]
    )
    return Fleet(config, clock=clock)


def test_bursts_multiply_the_rate_only_inside_each_burst(clock: ManualClock) -> None:
    fleet = _fleet(clock, in_rate=100, burst_every_s=10, burst_length_s=2, burst_factor=5)
    assert fleet.bytes_between("r", "ge-0", "in", T0, T0 + 2 * NS) == 1000
    assert fleet.bytes_between("r", "ge-0", "in", T0 + 2 * NS, T0 + 10 * NS) == 800
    assert fleet.bytes_between("r", "ge-0", "in", T0, T0 + 30 * NS) == 3 * 1800


def test_an_anomaly_window_multiplies_the_rate_and_ends(clock: ManualClock) -> None:
    fleet = _fleet(clock, in_rate=10, anomalies=[AnomalyConfig(start_s=5, duration_s=5, factor=20)])
    assert fleet.bytes_between("r", "ge-0", "in", T0, T0 + 5 * NS) == 50
    assert fleet.bytes_between("r", "ge-0", "in", T0 + 5 * NS, T0 + 10 * NS) == 1000
    assert fleet.bytes_between("r", "ge-0", "in", T0 + 10 * NS, T0 + 20 * NS) == 100


def test_a_burst_inside_an_anomaly_multiplies_both_factors(clock: ManualClock) -> None:
    fleet = _fleet(
        clock,
        in_rate=100,
        burst_every_s=10,
        burst_length_s=2,
        burst_factor=2,
        anomalies=[AnomalyConfig(start_s=1, duration_s=10, factor=3)],
    )
    assert fleet.bytes_between("r", "ge-0", "in", T0, T0 + 1 * NS) == 200
    assert fleet.bytes_between("r", "ge-0", "in", T0 + 1 * NS, T0 + 2 * NS) == 600
    assert fleet.bytes_between("r", "ge-0", "in", T0 + 2 * NS, T0 + 10 * NS) == 2400
    assert fleet.bytes_between("r", "ge-0", "in", T0 + 10 * NS, T0 + 11 * NS) == 600
    assert fleet.bytes_between("r", "ge-0", "in", T0 + 11 * NS, T0 + 12 * NS) == 200


def test_an_outage_silences_bursts_and_the_diurnal_swing(clock: ManualClock) -> None:
    fleet = _fleet(
        clock,
        in_rate=1000,
        diurnal_amplitude=0.5,
        diurnal_period_s=30,
        burst_every_s=7,
        burst_length_s=2,
        burst_factor=5,
        anomalies=[
            AnomalyConfig(start_s=10, duration_s=20, factor=0),
            AnomalyConfig(start_s=20, duration_s=20, factor=3),
        ],
    )
    assert fleet.bytes_between("r", "ge-0", "in", T0 + 10 * NS, T0 + 30 * NS) == 0
    # after the outage only the factor-3 window is left and [30 s, 35 s) falls
    # between bursts (28-30, 35-37): three times the plain curve, give or take floors
    plain = _fleet(clock, in_rate=1000, diurnal_amplitude=0.5, diurnal_period_s=30)
    tripled = 3 * plain.bytes_between("r", "ge-0", "in", T0 + 30 * NS, T0 + 35 * NS)
    got = fleet.bytes_between("r", "ge-0", "in", T0 + 30 * NS, T0 + 35 * NS)
    assert abs(got - tripled) <= 3


def test_the_diurnal_curve_averages_to_the_base_rate_over_a_period(clock: ManualClock) -> None:
    fleet = _fleet(clock, in_rate=1000, diurnal_amplitude=0.5, diurnal_period_s=100)
    day = fleet.bytes_between("r", "ge-0", "in", T0, T0 + 100 * NS)
    assert abs(day - 100_000) <= 1
    peak = fleet.bytes_between("r", "ge-0", "in", T0 + 20 * NS, T0 + 30 * NS)
    trough = fleet.bytes_between("r", "ge-0", "in", T0 + 70 * NS, T0 + 80 * NS)
    assert peak > 14_000 > 6_000 > trough


def test_traffic_flows_only_inside_the_active_window(clock: ManualClock) -> None:
    fleet = _fleet(clock, in_rate=7, active_from_s=10, active_until_s=20)
    assert fleet.octets("r", "ge-0", "in", T0 + 10 * NS) == 0
    assert fleet.octets("r", "ge-0", "in", T0 + 15 * NS) == 35
    assert fleet.octets("r", "ge-0", "in", T0 + 99 * NS) == 70


@settings(max_examples=200, deadline=None)
@given(
    times=st.lists(st.integers(0, 10**12), min_size=2, max_size=20),
    amplitude=st.floats(0, 0.95),
    factor=st.floats(0, 30),
)
# a burst factor of 0 once took a byte back inside a burst (parts floored one by one)
@example(times=[2_035_348_340, 2_091_590_092], amplitude=0.0, factor=0.0)
# ... and a burst inside an outage once added two negative extras: factors multiply now
@example(times=[87_178_288_142, 132_944_111_758], amplitude=0.0, factor=0.0)
def test_every_profile_gives_a_non_decreasing_counter(
    times: list[int], amplitude: float, factor: float
) -> None:
    clock = ManualClock()
    fleet = _fleet(
        clock,
        in_rate=123_457,
        in_ramp=3,
        diurnal_amplitude=amplitude,
        diurnal_period_s=37,
        burst_every_s=11,
        burst_length_s=3,
        burst_factor=factor,
        anomalies=[AnomalyConfig(start_s=100, duration_s=50, factor=factor)],
        active_from_s=2,
        active_until_s=900,
    )
    values = [fleet.octets("r", "ge-0", "in", T0 + t) for t in sorted(times)]
    assert values == sorted(values)


def _get(fleet: Fleet) -> bytes | None:
    return fleet.agent("r").handle(request(GET, (*OIDS.ifHCInOctets, 1)))


def test_injected_loss_drops_requests_and_malformed_replies_do_not_decode(
    clock: ManualClock,
) -> None:
    fleet = _fleet(clock, in_rate=1)
    fleet.set_faults("r", FaultConfig(loss=1.0))
    assert _get(fleet) is None
    fleet.set_faults("r", FaultConfig(malformed=1.0))
    reply = _get(fleet)
    assert reply is not None
    with pytest.raises(BerError):
        decode_message(reply)
    fleet.set_faults("r", FaultConfig(delay_ms=250))
    assert _get(fleet) is not None
    assert fleet.agent("r").last_delay == 0.25
    fleet.set_faults("r", None)
    assert decode_message(_get(fleet) or b"").pdu.varbinds
    stats = fleet.stats
    assert (stats.faults_dropped, stats.faults_malformed, stats.faults_delayed) == (1, 1, 1)
