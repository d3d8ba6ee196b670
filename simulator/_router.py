"""A simulated router at run time: boots, counters as a pure function of time.

Time is integer nanoseconds from the fleet clock (``time.time_ns`` unless a
test injects another). For each interface and direction the traffic carried
since the fleet's epoch is

    T(t) = floor(rate * e + ramp * e**2 / 2),   e = t - epoch (seconds, >= 0)

computed in integers, so it is exact and never decreases. The counter at ``t``
is ``initial + T(t)`` during the first boot and ``T(t) - T(boot)`` after a
reboot at ``boot``; after the counters are cleared at ``c`` (without a
reboot) it is ``T(t) - T(c)``, and ifCounterDiscontinuityTime holds the
sysUpTime of ``c`` (0 until the first clear after a boot, as IF-MIB says).
Whatever an agent reads, the bytes between two readings with no reboot or
clear between them are exactly ``T(t1) - T(t0)``: the ground truth.
"""

from __future__ import annotations

import hashlib
import math
from bisect import bisect_right
from collections.abc import Callable
from typing import Final, Literal

from ._exceptions import SimulatorError, UnknownRouterError
from ._mib import MibView, build_router_mib
from ._model import AnomalyConfig, FaultConfig, InterfaceConfig, RouterConfig

__all__ = ["Direction", "SimRouter"]

Direction = Literal["in", "out"]

_NS: Final = 1_000_000_000
_MASK64: Final = 2**64 - 1


