"""Configuration of one tenant over PostgreSQL: catalog, customers, their resources, plans.

Every function takes the tenant whose rows it may touch; a row of another tenant
is not found, exactly like a missing one. Rows come back as dicts of the columns
the REST API shows (:mod:`hub.api.config`).

A change of what an actor holds (a resource's limit, thresholds, catalog entry,
or a catalog entry's unit or price) is announced on :data:`~.provision.CHANGES_CHANNEL`
in the same transaction (:func:`~.provision.notify_changed`, the path an applied
recommendation takes too), so every running hub reloads the resource before its
next reading.

Deleting a row something still refers to raises :class:`InUseError` naming what
refers to it.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping, Sequence
from typing import Any, Final

import asyncpg  # type: ignore[import-untyped]

from .._exceptions import HubError, storage_errors
from .provision import Executor, notify_changed

__all__ = [
    "ConflictError",
    "InUseError",
    "Row",
    "catalog_entry",
    "catalog_page",
    "cost_model",
    "cost_model_page",
    "customer",
    "customer_page",
    "delete_catalog_entry",
    "delete_cost_model",
    "delete_customer",
    "delete_resource",
    "insert_catalog_entry",
    "insert_cost_model",
    "insert_customer",
    "insert_resource",
    "resource",
    "resource_page",
    "update_catalog_entry",
    "update_cost_model",
    "update_customer",
    "update_resource",
]

Row = dict[str, Any]


class ConflictError(HubError):
    """The row cannot be created as asked (its name or id is taken); ``where`` names the field."""

    def __init__(self, message: str, where: str) -> None:
        self.where = where
        super().__init__(message)


class InUseError(HubError):
    """A row cannot be deleted: ``referenced_by`` (a table) still refers to it."""

    def __init__(self, what: str, referenced_by: str) -> None:
        self.referenced_by = referenced_by
        super().__init__(
            f"{what} is still referenced by {referenced_by}; remove or change those first"
        )


def _uuid(text: str) -> str | None:
    try:
        return str(uuid.UUID(text))
    except ValueError:
        return None


_REFERENCED: Final = re.compile(r'referenced from table "([^"]+)"')


def _referrer(exc: asyncpg.ForeignKeyViolationError) -> str:
    found = _REFERENCED.search(getattr(exc, "detail", None) or "")
    table = found.group(1) if found else (getattr(exc, "table_name", None) or "another table")
    return re.sub(r"_(p\d{6}|default)$", "", table)  # a partition: name its table


async def _delete(conn: asyncpg.Connection, what: str, sql: str, *args: Any) -> None:
    try:
        async with conn.transaction():
            await conn.execute(sql, *args)
    except asyncpg.ForeignKeyViolationError as exc:
        raise InUseError(what, _referrer(exc)) from None


def _assignments(values: Mapping[str, Any], allowed: frozenset[str], first: int) -> str:
    """``col = $n, ...`` for ``values`` (column names from ``allowed`` only)."""
    unknown = set(values) - allowed
    if unknown:  # a programming error: the API passes column names it knows
        raise ValueError(f"not updatable: {sorted(unknown)}")
    return ", ".join(f"{col} = ${i}" for i, col in enumerate(values, start=first))


def _page_args(after: Sequence[str] | None, width: int) -> list[str | None]:
    return list(after) if after is not None else [None] * width


# -- resource catalog ---------------------------------------------------------------------

_CATALOG: Final = """
SELECT id::text AS id, resource_type, resource_name, unit, cost_per_unit, is_billable,
       created_at, updated_at
FROM resource_catalogs
"""
_CATALOG_COLUMNS: Final = frozenset({"resource_name", "unit", "cost_per_unit", "is_billable"})


async def catalog_page(
    db: Executor,
    tenant_id: str,
    *,
    resource_type: str | None,
    after: Sequence[str] | None,
    limit: int,
) -> list[Row]:
    """Up to ``limit`` catalog entries by (type, name), after the (type, name) ``after``."""
    with storage_errors():
        rows = await db.fetch(
            _CATALOG + "WHERE tenant_id = $1::uuid AND ($2::text IS NULL OR resource_type = $2) "
            "AND ($3::text IS NULL OR (resource_type, resource_name) > ($3, $4)) "
            "ORDER BY resource_type, resource_name LIMIT $5",
            tenant_id,
            resource_type,
            *_page_args(after, 2),
            limit,
        )
    return [dict(r) for r in rows]


async def catalog_entry(
    conn: Executor, tenant_id: str, entry_id: str, *, lock: bool = False
) -> Row | None:
    """The tenant's catalog entry ``entry_id``; ``lock``: FOR UPDATE (in a transaction)."""
    if (valid := _uuid(entry_id)) is None:
        return None
    with storage_errors():
        row = await conn.fetchrow(
            _CATALOG + "WHERE tenant_id = $1::uuid AND id = $2::uuid" + (" FOR UPDATE" * lock),
            tenant_id,
            valid,
        )
    return dict(row) if row is not None else None


