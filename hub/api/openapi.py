"""The OpenAPI 3.1 document of the REST API, generated from the routes' msgspec types.

:data:`ROUTES` describes each route: its operation id, summary, parameters, the
type its body is decoded into and the type each status answers. The schemas are
those types' JSON Schema (``msgspec.json.schema_components``), so the document
cannot drift from what the handlers decode and encode. Every route of the app
must have a row here (``tests/hub/test_openapi.py`` fails otherwise); the
scope a route needs is read from :data:`hub.api.auth.ROUTE_SCOPES`.

The document is committed as ``docs/openapi-monitoring.yaml`` (``resmon hub
openapi -o docs/openapi-monitoring.yaml`` writes it) and served at
``/api/openapi.yaml``; ``/api/docs`` renders it with the vendored Redoc viewer
(``hub/api/static/``, MIT licence beside it).
"""

from __future__ import annotations

import datetime as dt
import functools
import http
import importlib.resources
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Final, Literal

import msgspec
import yaml
from aiohttp import hdrs, web

from protocol import UsageEvent

from ..alerts.lifecycle import TransitionRow
from ..notify.log import LogRow
from ..notify.preferences import Preferences, Stored
from ..storage.apikeys import ApiKey, Created
from ..storage.costs import CostView
from ..storage.current import CachedUsage
from ..storage.history import MAX_POINTS, UsageHistory
from ..storage.queries import AlertRow, ResourceView
from ..storage.recommendations import StoredRecommendation
from ._http import PROBLEM_JSON, PROBLEM_TYPES, Problem
from ._pagination import DEFAULT_LIMIT, MAX_LIMIT, Page
from .alerts import AlertAction
from .auth import required_scope
from .config import (
    CatalogCreate,
    CatalogEntry,
    CatalogPatch,
    CostModelCreate,
    CostModelPatch,
    CostModelView,
    Customer,
    CustomerCreate,
    CustomerPatch,
    ResourceConfig,
    ResourceCreate,
    ResourcePatch,
)
from .costs import CustomerCosts
from .forecasts import CustomerForecasts
from .keys import NewKey
from .ready import Readiness
from .recommendations import RecommendationAction
from .schemas import Health, IngestResult
from .stream import StreamToken
from .ui import LoggedOut, Login, SessionView

__all__ = [
    "ROUTES",
    "Param",
    "Route",
    "Text",
    "add_contract_routes",
    "document",
    "render",
]

#: a path or query parameter as the hub accepts it (longer ones, or with NUL, are 400)
Name = Annotated[str, msgspec.Meta(min_length=1, max_length=500, pattern="^[^\\x00]+$")]
#: a query filter (empty matches nothing)
Filter = Annotated[str, msgspec.Meta(max_length=500, pattern="^[^\\x00]*$")]
Limit = Annotated[int, msgspec.Meta(ge=1, le=MAX_LIMIT)]
Points = Annotated[int, msgspec.Meta(ge=1, le=MAX_POINTS)]
Uuid = Annotated[
    str, msgspec.Meta(pattern="^[0-9a-fA-F]{8}(-?[0-9a-fA-F]{4}){3}-?[0-9a-fA-F]{12}$")
]
Month = Annotated[str, msgspec.Meta(pattern="^(19[7-9][0-9]|[2-9][0-9]{3})-(0[1-9]|1[0-2])$")]
#: an instant with its UTC offset (``2026-03-01T12:00:00Z``)
Instant = Annotated[dt.datetime, msgspec.Meta(tz=True, extra_json_schema={"minLength": 20})]
AlertStatus = Literal["ACTIVE", "ACKNOWLEDGED", "RESOLVED"]
Severity = Literal["LOW", "MEDIUM", "HIGH", "CRITICAL"]
AlertType = Literal["THRESHOLD_WARNING", "THRESHOLD_CRITICAL", "ANOMALY_DETECTED", "FORECAST_LIMIT"]
LogStatus = Literal["PENDING", "SENDING", "SENT", "DEAD", "SUPPRESSED"]
RecommendationStatus = Literal["open", "applied", "dismissed"]


