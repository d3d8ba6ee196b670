"""A running hub (Kafka -> actors -> alerts) notifies by email through a real SMTP server."""

from __future__ import annotations

import aiohttp
import anyio
import asyncpg  # type: ignore[import-untyped]
import msgspec
import pytest
from _hub_testing import until
from _keys import bearer
from _notify_fakes import notify_config, smtp_server

from hub import HubConfig, RunningHub, provision_resource, run_hub
from hub.notify import ChannelPrefs, Preferences
from hub.notify.preferences import save_preferences

pytestmark = [pytest.mark.integration, pytest.mark.anyio, pytest.mark.slow]


def reading(customer: str, value: int, n: int) -> dict[str, object]:
    return {
        "customerId": customer,
        "resourceType": "api_calls",
        "value": value,
        "unit": "request",
        "eventId": f"e2e-{customer}-{n}",
    }


async def test_hub_emails_warning_critical_acknowledge_and_resolve_exactly_once_each(
    hub_config: HubConfig, db: asyncpg.Connection, unique: str, api_key: str
) -> None:
    customer = f"cust-{unique}"
    key = await provision_resource(db, customer, "api_calls", 1000)
    await save_preferences(
        db,
        Preferences(
            email=ChannelPrefs(enabled=True, min_severity="HIGH", recipients=["noc@cust.example"])
        ),
        customer_id=customer,
    )
    async with smtp_server() as (smtp, port):
        config = msgspec.structs.replace(hub_config, notify=notify_config(port))
        async with anyio.create_task_group() as tg:
            hub: RunningHub = await tg.start(run_hub, config)
            session = aiohttp.ClientSession(base_url=hub.http_url, headers=bearer(api_key))
            async with session as http:
                with anyio.fail_after(60):
                    resp = await http.post("/api/metrics/ingest", json=reading(customer, 850, 1))
                    assert resp.status == 200
                    await until(lambda: len(smtp.messages) == 1)
                    resp = await http.post("/api/metrics/ingest", json=reading(customer, 110, 2))
                    await until(lambda: len(smtp.messages) == 2)
                    resp = await http.get(
                        "/api/alerts", params={"customerId": customer, "status": "ACTIVE"}
                    )
                    (critical,) = (await resp.json())["items"]
                    resp = await http.post(
                        f"/api/alerts/{critical['id']}/acknowledge",
                        json={"by": "noc-alice", "comment": "upgrading"},
                    )
                    assert resp.status == 200
                    await until(lambda: len(smtp.messages) == 3)
                    resp = await http.post(
                        f"/api/alerts/{critical['id']}/resolve", json={"by": "noc-bob"}
                    )
                    assert resp.status == 200
                    await until(lambda: len(smtp.messages) == 4)
                    await until(
                        lambda: db.fetchval(
                            "SELECT bool_and(status = 'SENT') FROM notification_log"
                        )
                    )
                    await anyio.sleep(0.3)  # nothing else trickles in
            tg.cancel_scope.cancel()
    assert [m["Subject"].strip() for m in smtp.messages] == [
        f"[resmon] ALERT HIGH: api_calls {key} at 85.00%",
        f"[resmon] ESCALATED CRITICAL: api_calls {key} at 96.00%",
        f"[resmon] ACKNOWLEDGED CRITICAL: api_calls {key} at 96.00%",
        f"[resmon] RESOLVED CRITICAL: api_calls {key} at 96.00%",
    ]
    ack = smtp.messages[2].get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert "acknowledged by noc-alice: upgrading" in ack
