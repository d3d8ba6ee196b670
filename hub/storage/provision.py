"""Customers and their resources: provisioning with limits, and loading one for an actor."""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import AsyncIterator, Sequence
from decimal import Decimal
from typing import Any, Final, TypeAlias

import asyncpg  # type: ignore[import-untyped]
import msgspec

from protocol import resource_key as make_key

from .._exceptions import NotFoundError, TenantMismatchError, storage_errors
from ..checks.thresholds import DEFAULT_CRITICAL_PERCENT, DEFAULT_WARNING_PERCENT

__all__ = [
    "CHANGES_CHANNEL",
    "DEFAULT_TENANT",
    "ResourceRow",
    "auto_provision",
    "batch_owners",
    "connection",
    "existing_keys",
    "kind_of",
    "load_resource",
    "load_resources",
    "notify_changed",
    "provision_resource",
    "set_plan",
    "unprovisionable_types",
]

DEFAULT_TENANT: Final = "00000000-0000-0000-0000-000000000000"
#: NOTIFY channel carrying the key of a resource whose limit/thresholds changed
CHANGES_CHANNEL: Final = "resmon_resource_changed"
_LEVEL_TYPES: Final = frozenset({"storage", "memory"})

Executor: TypeAlias = Any  # asyncpg.Pool | asyncpg.Connection (asyncpg ships no types)


@contextlib.asynccontextmanager
async def connection(conn_or_pool: Executor) -> AsyncIterator[asyncpg.Connection]:
    """One connection: the one given, or one held from the pool for the block."""
    if isinstance(conn_or_pool, asyncpg.Pool):
        async with conn_or_pool.acquire() as conn:
            yield conn
    else:
        yield conn_or_pool


def kind_of(resource_type: str) -> str:
    """``level`` for a gauge (storage, memory: the reading is the level), else ``delta``."""
    return "level" if resource_type in _LEVEL_TYPES else "delta"


class ResourceRow(msgspec.Struct, frozen=True):
    """What an actor needs of a customer resource, as stored."""

    id: str
    resource_key: str
    customer_id: str
    resource_type: str
    unit: str
    kind: str
    current_usage: int
    period_start: dt.date | None
    limit_value: int | None
    warning_threshold: Decimal
    critical_threshold: Decimal
    #: 0 none, 1 warning, 2 critical: the open threshold episode, if any
    alert_level: int
    #: the actor's anomaly/forecast statistics (see hub.checks.anomaly)
    stat_weight: float = 0.0
    stat_mean: float = 0.0
    stat_m2: float = 0.0
    stat_last_ms: int = 0
    stat_points: int = 0
    stat_first_ms: int = 0
    stat_anchor: int = 0
    anomaly_open: bool = False
    forecast_open: bool = False
    cost_per_unit: Decimal | None = None
    #: version of the stored total (see :func:`hub.storage.batch.write_batch`)
    total_version: int = 0
    #: the customer's tenant
    tenant_id: str = DEFAULT_TENANT


_SELECT: Final = """
SELECT cr.id::text AS id, cr.resource_key, cr.customer_id, rc.resource_type, rc.unit, cr.kind,
       cr.current_usage, cr.period_start, cr.limit_value, cr.warning_threshold,
       cr.critical_threshold,
       COALESCE((SELECT max(CASE a.alert_type WHEN 'THRESHOLD_CRITICAL' THEN 2
                                              WHEN 'THRESHOLD_WARNING' THEN 1 ELSE 0 END)
                 FROM alerts a
                 WHERE a.customer_resource_id = cr.id AND a.status <> 'RESOLVED'), 0)
           AS alert_level,
       cr.stat_weight, cr.stat_mean, cr.stat_m2, cr.stat_last_ms, cr.stat_points,
       cr.stat_first_ms, cr.stat_anchor,
       EXISTS (SELECT 1 FROM alerts a WHERE a.customer_resource_id = cr.id
               AND a.status <> 'RESOLVED' AND a.alert_type = 'ANOMALY_DETECTED') AS anomaly_open,
       EXISTS (SELECT 1 FROM alerts a WHERE a.customer_resource_id = cr.id
               AND a.status <> 'RESOLVED' AND a.alert_type = 'FORECAST_LIMIT'
               AND a.forecast_period_start IS NULL) AS forecast_open,
       rc.cost_per_unit, cr.total_version, cu.tenant_id::text AS tenant_id
FROM customer_resources cr JOIN resource_catalogs rc ON rc.id = cr.resource_catalog_id
     JOIN customers cu ON cu.id = cr.customer_id
WHERE cr.resource_key = $1
"""
_SELECT_MANY: Final = _SELECT.replace("cr.resource_key = $1", "cr.resource_key = ANY($1::text[])")


