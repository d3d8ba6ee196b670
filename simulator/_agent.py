"""The SNMPv2c agent logic: request datagram in, response datagram (or nothing) out.

No I/O here, so it is tested and benchmarked without sockets. One
:class:`Agent` serves one UDP socket; it finds the router by community (one
router per port, or many on a shared port). Requests it cannot or must not
answer return ``None`` and are counted in :class:`AgentStats`:

- wrong community, SNMP version other than v2c, a dead router: no reply;
- bytes that are not a valid message: no reply, never an exception;
- SetRequest: a Response with error-status notWritable (the MIB is read-only).

GetBulk follows RFC 3416 4.2.3: non-repeaters first, then up to
max-repetitions rows of the repeaters; rows that would push the message past
``max_response_bytes`` are left out (fewer rows, not tooBig), and the walk stops
early once every repeater is at endOfMibView.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

import structlog

from ._ber import (
    GET,
    GETBULK,
    GETNEXT,
    INTEGER,
    OBJECT_IDENTIFIER,
    OCTET_STRING,
    SEQUENCE,
    SET,
    encode_length,
    encode_signed,
    encode_tlv,
    read_tlv,
)
from ._exceptions import BerError
from ._mib import end_of_mib_view
from ._router import SimRouter

__all__ = ["Agent", "AgentStats"]

_log = structlog.get_logger()

_TOO_BIG: Final = 1
_NOT_WRITABLE: Final = 17
_NO_ERROR: Final = b"\x02\x01\x00\x02\x01\x00"
_V2C: Final = b"\x02\x01\x01"
#: worst-case bytes around the varbinds: headers, lengths, ids (community added per request)
_OVERHEAD: Final = 48


class AgentStats:
    """What one socket saw. Plain integer attributes, summed by the fleet."""

    __slots__ = (
        "bad_community",
        "bad_version",
        "dropped_dead",
        "errors",
        "malformed",
        "requests",
        "responses",
        "unsupported",
    )

    def __init__(self) -> None:
        self.requests = 0  #: datagrams received
        self.responses = 0  #: responses sent
        self.bad_community = 0  #: no router has the community: no reply
        self.bad_version = 0  #: SNMP v1 or v3: no reply
        self.malformed = 0  #: not valid BER / SNMP: no reply
        self.dropped_dead = 0  #: addressed to a router switched dead: no reply
        self.unsupported = 0  #: PDUs an agent does not answer (Response, traps): no reply
        self.errors = 0  #: bugs: an exception while answering; logged, no reply


class Agent:
    """Answers the requests that arrive on one socket."""

    __slots__ = ("_label", "_routers", "max_response_bytes", "port", "stats")

    def __init__(
        self,
        routers: Mapping[bytes, SimRouter],
        *,
        max_response_bytes: int = 1400,
        label: str = "",
        port: int = 0,
    ) -> None:
        """``routers`` maps community (bytes) to router; ``label`` and ``port`` are for logs."""
        self._routers = dict(routers)
        self.max_response_bytes = max_response_bytes
        self.stats = AgentStats()
        self._label = label
        #: the UDP port this agent answers on (set once bound), for logs
        self.port = port

    def handle(self, data: bytes) -> bytes | None:
        """The response datagram for ``data``, or ``None`` for no reply."""
        stats = self.stats
        stats.requests += 1
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

    def _handle(self, data: bytes) -> bytes | None:
        end = len(data)
        tag, pos, msg_end = read_tlv(data, 0, end)
        if tag != SEQUENCE or msg_end != end:
            raise BerError("not one SEQUENCE")
        tag, s, pos = read_tlv(data, pos, end)
        if tag != INTEGER or s == pos:
            raise BerError("bad version")
        if data[s:pos] != b"\x01":
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
        pdu_tag, pos, pdu_end = read_tlv(data, pos, end)
        if pdu_end != end:
            raise BerError("trailing bytes after the PDU")
        if pdu_tag not in (GET, GETNEXT, GETBULK, SET):
            self.stats.unsupported += 1
            return None
        rid_start = pos
        tag, s, pos = read_tlv(data, pos, end)
        if tag != INTEGER or s == pos:
            raise BerError("bad request-id")
        request_id_tlv = data[rid_start:pos]
        tag, s, pos = read_tlv(data, pos, end)
        if tag != INTEGER or s == pos:
            raise BerError("bad error-status / non-repeaters")
        field_a = int.from_bytes(data[s:pos], "big", signed=True)
        tag, s, pos = read_tlv(data, pos, end)
        if tag != INTEGER or s == pos:
            raise BerError("bad error-index / max-repetitions")
        field_b = int.from_bytes(data[s:pos], "big", signed=True)
        tag, vbl_start, vbl_end = read_tlv(data, pos, end)
        if tag != SEQUENCE or vbl_end != end:
            raise BerError("bad variable-bindings")
        oids: list[bytes] = []
        pos = vbl_start
        while pos < vbl_end:
            tag, vb, pos = read_tlv(data, pos, vbl_end)
            if tag != SEQUENCE:
                raise BerError("a variable binding is a SEQUENCE")
            tag, s, e = read_tlv(data, vb, pos)
            if tag != OBJECT_IDENTIFIER or s == e:
                raise BerError("a variable binding starts with an OID")
            if read_tlv(data, e, pos)[2] != pos:
                raise BerError("trailing bytes in a variable binding")
            oids.append(data[s:e])

        if router.dead:
            self.stats.dropped_dead += 1
            return None
        now = router.clock()
        mib = router.mib
        budget = self.max_response_bytes - _OVERHEAD - len(community_tlv)
        if pdu_tag == GET:
            varbinds = [mib.get(c, now) for c in oids]
        elif pdu_tag == GETNEXT:
            varbinds = [mib.get_next(c, now) for c in oids]
        elif pdu_tag == SET:
            vbl = data[vbl_start:vbl_end]
            return _response(community_tlv, request_id_tlv, _NOT_WRITABLE, 1 if oids else 0, vbl)
        else:
            varbinds = self._bulk(router, oids, field_a, field_b, now, budget)
        vbl = b"".join(varbinds)
        if len(vbl) > budget:
            return _response(community_tlv, request_id_tlv, _TOO_BIG, 0, b"")
        return _response(community_tlv, request_id_tlv, 0, 0, vbl)

    @staticmethod
    def _bulk(
        router: SimRouter,
        oids: list[bytes],
        non_repeaters: int,
        max_repetitions: int,
        now: int,
        budget: int,
    ) -> list[bytes]:
        mib = router.mib
        n = min(max(non_repeaters, 0), len(oids))
        out = [mib.get_next(c, now) for c in oids[:n]]
        size = sum(map(len, out))
        repeaters = oids[n:]
        if not repeaters or max_repetitions <= 0 or size > budget:
            return out
        count = len(mib)
        varbind = mib.varbind
        if len(repeaters) == 1:  # the common walk of one column: no per-row lists
            first = i = mib.index_after(repeaters[0])
            for _ in range(max_repetitions):
                if i < count:
                    vb = varbind(i, now)
                    i += 1
                else:
                    # named after the last OID returned for it, or the one requested
                    name = mib.oid_tlv(i - 1) if i > first else None
                    vb = end_of_mib_view(name or encode_tlv(OBJECT_IDENTIFIER, repeaters[0]))
                    if size + len(vb) <= budget:
                        out.append(vb)
                    break
                if size + len(vb) > budget:
                    break
                out.append(vb)
                size += len(vb)
            return out
        positions = [mib.index_after(c) for c in repeaters]
        last = [encode_tlv(OBJECT_IDENTIFIER, c) for c in repeaters]
        for _ in range(max_repetitions):
            row: list[bytes] = []
            row_size = 0
            at_end = 0
            for k, i in enumerate(positions):
                if i < count:
                    vb = varbind(i, now)
                    last[k] = mib.oid_tlv(i)
                    positions[k] = i + 1
                else:
                    vb = end_of_mib_view(last[k])
                    at_end += 1
                row.append(vb)
                row_size += len(vb)
            if size + row_size > budget:
                break
            out += row
            size += row_size
            if at_end == len(positions):
                break
        return out


def _response(
    community_tlv: bytes, request_id_tlv: bytes, status: int, index: int, vbl: bytes
) -> bytes:
    fields = (
        _NO_ERROR if not status else encode_signed(INTEGER, status) + encode_signed(INTEGER, index)
    )
    pdu = request_id_tlv + fields + b"\x30" + encode_length(len(vbl)) + vbl
    body = _V2C + community_tlv + b"\xa2" + encode_length(len(pdu)) + pdu
    return b"\x30" + encode_length(len(body)) + body
