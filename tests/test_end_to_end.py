"""The walking skeleton, end to end on real servers.

Simulated router --SNMP--> edge agent --Kafka (tansu)--> hub --> PostgreSQL,
Redis and REST. The simulator runs on a clock the test moves by hand, so the
bytes an interface carried are known exactly and the alert thresholds are
crossed at moments the test chooses.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import anyio
import asyncpg
import pytest
from _clock import ManualClock
from _metrics import sample

from edge_agent.app import run_agent
from edge_agent.config import AgentConfig, config_from_dict
from hub.app import run_hub
from hub.config import HubConfig
from hub.storage.apikeys import create_key
from hub.storage.migrate import migrate
from hub.storage.provision import DEFAULT_TENANT, provision_resource
from simulator import Fleet

pytestmark = [pytest.mark.anyio, pytest.mark.integration, pytest.mark.snmp]

RATE = 1_000  # bytes/s into the customer's interface (simulated time)
SECRET = "end-to-end-api-key-secret-0123456789abcdef"
LIMIT = 100_000  # bytes: 80 % at 80 s of traffic, 95 % at 95 s
STEP_S = 10  # simulated seconds per step -> 10,000 bytes


async def _eventually(check: Callable[[], Awaitable[bool]]) -> None:
    """Poll ``check`` until it holds; the caller's fail_after bounds the wait."""
    while not await check():  # noqa: ASYNC110 - PostgreSQL rows have no event to wait on
        await anyio.sleep(0.05)


async def _world(pg_dsn: str) -> tuple[ManualClock, Fleet, str, str]:
    """One router, one customer interface on a hand-moved clock; its resource provisioned."""
    clock = ManualClock()
    fleet = Fleet.generate(
        routers=1, interfaces=1, base_port=0, rate_bps=RATE, out_rate_bps=0, clock=clock
    )
    customer = fleet.config.routers[0].interfaces[0].customer
    assert customer is not None
    await migrate(pg_dsn)
    conn = await asyncpg.connect(pg_dsn)
    try:
        key = await provision_resource(conn, customer, "bandwidth", LIMIT)
    finally:
        await conn.close()
    return clock, fleet, customer, key


def _hub_config(kafka_bootstrap: str, pg_dsn: str, redis_url: str, unique: str) -> HubConfig:
    return HubConfig(
        database_url=pg_dsn,
        redis_url=redis_url,
        kafka_bootstrap_servers=kafka_bootstrap,
        api_key_secret=SECRET,
        http_port=0,
        consumer_group=f"hub-{unique}",
        usage_topic=f"usage-{unique}",
        alerts_topic=f"alerts-{unique}",
        redis_prefix=f"resmon-test-{unique}",
        session_timeout_ms=2000,
    )


def _agent_config(
    endpoints: list[Any], hub_config: HubConfig, tmp_path: Path, agent_id: str
) -> AgentConfig:
    return config_from_dict(
        {
            "agent_id": agent_id,
            "interval": 0.5,
            "jitter": 0,
            "targets": [
                {"name": e.router, "host": e.host, "port": e.port, "community": e.community}
                for e in endpoints
            ],
            "mapping": [{"pattern": r"^CUST:(?P<customer>\S+)", "direction": "in"}],
            "kafka": {
                "bootstrap_servers": hub_config.kafka_bootstrap_servers,
                "topic": hub_config.usage_topic,
                "linger_ms": 1,
            },
            "buffer": {"directory": str(tmp_path / "buffer")},
            "http": {"port": 0},
        },
        file=f"<{agent_id}>",
    )


