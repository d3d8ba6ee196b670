"""Real local servers standing in for SMTP, Slack, Twilio and webhooks, plus alert scripts.

The SMTP server is aiosmtpd (a real SMTP implementation); the HTTP fakes are
aiohttp servers on 127.0.0.1 that record every request and answer from a
script (e.g. 500, 500, 500, 429 + Retry-After, 200).
"""

from __future__ import annotations

import email
import email.policy
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any

import asyncpg  # type: ignore[import-untyped]
from _net import free_port
from aiohttp import web
from aiosmtpd.controller import Controller

from hub.notify.settings import NotifyConfig
from hub.notify.ssrf import parse_networks


class SmtpSink:
    """aiosmtpd handler keeping every message it accepted."""

    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []
        self.envelopes: list[tuple[str, list[str]]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        msg = email.message_from_bytes(envelope.content, policy=email.policy.default)
        assert isinstance(msg, EmailMessage)
        self.messages.append(msg)
        self.envelopes.append((envelope.mail_from, list(envelope.rcpt_tos)))
        return "250 OK"


@asynccontextmanager
async def smtp_server() -> AsyncIterator[tuple[SmtpSink, int]]:
    sink = SmtpSink()
    port = free_port()
    controller = Controller(sink, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield sink, port
    finally:
        controller.stop()


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    json: Any = None
    form: dict[str, str] = field(default_factory=dict)
    at: float = 0.0
    status: int = 200


class FakeHttp:
    """Records requests; answers with ``script`` (status, headers) in order, then 200."""

    def __init__(self, script: list[tuple[int, dict[str, str]]] | None = None) -> None:
        self.script = list(script or [])
        self.requests: list[Recorded] = []
        self.port = 0
        self.redirect_to: str | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        rec = Recorded(request.method, request.path_qs, dict(request.headers), body)
        rec.at = time.monotonic()
        ctype = request.headers.get("Content-Type", "")
        if ctype.startswith("application/json"):
            rec.json = await request.json()
        elif ctype.startswith("application/x-www-form-urlencoded"):
            rec.form = dict(await request.post())  # type: ignore[arg-type]
        self.requests.append(rec)
        if self.redirect_to:
            rec.status = 302
            return web.Response(status=302, headers={"Location": self.redirect_to})
        if self.script:
            rec.status, headers = self.script.pop(0)
            return web.Response(status=rec.status, headers=headers, text="scripted")
        rec.status = 201 if "/Messages.json" in rec.path else 200
        return web.json_response({"ok": True}, status=rec.status)

    @property
    def delivered(self) -> list[Recorded]:
        return [r for r in self.requests if 200 <= r.status < 300]


@asynccontextmanager
async def http_server(fake: FakeHttp) -> AsyncIterator[FakeHttp]:
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", fake.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    fake.port = int(site._server.sockets[0].getsockname()[1])  # type: ignore[union-attr]
    try:
        yield fake
    finally:
        await runner.cleanup()


def notify_config(
    smtp_port: int = 1, twilio_url: str = "http://127.0.0.1:1", **kw: Any
) -> NotifyConfig:
    values: dict[str, Any] = {
        "smtp_host": "127.0.0.1",
        "smtp_port": smtp_port,
        "smtp_tls": "none",
        "smtp_from": "alerts@isp.example",
        "smtp_username": None,
        "smtp_password": None,
        "twilio_account_sid": "AC123",
        "twilio_auth_token": "twilio-token-CANARY",
        "twilio_from": "+15550001111",
        "twilio_base_url": twilio_url,
        "dashboard_url": "https://dash.isp.example",
        "allow_networks": parse_networks("127.0.0.0/8"),
        "group_seconds": 0.0,
        "retry_base_seconds": 0.05,
        "retry_max_seconds": 5.0,
        "poll_seconds": 0.02,
        "repeat_check_seconds": 0.0,
        "lease_seconds": 30.0,
        "worker_id": "test-worker",
    }
    values.update(kw)
    return NotifyConfig(**values)


# -- alert scripts: the SQL the hub's batch writes, so tests need no Kafka --------------


async def raise_alert(
    db: asyncpg.Connection, resource_key: str, level: str = "WARNING", value: str = "850"
) -> str:
    """Insert an ACTIVE threshold alert (escalating an open WARNING like the hub does)."""
    rid = await db.fetchval(
        "SELECT id FROM customer_resources WHERE resource_key = $1", resource_key
    )
    severity = "HIGH" if level == "WARNING" else "CRITICAL"
    async with db.transaction():
        if level == "CRITICAL":
            await db.execute(
                """UPDATE alerts SET status = 'RESOLVED', resolved_at = now(),
                       resolution = 'escalated', resolved_by = 'hub'
                   WHERE customer_resource_id = $1 AND status <> 'RESOLVED'""",
                rid,
            )
        return str(
            await db.fetchval(
                """INSERT INTO alerts (customer_resource_id, alert_type, severity, message,
                       current_value, threshold_value, unit, status)
                   VALUES ($1, $2, $3, $4, $5::numeric, 800, 'request', 'ACTIVE')
                   RETURNING id::text""",
                rid,
                f"THRESHOLD_{level}",
                severity,
                f"api_calls usage of {resource_key} reached {level.lower()} threshold",
                value,
            )
        )


async def recover(db: asyncpg.Connection, resource_key: str) -> None:
    """The hub's auto-resolve after usage fell below the hysteresis line."""
    await db.execute(
        """UPDATE alerts SET status = 'RESOLVED', resolved_at = now(), resolution = 'recovered',
               resolved_by = 'hub'
           WHERE customer_resource_id = (SELECT id FROM customer_resources WHERE resource_key = $1)
             AND status <> 'RESOLVED'""",
        resource_key,
    )
