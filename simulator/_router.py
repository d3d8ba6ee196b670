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

from bisect import bisect_right
from collections.abc import Callable
from typing import Final, Literal

from ._exceptions import SimulatorError, UnknownRouterError
from ._mib import MibView, build_router_mib
from ._model import InterfaceConfig, RouterConfig

__all__ = ["Direction", "SimRouter"]

Direction = Literal["in", "out"]

_NS: Final = 1_000_000_000
_TWO_NS2: Final = 2 * _NS * _NS
_MASK64: Final = 2**64 - 1


class _Traffic:
    """Cumulative octets of one interface direction since the epoch."""

    __slots__ = ("initial", "ramp", "rate")

    def __init__(self, rate: int, ramp: int, initial: int) -> None:
        self.rate = rate
        self.ramp = ramp
        self.initial = initial

    def total(self, elapsed_ns: int) -> int:
        if elapsed_ns <= 0:
            return 0
        if not self.ramp:
            return self.rate * elapsed_ns // _NS
        return (2 * self.rate * elapsed_ns * _NS + self.ramp * elapsed_ns * elapsed_ns) // _TWO_NS2


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
        self._traffic: dict[tuple[str, str], _Traffic] = {}
        self._if_index: dict[str, int] = {}
        for position, iface in enumerate(config.interfaces):
            self._traffic[iface.name, "in"] = _Traffic(
                iface.in_rate, iface.in_ramp, iface.in_initial
            )
            self._traffic[iface.name, "out"] = _Traffic(
                iface.out_rate, iface.out_ramp, iface.out_initial
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
