"""The fleet configuration: routers, their interfaces and traffic.

Frozen msgspec structs that reject unknown keys. A YAML file decodes straight
into :class:`FleetConfig` with :func:`load_config`; :func:`generate_config`
builds a regular fleet (what ``resmon sim --routers N --interfaces M`` serves).

Units: traffic rates are **octets (bytes) per second**, because that is what
the IF-MIB counters count; ``speed_bps`` is the interface speed in bits per
second, as ifSpeed reports it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import msgspec

from ._ber import parse_oid
from ._exceptions import BerError, ConfigError

__all__ = [
    "AnomalyConfig",
    "FaultConfig",
    "FleetConfig",
    "InterfaceConfig",
    "RouterConfig",
    "UserConfig",
    "generate_config",
    "load_config",
    "validate_config",
]

_NonNeg = Annotated[int, msgspec.Meta(ge=0)]
_Port = Annotated[int, msgspec.Meta(ge=0, le=65535)]
_Name = Annotated[str, msgspec.Meta(min_length=1, max_length=255)]


_Fraction = Annotated[float, msgspec.Meta(ge=0, le=1)]
_Seconds = Annotated[float, msgspec.Meta(ge=0)]


class AnomalyConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A window where an interface's rate is multiplied by ``factor`` (an injected anomaly)."""

    start_s: _Seconds  #: seconds after the fleet epoch
    duration_s: Annotated[float, msgspec.Meta(gt=0)]
    factor: Annotated[float, msgspec.Meta(ge=0)] = 10.0  #: rate multiplier (0 = outage)


class InterfaceConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One interface of a simulated router.

    Counters are ``initial + traffic since the fleet started`` (until a
    reboot, which restarts them at 0). Traffic per direction is
    ``rate * t + ramp * t**2 / 2`` octets after ``t`` seconds: a constant
    profile when ``ramp`` is 0, a linearly increasing rate otherwise. The
    diurnal curve, bursts and anomalies shape ``rate``: at any instant it is
    multiplied by the diurnal swing and by every burst or anomaly factor in
    force (a burst inside a factor-0 outage carries nothing). ``ramp`` is
    added on top, unshaped.
    """

    name: _Name  #: ifName and the key for ground truth, e.g. ``ge-0/0/1``
    descr: str | None = None  #: ifDescr; default: the name
    alias: str | None = None  #: ifAlias; default: ``CUST:<customer>[ RES:<resource>]``
    customer: str | None = None  #: customer id carried in the default ifAlias
    resource: str | None = None  #: resource name carried in the default ifAlias
    if_index: Annotated[int, msgspec.Meta(ge=1, le=2**31 - 1)] | None = (
        None  #: default: position + 1
    )
    if_type: _NonNeg = 6  #: ifType (6 = ethernetCsmacd)
    speed_bps: _NonNeg = 1_000_000_000  #: ifSpeed (capped at 2^32-1) and ifHighSpeed (Mbit/s)
    oper_status: Literal["up", "down"] = "up"  #: ifOperStatus
    in_rate: _NonNeg = 0  #: octets/s received (ifInOctets / ifHCInOctets)
    out_rate: _NonNeg = 0  #: octets/s sent (ifOutOctets / ifHCOutOctets)
    in_ramp: _NonNeg = 0  #: octets/s added to in_rate every second
    out_ramp: _NonNeg = 0  #: octets/s added to out_rate every second
    in_initial: _NonNeg = 0  #: ifHCInOctets when the fleet starts (low 32 bits in ifInOctets)
    out_initial: _NonNeg = 0  #: ifHCOutOctets when the fleet starts
    #: diurnal profile: the rate swings by +-amplitude (fraction, < 0.95) over ``diurnal_period_s``
    diurnal_amplitude: Annotated[float, msgspec.Meta(ge=0, le=0.95)] = 0.0
    diurnal_period_s: Annotated[float, msgspec.Meta(gt=0)] = 86_400.0
    diurnal_phase_s: _Seconds = 0.0  #: shift of the curve (seconds)
    #: burst profile: every ``burst_every_s`` the rate is multiplied by ``burst_factor``
    #: for ``burst_length_s`` (0 = no bursts)
    burst_every_s: _Seconds = 0.0
    burst_length_s: _Seconds = 0.0
    burst_factor: Annotated[float, msgspec.Meta(ge=0)] = 1.0
    anomalies: list[AnomalyConfig] = []  #: injected anomalies (rate multipliers in windows)
    #: traffic flows only between these seconds after the epoch (counters stand still
    #: outside), so a load test can read exact totals however its polls fall
    active_from_s: _Seconds = 0.0
    active_until_s: _Seconds | None = None

    @property
    def if_alias(self) -> str:
        """The ifAlias value served."""
        if self.alias is not None:
            return self.alias
        if self.customer is None:
            return ""
        return f"CUST:{self.customer}" + (f" RES:{self.resource}" if self.resource else "")


class FaultConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Injected faults of one router (``resmon sim`` and load tests).

    A timeout is ``loss: 1.0`` (or a dead router, or ``delay_ms`` beyond the
    poller's timeout).
    """

    loss: _Fraction = 0.0  #: probability a request gets no reply
    malformed: _Fraction = 0.0  #: probability a reply is truncated / corrupted
    delay_ms: _Seconds = 0.0  #: every reply is held back this long ...
    delay_jitter_ms: _Seconds = 0.0  #: ... plus up to this much


class UserConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """An SNMPv3 USM user every router of the fleet accepts (keys localised per router)."""

    name: _Name
    auth: Literal["none", "md5", "sha", "sha224", "sha256", "sha384", "sha512"] = "sha"
    auth_key: str | None = None  #: the auth passphrase (>= 8 characters); never logged
    priv: Literal["none", "aes", "aes128", "aes192", "aes256"] = "aes"
    priv_key: str | None = None  #: the privacy passphrase (>= 8 characters); never logged

    def __repr__(self) -> str:
        return f"UserConfig(name={self.name!r}, auth={self.auth!r}, priv={self.priv!r})"


class RouterConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One simulated router: a UDP port (or a community on the shared port) and its MIB."""

    name: _Name  #: router name: sysName default, log key, ground-truth key
    port: _Port | None = None  #: UDP port; default ``base_port + position`` (0 = any free port)
    community: str | None = None  #: default: the fleet's (``<community>@<name>`` on a shared port)
    sys_descr: str | None = None  #: default: ``resmon simulated router <name>``
    sys_object_id: str = "1.3.6.1.4.1.8072.3.2.10"  #: sysObjectID
    sys_name: str | None = None  #: default: the name
    uptime: Annotated[float, msgspec.Meta(ge=0)] = 0.0  #: seconds already up at fleet start
    #: SNMPv3 snmpEngineID in hex; default 80001f8804 + "sim:<name>" (or a hash if long)
    engine_id: str | None = None
    faults: FaultConfig | None = None  #: injected faults
    interfaces: list[InterfaceConfig] = []


class FleetConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """All simulated routers served by one process."""

    routers: list[RouterConfig] = []
    base_port: _Port = 16100  #: first router's port; 0 = the OS picks free ports
    community: str = "public"  #: default read community
    shared_port: bool = False  #: all routers on ``base_port``, told apart by community
    max_response_bytes: Annotated[int, msgspec.Meta(ge=484, le=65507)] = 1400
    #: SNMPv3 users (served when each router has its own port)
    v3_users: list[UserConfig] = []

    def router_port(self, position: int) -> int:
        """The UDP port the router at ``position`` is configured for (0: OS picks)."""
        if self.shared_port or self.base_port == 0:
            return self.base_port
        port = self.routers[position].port
        return self.base_port + position if port is None else port

    def router_community(self, position: int) -> str:
        """The community string of the router at ``position``."""
        router = self.routers[position]
        if router.community is not None:
            return router.community
        return f"{self.community}@{router.name}" if self.shared_port else self.community


def validate_config(config: FleetConfig, source: str = "fleet config") -> FleetConfig:
    """Apply the field constraints (skipped for structs built in Python) and the
    cross-field checks msgspec cannot express; messages name the key path."""
    try:
        config = msgspec.convert(msgspec.to_builtins(config), FleetConfig)
    except msgspec.ValidationError as exc:
        message, _, where = str(exc).partition(" - at ")
        raise ConfigError(f"{source}: {where.strip('`') or '$'}: {message}") from None
    return _check(config, source)


def _check(config: FleetConfig, source: str) -> FleetConfig:

    def fail(path: str, message: str) -> ConfigError:
        return ConfigError(f"{source}: {path}: {message}")

    names: set[str] = set()
    ports: dict[int, str] = {}
    communities: dict[str, str] = {}
    for i, router in enumerate(config.routers):
        where = f"$.routers[{i}]"
        if router.name in names:
            raise fail(f"{where}.name", f"duplicate router name {router.name!r}")
        names.add(router.name)
        if router.engine_id is not None:
            try:
                engine = bytes.fromhex(router.engine_id)
            except ValueError:
                raise fail(f"{where}.engine_id", "must be hex digits") from None
            if not 5 <= len(engine) <= 32:
                raise fail(f"{where}.engine_id", "must be 5 to 32 octets")
        try:
            parse_oid(router.sys_object_id)
        except BerError as exc:
            raise fail(f"{where}.sys_object_id", str(exc)) from None
        port = config.router_port(i)
        if config.shared_port:
            community = config.router_community(i)
            if community in communities:
                raise fail(
                    f"{where}.community",
                    f"routers {communities[community]!r} and {router.name!r} share a community "
                    "on the shared port",
                )
            communities[community] = router.name
        elif port != 0:
            if port > 65535:
                raise fail(f"{where}.port", f"port {port} is beyond 65535")
            if port in ports:
                raise fail(f"{where}.port", f"port {port} already used by {ports[port]!r}")
            ports[port] = router.name
        if_names: set[str] = set()
        indexes: set[int] = set()
        for j, iface in enumerate(router.interfaces):
            iwhere = f"{where}.interfaces[{j}]"
            if iface.name in if_names:
                raise fail(f"{iwhere}.name", f"duplicate interface name {iface.name!r}")
            if_names.add(iface.name)
            index = iface.if_index if iface.if_index is not None else j + 1
            if index in indexes:
                raise fail(f"{iwhere}.if_index", f"duplicate ifIndex {index}")
            indexes.add(index)
            for key in ("in_initial", "out_initial"):
                if getattr(iface, key) >= 2**64:
                    raise fail(f"{iwhere}.{key}", "must be below 2^64 (a Counter64)")
    users: set[str] = set()
    for i, user in enumerate(config.v3_users):
        where = f"$.v3_users[{i}]"
        if user.name in users:
            raise fail(f"{where}.name", f"duplicate user {user.name!r}")
        users.add(user.name)
        if user.priv != "none" and user.auth == "none":
            raise fail(f"{where}.priv", "privacy needs an auth protocol")
        for key, proto in (("auth_key", user.auth), ("priv_key", user.priv)):
            secret = getattr(user, key)
            if proto != "none" and (secret is None or len(secret) < 8):
                raise fail(f"{where}.{key}", "required, at least 8 characters")
    return config


def load_config(path: str | Path) -> FleetConfig:
    """Read a YAML fleet file; errors name the file and the key path."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror or exc}") from None
    try:
        config = msgspec.yaml.decode(raw, type=FleetConfig)
    except msgspec.ValidationError as exc:
        message, _, where = str(exc).partition(" - at ")
        raise ConfigError(f"{path}: {where.strip('`') or '$'}: {message}") from None
    except msgspec.DecodeError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    return _check(config, str(path))


