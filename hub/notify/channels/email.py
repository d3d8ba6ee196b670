"""Email over SMTP (aiosmtplib): STARTTLS or implicit TLS, optional AUTH, text + HTML."""

from __future__ import annotations

import ssl
from email.message import EmailMessage
from email.utils import formatdate, make_msgid

import aiosmtplib

from .._exceptions import DeliveryError
from ..message import Message
from ..settings import NotifyConfig
from .base import Target

__all__ = ["EmailChannel"]


class EmailChannel:
    name = "email"

    def __init__(self, config: NotifyConfig, *, tls_context: ssl.SSLContext | None = None):
        self._c = config
        self._tls = tls_context

    def build(self, message: Message, target: Target) -> EmailMessage:
        msg = EmailMessage()
        msg["From"] = self._c.smtp_from or self._c.smtp_username or "resmon@localhost"
        msg["To"] = ", ".join(target.recipients)
        msg["Subject"] = message.subject()
        msg["Date"] = formatdate(localtime=False)
        msg["Message-ID"] = make_msgid(domain="resmon")
        msg["X-Resmon-Severity"] = message.severity
        msg.set_content(message.text())
        msg.add_alternative(message.html(), subtype="html")
        return msg

    async def send(self, message: Message, target: Target) -> None:
        c = self._c
        if not c.smtp_host:
            raise DeliveryError("email: SMTP_HOST is not set", retryable=False)
        if not target.recipients:
            raise DeliveryError("email: no recipients", retryable=False)
        msg = self.build(message, target)
        try:
            await aiosmtplib.send(
                msg,
                hostname=c.smtp_host,
                port=c.smtp_port,
                username=c.smtp_username,
                password=c.smtp_password,
                use_tls=c.smtp_tls == "tls",
                start_tls=c.smtp_tls == "starttls",
                tls_context=self._tls,
                timeout=c.smtp_timeout,
            )
        except aiosmtplib.SMTPRecipientsRefused as exc:
            raise DeliveryError(
                f"email: recipients refused ({len(exc.recipients)})", retryable=False
            ) from None
        except aiosmtplib.SMTPAuthenticationError as exc:
            raise DeliveryError(
                f"email: SMTP authentication failed ({exc.code})", retryable=False
            ) from None
        except aiosmtplib.SMTPResponseException as exc:
            raise DeliveryError(
                f"email: SMTP {exc.code} {exc.message[:200]}",
                retryable=exc.code < 500,
                status=exc.code,
            ) from None
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            raise DeliveryError(f"email: {type(exc).__name__}: {exc}"[:300]) from None
