"""HubConfig: loaded from the environment, validated at load, never leaks passwords."""

from __future__ import annotations

from decimal import Decimal

import pytest

from hub import ConfigError, HubConfig
from hub.config import redact

ENV = {
    "DATABASE_URL": "postgresql://hub:s3cret@db.example:5433/resmon",
    "REDIS_URL": "redis://cache:6379/1",
    "KAFKA_BOOTSTRAP_SERVERS": "k1:9092,k2:9092",
}


def test_reads_required_variables_and_defaults() -> None:
    config = HubConfig.from_env(ENV)
    assert config.http_host == "127.0.0.1"
    assert config.http_port == 8080
    assert config.consumer_group == "resmon-hub"
    assert config.warning_percent == Decimal(80)
    assert config.critical_percent == Decimal(95)
    assert config.billing_tz == "UTC"
    assert config.database_address == "db.example:5433"


def test_missing_variable_is_named() -> None:
    env = dict(ENV)
    del env["REDIS_URL"]
    with pytest.raises(ConfigError, match="REDIS_URL is not set"):
        HubConfig.from_env(env)


@pytest.mark.parametrize(
    ("var", "value"),
    [
        ("DATABASE_URL", "mysql://x"),
        ("RESMON_HUB_HTTP", "localhost"),
        ("RESMON_HUB_HTTP", "localhost:http"),
        ("RESMON_WARNING_PERCENT", "lots"),
        ("RESMON_BILLING_TZ", "Mars/Olympus"),
        ("KAFKA_BOOTSTRAP_SERVERS", "k1:notaport"),
    ],
)
def test_malformed_variable_is_named(var: str, value: str) -> None:
    with pytest.raises(ConfigError, match=var):
        HubConfig.from_env({**ENV, var: value})


def test_http_and_thresholds_from_env() -> None:
    config = HubConfig.from_env(
        {
            **ENV,
            "RESMON_HUB_HTTP": "0.0.0.0:9000",
            "RESMON_WARNING_PERCENT": "70.5",
            "RESMON_BILLING_TZ": "Europe/Berlin",
        }
    )
    assert (config.http_host, config.http_port) == ("0.0.0.0", 9000)
    assert config.warning_percent == Decimal("70.5")


def test_password_never_appears_in_repr() -> None:
    config = HubConfig.from_env(ENV)
    assert "s3cret" not in repr(config)
    assert "s3cret" not in str(config)
    assert redact(ENV["DATABASE_URL"]) == "postgresql://hub:***@db.example:5433/resmon"