@dataclass(frozen=True)
class Param:
    """A path, query or header parameter; ``type`` is its msgspec-typed value."""

    name: str
    type: Any
    description: str
    location: Literal["path", "query", "header"] = "query"
    required: bool = False


@dataclass(frozen=True)
class Text:
    """A response that is not JSON: its media type (the schema is a string)."""

    media_type: str
    #: what the body parses to (YAML: an object); default a string
    schema: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class Route:
    """One operation of the API, as the document shows it.

    ``responses`` maps a success status to the type its body is encoded from (a
    :class:`Text` for a non-JSON body, None for no body). The error statuses are
    problem details: 400 and 503 for every route, 401/403/404 for a route that
    needs a key, 413/415 for one with a body, plus ``errors``.
    """

    method: str
    path: str
    operation_id: str
    summary: str
    tag: str
    responses: Mapping[int, Any]
    params: Sequence[Param] = ()
    body: Any = None
    errors: frozenset[int] = frozenset()
    description: str = ""


def _customer(description: str = "the customer's id") -> Param:
    return Param("customerId", Name, description, "path", required=True)


def _id(what: str, kind: Any = Name) -> Param:
    return Param("id", kind, f"the {what}'s id", "path", required=True)


_LIMIT = Param("limit", Limit, f"the most items in a page (default {DEFAULT_LIMIT})")
_CURSOR = Param("cursor", Filter, "the ``next`` of the previous page, unchanged")
_PAGE = (_LIMIT, _CURSOR)
_CUSTOMER_FILTER = Param("customerId", Filter, "only this customer's")
_RESOURCE_KEY = Param(
    "resourceKey",
    Name,
    "the resource key, whole or after the customer id (slashes allowed)",
    "path",
    True,
)
_PERIOD = Param("period", Month, "billing month YYYY-MM (default: the current one, to date)")

#: a header value (headers are not limited in length like parameters)
Header = Annotated[str, msgspec.Meta(min_length=1)]
_IF_MATCH = Param(
    "If-Match",
    Header,
    "the object's ``ETag`` from its last answer (``*``: any); 428 without, 412 when stale",
    "header",
    required=True,
)


def _crud(
    tag: str,
    noun: str,
    collection: str,
    item: str,
    answer: Any,
    create: Any,
    patch: Any,
    *,
    params: Sequence[Param] = (),
    item_params: Sequence[Param] = (),
    list_params: Sequence[Param] = (),
) -> tuple[Route, ...]:
    """List, create, get, change (PATCH) and delete rows of a configuration object.

    ``noun`` names the operations (``Customer``: ``listCustomers``, ``getCustomer``, ...).
    """
    item_all = (*params, *item_params)
    return (
        Route(
            "GET",
            collection,
            f"list{noun}s",
            f"{noun}s of the tenant (a page)",
            tag,
            {200: Page[answer]},
            params=(*params, *list_params, *_PAGE),
        ),
        Route(
            "POST",
            collection,
            f"create{noun}",
            f"Create a {noun} (201 with its ETag and Location)",
            tag,
            {201: answer},
            params=params,
            body=create,
            errors=frozenset({409, 422}),
        ),
        Route(
            "GET", item, f"get{noun}", f"One {noun} (with its ETag)", tag, {200: answer}, item_all
        ),
        Route(
            "PATCH",
            item,
            f"change{noun}",
            f"Change the fields given of a {noun} (If-Match)",
            tag,
            {200: answer},
            params=(*item_all, _IF_MATCH),
            body=patch,
            errors=frozenset({409, 412, 422, 428}),
        ),
        Route(
            "DELETE",
            item,
            f"delete{noun}",
            f"Delete a {noun} (If-Match)",
            tag,
            {204: None},
            params=(*item_all, _IF_MATCH),
            errors=frozenset({409, 412, 428}),
        ),
    )


