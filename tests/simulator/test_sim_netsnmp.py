"""net-snmp's command-line tools read the simulator and see the expected values."""

from __future__ import annotations

import shutil

import anyio
import pytest
from _clock import ManualClock
from simtest_helpers import T0

from simulator import Fleet

NS = 1_000_000_000

pytestmark = [
    pytest.mark.snmp,
    pytest.mark.skipif(
        shutil.which("snmpbulkwalk") is None or shutil.which("snmpget") is None,
        reason="net-snmp tools (snmpget, snmpbulkwalk) are not installed: apt-get install snmp",
    ),
]


async def _run(*args: str) -> list[str]:
    result = await anyio.run_process(["/usr/bin/env", *args], check=False)
    assert result.returncode == 0, result.stderr.decode()
    return result.stdout.decode().splitlines()


@pytest.mark.anyio
async def test_snmpbulkwalk_walks_ifxtable(clock: ManualClock) -> None:
    fleet = Fleet.generate(
        routers=1, interfaces=12, base_port=0, rate_bps=1000, in_initial=7, clock=clock
    )
    clock.ns = T0 + 60 * NS
    with anyio.fail_after(20):
        async with fleet.serve():
            _, host, port, community = fleet.endpoints[0]
            lines = await _run(
                "snmpbulkwalk", "-v2c", "-c", community, "-On", "-t", "2", "-r", "1",
                f"{host}:{port}", "1.3.6.1.2.1.31.1.1",
            )  # fmt: skip
    rows = [line for line in lines if "No more variables" not in line]
    assert len(rows) == 12 * 6
    assert rows[0] == '.1.3.6.1.2.1.31.1.1.1.1.1 = STRING: "ge-0/0/0"'
    assert rows[11] == '.1.3.6.1.2.1.31.1.1.1.1.12 = STRING: "ge-0/0/11"'
    assert rows[12] == ".1.3.6.1.2.1.31.1.1.1.6.1 = Counter64: 60007"
    assert rows[24] == ".1.3.6.1.2.1.31.1.1.1.10.1 = Counter64: 30000"
    assert rows[36] == ".1.3.6.1.2.1.31.1.1.1.15.1 = Gauge32: 1000"
    assert rows[59] == '.1.3.6.1.2.1.31.1.1.1.18.12 = STRING: "CUST:cust-0012"'
    # ifCounterDiscontinuityTime: no clear of the counters since the boot
    assert rows[71] == ".1.3.6.1.2.1.31.1.1.1.19.12 = Timeticks: (0) 0:00:00.00"


@pytest.mark.anyio
async def test_snmpget_reads_ifhcinoctets_sysuptime_and_a_wrapped_counter32(
    clock: ManualClock,
) -> None:
    fleet = Fleet.generate(
        routers=2,
        interfaces=2,
        base_port=0,
        rate_bps=3_000_000,
        in_initial=2**32 - 1_000_000,
        clock=clock,
    )
    clock.ns = T0 + 4 * NS + 560_000_000
    with anyio.fail_after(20):
        async with fleet.serve():
            _, host, port, community = fleet.endpoints[1]
            lines = await _run(
                "snmpget", "-v2c", "-c", community, "-On", "-t", "2", "-r", "1",
                f"{host}:{port}",
                "1.3.6.1.2.1.1.3.0", "1.3.6.1.2.1.31.1.1.1.6.2", "1.3.6.1.2.1.2.2.1.10.2",
            )  # fmt: skip
    expected = 2**32 - 1_000_000 + 3_000_000 * 456 // 100
    assert expected == fleet.octets("rtr-0002", "ge-0/0/1", "in", at=clock.ns)
    assert lines == [
        ".1.3.6.1.2.1.1.3.0 = Timeticks: (456) 0:00:04.56",
        f".1.3.6.1.2.1.31.1.1.1.6.2 = Counter64: {expected}",
        f".1.3.6.1.2.1.2.2.1.10.2 = Counter32: {expected % 2**32}",
    ]


@pytest.mark.anyio
async def test_snmpget_gets_no_answer_with_the_wrong_community() -> None:
    fleet = Fleet.generate(routers=1, interfaces=1, base_port=0)
    with anyio.fail_after(20):
        async with fleet.serve():
            _, host, port, _ = fleet.endpoints[0]
            result = await anyio.run_process(
                ["snmpget", "-v2c", "-c", "nope", "-t", "0.2", "-r", "0", f"{host}:{port}",
                 "1.3.6.1.2.1.1.3.0"],
                check=False,
            )  # fmt: skip
    assert result.returncode != 0
    assert b"Timeout" in result.stdout + result.stderr
    assert fleet.stats.bad_community == 1
