"""Generic JSON webhook, signed: ``X-Resmon-Signature: sha256=<hex>``.

The signature is HMAC-SHA256 over ``"{timestamp}.{body}"`` with the
customer's secret; ``X-Resmon-Timestamp`` carries the Unix seconds so a
receiver can refuse replays. Verify with::

    expected = hmac.new(secret, f"{ts}.".encode() + body, "sha256").hexdigest()
    hmac.compare_digest(signature, f"sha256={expected}")
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time

import aiohttp

from .._exceptions import DeliveryError
from ..message import Message
from ..settings import NotifyConfig
from ..ssrf import check_url
from .base import Target, check_response, http_errors

__all__ = ["WebhookChannel", "sign"]


def sign(secret: str, timestamp: str, body: bytes) -> str:
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return f"sha256={mac.hexdigest()}"


class WebhookChannel:
    name = "webhook"

    def __init__(self, config: NotifyConfig, session: aiohttp.ClientSession) -> None:
        self._c = config
        self._session = session

    async def send(self, message: Message, target: Target) -> None:
        if not target.url:
            raise DeliveryError("webhook: no URL in the preferences", retryable=False)
        body = json.dumps(message.payload(), separators=(",", ":")).encode()
        ts = str(int(time.time()))
        headers = {"Content-Type": "application/json", "X-Resmon-Timestamp": ts}
        if target.secret:
            headers["X-Resmon-Signature"] = sign(target.secret, ts, body)
        with http_errors("webhook"):
            check_url(target.url, self._c.allow_networks)
            async with self._session.post(
                target.url, data=body, headers=headers, allow_redirects=False
            ) as resp:
                text = await resp.text() if resp.status >= 400 else ""
                check_response(resp.status, resp.headers, "webhook", text)