_RESOURCE_TYPE = Param(
    "resourceType", Name, "the resource type (``bandwidth``, ``cpu``, ...)", "path"
)

#: every route of the REST API: add a row here with each new route
ROUTES: Final[tuple[Route, ...]] = (
    Route("GET", "/healthz", "health", "PostgreSQL reachable", "operations", {200: Health}),
    Route(
        "GET",
        "/readyz",
        "ready",
        "PostgreSQL, Redis and Kafka each answer in time",
        "operations",
        {200: Readiness, 503: Readiness},
    ),
    Route(
        "GET",
        "/metrics",
        "metrics",
        "Prometheus metrics",
        "operations",
        {200: Text("text/plain")},
    ),
    Route(
        "GET",
        "/api/openapi.yaml",
        "openapi",
        "This document",
        "contract",
        {200: Text("application/yaml", {"type": "object"})},
    ),
    Route(
        "GET", "/api/docs", "docs", "This document, rendered", "contract", {200: Text("text/html")}
    ),
    Route(
        "GET",
        "/api/docs/redoc.standalone.js",
        "docsViewer",
        "The document viewer (Redoc, MIT licence)",
        "contract",
        {200: Text("text/javascript")},
    ),
    Route(
        "POST",
        "/api/metrics/ingest",
        "ingestUsage",
        "Ingest one usage event or a list of them",
        "usage",
        {200: IngestResult},
        params=(
            Param(
                "strict",
                Literal["true", "false", "1", "0"],
                "true: refuse a value that is not a whole number of base units "
                "(default: round it, counted in ``rounded``)",
            ),
        ),
        body=list[UsageEvent] | UsageEvent,
        errors=frozenset({409, 422}),
    ),
    Route(
        "GET",
        "/api/metrics/customer/{customerId}/current",
        "currentUsage",
        "A customer's usage now (Redis, else PostgreSQL)",
        "usage",
        {200: list[CachedUsage]},
        params=(_customer(),),
    ),
    Route(
        "GET",
        "/api/monitoring/customers/{customerId}/resources",
        "customerResources",
        "A customer's resources as stored",
        "usage",
        {200: list[ResourceView]},
        params=(_customer(),),
    ),
    Route(
        "GET",
        "/api/usage/customers/{customerId}/resources/{resourceKey}/history",
        "usageHistory",
        "A resource's usage series over a range, at most ``points`` buckets",
        "usage",
        {200: UsageHistory},
        params=(
            _customer(),
            _RESOURCE_KEY,
            Param("range", Literal["1h", "24h", "7d", "30d"], "ending now (default 24h)"),
            Param("from", Instant, "the start (with an offset), instead of ``range``"),
            Param("to", Instant, "the end (with an offset; default now), with ``from``"),
            Param("points", Points, "the most buckets (default 500)"),
        ),
    ),
    Route(
        "GET",
        "/api/alerts",
        "listAlerts",
        "Alerts, newest first",
        "alerts",
        {200: Page[AlertRow]},
        params=(
            Param("status", AlertStatus, "only alerts in this status"),
            Param("severity", Severity, "only alerts of this severity"),
            Param("type", AlertType, "only alerts of this type"),
            _CUSTOMER_FILTER,
            Param("resourceKey", Filter, "only this resource's"),
            Param("from", Instant, "only alerts raised at or after this time (with an offset)"),
            Param("to", Instant, "only alerts raised before this time (with an offset)"),
            *_PAGE,
        ),
    ),
    Route(
        "GET",
        "/api/alerts/{id}",
        "getAlert",
        "One alert",
        "alerts",
        {200: AlertRow},
        params=(_id("alert"),),
    ),
    Route(
        "GET",
        "/api/alerts/{id}/history",
        "alertHistory",
        "The audit trail of the alert's episode, oldest first",
        "alerts",
        {200: list[TransitionRow]},
        params=(_id("alert"),),
    ),
    Route(
        "POST",
        "/api/alerts/{id}/acknowledge",
        "acknowledgeAlert",
        "Acknowledge an alert (``by`` defaults to the key's name)",
        "alerts",
        {200: AlertRow},
        params=(_id("alert"),),
        body=AlertAction,
        errors=frozenset({409}),
    ),
    Route(
        "POST",
        "/api/alerts/{id}/resolve",
        "resolveAlert",
        "Resolve an alert (``by`` defaults to the key's name)",
        "alerts",
        {200: AlertRow},
        params=(_id("alert"),),
        body=AlertAction,
        errors=frozenset({409}),
    ),
    Route(
        "GET",
        "/api/customers/{customerId}/notification-preferences",
        "getCustomerPreferences",
        "A customer's effective notification preferences (secrets masked; with their ETag)",
        "notifications",
        {200: Stored},
        params=(_customer(),),
    ),
    Route(
        "PUT",
        "/api/customers/{customerId}/notification-preferences",
        "putCustomerPreferences",
        "Set a customer's own notification preferences (If-Match)",
        "notifications",
        {200: Stored},
        params=(_customer(), _IF_MATCH),
        body=Preferences,
        errors=frozenset({412, 428}),
    ),
    Route(
        "GET",
        "/api/tenants/{tenantId}/notification-preferences",
        "getTenantPreferences",
        "The tenant's default notification preferences (with their ETag)",
        "notifications",
        {200: Stored},
        params=(Param("tenantId", Name, "the tenant's id (``default``: yours)", "path", True),),
    ),
    Route(
        "PUT",
        "/api/tenants/{tenantId}/notification-preferences",
        "putTenantPreferences",
        "Set the tenant's default notification preferences (If-Match)",
        "notifications",
        {200: Stored},
        params=(
            Param("tenantId", Name, "the tenant's id (``default``: yours)", "path", True),
            _IF_MATCH,
        ),
        body=Preferences,
        errors=frozenset({412, 428}),
    ),
    Route(
        "GET",
        "/api/notifications",
        "listNotifications",
        "The notification log: sends, retries, dead letters",
        "notifications",
        {200: Page[LogRow]},
        params=(
            Param("status", LogStatus, "only entries in this status"),
            _CUSTOMER_FILTER,
            Param("alertId", Uuid, "only this alert's"),
            *_PAGE,
        ),
    ),
    Route(
        "GET",
        "/api/keys",
        "listKeys",
        "The tenant's API keys (never the keys)",
        "keys",
        {200: Page[ApiKey]},
        params=_PAGE,
    ),
    Route(
        "POST",
        "/api/keys",
        "createKey",
        "Create an API key (shown once; no scope its creator lacks)",
        "keys",
        {201: Created},
        body=NewKey,
    ),
    Route(
        "DELETE",
        "/api/keys/{id}",
        "revokeKey",
        "Revoke an API key (not the one calling: 409)",
        "keys",
        {200: ApiKey},
        params=(_id("key"),),
        errors=frozenset({409}),
    ),
    Route(
        "GET",
        "/api/costs/customers/{customerId}",
        "customerCosts",
        "Every resource's bill for a month, and their total",
        "costs",
        {200: CustomerCosts},
        params=(_customer(), _PERIOD),
        errors=frozenset({422}),
    ),
    Route(
        "GET",
        "/api/costs/customers/{customerId}/resources/{resourceKey}",
        "resourceCosts",
        "One resource's bill for a month",
        "costs",
        {200: CostView},
        params=(
            _customer(),
            _RESOURCE_KEY,
            _PERIOD,
        ),
        errors=frozenset({422}),
    ),
    Route(
        "GET",
        "/api/forecasts/customers/{customerId}",
        "customerForecasts",
        "The newest stored forecast of each of a customer's resources",
        "forecasts",
        {200: CustomerForecasts},
        params=(_customer(), Param("resourceKey", Filter, "only this resource's")),
    ),
    Route(
        "GET",
        "/api/recommendations",
        "listRecommendations",
        "Stored optimization recommendations, largest saving first",
        "recommendations",
        {200: Page[StoredRecommendation]},
        params=(_CUSTOMER_FILTER, Param("status", RecommendationStatus, "only these"), *_PAGE),
    ),
    Route(
        "POST",
        "/api/recommendations/{id}/apply",
        "applyRecommendation",
        "Apply a recommendation (a resize moves the resource to its plan and limit)",
        "recommendations",
        {200: StoredRecommendation},
        params=(_id("recommendation"),),
        body=RecommendationAction,
        errors=frozenset({409}),
    ),
    Route(
        "POST",
        "/api/recommendations/{id}/dismiss",
        "dismissRecommendation",
        "Dismiss a recommendation (``reason`` required)",
        "recommendations",
        {200: StoredRecommendation},
        params=(_id("recommendation"),),
        body=RecommendationAction,
        errors=frozenset({409}),
    ),
    *_crud(
        "configuration",
        "CatalogEntry",
        "/api/config/catalog",
        "/api/config/catalog/{resourceType}/{catalogId}",
        CatalogEntry,
        CatalogCreate,
        CatalogPatch,
        item_params=(_RESOURCE_TYPE, Param("catalogId", Name, "the entry's id", "path")),
        list_params=(Param("resourceType", Filter, "only entries of this type"),),
    ),
    Route(
        "GET",
        "/api/config/catalog/{resourceType}",
        "listCatalogEntriesOfType",
        "The catalog entries of one resource type (a page)",
        "configuration",
        {200: Page[CatalogEntry]},
        params=(_RESOURCE_TYPE, *_PAGE),
    ),
    *_crud(
        "configuration",
        "Customer",
        "/api/config/customers",
        "/api/config/customers/{customerId}",
        Customer,
        CustomerCreate,
        CustomerPatch,
        item_params=(_customer(),),
    ),
    *_crud(
        "configuration",
        "Resource",
        "/api/config/customers/{customerId}/resources",
        "/api/config/customers/{customerId}/resources/{resourceKey}",
        ResourceConfig,
        ResourceCreate,
        ResourcePatch,
        params=(_customer(),),
        item_params=(_RESOURCE_KEY,),
    ),
    *_crud(
        "configuration",
        "CostModel",
        "/api/config/cost-models",
        "/api/config/cost-models/{id}",
        CostModelView,
        CostModelCreate,
        CostModelPatch,
        item_params=(_id("cost model"),),
    ),
    Route(
        "GET",
        "/api/stream",
        "stream",
        "Live events (Server-Sent Events): usage, alert, recommendation, heartbeat",
        "stream",
        {200: Text("text/event-stream")},
        params=(
            _CUSTOMER_FILTER,
            Param("token", Filter, "a token from ``POST /api/stream/token`` (for EventSource)"),
            Param("Last-Event-ID", Header, "resume after this event id", "header"),
        ),
        description="An endless response: events as they happen, a heartbeat every 15 s.",
    ),
    Route(
        "POST",
        "/api/stream/token",
        "streamToken",
        "A short-lived token for ``GET /api/stream?token=`` (browsers' EventSource)",
        "stream",
        {200: StreamToken},
        params=(_CUSTOMER_FILTER,),
    ),
    Route("GET", "/", "dashboard", "The dashboard (docs/dashboard.md)", "dashboard",
          {200: Text("text/html")}),
    Route("GET", "/ui/login", "dashboardLoginPage", "The dashboard's login page", "dashboard",
          {200: Text("text/html")}),
    Route("POST", "/ui/login", "dashboardLogin",
          "An API key in, a signed session cookie (resmon_session) and its CSRF token out",
          "dashboard", {200: SessionView}, body=Login, errors=frozenset({401, 403}),
          description=("The cookie is HttpOnly, SameSite=Strict (Secure behind https) and "
                       "stands for the key on every route; a change made with it needs the "
                       "`csrfToken` in `X-CSRF-Token`. A bad key is 401, one without the "
                       "`read` scope 403.")),
    Route("POST", "/ui/logout", "dashboardLogout", "Clear the session cookie", "dashboard",
          {200: LoggedOut}),
    Route("GET", "/ui/session", "dashboardSession",
          "Who is logged in: key, scopes, visible customers, the session's CSRF token",
          "dashboard", {200: SessionView}),
    Route("GET", "/ui/static/{path}", "dashboardFile", "A file of the dashboard (ES modules, "
          "styles, vendored uPlot)", "dashboard", {200: Text("application/octet-stream")},
          params=(Param("path", Name, "the file, under hub/api/static/", "path", True),),
          errors=frozenset({404})),
)  # fmt: skip

