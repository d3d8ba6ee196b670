"""Configuration routes: the resource catalog, customers, their resources, cost models.

======  ======================================================  ============================
method  path                                                    what
======  ======================================================  ============================
GET     /api/config/catalog[?resourceType=]                     catalog entries (a page)
POST    /api/config/catalog                                     a new entry -> 201
GET     /api/config/catalog/{resourceType}                      the entries of one type
GET     /api/config/catalog/{resourceType}/{catalogId}          one entry (ETag)
PATCH   /api/config/catalog/{resourceType}/{catalogId}          change it (If-Match)
DELETE  /api/config/catalog/{resourceType}/{catalogId}          delete it (If-Match) -> 204
GET     /api/config/customers                                   customers (a page)
POST    /api/config/customers                                   a new customer -> 201
GET     /api/config/customers/{customerId}                      one customer (ETag)
PATCH   /api/config/customers/{customerId}                      change it (If-Match)
DELETE  /api/config/customers/{customerId}                      delete it (If-Match) -> 204
GET     /api/config/customers/{customerId}/resources            its resources (a page)
POST    /api/config/customers/{customerId}/resources            a new resource -> 201
GET     /api/config/customers/{customerId}/resources/{key}      one resource (ETag)
PATCH   /api/config/customers/{customerId}/resources/{key}      limit, thresholds, plan, status
                                                                (key: whole, or after the id)
DELETE  /api/config/customers/{customerId}/resources/{key}      delete it (If-Match) -> 204
GET     /api/config/cost-models                                 plans (a page)
POST    /api/config/cost-models                                 a new plan -> 201
GET     /api/config/cost-models/{id}                            one plan (ETag)
PATCH   /api/config/cost-models/{id}                            change it (If-Match)
DELETE  /api/config/cost-models/{id}                            delete it (If-Match) -> 204
======  ======================================================  ============================

Everything is the calling key's tenant's: another tenant's object is 404, as a
missing one; a body never names a tenant. Catalog, plans and the customer list
are the tenant's as a whole: a key restricted to customers gets 403 there.

Each object answer carries an ``ETag`` (a digest of the object as answered);
PATCH and DELETE need it back in ``If-Match`` (428 without, 412 when the object
changed since). A change of a resource's limit or thresholds, or of the catalog
entry it is of, reaches every running hub before its next reading.

Limits are in base units (``limit``: bytes, requests, CPU milliseconds; null:
unlimited) or in the catalog unit (``limitInUnit``: a decimal string); answers
carry both. Thresholds are percentages of the limit with two decimals,
``0 < warningThreshold <= criticalThreshold < 1000``. A body that is not the
shape asked for is 400, a value out of range 422; both name the JSON path.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import decimal
import functools
import re
from collections.abc import Awaitable, Callable
from decimal import Decimal
from typing import Annotated, Any, Final, Literal, TypeVar, get_args, get_origin

import msgspec
from aiohttp import hdrs, web

from protocol import RESOURCE_BASE_UNIT, UnitError, resource_key, to_base, unit_factor

from .._exceptions import NotFoundError, storage_errors
from ..alerts.records import display_unit, plain, to_unit
from ..costs import CostModel, PricingError, load_cost_model
from ..storage import config as cfg
from ..storage.provision import connection, kind_of
from ._http import context_of, error_response, etag_of, json_response, precondition_failure
from ._pagination import page, page_request
from .auth import caller_of, check_customer

__all__ = [
    "CatalogCreate",
    "CatalogEntry",
    "CatalogPatch",
    "CostModelCreate",
    "CostModelPatch",
    "CostModelView",
    "Customer",
    "CustomerCreate",
    "CustomerPatch",
    "ResourceConfig",
    "ResourceCreate",
    "ResourcePatch",
    "add_config_routes",
]

_STRUCT: Final[dict[str, Any]] = {"rename": "camel", "forbid_unknown_fields": True, "frozen": True}
_UNSET: Final = msgspec.UNSET
Unset = msgspec.UnsetType

Text100 = Annotated[str, msgspec.Meta(min_length=1, max_length=100, pattern=r"^[^\x00]*$")]
Text200 = Annotated[str, msgspec.Meta(min_length=1, max_length=200, pattern=r"^[^\x00]*$")]
ResourceType = Annotated[str, msgspec.Meta(min_length=1, max_length=50)]
Unit = Annotated[str, msgspec.Meta(min_length=1, max_length=20)]
CustomerId = Annotated[str, msgspec.Meta(min_length=1, max_length=200, pattern=r"^[^/\x00]+$")]
#: a limit in base units: a positive integer (null: unlimited)
Limit = Annotated[int, msgspec.Meta(ge=1, le=2**63 - 1)]
Status = Literal["ACTIVE", "SUSPENDED", "INACTIVE"]
BillingPeriod = Literal["monthly", "yearly"]


# -- bodies and answers -------------------------------------------------------------------


class CatalogCreate(msgspec.Struct, **_STRUCT):
    """A new catalog entry: ``unit`` must measure the type's base unit (GB for bandwidth)."""

    resource_type: ResourceType
    resource_name: Text100
    unit: Unit
    cost_per_unit: Decimal | None = None
    is_billable: bool = True


