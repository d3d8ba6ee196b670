"""Serving over UDP: binding, errors, shutdown, and real clients (pysnmp)."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager

import anyio
import pytest
from _clock import ManualClock
from pyasn1.codec.ber import decoder as pyasn1_decoder
from pysnmp.proto import api, rfc1905
from simtest_helpers import T0, request

from simulator import OIDS, Endpoint, Fleet, PortInUseError, SimulatorError
from simulator._ber import decode_message
from snmpber import GET, GETBULK

V2C = api.PROTOCOL_MODULES[api.SNMP_VERSION_2C]
NS = 1_000_000_000


def _free_consecutive_ports(n: int) -> int:
    """A base port with ``n`` free UDP ports from it (checked, then released)."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.bind(("127.0.0.1", 0))
            base = int(probe.getsockname()[1])
        if base + n > 65535:
            continue
        socks = []
        try:
            for port in range(base, base + n):
                s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                socks.append(s)
                s.bind(("127.0.0.1", port))
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
        return base
    raise RuntimeError("no run of free UDP ports found")


@contextmanager
def _client() -> Iterator[socket.socket]:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(5)
        yield sock


async def _exchange(sock: socket.socket, data: bytes, port: int) -> bytes:
    sock.sendto(data, ("127.0.0.1", port))
    return await anyio.to_thread.run_sync(sock.recv, 65535)


@pytest.mark.anyio
async def test_serve_binds_one_port_per_router_consecutively_from_the_base_port() -> None:
    base = _free_consecutive_ports(3)
    fleet = Fleet.generate(routers=3, interfaces=2, base_port=base)
    with anyio.fail_after(10):
        assert not fleet.serving
        async with fleet.serve(host="127.0.0.1") as served:
            assert served is fleet
            assert fleet.serving
            assert fleet.endpoints == [
                Endpoint("rtr-0001", "127.0.0.1", base, "public"),
                Endpoint("rtr-0002", "127.0.0.1", base + 1, "public"),
                Endpoint("rtr-0003", "127.0.0.1", base + 2, "public"),
            ]
            port = fleet.endpoints[2].port
            with _client() as sock:
                reply = decode_message(
                    await _exchange(sock, request(GET, (*OIDS.sysName, 0)), port)
                )
            assert reply.pdu.varbinds[0][1].value == b"rtr-0003"
        assert not fleet.serving


@pytest.mark.anyio
async def test_a_port_in_use_is_reported_by_number_and_router_and_nothing_stays_bound() -> None:
    base = _free_consecutive_ports(3)
    fleet = Fleet.generate(routers=3, interfaces=1, base_port=base)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as squatter:
        squatter.bind(("127.0.0.1", base + 1))
        with anyio.fail_after(10), pytest.raises(PortInUseError) as info:
            async with fleet.serve():
                pytest.fail("serve() must not enter")
    assert info.value.port == base + 1
    assert info.value.router == "rtr-0002"
    assert f"127.0.0.1:{base + 1}" in str(info.value)
    assert "public" not in str(info.value)
    assert not fleet.serving
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as again:
        again.bind(("127.0.0.1", base))  # the first router's socket was released


@pytest.mark.anyio
async def test_sockets_are_released_on_exit_so_a_new_fleet_can_bind_them() -> None:
    fleet = Fleet.generate(routers=1, interfaces=1, base_port=0)
    with anyio.fail_after(10):
        async with fleet.serve():
            port = fleet.endpoints[0].port
        again = Fleet.generate(routers=1, interfaces=1, base_port=port)
        async with again.serve():
            assert again.endpoints[0].port == port


@pytest.mark.anyio
async def test_serving_a_fleet_twice_at_once_is_refused() -> None:
    fleet = Fleet.generate(routers=1, interfaces=1, base_port=0)
    with anyio.fail_after(10):
        async with fleet.serve():
            with pytest.raises(SimulatorError, match="already serving"):
                async with fleet.serve():
                    pass


@pytest.mark.anyio
async def test_run_hands_back_endpoints_when_bound_and_stops_on_cancel() -> None:
    fleet = Fleet.generate(routers=2, interfaces=1, base_port=0)
    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            endpoints = await tg.start(fleet.run)
            assert fleet.serving
            assert [e.router for e in endpoints] == ["rtr-0001", "rtr-0002"]
            assert all(e.port > 0 for e in endpoints)
            tg.cancel_scope.cancel()
    assert not fleet.serving


@pytest.mark.anyio
async def test_wrong_community_junk_and_dead_routers_get_no_udp_reply() -> None:
    fleet = Fleet.generate(routers=2, interfaces=1, base_port=0, shared_port=True)
    fleet.set_dead("rtr-0001")
    sysname = (*OIDS.sysName, 0)
    with anyio.fail_after(10):
        async with fleet.serve():
            dead, alive = fleet.endpoints  # ports are known once bound
            port = alive.port
            with _client() as sock:
                for data in (
                    request(GET, sysname, community=dead.community, request_id=1),
                    request(GET, sysname, community="wrong", request_id=2),
                    b"\x30\x00junk",
                ):
                    sock.sendto(data, ("127.0.0.1", port))
                # one socket handles datagrams in order: the answer to this probe
                # proves the requests before it were dropped, not delayed
                probe = request(GET, sysname, community=alive.community, request_id=3)
                reply = decode_message(await _exchange(sock, probe, port))
                sock.setblocking(False)
                with pytest.raises(BlockingIOError):
                    sock.recv(65535)
    assert reply.pdu.request_id == 3
    assert reply.pdu.varbinds[0][1].value == alive.router.encode()
    stats = fleet.stats
    assert (stats.dropped_dead, stats.bad_community, stats.malformed) == (1, 1, 1)
    assert (stats.requests, stats.responses) == (4, 1)


