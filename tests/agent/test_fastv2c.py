"""The lean v2c BER client: its codec against pysnmp's, and the client against the
simulated routers (ground truth, faults, shared port), Debian's snmpd, and SNMPv3
handed to pysnmp."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import anyio
import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge_agent import SnmpError, SnmpMalformedResponse, SnmpTimeout, config_from_dict
from edge_agent.config import TargetConfig
from edge_agent.snmp import FastV2cClient, PysnmpClient
from edge_agent.snmp.fastv2c import GET, _oid_varbind, decode_response, encode_request
from snmpber import decode_oid

from .conftest import Snmpd

CANARY = "CANARY-s3cr3t"


def one_target(**spec: Any) -> TargetConfig:
    return config_from_dict({"agent_id": "t", "targets": [{"name": "r1", **spec}]}).targets[0]


def pysnmp_response(community: str, request_id: int, varbinds: list[tuple[str, Any]]) -> bytes:
    from pyasn1.codec.ber import encoder
    from pysnmp.proto import api

    p = api.v2c
    pdu = p.GetResponsePDU()
    p.apiPDU.set_defaults(pdu)
    p.apiPDU.set_request_id(pdu, request_id)
    p.apiPDU.set_varbinds(pdu, varbinds)
    msg = p.Message()
    p.apiMessage.set_defaults(msg)
    p.apiMessage.set_community(msg, community)
    p.apiMessage.set_pdu(msg, pdu)
    return bytes(encoder.encode(msg))


def test_the_codec_decodes_what_pysnmp_encodes() -> None:
    from pysnmp.proto import rfc1902, rfc1905

    data = pysnmp_response(
        "public",
        123456,
        [
            ("1.3.6.1.2.1.1.3.0", rfc1902.TimeTicks(4294967295)),
            ("1.3.6.1.2.1.31.1.1.1.6.1", rfc1902.Counter64(2**64 - 1)),
            ("1.3.6.1.2.1.2.2.1.10.1", rfc1902.Counter32(2**32 - 1)),
            ("1.3.6.1.2.1.31.1.1.1.15.1", rfc1902.Gauge32(100_000)),
            ("1.3.6.1.2.1.2.2.1.8.1", rfc1902.Integer32(-5)),
            ("1.3.6.1.2.1.31.1.1.1.1.1", rfc1902.OctetString(b"ge-0/0/0")),
            ("1.3.6.1.4.1.2636.3.1.13.1.5.268435456", rfc1905.NoSuchInstance()),
            ("1.3.6.1.2.1.99", rfc1905.NoSuchObject()),
            ("1.3.6.1.2.1.100", rfc1905.EndOfMibView()),
        ],
    )
    community, request_id, status, index, varbinds = decode_response(data)
    assert (community, request_id, status, index) == (b"public", 123456, 0, 0)
    assert [value for _, value in varbinds] == [
        ("TimeTicks", 4294967295),
        ("Counter64", 2**64 - 1),
        ("Counter32", 2**32 - 1),
        ("Gauge32", 100_000),
        ("Integer", -5),
        ("OctetString", b"ge-0/0/0"),
        ("NoSuchInstance", None),
        ("NoSuchObject", None),
        ("EndOfMibView", None),
    ]
    assert varbinds[6][0] == (1, 3, 6, 1, 4, 1, 2636, 3, 1, 13, 1, 5, 268435456)


def test_pysnmp_decodes_what_the_codec_encodes() -> None:
    from pyasn1.codec.ber import decoder
    from pysnmp.proto import api

    data = encode_request(b"c@rtr-0001", GET, 2**31 - 1, [(1, 3, 6, 1, 2, 1, 1, 3, 0)])
    msg, rest = decoder.decode(data, asn1Spec=api.v2c.Message())
    assert rest == b""
    assert str(api.v2c.apiMessage.get_community(msg)) == "c@rtr-0001"
    pdu = api.v2c.apiMessage.get_pdu(msg)
    assert int(api.v2c.apiPDU.get_request_id(pdu)) == 2**31 - 1
    assert [tuple(oid) for oid, _ in api.v2c.apiPDU.get_varbinds(pdu)] == [
        (1, 3, 6, 1, 2, 1, 1, 3, 0)
    ]


@given(st.lists(st.integers(0, 2**32 - 1), min_size=0, max_size=20))
def test_any_oid_survives_an_encode_and_decode(arcs: list[int]) -> None:
    oid = (1, 3, *arcs)
    encoded = _oid_varbind(oid)
    # SEQUENCE { OID, NULL }: the OID's contents start after two headers
    length = encoded[3] if encoded[3] < 0x80 else None
    if length is not None:
        assert decode_oid(encoded[4 : 4 + length]) == oid


@pytest.mark.parametrize(
    "garbage",
    [b"", b"\x30", b"\x30\x03\x02\x01\x00", b"\x30\x84\xff\xff\xff\xff", b"\x04\x00" * 10],
)
def test_garbage_is_a_ber_error_never_a_crash(garbage: bytes) -> None:
    with pytest.raises(ValueError, match=r"."):
        decode_response(garbage)


# -- against simulated routers ---------------------------------------------------------


@pytest.mark.anyio
async def test_polling_the_simulator_gives_its_ground_truth() -> None:
    simulator = pytest.importorskip("simulator")
    fleet = simulator.Fleet.generate(routers=2, interfaces=40, base_port=0, rate_bps=1000)
    client = FastV2cClient()
    try:
        with anyio.fail_after(10):
            async with fleet.serve(host="127.0.0.1"):
                endpoint = fleet.endpoints[1]
                t = one_target(host=endpoint.host, port=endpoint.port, community=endpoint.community)
                rows = await client.walk_interfaces(t)
                sample = await client.poll_counters(t, [r.if_index for r in rows] + [4242])
    finally:
        await client.aclose()
    assert len(rows) == 40
    assert rows[0].if_alias.startswith("CUST:")
    assert sample.interfaces[4242].in_octets is None  # noSuchInstance: missing, not zero
    for row in rows:
        counters = sample.interfaces[row.if_index]
        assert counters.in_octets is not None
        assert counters.in_octets.width == 64
        truth = fleet.octets(endpoint.router, row.if_name, "in", sample.taken_ms / 1000)
        assert abs(truth - counters.in_octets.value) <= 1000


@pytest.mark.anyio
async def test_routers_on_one_shared_port_are_told_apart_by_community() -> None:
    simulator = pytest.importorskip("simulator")
    fleet = simulator.Fleet.generate(routers=20, interfaces=2, base_port=0, shared_port=True)
    client = FastV2cClient()
    try:
        with anyio.fail_after(10):
            async with fleet.serve(host="127.0.0.1"):
                targets = [
                    one_target(host=e.host, port=e.port, community=e.community)
                    for e in fleet.endpoints
                ]
                assert len({(t.host, t.port) for t in targets}) == 1
                samples = []
                async with anyio.create_task_group() as tg:

                    async def poll(t: TargetConfig) -> None:
                        samples.append(await client.poll_counters(t, [1, 2]))

                    for i, t in enumerate(targets):
                        tg.start_soon(poll, msgspec.structs.replace(t, name=f"r{i}"))
    finally:
        await client.aclose()
    assert len(samples) == 20
    assert all(s.interfaces[1].in_octets is not None for s in samples)


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("faults", "error"),
    [({"malformed": 1.0}, SnmpMalformedResponse), ({"loss": 1.0}, SnmpTimeout)],
)
async def test_malformed_and_lost_answers_are_typed_errors_without_the_community(
    faults: dict[str, float], error: type[SnmpError]
) -> None:
    simulator = pytest.importorskip("simulator")
    fleet = simulator.Fleet.generate(routers=1, interfaces=2, base_port=0, community=CANARY)
    client = FastV2cClient()
    try:
        with anyio.fail_after(10):
            async with fleet.serve(host="127.0.0.1"):
                (endpoint,) = fleet.endpoints
                fleet.set_faults(endpoint.router, simulator.FaultConfig(**faults))
                t = one_target(
                    host=endpoint.host,
                    port=endpoint.port,
                    community=endpoint.community,
                    timeout=0.2,
                    retries=1,
                )
                with pytest.raises(error) as excinfo:
                    await client.poll_counters(t, [1, 2])
    finally:
        await client.aclose()
    assert CANARY not in str(excinfo.value)
    assert excinfo.value.target == "r1"


# -- against Debian's snmpd, and SNMPv3 handed to pysnmp ---------------------------------


@pytest.mark.snmp
@pytest.mark.anyio
async def test_the_lean_client_reads_snmpd_like_pysnmp_does(snmpd: Snmpd) -> None:
    fast, slow = FastV2cClient(), PysnmpClient()
    t = one_target(host=snmpd.host, port=snmpd.port, community="public")
    try:
        with anyio.fail_after(15):
            fast_rows = await fast.walk_interfaces(t)
            slow_rows = await slow.walk_interfaces(t)
            lo = next(r for r in fast_rows if r.if_name == "lo")
            before = await slow.poll_counters(t, [lo.if_index])
            sample = await fast.poll_counters(t, [lo.if_index, 4242])
            after = await slow.poll_counters(t, [lo.if_index])
    finally:
        await fast.aclose()
        await slow.aclose()
    assert fast_rows == slow_rows
    got, low, high = (s.interfaces[lo.if_index].in_octets for s in (sample, before, after))
    assert got is not None
    assert low is not None
    assert high is not None
    assert got.width == 64
    assert low.value <= got.value <= high.value
    assert sample.interfaces[4242].in_octets is None


@pytest.mark.snmp
@pytest.mark.anyio
async def test_snmpv3_targets_go_through_pysnmp_from_the_lean_client(snmpd: Snmpd) -> None:
    client = FastV2cClient()
    t = config_from_dict(
        {"agent_id": "t", "targets": [snmpd.v3_target("u-sha256-aes192")]}
    ).targets[0]
    try:
        with anyio.fail_after(15):
            rows = await client.walk_interfaces(t)
            sample = await client.poll_counters(t, [rows[0].if_index])
    finally:
        await client.aclose()
    assert sample.interfaces[rows[0].if_index].in_octets is not None


@pytest.mark.anyio
async def test_the_simulator_answers_snmpv3_authpriv_with_its_ground_truth() -> None:
    simulator = pytest.importorskip("simulator")
    if not hasattr(simulator, "UserConfig"):
        pytest.skip("this simulator has no SNMPv3 yet")
    user = simulator.UserConfig(
        name="poller",
        auth="sha512",
        auth_key="auth-" + CANARY,
        priv="aes256",
        priv_key="priv-" + CANARY,
    )
    config = msgspec.structs.replace(
        simulator.generate_config(routers=1, interfaces=3, base_port=0, rate_bps=1000),
        v3_users=[user],
    )
    fleet = simulator.Fleet(config)
    client = FastV2cClient()
    try:
        with anyio.fail_after(15):
            async with fleet.serve(host="127.0.0.1"):
                (endpoint,) = fleet.endpoints
                spec = {
                    "name": "r1",
                    "host": endpoint.host,
                    "port": endpoint.port,
                    "version": "3",
                    "security_name": "poller",
                    "auth_protocol": "SHA512",
                    "auth_key": "auth-" + CANARY,
                    "priv_protocol": "AES256",
                    "priv_key": "priv-" + CANARY,
                }
                t = config_from_dict({"agent_id": "t", "targets": [spec]}).targets[0]
                rows = await client.walk_interfaces(t)
                sample = await client.poll_counters(t, [r.if_index for r in rows])
                wrong = msgspec.structs.replace(
                    t,
                    auth_key=config_from_dict(
                        {"agent_id": "t", "targets": [spec | {"auth_key": "wrong-" + CANARY}]}
                    )
                    .targets[0]
                    .auth_key,
                    timeout=0.3,
                    retries=0,
                )
                with pytest.raises(SnmpError) as excinfo:
                    await client.poll_counters(wrong, [1])
    finally:
        await client.aclose()
    assert len(rows) == 3
    for row in rows:
        counters = sample.interfaces[row.if_index]
        assert counters.in_octets is not None
        truth = fleet.octets(endpoint.router, row.if_name, "in", sample.taken_ms / 1000)
        assert abs(truth - counters.in_octets.value) <= 1000
    assert "CANARY" not in str(excinfo.value)


@contextlib.asynccontextmanager
async def pyasn1_responder(reply: Callable[[str, int], bytes]) -> AsyncIterator[int]:
    """A UDP responder on 127.0.0.1 that answers each v2c request with
    ``reply(community, request id)``; yields its port."""
    from pyasn1.codec.ber import decoder
    from pysnmp.proto import api

    async with await anyio.create_udp_socket(local_host="127.0.0.1") as responder:

        async def answer() -> None:
            async for data, (host, port) in responder:
                msg, _ = decoder.decode(data, asn1Spec=api.v2c.Message())
                community = str(api.v2c.apiMessage.get_community(msg))
                request_id = int(api.v2c.apiPDU.get_request_id(api.v2c.apiMessage.get_pdu(msg)))
                await responder.sendto(reply(community, request_id), host, port)

        async with anyio.create_task_group() as tg:
            tg.start_soon(answer)
            yield responder.extra(anyio.abc.SocketAttribute.local_port)
            tg.cancel_scope.cancel()


@pytest.mark.anyio
async def test_an_answer_with_another_community_is_ignored_like_a_lost_one() -> None:
    """A spoofed or misrouted answer (right request id, wrong community) completes nothing."""
    from pysnmp.proto import rfc1902

    def reply(community: str, request_id: int) -> bytes:
        uptime = ("1.3.6.1.2.1.1.3.0", rfc1902.TimeTicks(1))
        return pysnmp_response("not-" + CANARY, request_id, [uptime])

    client = FastV2cClient()
    try:
        async with pyasn1_responder(reply) as port:
            t = one_target(host="127.0.0.1", port=port, community=CANARY, timeout=0.2, retries=1)
            with anyio.fail_after(5), pytest.raises(SnmpTimeout) as excinfo:
                await client.poll_counters(t, [1])
    finally:
        await client.aclose()
    assert CANARY not in str(excinfo.value)


@pytest.mark.anyio
@pytest.mark.parametrize("client_class", [FastV2cClient, PysnmpClient])
async def test_a_walk_that_does_not_advance_is_a_malformed_response_for_either_client(
    client_class: type[FastV2cClient | PysnmpClient],
) -> None:
    """A broken agent answering every GETBULK with the same row would walk for ever."""
    from pysnmp.proto import rfc1902

    def reply(community: str, request_id: int) -> bytes:
        stuck = ("1.3.6.1.2.1.31.1.1.1.1.1", rfc1902.OctetString(b"ge-0/0/0"))  # ifName.1
        return pysnmp_response(community, request_id, [stuck])

    client = client_class()
    try:
        async with pyasn1_responder(reply) as port:
            t = one_target(host="127.0.0.1", port=port, community=CANARY, timeout=1.0, retries=0)
            with anyio.fail_after(5), pytest.raises(SnmpMalformedResponse) as excinfo:
                await client.walk_interfaces(t)
    finally:
        await client.aclose()
    assert "did not advance" in str(excinfo.value)
    assert excinfo.value.target == "r1"
    assert CANARY not in str(excinfo.value)
