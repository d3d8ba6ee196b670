"""SNMPv3 (USM): key localisation vectors, discovery, reports, and real v3 clients."""

from __future__ import annotations

import shutil

import anyio
import msgspec
import pytest
from _clock import ManualClock
from simtest_helpers import T0

from simulator import Fleet, FleetConfig, UserConfig, generate_config, localize_key, password_to_key
from simulator._v3 import REPORT_OIDS

NS = 1_000_000_000
AUTH_KEY = "auth-passphrase"
PRIV_KEY = "priv-passphrase"
K = {"auth_key": AUTH_KEY, "priv_key": PRIV_KEY}

USERS = [
    UserConfig(name="sha-aes", auth="sha", auth_key=AUTH_KEY, priv="aes", priv_key=PRIV_KEY),
    UserConfig(name="md5-aes", auth="md5", auth_key=AUTH_KEY, priv="aes", priv_key=PRIV_KEY),
    UserConfig(name="sha256-aes256", auth="sha256", priv="aes256", **K),
    UserConfig(name="sha512-aes192", auth="sha512", priv="aes192", **K),
    UserConfig(name="sha224-auth", auth="sha224", auth_key=AUTH_KEY, priv="none"),
    UserConfig(name="noauth", auth="none", priv="none"),
]  # fmt: skip

needs_netsnmp = pytest.mark.skipif(
    shutil.which("snmpget") is None, reason="net-snmp tools are not installed: apt-get install snmp"
)


def _fleet(clock: ManualClock, users: list[UserConfig] = USERS) -> Fleet:
    config = generate_config(routers=2, interfaces=2, base_port=0, rate_bps=1000)
    return Fleet(msgspec.structs.replace(config, v3_users=users), clock=clock)


def _tlv(tag: int, content: bytes) -> bytes:
    assert len(content) < 128
    return bytes((tag, len(content))) + content


def _discovery(engine_id: bytes = b"", user: bytes = b"") -> bytes:
    """A reportable noAuthNoPriv v3 Get with no varbinds, as clients send for discovery."""
    usm = _tlv(0x30, _tlv(4, engine_id) + _tlv(2, b"\0") + _tlv(2, b"\0") + _tlv(4, user)
               + _tlv(4, b"") + _tlv(4, b""))  # fmt: skip
    pdu = _tlv(0xA0, _tlv(2, b"\x11") + _tlv(2, b"\0") + _tlv(2, b"\0") + _tlv(0x30, b""))
    glob = _tlv(
        0x30, _tlv(2, b"\x01\x00") + _tlv(2, b"\x05\xdc") + _tlv(4, b"\x04") + _tlv(2, b"\x03")
    )
    return _tlv(
        0x30, _tlv(2, b"\x03") + glob + _tlv(4, usm) + _tlv(0x30, _tlv(4, b"") + _tlv(4, b"") + pdu)
    )


def test_password_to_key_and_localisation_match_the_rfc_3414_vectors() -> None:
    engine = bytes.fromhex("000000000000000000000002")
    ku = password_to_key(b"maplesyrup", "md5")
    assert ku.hex() == "9faf3283884e92834ebc9847d8edd963"
    assert localize_key(ku, engine, "md5").hex() == "526f5eed9fcce26f8964c2930787d82b"
    ku = password_to_key(b"maplesyrup", "sha")
    assert ku.hex() == "9fb5cc0381497b3793528939ff788d5d79145211"
    assert localize_key(ku, engine, "sha").hex() == "6695febc9288e36282235fc7151f128497b38f3f"


def test_discovery_gets_a_report_of_unknown_engine_id_with_the_routers_engine_boots_and_time(
    clock: ManualClock,
) -> None:
    fleet = _fleet(clock)
    clock.ns = T0 + 42 * NS
    router = fleet.routers[0]
    reply = fleet.agent(router).handle(_discovery())
    assert reply is not None
    engine = fleet.engine_id(router)
    assert engine == b"\x80\x00\x1f\x88\x04sim:rtr-0001"
    assert _tlv(4, engine) + _tlv(2, b"\x01") + _tlv(2, b"\x2a") in reply  # boots 1, time 42
    assert b"\xa8" in reply
    assert REPORT_OIDS["unknown_engine_ids"] in reply
    assert fleet.stats.unknown_engine_ids == 1


def test_an_unknown_user_gets_a_report_and_a_non_reportable_request_gets_nothing(
    clock: ManualClock,
) -> None:
    fleet = _fleet(clock)
    router = fleet.routers[0]
    agent = fleet.agent(router)
    reply = agent.handle(_discovery(fleet.engine_id(router), b"mallory"))
    assert reply is not None
    assert REPORT_OIDS["unknown_user_names"] in reply
    silent = _discovery().replace(_tlv(4, b"\x04"), _tlv(4, b"\x00"))
    assert agent.handle(silent) is None
    assert fleet.stats.unknown_user_names == 1
    assert fleet.stats.unknown_engine_ids == 1


def test_v3_is_not_answered_on_a_shared_port(clock: ManualClock) -> None:
    config = generate_config(routers=2, interfaces=1, base_port=0, shared_port=True)
    fleet = Fleet(msgspec.structs.replace(config, v3_users=USERS), clock=clock)
    assert fleet.agent(fleet.routers[0]).handle(_discovery()) is None
    assert fleet.stats.bad_version == 1


def test_a_v3_user_with_privacy_but_no_auth_is_a_config_error() -> None:
    from simulator import ConfigError, validate_config

    bad = FleetConfig(v3_users=[UserConfig(name="x", auth="none", priv="aes", priv_key="12345678")])
    with pytest.raises(ConfigError, match=r"\$\.v3_users\[0\]\.priv"):
        validate_config(bad)


