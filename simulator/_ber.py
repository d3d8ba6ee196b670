"""A lean BER codec for the SNMPv2c subset the simulator speaks.

Types: SEQUENCE, INTEGER, OCTET STRING, NULL, OBJECT IDENTIFIER, Counter32,
Gauge32, TimeTicks, Counter64, the v2 exceptions (noSuchObject,
noSuchInstance, endOfMibView) and the PDUs GetRequest, GetNextRequest,
GetBulkRequest, SetRequest and Response.

Two layers:

- small encoders (:func:`encode_length`, :func:`encode_oid`, :func:`encode_value`,
  ...) that the responder uses on its hot path with pre-encoded OIDs;
- :func:`encode_message` / :func:`decode_message`, a complete (slower) codec of
  whole messages, used by tests, the benchmark and anyone who wants to talk to
  the simulator without an SNMP library.

Every decoding problem raises :class:`~simulator.BerError`, never ``IndexError``.
"""

from __future__ import annotations

from typing import Final, NamedTuple

from ._exceptions import BerError

__all__ = [
    "COUNTER32",
    "COUNTER64",
    "END_OF_MIB_VIEW",
    "GAUGE32",
    "GET",
    "GETBULK",
    "GETNEXT",
    "INTEGER",
    "NO_SUCH_INSTANCE",
    "NO_SUCH_OBJECT",
    "NULL",
    "OBJECT_IDENTIFIER",
    "OCTET_STRING",
    "RESPONSE",
    "SEQUENCE",
    "SET",
    "TIMETICKS",
    "Message",
    "Oid",
    "Pdu",
    "Value",
    "decode_message",
    "decode_oid",
    "encode_length",
    "encode_message",
    "encode_oid",
    "encode_oid_content",
    "encode_signed",
    "encode_tlv",
    "encode_unsigned",
    "encode_value",
    "format_oid",
    "parse_oid",
    "read_tlv",
]

#: An object identifier as a tuple of arcs; tuples compare in OID (lexicographic) order.
Oid = tuple[int, ...]

SEQUENCE: Final = 0x30
INTEGER: Final = 0x02
OCTET_STRING: Final = 0x04
NULL: Final = 0x05
OBJECT_IDENTIFIER: Final = 0x06
COUNTER32: Final = 0x41
GAUGE32: Final = 0x42
TIMETICKS: Final = 0x43
COUNTER64: Final = 0x46
NO_SUCH_OBJECT: Final = 0x80
NO_SUCH_INSTANCE: Final = 0x81
END_OF_MIB_VIEW: Final = 0x82

GET: Final = 0xA0
GETNEXT: Final = 0xA1
RESPONSE: Final = 0xA2
SET: Final = 0xA3
GETBULK: Final = 0xA5

_PDU_TAGS: Final = frozenset({GET, GETNEXT, RESPONSE, SET, GETBULK})
_UNSIGNED_BITS: Final = {COUNTER32: 32, GAUGE32: 32, TIMETICKS: 32, COUNTER64: 64}
_EXCEPTIONS: Final = frozenset({NULL, NO_SUCH_OBJECT, NO_SUCH_INSTANCE, END_OF_MIB_VIEW})

# Short and two-byte lengths are looked up, longer ones computed.
_LENGTHS: Final[tuple[bytes, ...]] = tuple(
    bytes((n,)) if n < 0x80 else bytes((0x81, n)) if n < 0x100 else bytes((0x82, n >> 8, n & 0xFF))
    for n in range(4096)
)


class Value(NamedTuple):
    """A typed SNMP value: ``tag`` is one of the type constants of this module.

    ``value`` is an ``int`` for INTEGER and the unsigned application types,
    ``bytes`` for OCTET STRING, an :data:`Oid` for OBJECT IDENTIFIER, and
    ``None`` for NULL and the three v2 exceptions.
    """

    tag: int
    value: int | bytes | Oid | None = None


class Pdu(NamedTuple):
    """A PDU. For GetBulk, ``error_status`` is non-repeaters and ``error_index``
    is max-repetitions (RFC 3416 reuses the two fields)."""

    tag: int
    request_id: int
    error_status: int
    error_index: int
    varbinds: list[tuple[Oid, Value]]


class Message(NamedTuple):
    """An SNMP message: version 1 means v2c (0 would be v1)."""

    version: int
    community: bytes
    pdu: Pdu


# --------------------------------------------------------------------------- encode


def encode_length(n: int) -> bytes:
    """The BER definite length octets for ``n``."""
    if n < 4096:
        return _LENGTHS[n]
    body = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes((0x80 | len(body),)) + body