_TITLE: Final = "resmon monitoring API"
_VERSION: Final = "1.0.0"
_REF: Final = "#/components/schemas/{name}"
_SECURITY: Final[list[dict[str, list[str]]]] = [{"bearerKey": []}, {"headerKey": []}]
_DEFAULT_ERRORS: Final = frozenset({400, 503})
_KEYED_ERRORS: Final = frozenset({401, 403, 404, 429})
_BODY_ERRORS: Final = frozenset({413, 415})


def _types() -> list[Any]:
    """Every type the document shows, in a fixed order (Problem first)."""
    found: list[Any] = [Problem]
    for route in ROUTES:
        found.extend(p.type for p in route.params)
        if route.body is not None:
            found.append(route.body)
        found.extend(
            t for t in route.responses.values() if t is not None and not isinstance(t, Text)
        )
    return found


def _error_statuses(route: Route) -> list[int]:
    keyed = required_scope(route.method, route.path) is not None
    statuses = set(_DEFAULT_ERRORS | route.errors)
    if keyed:
        statuses |= _KEYED_ERRORS
    if route.body is not None:
        statuses |= _BODY_ERRORS
    return sorted(statuses - set(route.responses))


def _operation(route: Route, schema: Any) -> dict[str, Any]:
    """The operation object of ``route``; ``schema(type)`` is the type's (referencing) schema."""
    scope = required_scope(route.method, route.path)
    op: dict[str, Any] = {
        "operationId": route.operation_id,
        "summary": route.summary,
        "tags": [route.tag],
    }
    if route.description:
        op["description"] = route.description
    if route.params:
        op["parameters"] = [
            {
                "name": p.name,
                "in": p.location,
                "description": p.description,
                "required": p.required or p.location == "path",
                "schema": schema(p.type),
            }
            for p in route.params
        ]
    if route.body is not None:
        op["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": schema(route.body)}},
        }
    responses: dict[str, Any] = {}
    for status, kind in sorted(route.responses.items()):
        answer: dict[str, Any] = {"description": _reason(status)}
        if isinstance(kind, Text):
            parsed = dict(kind.schema) if kind.schema is not None else {"type": "string"}
            answer["content"] = {kind.media_type: {"schema": parsed}}
        elif kind is not None:
            answer["content"] = {"application/json": {"schema": schema(kind)}}
        responses[str(status)] = answer
    for status in _error_statuses(route):
        responses[str(status)] = {"$ref": f"#/components/responses/{_problem_name(status)}"}
    op["responses"] = responses
    if scope is None:
        op["security"] = []
    else:
        op["security"] = _SECURITY
        op["x-resmon-scope"] = scope
        op["description"] = (
            op.get("description", "") + f"\n\nNeeds a key with the `{scope}` scope."
        ).strip()
    return op