class CatalogPatch(msgspec.Struct, **_STRUCT):
    """The fields to change; the resource type of an entry never changes."""

    resource_name: Text100 | Unset = _UNSET
    unit: Unit | Unset = _UNSET
    cost_per_unit: Decimal | Unset | None = _UNSET
    is_billable: bool | Unset = _UNSET


class CatalogEntry(msgspec.Struct, rename="camel", frozen=True):
    id: str
    resource_type: str
    resource_name: str
    unit: str
    base_unit: str
    cost_per_unit: Decimal | None
    is_billable: bool
    created_at: dt.datetime
    updated_at: dt.datetime


class CustomerCreate(msgspec.Struct, **_STRUCT):
    id: CustomerId
    name: Text200 | None = None


class CustomerPatch(msgspec.Struct, **_STRUCT):
    name: Text200 | Unset | None = _UNSET


class Customer(msgspec.Struct, rename="camel", frozen=True):
    id: str
    name: str | None
    created_at: dt.datetime


class ResourceCreate(msgspec.Struct, **_STRUCT):
    """A new resource of the customer; its key is ``customer/type[/name]``.

    ``catalogId`` defaults to the tenant's first catalog entry of the type;
    thresholds to the hub's defaults; a plan's own limit is the resource's when
    no limit is given.
    """

    resource_type: ResourceType
    name: Text100 | None = None
    catalog_id: str | None = None
    limit: Limit | None = None
    limit_in_unit: Decimal | None = None
    warning_threshold: Decimal | None = None
    critical_threshold: Decimal | None = None
    cost_model_id: str | None = None
    status: Status = "ACTIVE"


class ResourcePatch(msgspec.Struct, **_STRUCT):
    """The fields to change. A new ``costModelId`` brings its plan's limit unless one is given."""

    catalog_id: str | Unset = _UNSET
    limit: Limit | Unset | None = _UNSET
    limit_in_unit: Decimal | Unset | None = _UNSET
    warning_threshold: Decimal | Unset = _UNSET
    critical_threshold: Decimal | Unset = _UNSET
    cost_model_id: str | Unset | None = _UNSET
    status: Status | Unset = _UNSET


class ResourceConfig(msgspec.Struct, rename="camel", frozen=True):
    """A resource's configuration (its usage: ``/api/monitoring/...``)."""

    resource_key: str
    customer_id: str
    resource_type: str
    name: str | None
    catalog_id: str
    resource_name: str
    kind: str
    unit: str
    catalog_unit: str
    limit: int | None
    limit_in_unit: str | None
    warning_threshold: Decimal
    critical_threshold: Decimal
    cost_model_id: str | None
    status: str
    auto_provisioned: bool
    created_at: dt.datetime


class CostModelCreate(msgspec.Struct, **_STRUCT):
    """A plan: base cost + overage above the limit, or a full ``pricing`` model (docs/costs.md).

    ``resourceCatalogId`` and ``limit`` make it a plan a resize recommendation can choose.
    """

    model_name: Text100
    billing_period: BillingPeriod = "monthly"
    base_cost: Decimal | None = None
    overage_rate: Decimal | None = None
    is_active: bool = True
    pricing: CostModel | None = None
    resource_catalog_id: str | None = None
    limit: Limit | None = None


class CostModelPatch(msgspec.Struct, **_STRUCT):
    model_name: Text100 | Unset = _UNSET
    billing_period: BillingPeriod | Unset = _UNSET
    base_cost: Decimal | Unset | None = _UNSET
    overage_rate: Decimal | Unset | None = _UNSET
    is_active: bool | Unset = _UNSET
    pricing: CostModel | Unset | None = _UNSET
    resource_catalog_id: str | Unset | None = _UNSET
    limit: Limit | Unset | None = _UNSET


class CostModelView(msgspec.Struct, rename="camel", frozen=True):
    id: str
    model_name: str
    billing_period: str
    base_cost: Decimal | None
    overage_rate: Decimal | None
    is_active: bool
    pricing: CostModel | None
    resource_catalog_id: str | None
    limit: int | None
    created_at: dt.datetime