def encode_tlv(tag: int, content: bytes) -> bytes:
    """Tag, length and ``content``."""
    n = len(content)
    return bytes((tag,)) + (_LENGTHS[n] if n < 4096 else encode_length(n)) + content


def encode_signed(tag: int, v: int) -> bytes:
    """A two's complement integer in the fewest octets (INTEGER)."""
    return encode_tlv(tag, v.to_bytes((v + (v < 0)).bit_length() // 8 + 1, "big", signed=True))


def encode_unsigned(tag: int, v: int) -> bytes:
    """A non-negative integer (Counter32/64, Gauge32, TimeTicks); a leading 0 keeps it positive."""
    return encode_tlv(tag, v.to_bytes(v.bit_length() // 8 + 1, "big"))


def encode_oid_content(oid: Oid) -> bytes:
    """The content octets of an OBJECT IDENTIFIER (no tag, no length)."""
    if len(oid) < 2:
        raise BerError(f"an OID needs at least two arcs, got {format_oid(oid)!r}")
    first, second = oid[0], oid[1]
    if first > 2 or first < 0 or second < 0 or (first < 2 and second >= 40):
        raise BerError(f"invalid first arcs in OID {format_oid(oid)!r}")
    out = bytearray()
    for arc in (first * 40 + second, *oid[2:]):
        if arc < 0x80:
            if arc < 0:
                raise BerError(f"negative arc in OID {format_oid(oid)!r}")
            out.append(arc)
            continue
        chunk = [arc & 0x7F]
        arc >>= 7
        while arc:
            chunk.append(0x80 | (arc & 0x7F))
            arc >>= 7
        out.extend(reversed(chunk))
    return bytes(out)


def encode_oid(oid: Oid) -> bytes:
    """An OBJECT IDENTIFIER TLV."""
    return encode_tlv(OBJECT_IDENTIFIER, encode_oid_content(oid))


def encode_value(value: Value) -> bytes:
    """The TLV of any :class:`Value`."""
    tag, v = value
    if tag == INTEGER:
        assert isinstance(v, int)
        return encode_signed(INTEGER, v)
    if tag in _UNSIGNED_BITS:
        assert isinstance(v, int)
        if v < 0 or v.bit_length() > _UNSIGNED_BITS[tag]:
            raise BerError(f"{v} does not fit an unsigned {_UNSIGNED_BITS[tag]}-bit value")
        return encode_unsigned(tag, v)
    if tag == OCTET_STRING:
        assert isinstance(v, bytes)
        return encode_tlv(OCTET_STRING, v)
    if tag == OBJECT_IDENTIFIER:
        assert isinstance(v, tuple)
        return encode_oid(v)
    if tag in _EXCEPTIONS:
        return bytes((tag, 0))
    raise BerError(f"cannot encode values of tag 0x{tag:02x}")


def encode_message(message: Message) -> bytes:
    """A whole SNMP message."""
    pdu = message.pdu
    if pdu.tag not in _PDU_TAGS:
        raise BerError(f"unknown PDU tag 0x{pdu.tag:02x}")
    varbinds = b"".join(
        encode_tlv(SEQUENCE, encode_oid(oid) + encode_value(value)) for oid, value in pdu.varbinds
    )
    pdu_body = (
        encode_signed(INTEGER, pdu.request_id)
        + encode_signed(INTEGER, pdu.error_status)
        + encode_signed(INTEGER, pdu.error_index)
        + encode_tlv(SEQUENCE, varbinds)
    )
    body = (
        encode_signed(INTEGER, message.version)
        + encode_tlv(OCTET_STRING, message.community)
        + encode_tlv(pdu.tag, pdu_body)
    )
    return encode_tlv(SEQUENCE, body)


# --------------------------------------------------------------------------- decode


def read_tlv(data: bytes, pos: int, end: int) -> tuple[int, int, int]:
    """Read one TLV in ``data[pos:end]``: returns (tag, content start, content end)."""
    if pos + 2 > end:
        raise BerError(f"truncated TLV at offset {pos}")
    tag = data[pos]
    if tag & 0x1F == 0x1F:
        raise BerError(f"multi-byte tags are not supported (offset {pos})")
    n = data[pos + 1]
    pos += 2
    if n & 0x80:
        k = n & 0x7F
        if k == 0 or k > 4:
            raise BerError(f"unsupported length form 0x{n:02x} at offset {pos - 1}")
        if pos + k > end:
            raise BerError(f"truncated length at offset {pos}")
        n = int.from_bytes(data[pos : pos + k], "big")
        pos += k
    if pos + n > end:
        raise BerError(f"length {n} at offset {pos} runs past the end ({end})")
    return tag, pos, pos + n


def decode_oid(content: bytes) -> Oid:
    """The arcs of an OBJECT IDENTIFIER's content octets."""
    if not content:
        raise BerError("empty OBJECT IDENTIFIER")
    if content[-1] & 0x80:
        raise BerError("truncated sub-identifier in OBJECT IDENTIFIER")
    arcs: list[int] = []
    acc = 0
    for b in content:
        acc = (acc << 7) | (b & 0x7F)
        if not b & 0x80:
            arcs.append(acc)
            acc = 0
    first = arcs[0]
    head = (first // 40, first % 40) if first < 80 else (2, first - 80)
    return (*head, *arcs[1:])


def _decode_int(data: bytes, start: int, end: int) -> int:
    if start == end:
        raise BerError(f"empty INTEGER at offset {start}")
    return int.from_bytes(data[start:end], "big", signed=True)


def _decode_value(data: bytes, tag: int, start: int, end: int) -> Value:
    if tag == INTEGER:
        return Value(INTEGER, _decode_int(data, start, end))
    if tag in _UNSIGNED_BITS:
        if start == end:
            raise BerError(f"empty unsigned value at offset {start}")
        v = int.from_bytes(data[start:end], "big")
        if v.bit_length() > _UNSIGNED_BITS[tag]:
            raise BerError(f"value too large for tag 0x{tag:02x} at offset {start}")
        return Value(tag, v)
    if tag == OCTET_STRING:
        return Value(OCTET_STRING, bytes(data[start:end]))
    if tag == OBJECT_IDENTIFIER:
        return Value(OBJECT_IDENTIFIER, decode_oid(bytes(data[start:end])))
    if tag in _EXCEPTIONS:
        if start != end:
            raise BerError(f"non-empty NULL-like value at offset {start}")
        return Value(tag)
    raise BerError(f"unsupported value tag 0x{tag:02x} at offset {start}")


def decode_message(data: bytes) -> Message:
    """Decode a whole v1/v2c message (any PDU of :data:`_PDU_TAGS`)."""
    end = len(data)
    tag, pos, msg_end = read_tlv(data, 0, end)
    if tag != SEQUENCE or msg_end != end:
        raise BerError("a message is one SEQUENCE filling the datagram")
    tag, s, e = read_tlv(data, pos, end)
    if tag != INTEGER:
        raise BerError("version must be an INTEGER")
    version = _decode_int(data, s, e)
    tag, s, pos = read_tlv(data, e, end)
    if tag != OCTET_STRING:
        raise BerError("community must be an OCTET STRING")
    community = bytes(data[s:pos])
    pdu_tag, pos, pdu_end = read_tlv(data, pos, end)
    if pdu_tag not in _PDU_TAGS or pdu_end != end:
        raise BerError(f"unknown PDU tag 0x{pdu_tag:02x}")
    ints: list[int] = []
    for _ in range(3):
        tag, s, pos = read_tlv(data, pos, pdu_end)
        if tag != INTEGER:
            raise BerError("request-id, error-status and error-index are INTEGERs")
        ints.append(_decode_int(data, s, pos))
    tag, pos, vbl_end = read_tlv(data, pos, pdu_end)
    if tag != SEQUENCE or vbl_end != pdu_end:
        raise BerError("variable bindings must be a SEQUENCE ending the PDU")
    varbinds: list[tuple[Oid, Value]] = []
    while pos < vbl_end:
        tag, vb, pos = read_tlv(data, pos, vbl_end)
        if tag != SEQUENCE:
            raise BerError("a variable binding is a SEQUENCE")
        tag, s, e = read_tlv(data, vb, pos)
        if tag != OBJECT_IDENTIFIER:
            raise BerError("a variable binding starts with an OID")
        oid = decode_oid(bytes(data[s:e]))
        tag, s, e2 = read_tlv(data, e, pos)
        if e2 != pos:
            raise BerError("trailing bytes in a variable binding")
        varbinds.append((oid, _decode_value(data, tag, s, e2)))
    return Message(version, community, Pdu(pdu_tag, ints[0], ints[1], ints[2], varbinds))


# --------------------------------------------------------------------------- text


def parse_oid(text: str) -> Oid:
    """``"1.3.6.1.2.1.1.3.0"`` (a leading dot is fine) as a tuple."""
    try:
        oid = tuple(int(arc) for arc in text.strip().lstrip(".").split("."))
    except ValueError:
        raise BerError(f"not a numeric OID: {text!r}") from None
    encode_oid_content(oid)  # validates
    return oid


def format_oid(oid: Oid) -> str:
    """The dotted form of an OID."""
    return ".".join(map(str, oid))
