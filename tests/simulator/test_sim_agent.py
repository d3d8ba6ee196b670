"""The SNMPv2c agent logic, without sockets: get, get-next, get-bulk, drops."""

from __future__ import annotations

import pytest
from _clock import ManualClock
from hypothesis import given, settings
from hypothesis import strategies as st
from simtest_helpers import ask, request

from simulator import OIDS, Fleet
from simulator._ber import Value, encode_message
from snmpber import (
    COUNTER32,
    COUNTER64,
    END_OF_MIB_VIEW,
    GET,
    GETBULK,
    GETNEXT,
    NO_SUCH_INSTANCE,
    NO_SUCH_OBJECT,
    OCTET_STRING,
    RESPONSE,
    SET,
    TIMETICKS,
)

SYS_UPTIME = (*OIDS.sysUpTime, 0)


def test_get_returns_sysuptime_in_hundredths_since_boot(
    small_fleet: Fleet, clock: ManualClock
) -> None:
    clock.advance(12.345)
    reply = ask(small_fleet.agent("r1"), request(GET, SYS_UPTIME))
    assert reply.pdu.tag == RESPONSE
    assert reply.pdu.varbinds == [(SYS_UPTIME, Value(TIMETICKS, 1234))]


def test_get_of_an_unknown_object_is_no_such_object_and_of_a_missing_row_no_such_instance(
    small_fleet: Fleet,
) -> None:
    reply = ask(
        small_fleet.agent("r1"),
        request(GET, (1, 3, 6, 1, 2, 1, 1, 99, 0), (*OIDS.ifHCInOctets, 42), OIDS.sysUpTime),
    )
    assert [value.tag for _, value in reply.pdu.varbinds] == [
        NO_SUCH_OBJECT,
        NO_SUCH_INSTANCE,
        NO_SUCH_INSTANCE,
    ]
    assert reply.pdu.error_status == 0


def test_response_echoes_the_request_id_and_community(small_fleet: Fleet) -> None:
    for request_id in (0, 1, -1, 2**31 - 1, -(2**31)):
        reply = ask(small_fleet.agent("r1"), request(GET, SYS_UPTIME, request_id=request_id))
        assert reply.pdu.request_id == request_id
        assert reply.community == b"public"
        assert reply.version == 1


def _walk(fleet: Fleet, router: str) -> list[tuple[tuple[int, ...], Value]]:
    agent = fleet.agent(router)
    oid: tuple[int, ...] = (1, 3)
    seen: list[tuple[tuple[int, ...], Value]] = []
    for _ in range(10_000):
        ((oid, value),) = ask(agent, request(GETNEXT, oid)).pdu.varbinds
        if value.tag == END_OF_MIB_VIEW:
            return seen
        seen.append((oid, value))
    raise AssertionError("the walk did not end")


def test_getnext_walks_the_whole_mib_in_lexicographic_oid_order_then_end_of_mib_view() -> None:
    fleet = Fleet.generate(routers=1, interfaces=12, base_port=0)
    seen = _walk(fleet, "rtr-0001")
    oids = [oid for oid, _ in seen]
    assert oids == sorted(oids)
    assert len(oids) == 5 + 12 * 14
    # ifIndex 10 comes after 9, not after 1: numeric, not textual order
    names = [v.value for oid, v in seen if oid[:-1] == OIDS.ifName]
    assert names == [f"ge-0/0/{i}".encode() for i in range(12)]
    last = (*OIDS.ifCounterDiscontinuityTime, 12)
    ((oid, value),) = ask(fleet.agent("rtr-0001"), request(GETNEXT, last)).pdu.varbinds
    assert (oid, value) == (last, Value(END_OF_MIB_VIEW))


def test_getnext_from_between_oids_and_from_before_the_mib(small_fleet: Fleet) -> None:
    agent = small_fleet.agent("r1")
    reply = ask(agent, request(GETNEXT, (0, 0), (*OIDS.ifHCInOctets, 1, 5), OIDS.ifXEntry))
    assert [oid for oid, _ in reply.pdu.varbinds] == [
        (*OIDS.sysDescr, 0),
        (*OIDS.ifHCInOctets, 2),
        (*OIDS.ifName, 1),
    ]


