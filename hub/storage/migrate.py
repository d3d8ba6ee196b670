"""Versioned SQL migrations, applied by ``resmon hub migrate`` and at hub start.

Why a small runner of our own rather than a library: the hub talks to
PostgreSQL through asyncpg only. yoyo-migrations would bring a second,
synchronous driver (psycopg) into the hub extra plus its own locking and
tracking tables for what is ~100 lines here; Alembic needs SQLAlchemy. The
rules this runner keeps are the ones that matter:

- files ``migrations/NNNN_name.sql`` are applied in version order, each in its
  own transaction, and recorded with their SHA-256 in ``schema_migrations``;
- running it again applies nothing (idempotent);
- concurrent runs (two hubs starting at once) serialize on a PostgreSQL
  advisory lock, so a file is applied once;
- if an applied file's checksum changed, it refuses to run (fix: add a new
  migration, never edit an applied one).
"""

from __future__ import annotations

import hashlib
import re
from importlib import resources
from typing import Final

import asyncpg  # type: ignore[import-untyped]
import msgspec
import structlog

from .._exceptions import MigrationError, storage_errors

__all__ = ["Migration", "applied_migrations", "load_migrations", "migrate"]

_log = structlog.get_logger(component="hub.storage.migrate")

#: pg_advisory_lock key: "resmon-migrate" folded to a bigint
_LOCK_KEY: Final = int.from_bytes(
    hashlib.sha256(b"resmon-migrate").digest()[:8], "big", signed=True
)
_NAME: Final = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


class Migration(msgspec.Struct, frozen=True):
    version: int
    name: str
    sql: str
    checksum: str


def load_migrations() -> list[Migration]:
    """The migration files shipped in ``hub/storage/migrations``, in version order."""
    found: dict[int, Migration] = {}
    for entry in resources.files("hub.storage").joinpath("migrations").iterdir():
        match = _NAME.match(entry.name)
        if match is None:
            continue
        version = int(match.group(1))
        sql = entry.read_text(encoding="utf-8")
        if version in found:
            raise MigrationError(f"two migrations with version {version:04d}")
        found[version] = Migration(
            version=version,
            name=match.group(2),
            sql=sql,
            checksum=hashlib.sha256(sql.encode()).hexdigest(),
        )
    return [found[v] for v in sorted(found)]


async def applied_migrations(conn: asyncpg.Connection) -> dict[int, str]:
    """version -> checksum of what this database already has."""
    exists = await conn.fetchval("SELECT to_regclass('schema_migrations') IS NOT NULL")
    if not exists:
        return {}
    rows = await conn.fetch("SELECT version, checksum FROM schema_migrations")
    return {int(r["version"]): str(r["checksum"]) for r in rows}


async def migrate(dsn: str, *, address: str = "PostgreSQL", up_to: int | None = None) -> list[int]:
    """Apply the pending migrations to the database at ``dsn``; return their versions.

    ``up_to`` stops after that version (a database as an older release left it,
    for testing an upgrade); by default every migration is applied.
    """
    with storage_errors(address):
        conn: asyncpg.Connection = await asyncpg.connect(dsn, timeout=10)
        try:
            return await _migrate(conn, up_to)
        finally:
            await conn.close()


async def _migrate(conn: asyncpg.Connection, up_to: int | None) -> list[int]:
    migrations = load_migrations()
    await conn.execute("SELECT pg_advisory_lock($1)", _LOCK_KEY)
    try:
        await conn.execute(
            """CREATE TABLE IF NOT EXISTS schema_migrations (
                   version     INTEGER PRIMARY KEY,
                   name        TEXT NOT NULL,
                   checksum    TEXT NOT NULL,
                   applied_at  TIMESTAMPTZ NOT NULL DEFAULT now())"""
        )
        applied = await applied_migrations(conn)
        known = {m.version for m in migrations}
        for version in sorted(set(applied) - known):
            _log.warning("migration_unknown_to_this_version", version=version)
        for m in migrations:
            if m.version in applied and applied[m.version] != m.checksum:
                raise MigrationError(
                    f"migration {m.version:04d}_{m.name}.sql changed after it was applied "
                    f"(checksum {applied[m.version][:12]} in the database, {m.checksum[:12]} "
                    "on disk); add a new migration instead of editing an applied one"
                )
        done: list[int] = []
        for m in migrations:
            if m.version in applied:
                continue
            if up_to is not None and m.version > up_to:
                break
            try:
                async with conn.transaction():
                    await conn.execute(m.sql)
                    await conn.execute(
                        "INSERT INTO schema_migrations (version, name, checksum) "
                        "VALUES ($1, $2, $3)",
                        m.version,
                        m.name,
                        m.checksum,
                    )
            except asyncpg.PostgresError as exc:
                raise MigrationError(
                    f"migration {m.version:04d}_{m.name}.sql failed: {exc}"
                ) from exc
            _log.info("migration_applied", version=m.version, name=m.name)
            done.append(m.version)
        return done
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", _LOCK_KEY)