def _netsnmp_args(user: UserConfig) -> list[str]:
    auth = {"md5": "MD5", "sha": "SHA", "sha224": "SHA-224", "sha256": "SHA-256",
            "sha384": "SHA-384", "sha512": "SHA-512"}  # fmt: skip
    priv = {"aes": "AES", "aes128": "AES", "aes192": "AES-192", "aes256": "AES-256"}
    level = (
        "authPriv"
        if user.priv != "none"
        else "authNoPriv"
        if user.auth != "none"
        else "noAuthNoPriv"
    )
    args = ["-v3", "-l", level, "-u", user.name, "-t", "2", "-r", "1"]
    if user.auth != "none":
        args += ["-a", auth[user.auth], "-A", user.auth_key or ""]
    if user.priv != "none":
        args += ["-x", priv[user.priv], "-X", user.priv_key or ""]
    return args


@needs_netsnmp
@pytest.mark.snmp
@pytest.mark.anyio
@pytest.mark.parametrize("user", USERS, ids=lambda u: u.name)
async def test_netsnmp_snmpget_v3_reads_sysname_and_the_exact_counter(
    clock: ManualClock, user: UserConfig
) -> None:
    fleet = _fleet(clock)
    clock.ns = T0 + 10 * NS
    with anyio.fail_after(20):
        async with fleet.serve():
            _, host, port, _ = fleet.endpoints[1]
            result = await anyio.run_process(
                [
                    "snmpget",
                    *_netsnmp_args(user),
                    "-On",
                    f"{host}:{port}",
                    "1.3.6.1.2.1.1.5.0",
                    "1.3.6.1.2.1.31.1.1.1.6.2",
                ],
                check=False,
            )
    assert result.returncode == 0, result.stderr.decode()
    assert result.stdout.decode().splitlines() == [
        '.1.3.6.1.2.1.1.5.0 = STRING: "rtr-0002"',
        ".1.3.6.1.2.1.31.1.1.1.6.2 = Counter64: 10000",
    ]


@needs_netsnmp
@pytest.mark.snmp
@pytest.mark.anyio
async def test_netsnmp_with_a_wrong_auth_passphrase_fails_and_counts_a_wrong_digest(
    clock: ManualClock,
) -> None:
    fleet = _fleet(clock)
    wrong = msgspec.structs.replace(USERS[0], auth_key="not-the-passphrase")
    with anyio.fail_after(20):
        async with fleet.serve():
            _, host, port, _ = fleet.endpoints[0]
            result = await anyio.run_process(
                ["snmpget", *_netsnmp_args(wrong), f"{host}:{port}", "1.3.6.1.2.1.1.5.0"],
                check=False,
            )
    assert result.returncode != 0
    assert fleet.stats.wrong_digests >= 1


@needs_netsnmp
@pytest.mark.snmp
@pytest.mark.anyio
async def test_after_a_reboot_engine_boots_increments_and_snmpget_still_reads(
    clock: ManualClock,
) -> None:
    fleet = _fleet(clock)
    router = fleet.routers[0]
    clock.ns = T0 + 100 * NS
    fleet.reboot(router, at=T0 + 90 * NS)
    assert fleet.router(router).engine_boots(clock.ns) == 2
    assert fleet.router(router).engine_time(clock.ns) == 10
    with anyio.fail_after(20):
        async with fleet.serve():
            _, host, port, _ = fleet.endpoints[0]
            result = await anyio.run_process(
                ["snmpget", *_netsnmp_args(USERS[0]), "-On", f"{host}:{port}", "1.3.6.1.2.1.1.3.0"],
                check=False,
            )
    assert result.returncode == 0, result.stderr.decode()
    assert "Timeticks: (1000)" in result.stdout.decode()


@pytest.mark.anyio
@pytest.mark.parametrize("name", ["sha-aes", "sha512-aes192", "sha256-aes256"])
async def test_pysnmp_v3_client_reads_the_counter_with_auth_and_privacy(
    clock: ManualClock, name: str
) -> None:
    from pysnmp.hlapi.v3arch.asyncio import (
        ContextData,
        ObjectIdentity,
        ObjectType,
        SnmpEngine,
        UdpTransportTarget,
        UsmUserData,
        get_cmd,
        usmAesBlumenthalCfb192Protocol,
        usmAesBlumenthalCfb256Protocol,
        usmAesCfb128Protocol,
        usmHMAC192SHA256AuthProtocol,
        usmHMAC384SHA512AuthProtocol,
        usmHMACSHAAuthProtocol,
    )

    protocols = {
        "sha-aes": (usmHMACSHAAuthProtocol, usmAesCfb128Protocol),
        "sha512-aes192": (usmHMAC384SHA512AuthProtocol, usmAesBlumenthalCfb192Protocol),
        "sha256-aes256": (usmHMAC192SHA256AuthProtocol, usmAesBlumenthalCfb256Protocol),
    }
    auth, priv = protocols[name]
    fleet = _fleet(clock)
    clock.ns = T0 + 3 * NS
    engine = SnmpEngine()
    try:
        with anyio.fail_after(20):
            async with fleet.serve():
                _, host, port, _ = fleet.endpoints[0]
                target = await UdpTransportTarget.create((host, port), timeout=2, retries=0)
                error, status, _, varbinds = await get_cmd(
                    engine,
                    UsmUserData(name, AUTH_KEY, PRIV_KEY, authProtocol=auth, privProtocol=priv),
                    target,
                    ContextData(),
                    ObjectType(ObjectIdentity("1.3.6.1.2.1.31.1.1.1.6.1")),
                )
    finally:
        engine.close_dispatcher()
    assert error is None
    assert int(status) == 0
    assert [int(v) for _, v in varbinds] == [3000]