async def test_traffic_crossing_95_percent_raises_one_warning_then_one_critical_with_exact_bytes(
    kafka_bootstrap: str, pg_dsn: str, redis_url: str, unique: str, tmp_path: Path
) -> None:
    clock, fleet, customer, key = await _world(pg_dsn)
    conn = await asyncpg.connect(pg_dsn)
    try:
        created = await create_key(
            conn, SECRET, tenant_id=DEFAULT_TENANT, name="e2e", scopes=("read",)
        )
    finally:
        await conn.close()
    hub_config = _hub_config(kafka_bootstrap, pg_dsn, redis_url, unique)

    with anyio.fail_after(90):
        async with anyio.create_task_group() as tg:
            endpoints = await tg.start(fleet.run, "127.0.0.1")
            hub = await tg.start(run_hub, hub_config)
            agent_config = _agent_config(endpoints, hub_config, tmp_path, f"e2e-{unique}")
            agent = await tg.start(run_agent, agent_config)
            pool = hub.pool

            async def total() -> int:
                value = await pool.fetchval(
                    "SELECT current_usage FROM customer_resources WHERE resource_key = $1", key
                )
                return int(value)

            async def alerts() -> list[tuple[str, str]]:
                rows = await pool.fetch(
                    "SELECT a.alert_type, a.status FROM alerts a JOIN customer_resources r"
                    " ON r.id = a.customer_resource_id WHERE r.resource_key = $1"
                    " ORDER BY a.created_at",
                    key,
                )
                return [(r["alert_type"], r["status"]) for r in rows]

            # Two polls make the first (zero) delta: the baseline is set.
            await agent.poller.wait_for_cycle(2)
            start_ns = clock.ns
            seen_after_step: list[list[tuple[str, str]]] = []
            for step in range(1, 11):
                clock.advance(STEP_S)
                expected = step * STEP_S * RATE

                async def reached(expected: int = expected) -> bool:
                    return await total() == expected

                await _eventually(reached)
                seen_after_step.append([a for a, _ in await alerts()])

            # Every byte the simulator served after the baseline, no more, no less.
            served = fleet.bytes_between(fleet.routers[0], "ge-0/0/0", "in", start_ns, clock.ns)
            assert served == LIMIT
            assert await total() == served

            # 70 %: nothing; 80 %: one warning; 90 %: still one; 100 % (>= 95 %): critical.
            assert seen_after_step[6] == []
            assert seen_after_step[7] == ["THRESHOLD_WARNING"]
            assert seen_after_step[8] == ["THRESHOLD_WARNING"]
            assert seen_after_step[9] == ["THRESHOLD_WARNING", "THRESHOLD_CRITICAL"]
            final = await alerts()
            assert [a for a, _ in final] == ["THRESHOLD_WARNING", "THRESHOLD_CRITICAL"]
            assert final[1][1] == "ACTIVE"

            # The REST API shows the exact usage and both alerts.
            auth = {"Authorization": f"Bearer {created.key}"}
            async with aiohttp.ClientSession(hub.http_url, headers=auth) as http:
                async with http.get(f"/api/metrics/customer/{customer}/current") as resp:
                    assert resp.status == 200
                    current = await resp.json()
                async with http.get("/api/alerts", params={"customerId": customer}) as resp:
                    assert resp.status == 200
                    listed = (await resp.json())["items"]
            [resource] = current
            assert resource["resourceKey"] == key
            assert resource["usage"] == LIMIT
            assert resource["limit"] == LIMIT
            assert resource["percentage"] == "100.00"
            assert resource["level"] == "CRITICAL"
            by_type = {a["alertType"]: a for a in listed}
            assert set(by_type) == {"THRESHOLD_WARNING", "THRESHOLD_CRITICAL"}
            assert by_type["THRESHOLD_CRITICAL"]["currentValue"] == "0.0001"
            assert by_type["THRESHOLD_WARNING"]["resolution"] == "escalated"
            tg.cancel_scope.cancel()


HUB = "resmon_hub_reading_stage_seconds"
AGENT = "resmon_agent_reading_stage_seconds"
AGENT_STAGES = ("buffered", "acked")
HUB_STAGES = ("buffered", "sent", "fetched", "decided", "committed", "published", "poll_to_commit")


async def test_a_crossing_reading_is_timed_through_every_stage_on_both_metrics_pages(
    kafka_bootstrap: str, pg_dsn: str, redis_url: str, unique: str, tmp_path: Path
) -> None:
    """The stage histograms of agent and hub fill from a real poll -> alert pipeline."""
    clock, fleet, _customer, _key = await _world(pg_dsn)
    hub_config = _hub_config(kafka_bootstrap, pg_dsn, redis_url, unique)
    with anyio.fail_after(90):
        async with anyio.create_task_group() as tg:
            endpoints = await tg.start(fleet.run, "127.0.0.1")
            hub = await tg.start(run_hub, hub_config)
            agent_config = _agent_config(endpoints, hub_config, tmp_path, f"stages-{unique}")
            agent = await tg.start(run_agent, agent_config)
            await agent.poller.wait_for_cycle(2)
            clock.advance(90)  # 90,000 bytes of a 100,000 limit: a warning is published

            def count(metrics: object, name: str, stage: str) -> float:
                return sample(metrics, f"{name}_count", stage=stage)

            async def published() -> bool:
                return count(hub.metrics, HUB, "published") > 0

            await _eventually(published)
            agent_counts = {s: count(agent.metrics, AGENT, s) for s in AGENT_STAGES}
            hub_counts = {s: count(hub.metrics, HUB, s) for s in HUB_STAGES}
            assert all(n > 0 for n in agent_counts.values()), agent_counts
            assert all(n > 0 for n in hub_counts.values()), hub_counts
            # agent and hub share this host's clock: the stamps come in causal order
            for stage in ("buffered", "sent"):
                assert sample(hub.metrics, f"{HUB}_sum", stage=stage) >= 0, stage
            assert sample(agent.metrics, f"{AGENT}_sum", stage="acked") >= 0
            # both pages serve them
            async with aiohttp.ClientSession() as http:
                async with http.get(f"{hub.http_url}/metrics") as resp:
                    hub_page = await resp.text()
                async with http.get(f"http://127.0.0.1:{agent.http_port}/metrics") as resp:
                    agent_page = await resp.text()
            assert f'{HUB}_bucket{{le="0.0005",stage="published"}}' in hub_page
            assert f'{AGENT}_bucket{{le="0.0005",stage="acked"}}' in agent_page
            tg.cancel_scope.cancel()