@pytest.mark.anyio
async def test_getbulk_reply_decodes_with_pysnmp(clock: ManualClock) -> None:
    fleet = Fleet.generate(routers=1, interfaces=4, base_port=0, rate_bps=1000, clock=clock)
    clock.ns = T0 + 10 * NS
    with anyio.fail_after(10):
        async with fleet.serve():
            port = fleet.endpoints[0].port
            with _client() as sock:
                data = request(GETBULK, OIDS.ifHCInOctets, max_repetitions=4, request_id=4242)
                reply = await _exchange(sock, data, port)
    msg, rest = pyasn1_decoder.decode(reply, asn1Spec=V2C.Message())
    assert rest == b""
    pdu = V2C.apiMessage.get_pdu(msg)
    assert int(V2C.apiPDU.get_request_id(pdu)) == 4242
    assert int(V2C.apiPDU.get_error_status(pdu)) == 0
    varbinds = [(tuple(oid), value) for oid, value in V2C.apiPDU.get_varbinds(pdu)]
    assert [oid for oid, _ in varbinds] == [(*OIDS.ifHCInOctets, i) for i in (1, 2, 3, 4)]
    assert all(value.__class__.__name__ == "Counter64" for _, value in varbinds)
    assert [int(value) for _, value in varbinds] == [10_000] * 4


@pytest.mark.anyio
async def test_pysnmp_client_reads_sysuptime_and_walks_ifxtable_with_getbulk(
    clock: ManualClock,
) -> None:
    from pysnmp.hlapi.v3arch.asyncio import (
        CommunityData,
        ContextData,
        ObjectIdentity,
        ObjectType,
        SnmpEngine,
        UdpTransportTarget,
        bulk_cmd,
        get_cmd,
    )

    fleet = Fleet.generate(routers=2, interfaces=3, base_port=0, rate_bps=2000, clock=clock)
    clock.ns = T0 + 5 * NS
    engine = SnmpEngine()
    try:
        with anyio.fail_after(20):
            async with fleet.serve():
                _, host, port, community = fleet.endpoints[1]
                target = await UdpTransportTarget.create((host, port), timeout=2, retries=0)
                error, status, _, varbinds = await get_cmd(
                    engine,
                    CommunityData(community, mpModel=1),
                    target,
                    ContextData(),
                    ObjectType(ObjectIdentity("1.3.6.1.2.1.1.3.0")),
                    ObjectType(ObjectIdentity("1.3.6.1.2.1.31.1.1.1.6.2")),
                )
                assert error is None
                assert int(status) == 0
                assert [int(v) for _, v in varbinds] == [500, 10_000]
                error, status, _, table = await bulk_cmd(
                    engine,
                    CommunityData(community, mpModel=1),
                    target,
                    ContextData(),
                    0,
                    50,
                    ObjectType(ObjectIdentity("1.3.6.1.2.1.31.1.1.1.18")),
                )
                assert error is None
                assert int(status) == 0
    finally:
        engine.close_dispatcher()
    aliases = [
        str(v)
        for oid, v in table
        if tuple(oid)[:-1] == OIDS.ifAlias and not isinstance(v, rfc1905.EndOfMibView)
    ]
    assert aliases == ["CUST:cust-0004", "CUST:cust-0005", "CUST:cust-0006"]


@pytest.mark.anyio
async def test_a_shared_port_serves_each_router_by_its_own_community() -> None:
    fleet = Fleet.generate(routers=3, interfaces=1, base_port=0, shared_port=True)
    with anyio.fail_after(10):
        async with fleet.serve():
            ports = {e.port for e in fleet.endpoints}
            assert len(ports) == 1
            names = []
            with _client() as sock:
                for _, _, port, community in fleet.endpoints:
                    data = request(GET, (*OIDS.sysName, 0), community=community)
                    names.append(decode_message(await _exchange(sock, data, port)))
    assert [m.pdu.varbinds[0][1].value for m in names] == [b"rtr-0001", b"rtr-0002", b"rtr-0003"]
    assert [e.community for e in fleet.endpoints] == [
        "public@rtr-0001",
        "public@rtr-0002",
        "public@rtr-0003",
    ]


def test_a_port_in_use_is_reported_the_same_on_uvloop() -> None:
    uvloop = pytest.importorskip("uvloop")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as squatter:
        squatter.bind(("127.0.0.1", 0))
        port = squatter.getsockname()[1]
        fleet = Fleet.generate(routers=1, interfaces=1, base_port=port)

        async def serve() -> None:
            async with fleet.serve():
                pytest.fail("serve() must not enter")

        with pytest.raises(PortInUseError, match=f"127.0.0.1:{port} .*in use"):
            uvloop.run(serve())
