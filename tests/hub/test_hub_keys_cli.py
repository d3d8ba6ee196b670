"""``resmon hub keys create / list / revoke`` against a real database."""

from __future__ import annotations

import anyio
import asyncpg  # type: ignore[import-untyped]
import pytest
from _keys import TEST_SECRET
from click.testing import CliRunner

from hub.apikeys import check_key, hash_key
from hub.cli import hub as hub_cli

pytestmark = pytest.mark.integration


async def _row(dsn: str, key: str) -> asyncpg.Record | None:
    conn = await asyncpg.connect(dsn)
    try:
        return await conn.fetchrow(
            "SELECT id::text AS id, scopes, customer_ids, expires_at, revoked_at FROM api_keys"
            " WHERE key_hash = $1",
            hash_key(TEST_SECRET, key),
        )
    finally:
        await conn.close()


def test_create_list_revoke(pg_dsn: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", pg_dsn)
    monkeypatch.setenv("RESMON_API_KEY_SECRET", TEST_SECRET)
    runner = CliRunner()
    assert runner.invoke(hub_cli, ["migrate"]).exit_code == 0
    # a customer of the default tenant for the restricted key
    anyio.run(_customer, pg_dsn)

    made = runner.invoke(
        hub_cli,
        ["keys", "create", "--tenant", "default", "--scope", "read,ingest", "--name", "portal",
         "--customer", "cust-cli", "--expires-in", "30d"],
    )  # fmt: skip
    assert made.exit_code == 0, made.output
    key = made.stdout.strip()
    check_key(key)
    assert "shown only now" in made.stderr
    row = anyio.run(_row, pg_dsn, key)
    assert row is not None
    assert list(row["scopes"]) == ["read", "ingest"]
    assert list(row["customer_ids"]) == ["cust-cli"]
    assert row["expires_at"] is not None
    assert row["id"] in made.stderr

    listed = runner.invoke(hub_cli, ["keys", "list", "--tenant", "default"])
    assert listed.exit_code == 0
    assert row["id"] in listed.output
    assert "portal" in listed.output
    assert key not in listed.output

    revoked = runner.invoke(hub_cli, ["keys", "revoke", row["id"]])
    assert revoked.exit_code == 0, revoked.output
    again = anyio.run(_row, pg_dsn, key)
    assert again is not None
    assert again["revoked_at"] is not None


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["--tenant", "nobody", "--scope", "read"], "tenant 'nobody' not found"),
        (["--tenant", "default", "--scope", "read,fly"], "unknown fly"),
        (["--tenant", "default", "--scope", "admin", "--customer", "c"], "admin key"),
        (["--tenant", "default", "--scope", "read", "--expires-in", "1y"], "expected a number"),
        (["--tenant", "default", "--scope", "read", "--customer", "ghost"], "customer 'ghost'"),
    ],
)
def test_bad_create_arguments_are_named(
    pg_dsn: str, monkeypatch: pytest.MonkeyPatch, args: list[str], said: str
) -> None:
    monkeypatch.setenv("DATABASE_URL", pg_dsn)
    monkeypatch.setenv("RESMON_API_KEY_SECRET", TEST_SECRET)
    runner = CliRunner()
    assert runner.invoke(hub_cli, ["migrate"]).exit_code == 0
    result = runner.invoke(hub_cli, ["keys", "create", *args])
    assert result.exit_code == 1
    assert said in result.output


def test_create_without_the_server_secret_names_it(
    pg_dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATABASE_URL", pg_dsn)
    monkeypatch.delenv("RESMON_API_KEY_SECRET", raising=False)
    result = CliRunner().invoke(
        hub_cli, ["keys", "create", "--tenant", "default", "--scope", "read"]
    )
    assert result.exit_code == 1
    assert "RESMON_API_KEY_SECRET is not set" in result.output


def test_revoking_an_unknown_key_is_an_error(pg_dsn: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", pg_dsn)
    runner = CliRunner()
    assert runner.invoke(hub_cli, ["migrate"]).exit_code == 0
    result = runner.invoke(hub_cli, ["keys", "revoke", "00000000-0000-0000-0000-000000000009"])
    assert result.exit_code == 1
    assert "not found" in result.output


async def _customer(dsn: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(
            "INSERT INTO customers (id, tenant_id) VALUES ('cust-cli', $1::uuid)",
            "00000000-0000-0000-0000-000000000000",
        )
    finally:
        await conn.close()
