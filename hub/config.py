"""The hub's configuration, read from the environment and validated at load.

The variables are the rows of :data:`HUB_VARS` (``resmon hub run --help``
prints them as a table, defaults from :class:`HubConfig`); the notifier's are
in :mod:`hub.notify.settings`.

URLs keep their passwords in memory only: :func:`redact` is what gets logged.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from decimal import Decimal
from typing import TYPE_CHECKING, Final
from urllib.parse import urlsplit, urlunsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import msgspec

from ._exceptions import ConfigError
from .apikeys import check_server_secret
from .checks.thresholds import DEFAULT_CRITICAL_PERCENT, DEFAULT_HYSTERESIS, DEFAULT_WARNING_PERCENT
from .costs import MoneyPolicy, PricingError
from .env import Var, decimal, help_table, integer, lower, number, read
from .notify.settings import NotifyConfig

if TYPE_CHECKING:
    from .checks.settings import CheckSettings
    from .costs.recommend import RecommendSettings
    from .ratelimits import RateLimits

__all__ = ["ENV_HELP", "HUB_VARS", "HubConfig", "check_database_url", "redact"]


def redact(url: str) -> str:
    """``url`` with any password replaced by ``***`` (safe to log)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable url>"
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)[1]
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{netloc}"))


def check_database_url(url: str) -> str:
    """``url`` if it is a PostgreSQL URL, else ConfigError naming DATABASE_URL; its host:port."""
    if not url.startswith(("postgresql://", "postgres://")):
        raise ConfigError(f"DATABASE_URL={redact(url)!r}: expected postgresql://user@host:port/db")
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        raise ConfigError(f"DATABASE_URL={redact(url)!r}: the port is not a number") from None
    return f"{parts.hostname or 'localhost'}:{port or 5432}"


def _host_port(value: str, variable: str, default_port: int | None = None) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep:
        if default_port is None:
            raise ConfigError(f"{variable}={value!r}: expected host:port")
        host, port = value, str(default_port)
    host = host.strip("[]")
    if not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ConfigError(f"{variable}={value!r}: expected host:port with a port 0-65535")
    return host, int(port)


class HubConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Everything the hub needs to run. Build it with :meth:`from_env` or directly in tests."""

    database_url: str
    redis_url: str
    kafka_bootstrap_servers: str
    #: the server secret API keys are hashed with (HMAC-SHA-256); never logged or shown
    api_key_secret: str
    http_host: str = "127.0.0.1"
    http_port: int = 8080
    consumer_group: str = "resmon-hub"
    usage_topic: str = "resource.usage.raw"
    alerts_topic: str = "resource.alerts"
    usage_partitions: int = 8
    warning_percent: Decimal = DEFAULT_WARNING_PERCENT
    critical_percent: Decimal = DEFAULT_CRITICAL_PERCENT
    hysteresis_points: Decimal = DEFAULT_HYSTERESIS
    billing_tz: str = "UTC"
    #: ISO 4217 code bills are in, and how each line is rounded to its minor unit
    currency: str = "USD"
    cost_rounding: str = "half_even"
    #: smallest monthly saving, in the currency, an optimization recommendation needs
    recommend_min_savings: Decimal = Decimal(10)
    #: worker tasks of the actor runtime; each owns the actors whose key hashes to it
    actor_shards: int = 8
    #: envelopes a shard's mailbox holds before the consumer waits
    mailbox_size: int = 256
    #: actors untouched this long are retired (state is in PostgreSQL)
    actor_idle_seconds: float = 900.0
    #: most records taken from Kafka per batch (one PostgreSQL transaction)
    batch_max_records: int = 2000
    batch_timeout_ms: int = 200
    #: keep fetching up to this long to fill a batch (fewer, larger transactions)
    batch_linger_ms: int = 25
    #: longest a fetch waits at the broker for data (alert latency floor when idle)
    fetch_max_wait_ms: int = 50
    #: Kafka group session timeout. A new member is assigned partitions about
    #: half of this after joining, and a dead hub's partitions move after it.
    #: Apache Kafka refuses values below its group.min.session.timeout.ms (6 s).
    session_timeout_ms: int = 10_000
    cache_ttl_seconds: int = 3600
    anomaly_window_hours: float = 24.0
    anomaly_z: float = 3.0
    anomaly_min_points: int = 10
    forecast_confidence: float = 0.8
    retention_days: int = 90
    #: seconds between scheduled forecast refreshes (hub.storage.forecasts)
    forecast_refresh_seconds: float = 3600.0
    #: actor restarts allowed per ``restart_window_seconds`` before the hub exits non-zero
    restart_budget: int = 20
    restart_window_seconds: float = 60.0
    #: Redis key prefix (``{prefix}:usage:{customer}``)
    redis_prefix: str = "resmon"
    #: notification channels (hub.notify.settings); None = no notifier
    notify: NotifyConfig | None = None
    #: Kafka client id and CloudEvents source of published alerts and of the events the
    #: ingest API publishes; keep it the same on every hub of a group: with the id it is
    #: the identity a retry of an ingested event is recognised by
    source: str = "urn:resmon:hub"
    #: one log line per REST request (credentials in the query hidden)
    access_log: bool = False
    #: seconds between heartbeats on ``GET /api/stream``
    stream_heartbeat_seconds: float = 15.0
    #: events each tenant's live-stream backlog keeps for ``Last-Event-ID`` resumes (about)
    stream_backlog: int = 1000
    #: seconds a stream token (``POST /api/stream/token``) is valid
    stream_token_seconds: int = 60
    #: request rate each key may make per scope (``limits`` notation; "off": unlimited)
    rate_limit_read: str = "12000/minute"
    rate_limit_write: str = "3000/minute"
    rate_limit_ingest: str = "600000/minute"
    rate_limit_admin: str = "600/minute"
    #: per-key overrides: ``<key id>=<rate>`` separated by spaces or commas
    rate_limit_keys: str = ""

    def __post_init__(self) -> None:
        check_database_url(self.database_url)
        self.rate_limits  # noqa: B018  # refuses a rate it cannot read, naming the variable
        if not 0.05 <= self.stream_heartbeat_seconds <= 300:
            raise ConfigError(
                f"RESMON_STREAM_HEARTBEAT_S={self.stream_heartbeat_seconds}: expected seconds, "
                "0.05-300"
            )
        if not 10 <= self.stream_backlog <= 1_000_000:
            raise ConfigError(
                f"RESMON_STREAM_BACKLOG={self.stream_backlog}: expected events, 10-1000000"
            )
        if not 5 <= self.stream_token_seconds <= 3600:
            raise ConfigError(
                f"RESMON_STREAM_TOKEN_S={self.stream_token_seconds}: expected seconds, 5-3600"
            )
        try:
            check_server_secret(self.api_key_secret)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        if not self.redis_url.startswith(("redis://", "rediss://", "unix://")):
            raise ConfigError(
                f"REDIS_URL={redact(self.redis_url)!r}: expected redis://host:port/db"
            )
        for server in self.kafka_bootstrap_servers.split(","):
            _host_port(server.strip(), "KAFKA_BOOTSTRAP_SERVERS", 9092)
        if not Decimal(0) < self.warning_percent <= self.critical_percent <= Decimal(1000):
            raise ConfigError(
                "RESMON_WARNING_PERCENT / RESMON_CRITICAL_PERCENT: need "
                f"0 < warning ({self.warning_percent}) <= critical ({self.critical_percent})"
            )
        try:
            ZoneInfo(self.billing_tz)
        except (ZoneInfoNotFoundError, ValueError):
            raise ConfigError(f"RESMON_BILLING_TZ={self.billing_tz!r}: unknown time zone") from None
        self.money  # noqa: B018  # refuses an unknown currency or rounding, naming the variable
        if not self.recommend_min_savings.is_finite() or self.recommend_min_savings < 0:
            raise ConfigError(
                f"RESMON_RECOMMEND_MIN_SAVINGS={self.recommend_min_savings}: "
                "expected an amount >= 0"
            )
        if not (self.anomaly_window_hours > 0 and self.anomaly_z > 0 and self.retention_days > 0):
            raise ConfigError(
                "RESMON_ANOMALY_WINDOW_H, RESMON_ANOMALY_Z and RESMON_RETENTION_DAYS must be > 0"
            )
        if not 0 <= self.forecast_confidence <= 1:
            raise ConfigError("RESMON_FORECAST_CONFIDENCE must be between 0 and 1")
        if not 60 <= self.forecast_refresh_seconds <= 86_400:
            raise ConfigError(
                f"RESMON_FORECAST_REFRESH_S={self.forecast_refresh_seconds}: expected seconds "
                "between forecast refreshes, 60-86400"
            )
        if not 1000 <= self.session_timeout_ms <= 600_000:
            raise ConfigError(
                f"RESMON_HUB_SESSION_MS={self.session_timeout_ms}: expected milliseconds, "
                "1000-600000"
            )
        if self.actor_shards < 1 or self.mailbox_size < 1 or self.usage_partitions < 1:
            raise ConfigError("actor_shards, mailbox_size and usage_partitions must be >= 1")

    @property
    def money(self) -> MoneyPolicy:
        """The currency and rounding of bills (``RESMON_CURRENCY``, ``RESMON_COST_ROUNDING``)."""
        try:
            return MoneyPolicy.from_env(
                {"RESMON_CURRENCY": self.currency, "RESMON_COST_ROUNDING": self.cost_rounding}
            )
        except PricingError as exc:
            raise ConfigError(
                f"{exc.where}={getattr(self, _MONEY_FIELDS[exc.where])!r}: {exc.problem}"
            ) from None

    @property
    def rate_limits(self) -> RateLimits:
        """The per-scope and per-key request rates (``RESMON_RATE_LIMIT_*``)."""
        from .ratelimits import RateLimits

        return RateLimits.parse(
            {
                "read": ("RESMON_RATE_LIMIT_READ", self.rate_limit_read),
                "write": ("RESMON_RATE_LIMIT_WRITE", self.rate_limit_write),
                "ingest": ("RESMON_RATE_LIMIT_INGEST", self.rate_limit_ingest),
                "admin": ("RESMON_RATE_LIMIT_ADMIN", self.rate_limit_admin),
            },
            ("RESMON_RATE_LIMIT_KEYS", self.rate_limit_keys),
        )

    @property
    def recommend_settings(self) -> RecommendSettings:
        """The recommendation engine's tunables (``RESMON_RECOMMEND_MIN_SAVINGS``)."""
        from .costs.recommend import RecommendSettings

        return RecommendSettings(min_savings=self.recommend_min_savings)

    def check_settings(self) -> CheckSettings:
        """The actors' check tunables."""
        from .checks.anomaly import AnomalySettings
        from .checks.forecast import ForecastSettings
        from .checks.settings import CheckSettings
        from .checks.thresholds import percent_to_bp

        return CheckSettings(
            gap_bp=percent_to_bp(self.hysteresis_points),
            anomaly=AnomalySettings(
                window_ms=int(self.anomaly_window_hours * 3_600_000),
                threshold=self.anomaly_z,
                min_points=self.anomaly_min_points,
            ),
            forecast=ForecastSettings(min_confidence=self.forecast_confidence),
        )

    def __repr__(self) -> str:
        return (
            f"HubConfig(database_url={redact(self.database_url)!r}, "
            f"redis_url={redact(self.redis_url)!r}, "
            f"kafka_bootstrap_servers={self.kafka_bootstrap_servers!r}, "
            f"http={self.http_host}:{self.http_port}, group={self.consumer_group!r})"
        )

    __str__ = __repr__

    @property
    def database_address(self) -> str:
        return check_database_url(self.database_url)

    @property
    def redis_address(self) -> str:
        parts = urlsplit(self.redis_url)
        return f"{parts.hostname or 'localhost'}:{parts.port or 6379}"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: object) -> HubConfig:
        """Read :data:`HUB_VARS` (and the notifier's) from ``env`` (default: ``os.environ``)."""
        env = os.environ if env is None else env
        values = read(HUB_VARS, env)
        values["notify"] = NotifyConfig.from_env(env)
        values.update(overrides)
        try:
            return cls(**values)
        except TypeError as exc:
            raise ConfigError(str(exc)) from None


