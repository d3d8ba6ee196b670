"""Agent test helpers: a real SNMP responder (Debian's snmpd) and a scriptable fake client."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import anyio
import pytest
from _clock import ManualClock
from _net import free_port

from edge_agent._exceptions import SnmpTimeout
from edge_agent.config import TargetConfig
from edge_agent.snmp import CounterSample, CounterValue, InterfaceCounters, InterfaceRow

#: SNMPv3 users of the test snmpd: name -> (auth protocol, priv protocol or None).
#: Every user has auth key ``SNMPD_AUTH_KEY`` and priv key ``SNMPD_PRIV_KEY``.
SNMPD_USERS: dict[str, tuple[str, str | None]] = {
    "u-sha-aes": ("SHA", "AES"),
    "u-sha224-aes": ("SHA224", "AES"),
    "u-sha256-aes192": ("SHA256", "AES192"),
    "u-sha384-aes256": ("SHA384", "AES256"),
    "u-sha512-aes256": ("SHA512", "AES256"),
    "u-md5-des": ("MD5", "DES"),
    "u-sha-noauth-priv": ("SHA", None),
}
SNMPD_AUTH_KEY = "auth-CANARY-k3y"
SNMPD_PRIV_KEY = "priv-CANARY-k3y"
_NETSNMP_NAMES = {"SHA224": "SHA-224", "SHA256": "SHA-256", "SHA384": "SHA-384"}
_NETSNMP_NAMES |= {"SHA512": "SHA-512", "AES192": "AES-192", "AES256": "AES-256"}
#: NET-SNMP-AGENT-MIB::nsCacheTimeout of the ifTable (ifXTable shares its cache)
_IFTABLE_CACHE_TIMEOUT = (1, 3, 6, 1, 4, 1, 8072, 1, 5, 3, 1, 2, 1, 3, 6, 1, 2, 1, 2, 2)


class Snmpd:
    """A running net-snmp ``snmpd``: community ``public`` and the users of ``SNMPD_USERS``."""

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port

    def __iter__(self) -> Iterator[object]:  # (host, port) = snmpd
        return iter((self.host, self.port))

    def v3_target(self, user: str, **extra: object) -> dict[str, object]:
        auth, priv = SNMPD_USERS[user]
        target: dict[str, object] = {
            "name": "snmpd",
            "host": self.host,
            "port": self.port,
            "version": "3",
            "security_name": user,
            "auth_protocol": auth,
            "auth_key": SNMPD_AUTH_KEY,
        }
        if priv is None:
            target["security_level"] = "authNoPriv"
        else:
            target |= {"priv_protocol": priv, "priv_key": SNMPD_PRIV_KEY}
            target["allow_legacy_des"] = priv == "DES"
        return target | extra


def _snmpd_config(port: int) -> str:
    lines = [
        f"agentAddress udp:127.0.0.1:{port}",
        "rocommunity public 127.0.0.1",
        # only the agent's own cache table is writable, to turn caching off
        "rwcommunity resmon-cache-rw 127.0.0.1 .1.3.6.1.4.1.8072.1.5",
    ]
    for user, (auth, priv) in SNMPD_USERS.items():
        auth_name = _NETSNMP_NAMES.get(auth, auth)
        if priv is None:
            lines.append(f'createUser {user} {auth_name} "{SNMPD_AUTH_KEY}"')
            lines.append(f"rouser {user} auth")
        else:
            priv_name = _NETSNMP_NAMES.get(priv, priv)
            lines.append(
                f'createUser {user} {auth_name} "{SNMPD_AUTH_KEY}" {priv_name} "{SNMPD_PRIV_KEY}"'
            )
            lines.append(f"rouser {user} priv")
    return "\n".join(lines) + "\n"


async def _disable_iftable_cache(host: str, port: int) -> None:
    """snmpd caches the interface table for 3 s; the loopback test needs live values."""
    from pysnmp.hlapi.v3arch import asyncio as hl
    from pysnmp.proto.rfc1902 import Integer32

    engine = hl.SnmpEngine()
    try:
        transport = await hl.UdpTransportTarget.create((host, port), timeout=2, retries=2)
        error, status, _, _ = await hl.set_cmd(
            engine,
            hl.CommunityData("resmon-cache-rw", mpModel=1),
            transport,
            hl.ContextData(),
            hl.ObjectType(hl.ObjectIdentity(_IFTABLE_CACHE_TIMEOUT), Integer32(0)),
            lookupMib=False,
        )
        assert not error, error
        assert not status, status
    finally:
        engine.close_dispatcher()


@pytest.fixture(scope="session")
def snmpd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Snmpd]:
    """A real net-snmp ``snmpd`` on 127.0.0.1: v1/v2c community ``public`` and SNMPv3
    users (``SNMPD_USERS``), with the interface-table cache off so counters are live."""
    binary = shutil.which("snmpd") or (
        "/usr/sbin/snmpd" if Path("/usr/sbin/snmpd").exists() else None
    )
    if binary is None:
        pytest.skip("snmpd is not installed (apt-get install -y snmpd)")
    workdir = tmp_path_factory.mktemp("snmpd")
    persistent = workdir / "persistent"  # snmpd writes its own snmpd.conf there
    persistent.mkdir()
    port = free_port(socket.SOCK_DGRAM)
    conf = workdir / "snmpd.conf"
    conf.write_text(_snmpd_config(port))
    env = {**os.environ, "MIBS": "", "SNMP_PERSISTENT_DIR": str(persistent)}
    log = (workdir / "snmpd.log").open("wb")
    proc = subprocess.Popen(
        [binary, "-f", "-Lo", "-C", "-c", str(conf), "-p", str(workdir / "pid")],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
    )
    try:
        deadline = time.monotonic() + 15
        while b"NET-SNMP version" not in (workdir / "snmpd.log").read_bytes():
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.skip(f"snmpd did not start: {(workdir / 'snmpd.log').read_text()[-500:]}")
            time.sleep(0.05)
        anyio.run(_disable_iftable_cache, "127.0.0.1", port)
        yield Snmpd("127.0.0.1", port)
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


class FakeRouter:
    """A scriptable router for :class:`FakeClient`: interfaces by name, counters by hand."""

    def __init__(self, interfaces: dict[str, str], *, speed: int = 1000) -> None:
        self.names = list(interfaces)  # ifName -> ifAlias, in ifIndex order
        self.aliases = interfaces
        self.speed = speed
        self.uptime_cs = 100_000
        self.counters: dict[tuple[str, str], int] = {
            (n, d): 0 for n in interfaces for d in ("in", "out")
        }
        self.dead = False
        self.hang = False
        self.explode = False  # raise something that is not an SnmpError
        self.renumbered = False
        self.missing: set[tuple[str, str]] = set()

    def index_of(self, name: str) -> int:
        i = self.names.index(name)
        return len(self.names) - i if self.renumbered else i + 1

    def add(self, name: str, direction: str, octets: int) -> None:
        self.counters[(name, direction)] += octets

    def reboot(self, *, renumber: bool = False) -> None:
        self.uptime_cs = 10
        self.counters = dict.fromkeys(self.counters, 0)
        self.renumbered = renumber


class FakeClient:
    """An :class:`edge_agent.snmp.SnmpClient` over :class:`FakeRouter` objects."""

    def __init__(self, routers: dict[str, FakeRouter], clock: ManualClock) -> None:
        self.routers = routers
        self.clock = clock
        self.walks = 0

    async def _check(self, target: TargetConfig) -> FakeRouter:
        router = self.routers[target.name]
        if router.hang:
            await anyio.sleep_forever()
        if router.dead:
            raise SnmpTimeout("no answer", target=target.name)
        if router.explode:
            raise RuntimeError("library surprise")
        return router

    async def walk_interfaces(self, target: TargetConfig) -> list[InterfaceRow]:
        router = await self._check(target)
        self.walks += 1
        return sorted(
            (
                InterfaceRow(router.index_of(n), n, router.aliases[n], n, router.speed)
                for n in router.names
            ),
            key=lambda r: r.if_index,
        )

    async def poll_counters(self, target: TargetConfig, if_indexes: Sequence[int]) -> CounterSample:
        router = await self._check(target)
        by_index = {router.index_of(n): n for n in router.names}
        out = {}
        for index in if_indexes:
            name = by_index[index]

            def value(d: str, name: str = name) -> CounterValue | None:
                if (name, d) in router.missing:
                    return None
                return CounterValue(router.counters[(name, d)] % 2**64, 64)

            out[index] = InterfaceCounters(index, value("in"), value("out"), router.speed)
        return CounterSample(target.name, router.uptime_cs, self.clock.ms, out)

    async def aclose(self) -> None:
        pass


def tick(clock: ManualClock, routers: dict[str, FakeRouter], seconds: int = 60) -> None:
    """Move the clock and every router's uptime ``seconds`` forward."""
    clock.advance(seconds)
    for router in routers.values():
        router.uptime_cs += seconds * 100
