"""HubConfig: loaded from the environment, validated at load, never leaks passwords."""

from __future__ import annotations

import re
from decimal import Decimal

import pytest

from hub import ConfigError, HubConfig
from hub.config import redact

ENV = {
    "DATABASE_URL": "postgresql://hub:s3cret@db.example:5433/resmon",
    "REDIS_URL": "redis://cache:6379/1",
    "KAFKA_BOOTSTRAP_SERVERS": "k1:9092,k2:9092",
    "RESMON_API_KEY_SECRET": "key-s3cret-0123456789abcdef0123456789",
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


@pytest.mark.parametrize(("value", "said"), [("", "is not set"), ("too-short", "has 9 characters")])
def test_a_missing_or_short_api_key_secret_is_named(value: str, said: str) -> None:
    # from the environment an empty value is "not set"; built directly, its length is named
    with pytest.raises(ConfigError, match=r"RESMON_API_KEY_SECRET (is not set|has 9 char)"):
        HubConfig.from_env({**ENV, "RESMON_API_KEY_SECRET": value})
    with pytest.raises(ConfigError, match=f"RESMON_API_KEY_SECRET {said}"):
        HubConfig.from_env(ENV, api_key_secret=value)


@pytest.mark.parametrize(
    ("var", "value"),
    [
        ("DATABASE_URL", "mysql://x"),
        ("RESMON_HUB_HTTP", "localhost"),
        ("RESMON_HUB_HTTP", "localhost:http"),
        ("RESMON_WARNING_PERCENT", "lots"),
        ("RESMON_BILLING_TZ", "Mars/Olympus"),
        ("KAFKA_BOOTSTRAP_SERVERS", "k1:notaport"),
        ("RESMON_CURRENCY", "ZZZ"),
        ("RESMON_CURRENCY", "XAU"),
        ("RESMON_COST_ROUNDING", "sideways"),
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
    assert config.api_key_secret == ENV["RESMON_API_KEY_SECRET"]
    assert redact(ENV["DATABASE_URL"]) == "postgresql://hub:***@db.example:5433/resmon"


def _help_rows(text: str) -> dict[str, str]:
    """variable -> default column of the tables in ``resmon hub run --help``."""
    rows: dict[str, str] = {}
    for line in text.splitlines():
        m = re.match(r"\s*([A-Z][A-Z0-9_]+)\s{2,}(.*?)(?:\s{2,}(\S.*))?$", line)
        if m and m.group(1) != "variable":
            rows[m.group(1)] = (m.group(3) or "").strip()
    return rows


def test_the_help_lists_exactly_the_variables_the_parser_reads_with_their_real_defaults() -> None:
    from click.testing import CliRunner

    from hub.cli import hub
    from hub.config import HUB_VARS
    from hub.notify.settings import NOTIFY_VARS, NotifyConfig

    result = CliRunner().invoke(hub, ["run", "--help"], terminal_width=200)
    assert result.exit_code == 0, result.output
    rows = _help_rows(result.output)
    assert set(rows) == {v.name for v in (*HUB_VARS, *NOTIFY_VARS)}
    hub_defaults = HubConfig.from_env(ENV)
    notify_defaults = NotifyConfig.from_env({})
    for var, config in [(v, hub_defaults) for v in HUB_VARS] + [
        (v, notify_defaults) for v in NOTIFY_VARS
    ]:
        field = var.fields[0] if isinstance(var.fields, tuple) else var.fields
        if var.required or var.shown is not None:
            continue  # shown in words: "(required)", "(email off)"
        default = getattr(config, field)
        shown = "" if default is None else str(default)
        if isinstance(default, float) and default.is_integer():
            shown = str(int(default))
        assert rows[var.name] == shown, var.name


def test_every_variable_in_the_help_sets_its_field() -> None:
    from hub.config import HUB_VARS
    from hub.notify.settings import NOTIFY_VARS

    base = HubConfig.from_env(ENV)
    for var in (*HUB_VARS, *NOTIFY_VARS):
        env = {**ENV, var.name: var.example}
        config = HubConfig.from_env(env)
        target, before = (config.notify, base.notify) if var in NOTIFY_VARS else (config, base)
        fields = var.fields if isinstance(var.fields, tuple) else (var.fields,)
        assert any(getattr(target, f) != getattr(before, f) for f in fields), var.name


def test_the_migrate_command_refuses_a_url_that_is_not_postgresql() -> None:
    from click.testing import CliRunner

    from hub.cli import hub

    result = CliRunner().invoke(hub, ["migrate"], env={"DATABASE_URL": "mysql://x/y"})
    assert result.exit_code != 0
    assert "DATABASE_URL" in result.output
    assert "expected postgresql://" in result.output


def test_currency_and_rounding_reach_the_cost_code() -> None:
    config = HubConfig.from_env({**ENV, "RESMON_CURRENCY": "jpy", "RESMON_COST_ROUNDING": "UP"})
    assert (config.money.currency, config.money.rounding, config.money.minor_units) == (
        "JPY",
        "up",
        0,
    )
    default = HubConfig.from_env(ENV).money
    assert (default.currency, default.rounding) == ("USD", "half_even")


def test_forecast_refresh_interval_is_read_and_bounded() -> None:
    assert HubConfig.from_env(ENV).forecast_refresh_seconds == 3600
    assert (
        HubConfig.from_env({**ENV, "RESMON_FORECAST_REFRESH_S": "900"}).forecast_refresh_seconds
        == 900
    )
    for bad in ("10", "100000"):
        with pytest.raises(ConfigError, match=rf"RESMON_FORECAST_REFRESH_S={bad}.*60-86400"):
            HubConfig.from_env({**ENV, "RESMON_FORECAST_REFRESH_S": bad})
    with pytest.raises(ConfigError, match="RESMON_FORECAST_REFRESH_S"):
        HubConfig.from_env({**ENV, "RESMON_FORECAST_REFRESH_S": "hourly"})


def test_the_recommendation_minimum_reaches_the_engine() -> None:
    assert HubConfig.from_env(ENV).recommend_settings.min_savings == Decimal(10)
    config = HubConfig.from_env({**ENV, "RESMON_RECOMMEND_MIN_SAVINGS": "2.5"})
    assert config.recommend_settings.min_savings == Decimal("2.5")
    with pytest.raises(ConfigError, match="RESMON_RECOMMEND_MIN_SAVINGS"):
        HubConfig.from_env({**ENV, "RESMON_RECOMMEND_MIN_SAVINGS": "-1"})
    with pytest.raises(ConfigError, match="RESMON_RECOMMEND_MIN_SAVINGS"):
        HubConfig.from_env({**ENV, "RESMON_RECOMMEND_MIN_SAVINGS": "ten"})
