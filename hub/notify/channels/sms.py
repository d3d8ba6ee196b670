"""SMS through the Twilio REST API (``POST /2010-04-01/Accounts/{sid}/Messages.json``)."""

from __future__ import annotations

import base64

import aiohttp

from .._exceptions import DeliveryError
from ..message import Message
from ..settings import NotifyConfig
from .base import Target, check_response, http_errors

__all__ = ["TwilioChannel"]


class TwilioChannel:
    """One request per recipient; the notification log keys SMS rows by phone number."""

    name = "sms"

    def __init__(self, config: NotifyConfig, session: aiohttp.ClientSession) -> None:
        self._c = config
        self._session = session

    async def send(self, message: Message, target: Target) -> None:
        c = self._c
        if not (c.twilio_account_sid and c.twilio_auth_token and c.twilio_from):
            raise DeliveryError("sms: TWILIO_* is not configured", retryable=False)
        base = c.twilio_base_url.rstrip("/")
        url = f"{base}/2010-04-01/Accounts/{c.twilio_account_sid}/Messages.json"
        token = base64.b64encode(f"{c.twilio_account_sid}:{c.twilio_auth_token}".encode())
        headers = {"Authorization": f"Basic {token.decode()}"}
        for phone in target.recipients:
            with http_errors("sms: Twilio"):
                async with self._session.post(
                    url,
                    data={"To": phone, "From": c.twilio_from, "Body": message.sms()},
                    headers=headers,
                    allow_redirects=False,
                ) as resp:
                    body = await resp.text() if resp.status >= 400 else ""
                    check_response(resp.status, resp.headers, "sms: Twilio", body)
