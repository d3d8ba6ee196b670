"""API keys in PostgreSQL (table ``api_keys``): create, list, revoke, look up, mark used."""

from __future__ import annotations

import datetime as dt
import time
import uuid
from collections.abc import Sequence
from typing import Any, Final

import msgspec

from .._exceptions import NotFoundError, storage_errors
from ..apikeys import hash_key, new_key
from .provision import Executor

__all__ = [
    "ApiKey",
    "Created",
    "Toucher",
    "claim_customers",
    "create_key",
    "find_key",
    "key_by_id",
    "list_keys",
    "resolve_tenant",
    "revoke_key",
    "tenant_customers",
    "tenant_of_customer",
    "tenants_of_customers",
    "touch_key",
]

#: ``last_used_at`` is written at most this often per key (and hub process)
TOUCH_EVERY_S: Final = 60.0


class ApiKey(msgspec.Struct, frozen=True, rename="camel"):
    """A stored key as the API and CLI show it (never the key or its hash)."""

    id: str
    tenant_id: str
    name: str
    scopes: tuple[str, ...]
    #: None: every customer of the tenant
    customer_ids: tuple[str, ...] | None
    created_at: dt.datetime
    expires_at: dt.datetime | None
    revoked_at: dt.datetime | None
    last_used_at: dt.datetime | None


class Created(msgspec.Struct, frozen=True, rename="camel"):
    """A new key: the only time ``key`` itself is ever returned."""

    key: str
    api_key: ApiKey


_COLUMNS: Final = """id::text AS id, tenant_id::text AS tenant_id, name, scopes, customer_ids,
created_at, expires_at, revoked_at, last_used_at"""


def _key(row: Any) -> ApiKey:
    ids = row["customer_ids"]
    return ApiKey(
        id=row["id"],
        tenant_id=row["tenant_id"],
        name=row["name"],
        scopes=tuple(row["scopes"]),
        customer_ids=tuple(ids) if ids is not None else None,
        created_at=row["created_at"],
        expires_at=row["expires_at"],
        revoked_at=row["revoked_at"],
        last_used_at=row["last_used_at"],
    )


async def resolve_tenant(db: Executor, tenant: str) -> str:
    """The id of the tenant named or numbered ``tenant``; NotFoundError if there is none."""
    with storage_errors():
        found = await db.fetchval(
            "SELECT id::text FROM tenants WHERE id::text = $1 OR name = $1", tenant
        )
    if found is None:
        raise NotFoundError(f"tenant {tenant!r} not found (give its name or id)")
    return str(found)


async def tenants_of_customers(db: Executor, customer_ids: Sequence[str]) -> dict[str, str]:
    """customer id -> tenant id, for those of ``customer_ids`` that exist."""
    with storage_errors():
        rows = await db.fetch(
            "SELECT id, tenant_id::text AS tenant_id FROM customers WHERE id = ANY($1::text[])",
            list(customer_ids),
        )
    return {r["id"]: r["tenant_id"] for r in rows}


async def tenant_of_customer(db: Executor, customer_id: str) -> str | None:
    """The tenant id of ``customer_id``, or None for an unknown customer."""
    with storage_errors():
        found = await db.fetchval(
            "SELECT tenant_id::text FROM customers WHERE id = $1", customer_id
        )
    return None if found is None else str(found)


async def create_key(
    db: Executor,
    server_secret: str,
    *,
    tenant_id: str,
    name: str,
    scopes: Sequence[str],
    customer_ids: Sequence[str] | None = None,
    expires_at: dt.datetime | None = None,
) -> Created:
    """Store a new key's hash; return the key (shown once) and its record."""
    key = new_key()
    with storage_errors():
        row = await db.fetchrow(
            f"""INSERT INTO api_keys (tenant_id, name, key_hash, scopes, customer_ids, expires_at)
                VALUES ($1::uuid, $2, $3, $4::text[], $5::text[], $6)
                RETURNING {_COLUMNS}""",  # noqa: S608 (constant text; values are parameters)
            tenant_id,
            name,
            hash_key(server_secret, key),
            list(scopes),
            list(customer_ids) if customer_ids else None,
            expires_at,
        )
    return Created(key=key, api_key=_key(row))


