"""The pysnmp client against real SNMP responders: net-snmp's snmpd and the simulator."""

from __future__ import annotations

import anyio
import pytest

from edge_agent._exceptions import SnmpTimeout
from edge_agent.config import TargetConfig, config_from_dict
from edge_agent.snmp import PysnmpClient

from .conftest import Snmpd

pytestmark = [pytest.mark.snmp, pytest.mark.anyio]


def target(host: str, port: int, community: str = "public", **extra: object) -> TargetConfig:
    config = config_from_dict(
        {
            "agent_id": "t",
            "targets": [
                {"name": "r1", "host": host, "port": port, "community": community, **extra}
            ],
        }
    )
    return config.targets[0]


async def test_walking_snmpd_lists_interfaces_by_name(snmpd: Snmpd) -> None:
    client = PysnmpClient()
    try:
        with anyio.fail_after(10):
            rows = await client.walk_interfaces(target(*snmpd))
    finally:
        await client.aclose()
    names = {r.if_name for r in rows}
    assert "lo" in names
    assert all(r.if_index > 0 for r in rows)


async def test_polling_snmpd_gives_counter64_values_and_uptime(snmpd: Snmpd) -> None:
    client = PysnmpClient()
    try:
        with anyio.fail_after(10):
            t = target(*snmpd)
            rows = await client.walk_interfaces(t)
            lo = next(r for r in rows if r.if_name == "lo")
            sample = await client.poll_counters(t, [lo.if_index, 4242])
    finally:
        await client.aclose()
    assert sample.sys_uptime_cs > 0
    counters = sample.interfaces[lo.if_index]
    assert counters.in_octets is not None
    assert counters.in_octets.width == 64
    assert counters.in_octets.value >= 0
    # an interface the router does not have is missing, never zero
    assert sample.interfaces[4242].in_octets is None
    assert sample.interfaces[4242].out_octets is None


async def test_a_router_that_does_not_answer_is_a_typed_timeout() -> None:
    client = PysnmpClient()
    try:
        with anyio.fail_after(10), pytest.raises(SnmpTimeout) as excinfo:
            await client.poll_counters(
                target("127.0.0.1", 1, "CANARY-s3cr3t", timeout=0.2, retries=0), [1]
            )
    finally:
        await client.aclose()
    assert excinfo.value.target == "r1"
    assert "CANARY" not in str(excinfo.value)


async def test_the_simulator_answers_with_its_ground_truth() -> None:
    simulator = pytest.importorskip("simulator")
    fleet = simulator.Fleet.generate(routers=1, interfaces=3, base_port=0, rate_bps=1000)
    client = PysnmpClient()
    try:
        with anyio.fail_after(10):
            async with fleet.serve(host="127.0.0.1"):
                (endpoint,) = fleet.endpoints
                t = target(endpoint.host, endpoint.port, endpoint.community)
                rows = await client.walk_interfaces(t)
                sample = await client.poll_counters(t, [r.if_index for r in rows])
    finally:
        await client.aclose()
    assert [r.if_alias for r in rows] == ["CUST:cust-0001", "CUST:cust-0002", "CUST:cust-0003"]
    assert all(r.high_speed_mbps for r in rows)
    for row in rows:
        counters = sample.interfaces[row.if_index]
        assert counters.in_octets is not None
        assert counters.in_octets.width == 64
        truth = fleet.octets(endpoint.router, row.if_name, "in", sample.taken_ms / 1000)
        assert abs(truth - counters.in_octets.value) <= 1000  # within ~1 s of traffic


async def test_routers_sharing_a_community_are_all_answered_by_one_engine() -> None:
    """pysnmp matches answers to the first community-table entry with that community."""
    simulator = pytest.importorskip("simulator")
    fleet = simulator.Fleet.generate(routers=3, interfaces=1, base_port=0)
    client = PysnmpClient()
    try:
        with anyio.fail_after(10):
            async with fleet.serve(host="127.0.0.1"):
                for endpoint in fleet.endpoints:
                    t = target(endpoint.host, endpoint.port, endpoint.community, retries=0)
                    sample = await client.poll_counters(t, [1])
                    assert sample.interfaces[1].in_octets is not None
    finally:
        await client.aclose()