async def load_resources(conn_or_pool: Executor, keys: Sequence[str]) -> dict[str, ResourceRow]:
    """The stored resources among ``keys``, by key, in one query (absent keys are left out)."""
    with storage_errors():
        async with connection(conn_or_pool) as conn:
            rows = await conn.fetch(_SELECT_MANY, list(keys))
    return {r["resource_key"]: ResourceRow(**dict(r)) for r in rows}


async def existing_keys(conn_or_pool: Executor, keys: Sequence[str]) -> set[str]:
    """Those of ``keys`` that name a stored resource (an index lookup, nothing loaded)."""
    with storage_errors():
        async with connection(conn_or_pool) as conn:
            rows = await conn.fetch(
                "SELECT resource_key FROM customer_resources WHERE resource_key = ANY($1::text[])",
                list(keys),
            )
    return {r["resource_key"] for r in rows}


async def load_resource(conn_or_pool: Executor, key: str) -> ResourceRow | None:
    """The stored resource ``key``, or None."""
    with storage_errors():
        async with connection(conn_or_pool) as conn:
            row = await conn.fetchrow(_SELECT, key)
    if row is None:
        return None
    return ResourceRow(**dict(row))


_INSERT_CUSTOMER: Final = """
INSERT INTO customers (id, tenant_id) VALUES ($1, $2::uuid) ON CONFLICT (id) DO NOTHING
"""

_CATALOG: Final = """
SELECT id FROM resource_catalogs
WHERE tenant_id = $1::uuid AND resource_type = $2 AND ($3::text IS NULL OR resource_name = $3)
ORDER BY created_at, resource_name LIMIT 1
"""


async def _catalog_id(
    conn: asyncpg.Connection, resource_type: str, catalog_name: str | None
) -> object:
    catalog_id = await conn.fetchval(_CATALOG, DEFAULT_TENANT, resource_type, catalog_name)
    if catalog_id is None:
        what = f"named {catalog_name!r} " if catalog_name else ""
        raise NotFoundError(f"no catalog entry {what}for resource type {resource_type!r}")
    return catalog_id


async def unprovisionable_types(conn_or_pool: Executor, resource_types: set[str]) -> set[str]:
    """Those of ``resource_types`` that :func:`auto_provision` could not create a resource of.

    An unknown resource is created from the default tenant's catalog entry for
    its type; a type without one cannot be provisioned.
    """
    with storage_errors():
        async with connection(conn_or_pool) as conn:
            rows = await conn.fetch(
                "SELECT DISTINCT resource_type FROM resource_catalogs"
                " WHERE tenant_id = $1::uuid AND resource_type = ANY($2::text[])",
                DEFAULT_TENANT,
                sorted(resource_types),
            )
    return resource_types - {r["resource_type"] for r in rows}


_OWNERS: Final = """
SELECT 'c' AS kind, id AS ref, tenant_id::text AS tenant_id FROM customers
WHERE id = ANY($1::text[])
UNION ALL
SELECT 't', ref, t.id::text FROM unnest($2::text[]) AS ref
JOIN tenants t ON t.id::text = ref OR t.name = ref
"""


async def batch_owners(
    conn_or_pool: Executor, customer_ids: Sequence[str], tenants: Sequence[str]
) -> tuple[dict[str, str], dict[str, str]]:
    """In one round trip: the tenant id of each known customer of ``customer_ids``, and
    the id of each known tenant of ``tenants`` (named by name or id).

    Unknown customers and tenants are left out.
    """
    owners: dict[str, str] = {}
    known: dict[str, str] = {}
    with storage_errors():
        async with connection(conn_or_pool) as conn:
            for row in await conn.fetch(_OWNERS, list(customer_ids), list(tenants)):
                (owners if row["kind"] == "c" else known)[row["ref"]] = row["tenant_id"]
    return owners, known