def _catalog_name_taken(name: object) -> ConflictError:
    return ConflictError(f"a catalog entry named {name!r} exists already", "$.resourceName")


async def insert_catalog_entry(conn: asyncpg.Connection, tenant_id: str, values: Row) -> Row:
    """Create a catalog entry (ConflictError: its name is taken in the tenant)."""
    try:
        async with conn.transaction():
            entry_id = await conn.fetchval(
                "INSERT INTO resource_catalogs (tenant_id, resource_type, resource_name, unit, "
                "cost_per_unit, is_billable) VALUES ($1::uuid, $2, $3, $4, $5, $6) "
                "RETURNING id::text",
                tenant_id,
                values["resource_type"],
                values["resource_name"],
                values["unit"],
                values["cost_per_unit"],
                values["is_billable"],
            )
    except asyncpg.UniqueViolationError:
        raise _catalog_name_taken(values["resource_name"]) from None
    row = await catalog_entry(conn, tenant_id, entry_id)
    assert row is not None  # just inserted, same transaction
    return row


async def update_catalog_entry(
    conn: asyncpg.Connection, tenant_id: str, entry_id: str, values: Row
) -> Row:
    """Change a catalog entry; the resources of it reload (their unit or price may change)."""
    if values:
        sets = _assignments(values, _CATALOG_COLUMNS, 2)
        try:
            async with conn.transaction():
                await conn.execute(
                    f"UPDATE resource_catalogs SET {sets}, updated_at = now() WHERE id = $1::uuid",  # noqa: S608 (column names from a fixed set)
                    entry_id,
                    *values.values(),
                )
        except asyncpg.UniqueViolationError:
            raise _catalog_name_taken(values.get("resource_name")) from None
        keys = await conn.fetch(
            "SELECT resource_key FROM customer_resources WHERE resource_catalog_id = $1::uuid",
            entry_id,
        )
        await notify_changed(conn, [k["resource_key"] for k in keys])
    row = await catalog_entry(conn, tenant_id, entry_id)
    assert row is not None  # locked by the caller
    return row


async def delete_catalog_entry(conn: asyncpg.Connection, entry_id: str) -> None:
    await _delete(
        conn,
        f"catalog entry {entry_id}",
        "DELETE FROM resource_catalogs WHERE id = $1::uuid",
        entry_id,
    )


# -- customers ----------------------------------------------------------------------------

_CUSTOMER: Final = "SELECT id, name, created_at FROM customers "


async def customer_page(
    db: Executor,
    tenant_id: str,
    *,
    after: Sequence[str] | None,
    limit: int,
) -> list[Row]:
    """Up to ``limit`` of the tenant's customers by id, after the id ``after``."""
    with storage_errors():
        rows = await db.fetch(
            _CUSTOMER + "WHERE tenant_id = $1::uuid AND ($2::text IS NULL OR id > $2) "
            "ORDER BY id LIMIT $3",
            tenant_id,
            *_page_args(after, 1),
            limit,
        )
    return [dict(r) for r in rows]


async def customer(
    conn: Executor, tenant_id: str, customer_id: str, *, lock: bool = False
) -> Row | None:
    with storage_errors():
        row = await conn.fetchrow(
            _CUSTOMER + "WHERE tenant_id = $1::uuid AND id = $2" + (" FOR UPDATE" * lock),
            tenant_id,
            customer_id,
        )
    return dict(row) if row is not None else None


