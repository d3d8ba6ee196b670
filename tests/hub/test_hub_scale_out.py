"""Hubs join and die while a stream runs: one alert per episode, exact totals."""

from __future__ import annotations

import json
from pathlib import Path

import anyio
import asyncpg  # type: ignore[import-untyped]
import pytest
from _hub_testing import until
from _procs import HubProcess
from aiokafka import AIOKafkaProducer
from test_hub_kill_restart import LIMIT, _at_least, check_exact, series

from hub import HubConfig, migrate, provision_resource
from protocol import encode_event

pytestmark = [pytest.mark.integration, pytest.mark.anyio, pytest.mark.slow]

RESOURCES = 120
PER_RESOURCE = 500


async def test_two_hubs_then_a_third_joins_then_one_is_killed_while_a_stream_runs(
    hub_config: HubConfig, producer: AIOKafkaProducer, unique: str, tmp_path: Path
) -> None:
    await migrate(hub_config.database_url)
    db = await asyncpg.connect(hub_config.database_url)
    hubs: list[HubProcess] = []
    try:
        keys = [
            await provision_resource(db, f"s{i:03d}-{unique}", "bandwidth", LIMIT)
            for i in range(RESOURCES)
        ]
        per_key = [series(k, PER_RESOURCE) for k in keys]
        sent = 0
        rounds_sent = anyio.Event()

        async def stream() -> None:
            nonlocal sent
            for i in range(PER_RESOURCE):
                for rs in per_key:
                    rec = encode_event(rs[i], source="urn:test")
                    await producer.send(
                        hub_config.usage_topic, value=rec.value, key=rec.key, headers=rec.headers
                    )
                    sent += 1
                await producer.flush()
                await anyio.sleep(0.03)  # a steady stream, ~15-20 s in all
            rounds_sent.set()

        done = "SELECT count(*) FROM processed_events"
        with anyio.fail_after(120):
            hubs += [HubProcess(hub_config, tmp_path / f"hub{i}.log") for i in (1, 2)]
            async with anyio.create_task_group() as tg:
                tg.start_soon(stream)
                await until(lambda: _at_least(db, done, 5_000), interval=0.05)
                hubs.append(HubProcess(hub_config, tmp_path / "hub3.log"))  # joins
                await until(lambda: _at_least(db, done, 20_000), interval=0.05)
                hubs[0].kill()  # dies mid-stream
                await rounds_sent.wait()
            await until(lambda: _at_least(db, done, RESOURCES * PER_RESOURCE), interval=0.1)
            await until(lambda: _at_least(db, "SELECT 1 - count(*) FROM hub_outbox", 1))
            await check_exact(db, keys, per_key)
            for h in hubs[1:]:
                assert h.proc.poll() is None  # the others kept running
            # the third hub took over partitions (a join rebalance, then the dead one's)
            assigned = [
                json.loads(line)["partitions"]
                for line in hubs[2].log.read_text().splitlines()
                if '"partitions_assigned"' in line
            ]
            assert any(assigned)
    finally:
        for h in hubs:
            if h.proc.poll() is None:
                h.stop()
        await db.close()