def test_getbulk_walks_ifxtable_in_oid_order(small_fleet: Fleet) -> None:
    agent = small_fleet.agent("r1")
    oid: tuple[int, ...] = (1, 3, 6, 1, 2, 1, 31, 1, 1)
    seen: list[tuple[tuple[int, ...], Value]] = []
    while True:
        reply = ask(agent, request(GETBULK, oid, max_repetitions=4))
        assert 1 <= len(reply.pdu.varbinds) <= 4
        for oid, value in reply.pdu.varbinds:
            seen.append((oid, value))
        if seen[-1][1].tag == END_OF_MIB_VIEW:
            break
    oids = [oid for oid, _ in seen[:-1]]
    assert oids == sorted(oids)
    assert oids == [
        (*column, index)
        for column in (
            OIDS.ifName,
            OIDS.ifHCInOctets,
            OIDS.ifHCOutOctets,
            OIDS.ifHighSpeed,
            OIDS.ifAlias,
            OIDS.ifCounterDiscontinuityTime,
        )
        for index in (1, 2, 3)
    ]
    assert seen[-1] == ((*OIDS.ifCounterDiscontinuityTime, 3), Value(END_OF_MIB_VIEW))
    aliases = [v.value for oid, v in seen[:-1] if oid[:-1] == OIDS.ifAlias]
    assert aliases == [b"CUST:cust-0001", b"CUST:cust-0002 RES:bw", b"uplink"]


def test_getbulk_answers_non_repeaters_once_then_repeats_the_rest(
    small_fleet: Fleet, clock: ManualClock
) -> None:
    clock.advance(2)
    reply = ask(
        small_fleet.agent("r1"),
        request(
            GETBULK,
            OIDS.sysUpTime,
            OIDS.ifName,
            OIDS.ifHCInOctets,
            non_repeaters=1,
            max_repetitions=2,
        ),
    )
    assert reply.pdu.varbinds == [
        (SYS_UPTIME, Value(TIMETICKS, 200)),
        ((*OIDS.ifName, 1), Value(OCTET_STRING, b"ge-0/0/0")),
        ((*OIDS.ifHCInOctets, 1), Value(COUNTER64, 2**32 - 500 + 2000)),
        ((*OIDS.ifName, 2), Value(OCTET_STRING, b"ge-0/0/1")),
        ((*OIDS.ifHCInOctets, 2), Value(COUNTER64, 2 * 10**9)),
    ]


@pytest.mark.parametrize("max_repetitions", [0, -3])
def test_getbulk_without_repetitions_returns_only_the_non_repeaters(
    small_fleet: Fleet, max_repetitions: int
) -> None:
    reply = ask(
        small_fleet.agent("r1"),
        request(GETBULK, SYS_UPTIME, OIDS.ifName, non_repeaters=1, max_repetitions=max_repetitions),
    )
    assert [oid for oid, _ in reply.pdu.varbinds] == [(*OIDS.sysName, 0)]


def test_getbulk_non_repeaters_beyond_the_varbind_count_mean_all_are_non_repeaters(
    small_fleet: Fleet,
) -> None:
    reply = ask(
        small_fleet.agent("r1"),
        request(GETBULK, OIDS.ifName, non_repeaters=50, max_repetitions=10),
    )
    assert [oid for oid, _ in reply.pdu.varbinds] == [(*OIDS.ifName, 1)]


def test_getbulk_returns_fewer_repetitions_rather_than_too_big() -> None:
    fleet = Fleet.generate(routers=1, interfaces=200, base_port=0)
    agent = fleet.agent("rtr-0001")
    data = request(GETBULK, OIDS.ifName, OIDS.ifHCInOctets, max_repetitions=1000)
    reply_bytes = agent.handle(data)
    assert reply_bytes is not None
    assert len(reply_bytes) <= fleet.config.max_response_bytes
    reply = ask(agent, data)
    assert reply.pdu.error_status == 0
    rows = len(reply.pdu.varbinds) // 2
    assert rows > 10
    assert len(reply.pdu.varbinds) == 2 * rows  # whole rows only
    assert [oid for oid, _ in reply.pdu.varbinds[-2:]] == [
        (*OIDS.ifName, rows),
        (*OIDS.ifHCInOctets, rows),
    ]


def test_getbulk_stops_once_every_repeater_is_at_end_of_mib_view(small_fleet: Fleet) -> None:
    end = OIDS.ifCounterDiscontinuityTime  # the last column served
    last = (*end, 2)
    reply = ask(
        small_fleet.agent("r1"),
        request(GETBULK, last, OIDS.ifHighSpeed, max_repetitions=50),
    )
    varbinds = reply.pdu.varbinds
    # rows: (last.3, ifHighSpeed.1), (end, ifHighSpeed.2), (end, ifHighSpeed.3),
    # (end, ifAlias.1..3), (end, last.1..3), then (end, end)
    assert varbinds[0][0] == (*end, 3)
    assert varbinds[2] == ((*end, 3), Value(END_OF_MIB_VIEW))
    assert varbinds[-2:] == [
        ((*end, 3), Value(END_OF_MIB_VIEW)),
        ((*end, 3), Value(END_OF_MIB_VIEW)),
    ]
    assert len(varbinds) == 2 * 10


