"""Answering one PDU from a router's MIB, whatever message (v2c or v3) carried it.

:func:`parse_pdu` reads the PDU fields without decoding values;
:func:`answer` computes the response variable bindings. GetBulk follows
RFC 3416 4.2.3: non-repeaters first, then up to max-repetitions rows of the
repeaters; rows that would push the message past the byte budget are left out
(fewer rows, not tooBig), and the walk stops early once every repeater is at
endOfMibView.
"""

from __future__ import annotations

from typing import Final, NamedTuple

from snmpber import (
    GET,
    GETBULK,
    GETNEXT,
    INTEGER,
    OBJECT_IDENTIFIER,
    SEQUENCE,
    SET,
    encode_tlv,
    read_tlv,
)

from ._exceptions import BerError
from ._mib import end_of_mib_view
from ._router import SimRouter

__all__ = ["ANSWERED", "TOO_BIG", "ParsedPdu", "answer", "parse_pdu"]

TOO_BIG: Final = 1
NOT_WRITABLE: Final = 17
#: the PDU types an agent answers
ANSWERED: Final = frozenset((GET, GETNEXT, GETBULK, SET))


class ParsedPdu(NamedTuple):
    tag: int
    request_id_tlv: bytes  #: the request-id TLV, copied into the response as is
    field_a: int  #: error-status, or non-repeaters for GetBulk
    field_b: int  #: error-index, or max-repetitions for GetBulk
    oids: list[bytes]  #: OID content octets of the variable bindings
    vbl: bytes  #: the variable-bindings content as received


def parse_pdu(data: bytes, pos: int, end: int) -> ParsedPdu:
    """Read the PDU TLV at ``pos`` (it must end at ``end``)."""
    pdu_tag, pos, pdu_end = read_tlv(data, pos, end)
    if pdu_end != end:
        raise BerError("trailing bytes after the PDU")
    rid_start = pos
    tag, s, pos = read_tlv(data, pos, end)
    if tag != INTEGER or s == pos:
        raise BerError("bad request-id")
    request_id_tlv = data[rid_start:pos]
    if pdu_tag not in ANSWERED:
        return ParsedPdu(pdu_tag, request_id_tlv, 0, 0, [], b"")
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
    return ParsedPdu(pdu_tag, request_id_tlv, field_a, field_b, oids, data[vbl_start:vbl_end])


def answer(router: SimRouter, pdu: ParsedPdu, budget: int) -> tuple[int, int, bytes]:
    """(error-status, error-index, variable-bindings content) answering ``pdu``."""
    now = router.clock()
    mib = router.mib
    tag = pdu.tag
    if tag == GET:
        varbinds = [mib.get(c, now) for c in pdu.oids]
    elif tag == GETNEXT:
        varbinds = [mib.get_next(c, now) for c in pdu.oids]
    elif tag == SET:
        return NOT_WRITABLE, 1 if pdu.oids else 0, pdu.vbl
    else:
        varbinds = _bulk(router, pdu.oids, pdu.field_a, pdu.field_b, now, budget)
    vbl = b"".join(varbinds)
    if len(vbl) > budget:
        return TOO_BIG, 0, b""
    return 0, 0, vbl


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
