"""A lean SNMPv2c client for the counter hot path: hand-written BER, one UDP socket.

pysnmp spends most of a poll in its generic ASN.1 codec; an agent polling
thousands of interfaces a minute needs only GET and GETBULK of a few integer
columns. :class:`FastV2cClient` encodes those requests and decodes their
responses directly with the BER primitives of :mod:`snmpber` (OID encodings
are cached, one datagram socket serves every target, answers are matched by
request id and source address). It implements
the same :class:`~edge_agent.snmp.client.CounterClient` primitives as
:class:`~edge_agent.snmp.PysnmpClient`, so discovery and counter polls behave
the same; SNMPv1 and SNMPv3 targets are handed to a :class:`PysnmpClient`
created on first use (one engine per process, as before).

Anything that does not parse as a well-formed response to what was asked is
:class:`~edge_agent.SnmpMalformedResponse`; a datagram from another address,
with another request id or another community is ignored, like a lost one.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import socket
from collections.abc import Sequence
from typing import Any, Final

import anyio

from snmpber import (
    COUNTER32,
    COUNTER64,
    END_OF_MIB_VIEW,
    GAUGE32,
    GET,
    GETBULK,
    INTEGER,
    IP_ADDRESS,
    NO_SUCH_INSTANCE,
    NO_SUCH_OBJECT,
    NULL,
    OBJECT_IDENTIFIER,
    OCTET_STRING,
    OPAQUE,
    RESPONSE,
    SEQUENCE,
    TIMETICKS,
    UNSIGNED_BITS,
    BerError,
    decode_oid,
    encode_oid,
    encode_signed,
    encode_tlv,
    read_tlv,
)

from .._exceptions import SnmpError, SnmpMalformedResponse, SnmpResponseError, SnmpTimeout
from ..config import TargetConfig
from .client import CounterClient, Oid, Value
from .pysnmp_client import PysnmpClient

__all__ = ["BerError", "FastV2cClient", "decode_response", "encode_request"]

#: BER tag -> the type name of a :data:`~edge_agent.snmp.client.Value`
_TAGS: Final = {
    INTEGER: "Integer",
    OCTET_STRING: "OctetString",
    NULL: "Null",
    OBJECT_IDENTIFIER: "ObjectIdentifier",
    IP_ADDRESS: "IpAddress",
    COUNTER32: "Counter32",
    GAUGE32: "Gauge32",
    TIMETICKS: "TimeTicks",
    OPAQUE: "Opaque",
    COUNTER64: "Counter64",
    NO_SUCH_OBJECT: "NoSuchObject",
    NO_SUCH_INSTANCE: "NoSuchInstance",
    END_OF_MIB_VIEW: "EndOfMibView",
}
_NULL_VALUE: Final = bytes((NULL, 0))
_V2C_VERSION: Final = encode_signed(INTEGER, 1)


# -- encoding -------------------------------------------------------------------------


_oid_cache: dict[Oid, bytes] = {}


def _oid_varbind(oid: Oid) -> bytes:
    """``SEQUENCE { oid, NULL }``, cached: the same OIDs are asked every poll."""
    cached = _oid_cache.get(oid)
    if cached is not None:
        return cached
    encoded = encode_tlv(SEQUENCE, encode_oid(oid) + _NULL_VALUE)
    if len(_oid_cache) < 200_000:
        _oid_cache[oid] = encoded
    return encoded


def encode_request(
    community: bytes, pdu: int, request_id: int, oids: Sequence[Oid], *, a: int = 0, b: int = 0
) -> bytes:
    """An SNMPv2c message. For GETBULK ``a``/``b`` are non-repeaters/max-repetitions."""
    varbinds = encode_tlv(SEQUENCE, b"".join(_oid_varbind(oid) for oid in oids))
    body = (
        encode_signed(INTEGER, request_id)
        + encode_signed(INTEGER, a)
        + encode_signed(INTEGER, b)
        + varbinds
    )
    return encode_tlv(
        SEQUENCE, _V2C_VERSION + encode_tlv(OCTET_STRING, community) + encode_tlv(pdu, body)
    )


# -- decoding -------------------------------------------------------------------------


_oid_decoded: dict[bytes, Oid] = {}


_Decoded = tuple[bytes, int, int, int, list[tuple[Oid, Value]]]


def decode_response(data: bytes) -> _Decoded:
    """``(community, request id, error status, error index, varbinds)`` of a Response-PDU."""
    end = len(data)
    tag, pos, end = read_tlv(data, 0, end)
    if tag != SEQUENCE:
        raise BerError("not a SEQUENCE")
    tag, s, e = read_tlv(data, pos, end)
    if tag != INTEGER or data[s:e] != b"\x01":
        raise BerError("not an SNMPv2c message")
    tag, s, pos = read_tlv(data, e, end)
    if tag != OCTET_STRING:
        raise BerError("no community")
    community = data[s:pos]
    tag, pos, end = read_tlv(data, pos, end)
    if tag != RESPONSE:
        raise BerError("not a Response-PDU")
    numbers = []
    for _ in range(3):
        tag, s, pos = read_tlv(data, pos, end)
        if tag != INTEGER or pos == s or pos - s > 8:
            raise BerError("bad request id or error field")
        numbers.append(int.from_bytes(data[s:pos], "big", signed=True))
    tag, pos, end = read_tlv(data, pos, end)
    if tag != SEQUENCE:
        raise BerError("no varbind list")
    varbinds: list[tuple[Oid, Value]] = []
    # the loop runs once per varbind: what it reads of the module is bound to locals
    read, cache, names, unsigned = read_tlv, _oid_decoded, _TAGS, UNSIGNED_BITS
    seq, oid_tag, int_tag, str_tag = SEQUENCE, OBJECT_IDENTIFIER, INTEGER, OCTET_STRING
    append = varbinds.append
    while pos < end:
        tag, pos, vb_end = read(data, pos, end)
        if tag != seq:
            raise BerError("varbind is not a SEQUENCE")
        tag, s, e = read(data, pos, vb_end)
        if tag != oid_tag:
            raise BerError("varbind without an OID")
        raw_oid = data[s:e]
        oid = cache.get(raw_oid)
        if oid is None:
            oid = decode_oid(raw_oid)
            if len(cache) < 200_000:
                cache[raw_oid] = oid
        vtag, s, v_end = read(data, e, vb_end)
        if v_end != vb_end:
            raise BerError("trailing bytes in a varbind")
        payload: int | bytes | None
        if vtag in unsigned:
            payload = int.from_bytes(data[s:v_end], "big") if v_end > s else None
        elif vtag == int_tag:
            payload = int.from_bytes(data[s:v_end], "big", signed=True) if v_end > s else None
        elif vtag == str_tag:
            payload = data[s:v_end]
        else:
            payload = None
        append((oid, (names.get(vtag, "Other"), payload)))
        pos = vb_end
    return community, numbers[0], numbers[1], numbers[2], varbinds


# -- transport ------------------------------------------------------------------------


class _Protocol(asyncio.DatagramProtocol):
    def __init__(self, client: FastV2cClient) -> None:
        self.client = client

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.client._received(data, addr)

    def error_received(self, exc: Exception) -> None:  # ICMP port unreachable etc.
        pass


class FastV2cClient(CounterClient):
    """:class:`SnmpClient` with a hand-written BER path for v2c; v1/v3 go to pysnmp."""

    def __init__(self) -> None:
        super().__init__()
        self._transport: asyncio.DatagramTransport | None = None
        #: request id -> (its answer, the address it went to, its community)
        self._pending: dict[int, tuple[asyncio.Future[_Decoded], tuple[str, int], bytes]] = {}
        self._ids = itertools.count(random.randrange(1, 2**30))
        self._addresses: dict[tuple[str, int], tuple[str, int]] = {}
        self._fallback: PysnmpClient | None = None
        self._socket_lock = anyio.Lock()

    def _pysnmp(self) -> PysnmpClient:
        if self._fallback is None:
            self._fallback = PysnmpClient()
        return self._fallback

    async def aclose(self) -> None:
        if self._transport is not None:
            self._transport.close()
            self._transport = None
        for future, _, _ in self._pending.values():
            future.cancel()
        self._pending.clear()
        if self._fallback is not None:
            await self._fallback.aclose()

    async def _socket(self) -> asyncio.DatagramTransport:
        transport = self._transport
        if transport is None:
            async with self._socket_lock:  # one socket, however many tasks start at once
                transport = self._transport or await self._open_socket()
        return transport

    async def _open_socket(self) -> asyncio.DatagramTransport:
        loop = asyncio.get_running_loop()
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 1024 * 1024)
        sock.bind(("0.0.0.0", 0))  # noqa: S104 - a client socket; answers come back to it
        sock.setblocking(False)
        transport, _ = await loop.create_datagram_endpoint(lambda: _Protocol(self), sock=sock)
        self._transport = transport
        return transport

    async def _address(self, target: TargetConfig) -> tuple[str, int]:
        key = (target.host, target.port)
        address = self._addresses.get(key)
        if address is None:
            loop = asyncio.get_running_loop()
            try:
                infos = await loop.getaddrinfo(
                    target.host, target.port, family=socket.AF_INET, type=socket.SOCK_DGRAM
                )
            except OSError as exc:
                raise SnmpError(
                    f"cannot resolve {target.host}: {exc.strerror or exc}", target=target.name
                ) from None
            address = (str(infos[0][4][0]), int(infos[0][4][1]))
            self._addresses[key] = address
        return address

    def _received(self, data: bytes, addr: Any) -> None:
        # the request id is read after a full decode, so a garbled datagram
        # cannot complete a request; answers nobody waits for, from another
        # address or with another community are dropped like lost ones
        try:
            decoded = decode_response(data)
        except (BerError, IndexError, ValueError):
            for future, expected, _ in self._pending.values():
                if expected == (addr[0], addr[1]) and not future.done():
                    future.set_exception(BerError("malformed response"))
                    break
            return
        entry = self._pending.get(decoded[1])
        if entry is None or entry[0].done():
            return
        future, expected, community = entry
        if expected == (addr[0], addr[1]) and decoded[0] == community:
            future.set_result(decoded)

    async def _exchange(
        self, target: TargetConfig, pdu: int, oids: Sequence[Oid], a: int = 0, b: int = 0
    ) -> list[tuple[Oid, Value]]:
        assert target.community is not None
        community = target.community.get_secret_value().encode()
        transport = await self._socket()
        address = await self._address(target)
        loop = asyncio.get_running_loop()
        for _attempt in range(target.retries + 1):
            request_id = next(self._ids) & 0x7FFFFFFF
            future: asyncio.Future[_Decoded] = loop.create_future()
            self._pending[request_id] = (future, address, community)
            try:
                transport.sendto(
                    encode_request(community, pdu, request_id, oids, a=a, b=b), address
                )
                try:
                    decoded = await asyncio.wait_for(future, target.timeout)
                except TimeoutError:
                    continue
                except BerError:
                    raise SnmpMalformedResponse(
                        "answer is not valid SNMPv2c BER", target=target.name
                    ) from None
            finally:
                self._pending.pop(request_id, None)
            _, _, status, index, varbinds = decoded
            if status:
                raise SnmpResponseError(
                    f"router answered error-status {status} at varbind {index}",
                    target=target.name,
                    status=status,
                    index=index,
                )
            return varbinds
        raise SnmpTimeout(
            f"no answer from {target.host}:{target.port} within "
            f"{target.timeout}s x {target.retries + 1} tries",
            target=target.name,
        )

    async def _get_chunk(self, target: TargetConfig, oids: Sequence[Oid]) -> dict[Oid, Value]:
        if target.version != "2c":
            return await self._pysnmp()._get_chunk(target, oids)
        varbinds = await self._exchange(target, GET, oids)
        if len(varbinds) != len(oids):
            raise SnmpMalformedResponse(
                f"asked {len(oids)} values, got {len(varbinds)}", target=target.name
            )
        return dict(varbinds)

    async def _walk_step(self, target: TargetConfig, cursor: Oid) -> list[tuple[Oid, Value]]:
        if target.version != "2c":
            return await self._pysnmp()._walk_step(target, cursor)
        return await self._exchange(target, GETBULK, [cursor], 0, target.max_repetitions)