def test_getbulk_of_a_single_column_past_the_end_names_the_requested_oid(
    small_fleet: Fleet,
) -> None:
    last = (*OIDS.ifCounterDiscontinuityTime, 3)
    reply = ask(small_fleet.agent("r1"), request(GETBULK, last, max_repetitions=10))
    assert reply.pdu.varbinds == [(last, Value(END_OF_MIB_VIEW))]


def test_get_whose_response_would_be_too_large_answers_too_big() -> None:
    fleet = Fleet.generate(routers=1, interfaces=1, base_port=0)
    reply = ask(fleet.agent("rtr-0001"), request(GET, *[(*OIDS.sysDescr, 0)] * 100))
    assert (reply.pdu.error_status, reply.pdu.error_index, reply.pdu.varbinds) == (1, 0, [])


def test_set_request_is_refused_as_not_writable(small_fleet: Fleet) -> None:
    reply = ask(small_fleet.agent("r1"), request(SET, (*OIDS.sysName, 0)))
    assert (reply.pdu.error_status, reply.pdu.error_index) == (17, 1)
    assert [oid for oid, _ in reply.pdu.varbinds] == [(*OIDS.sysName, 0)]


def test_wrong_community_gets_no_reply_and_is_counted(small_fleet: Fleet) -> None:
    agent = small_fleet.agent("r1")
    assert agent.handle(request(GET, SYS_UPTIME, community="private")) is None
    assert small_fleet.stats.bad_community == 1
    assert small_fleet.stats.responses == 0


@pytest.mark.parametrize("version", [0, 3])
def test_versions_other_than_v2c_get_no_reply(small_fleet: Fleet, version: int) -> None:
    assert small_fleet.agent("r1").handle(request(GET, SYS_UPTIME, version=version)) is None
    assert small_fleet.stats.bad_version == 1


def test_responses_and_traps_sent_to_the_agent_are_ignored(small_fleet: Fleet) -> None:
    assert small_fleet.agent("r1").handle(request(RESPONSE, SYS_UPTIME)) is None
    assert small_fleet.stats.unsupported == 1


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x00",
        b"garbage that is not BER at all",
        b"\x30\x03\x02\x01\x01",
        bytes.fromhex("3011020101040670" + "75626c6963a0040201010201"),
        # valid header, OID value with an unfinished sub-identifier
        bytes.fromhex("301c020101040670756" + "26c6963a00f02010102010002010030043002" + "0600"),
    ],
)
def test_malformed_packets_get_no_reply_and_are_counted(small_fleet: Fleet, data: bytes) -> None:
    assert small_fleet.agent("r1").handle(data) is None
    stats = small_fleet.stats
    assert stats.malformed == 1
    assert stats.errors == 0


@settings(max_examples=300)
@given(st.data())
def test_mutated_requests_never_crash_the_agent(data: st.DataObject) -> None:
    fleet = Fleet.generate(routers=1, interfaces=2, base_port=0)
    raw = bytearray(request(GETBULK, OIDS.ifName, SYS_UPTIME, non_repeaters=1, max_repetitions=5))
    for _ in range(data.draw(st.integers(1, 4))):
        pos = data.draw(st.integers(0, len(raw) - 1))
        raw[pos] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(raw)))
    fleet.agent("rtr-0001").handle(bytes(raw[:cut]))
    assert fleet.stats.errors == 0


def test_dead_router_drops_requests_until_revived(small_fleet: Fleet) -> None:
    agent = small_fleet.agent("r1")
    small_fleet.set_dead("r1")
    assert agent.handle(request(GET, SYS_UPTIME)) is None
    small_fleet.set_dead("r1", False)
    assert agent.handle(request(GET, SYS_UPTIME)) is not None
    stats = small_fleet.stats
    assert (stats.requests, stats.responses, stats.dropped_dead) == (2, 1, 1)


def test_counter32_columns_serve_the_low_32_bits(small_fleet: Fleet, clock: ManualClock) -> None:
    clock.advance(1)
    reply = ask(
        small_fleet.agent("r1"),
        request(GET, (*OIDS.ifInOctets, 1), (*OIDS.ifHCInOctets, 1), (*OIDS.ifOutOctets, 1)),
    )
    assert [value for _, value in reply.pdu.varbinds] == [
        Value(COUNTER32, 500),
        Value(COUNTER64, 2**32 + 500),
        Value(COUNTER32, 250),
    ]


def test_encoded_request_with_long_community_is_answered() -> None:
    fleet = Fleet.generate(routers=1, interfaces=1, base_port=0, community="c" * 300)
    reply = ask(fleet.agent("rtr-0001"), request(GET, SYS_UPTIME, community="c" * 300))
    assert reply.community == b"c" * 300
    assert encode_message(reply)  # well-formed enough to re-encode
