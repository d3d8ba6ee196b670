"""The SNMP client: a small interface and its pysnmp 7 (asyncio) implementation.

The poller talks only to :class:`SnmpClient`, so it can be tested with a
hand-written fake. :class:`PysnmpClient` uses one ``SnmpEngine`` per process,
numeric OIDs (no MIB loading) and SNMP v2c. Counter64 (``ifHCInOctets`` /
``ifHCOutOctets``) is preferred; when a router does not have the HC counters
for an interface, the 32-bit ``ifInOctets`` / ``ifOutOctets`` are used. A value
that is absent or of the wrong type is ``None`` ("missing"), never zero.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterable, Sequence
from typing import Any, Final, Literal, Protocol

import msgspec

from .._exceptions import SnmpError, SnmpMalformedResponse, SnmpResponseError, SnmpTimeout
from ..config import TargetConfig

__all__ = [
    "CounterSample",
    "CounterValue",
    "InterfaceCounters",
    "InterfaceRow",
    "PysnmpClient",
    "SnmpClient",
]

Oid = tuple[int, ...]

SYS_UPTIME: Final[Oid] = (1, 3, 6, 1, 2, 1, 1, 3, 0)
IF_DESCR: Final[Oid] = (1, 3, 6, 1, 2, 1, 2, 2, 1, 2)
IF_IN_OCTETS: Final[Oid] = (1, 3, 6, 1, 2, 1, 2, 2, 1, 10)
IF_OUT_OCTETS: Final[Oid] = (1, 3, 6, 1, 2, 1, 2, 2, 1, 16)
IF_NAME: Final[Oid] = (1, 3, 6, 1, 2, 1, 31, 1, 1, 1, 1)
IF_HC_IN_OCTETS: Final[Oid] = (1, 3, 6, 1, 2, 1, 31, 1, 1, 1, 6)
IF_HC_OUT_OCTETS: Final[Oid] = (1, 3, 6, 1, 2, 1, 31, 1, 1, 1, 10)
IF_HIGH_SPEED: Final[Oid] = (1, 3, 6, 1, 2, 1, 31, 1, 1, 1, 15)
IF_ALIAS: Final[Oid] = (1, 3, 6, 1, 2, 1, 31, 1, 1, 1, 18)

#: varbinds per GET request; keeps responses well below a 1500-byte UDP datagram's
#: worst case for most routers and far below the 64 KiB limit
_GET_CHUNK: Final = 30


class InterfaceRow(msgspec.Struct, frozen=True):
    """One row of the interface table as discovered by a walk."""

    if_index: int
    if_name: str
    if_alias: str = ""
    if_descr: str = ""
    high_speed_mbps: int | None = None


class CounterValue(msgspec.Struct, frozen=True):
    value: int
    width: Literal[32, 64]


class InterfaceCounters(msgspec.Struct, frozen=True):
    """Octet counters of one interface; ``None`` means the router did not give one."""

    if_index: int
    in_octets: CounterValue | None
    out_octets: CounterValue | None
    high_speed_mbps: int | None = None


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


def _is_under(oid: Oid, prefix: Oid) -> bool:
    return len(oid) > len(prefix) and oid[: len(prefix)] == prefix


def _as_int(value: Any, *types: str) -> int | None:
    """The integer of an SNMP value of one of ``types``; ``None`` for anything else."""
    if type(value).__name__ not in types:
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _as_text(value: Any) -> str:
    if type(value).__name__ != "OctetString":
        return ""
    return bytes(value.asOctets()).decode("utf-8", errors="replace")


class PysnmpClient:
    """:class:`SnmpClient` over pysnmp 7.1 asyncio (v2c). One engine per instance.

    Create one per process (the app does) and ``await aclose()`` at the end.
    """

    def __init__(self) -> None:
        from pysnmp.hlapi.v3arch.asyncio import SnmpEngine

        self._engine = SnmpEngine()
        self._transports: dict[str, Any] = {}

    async def aclose(self) -> None:
        self._engine.close_dispatcher()

    # -- plumbing ---------------------------------------------------------------

    async def _transport(self, target: TargetConfig) -> Any:
        from pysnmp.error import PySnmpError
        from pysnmp.hlapi.v3arch.asyncio import UdpTransportTarget

        key = f"{target.host}:{target.port}:{target.timeout}:{target.retries}"
        transport = self._transports.get(key)
        if transport is None:
            try:
                transport = await UdpTransportTarget.create(
                    (target.host, target.port), timeout=target.timeout, retries=target.retries
                )
            except PySnmpError as exc:
                raise SnmpError(
                    f"cannot resolve {target.host}: {exc}", target=target.name
                ) from None
            self._transports[key] = transport
        return transport

    def _auth(self, target: TargetConfig) -> Any:
        from pysnmp.hlapi.v3arch.asyncio import CommunityData

        # pysnmp maps an answer's community back to the *first* matching entry of
        # its community table, so equal communities must share one entry (one
        # index); the index is a hash, so the secret itself is never a table key.
        secret = target.community.get_secret_value()
        index = "resmon-" + hashlib.blake2b(secret.encode(), digest_size=8).hexdigest()
        return CommunityData(
            index,
            secret,
            mpModel=1,  # noqa: S508 - v2c is what the routers speak; v3 comes later
        )

    def _check(self, target: TargetConfig, result: tuple[Any, Any, Any, Any]) -> Sequence[Any]:
        error_indication, error_status, error_index, var_binds = result
        if error_indication:
            name = type(error_indication).__name__
            if name == "RequestTimedOut":
                raise SnmpTimeout(
                    f"no answer from {target.host}:{target.port} within "
                    f"{target.timeout}s x {target.retries + 1} tries",
                    target=target.name,
                )
            raise SnmpError(f"request failed: {name}", target=target.name)
        if error_status and int(error_status) != 0:
            raise SnmpResponseError(
                f"router answered {error_status.prettyPrint()} at varbind {int(error_index)}",
                target=target.name,
            )
        return var_binds  # type: ignore[no-any-return]

    async def _get(self, target: TargetConfig, oids: Iterable[Oid]) -> dict[Oid, Any]:
        from pysnmp.error import PySnmpError
        from pysnmp.hlapi.v3arch.asyncio import ContextData, ObjectIdentity, ObjectType, get_cmd

        transport = await self._transport(target)
        out: dict[Oid, Any] = {}
        oid_list = list(oids)
        for start in range(0, len(oid_list), _GET_CHUNK):
            chunk = oid_list[start : start + _GET_CHUNK]
            try:
                result = await get_cmd(
                    self._engine,
                    self._auth(target),
                    transport,
                    ContextData(),
                    *(ObjectType(ObjectIdentity(oid)) for oid in chunk),
                    lookupMib=False,
                )
            except PySnmpError as exc:
                raise SnmpError(
                    f"request failed: {type(exc).__name__}", target=target.name
                ) from None
            for oid, value in self._check(target, result):
                out[tuple(oid)] = value
        return out

    async def _walk_column(self, target: TargetConfig, column: Oid) -> dict[int, Any]:
        """Every ``column.<ifIndex>`` value, via GETBULK."""
        from pysnmp.error import PySnmpError
        from pysnmp.hlapi.v3arch.asyncio import ContextData, ObjectIdentity, ObjectType, bulk_cmd

        transport = await self._transport(target)
        rows: dict[int, Any] = {}
        cursor = column
        while True:
            try:
                result = await bulk_cmd(
                    self._engine,
                    self._auth(target),
                    transport,
                    ContextData(),
                    0,
                    target.max_repetitions,
                    ObjectType(ObjectIdentity(cursor)),
                    lookupMib=False,
                )
            except PySnmpError as exc:
                raise SnmpError(f"walk failed: {type(exc).__name__}", target=target.name) from None
            var_binds = self._check(target, result)
            if not var_binds:
                return rows
            for oid_obj, value in var_binds:
                oid = tuple(oid_obj)
                if not _is_under(oid, column) or type(value).__name__ == "EndOfMibView":
                    return rows
                if oid <= cursor:
                    raise SnmpMalformedResponse(
                        "walk did not advance (OIDs not increasing)", target=target.name
                    )
                if len(oid) == len(column) + 1:
                    rows[oid[-1]] = value
                cursor = oid

    # -- the interface ------------------------------------------------------------

    async def walk_interfaces(self, target: TargetConfig) -> list[InterfaceRow]:
        names = await self._walk_column(target, IF_NAME)
        descrs = await self._walk_column(target, IF_DESCR)
        aliases = await self._walk_column(target, IF_ALIAS)
        speeds = await self._walk_column(target, IF_HIGH_SPEED)
        rows = []
        for index in sorted(set(names) | set(descrs)):
            descr = _as_text(descrs.get(index))
            name = _as_text(names.get(index)) or descr
            if not name:
                continue
            rows.append(
                InterfaceRow(
                    if_index=index,
                    if_name=name,
                    if_alias=_as_text(aliases.get(index)),
                    if_descr=descr,
                    high_speed_mbps=_as_int(speeds.get(index), "Gauge32", "Unsigned32"),
                )
            )
        return rows

    async def poll_counters(self, target: TargetConfig, if_indexes: Sequence[int]) -> CounterSample:
        oids: list[Oid] = [SYS_UPTIME]
        for index in if_indexes:
            oids += [(*IF_HC_IN_OCTETS, index), (*IF_HC_OUT_OCTETS, index)]
            oids.append((*IF_HIGH_SPEED, index))
        values = await self._get(target, oids)
        taken_ms = time.time_ns() // 1_000_000
        uptime = _as_int(values.get(SYS_UPTIME), "TimeTicks")
        if uptime is None:
            raise SnmpMalformedResponse("answer has no sysUpTime", target=target.name)

        def counter64(column: Oid, index: int) -> CounterValue | None:
            value = _as_int(values.get((*column, index)), "Counter64")
            return CounterValue(value, 64) if value is not None else None

        counters = {
            index: InterfaceCounters(
                if_index=index,
                in_octets=counter64(IF_HC_IN_OCTETS, index),
                out_octets=counter64(IF_HC_OUT_OCTETS, index),
                high_speed_mbps=_as_int(values.get((*IF_HIGH_SPEED, index)), "Gauge32"),
            )
            for index in if_indexes
        }
        lacking = [i for i, c in counters.items() if c.in_octets is None or c.out_octets is None]
        if lacking:
            fallback = await self._get(
                target,
                [oid for i in lacking for oid in ((*IF_IN_OCTETS, i), (*IF_OUT_OCTETS, i))],
            )
            for index in lacking:
                old = counters[index]
                in32 = _as_int(fallback.get((*IF_IN_OCTETS, index)), "Counter32")
                out32 = _as_int(fallback.get((*IF_OUT_OCTETS, index)), "Counter32")
                counters[index] = msgspec.structs.replace(
                    old,
                    in_octets=old.in_octets
                    or (CounterValue(in32, 32) if in32 is not None else None),
                    out_octets=old.out_octets
                    or (CounterValue(out32, 32) if out32 is not None else None),
                )
        return CounterSample(
            target=target.name, sys_uptime_cs=uptime, taken_ms=taken_ms, interfaces=counters
        )
