"""The ``smoke`` load test runs in ``make test``: real agent and hub processes,
the real broker, PostgreSQL and Redis, and the simulator's ground truth."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

from loadtest import RunOptions, load_scenario, run_scenario, write_result

pytestmark = [pytest.mark.anyio, pytest.mark.integration, pytest.mark.slow]


async def test_smoke_stores_every_reading_once_bills_every_byte_and_alerts_on_schedule(
    kafka_bootstrap: str, pg_dsn: str, redis_url: str, tmp_path: Path
) -> None:
    scenario = load_scenario("smoke")
    env = {
        "DATABASE_URL": pg_dsn,
        "REDIS_URL": redis_url,
        "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
    }
    opts = RunOptions(state_dir=tmp_path / "state", env=env, progress=False, own_database=False)
    with anyio.fail_after(90):
        result = await run_scenario(scenario, opts)
    write_result(result, tmp_path / "out")

    assert result.failures == []
    assert result.readings_produced > 0
    assert result.lost_readings == 0
    assert result.duplicate_readings == 0
    # the agents' counters are read just before they stop; a last poll may land after
    assert result.readings_stored >= result.readings_produced
    assert result.exact_resources == result.resources == 12
    assert result.v3_routers == 1  # its 4 resources billed exactly too: polled over SNMPv3
    assert result.exact_resources_matching == 12
    assert result.billed_bytes == result.truth_bytes > 0
    assert f"{result.accuracy_percent:.3f}" == "100.000"
    # two resources cross 80 % then 95 %: one WARNING and one CRITICAL each, nothing else
    assert result.expected_alerts == 4
    assert result.alerts_on_time == 4
    assert result.unexpected_threshold_alerts == 0
    assert 0 < result.alert_latency.max_ms < 5_000
    assert (tmp_path / "out" / "smoke.md").read_text().startswith("# Load test `smoke` — PASS")
