"""Operator settings of the notifier, from the plan's environment variables.

==============================  =============================================  ==============
variable                        meaning                                        default
==============================  =============================================  ==============
SMTP_HOST / SMTP_PORT           mail relay                                     (email off) / 587
SMTP_USERNAME / SMTP_PASSWORD   SMTP AUTH (optional)
SMTP_FROM                       sender address                                 SMTP_USERNAME
SMTP_TLS                        starttls, tls (implicit, port 465) or none     starttls
TWILIO_ACCOUNT_SID / _AUTH_TOKEN  Twilio credentials                           (sms off)
TWILIO_FROM                     sending phone number (E.164)
TWILIO_BASE_URL                 Twilio REST API base                           https://api.twilio.com
SLACK_WEBHOOK_URL               Slack webhook used when a customer names none
RESMON_DASHBOARD_URL            links in messages                              http://localhost:8080
RESMON_NOTIFY_ALLOW_NETWORKS    CIDRs webhooks may reach despite the SSRF guard (none)
RESMON_NOTIFY_GROUP_SECONDS     wait to group one customer's alerts            5
RESMON_NOTIFY_DEADLINE_SECONDS  give up (dead-letter) after                    3600
==============================  =============================================  ==============

Secrets (SMTP password, Twilio token, webhook URLs) never appear in ``repr``.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Mapping
from typing import Final

import msgspec

from .._exceptions import ConfigError
from .ssrf import Network, mask_url, parse_networks

__all__ = ["ENV_HELP", "NotifyConfig"]

ENV_HELP: Final = __doc__.split("\n\n", 2)[1] if __doc__ else ""
_TLS: Final = frozenset({"starttls", "tls", "none"})


class NotifyConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """How the notifier reaches SMTP, Twilio and webhooks, and its timing."""

    smtp_host: str | None = None
    smtp_port: int = 587
    smtp_username: str | None = None
    smtp_password: str | None = None
    smtp_from: str | None = None
    smtp_tls: str = "starttls"
    smtp_timeout: float = 30.0
    twilio_account_sid: str | None = None
    twilio_auth_token: str | None = None
    twilio_from: str | None = None
    twilio_base_url: str = "https://api.twilio.com"
    slack_webhook_url: str | None = None
    dashboard_url: str = "http://localhost:8080"
    allow_networks: tuple[Network, ...] = ()
    #: a new notification waits this long so other alerts of the customer join it
    group_seconds: float = 5.0
    #: after this, a notification that never went out is dead-lettered
    deadline_seconds: float = 3600.0
    retry_base_seconds: float = 2.0
    retry_max_seconds: float = 300.0
    #: how long a claimed notification is ours before another worker may take it over
    lease_seconds: float = 60.0
    poll_seconds: float = 0.5
    #: how often unacknowledged alerts are scanned for due reminders
    repeat_check_seconds: float = 15.0
    http_timeout: float = 15.0
    batch_size: int = 100
    #: name of this worker in the log (claimed_by): host and pid for people, plus a random
    #: part, since containers on one host may all run as pid 1 under the same name
    worker_id: str = msgspec.field(
        default_factory=lambda: f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
    )

    def __post_init__(self) -> None:
        if self.smtp_tls not in _TLS:
            raise ConfigError(f"SMTP_TLS={self.smtp_tls!r}: expected one of {sorted(_TLS)}")
        if not 0 < self.smtp_port <= 65535:
            raise ConfigError(f"SMTP_PORT={self.smtp_port}: expected 1-65535")
        if self.group_seconds < 0 or self.deadline_seconds <= 0 or self.lease_seconds <= 0:
            raise ConfigError("notify timings must be positive")

    def __repr__(self) -> str:
        return (
            f"NotifyConfig(smtp={self.smtp_host}:{self.smtp_port} tls={self.smtp_tls} "
            f"auth={'yes' if self.smtp_password else 'no'}, "
            f"twilio={'on' if self.twilio_auth_token else 'off'} base={self.twilio_base_url}, "
            f"slack_default={mask_url(self.slack_webhook_url)})"
        )

    __str__ = __repr__

    @property
    def email_enabled(self) -> bool:
        return bool(self.smtp_host)

    @property
    def sms_enabled(self) -> bool:
        return bool(self.twilio_account_sid and self.twilio_auth_token and self.twilio_from)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: object) -> NotifyConfig:
        env = os.environ if env is None else env
        values: dict[str, object] = {}
        for var, field in (
            ("SMTP_HOST", "smtp_host"),
            ("SMTP_USERNAME", "smtp_username"),
            ("SMTP_PASSWORD", "smtp_password"),
            ("SMTP_FROM", "smtp_from"),
            ("TWILIO_ACCOUNT_SID", "twilio_account_sid"),
            ("TWILIO_AUTH_TOKEN", "twilio_auth_token"),
            ("TWILIO_FROM", "twilio_from"),
            ("TWILIO_BASE_URL", "twilio_base_url"),
            ("SLACK_WEBHOOK_URL", "slack_webhook_url"),
            ("RESMON_DASHBOARD_URL", "dashboard_url"),
        ):
            if value := env.get(var, "").strip():
                values[field] = value
        if value := env.get("SMTP_TLS", "").strip().lower():
            values["smtp_tls"] = value
        for var, field in (
            ("SMTP_PORT", "smtp_port"),
            ("RESMON_NOTIFY_GROUP_SECONDS", "group_seconds"),
            ("RESMON_NOTIFY_DEADLINE_SECONDS", "deadline_seconds"),
        ):
            if value := env.get(var, "").strip():
                try:
                    values[field] = int(value) if field == "smtp_port" else float(value)
                except ValueError:
                    raise ConfigError(f"{var}={value!r}: expected a number") from None
        if value := env.get("RESMON_NOTIFY_ALLOW_NETWORKS", "").strip():
            try:
                values["allow_networks"] = parse_networks(value)
            except ValueError as exc:
                raise ConfigError(f"RESMON_NOTIFY_ALLOW_NETWORKS: {exc}") from None
        values.update(overrides)
        try:
            return cls(**values)  # type: ignore[arg-type]
        except TypeError as exc:
            raise ConfigError(str(exc)) from None