class _Traffic:
    """Cumulative octets of one interface direction since the epoch.

    The instantaneous rate is ``rate * (1 + a sin(wt + p)) * M(t) + ramp * t``
    where ``M`` is the product of the burst factor (inside a burst) and the
    factors of the anomaly windows covering ``t`` (see
    :class:`~simulator.InterfaceConfig`). Factors are non-negative, so the
    integral never decreases. Everything but the diurnal swing is summed
    exactly in integers (factors in thousandths) and the total is floored
    once; the swing is the only float.
    """

    __slots__ = (
        "_anomaly_scale",
        "_bursts",
        "_diurnal",
        "_pieces",
        "_starts",
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
        #: (amplitude, omega rad/s, phase rad)
        self._diurnal: tuple[float, float, float] | None = None
        #: (every ns, length ns, factor in thousandths)
        self._bursts: tuple[int, int, int] | None = None
        #: anomaly pieces: (start ns, product of the factors in thousandths^n,
        #: exact and swing integrals up to start, burst integrals at start)
        self._pieces: list[tuple[int, int, int, float, int, float]] = []
        self._starts: list[int] = []
        self._anomaly_scale = 1  #: 1000^n for n anomalies
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
            self._diurnal = (iface.diurnal_amplitude, omega, omega * iface.diurnal_phase_s)
        if iface.burst_every_s and iface.burst_length_s and iface.burst_factor != 1:
            self._bursts = (
                round(iface.burst_every_s * _NS),
                round(min(iface.burst_length_s, iface.burst_every_s) * _NS),
                round(iface.burst_factor * 1000),
            )
        if iface.anomalies:
            self._set_anomalies(iface.anomalies)
        if self._window is None and (self._diurnal or self._bursts or self._pieces):
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

    def _burst_ns(self, x: int) -> int:
        """∫ M_burst over [0, x], in thousandth-ns (exact, non-decreasing)."""
        if self._bursts is None:
            return 1000 * x
        every, length, milli = self._bursts
        inside = (x // every) * length + min(x % every, length)
        return 1000 * x + (milli - 1000) * inside

    def _burst_swing(self, x: int) -> float:
        """∫ M_burst(t) sin(wt + p) dt over [0, x], in thousandth-seconds."""
        assert self._diurnal is not None
        _, omega, phase = self._diurnal
        xs = x / _NS
        whole = 1000 * (math.cos(phase) - math.cos(omega * xs + phase)) / omega
        if self._bursts is None:
            return whole
        every, length, milli = self._bursts
        n, into = divmod(x, every)
        period, span = every / _NS, length / _NS
        # the n complete bursts: sum over k of cos(p + wkT) - cos(p + wL + wkT)
        half = omega * period / 2
        if abs(math.sin(half)) < 1e-12:
            series = n * (math.cos(phase) - math.cos(phase + omega * span))
        else:
            kernel = math.sin(n * half) / math.sin(half)
            mid = (n - 1) * half
            series = kernel * (math.cos(phase + mid) - math.cos(phase + omega * span + mid))
        start = n * period
        part = min(into, length) / _NS
        partial = math.cos(phase + omega * start) - math.cos(phase + omega * (start + part))
        return whole + (milli - 1000) * (series + partial) / omega

    def _weighted(self, x: int) -> tuple[int, float]:
        """(exact ∫M in thousandth-ns * scale, diurnal ∫M sin in thousandth-s * scale)."""
        diurnal = self._diurnal is not None
        pieces = self._pieces
        if not pieces:
            return self._burst_ns(x), self._burst_swing(x) if diurnal else 0.0
        _, product, exact, swing, start_ns, start_swing = pieces[
            bisect_right(self._starts, x - 1) - 1
        ]
        exact += product * (self._burst_ns(x) - start_ns)
        if diurnal and product:
            swing += product * (self._burst_swing(x) - start_swing)
        return exact, swing

    def _set_anomalies(self, anomalies: list[AnomalyConfig]) -> None:
        """Split time at every anomaly edge into pieces with a constant product of factors.

        The product is in thousandths to the power of the anomaly count
        (``_anomaly_scale``). Each piece keeps what the pieces before it
        carried, so a reading integrates one piece only.
        """
        windows = []
        for a in anomalies:
            start = round(a.start_s * _NS)
            windows.append((start, start + round(a.duration_s * _NS), round(a.factor * 1000)))
        self._anomaly_scale = 1000 ** len(windows)
        edges = sorted({0, *(w[0] for w in windows), *(w[1] for w in windows)})
        diurnal = self._diurnal is not None
        exact, swing = 0, 0.0
        for start, stop in zip(edges, [*edges[1:], None], strict=True):
            product = 1
            for w_start, w_stop, milli in windows:
                product *= milli if w_start <= start < w_stop else 1000
            start_ns = self._burst_ns(start)
            start_swing = self._burst_swing(start) if diurnal else 0.0
            self._pieces.append((start, product, exact, swing, start_ns, start_swing))
            if stop is not None:
                exact += product * (self._burst_ns(stop) - start_ns)
                if diurnal and product:
                    swing += product * (self._burst_swing(stop) - start_swing)
        self._starts = [piece[0] for piece in self._pieces]

    def _raw(self, elapsed_ns: int) -> int:
        if elapsed_ns <= 0:
            return 0
        exact, swing = self._weighted(elapsed_ns)
        den = 1000 * self._anomaly_scale * _NS
        # rate * ∫M + ramp * e^2 / 2 over one denominator, floored once
        num = 2 * self.rate * exact * _NS + self.ramp * self._anomaly_scale * 1000 * elapsed_ns**2
        den *= 2 * _NS
        if self._diurnal is None:
            return num // den
        amplitude = self._diurnal[0]
        whole, rest = divmod(num, den)
        return whole + math.floor(
            rest / den + self.rate * amplitude * swing / (1000 * self._anomaly_scale)
        )


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
        #: times (ns), ascending, the counters were cleared without a reboot
        self.clears: list[int] = []
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

    def _clear_at(self, t_ns: int) -> int | None:
        """The last clear of the counters at or before ``t_ns`` in the current boot."""
        i = bisect_right(self.clears, t_ns) - 1
        if i < 0 or self.clears[i] < self.boot_at(t_ns):
            return None
        return self.clears[i]

    def discontinuity_ticks(self, t_ns: int) -> int:
        """ifCounterDiscontinuityTime at ``t_ns``: sysUpTime of this boot's last clear, or 0."""
        clear = self._clear_at(t_ns)
        if clear is None:
            return 0
        return ((clear - self.boot_at(t_ns)) // 10_000_000) & 0xFFFFFFFF

    def octets(self, if_name: str, direction: str, t_ns: int) -> int:
        """The interface's 64-bit octet counter at ``t_ns`` (Counter32 is its low 32 bits)."""
        traffic = self.traffic(if_name, direction)
        boots = self.boots
        i = bisect_right(boots, t_ns) - 1
        epoch = self.epoch_ns
        start = self._clear_at(t_ns) if self.clears else None
        if start is None and i <= 0:
            return (traffic.initial + traffic.total(t_ns - epoch)) & _MASK64
        if start is None:
            start = boots[i]
        return (traffic.total(t_ns - epoch) - traffic.total(start - epoch)) & _MASK64

    def traffic_between(self, if_name: str, direction: str, t0_ns: int, t1_ns: int) -> int:
        """Octets carried between two times (negative if ``t1 < t0``), reboots or not."""
        traffic = self.traffic(if_name, direction)
        return traffic.total(t1_ns - self.epoch_ns) - traffic.total(t0_ns - self.epoch_ns)

    # ----------------------------------------------------------------- switches

    def clear_counters(self, at_ns: int) -> None:
        """Clear every interface's counters at ``at_ns`` without a reboot: they restart
        at 0 and ifCounterDiscontinuityTime becomes the sysUpTime of that moment."""
        if at_ns < self.boots[-1] or (self.clears and at_ns <= self.clears[-1]):
            raise SimulatorError(
                f"router {self.name!r}: a clear must come after the last boot and clear"
            )
        self.clears.append(at_ns)

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
