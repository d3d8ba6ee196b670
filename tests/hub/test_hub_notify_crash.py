"""kill -9 between sending and recording: at most one duplicate, never zero sends."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import anyio
import asyncpg  # type: ignore[import-untyped]
import pytest
from _hub_testing import until
from _notify_fakes import FakeHttp, http_server, notify_config, raise_alert

from hub import HubConfig, provision_resource
from hub.notify import ChannelPrefs, Preferences, run_notifier
from hub.notify.preferences import save_preferences

pytestmark = [pytest.mark.integration, pytest.mark.anyio, pytest.mark.slow]

WORKER = Path(__file__).with_name("_notify_crash_worker.py")


async def test_a_worker_killed_after_sending_leaves_one_duplicate_and_a_restart_delivers(
    hub_config: HubConfig, db: asyncpg.Connection, unique: str
) -> None:
    customer = f"cust-{unique}"
    key = await provision_resource(db, customer, "api_calls", 1000)
    async with http_server(FakeHttp()) as hook:
        await save_preferences(
            db,
            Preferences(
                email=ChannelPrefs(enabled=False),
                webhook=ChannelPrefs(enabled=True, url=f"{hook.url}/in"),
            ),
            customer_id=customer,
        )
        alert = await raise_alert(db, key)
        with anyio.fail_after(60):
            proc = await anyio.open_process(
                [sys.executable, str(WORKER), hub_config.database_url],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            assert await proc.wait() == -9
            assert len(hook.requests) == 1
            row = await db.fetchrow("SELECT status, claimed_by FROM notification_log")
            assert (row["status"], row["claimed_by"]) == ("SENDING", "doomed-worker")
            # a restarted hub takes the row over once the dead worker's lease runs out
            pool = await asyncpg.create_pool(hub_config.database_url, min_size=1, max_size=4)
            try:
                async with anyio.create_task_group() as tg:
                    await tg.start(run_notifier, pool, notify_config(worker_id="restarted"), None)
                    await until(lambda: db.fetchval("SELECT status = 'SENT' FROM notification_log"))
                    tg.cancel_scope.cancel()
            finally:
                await pool.close()
    assert len(hook.requests) == 2  # exactly one duplicate, never zero
    assert all(r.json["alerts"][0]["alertId"] == alert for r in hook.requests)
    attempts = await db.fetch("SELECT worker, outcome FROM notification_attempts ORDER BY id")
    assert [(a["worker"], a["outcome"]) for a in attempts] == [("restarted", "sent")]
