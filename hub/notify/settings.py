"""Operator settings of the notifier, from environment variables (SMTP_*, TWILIO_*, ...).

The variables are the rows of :data:`NOTIFY_VARS`; ``resmon hub run --help``
prints them with their defaults from :class:`NotifyConfig`.

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
from ..env import Var, help_table, integer, lower, number, read
from .ssrf import Network, mask_url, parse_networks

__all__ = ["ENV_HELP", "NOTIFY_VARS", "NotifyConfig"]
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
        """Read :data:`NOTIFY_VARS` from ``env`` (default: ``os.environ``)."""
        env = os.environ if env is None else env
        values = read(NOTIFY_VARS, env)
        values.update(overrides)
        try:
            return cls(**values)
        except TypeError as exc:
            raise ConfigError(str(exc)) from None


def _networks(variable: str, value: str) -> tuple[Network, ...]:
    try:
        return parse_networks(value)
    except ValueError as exc:
        raise ConfigError(f"{variable}: {exc}") from None


#: the notifier's environment variables, in the order ``--help`` lists them
NOTIFY_VARS: Final = (
    Var("SMTP_HOST", "smtp_host", "mail relay", "mail.example", shown="(email off)"),
    Var("SMTP_PORT", "smtp_port", "mail relay port", "465", integer),
    Var("SMTP_USERNAME", "smtp_username", "SMTP AUTH user (optional)", "alerts"),
    Var("SMTP_PASSWORD", "smtp_password", "SMTP AUTH password (optional)", "s3cret"),
    Var("SMTP_FROM", "smtp_from", "sender address", "alerts@example.net", shown="SMTP_USERNAME"),
    Var("SMTP_TLS", "smtp_tls", "starttls, tls (implicit, port 465) or none", "tls", lower),
    Var("TWILIO_ACCOUNT_SID", "twilio_account_sid", "Twilio account", "AC123",
        shown="(sms off)"),
    Var("TWILIO_AUTH_TOKEN", "twilio_auth_token", "Twilio token", "tok"),
    Var("TWILIO_FROM", "twilio_from", "sending phone number (E.164)", "+15550100"),
    Var("TWILIO_BASE_URL", "twilio_base_url", "Twilio REST API base",
        "http://127.0.0.1:9999"),
    Var("SLACK_WEBHOOK_URL", "slack_webhook_url", "Slack webhook used when a customer names none",
        "https://hooks.slack.com/services/T/B/x"),
    Var("RESMON_DASHBOARD_URL", "dashboard_url", "links in messages", "https://noc.example"),
    Var("RESMON_NOTIFY_ALLOW_NETWORKS", "allow_networks",
        "CIDRs webhooks may reach despite the SSRF guard", "10.0.0.0/8", _networks,
        shown="(none)"),
    Var("RESMON_NOTIFY_GROUP_SECONDS", "group_seconds", "wait to group one customer's alerts",
        "10", number),
    Var("RESMON_NOTIFY_DEADLINE_SECONDS", "deadline_seconds", "give up (dead-letter) after",
        "600", number),
)  # fmt: skip

#: the table ``resmon hub run --help`` prints under "Notifications"
ENV_HELP: Final = help_table(NOTIFY_VARS, NotifyConfig)