async def auto_provision(
    conn_or_pool: Executor,
    customer_id: str,
    resource_type: str,
    key: str,
    kind: str,
    *,
    warning: Decimal = DEFAULT_WARNING_PERCENT,
    critical: Decimal = DEFAULT_CRITICAL_PERCENT,
    tenant_id: str = DEFAULT_TENANT,
) -> bool:
    """Create an unknown customer (in ``tenant_id``) and resource with no limit.

    True if the resource was created now. :class:`TenantMismatchError` (nothing
    created) if the customer exists in another tenant.
    """
    name = key.split("/", 2)[2] if key.count("/") >= 2 else None
    with storage_errors():
        async with connection(conn_or_pool) as conn, conn.transaction():
            catalog_id = await _catalog_id(conn, resource_type, None)
            await conn.execute(_INSERT_CUSTOMER, customer_id, tenant_id)
            owner = await conn.fetchval(
                "SELECT tenant_id::text FROM customers WHERE id = $1", customer_id
            )
            if owner != tenant_id:
                raise TenantMismatchError(
                    f"customer {customer_id!r} belongs to tenant {owner}, not to {tenant_id}"
                )
            status = await conn.execute(
                """INSERT INTO customer_resources (customer_id, resource_catalog_id,
                       resource_key, name, kind, auto_provisioned, warning_threshold,
                       critical_threshold)
                   VALUES ($1, $2, $3, $4, $5, true, $6, $7)
                   ON CONFLICT (resource_key) DO NOTHING""",
                customer_id,
                catalog_id,
                key,
                name,
                kind,
                warning,
                critical,
            )
    return bool(status.endswith(" 1"))


async def notify_changed(conn: asyncpg.Connection, keys: Sequence[str]) -> None:
    """Tell every running hub that these resources' configuration changed.

    ``keys`` are resource keys, or customer ids (a deleted customer: hubs forget
    which tenant it belonged to).

    ``NOTIFY resmon_resource_changed`` with each key, delivered when the caller's
    transaction commits (nothing if it rolls back): each hub retires the live
    actor and drops the customer's cached usage, so the next reading is checked
    against the stored limit and thresholds. Every change of what an actor holds
    goes through here (provisioning, a REST configuration change, an applied
    recommendation).
    """
    if keys:
        await conn.execute(
            "SELECT pg_notify($1, k) FROM unnest($2::text[]) AS k", CHANGES_CHANNEL, list(keys)
        )


async def provision_resource(
    conn_or_pool: Executor,
    customer_id: str,
    resource_type: str,
    limit_base_units: int | None,
    name: str | None = None,
    warning: Decimal | int | None = None,
    critical: Decimal | int | None = None,
    *,
    catalog_name: str | None = None,
) -> str:
    """Create or update a customer's resource with a limit in base units; return its key.

    ``limit_base_units`` is bytes / requests / CPU milliseconds (None = unlimited);
    ``warning`` and ``critical`` are percentages of the limit (default 80 / 95).
    The catalog entry is ``catalog_name`` or the first default-tenant entry of
    ``resource_type``. An existing resource keeps its usage; its limit and
    thresholds are replaced, and running hubs are told (``NOTIFY
    resmon_resource_changed``) so the live actor reloads before its next
    reading.
    """
    if limit_base_units is not None and limit_base_units < 0:
        raise ValueError("limit_base_units must be >= 0 or None")
    key = make_key(customer_id, resource_type, name)
    kind = kind_of(resource_type)
    warn = Decimal(80 if warning is None else warning)
    crit = Decimal(95 if critical is None else critical)
    if not Decimal(0) < warn <= crit:
        raise ValueError(f"need 0 < warning ({warn}) <= critical ({crit})")
    with storage_errors():
        async with connection(conn_or_pool) as conn, conn.transaction():
            catalog_id = await _catalog_id(conn, resource_type, catalog_name)
            await conn.execute(_INSERT_CUSTOMER, customer_id, DEFAULT_TENANT)
            await conn.execute(
                """INSERT INTO customer_resources
                       (customer_id, resource_catalog_id, resource_key, name, kind, limit_value,
                        warning_threshold, critical_threshold)
                   VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
                   ON CONFLICT (resource_key) DO UPDATE SET
                       resource_catalog_id = EXCLUDED.resource_catalog_id,
                       limit_value = EXCLUDED.limit_value,
                       warning_threshold = EXCLUDED.warning_threshold,
                       critical_threshold = EXCLUDED.critical_threshold,
                       auto_provisioned = false,
                       updated_at = now()""",
                customer_id,
                catalog_id,
                key,
                name,
                kind,
                limit_base_units,
                warn,
                crit,
            )
            await notify_changed(conn, [key])
    return key


async def set_plan(
    conn: asyncpg.Connection, key: str, cost_model_id: str, limit_base_units: int | None
) -> None:
    """Move a resource to another plan and its limit, in the caller's transaction.

    Thresholds and usage are kept. Running hubs are told as for any limit change
    (``NOTIFY resmon_resource_changed``, delivered at commit), so the live actor
    checks the next reading against the new limit.
    """
    if limit_base_units is not None and limit_base_units < 0:
        raise ValueError("limit_base_units must be >= 0 or None")
    await conn.execute(
        "UPDATE customer_resources SET cost_model_id = $2, limit_value = $3, updated_at = now() "
        "WHERE resource_key = $1",
        key,
        cost_model_id,
        limit_base_units,
    )
    await notify_changed(conn, [key])
