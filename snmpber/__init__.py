"""The BER codec primitives SNMP needs, shared by the edge agent and the simulator.

The agent's lean v2c client (:mod:`edge_agent.snmp.fastv2c`) and the
simulated routers (:mod:`simulator`) speak the same bytes from opposite ends,
so the length, integer, OID and TLV code is written once, here.

Why a package of its own: the edge agent is the product and must never import
the simulator (a test double for routers); the simulator should not load the
agent's configuration and SNMP clients just to encode a length either. So the
codec sits beside both, imports nothing but the standard library, and both
import it; the two roles stay independent of each other.

Because both ends share this code, a mistake in it would not show in the tests
that poll the simulator with the agent. What pins it to the standard are the
interop tests against other implementations: pysnmp/pyasn1 decoding what we
encode and the other way round (``tests/agent/test_fastv2c.py``,
``tests/simulator/test_sim_ber.py``, ``tests/test_snmpber.py``), and net-snmp's
``snmpd`` and command-line tools (``tests/agent/test_snmpd.py``,
``tests/simulator/test_sim_netsnmp.py``).

What is here: tags, definite lengths, INTEGER and unsigned encodings, OBJECT
IDENTIFIERs (binary and dotted text), and reading one TLV at a time; whole
messages are built by the users (the agent encodes requests and decodes
responses, the simulator the reverse). Written for hot paths: lengths below
4096 are looked up, nothing is copied that a caller does not slice itself,
and error messages are built only when there is an error. Every decoding
problem raises :class:`BerError` (a ``ValueError``), never ``IndexError``.
"""

from __future__ import annotations

from typing import Final

__all__ = [
    "COUNTER32",
    "COUNTER64",
    "END_OF_MIB_VIEW",
    "GAUGE32",
    "GET",
    "GETBULK",
    "GETNEXT",
    "INTEGER",
    "IP_ADDRESS",
    "NO_SUCH_INSTANCE",
    "NO_SUCH_OBJECT",
    "NULL",
    "OBJECT_IDENTIFIER",
    "OCTET_STRING",
    "OPAQUE",
    "RESPONSE",
    "SEQUENCE",
    "SET",
    "TIMETICKS",
    "UNSIGNED_BITS",
    "BerError",
    "Oid",
    "decode_oid",
    "decode_signed",
    "encode_length",
    "encode_oid",
    "encode_oid_content",
    "encode_signed",
    "encode_tlv",
    "encode_unsigned",
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
IP_ADDRESS: Final = 0x40
COUNTER32: Final = 0x41
GAUGE32: Final = 0x42
TIMETICKS: Final = 0x43
OPAQUE: Final = 0x44
COUNTER64: Final = 0x46
NO_SUCH_OBJECT: Final = 0x80
NO_SUCH_INSTANCE: Final = 0x81
END_OF_MIB_VIEW: Final = 0x82

GET: Final = 0xA0
GETNEXT: Final = 0xA1
RESPONSE: Final = 0xA2
SET: Final = 0xA3
GETBULK: Final = 0xA5

#: the unsigned application types and their width in bits
UNSIGNED_BITS: Final = {COUNTER32: 32, GAUGE32: 32, TIMETICKS: 32, COUNTER64: 64}

# Short and two-byte lengths are looked up, longer ones computed.
_LENGTHS: Final[tuple[bytes, ...]] = tuple(
    bytes((n,)) if n < 0x80 else bytes((0x81, n)) if n < 0x100 else bytes((0x82, n >> 8, n & 0xFF))
    for n in range(4096)
)


class BerError(ValueError):
    """Bytes that are not valid BER for SNMP, or a value BER cannot carry."""


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


# --------------------------------------------------------------------------- decode


def read_tlv(data: bytes, pos: int, end: int) -> tuple[int, int, int]:
    """Read one TLV in ``data[pos:end]``: returns (tag, content start, content end)."""
    if pos + 2 > end:
        raise BerError(f"truncated TLV at offset {pos}")
    tag = data[pos]
    n = data[pos + 1]
    if n < 0x80 and tag & 0x1F != 0x1F:  # a one-byte tag and a short length: most TLVs
        pos += 2
        if pos + n > end:
            raise BerError(f"length {n} at offset {pos} runs past the end ({end})")
        return tag, pos, pos + n
    if tag & 0x1F == 0x1F:
        raise BerError(f"multi-byte tags are not supported (offset {pos})")
    pos += 2
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


def decode_signed(data: bytes, start: int, end: int) -> int:
    """The two's complement integer in ``data[start:end]`` (an INTEGER's content)."""
    if start == end:
        raise BerError(f"empty INTEGER at offset {start}")
    return int.from_bytes(data[start:end], "big", signed=True)


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