async def list_keys(
    db: Executor,
    tenant_id: str | None = None,
    *,
    limit: int | None = None,
    after: tuple[dt.datetime, str] | None = None,
) -> list[ApiKey]:
    """Every key (of ``tenant_id`` when given), oldest first (ties by id); at most
    ``limit``, and only those after ``after`` (created_at, id) for the next page."""
    with storage_errors():
        rows = await db.fetch(
            f"""SELECT {_COLUMNS} FROM api_keys
                WHERE ($1::uuid IS NULL OR tenant_id = $1::uuid)
                  AND ($2::timestamptz IS NULL OR (created_at, id) > ($2, $3::uuid))
                ORDER BY created_at, id LIMIT $4""",  # noqa: S608
            tenant_id,
            after[0] if after is not None else None,
            after[1] if after is not None else None,
            limit,
        )
    return [_key(r) for r in rows]


async def revoke_key(db: Executor, key_id: str, *, tenant_id: str | None = None) -> ApiKey:
    """Revoke ``key_id`` (of ``tenant_id`` when given) now; a revoked key stays revoked.

    NotFoundError for an unknown id, a malformed one, or another tenant's key.
    """
    try:
        uuid.UUID(key_id)
    except ValueError:
        raise NotFoundError(f"API key {key_id!r} not found") from None
    with storage_errors():
        row = await db.fetchrow(
            f"""UPDATE api_keys SET revoked_at = COALESCE(revoked_at, now())
                WHERE id = $1::uuid AND ($2::uuid IS NULL OR tenant_id = $2::uuid)
                RETURNING {_COLUMNS}""",  # noqa: S608
            key_id,
            tenant_id,
        )
    if row is None:
        raise NotFoundError(f"API key {key_id!r} not found")
    return _key(row)


async def find_key(db: Executor, server_secret: str, key: str) -> ApiKey | None:
    """The stored record of a well-formed ``key``, or None if no key has its hash."""
    with storage_errors():
        row = await db.fetchrow(
            f"SELECT {_COLUMNS} FROM api_keys WHERE key_hash = $1",  # noqa: S608
            hash_key(server_secret, key),
        )
    return None if row is None else _key(row)


async def key_by_id(db: Executor, key_id: str) -> ApiKey | None:
    """The stored record of the key with id ``key_id`` (None: no such key)."""
    try:
        uuid.UUID(key_id)
    except ValueError:
        return None
    with storage_errors():
        row = await db.fetchrow(
            f"SELECT {_COLUMNS} FROM api_keys WHERE id = $1::uuid",  # noqa: S608
            key_id,
        )
    return None if row is None else _key(row)


async def tenant_customers(db: Executor, tenant_id: str, *, limit: int = 1000) -> list[str]:
    """The ids of ``tenant_id``'s customers, in order, at most ``limit``."""
    with storage_errors():
        rows = await db.fetch(
            "SELECT id FROM customers WHERE tenant_id = $1::uuid ORDER BY id LIMIT $2",
            tenant_id,
            limit,
        )
    return [r["id"] for r in rows]


class Toucher:
    """Writes ``last_used_at`` at most once per :data:`TOUCH_EVERY_S` per key."""

    def __init__(self, every_s: float = TOUCH_EVERY_S) -> None:
        self._every = every_s
        self._last: dict[str, float] = {}

    def due(self, key_id: str) -> bool:
        now = time.monotonic()
        if now - self._last.get(key_id, -self._every) < self._every:
            return False
        self._last[key_id] = now
        return True


async def touch_key(db: Executor, key_id: str) -> None:
    """Mark ``key_id`` used now (the caller rate-limits this with :class:`Toucher`)."""
    with storage_errors():
        await db.execute("UPDATE api_keys SET last_used_at = now() WHERE id = $1::uuid", key_id)


async def claim_customers(
    db: Executor, customer_ids: Sequence[str], tenant_id: str
) -> dict[str, str]:
    """Create the unknown ones of ``customer_ids`` in ``tenant_id``; every one's tenant id.

    Ingest calls this before publishing, so a customer first seen through a key
    belongs to that key's tenant (the consumer's auto-provisioning keeps an
    existing customer's tenant).
    """
    select = "SELECT id, tenant_id::text AS tenant_id FROM customers WHERE id = ANY($1::text[])"
    with storage_errors():
        # the common case (every customer known) is one read; only new ones are written
        owners = {r["id"]: r["tenant_id"] for r in await db.fetch(select, list(customer_ids))}
        missing = [c for c in customer_ids if c not in owners]
        if missing:
            await db.execute(
                "INSERT INTO customers (id, tenant_id) SELECT unnest($1::text[]), $2::uuid "
                "ON CONFLICT (id) DO NOTHING",
                missing,
                tenant_id,
            )
            owners.update({r["id"]: r["tenant_id"] for r in await db.fetch(select, missing)})
    return owners
