"""The SNMP agent logic: request datagram in, response datagram (or nothing) out.

No I/O here, so it is tested and benchmarked without sockets. One
:class:`Agent` serves one UDP socket; it finds the router by community (one
router per port, or many on a shared port) for v2c, and answers SNMPv3 (USM)
when the socket serves one router and the fleet has v3 users. Requests it
cannot or must not answer return ``None`` and are counted in
:class:`AgentStats`:

- wrong community, SNMP v1, v3 on a shared port, a dead router: no reply;
- bytes that are not a valid message: no reply, never an exception;
- SetRequest: a Response with error-status notWritable (the MIB is read-only);
- injected faults (:class:`~simulator.FaultConfig`): dropped requests,
  malformed replies, and a delay the socket layer applies (``last_delay``).

PDU handling (Get, GetNext, GetBulk, Set) is in :mod:`._pdu`, SNMPv3 in :mod:`._v3`.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from typing import Final

import structlog

from snmpber import INTEGER, OCTET_STRING, SEQUENCE, encode_length, encode_signed, read_tlv

from ._exceptions import BerError
from ._pdu import ANSWERED, answer, parse_pdu
from ._router import SimRouter
from ._usm import UsmUser
from ._v3 import V3Stats, handle_v3

__all__ = ["Agent", "AgentStats"]

_log = structlog.get_logger(component="simulator._agent")

_NO_ERROR: Final = b"\x02\x01\x00\x02\x01\x00"
_V2C: Final = b"\x02\x01\x01"
#: worst-case bytes around the varbinds: headers, lengths, ids (community added per request)
_OVERHEAD: Final = 48


class AgentStats(V3Stats):
    """What one socket saw. Plain integer attributes, summed by the fleet."""

    __slots__ = (
        "bad_community",
        "bad_version",
        "dropped_dead",
        "errors",
        "faults_delayed",
        "faults_dropped",
        "faults_malformed",
        "malformed",
        "requests",
        "responses",
        "unsupported",
    )

    def __init__(self) -> None:
        super().__init__()
        self.requests = 0  #: datagrams received
        self.responses = 0  #: responses sent (including v3 reports)
        self.bad_community = 0  #: no router has the community: no reply
        self.bad_version = 0  #: SNMP v1, or v3 where it is not served: no reply
        self.malformed = 0  #: not valid BER / SNMP: no reply
        self.dropped_dead = 0  #: addressed to a router switched dead: no reply
        self.unsupported = 0  #: PDUs an agent does not answer (Response, traps): no reply
        self.errors = 0  #: bugs: an exception while answering; logged, no reply
        self.faults_dropped = 0  #: injected packet loss
        self.faults_malformed = 0  #: injected malformed replies (sent)
        self.faults_delayed = 0  #: injected slow replies


class Agent:
    """Answers the requests that arrive on one socket."""

    __slots__ = (
        "_label",
        "_random",
        "_routers",
        "_single",
        "_users",
        "last_delay",
        "max_response_bytes",
        "port",
        "stats",
    )

    def __init__(
        self,
        routers: Mapping[bytes, SimRouter],
        *,
        max_response_bytes: int = 1400,
        label: str = "",
        port: int = 0,
        users: Mapping[bytes, UsmUser] | None = None,
        seed: int | None = None,
    ) -> None:
        """``routers`` maps community (bytes) to router; ``users`` are the SNMPv3
        users (by name); ``label`` and ``port`` are for logs."""
        self._routers = dict(routers)
        self._single = next(iter(self._routers.values())) if len(self._routers) == 1 else None
        self._users = dict(users or {})
        self.max_response_bytes = max_response_bytes
        self.stats = AgentStats()
        self._label = label
        self._random = random.Random(seed if seed is not None else label)
        #: the UDP port this agent answers on (set once bound), for logs
        self.port = port
        #: seconds the last reply should be held back (slow-response fault), 0 for none
        self.last_delay = 0.0

    def handle(self, data: bytes) -> bytes | None:
        """The response datagram for ``data``, or ``None`` for no reply."""
        stats = self.stats
        stats.requests += 1
        self.last_delay = 0.0
        try:
            reply = self._handle(data)
        except BerError:
            stats.malformed += 1
            return None
        except Exception:
            stats.errors += 1
            if stats.errors <= 10 or stats.errors % 10_000 == 0:
                _log.exception(
                    "sim.request_failed", router=self._label, port=self.port, count=stats.errors
                )
            return None
        if reply is not None:
            stats.responses += 1
        return reply

    def _faulty(self, router: SimRouter, reply: bytes | None) -> bytes | None:
        faults = router.faults
        if reply is None or faults is None:
            return reply
        rnd = self._random.random
        if faults.loss and rnd() < faults.loss:
            self.stats.faults_dropped += 1
            return None
        if faults.delay_ms:
            self.last_delay = (faults.delay_ms + faults.delay_jitter_ms * rnd()) / 1000
            self.stats.faults_delayed += 1
        if faults.malformed and rnd() < faults.malformed:
            self.stats.faults_malformed += 1
            cut = 1 + int(rnd() * (len(reply) - 2))
            return reply[:cut] + bytes((0xFF,)) * min(3, len(reply) - cut)
        return reply

    def _handle(self, data: bytes) -> bytes | None:
        end = len(data)
        tag, pos, msg_end = read_tlv(data, 0, end)
        if tag != SEQUENCE or msg_end != end:
            raise BerError("not one SEQUENCE")
        tag, s, pos = read_tlv(data, pos, end)
        if tag != INTEGER or s == pos:
            raise BerError("bad version")
        version = data[s:pos]
        single = self._single
        if version == b"\x03" and self._users and single is not None:
            if single.dead:
                self.stats.dropped_dead += 1
                return None
            reply = handle_v3(single, self._users, self.stats, data, pos, self.max_response_bytes)
            return self._faulty(single, reply)
        if version != b"\x01":
            self.stats.bad_version += 1
            return None
        community_start = pos
        tag, s, pos = read_tlv(data, pos, end)
        if tag != OCTET_STRING:
            raise BerError("bad community")
        router = self._routers.get(data[s:pos])
        if router is None:
            self.stats.bad_community += 1
            return None
        community_tlv = data[community_start:pos]
        pdu = parse_pdu(data, pos, end)
        if pdu.tag not in ANSWERED:
            self.stats.unsupported += 1
            return None
        if router.dead:
            self.stats.dropped_dead += 1
            return None
        budget = self.max_response_bytes - _OVERHEAD - len(community_tlv)
        status, index, vbl = answer(router, pdu, budget)
        reply = _response(community_tlv, pdu.request_id_tlv, status, index, vbl)
        return reply if router.faults is None else self._faulty(router, reply)


def _response(
    community_tlv: bytes, request_id_tlv: bytes, status: int, index: int, vbl: bytes
) -> bytes:
    fields = (
        _NO_ERROR if not status else encode_signed(INTEGER, status) + encode_signed(INTEGER, index)
    )
    pdu = request_id_tlv + fields + b"\x30" + encode_length(len(vbl)) + vbl
    body = _V2C + community_tlv + b"\xa2" + encode_length(len(pdu)) + pdu
    return b"\x30" + encode_length(len(body)) + body