def _reason(status: int) -> str:
    return http.HTTPStatus(status).phrase


def _problem_name(status: int) -> str:
    kind = PROBLEM_TYPES[status][0]
    return "".join(part.capitalize() for part in kind.split("-"))


@functools.cache
def document() -> dict[str, Any]:
    """The OpenAPI 3.1 document of :data:`ROUTES`."""
    types = _types()
    schemas, components = msgspec.json.schema_components(types, ref_template=_REF)
    components = _refined(components)
    by_type = dict(zip(map(_key, types), schemas, strict=True))

    def schema(kind: Any) -> Any:
        return by_type[_key(kind)]

    paths: dict[str, dict[str, Any]] = {}
    for route in ROUTES:
        paths.setdefault(route.path, {})[route.method.lower()] = _operation(route, schema)
    problem = schema(Problem)
    used = sorted({s for r in ROUTES for s in _error_statuses(r)})
    return {
        "openapi": "3.1.0",
        "info": {
            "title": _TITLE,
            "version": _VERSION,
            "description": (
                "Usage, alerts, costs, forecasts and recommendations of an ISP's "
                "customers. Errors are RFC 9457 problem details "
                "(`application/problem+json`); see docs/api.md."
            ),
        },
        "tags": [{"name": t} for t in dict.fromkeys(r.tag for r in ROUTES)],
        "paths": paths,
        "components": {
            "schemas": components,
            "responses": {
                _problem_name(status): {
                    "description": PROBLEM_TYPES[status][1],
                    "content": {PROBLEM_JSON: {"schema": problem}},
                }
                for status in used
            },
            "securitySchemes": {
                "bearerKey": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "an API key: `Authorization: Bearer rsm_...`",
                },
                "headerKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
            },
        },
    }


