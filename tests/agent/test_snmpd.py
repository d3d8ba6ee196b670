"""The agent against Debian's real net-snmp ``snmpd`` on 127.0.0.1: SNMPv3 USM with every
auth/priv protocol, SNMPv1 over GETNEXT, wrong credentials as typed errors without the
keys, and loopback deltas that match the kernel's own counters."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import anyio
import pytest
import structlog

from edge_agent import SnmpAuthError, SnmpError, config_from_dict
from edge_agent.config import TargetConfig
from edge_agent.metrics import AgentMetrics
from edge_agent.poller import Poller
from edge_agent.snmp import PysnmpClient, SnmpClient
from protocol import KafkaRecord, UsageReading, decode_record

from .conftest import SNMPD_AUTH_KEY, SNMPD_PRIV_KEY, SNMPD_USERS, Snmpd

pytestmark = [pytest.mark.snmp, pytest.mark.anyio]

KERNEL_RX = Path("/sys/class/net/lo/statistics/rx_bytes")
KERNEL_TX = Path("/sys/class/net/lo/statistics/tx_bytes")


def one_target(spec: dict[str, Any]) -> TargetConfig:
    return config_from_dict({"agent_id": "t", "targets": [spec]}).targets[0]


@pytest.mark.parametrize("user", sorted(SNMPD_USERS))
async def test_snmpv3_users_of_every_auth_and_priv_protocol_walk_and_poll(
    snmpd: Snmpd, user: str
) -> None:
    client = PysnmpClient()
    try:
        with anyio.fail_after(15):
            target = one_target(snmpd.v3_target(user))
            rows = await client.walk_interfaces(target)
            lo = next(r for r in rows if r.if_name == "lo")
            sample = await client.poll_counters(target, [lo.if_index])
    finally:
        await client.aclose()
    counters = sample.interfaces[lo.if_index]
    assert counters.in_octets is not None
    assert counters.in_octets.width == 64
    assert sample.sys_uptime_cs > 0


@pytest.mark.parametrize(
    ("change", "indication"),
    [
        ({"auth_key": "wrong-CANARY-auth"}, "WrongDigest"),
        ({"security_name": "nobody-here"}, "UnknownUserName"),
    ],
)
async def test_wrong_v3_credentials_are_an_auth_error_without_any_key(
    snmpd: Snmpd, change: dict[str, str], indication: str
) -> None:
    client = PysnmpClient()
    try:
        with (
            anyio.fail_after(15),
            structlog.testing.capture_logs() as logs,
            pytest.raises(SnmpAuthError) as excinfo,
        ):
            await client.poll_counters(
                one_target(snmpd.v3_target("u-sha-aes", timeout=0.5, retries=0) | change), [1]
            )
    finally:
        await client.aclose()
    assert indication in str(excinfo.value)
    assert excinfo.value.kind == "auth"
    for text in (str(excinfo.value), repr(excinfo.value), repr(logs)):
        assert "CANARY" not in text


async def test_a_wrong_priv_key_fails_the_poll_without_the_key(snmpd: Snmpd) -> None:
    client = PysnmpClient()
    spec = snmpd.v3_target("u-sha-aes", timeout=0.5, retries=0, priv_key="wrong-CANARY-priv")
    try:
        with anyio.fail_after(15), pytest.raises(SnmpError) as excinfo:
            await client.poll_counters(one_target(spec), [1])
    finally:
        await client.aclose()
    assert "CANARY" not in str(excinfo.value)
    assert SNMPD_PRIV_KEY not in str(excinfo.value)
    assert SNMPD_AUTH_KEY not in str(excinfo.value)


async def test_snmpv1_walks_with_getnext_and_reads_32_bit_counters(snmpd: Snmpd) -> None:
    client = PysnmpClient()
    target = one_target(
        {
            "name": "v1",
            "host": snmpd.host,
            "port": snmpd.port,
            "version": "1",
            "community": "public",
        }
    )
    try:
        with anyio.fail_after(15):
            rows = await client.walk_interfaces(target)
            lo = next(r for r in rows if r.if_name == "lo")
            # 4242 does not exist: SNMPv1 answers noSuchName for the whole PDU, and
            # the client retries without it instead of losing the interface that exists
            sample = await client.poll_counters(target, [lo.if_index, 4242])
    finally:
        await client.aclose()
    counters = sample.interfaces[lo.if_index]
    assert counters.in_octets is not None
    assert counters.in_octets.width == 32
    assert sample.interfaces[4242].in_octets is None


def _loopback_traffic(nbytes: int) -> None:
    with (
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as rx,
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tx,
    ):
        rx.bind(("127.0.0.1", 0))
        for _ in range(nbytes // 1000):
            tx.sendto(b"x" * 1000, rx.getsockname())


def _kernel() -> tuple[int, int]:
    return int(KERNEL_RX.read_text()), int(KERNEL_TX.read_text())


@pytest.mark.skipif(not KERNEL_RX.exists(), reason="no /sys/class/net/lo statistics here")
@pytest.mark.parametrize("version", ["2c", "3 authPriv SHA-512/AES-256"])
async def test_loopback_deltas_match_the_kernel_counters_within_one_poll(
    snmpd: Snmpd, version: str
) -> None:
    if version == "2c":
        spec: dict[str, Any] = {
            "name": "snmpd",
            "host": snmpd.host,
            "port": snmpd.port,
            "community": "public",
        }
    else:
        spec = snmpd.v3_target("u-sha512-aes256")
    config = config_from_dict(
        {
            "agent_id": "lo-test",
            "targets": [spec],
            "mapping": [{"pattern": "^(?P<customer>lo)$", "match_on": "ifName"}],
        }
    )
    records: list[KafkaRecord] = []

    async def sink(batch: list[KafkaRecord]) -> None:
        records.extend(batch)

    client: SnmpClient = PysnmpClient()
    poller = Poller(config, client, sink, metrics=AgentMetrics())
    # the kernel's counters just before and just after each poll
    bounds: list[tuple[tuple[int, int], tuple[int, int]]] = []
    try:
        with anyio.fail_after(30):
            for _ in range(4):
                _loopback_traffic(200_000)
                before = _kernel()
                await poller.poll_all()
                bounds.append((before, _kernel()))
    finally:
        await client.aclose()
    readings = [decode_record(r.value, r.headers).data for r in records]
    assert all(isinstance(r, UsageReading) for r in readings), readings
    for column, direction in ((0, "in"), (1, "out")):
        deltas = [
            r.value for r in readings if isinstance(r, UsageReading) and r.direction == direction
        ]
        assert len(deltas) == 3
        # every poll's reading lies between the kernel's counter just before and just
        # after that poll, so each delta matches the kernel's within one poll, and
        # the sum over the run matches it to within what moved during two polls
        assert all(d >= 0 for d in deltas)
        total = sum(deltas)
        kernel_min = bounds[-1][0][column] - bounds[0][1][column]
        kernel_max = bounds[-1][1][column] - bounds[0][0][column]
        assert kernel_min <= total <= kernel_max
        assert total >= 3 * 200_000
        for i in range(1, 4):
            low = bounds[i][0][column] - bounds[i - 1][1][column]
            high = bounds[i][1][column] - bounds[i - 1][0][column]
            assert low <= deltas[i - 1] <= high