def generate_config(
    *,
    routers: int = 3,
    interfaces: int = 4,
    base_port: int = 16100,
    rate_bps: int = 1_000_000,
    out_rate_bps: int | None = None,
    community: str = "public",
    shared_port: bool = False,
    in_initial: int = 0,
    out_initial: int = 0,
) -> FleetConfig:
    """A regular fleet: routers ``rtr-0001``..., interfaces ``ge-0/0/0``...

    Customers are numbered across the fleet (``cust-0001``...). ``rate_bps``
    is the receive rate in **octets per second**; the send rate defaults to
    half of it, so a swapped direction shows in tests.
    """
    out_rate = rate_bps // 2 if out_rate_bps is None else out_rate_bps
    fleet = [
        RouterConfig(
            name=f"rtr-{r + 1:04d}",
            interfaces=[
                InterfaceConfig(
                    name=f"ge-0/0/{i}",
                    customer=f"cust-{r * interfaces + i + 1:04d}",
                    in_rate=rate_bps,
                    out_rate=out_rate,
                    in_initial=in_initial,
                    out_initial=out_initial,
                )
                for i in range(interfaces)
            ],
        )
        for r in range(routers)
    ]
    config = FleetConfig(
        routers=fleet, base_port=base_port, community=community, shared_port=shared_port
    )
    return validate_config(config, "generated fleet")