_MONEY_FIELDS: Final = {"RESMON_CURRENCY": "currency", "RESMON_COST_ROUNDING": "cost_rounding"}


def _upper(variable: str, value: str) -> str:
    return value.upper()


def _flag(variable: str, value: str) -> bool:
    got = {"1": True, "true": True, "yes": True, "on": True}.get(value.lower())
    if got is None and value.lower() not in ("0", "false", "no", "off"):
        raise ConfigError(f"{variable}={value!r}: expected 1 or 0 (true/false, yes/no, on/off)")
    return bool(got)


def _http(variable: str, value: str) -> tuple[str, int]:
    return _host_port(value, variable)


#: the hub's environment variables, in the order ``--help`` lists them
HUB_VARS: Final = (
    Var("DATABASE_URL", "database_url", "postgresql://user:pass@host:port/db",
        "postgresql://hub@db:5432/resmon", required=True),
    Var("REDIS_URL", "redis_url", "redis://host:port/db", "redis://cache:6379/0", required=True),
    Var("KAFKA_BOOTSTRAP_SERVERS", "kafka_bootstrap_servers", "host:port[,host:port...]",
        "k3:9093", required=True),
    Var("RESMON_API_KEY_SECRET", "api_key_secret",
        "server secret API keys are hashed with, >= 32 characters",
        "0123456789abcdef0123456789abcdef", required=True),
    Var("RESMON_HUB_HTTP", ("http_host", "http_port"), "host:port the REST API listens on",
        "0.0.0.0:9000", _http, shown="127.0.0.1:8080"),
    Var("RESMON_HUB_GROUP", "consumer_group", "Kafka consumer group", "hub-b"),
    Var("RESMON_HUB_USAGE_TOPIC", "usage_topic", "topic of usage readings", "usage.v2"),
    Var("RESMON_HUB_ALERTS_TOPIC", "alerts_topic", "topic alerts are published to", "alerts.v2"),
    Var("RESMON_WARNING_PERCENT", "warning_percent", "default warning threshold, % of the limit",
        "70.5", decimal),
    Var("RESMON_CRITICAL_PERCENT", "critical_percent",
        "default critical threshold, % of the limit", "90", decimal),
    Var("RESMON_HYSTERESIS_POINTS", "hysteresis_points",
        "resolve only below warning% minus this", "2.5", decimal),
    Var("RESMON_BILLING_TZ", "billing_tz", "time zone billing months start in", "Europe/Berlin"),
    Var("RESMON_CURRENCY", "currency", "ISO 4217 currency of cost breakdowns", "EUR", _upper),
    Var("RESMON_COST_ROUNDING", "cost_rounding",
        "rounding of each bill line: half_even, half_up, half_down, up, down, ceiling, floor",
        "half_up", lower),
    Var("RESMON_RECOMMEND_MIN_SAVINGS", "recommend_min_savings",
        "smallest monthly saving a cost recommendation needs", "25.50", decimal),
    Var("RESMON_HUB_SESSION_MS", "session_timeout_ms",
        "Kafka group session timeout, milliseconds", "30000", integer),
    Var("RESMON_ANOMALY_WINDOW_H", "anomaly_window_hours", "anomaly history window (decay), hours",
        "12", number),
    Var("RESMON_ANOMALY_Z", "anomaly_z", "|z-score| above which a reading is anomalous", "4",
        number),
    Var("RESMON_ANOMALY_MIN_POINTS", "anomaly_min_points",
        "points needed before any anomaly verdict", "20", integer),
    Var("RESMON_FORECAST_CONFIDENCE", "forecast_confidence",
        "confidence (0-1) a forecast alert needs", "0.9", number),
    Var("RESMON_FORECAST_REFRESH_S", "forecast_refresh_seconds",
        "seconds between stored-forecast refreshes (60-86400)", "1800", number),
    Var("RESMON_RETENTION_DAYS", "retention_days", "raw rows + dedup ids kept (months dropped)",
        "120", integer),
    Var("RESMON_RESTART_BUDGET", "restart_budget", "actor restarts per minute before exiting",
        "40", integer),
    Var("RESMON_REDIS_PREFIX", "redis_prefix", "prefix of the hub's Redis keys", "resmon-b"),
    Var("RESMON_HUB_ACCESS_LOG", "access_log", "1: log every REST request (no credentials)",
        "1", _flag, shown="0"),
    Var("RESMON_STREAM_HEARTBEAT_S", "stream_heartbeat_seconds",
        "seconds between heartbeats on /api/stream", "5", number),
    Var("RESMON_STREAM_BACKLOG", "stream_backlog",
        "events per tenant kept for Last-Event-ID resumes", "5000", integer),
    Var("RESMON_STREAM_TOKEN_S", "stream_token_seconds",
        "seconds a /api/stream token is valid", "30", integer),
    Var("RESMON_RATE_LIMIT_READ", "rate_limit_read",
        "requests per key with the read scope, e.g. 100/second; off: none", "600/minute"),
    Var("RESMON_RATE_LIMIT_WRITE", "rate_limit_write",
        "requests per key with the write scope", "100/minute"),
    Var("RESMON_RATE_LIMIT_INGEST", "rate_limit_ingest",
        "requests per key to the ingest route", "5000/second"),
    Var("RESMON_RATE_LIMIT_ADMIN", "rate_limit_admin",
        "requests per key with the admin scope", "10/minute"),
    Var("RESMON_RATE_LIMIT_KEYS", "rate_limit_keys",
        "per-key rates for every scope: <key id>=<rate>[,...]",
        "8d5e3c1a-0b7e-4c55-9a51-4f0e7c2a9b10=50/second", shown="(none)"),
)  # fmt: skip

#: the table ``resmon hub run --help`` prints
ENV_HELP: Final = help_table(HUB_VARS, HubConfig)