async def insert_customer(
    conn: asyncpg.Connection, tenant_id: str, customer_id: str, name: str | None
) -> Row:
    """Create a customer of the tenant (ConflictError: the id is in use, in any tenant)."""
    created = await conn.fetchval(
        "INSERT INTO customers (id, tenant_id, name) VALUES ($1, $2::uuid, $3) "
        "ON CONFLICT (id) DO NOTHING RETURNING id",
        customer_id,
        tenant_id,
        name,
    )
    if created is None:
        raise ConflictError(f"customer id {customer_id!r} is already in use", "$.id")
    row = await customer(conn, tenant_id, customer_id)
    assert row is not None
    return row


async def update_customer(
    conn: asyncpg.Connection, tenant_id: str, customer_id: str, values: Row
) -> Row:
    if values:
        sets = _assignments(values, frozenset({"name"}), 2)
        await conn.execute(
            f"UPDATE customers SET {sets} WHERE id = $1",  # noqa: S608 (column names from a fixed set)
            customer_id,
            *values.values(),
        )
    row = await customer(conn, tenant_id, customer_id)
    assert row is not None
    return row


async def delete_customer(conn: asyncpg.Connection, customer_id: str) -> None:
    """Delete a customer without resources; every hub forgets which tenant it was of
    (the notice carries the customer id), so the id may later be another tenant's."""
    await _delete(
        conn, f"customer {customer_id!r}", "DELETE FROM customers WHERE id = $1", customer_id
    )
    await notify_changed(conn, [customer_id])


# -- customer resources -------------------------------------------------------------------

_RESOURCE: Final = """
SELECT cr.resource_key, cr.customer_id, rc.resource_type, cr.name,
       cr.resource_catalog_id::text AS catalog_id, rc.resource_name, cr.kind,
       rc.unit AS catalog_unit, cr.limit_value, cr.warning_threshold, cr.critical_threshold,
       cr.cost_model_id::text AS cost_model_id, cr.status, cr.auto_provisioned, cr.created_at
FROM customer_resources cr JOIN resource_catalogs rc ON rc.id = cr.resource_catalog_id
"""
_RESOURCE_COLUMNS: Final = frozenset(
    {
        "resource_catalog_id",
        "limit_value",
        "warning_threshold",
        "critical_threshold",
        "cost_model_id",
        "status",
    }
)


async def resource_page(
    db: Executor, customer_id: str, *, after: Sequence[str] | None, limit: int
) -> list[Row]:
    """Up to ``limit`` of the customer's resources by key, after the key ``after``."""
    with storage_errors():
        rows = await db.fetch(
            _RESOURCE + "WHERE cr.customer_id = $1 AND ($2::text IS NULL OR cr.resource_key > $2) "
            "ORDER BY cr.resource_key LIMIT $3",
            customer_id,
            *_page_args(after, 1),
            limit,
        )
    return [dict(r) for r in rows]


async def resource(conn: Executor, customer_id: str, key: str, *, lock: bool = False) -> Row | None:
    """The customer's resource ``key`` (the caller checked the customer is the tenant's)."""
    with storage_errors():
        row = await conn.fetchrow(
            _RESOURCE
            + "WHERE cr.customer_id = $1 AND cr.resource_key = $2"
            + (" FOR UPDATE OF cr" * lock),
            customer_id,
            key,
        )
    return dict(row) if row is not None else None


async def insert_resource(conn: asyncpg.Connection, values: Row) -> Row:
    """Create a customer resource (ConflictError: the key exists); running hubs are told."""
    key = values["resource_key"]
    created = await conn.fetchval(
        """INSERT INTO customer_resources (customer_id, resource_catalog_id, resource_key, name,
               kind, limit_value, warning_threshold, critical_threshold, cost_model_id, status)
           VALUES ($1, $2::uuid, $3, $4, $5, $6, $7, $8, $9::uuid, $10)
           ON CONFLICT (resource_key) DO NOTHING RETURNING resource_key""",
        values["customer_id"],
        values["resource_catalog_id"],
        key,
        values["name"],
        values["kind"],
        values["limit_value"],
        values["warning_threshold"],
        values["critical_threshold"],
        values["cost_model_id"],
        values["status"],
    )
    if created is None:
        raise ConflictError(f"resource {key!r} exists already", "$.name")
    # an earlier reading may have left an unknown-resource actor or cached usage behind
    await notify_changed(conn, [key])
    row = await resource(conn, values["customer_id"], key)
    assert row is not None
    return row


