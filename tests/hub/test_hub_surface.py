"""The hub's public surface and command line."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

import hub
from hub.cli import hub as hub_cli


def test_public_names_are_exported() -> None:
    assert set(hub.__all__) == {
        "BrokerError",
        "CacheError",
        "ConfigError",
        "FencedError",
        "HubConfig",
        "HubError",
        "MigrationError",
        "NotFoundError",
        "RunningHub",
        "StorageError",
        "UnreachableError",
        "migrate",
        "provision_resource",
        "run_hub",
    }
    for name in hub.__all__:
        assert getattr(hub, name) is not None


def test_run_help_explains_the_environment() -> None:
    result = CliRunner().invoke(hub_cli, ["run", "--help"])
    assert result.exit_code == 0
    for var in ("DATABASE_URL", "REDIS_URL", "KAFKA_BOOTSTRAP_SERVERS", "RESMON_HUB_HTTP"):
        assert var in result.output


def test_run_without_configuration_names_the_missing_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for var in ("DATABASE_URL", "REDIS_URL", "KAFKA_BOOTSTRAP_SERVERS"):
        monkeypatch.delenv(var, raising=False)
    result = CliRunner().invoke(hub_cli, ["run"])
    assert result.exit_code == 1
    assert "DATABASE_URL is not set" in result.output


@pytest.mark.integration
def test_unreachable_database_is_one_clear_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://hub:s3cret@127.0.0.1:1/resmon")
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:1/0")
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:1")
    monkeypatch.setenv("RESMON_API_KEY_SECRET", "x" * 32)
    result = CliRunner().invoke(hub_cli, ["run"])
    assert result.exit_code == 1
    assert "cannot reach PostgreSQL at 127.0.0.1:1 (set by DATABASE_URL)" in result.output
    assert "s3cret" not in result.output


@pytest.mark.integration
def test_migrate_command_is_idempotent(pg_dsn: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", pg_dsn)
    first = CliRunner().invoke(hub_cli, ["migrate"])
    second = CliRunner().invoke(hub_cli, ["migrate"])
    assert first.exit_code == 0, first.output
    assert "applied migrations: 0001, 0002" in first.output
    assert second.output.strip() == "database is up to date"
