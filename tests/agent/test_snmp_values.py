"""How the pysnmp client reads SNMP values: Counter32 fallback, missing values, bad types."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import anyio
import pytest
from pysnmp.proto.rfc1902 import Counter32, Counter64, Gauge32, OctetString, TimeTicks
from pysnmp.proto.rfc1905 import NoSuchInstance, NoSuchObject

from edge_agent._exceptions import SnmpMalformedResponse
from edge_agent.config import TargetConfig, config_from_dict
from edge_agent.snmp import PysnmpClient
from edge_agent.snmp import client as snmp_client
from edge_agent.snmp.client import Value
from edge_agent.snmp.pysnmp_client import _value

pytestmark = pytest.mark.anyio

Oid = tuple[int, ...]


class ScriptedClient(PysnmpClient):
    """The real client with its GET answered from a dict of real pysnmp values."""

    def __init__(self, values: dict[Oid, Any]) -> None:
        super().__init__()
        self.values = values

    async def _get_chunk(self, target: TargetConfig, oids: Sequence[Oid]) -> dict[Oid, Value]:
        return {oid: _value(self.values.get(oid, NoSuchObject(""))) for oid in oids}


TARGET = config_from_dict(
    {"agent_id": "t", "targets": [{"name": "r1", "host": "h", "community": "c"}]}
).targets[0]


async def poll(values: dict[Oid, Any], indexes: list[int]) -> snmp_client.CounterSample:
    client = ScriptedClient(values)
    try:
        with anyio.fail_after(5):
            return await client.poll_counters(TARGET, indexes)
    finally:
        await client.aclose()


async def test_counter32_is_used_when_hc_counters_are_absent() -> None:
    sample = await poll(
        {
            snmp_client.SYS_UPTIME: TimeTicks(1234),
            (*snmp_client.IF_IN_OCTETS, 1): Counter32(4_000_000_000),
            (*snmp_client.IF_OUT_OCTETS, 1): Counter32(17),
            (*snmp_client.IF_HIGH_SPEED, 1): Gauge32(100),
        },
        [1],
    )
    counters = sample.interfaces[1]
    assert counters.in_octets == snmp_client.CounterValue(4_000_000_000, 32)
    assert counters.out_octets == snmp_client.CounterValue(17, 32)
    assert counters.high_speed_mbps == 100
    assert sample.sys_uptime_cs == 1234


async def test_counter64_is_preferred_over_counter32() -> None:
    sample = await poll(
        {
            snmp_client.SYS_UPTIME: TimeTicks(1),
            (*snmp_client.IF_HC_IN_OCTETS, 1): Counter64(2**40),
            (*snmp_client.IF_HC_OUT_OCTETS, 1): Counter64(5),
            (*snmp_client.IF_IN_OCTETS, 1): Counter32(7),
        },
        [1],
    )
    assert sample.interfaces[1].in_octets == snmp_client.CounterValue(2**40, 64)


async def test_missing_or_wrongly_typed_counters_are_none_never_zero() -> None:
    sample = await poll(
        {
            snmp_client.SYS_UPTIME: TimeTicks(1),
            (*snmp_client.IF_HC_IN_OCTETS, 1): NoSuchInstance(""),
            (*snmp_client.IF_HC_OUT_OCTETS, 1): OctetString(b"garbage"),
        },
        [1],
    )
    assert sample.interfaces[1].in_octets is None
    assert sample.interfaces[1].out_octets is None


async def test_an_answer_without_sysuptime_is_malformed() -> None:
    with pytest.raises(SnmpMalformedResponse, match="sysUpTime"):
        await poll({(*snmp_client.IF_HC_IN_OCTETS, 1): Counter64(1)}, [1])