#: a finite decimal as msgspec reads and writes ``Decimal`` (``12.5``, ``-3``, ``1E+3``)
_DECIMAL: Final = "^[+-]?([0-9]+(\\.[0-9]*)?|\\.[0-9]+)([eE][+-]?[0-9]+)?$"


_NO_NUL: Final = "^[^\\u0000]*$"


def _refined(node: Any) -> Any:
    """``node`` with what msgspec's schemas leave out and the hub checks.

    msgspec writes a Decimal as ``{"type": "string", "format": "decimal"}``; it
    encodes one as a string and decodes a decimal string or a number. A string
    with NUL is refused (400) wherever it is in a body.
    """
    if isinstance(node, dict):
        if node.get("type") == "string" and node.get("format") == "decimal":
            return {"anyOf": [{**node, "pattern": _DECIMAL}, {"type": "number"}]}
        if node.get("type") == "string" and not node.keys() & {"pattern", "format", "enum"}:
            node = {**node, "pattern": _NO_NUL}  # the hub refuses NUL (PostgreSQL cannot store it)
        return {k: _refined(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_refined(v) for v in node]
    return node


def _key(kind: Any) -> str:
    return repr(kind)


def render() -> str:
    """The document as YAML (the committed docs/openapi-monitoring.yaml)."""
    return yaml.safe_dump(document(), sort_keys=False, allow_unicode=True, width=100)


_DOCS_PAGE: Final = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>resmon monitoring API</title>
</head>
<body>
<redoc spec-url="/api/openapi.yaml"></redoc>
<script src="/api/docs/redoc.standalone.js"></script>
</body>
</html>
"""


@functools.cache
def _viewer() -> bytes:
    return (importlib.resources.files(__package__) / "static" / "redoc.standalone.js").read_bytes()


async def _openapi_yaml(request: web.Request) -> web.Response:
    return web.Response(text=render(), content_type="application/yaml")


async def _docs(request: web.Request) -> web.Response:
    return web.Response(text=_DOCS_PAGE, content_type="text/html")


async def _docs_viewer(request: web.Request) -> web.Response:
    headers = {hdrs.CACHE_CONTROL: "public, max-age=86400"}
    return web.Response(body=_viewer(), content_type="text/javascript", headers=headers)


def add_contract_routes(app: web.Application) -> None:
    """``/api/openapi.yaml``, ``/api/docs`` and its viewer (public)."""
    app.router.add_get("/api/openapi.yaml", _openapi_yaml)
    app.router.add_get("/api/docs", _docs)
    app.router.add_get("/api/docs/redoc.standalone.js", _docs_viewer)
