"""The fleet: simulated routers, their sockets, switches and ground truth.

::

    fleet = Fleet.generate(routers=3, interfaces=4, base_port=0)
    async with fleet.serve():                  # every socket bound on entry
        for name, host, port, community in fleet.endpoints:
            ...
        fleet.bytes_between("rtr-0001", "ge-0/0/0", "in", t0, t1)

Times are the fleet clock's: integer nanoseconds since the Unix epoch
(``time.time_ns`` unless a clock is injected). Methods taking a time also
accept a float, read as seconds (``time.time()``).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import NamedTuple

import anyio
import msgspec
import structlog
from anyio.abc import TaskStatus

from ._agent import Agent
from ._exceptions import SimulatorError, UnknownRouterError
from ._model import FaultConfig, FleetConfig, generate_config, load_config, validate_config
from ._responder import Binding, BoundSocket, bind, unbind
from ._router import Direction, SimRouter
from ._usm import UsmUser

__all__ = ["Endpoint", "Fleet", "FleetStats"]

_log = structlog.get_logger(component="simulator._fleet")
Clock = Callable[[], int]


class Endpoint(NamedTuple):
    """Where to poll one router: unpacks as ``(router, host, port, community)``."""

    router: str
    host: str
    port: int
    community: str


class FleetStats(msgspec.Struct, frozen=True, kw_only=True):
    """Totals over every socket of the fleet."""

    requests: int = 0
    responses: int = 0
    bad_community: int = 0
    bad_version: int = 0
    malformed: int = 0
    dropped_dead: int = 0
    unsupported: int = 0
    errors: int = 0
    faults_dropped: int = 0
    faults_malformed: int = 0
    faults_delayed: int = 0
    unsupported_sec_levels: int = 0
    not_in_time_windows: int = 0
    unknown_user_names: int = 0
    unknown_engine_ids: int = 0
    wrong_digests: int = 0
    decryption_errors: int = 0


def _ns(at: int | float) -> int:
    return round(at * 1_000_000_000) if isinstance(at, float) else at


class Fleet:
    """Simulated routers answering SNMPv2c, with ground truth for their counters."""

    def __init__(self, config: FleetConfig, *, clock: Clock = time.time_ns) -> None:
        self.config = validate_config(config)
        self.clock = clock
        #: when traffic starts counting (fleet clock, ns)
        self.epoch_ns = clock()
        self._routers: dict[str, SimRouter] = {}
        for i, rc in enumerate(self.config.routers):
            self._routers[rc.name] = SimRouter(
                rc,
                community=self.config.router_community(i),
                port=self.config.router_port(i),
                epoch_ns=self.epoch_ns,
                clock=clock,
            )
        size = self.config.max_response_bytes
        #: SNMPv3 users by name (password-to-key runs once here)
        self.users: dict[bytes, UsmUser] = {
            u.name.encode(): UsmUser(
                u.name, auth=u.auth, auth_key=u.auth_key, priv=u.priv, priv_key=u.priv_key
            )
            for u in self.config.v3_users
        }
        if self.config.shared_port:
            routers = {r.community.encode(): r for r in self._routers.values()}
            label = f"shared port ({len(routers)} routers)"
            port = self.config.base_port
            self._bindings = [
                Binding(
                    Agent(routers, max_response_bytes=size, label=label, port=port), port, label
                )
            ]
        else:
            self._bindings = [
                Binding(
                    Agent(
                        {r.community.encode(): r},
                        max_response_bytes=size,
                        label=r.name,
                        port=r.port,
                        users=self.users,
                    ),
                    r.port,
                    r.name,
                )
                for r in self._routers.values()
            ]
        self._bound: list[BoundSocket] = []
        self._host = "127.0.0.1"

    # ------------------------------------------------------------------ construction

    @classmethod
    def generate(
        cls,
        routers: int = 3,
        interfaces: int = 4,
        base_port: int = 16100,
        rate_bps: int = 1_000_000,
        community: str = "public",
        *,
        out_rate_bps: int | None = None,
        shared_port: bool = False,
        in_initial: int = 0,
        out_initial: int = 0,
        clock: Clock = time.time_ns,
    ) -> Fleet:
        """A regular fleet (see :func:`~simulator.generate_config`); rates in octets/s."""
        config = generate_config(
            routers=routers,
            interfaces=interfaces,
            base_port=base_port,
            rate_bps=rate_bps,
            out_rate_bps=out_rate_bps,
            community=community,
            shared_port=shared_port,
            in_initial=in_initial,
            out_initial=out_initial,
        )
        return cls(config, clock=clock)

    @classmethod
    def from_file(cls, path: str | Path, *, clock: Clock = time.time_ns) -> Fleet:
        """A fleet from a YAML file (see :func:`~simulator.load_config`)."""
        return cls(load_config(path), clock=clock)

    # ------------------------------------------------------------------ serving

    @property
    def serving(self) -> bool:
        """True while :meth:`serve` is entered: every socket is bound."""
        return bool(self._bound)

    @property
    def endpoints(self) -> list[Endpoint]:
        """One endpoint per router; ports are the bound ones while serving."""
        ports = {b.binding.label: b.port for b in self._bound}
        shared = ports.get(self._bindings[0].label) if self.config.shared_port else None
        return [
            Endpoint(r.name, self._host, shared or ports.get(r.name, r.port), r.community)
            for r in self._routers.values()
        ]

    @asynccontextmanager
    async def serve(self, host: str = "127.0.0.1") -> AsyncIterator[Fleet]:
        """Bind every router's socket on entry (all or none), release them on exit.

        Needs the asyncio event loop (plain asyncio, or anyio's asyncio backend).
        """
        if self._bound:
            raise SimulatorError("this fleet is already serving")
        self._host = host
        bound = await bind(host, self._bindings)
        self._bound = bound
        ports = [b.port for b in bound]
        _log.info(
            "sim.serving",
            host=host,
            routers=len(self._routers),
            sockets=len(bound),
            first_port=min(ports, default=None),
            last_port=max(ports, default=None),
        )
        try:
            yield self
        finally:
            self._bound = []
            await unbind(bound)
            _log.info(
                "sim.stopped", routers=len(self._routers), **msgspec.structs.asdict(self.stats)
            )

    async def run(
        self,
        host: str = "127.0.0.1",
        *,
        task_status: TaskStatus[list[Endpoint]] = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        """Serve until cancelled; for a task group: ``await tg.start(fleet.run)``
        returns the endpoints once every socket is bound."""
        async with self.serve(host):
            task_status.started(self.endpoints)
            await anyio.sleep_forever()

    # ------------------------------------------------------------------ switches

    @property
    def routers(self) -> list[str]:
        """Router names, in configuration order."""
        return list(self._routers)

    def router(self, name: str) -> SimRouter:
        """The run-time state of one router."""
        try:
            return self._routers[name]
        except KeyError:
            raise UnknownRouterError(f"no router named {name!r} in this fleet") from None

    def agent(self, router: str) -> Agent:
        """The agent answering ``router`` (shared by all routers on a shared port).

        ``fleet.agent(name).handle(request_bytes)`` answers without sockets.
        """
        self.router(router)
        if self.config.shared_port:
            return self._bindings[0].agent
        return next(b.agent for b in self._bindings if b.label == router)

    def set_dead(self, router: str, dead: bool = True) -> None:
        """A dead router receives requests and answers none (counted in ``dropped_dead``)."""
        self.router(router).dead = dead
        _log.info("sim.router_dead" if dead else "sim.router_alive", router=router)

    def set_faults(self, router: str, faults: FaultConfig | None) -> None:
        """Replace the injected faults of ``router`` (``None``: a healthy router)."""
        self.router(router).faults = faults
        _log.info("sim.router_faults", router=router, faults=faults and msgspec.to_builtins(faults))

    def engine_id(self, router: str) -> bytes:
        """The SNMPv3 snmpEngineID of ``router`` (what discovery reports)."""
        return self.router(router).engine_id

    def reboot(self, router: str, *, at: int | float | None = None, renumber: bool = False) -> None:
        """Reboot ``router`` now (or at ``at``): sysUpTime and counters restart at 0.

        ``renumber=True`` also reverses its ifIndex numbering.
        """
        self.router(router).reboot(self.clock() if at is None else _ns(at), renumber=renumber)
        _log.info("sim.router_rebooted", router=router, renumbered=renumber)

    def clear_counters(self, router: str, *, at: int | float | None = None) -> None:
        """Clear ``router``'s counters now (or at ``at``) without a reboot: they restart
        at 0 and ifCounterDiscontinuityTime becomes the sysUpTime of that moment."""
        self.router(router).clear_counters(self.clock() if at is None else _ns(at))
        _log.info("sim.router_counters_cleared", router=router)

    # ------------------------------------------------------------------ ground truth

    def now(self) -> int:
        """The fleet clock, in nanoseconds."""
        return self.clock()

    def octets(
        self, router: str, if_name: str, direction: Direction, at: int | float | None = None
    ) -> int:
        """The exact 64-bit octet counter (ifHC*Octets) of an interface at ``at`` (now).

        ifInOctets / ifOutOctets serve its low 32 bits.
        """
        t = self.clock() if at is None else _ns(at)
        return self.router(router).octets(if_name, direction, t)

    def bytes_between(
        self, router: str, if_name: str, direction: Direction, t0: int | float, t1: int | float
    ) -> int:
        """Octets the interface carried between ``t0`` and ``t1``, across reboots and wraps."""
        return self.router(router).traffic_between(if_name, direction, _ns(t0), _ns(t1))

    def uptime_ticks(self, router: str, at: int | float | None = None) -> int:
        """sysUpTime (hundredths of a second) of ``router`` at ``at`` (now)."""
        t = self.clock() if at is None else _ns(at)
        return self.router(router).uptime_ticks(t)

    @property
    def stats(self) -> FleetStats:
        """Counts of requests, responses and every kind of dropped request."""
        totals = dict.fromkeys(FleetStats.__struct_fields__, 0)
        for binding in self._bindings:
            for field in totals:
                totals[field] += getattr(binding.agent.stats, field)
        return FleetStats(**totals)