# -- errors, pages, ETags -----------------------------------------------------------------


class _Refused(Exception):
    """Answer ``status`` with ``message`` about ``where``."""

    def __init__(self, status: int, message: str, where: str) -> None:
        self.status, self.message, self.where = status, message, where
        super().__init__(message)


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _handled(handler: Handler) -> Handler:
    async def wrapped(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except _Refused as exc:
            return error_response(exc.status, exc.message, exc.where)
        except cfg.ConflictError as exc:
            return error_response(409, str(exc), exc.where)
        except cfg.InUseError as exc:
            return error_response(409, str(exc), request.path)

    return wrapped


_encoder: Final = msgspec.json.Encoder(decimal_format="string")
_AT: Final = re.compile(r"^(?P<problem>.*) - at `(?P<path>\$[^`]*)`$", re.DOTALL)
_UNKNOWN: Final = re.compile(r"unknown field `([^`]+)`")
_FIELD: Final = re.compile(r"^(?P<field>[A-Za-z][\w\[\].]*): (?P<problem>.*)$", re.DOTALL)

T = TypeVar("T")


def _choices(kind: type[Any], path: str) -> list[str]:
    """The values a top-level Literal field at ``path`` (``$.status``) allows."""
    for field in msgspec.structs.fields(kind):
        if f"$.{field.encode_name}" == path:
            bare = get_origin(field.type) is Literal
            options = (field.type,) if bare else get_args(field.type)
            literal = [o for o in options if get_origin(o) is Literal]
            return [str(v) for o in literal for v in get_args(o)]
    return []


async def _body(request: web.Request, kind: type[T]) -> T:
    """The request body as ``kind``; 400 naming the JSON path of the first bad field."""
    raw = await request.read()
    if not raw.strip():
        raise _Refused(400, "a JSON object body is required", "$")
    try:
        return msgspec.json.decode(raw, type=kind)
    except msgspec.ValidationError as exc:
        text = str(exc)
        at = _AT.match(text)
        problem, path = (at["problem"], at["path"]) if at else (text, "$")
        if (unknown := _UNKNOWN.search(problem)) is not None:
            path = f"{path}.{unknown.group(1)}"
        elif (ours := _FIELD.match(problem)) is not None:  # a price model's own check
            path = f"{path}.{ours['field']}"
        elif problem.startswith("Invalid enum value") and (allowed := _choices(kind, path)):
            problem += f"; one of {', '.join(allowed)}"
        raise _Refused(400, f"{problem} (at {path})", path) from None
    except msgspec.DecodeError as exc:
        raise _Refused(400, f"the body is not valid JSON: {exc}", "$") from None


def _etag(view: msgspec.Struct) -> tuple[bytes, str]:
    body = _encoder.encode(view)
    return body, etag_of(body)


def _answer(view: msgspec.Struct, status: int = 200, location: str | None = None) -> web.Response:
    body, etag = _etag(view)
    headers = {hdrs.ETAG: etag}
    if location is not None:
        headers[hdrs.LOCATION] = location
    return web.Response(body=body, status=status, content_type="application/json", headers=headers)


def _precondition(request: web.Request, current: msgspec.Struct) -> None:
    """428 without ``If-Match``, 412 unless it names ``current``'s ETag (or is ``*``)."""
    failure = precondition_failure(
        request.headers.get(hdrs.IF_MATCH), request.method, _etag(current)[1]
    )
    if failure is not None:
        raise _Refused(*failure, "If-Match")


Conn = Any  # an asyncpg connection inside a transaction
Loader = Callable[..., Awaitable[cfg.Row]]  # (conn, request, *, lock=False) -> the row or 404


@dataclasses.dataclass(frozen=True)
class _Kind:
    """How to find one kind of object from a request and how it is answered."""

    load: Loader
    view: Callable[[cfg.Row], msgspec.Struct]


async def _get(kind: _Kind, request: web.Request) -> web.Response:
    return _answer(kind.view(await kind.load(context_of(request).db, request)))


async def _transaction(request: web.Request, act: Callable[[Conn], Awaitable[T]]) -> T:
    """``act`` in one transaction of a connection of the hub's pool."""
    ctx = context_of(request)
    with storage_errors(ctx.config.database_address):
        async with connection(ctx.db) as conn, conn.transaction():
            return await act(conn)


async def _locked(
    kind: _Kind, request: web.Request, act: Callable[[Conn, cfg.Row], Awaitable[T]]
) -> T:
    """``act`` on the object, locked, in one transaction, once If-Match names its ETag."""

    async def locked(conn: Conn) -> T:
        row = await kind.load(conn, request, lock=True)
        _precondition(request, kind.view(row))
        return await act(conn, row)

    return await _transaction(request, locked)


async def _patched(
    kind: _Kind, request: web.Request, act: Callable[[Conn, cfg.Row], Awaitable[cfg.Row]]
) -> web.Response:
    return _answer(kind.view(await _locked(kind, request, act)))


async def _deleted(
    kind: _Kind, request: web.Request, act: Callable[[Conn, cfg.Row], Awaitable[None]]
) -> web.Response:
    await _locked(kind, request, act)
    return web.Response(status=204)


def _whole_tenant(request: web.Request) -> str:
    """The caller's tenant; 403 for a key restricted to some customers."""
    key = caller_of(request)
    if key.customer_ids is not None:
        raise _Refused(
            403,
            "this API key is restricted to some customers; the tenant's catalog, plans and "
            "customer list need a key for the whole tenant",
            "Authorization",
        )
    return key.tenant_id


#: room for the widest column (NUMERIC(38, 4)) and any finer fraction a caller sends
_WIDE: Final = decimal.Context(prec=80)


def _decimal(value: Decimal, where: str, *, places: int, below: Decimal) -> Decimal:
    """``value`` checked finite, >= 0, < ``below``, with at most ``places`` decimals (422)."""
    if not value.is_finite() or value < 0 or value >= below:
        raise _Refused(422, f"{value} must be a number from 0 up to below {below}", where)
    if value != _WIDE.quantize(value, Decimal(1).scaleb(-places)):
        raise _Refused(422, f"{value} has more than {places} decimal places", where)
    return value


def _plain(value: Decimal | None) -> Decimal | None:
    """A stored decimal without the column's trailing zeros (0.0700 -> 0.07)."""
    return None if value is None else plain(value)


# -- resource catalog ---------------------------------------------------------------------


def _catalog_view(row: cfg.Row) -> CatalogEntry:
    return CatalogEntry(
        id=row["id"],
        resource_type=row["resource_type"],
        resource_name=row["resource_name"],
        unit=row["unit"],
        base_unit=RESOURCE_BASE_UNIT.get(row["resource_type"]) or str(row["unit"]),
        cost_per_unit=_plain(row["cost_per_unit"]),
        is_billable=row["is_billable"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


def _check_type(resource_type: str, where: str = "$.resourceType") -> str:
    if resource_type not in RESOURCE_BASE_UNIT:
        known = ", ".join(sorted(RESOURCE_BASE_UNIT))
        raise _Refused(422, f"unknown resource type {resource_type!r}; known: {known}", where)
    return RESOURCE_BASE_UNIT[resource_type]


def _check_unit(unit: str, resource_type: str) -> str:
    base = _check_type(resource_type)
    try:
        measures, _ = unit_factor(unit)
    except UnitError as exc:
        raise _Refused(422, str(exc), "$.unit") from None
    if measures != base:
        raise _Refused(
            422,
            f"unit {unit!r} measures {measures}s; {resource_type} is measured in {base}s",
            "$.unit",
        )
    return unit


_PRICE_CAP: Final = Decimal(10) ** 6  # NUMERIC(10, 4)


async def list_catalog(request: web.Request) -> web.Response:
    tenant = _whole_tenant(request)
    kind = request.match_info.get("resourceType") or request.query.get("resourceType")
    wanted = page_request(request.query, (str, str))
    rows = await cfg.catalog_page(
        context_of(request).db,
        tenant,
        resource_type=kind,
        after=wanted.after,
        limit=wanted.limit + 1,
    )
    views = [_catalog_view(r) for r in rows]
    return json_response(page(views, wanted, lambda e: (e.resource_type, e.resource_name)))


async def _catalog_row(conn: Any, request: web.Request, *, lock: bool = False) -> cfg.Row:
    tenant = _whole_tenant(request)
    entry_id = request.match_info["catalogId"]
    row = await cfg.catalog_entry(conn, tenant, entry_id, lock=lock)
    if row is None or row["resource_type"] != request.match_info["resourceType"]:
        raise NotFoundError(f"catalog entry {entry_id!r} not found")
    return row


_CATALOG_KIND: Final = _Kind(_catalog_row, _catalog_view)


async def create_catalog(request: web.Request) -> web.Response:
    tenant = _whole_tenant(request)
    body = await _body(request, CatalogCreate)
    _check_unit(body.unit, body.resource_type)
    if body.cost_per_unit is not None:
        _decimal(body.cost_per_unit, "$.costPerUnit", places=4, below=_PRICE_CAP)
    values = {
        "resource_type": body.resource_type,
        "resource_name": body.resource_name,
        "unit": body.unit,
        "cost_per_unit": body.cost_per_unit,
        "is_billable": body.is_billable,
    }
    row = await _transaction(request, lambda conn: cfg.insert_catalog_entry(conn, tenant, values))
    view = _catalog_view(row)
    return _answer(view, 201, f"/api/config/catalog/{view.resource_type}/{view.id}")


async def patch_catalog(request: web.Request) -> web.Response:
    body = await _body(request, CatalogPatch)

    async def change(conn: Conn, row: cfg.Row) -> cfg.Row:
        values = _changed(body)
        if "unit" in values:
            _check_unit(values["unit"], row["resource_type"])
        if values.get("cost_per_unit") is not None:
            _decimal(values["cost_per_unit"], "$.costPerUnit", places=4, below=_PRICE_CAP)
        tenant = caller_of(request).tenant_id
        return await cfg.update_catalog_entry(conn, tenant, row["id"], values)

    return await _patched(_CATALOG_KIND, request, change)


async def delete_catalog(request: web.Request) -> web.Response:
    return await _deleted(
        _CATALOG_KIND, request, lambda conn, row: cfg.delete_catalog_entry(conn, row["id"])
    )


def _changed(patch: msgspec.Struct) -> dict[str, Any]:
    """The fields a PATCH body gives (attribute name -> value)."""
    return {
        name: value
        for name in patch.__struct_fields__
        if (value := getattr(patch, name)) is not _UNSET
    }


# -- customers ----------------------------------------------------------------------------


def _customer_view(row: cfg.Row) -> Customer:
    return Customer(id=row["id"], name=row["name"], created_at=row["created_at"])


async def list_customers(request: web.Request) -> web.Response:
    tenant = _whole_tenant(request)
    wanted = page_request(request.query, (str,))
    db = context_of(request).db
    rows = await cfg.customer_page(db, tenant, after=wanted.after, limit=wanted.limit + 1)
    return json_response(page([_customer_view(r) for r in rows], wanted, lambda c: (c.id,)))


async def _customer_row(conn: Any, request: web.Request, *, lock: bool = False) -> cfg.Row:
    customer_id = request.match_info["customerId"]
    await check_customer(request, customer_id)
    row = await cfg.customer(conn, caller_of(request).tenant_id, customer_id, lock=lock)
    if row is None:
        raise NotFoundError(f"customer {customer_id!r} not found")
    return row


_CUSTOMER_KIND: Final = _Kind(_customer_row, _customer_view)


async def create_customer(request: web.Request) -> web.Response:
    tenant = _whole_tenant(request)
    body = await _body(request, CustomerCreate)
    row = await _transaction(
        request, lambda conn: cfg.insert_customer(conn, tenant, body.id, body.name)
    )
    return _answer(_customer_view(row), 201, f"/api/config/customers/{body.id}")


async def patch_customer(request: web.Request) -> web.Response:
    body = await _body(request, CustomerPatch)
    tenant = caller_of(request).tenant_id
    return await _patched(
        _CUSTOMER_KIND,
        request,
        lambda conn, row: cfg.update_customer(conn, tenant, row["id"], _changed(body)),
    )


async def delete_customer(request: web.Request) -> web.Response:
    return await _deleted(
        _CUSTOMER_KIND, request, lambda conn, row: cfg.delete_customer(conn, row["id"])
    )


# -- customer resources -------------------------------------------------------------------


def _resource_view(row: cfg.Row) -> ResourceConfig:
    base = RESOURCE_BASE_UNIT.get(row["resource_type"], "byte")
    unit = display_unit(row["catalog_unit"], base)
    limit = row["limit_value"]
    return ResourceConfig(
        resource_key=row["resource_key"],
        customer_id=row["customer_id"],
        resource_type=row["resource_type"],
        name=row["name"],
        catalog_id=row["catalog_id"],
        resource_name=row["resource_name"],
        kind=row["kind"],
        unit=base,
        catalog_unit=unit,
        limit=limit,
        limit_in_unit=str(to_unit(limit, unit)) if limit is not None else None,
        warning_threshold=plain(row["warning_threshold"]),
        critical_threshold=plain(row["critical_threshold"]),
        cost_model_id=row["cost_model_id"],
        status=row["status"],
        auto_provisioned=row["auto_provisioned"],
        created_at=row["created_at"],
    )


_THRESHOLD_CAP: Final = Decimal(1000)  # NUMERIC(5, 2)


def _thresholds(warning: Decimal, critical: Decimal) -> None:
    _decimal(warning, "$.warningThreshold", places=2, below=_THRESHOLD_CAP)
    _decimal(critical, "$.criticalThreshold", places=2, below=_THRESHOLD_CAP)
    if warning <= 0:
        raise _Refused(
            422, "warningThreshold must be above 0 (% of the limit)", "$.warningThreshold"
        )
    if critical < warning:
        raise _Refused(
            422,
            f"criticalThreshold ({critical}) must be at least warningThreshold ({warning})",
            "$.criticalThreshold",
        )


def _limit_in_base(limit: Decimal, catalog_unit: str, base: str) -> int:
    unit = display_unit(catalog_unit, base)
    try:
        value = to_base(limit, unit)
    except UnitError as exc:
        raise _Refused(422, f"limitInUnit: {exc}", "$.limitInUnit") from None
    if value < 1 or value > 2**63 - 1:
        raise _Refused(
            422, f"limitInUnit {limit} {unit} is {value} {base}s: need 1..2^63-1", "$.limitInUnit"
        )
    return value


async def _catalog_for(
    conn: Any, tenant: str, catalog_id: str | None, resource_type: str
) -> cfg.Row:
    """The tenant's catalog entry ``catalog_id`` (or its first of the type), of that type (422)."""
    if catalog_id is None:
        rows = await cfg.catalog_page(
            conn, tenant, resource_type=resource_type, after=None, limit=1
        )
        if not rows:
            raise _Refused(
                422,
                f"the tenant has no catalog entry for {resource_type!r}; create one first",
                "$.resourceType",
            )
        return rows[0]
    row = await cfg.catalog_entry(conn, tenant, catalog_id)
    if row is None:
        raise _Refused(422, f"no catalog entry {catalog_id!r}", "$.catalogId")
    if row["resource_type"] != resource_type:
        raise _Refused(
            422,
            f"catalog entry {catalog_id} is of {row['resource_type']}, not {resource_type}",
            "$.catalogId",
        )
    return row


async def _plan_for(conn: Any, tenant: str, model_id: str, resource_type: str) -> cfg.Row:
    row = await cfg.cost_model(conn, tenant, model_id)
    if row is None:
        raise _Refused(422, f"no cost model {model_id!r}", "$.costModelId")
    if row["catalog_id"] is not None:
        entry = await cfg.catalog_entry(conn, tenant, row["catalog_id"])
        if entry is not None and entry["resource_type"] != resource_type:
            raise _Refused(
                422,
                f"cost model {model_id} is a plan for {entry['resource_type']}, "
                f"not {resource_type}",
                "$.costModelId",
            )
    return row


def _one_limit(limit: object, in_unit: object) -> None:
    if limit not in (None, _UNSET) and in_unit not in (None, _UNSET):
        raise _Refused(422, "give limit or limitInUnit, not both", "$.limitInUnit")


async def list_resources(request: web.Request) -> web.Response:
    customer_id = request.match_info["customerId"]
    await check_customer(request, customer_id)
    wanted = page_request(request.query, (str,))
    db = context_of(request).db
    rows = await cfg.resource_page(db, customer_id, after=wanted.after, limit=wanted.limit + 1)
    views = [_resource_view(r) for r in rows]
    return json_response(page(views, wanted, lambda r: (r.resource_key,)))


async def _resource_row(conn: Any, request: web.Request, *, lock: bool = False) -> cfg.Row:
    customer_id, key = request.match_info["customerId"], request.match_info["resourceKey"]
    if not key.startswith(f"{customer_id}/"):  # the part after the customer id
        key = f"{customer_id}/{key}"
    await check_customer(request, customer_id)
    row = await cfg.resource(conn, customer_id, key, lock=lock)
    if row is None:
        raise NotFoundError(f"resource {key!r} of customer {customer_id!r} not found")
    return row


_RESOURCE_KIND: Final = _Kind(_resource_row, _resource_view)


async def create_resource(request: web.Request) -> web.Response:
    customer_id = request.match_info["customerId"]
    await check_customer(request, customer_id)
    body = await _body(request, ResourceCreate)
    base = _check_type(body.resource_type)
    _one_limit(body.limit, body.limit_in_unit)
    ctx = context_of(request)
    warning = (
        ctx.config.warning_percent if body.warning_threshold is None else body.warning_threshold
    )
    critical = (
        ctx.config.critical_percent if body.critical_threshold is None else body.critical_threshold
    )
    _thresholds(warning, critical)
    tenant = caller_of(request).tenant_id
    with storage_errors(ctx.config.database_address):
        async with connection(ctx.db) as conn, conn.transaction():
            entry = await _catalog_for(conn, tenant, body.catalog_id, body.resource_type)
            limit = body.limit
            if body.limit_in_unit is not None:
                limit = _limit_in_base(body.limit_in_unit, entry["unit"], base)
            plan_id = None
            if body.cost_model_id is not None:
                plan = await _plan_for(conn, tenant, body.cost_model_id, body.resource_type)
                plan_id = plan["id"]
                if limit is None:
                    limit = plan["limit_value"]
            key = resource_key(customer_id, body.resource_type, body.name)
            row = await cfg.insert_resource(
                conn,
                {
                    "customer_id": customer_id,
                    "resource_catalog_id": entry["id"],
                    "resource_key": key,
                    "name": body.name,
                    "kind": kind_of(body.resource_type),
                    "limit_value": limit,
                    "warning_threshold": warning,
                    "critical_threshold": critical,
                    "cost_model_id": plan_id,
                    "status": body.status,
                },
            )
    return _answer(_resource_view(row), 201, f"/api/config/customers/{customer_id}/resources/{key}")


async def patch_resource(request: web.Request) -> web.Response:
    body = await _body(request, ResourcePatch)
    _one_limit(body.limit, body.limit_in_unit)
    tenant = caller_of(request).tenant_id

    async def change(conn: Conn, row: cfg.Row) -> cfg.Row:
        kind, base = row["resource_type"], RESOURCE_BASE_UNIT.get(row["resource_type"], "byte")
        values: dict[str, Any] = {}
        catalog_unit = row["catalog_unit"]
        if body.catalog_id is not _UNSET:
            entry = await _catalog_for(conn, tenant, body.catalog_id, kind)
            values["resource_catalog_id"] = entry["id"]
            catalog_unit = entry["unit"]
        if body.limit is not _UNSET:
            values["limit_value"] = body.limit
        if body.limit_in_unit is not _UNSET:
            values["limit_value"] = (
                None
                if body.limit_in_unit is None
                else _limit_in_base(body.limit_in_unit, catalog_unit, base)
            )
        if body.cost_model_id is not _UNSET:
            values["cost_model_id"] = None
            if body.cost_model_id is not None:
                plan = await _plan_for(conn, tenant, body.cost_model_id, kind)
                values["cost_model_id"] = plan["id"]
                if "limit_value" not in values and plan["limit_value"] is not None:
                    values["limit_value"] = plan["limit_value"]
        warning = row["warning_threshold"]
        critical = row["critical_threshold"]
        if body.warning_threshold is not _UNSET:
            warning = values["warning_threshold"] = body.warning_threshold
        if body.critical_threshold is not _UNSET:
            critical = values["critical_threshold"] = body.critical_threshold
        _thresholds(warning, critical)
        if body.status is not _UNSET:
            values["status"] = body.status
        return await cfg.update_resource(conn, row["customer_id"], row["resource_key"], values)

    return await _patched(_RESOURCE_KIND, request, change)


async def delete_resource(request: web.Request) -> web.Response:
    return await _deleted(
        _RESOURCE_KIND, request, lambda conn, row: cfg.delete_resource(conn, row["resource_key"])
    )


# -- cost models --------------------------------------------------------------------------


def _plan_view(row: cfg.Row) -> CostModelView:
    pricing = None
    if row["pricing"] is not None:
        try:
            pricing = load_cost_model(row["pricing"])
        except PricingError as exc:  # written by hand past the API: say which and why
            raise _Refused(
                500, f"cost model {row['id']}: its stored pricing is invalid: {exc}", "pricing"
            ) from None
    return CostModelView(
        id=row["id"],
        model_name=row["model_name"],
        billing_period=row["billing_period"],
        base_cost=_plain(row["base_cost"]),
        overage_rate=_plain(row["overage_rate"]),
        is_active=row["is_active"],
        pricing=pricing,
        resource_catalog_id=row["catalog_id"],
        limit=row["limit_value"],
        created_at=row["created_at"],
    )


_COST_CAP: Final = Decimal(10) ** 34  # NUMERIC(38, 4)


async def _plan_values(
    conn: Any, tenant: str, given: dict[str, Any], period: str
) -> dict[str, Any]:
    """Column values of a plan body's fields (checked: 422 naming the field)."""
    values: dict[str, Any] = {}
    for name, value in given.items():
        if name == "base_cost" and value is not None:
            _decimal(value, "$.baseCost", places=4, below=_COST_CAP)
        elif name == "overage_rate" and value is not None:
            _decimal(value, "$.overageRate", places=4, below=_PRICE_CAP)
        elif name == "resource_catalog_id" and value is not None:
            entry = await cfg.catalog_entry(conn, tenant, value)
            if entry is None:
                raise _Refused(422, f"no catalog entry {value!r}", "$.resourceCatalogId")
            value = entry["id"]
        elif name == "pricing" and value is not None:
            if value.billing_period != period:
                raise _Refused(
                    422,
                    f"pricing.billingPeriod {value.billing_period} is not the plan's ({period})",
                    "$.pricing.billingPeriod",
                )
            value = _encoder.encode(value).decode()
        values["limit_value" if name == "limit" else name] = value
    return values


async def list_cost_models(request: web.Request) -> web.Response:
    tenant = _whole_tenant(request)
    wanted = page_request(request.query, (str, str))
    db = context_of(request).db
    rows = await cfg.cost_model_page(db, tenant, after=wanted.after, limit=wanted.limit + 1)
    views = [_plan_view(r) for r in rows]
    return json_response(page(views, wanted, lambda p: (p.model_name, p.id)))


async def _plan_row(conn: Any, request: web.Request, *, lock: bool = False) -> cfg.Row:
    tenant = _whole_tenant(request)
    model_id = request.match_info["id"]
    row = await cfg.cost_model(conn, tenant, model_id, lock=lock)
    if row is None:
        raise NotFoundError(f"cost model {model_id!r} not found")
    return row


_PLAN_KIND: Final = _Kind(_plan_row, _plan_view)


async def create_cost_model(request: web.Request) -> web.Response:
    tenant = _whole_tenant(request)
    body = await _body(request, CostModelCreate)
    given = {name: getattr(body, name) for name in body.__struct_fields__}

    async def create(conn: Conn) -> cfg.Row:
        values = await _plan_values(conn, tenant, given, body.billing_period)
        return await cfg.insert_cost_model(conn, tenant, values)

    view = _plan_view(await _transaction(request, create))
    return _answer(view, 201, f"/api/config/cost-models/{view.id}")


async def patch_cost_model(request: web.Request) -> web.Response:
    body = await _body(request, CostModelPatch)
    tenant = caller_of(request).tenant_id

    async def change(conn: Conn, row: cfg.Row) -> cfg.Row:
        given = _changed(body)
        period = str(given.get("billing_period", row["billing_period"]))
        if "billing_period" in given and "pricing" not in given and row["pricing"] is not None:
            given["pricing"] = msgspec.structs.replace(
                load_cost_model(row["pricing"]), billing_period=period
            )
        values = await _plan_values(conn, tenant, given, period)
        return await cfg.update_cost_model(conn, tenant, row["id"], values)

    return await _patched(_PLAN_KIND, request, change)


async def delete_cost_model(request: web.Request) -> web.Response:
    return await _deleted(
        _PLAN_KIND, request, lambda conn, row: cfg.delete_cost_model(conn, row["id"])
    )


def add_config_routes(app: web.Application) -> None:
    r = app.router
    catalog = "/api/config/catalog"
    r.add_get(catalog, _handled(list_catalog))
    r.add_post(catalog, _handled(create_catalog))
    r.add_get(catalog + "/{resourceType}", _handled(list_catalog))
    entry = catalog + "/{resourceType}/{catalogId}"
    r.add_get(entry, _handled(functools.partial(_get, _CATALOG_KIND)))
    r.add_patch(entry, _handled(patch_catalog))
    r.add_delete(entry, _handled(delete_catalog))
    customers = "/api/config/customers"
    r.add_get(customers, _handled(list_customers))
    r.add_post(customers, _handled(create_customer))
    one = customers + "/{customerId}"
    r.add_get(one, _handled(functools.partial(_get, _CUSTOMER_KIND)))
    r.add_patch(one, _handled(patch_customer))
    r.add_delete(one, _handled(delete_customer))
    resources = one + "/resources"
    r.add_get(resources, _handled(list_resources))
    r.add_post(resources, _handled(create_resource))
    res = resources + "/{resourceKey:.+}"
    r.add_get(res, _handled(functools.partial(_get, _RESOURCE_KIND)))
    r.add_patch(res, _handled(patch_resource))
    r.add_delete(res, _handled(delete_resource))
    plans = "/api/config/cost-models"
    r.add_get(plans, _handled(list_cost_models))
    r.add_post(plans, _handled(create_cost_model))
    plan = plans + "/{id}"
    r.add_get(plan, _handled(functools.partial(_get, _PLAN_KIND)))
    r.add_patch(plan, _handled(patch_cost_model))
    r.add_delete(plan, _handled(delete_cost_model))
