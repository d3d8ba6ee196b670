"""A router's MIB view: sorted OIDs with pre-encoded variable bindings.

:class:`MibView` is generic: entries are an OID and either a fixed
:class:`~simulator._ber.Value` (encoded once, at build time) or a function of
the time in nanoseconds that returns the encoded value TLV (counters, uptime).
Lookups by the request's raw OID bytes hit a dict, so a walk (whose next
request starts at the OID we just returned) never decodes an OID.

:func:`build_router_mib` lays out what a simulated router serves: system,
ifNumber, ifTable and ifXTable (with ifCounterDiscontinuityTime).
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Final

from snmpber import (
    COUNTER32,
    COUNTER64,
    END_OF_MIB_VIEW,
    GAUGE32,
    INTEGER,
    NO_SUCH_INSTANCE,
    NO_SUCH_OBJECT,
    OBJECT_IDENTIFIER,
    OCTET_STRING,
    TIMETICKS,
    Oid,
    decode_oid,
    encode_oid_content,
    encode_tlv,
    encode_unsigned,
    parse_oid,
)

from ._ber import Value, encode_value

if TYPE_CHECKING:
    from ._router import SimRouter

__all__ = ["OIDS", "Dynamic", "MibView", "build_router_mib", "end_of_mib_view"]

#: A value computed at request time: nanoseconds -> encoded value TLV.
Dynamic = Callable[[int], bytes]

_MASK32: Final = 2**32 - 1


class _Oids:
    """The OIDs served, by name (columns without the instance suffix)."""

    system: Final = (1, 3, 6, 1, 2, 1, 1)
    sysDescr: Final = (*system, 1)
    sysObjectID: Final = (*system, 2)
    sysUpTime: Final = (*system, 3)
    sysName: Final = (*system, 5)
    ifNumber: Final = (1, 3, 6, 1, 2, 1, 2, 1)
    ifEntry: Final = (1, 3, 6, 1, 2, 1, 2, 2, 1)
    ifIndex: Final = (*ifEntry, 1)
    ifDescr: Final = (*ifEntry, 2)
    ifType: Final = (*ifEntry, 3)
    ifSpeed: Final = (*ifEntry, 5)
    ifAdminStatus: Final = (*ifEntry, 7)
    ifOperStatus: Final = (*ifEntry, 8)
    ifInOctets: Final = (*ifEntry, 10)
    ifOutOctets: Final = (*ifEntry, 16)
    ifXEntry: Final = (1, 3, 6, 1, 2, 1, 31, 1, 1, 1)
    ifName: Final = (*ifXEntry, 1)
    ifHCInOctets: Final = (*ifXEntry, 6)
    ifHCOutOctets: Final = (*ifXEntry, 10)
    ifHighSpeed: Final = (*ifXEntry, 15)
    ifAlias: Final = (*ifXEntry, 18)
    ifCounterDiscontinuityTime: Final = (*ifXEntry, 19)


OIDS: Final = _Oids()


def _seq(content: bytes) -> bytes:
    return encode_tlv(0x30, content)


class MibView:
    """An immutable, sorted set of OIDs answering get and get-next."""

    __slots__ = ("_after", "_by_content", "_dynamic", "_objects", "_oid_tlvs", "_static", "oids")

    def __init__(self, entries: Iterable[tuple[Oid, Value | Dynamic]], objects: Iterable[Oid]):
        """``objects`` are the object OIDs (scalars and columns, without
        instance) so a get can tell noSuchInstance from noSuchObject."""
        ordered = sorted(entries, key=lambda entry: entry[0])
        self.oids: list[Oid] = [oid for oid, _ in ordered]
        if len(set(self.oids)) != len(self.oids):
            raise ValueError("duplicate OIDs in a MIB view")
        self._oid_tlvs: list[bytes] = []
        self._static: list[bytes | None] = []
        self._dynamic: list[Dynamic | None] = []
        self._by_content: dict[bytes, int] = {}
        for i, (oid, value) in enumerate(ordered):
            content = encode_oid_content(oid)
            oid_tlv = encode_tlv(OBJECT_IDENTIFIER, content)
            self._by_content[content] = i
            self._oid_tlvs.append(oid_tlv)
            if isinstance(value, Value):
                self._static.append(_seq(oid_tlv + encode_value(value)))
                self._dynamic.append(None)
            else:
                self._static.append(None)
                self._dynamic.append(value)
        self._objects = frozenset(objects)
        self._after: dict[bytes, int] = {}  # index_after for OIDs that are not entries

    def __len__(self) -> int:
        return len(self.oids)

    def varbind(self, i: int, now_ns: int) -> bytes:
        """The encoded variable binding of entry ``i`` at time ``now_ns``."""
        static = self._static[i]
        if static is not None:
            return static
        dynamic = self._dynamic[i]
        assert dynamic is not None
        body = self._oid_tlvs[i] + dynamic(now_ns)
        return b"\x30" + bytes((len(body),)) + body if len(body) < 0x80 else _seq(body)

    def oid_tlv(self, i: int) -> bytes:
        """The encoded OID of entry ``i``."""
        return self._oid_tlvs[i]

    def index_after(self, content: bytes) -> int:
        """Index of the first entry strictly after the OID with these content
        octets (``len(self)`` when there is none)."""
        i = self._by_content.get(content)
        if i is not None:
            return i + 1
        i = self._after.get(content)
        if i is None:
            i = bisect_right(self.oids, decode_oid(content))
            if len(self._after) >= 4096:  # bounded: requests choose these OIDs
                self._after.clear()
            self._after[content] = i
        return i

    def get(self, content: bytes, now_ns: int) -> bytes:
        """The varbind answering a get of the OID with these content octets."""
        i = self._by_content.get(content)
        if i is not None:
            return self.varbind(i, now_ns)
        oid = decode_oid(content)
        known = any(oid[:n] in self._objects for n in range(len(oid), 1, -1))
        tag = NO_SUCH_INSTANCE if known else NO_SUCH_OBJECT
        return _seq(encode_tlv(OBJECT_IDENTIFIER, content) + bytes((tag, 0)))

    def get_next(self, content: bytes, now_ns: int) -> bytes:
        """The varbind answering a get-next (endOfMibView past the last OID)."""
        i = self.index_after(content)
        if i < len(self.oids):
            return self.varbind(i, now_ns)
        return end_of_mib_view(encode_tlv(OBJECT_IDENTIFIER, content))


def end_of_mib_view(oid_tlv: bytes) -> bytes:
    """A varbind of ``oid_tlv`` with the endOfMibView exception."""
    return _seq(oid_tlv + bytes((END_OF_MIB_VIEW, 0)))


def _counter(router: SimRouter, if_name: str, direction: str, tag: int, mask: int) -> Dynamic:
    octets = router.octets
    traffic = router.traffic(if_name, direction)
    total = traffic.total
    initial = traffic.initial
    epoch = router.epoch_ns
    boots = router.boots  # appended to in place by reboots
    clears = router.clears  # and by clears

    def value(now_ns: int) -> bytes:
        if (len(boots) == 1 or now_ns < boots[1]) and not clears:  # the hot path, inlined
            v = (initial + total(now_ns - epoch)) & mask
        else:
            v = octets(if_name, direction, now_ns) & mask
        content = v.to_bytes(v.bit_length() // 8 + 1, "big")
        return bytes((tag, len(content))) + content

    return value


def build_router_mib(router: SimRouter) -> MibView:
    """What one simulated router serves, from its config and current ifIndex numbering."""
    o = OIDS
    cfg = router.config
    uptime = router.uptime_ticks
    discontinuity = router.discontinuity_ticks
    entries: list[tuple[Oid, Value | Dynamic]] = [
        ((*o.sysDescr, 0), Value(OCTET_STRING, router.sys_descr.encode())),
        ((*o.sysObjectID, 0), Value(OBJECT_IDENTIFIER, parse_oid(cfg.sys_object_id))),
        ((*o.sysUpTime, 0), lambda now: encode_unsigned(TIMETICKS, uptime(now))),
        ((*o.sysName, 0), Value(OCTET_STRING, router.sys_name.encode())),
        ((*o.ifNumber, 0), Value(INTEGER, len(cfg.interfaces))),
    ]
    for iface in cfg.interfaces:
        idx = router.if_index(iface.name)
        status = 1 if iface.oper_status == "up" else 2
        name = iface.name
        entries += [
            ((*o.ifIndex, idx), Value(INTEGER, idx)),
            ((*o.ifDescr, idx), Value(OCTET_STRING, (iface.descr or name).encode())),
            ((*o.ifType, idx), Value(INTEGER, iface.if_type)),
            ((*o.ifSpeed, idx), Value(GAUGE32, min(iface.speed_bps, _MASK32))),
            ((*o.ifAdminStatus, idx), Value(INTEGER, 1)),
            ((*o.ifOperStatus, idx), Value(INTEGER, status)),
            ((*o.ifInOctets, idx), _counter(router, name, "in", COUNTER32, _MASK32)),
            ((*o.ifOutOctets, idx), _counter(router, name, "out", COUNTER32, _MASK32)),
            ((*o.ifName, idx), Value(OCTET_STRING, name.encode())),
            ((*o.ifHCInOctets, idx), _counter(router, name, "in", COUNTER64, 2**64 - 1)),
            ((*o.ifHCOutOctets, idx), _counter(router, name, "out", COUNTER64, 2**64 - 1)),
            ((*o.ifHighSpeed, idx), Value(GAUGE32, min(iface.speed_bps // 1_000_000, _MASK32))),
            ((*o.ifAlias, idx), Value(OCTET_STRING, iface.if_alias.encode())),
            (
                (*o.ifCounterDiscontinuityTime, idx),
                lambda now: encode_unsigned(TIMETICKS, discontinuity(now)),
            ),
        ]
    objects = [
        value
        for key, value in vars(_Oids).items()
        if not key.startswith("_") and key not in {"system", "ifEntry", "ifXEntry"}
    ]
    return MibView(entries, objects)
