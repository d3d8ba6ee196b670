"""A simulated router at run time: boots, counters as a pure function of time.

Time is integer nanoseconds from the fleet clock (``time.time_ns`` unless a
test injects another). For each interface and direction the traffic carried
since the fleet's epoch is

    T(t) = floor(rate * e + ramp * e**2 / 2),   e = t - epoch (seconds, >= 0)

computed in integers, so it is exact and never decreases. The counter at ``t``
is ``initial + T(t)`` during the first boot and ``T(t) - T(boot)`` after a
reboot at ``boot``. Whatever an agent reads, the bytes between two readings
in one boot are exactly ``T(t1) - T(t0)``: the ground truth.
"""

from __future__ import annotations

import hashlib
import math
from bisect import bisect_right
from collections.abc import Callable
from typing import Final, Literal

from ._exceptions import SimulatorError, UnknownRouterError
from ._mib import MibView, build_router_mib
from ._model import FaultConfig, InterfaceConfig, RouterConfig

__all__ = ["Direction", "SimRouter"]

Direction = Literal["in", "out"]

_NS: Final = 1_000_000_000
_TWO_NS2: Final = 2 * _NS * _NS
_MASK64: Final = 2**64 - 1


class _Traffic:
    """Cumulative octets of one interface direction since the epoch.

    The sum of non-decreasing parts, each floored on its own: the constant
    rate, the ramp, the diurnal swing, bursts and anomalies (see
    :class:`~simulator.InterfaceConfig`). Only the diurnal part uses floats.
    """

    __slots__ = (
        "_anomalies",
        "_bursts",
        "_diurnal",
        "_window",
        "initial",
        "ramp",
        "rate",
        "total",
    )

    def __init__(
        self, rate: int, ramp: int, initial: int, iface: InterfaceConfig | None = None
    ) -> None:
        self.rate = rate
        self.ramp = ramp
        self.initial = initial
        self._diurnal: tuple[float, float, float] | None = None
        self._bursts: tuple[int, int, int] | None = None
        self._anomalies: list[tuple[int, int, int]] = []
        self._window: tuple[int, int | None] | None = None
        #: octets carried ``elapsed_ns`` after the epoch (the fastest formula that applies)
        self.total: Callable[[int], int] = self._constant if not ramp else self._raw
        if iface is None:
            return
        if iface.active_from_s or iface.active_until_s is not None:
            until = iface.active_until_s
            self._window = (
                round(iface.active_from_s * _NS),
                None if until is None else round(until * _NS),
            )
            self.total = self._windowed
        if not rate:
            return
        if iface.diurnal_amplitude:
            omega = 2 * math.pi / iface.diurnal_period_s
            phase = omega * iface.diurnal_phase_s
            self._diurnal = (iface.diurnal_amplitude * rate / omega, omega, phase)
        if iface.burst_every_s and iface.burst_length_s and iface.burst_factor != 1:
            self._bursts = (
                round(iface.burst_every_s * _NS),
                round(min(iface.burst_length_s, iface.burst_every_s) * _NS),
                round((iface.burst_factor - 1) * 1000),
            )
        for a in iface.anomalies:
            start = round(a.start_s * _NS)
            self._anomalies.append(
                (start, start + round(a.duration_s * _NS), round((a.factor - 1) * 1000))
            )
        if self._window is None and (self._diurnal or self._bursts or self._anomalies):
            self.total = self._raw

    def _constant(self, elapsed_ns: int) -> int:
        return self.rate * elapsed_ns // _NS if elapsed_ns > 0 else 0

    def _windowed(self, elapsed_ns: int) -> int:
        window = self._window
        if window is None:
            return self._raw(elapsed_ns)
        start, stop = window
        if stop is not None and elapsed_ns > stop:
            elapsed_ns = stop
        if elapsed_ns <= start:
            return 0
        return self._raw(elapsed_ns) - self._raw(start)

    def _raw(self, elapsed_ns: int) -> int:
        if elapsed_ns <= 0:
            return 0
        if self._diurnal is not None:  # rate * (1 + a sin(wt + p)) integrated, in one floor
            scale, omega, phase = self._diurnal
            e = elapsed_ns / _NS
            swing = scale * (math.cos(phase) - math.cos(omega * e + phase))
            t = math.floor(self.rate * e + swing) + self.ramp * elapsed_ns * elapsed_ns // _TWO_NS2
        elif not self.ramp:
            t = self.rate * elapsed_ns // _NS
        else:
            t = (2 * self.rate * elapsed_ns * _NS + self.ramp * elapsed_ns * elapsed_ns) // _TWO_NS2
        if self._bursts is not None:
            every, length, milli = self._bursts
            inside = (elapsed_ns // every) * length + min(elapsed_ns % every, length)
            t += _scaled(self.rate, milli, inside)
        for start, stop, milli in self._anomalies:
            if elapsed_ns > start:
                t += _scaled(self.rate, milli, min(elapsed_ns, stop) - start)
        return t


def _scaled(rate: int, milli: int, ns: int) -> int:
    """floor(rate * milli/1000 * ns/1e9), towards minus infinity for negative factors."""
    return rate * milli * ns // (1000 * _NS)


class SimRouter:
    """One router's state: config, boot history, dead switch, ifIndex numbering, MIB."""

    def __init__(
        self,
        config: RouterConfig,
        *,
        community: str,
        port: int,
        epoch_ns: int,
        clock: Callable[[], int],
    ) -> None:
        self.config = config
        self.name = config.name
        self.community = community
        self.port = port
        self.clock = clock
        self.epoch_ns = epoch_ns
        self.sys_descr = config.sys_descr or f"resmon simulated router {config.name}"
        self.sys_name = config.sys_name or config.name
        #: boot times (ns), ascending; the first may precede the epoch (``uptime``)
        self.boots: list[int] = [epoch_ns - round(config.uptime * _NS)]
        #: a dead router drops every request
        self.dead = False
        #: injected faults (loss, malformed replies, delay); switchable at run time
        self.faults: FaultConfig | None = config.faults
        #: SNMPv3 snmpEngineID
        self.engine_id = _engine_id(config)
        self._traffic: dict[tuple[str, str], _Traffic] = {}
        self._if_index: dict[str, int] = {}
        for position, iface in enumerate(config.interfaces):
            self._traffic[iface.name, "in"] = _Traffic(
                iface.in_rate, iface.in_ramp, iface.in_initial, iface
            )
            self._traffic[iface.name, "out"] = _Traffic(
                iface.out_rate, iface.out_ramp, iface.out_initial, iface
            )
            self._if_index[iface.name] = iface.if_index or position + 1
        self.mib: MibView = build_router_mib(self)

    # ----------------------------------------------------------------- ground truth

    def interface(self, if_name: str) -> InterfaceConfig:
        for iface in self.config.interfaces:
            if iface.name == if_name:
                return iface
        raise UnknownRouterError(f"router {self.name!r} has no interface {if_name!r}")

    def if_index(self, if_name: str) -> int:
        """The ifIndex currently served for an interface."""
        return self._if_index[if_name]

    def traffic(self, if_name: str, direction: str) -> _Traffic:
        try:
            return self._traffic[if_name, direction]
        except KeyError:
            if direction not in ("in", "out"):
                raise ValueError(f"direction must be 'in' or 'out', not {direction!r}") from None
            raise UnknownRouterError(f"router {self.name!r} has no interface {if_name!r}") from None

    def boot_at(self, t_ns: int) -> int:
        """When the boot that is current at ``t_ns`` started."""
        return self.boots[max(bisect_right(self.boots, t_ns) - 1, 0)]

    def uptime_ticks(self, t_ns: int) -> int:
        """sysUpTime at ``t_ns``: hundredths of a second since boot, modulo 2^32."""
        return (max(t_ns - self.boot_at(t_ns), 0) // 10_000_000) & 0xFFFFFFFF

    def engine_boots(self, t_ns: int) -> int:
        """snmpEngineBoots: 1 for the first boot, +1 per simulated reboot."""
        return max(bisect_right(self.boots, t_ns), 1)

    def engine_time(self, t_ns: int) -> int:
        """snmpEngineTime: whole seconds since the current boot."""
        return max(t_ns - self.boot_at(t_ns), 0) // _NS

    def octets(self, if_name: str, direction: str, t_ns: int) -> int:
        """The interface's 64-bit octet counter at ``t_ns`` (Counter32 is its low 32 bits)."""
        traffic = self.traffic(if_name, direction)
        boots = self.boots
        i = bisect_right(boots, t_ns) - 1
        epoch = self.epoch_ns
        if i <= 0:
            return (traffic.initial + traffic.total(t_ns - epoch)) & _MASK64
        return (traffic.total(t_ns - epoch) - traffic.total(boots[i] - epoch)) & _MASK64

    def traffic_between(self, if_name: str, direction: str, t0_ns: int, t1_ns: int) -> int:
        """Octets carried between two times (negative if ``t1 < t0``), reboots or not."""
        traffic = self.traffic(if_name, direction)
        return traffic.total(t1_ns - self.epoch_ns) - traffic.total(t0_ns - self.epoch_ns)

    # ----------------------------------------------------------------- switches

    def reboot(self, at_ns: int, *, renumber: bool = False) -> None:
        """Reboot at ``at_ns``: sysUpTime and counters restart from 0.

        ``renumber`` reverses the ifIndex numbering, as a real reboot may, so
        agents that key on ifIndex instead of ifName/ifAlias notice.
        """
        if at_ns <= self.boots[-1]:
            raise SimulatorError(f"router {self.name!r}: a reboot must come after the last boot")
        self.boots.append(at_ns)
        if renumber:
            indexes = [self._if_index[iface.name] for iface in self.config.interfaces]
            for iface, index in zip(self.config.interfaces, reversed(indexes), strict=True):
                self._if_index[iface.name] = index
            self.mib = build_router_mib(self)


def _engine_id(config: RouterConfig) -> bytes:
    """RFC 3411 SnmpEngineID: net-snmp's enterprise (8072), text format, or octets if long."""
    if config.engine_id is not None:
        return bytes.fromhex(config.engine_id)
    text = b"sim:" + config.name.encode()
    if len(text) <= 27:
        return b"\x80\x00\x1f\x88\x04" + text
    return b"\x80\x00\x1f\x88\x05" + hashlib.sha256(text).digest()[:16]
