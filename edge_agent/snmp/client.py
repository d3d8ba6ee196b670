"""The SNMP client interface, the values it returns, and the counter logic every
implementation shares.

The poller talks only to :class:`SnmpClient`, so it can be tested with a
hand-written fake. Implementations (:class:`~edge_agent.snmp.PysnmpClient` for
every version, :class:`~edge_agent.snmp.FastV2cClient` for the v2c counter hot
path) subclass :class:`CounterClient`, which turns two primitives - GET a list
of OIDs, get the values after one OID - into column walks, interface discovery
and counter polls:
Counter64 (``ifHCInOctets`` / ``ifHCOutOctets``) is preferred; when a router
does not have the HC counters for an interface (or speaks only SNMPv1), the
32-bit ``ifInOctets`` / ``ifOutOctets`` are used. A value that is absent or of
the wrong type is ``None`` ("missing"), never zero.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Final, Literal, Protocol

import anyio
import msgspec

from .._exceptions import SnmpError, SnmpMalformedResponse
from ..config import TargetConfig

__all__ = [
    "IF_ALIAS",
    "IF_COUNTER_DISCONTINUITY",
    "IF_DESCR",
    "IF_HC_IN_OCTETS",
    "IF_HC_OUT_OCTETS",
    "IF_HIGH_SPEED",
    "IF_IN_OCTETS",
    "IF_NAME",
    "IF_OPER_STATUS",
    "IF_OUT_OCTETS",
    "OIDS_PER_INTERFACE",
    "SYS_UPTIME",
    "CounterClient",
    "CounterSample",
    "CounterValue",
    "InterfaceCounters",
    "InterfaceRow",
    "Oid",
    "SnmpClient",
    "Value",
    "is_under",
]

Oid = tuple[int, ...]

#: a decoded SNMP value: (type name, payload). Type names are the SMI ones:
#: ``Integer``, ``OctetString``, ``Null``, ``ObjectIdentifier``, ``IpAddress``,
#: ``Counter32``, ``Gauge32``, ``TimeTicks``, ``Opaque``, ``Counter64``, and the
#: v2 exceptions ``NoSuchObject``, ``NoSuchInstance``, ``EndOfMibView``.
Value = tuple[str, int | bytes | None]

SYS_UPTIME: Final[Oid] = (1, 3, 6, 1, 2, 1, 1, 3, 0)
IF_DESCR: Final[Oid] = (1, 3, 6, 1, 2, 1, 2, 2, 1, 2)
IF_OPER_STATUS: Final[Oid] = (1, 3, 6, 1, 2, 1, 2, 2, 1, 8)
IF_IN_OCTETS: Final[Oid] = (1, 3, 6, 1, 2, 1, 2, 2, 1, 10)
IF_OUT_OCTETS: Final[Oid] = (1, 3, 6, 1, 2, 1, 2, 2, 1, 16)
IF_NAME: Final[Oid] = (1, 3, 6, 1, 2, 1, 31, 1, 1, 1, 1)
IF_HC_IN_OCTETS: Final[Oid] = (1, 3, 6, 1, 2, 1, 31, 1, 1, 1, 6)
IF_HC_OUT_OCTETS: Final[Oid] = (1, 3, 6, 1, 2, 1, 31, 1, 1, 1, 10)
IF_HIGH_SPEED: Final[Oid] = (1, 3, 6, 1, 2, 1, 31, 1, 1, 1, 15)
IF_ALIAS: Final[Oid] = (1, 3, 6, 1, 2, 1, 31, 1, 1, 1, 18)
IF_COUNTER_DISCONTINUITY: Final[Oid] = (1, 3, 6, 1, 2, 1, 31, 1, 1, 1, 19)

#: varbinds a counter poll asks per interface (v2c/v3): ifHCIn/OutOctets,
#: ifHighSpeed, ifCounterDiscontinuityTime; plus one sysUpTime per poll
OIDS_PER_INTERFACE: Final = 4

#: varbinds per GET request; keeps responses below a 1500-byte datagram for
#: Counter64 values and far below the 64 KiB limit
GET_CHUNK: Final = 30


class InterfaceRow(msgspec.Struct, frozen=True):
    """One row of the interface table as discovered by a walk."""

    if_index: int
    if_name: str
    if_alias: str = ""
    if_descr: str = ""
    high_speed_mbps: int | None = None
    #: ifOperStatus: 1 up, 2 down, ... (``None`` when the router has none)
    oper_status: int | None = None


class CounterValue(msgspec.Struct, frozen=True):
    value: int
    width: Literal[32, 64]


class InterfaceCounters(msgspec.Struct, frozen=True):
    """Octet counters of one interface; ``None`` means the router did not give one."""

    if_index: int
    in_octets: CounterValue | None
    out_octets: CounterValue | None
    high_speed_mbps: int | None = None
    #: ifCounterDiscontinuityTime (TimeTicks); ``None`` when the router has none
    discontinuity_cs: int | None = None


class CounterSample(msgspec.Struct, frozen=True):
    """One poll of one router.

    ``sys_uptime_cs`` is sysUpTime in hundredths of a second, ``taken_ms`` the
    agent's wall clock (Unix ms) when the answer arrived.
    """

    target: str
    sys_uptime_cs: int
    taken_ms: int
    interfaces: dict[int, InterfaceCounters]


class SnmpClient(Protocol):
    """What the poller needs from SNMP. Errors are :class:`SnmpError` subclasses."""

    async def walk_interfaces(self, target: TargetConfig) -> list[InterfaceRow]: ...

    async def poll_counters(self, target: TargetConfig, if_indexes: Sequence[int]) -> CounterSample:
        """sysUpTime plus in/out octets and ifHighSpeed of ``if_indexes``."""
        ...

    async def aclose(self) -> None: ...


def is_under(oid: Oid, prefix: Oid) -> bool:
    return len(oid) > len(prefix) and oid[: len(prefix)] == prefix


def _int(value: Value | None, *types: str) -> int | None:
    """The integer of a value of one of ``types``; ``None`` for anything else."""
    if value is None or value[0] not in types or not isinstance(value[1], int):
        return None
    return value[1]


def _text(value: Value | None) -> str:
    if value is None or value[0] != "OctetString" or not isinstance(value[1], bytes):
        return ""
    return value[1].decode("utf-8", errors="replace")


class CounterClient:
    """Discovery and counter polls on top of two primitives subclasses implement.

    ``_get_chunk`` returns the value of every OID asked (missing ones may be
    left out or be ``NoSuch*``); ``_walk_step`` returns the values that follow
    one OID (one GETBULK or GETNEXT), from which ``_walk_column`` walks a
    table column into ``{ifIndex: value}``. Requests to one device are limited
    to ``target.max_in_flight`` at a time.
    """

    def __init__(self) -> None:
        self._device_limits: dict[str, anyio.CapacityLimiter] = {}

    def _device_limit(self, target: TargetConfig) -> anyio.CapacityLimiter:
        limiter = self._device_limits.get(target.name)
        if limiter is None or limiter.total_tokens != target.max_in_flight:
            limiter = anyio.CapacityLimiter(target.max_in_flight)
            self._device_limits[target.name] = limiter
        return limiter

    async def _get_chunk(self, target: TargetConfig, oids: Sequence[Oid]) -> dict[Oid, Value]:
        raise NotImplementedError

    async def _walk_step(self, target: TargetConfig, cursor: Oid) -> list[tuple[Oid, Value]]:
        raise NotImplementedError

    async def _walk_column(self, target: TargetConfig, column: Oid) -> dict[int, Value]:
        """``{index: value}`` of ``column``: :meth:`_walk_step` until the answers leave it.

        An answer that does not move past the cursor is a broken agent (it would
        loop for ever): :class:`SnmpMalformedResponse`.
        """
        rows: dict[int, Value] = {}
        cursor = column
        while True:
            varbinds = await self._walk_step(target, cursor)
            if not varbinds:
                return rows
            for oid, value in varbinds:
                if not is_under(oid, column) or value[0] == "EndOfMibView":
                    return rows
                if oid <= cursor:
                    raise SnmpMalformedResponse(
                        "walk did not advance (OIDs not increasing)", target=target.name
                    )
                if len(oid) == len(column) + 1:
                    rows[oid[-1]] = value
                cursor = oid

    async def aclose(self) -> None:
        pass

    async def _get(self, target: TargetConfig, oids: Sequence[Oid]) -> dict[Oid, Value]:
        """GET ``oids`` in chunks, up to ``max_in_flight`` chunks at once."""
        chunks = [oids[i : i + GET_CHUNK] for i in range(0, len(oids), GET_CHUNK)]
        out: dict[Oid, Value] = {}
        limit = self._device_limit(target)
        if len(chunks) == 1:
            async with limit:
                return await self._get_chunk(target, chunks[0])

        async def one(chunk: Sequence[Oid]) -> None:
            async with limit:
                out.update(await self._get_chunk(target, chunk))

        try:
            async with anyio.create_task_group() as tg:
                for chunk in chunks:
                    tg.start_soon(one, chunk)
        except BaseExceptionGroup as group:
            # a chunk's SnmpError is the poll's error (timeout, malformed...), not an
            # internal one: raise it as it is, so the poller reports its kind
            matched, rest = group.split(SnmpError)
            if matched is None or rest is not None:
                raise  # something else went wrong too: the poller reports it as internal
            first: BaseException = matched
            while isinstance(first, BaseExceptionGroup):
                first = first.exceptions[0]
            raise first from None
        return out

    async def _walk(self, target: TargetConfig, column: Oid) -> dict[int, Value]:
        async with self._device_limit(target):
            return await self._walk_column(target, column)

    async def walk_interfaces(self, target: TargetConfig) -> list[InterfaceRow]:
        names = await self._walk(target, IF_NAME)
        descrs = await self._walk(target, IF_DESCR)
        aliases = await self._walk(target, IF_ALIAS)
        speeds = await self._walk(target, IF_HIGH_SPEED)
        status = await self._walk(target, IF_OPER_STATUS)
        rows = []
        for index in sorted(set(names) | set(descrs)):
            descr = _text(descrs.get(index))
            name = _text(names.get(index)) or descr
            if not name:
                continue
            rows.append(
                InterfaceRow(
                    if_index=index,
                    if_name=name,
                    if_alias=_text(aliases.get(index)),
                    if_descr=descr,
                    high_speed_mbps=_int(speeds.get(index), "Gauge32"),
                    oper_status=_int(status.get(index), "Integer"),
                )
            )
        return rows

    async def poll_counters(self, target: TargetConfig, if_indexes: Sequence[int]) -> CounterSample:
        hc = target.version != "1"  # SNMPv1 has no Counter64
        oids: list[Oid] = [SYS_UPTIME]
        for index in if_indexes:
            if hc:
                oids += [(*IF_HC_IN_OCTETS, index), (*IF_HC_OUT_OCTETS, index)]
                oids += [(*IF_HIGH_SPEED, index), (*IF_COUNTER_DISCONTINUITY, index)]
            else:
                oids += [(*IF_IN_OCTETS, index), (*IF_OUT_OCTETS, index)]
        values = await self._get(target, oids)
        taken_ms = time.time_ns() // 1_000_000
        uptime = _int(values.get(SYS_UPTIME), "TimeTicks")
        if uptime is None:
            raise SnmpMalformedResponse("answer has no sysUpTime", target=target.name)

        def counter(column: Oid, index: int, width: Literal[32, 64]) -> CounterValue | None:
            kind = "Counter64" if width == 64 else "Counter32"
            value = _int(values.get((*column, index)), kind)
            return CounterValue(value, width) if value is not None else None

        counters = {}
        for index in if_indexes:
            if hc:
                in_oct = counter(IF_HC_IN_OCTETS, index, 64)
                out_oct = counter(IF_HC_OUT_OCTETS, index, 64)
            else:
                in_oct = counter(IF_IN_OCTETS, index, 32)
                out_oct = counter(IF_OUT_OCTETS, index, 32)
            counters[index] = InterfaceCounters(
                if_index=index,
                in_octets=in_oct,
                out_octets=out_oct,
                high_speed_mbps=_int(values.get((*IF_HIGH_SPEED, index)), "Gauge32"),
                discontinuity_cs=_int(values.get((*IF_COUNTER_DISCONTINUITY, index)), "TimeTicks"),
            )
        lacking = [i for i, c in counters.items() if c.in_octets is None or c.out_octets is None]
        if hc and lacking:
            values = await self._get(
                target,
                [oid for i in lacking for oid in ((*IF_IN_OCTETS, i), (*IF_OUT_OCTETS, i))],
            )
            for index in lacking:
                old = counters[index]
                counters[index] = msgspec.structs.replace(
                    old,
                    in_octets=old.in_octets or counter(IF_IN_OCTETS, index, 32),
                    out_octets=old.out_octets or counter(IF_OUT_OCTETS, index, 32),
                )
        return CounterSample(
            target=target.name, sys_uptime_cs=uptime, taken_ms=taken_ms, interfaces=counters
        )
