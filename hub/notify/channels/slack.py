"""Slack incoming webhook: blocks in an attachment coloured by severity."""

from __future__ import annotations

import aiohttp

from .._exceptions import DeliveryError
from ..message import Message
from ..settings import NotifyConfig
from ..ssrf import check_url
from .base import Target, check_response, http_errors

__all__ = ["SlackChannel"]


class SlackChannel:
    name = "slack"

    def __init__(self, config: NotifyConfig, session: aiohttp.ClientSession) -> None:
        self._c = config
        self._session = session  # its connector resolves through the SSRF guard

    async def send(self, message: Message, target: Target) -> None:
        url = target.url or self._c.slack_webhook_url
        if not url:
            raise DeliveryError(
                "slack: no webhook URL (preferences or SLACK_WEBHOOK_URL)", retryable=False
            )
        with http_errors("slack: webhook"):
            check_url(url, self._c.allow_networks)
            async with self._session.post(url, json=message.slack(), allow_redirects=False) as resp:
                body = await resp.text() if resp.status >= 400 else ""
                check_response(resp.status, resp.headers, "slack: webhook", body)
