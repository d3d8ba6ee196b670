"""Canary: keys, stream tokens and the server secret never reach a log line.

A hub with its access log on is driven with requests that succeed and that
fail (unknown, revoked, mistyped keys, a missing scope, forged, expired and
misplaced stream tokens); every structlog event and every standard-library
log record (aiohttp's included) is captured and searched for each secret and
its distinctive parts.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import AsyncIterator

import aiohttp
import anyio
import asyncpg  # type: ignore[import-untyped]
import msgspec
import pytest
from _keys import TEST_SECRET, bearer, make_key
from _sse import SseReader
from structlog.testing import capture_logs

from hub import HubConfig, RunningHub, provision_resource, run_hub
from hub.apikeys import StreamGrant, new_key, stream_token
from hub.storage.apikeys import revoke_key
from hub.storage.provision import DEFAULT_TENANT

pytestmark = [pytest.mark.integration, pytest.mark.anyio]


@pytest.fixture
async def logged_hub(
    hub_config: HubConfig, db: asyncpg.Connection
) -> AsyncIterator[tuple[RunningHub, list[dict[str, object]]]]:
    """A running hub with its access log on, and the structlog events of its whole life."""
    config = msgspec.structs.replace(hub_config, access_log=True, stream_heartbeat_seconds=0.3)
    with capture_logs() as logs:
        async with anyio.create_task_group() as tg:
            running: RunningHub = await tg.start(run_hub, config)
            yield running, logs
            tg.cancel_scope.cancel()


def _parts(secret: str) -> list[str]:
    """What would give a secret away: itself, its body, its last characters."""
    return [secret, secret[4:20], secret[-12:]]


async def test_no_key_token_or_secret_is_ever_logged(
    logged_hub: tuple[RunningHub, list[dict[str, object]]],
    db: asyncpg.Connection,
    caplog: pytest.LogCaptureFixture,
    unique: str,
) -> None:
    caplog.set_level(logging.DEBUG)
    hub, logs = logged_hub
    customer = f"cust-{unique}"
    await provision_resource(db, customer, "bandwidth", None)
    good = await make_key(db, name="canary-good")
    reader = await make_key(db, ("read",), name="canary-reader")
    revoked = await make_key(db, name="canary-revoked")
    revoked_id = await db.fetchval("SELECT id::text FROM api_keys WHERE name = 'canary-revoked'")
    await revoke_key(db, revoked_id)
    unknown = new_key()
    mistyped = good[:-1] + ("a" if good[-1] != "a" else "b")
    async with aiohttp.ClientSession(base_url=hub.http_url) as client:
        async with client.post("/api/stream/token", headers=bearer(good)) as resp:
            assert resp.status == 200
            body = await resp.json()
        token = body["token"]
        forged = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
        expired = stream_token(
            TEST_SECRET, StreamGrant(body["keyId"], DEFAULT_TENANT, None, int(time.time()) - 5)
        )
        revoked_token = stream_token(
            TEST_SECRET, StreamGrant(revoked_id, DEFAULT_TENANT, None, int(time.time()) + 60)
        )
        current = f"/api/metrics/customer/{customer}/current"
        expected: list[tuple[str, str, dict[str, str], dict[str, str], int]] = [
            ("GET", current, bearer(good), {}, 200),
            ("GET", current, {"X-API-Key": good}, {}, 200),
            ("GET", "/api/alerts", bearer(reader), {}, 200),
            ("POST", "/api/keys", bearer(reader), {}, 403),  # the scope is missing
            ("GET", current, bearer(unknown), {}, 401),
            ("GET", current, bearer(revoked), {}, 401),
            ("GET", current, {"X-API-Key": mistyped}, {}, 401),
            ("GET", current, bearer(good[:20]), {}, 401),
            ("GET", "/api/alerts", {}, {"token": token}, 401),  # a token on another route
            ("GET", "/api/stream", {}, {"token": forged}, 401),
            ("GET", "/api/stream", {}, {"token": expired}, 401),
            ("GET", "/api/stream", {}, {"token": revoked_token}, 401),
            ("GET", "/api/stream", {}, {"token": "rst_" + TEST_SECRET}, 401),
            ("GET", f"/api/no-such-route/{uuid.uuid4()}", bearer(good), {}, 404),
        ]
        for method, url, headers, params, status in expected:
            async with client.request(method, url, headers=headers, params=params) as resp:
                assert resp.status == status, (method, url, await resp.text())
        with anyio.fail_after(10):
            async with client.get("/api/stream", params={"token": token}) as resp:
                sse = SseReader(resp)
                assert (await sse.next()).kind == "heartbeat"
    await anyio.sleep(0.2)  # the stream's access line is written as it closes
    events = {e["event"] for e in logs}
    # what the canary relies on: the hub did log the requests and the refusals
    assert {"http_request", "api_key_refused", "stream_token_refused"} <= events
    access = [e for e in logs if e["event"] == "http_request" and e["path"] == "/api/stream"]
    assert access
    assert all(e["query"] == "token=***" for e in access)
    logged = repr(logs) + "\n".join(
        f"{r.name} {r.getMessage()} {r.args!r} {r.__dict__!r}" for r in caplog.records
    )
    for secret in (good, reader, revoked, unknown, mistyped, token, forged, expired, TEST_SECRET):
        for part in _parts(secret):
            assert part not in logged, f"a secret's part {part[:3]}... is in the log"
    signature = token.rsplit(".", 1)[1]
    assert signature not in logged
