"""Whole SNMP messages for the simulator, on the shared BER primitives of :mod:`snmpber`.

:class:`Value`, :class:`Pdu` and :class:`Message` with :func:`encode_message` /
:func:`decode_message`: a complete (slower) codec of v1/v2c messages, used by
tests, the benchmarks and anyone who wants to talk to the simulator without an
SNMP library. The responder's hot path does not build these: it works on
pre-encoded OIDs with the primitives (:func:`~snmpber.read_tlv`,
:func:`~snmpber.encode_length`, ...) directly.

Types: SEQUENCE, INTEGER, OCTET STRING, NULL, OBJECT IDENTIFIER, Counter32,
Gauge32, TimeTicks, Counter64, the v2 exceptions (noSuchObject,
noSuchInstance, endOfMibView) and the PDUs GetRequest, GetNextRequest,
GetBulkRequest, SetRequest and Response. Every decoding problem raises
:class:`~snmpber.BerError`, never ``IndexError``.
"""

from __future__ import annotations

from typing import Final, NamedTuple

from snmpber import (
    END_OF_MIB_VIEW,
    GET,
    GETBULK,
    GETNEXT,
    INTEGER,
    NO_SUCH_INSTANCE,
    NO_SUCH_OBJECT,
    NULL,
    OBJECT_IDENTIFIER,
    OCTET_STRING,
    RESPONSE,
    SEQUENCE,
    SET,
    UNSIGNED_BITS,
    BerError,
    Oid,
    decode_oid,
    decode_signed,
    encode_oid,
    encode_signed,
    encode_tlv,
    encode_unsigned,
    parse_oid,
    read_tlv,
)

#: ``parse_oid`` is the shared one, named here for the fleet configuration's loader
__all__ = [
    "Message",
    "Pdu",
    "Value",
    "decode_message",
    "encode_message",
    "encode_value",
    "parse_oid",
]

_PDU_TAGS: Final = frozenset({GET, GETNEXT, RESPONSE, SET, GETBULK})
_EXCEPTIONS: Final = frozenset({NULL, NO_SUCH_OBJECT, NO_SUCH_INSTANCE, END_OF_MIB_VIEW})


class Value(NamedTuple):
    """A typed SNMP value: ``tag`` is one of the type constants of :mod:`snmpber`.

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


def encode_value(value: Value) -> bytes:
    """The TLV of any :class:`Value`."""
    tag, v = value
    if tag == INTEGER:
        assert isinstance(v, int)
        return encode_signed(INTEGER, v)
    if tag in UNSIGNED_BITS:
        assert isinstance(v, int)
        if v < 0 or v.bit_length() > UNSIGNED_BITS[tag]:
            raise BerError(f"{v} does not fit an unsigned {UNSIGNED_BITS[tag]}-bit value")
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


def _decode_value(data: bytes, tag: int, start: int, end: int) -> Value:
    if tag == INTEGER:
        return Value(INTEGER, decode_signed(data, start, end))
    if tag in UNSIGNED_BITS:
        if start == end:
            raise BerError(f"empty unsigned value at offset {start}")
        v = int.from_bytes(data[start:end], "big")
        if v.bit_length() > UNSIGNED_BITS[tag]:
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
    version = decode_signed(data, s, e)
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
        ints.append(decode_signed(data, s, pos))
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