async def update_resource(conn: asyncpg.Connection, customer_id: str, key: str, values: Row) -> Row:
    """Change a resource's configuration; running hubs reload it before its next reading.

    A resource set by hand is no longer marked auto-provisioned.
    """
    if values:
        sets = _assignments(values, _RESOURCE_COLUMNS, 2)
        await conn.execute(
            f"UPDATE customer_resources SET {sets}, auto_provisioned = false, "  # noqa: S608 (fixed column names)
            "updated_at = now() WHERE resource_key = $1",
            key,
            *values.values(),
        )
        await notify_changed(conn, [key])
    row = await resource(conn, customer_id, key)
    assert row is not None
    return row


async def delete_resource(conn: asyncpg.Connection, key: str) -> None:
    """Delete a resource without history (InUseError naming the table holding some)."""
    await _delete(
        conn, f"resource {key!r}", "DELETE FROM customer_resources WHERE resource_key = $1", key
    )
    await notify_changed(conn, [key])


# -- cost models --------------------------------------------------------------------------

_COST_MODEL: Final = """
SELECT id::text AS id, model_name, billing_period, base_cost, overage_rate, is_active,
       pricing::text AS pricing, resource_catalog_id::text AS catalog_id, limit_value,
       created_at
FROM cost_models
"""
_COST_MODEL_COLUMNS: Final = frozenset(
    {
        "model_name",
        "billing_period",
        "base_cost",
        "overage_rate",
        "is_active",
        "pricing",
        "resource_catalog_id",
        "limit_value",
    }
)
_CASTS: Final = {"pricing": "::jsonb", "resource_catalog_id": "::uuid"}


async def cost_model_page(
    db: Executor, tenant_id: str, *, after: Sequence[str] | None, limit: int
) -> list[Row]:
    """Up to ``limit`` of the tenant's plans by (name, id), after the (name, id) ``after``."""
    with storage_errors():
        rows = await db.fetch(
            _COST_MODEL + "WHERE tenant_id = $1::uuid "
            "AND ($2::text IS NULL OR (model_name, id::text) > ($2, $3)) "
            "ORDER BY model_name, id::text LIMIT $4",
            tenant_id,
            *_page_args(after, 2),
            limit,
        )
    return [dict(r) for r in rows]


async def cost_model(
    conn: Executor, tenant_id: str, model_id: str, *, lock: bool = False
) -> Row | None:
    if (valid := _uuid(model_id)) is None:
        return None
    with storage_errors():
        row = await conn.fetchrow(
            _COST_MODEL + "WHERE tenant_id = $1::uuid AND id = $2::uuid" + (" FOR UPDATE" * lock),
            tenant_id,
            valid,
        )
    return dict(row) if row is not None else None


async def insert_cost_model(conn: asyncpg.Connection, tenant_id: str, values: Row) -> Row:
    model_id = await conn.fetchval(
        """INSERT INTO cost_models (tenant_id, model_name, billing_period, base_cost,
               overage_rate, is_active, pricing, resource_catalog_id, limit_value)
           VALUES ($1::uuid, $2, $3, $4, $5, $6, $7::jsonb, $8::uuid, $9) RETURNING id::text""",
        tenant_id,
        values["model_name"],
        values["billing_period"],
        values["base_cost"],
        values["overage_rate"],
        values["is_active"],
        values["pricing"],
        values["resource_catalog_id"],
        values["limit_value"],
    )
    row = await cost_model(conn, tenant_id, model_id)
    assert row is not None
    return row


async def update_cost_model(
    conn: asyncpg.Connection, tenant_id: str, model_id: str, values: Row
) -> Row:
    """Change a plan. What it bills changes from the next bill; resources keep their limits."""
    if values:
        _assignments(values, _COST_MODEL_COLUMNS, 2)  # refuses unknown columns
        sets = ", ".join(
            f"{col} = ${i}{_CASTS.get(col, '')}" for i, col in enumerate(values, start=2)
        )
        await conn.execute(
            f"UPDATE cost_models SET {sets} WHERE id = $1::uuid",  # noqa: S608 (column names from a fixed set)
            model_id,
            *values.values(),
        )
    row = await cost_model(conn, tenant_id, model_id)
    assert row is not None
    return row


async def delete_cost_model(conn: asyncpg.Connection, model_id: str) -> None:
    await _delete(
        conn, f"cost model {model_id}", "DELETE FROM cost_models WHERE id = $1::uuid", model_id
    )
