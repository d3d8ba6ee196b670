"""Who is calling: the API key of each request, its scopes and its tenant.

Every route but the public ones (:data:`PUBLIC`) needs a key, sent as
``Authorization: Bearer <key>`` or ``X-API-Key: <key>``, or credentials that
stand for one (:func:`add_authenticator`: the stream token, the dashboard's
session cookie of ``hub/api/ui.py``, with the key's tenant, customers and
scopes). A missing, malformed, unknown, revoked or expired key is 401 (with
``WWW-Authenticate: Bearer``); a key without the route's scope is 403. Objects
of another tenant, or of a customer a restricted key is not for, are 404,
exactly like objects that do not exist, so a key cannot learn what other tenants have.

Each route's scope is in :data:`ROUTE_SCOPES`; :func:`check_routes` refuses to
build an app with a route that is in neither table.
"""

from __future__ import annotations

import datetime as dt
import weakref
from collections.abc import Awaitable, Callable, Iterable
from typing import Final

import structlog
from aiohttp import hdrs, web

from .._exceptions import HubError, NotFoundError
from ..apikeys import KeyFormatError, check_key
from ..storage.apikeys import ApiKey, Toucher, find_key, tenant_of_customer, touch_key
from ..storage.provision import DEFAULT_TENANT
from ._http import context_of, error_response

__all__ = [
    "PUBLIC",
    "ROUTE_SCOPES",
    "Authenticator",
    "add_authenticator",
    "authenticate",
    "caller_of",
    "check_customer",
    "check_routes",
    "check_tenant",
    "current_scope",
    "forget_customers",
    "refuse_inactive",
    "required_scope",
    "unauthorized",
]

_log = structlog.get_logger(component="hub.api.auth")

#: routes anyone may call (``GET`` and its ``HEAD``): health, metrics, and the contract to come
PUBLIC: Final = frozenset(
    {"/healthz", "/metrics", "/readyz", "/api/openapi.yaml", "/api/docs"}
    | {"/", "/ui/login", "/ui/logout", "/ui/static/{path}"}  # the dashboard, its login, files
    | {"/api/docs/redoc.standalone.js"}  # the viewer /api/docs loads
)

#: (method, route path) -> the scope a key needs for it
ROUTE_SCOPES: Final[dict[tuple[str, str], str]] = {
    ("POST", "/api/metrics/ingest"): "ingest",
    ("GET", "/api/metrics/customer/{customerId}/current"): "read",
    ("GET", "/api/monitoring/customers/{customerId}/resources"): "read",
    ("GET", "/api/alerts"): "read",
    ("GET", "/api/alerts/{id}"): "read",
    ("GET", "/api/alerts/{id}/history"): "read",
    ("POST", "/api/alerts/{id}/acknowledge"): "write",
    ("POST", "/api/alerts/{id}/resolve"): "write",
    ("GET", "/api/customers/{customerId}/notification-preferences"): "read",
    ("PUT", "/api/customers/{customerId}/notification-preferences"): "write",
    ("GET", "/api/tenants/{tenantId}/notification-preferences"): "read",
    ("PUT", "/api/tenants/{tenantId}/notification-preferences"): "write",
    ("GET", "/api/notifications"): "read",
    ("GET", "/api/keys"): "admin",
    ("POST", "/api/keys"): "admin",
    ("DELETE", "/api/keys/{id}"): "admin",
    ("GET", "/api/costs/customers/{customerId}"): "read",
    ("GET", "/api/costs/customers/{customerId}/resources/{resourceKey}"): "read",
    ("GET", "/api/forecasts/customers/{customerId}"): "read",
    ("GET", "/api/recommendations"): "read",
    ("POST", "/api/recommendations/{id}/apply"): "write",
    ("POST", "/api/recommendations/{id}/dismiss"): "write",
    ("GET", "/api/stream"): "read",
    ("POST", "/api/stream/token"): "read",
    ("GET", "/api/config/catalog"): "read",
    ("POST", "/api/config/catalog"): "write",
    ("GET", "/api/config/catalog/{resourceType}"): "read",
    ("GET", "/api/config/catalog/{resourceType}/{catalogId}"): "read",
    ("PATCH", "/api/config/catalog/{resourceType}/{catalogId}"): "write",
    ("DELETE", "/api/config/catalog/{resourceType}/{catalogId}"): "write",
    ("GET", "/api/config/customers"): "read",
    ("POST", "/api/config/customers"): "write",
    ("GET", "/api/config/customers/{customerId}"): "read",
    ("PATCH", "/api/config/customers/{customerId}"): "write",
    ("DELETE", "/api/config/customers/{customerId}"): "write",
    ("GET", "/api/config/customers/{customerId}/resources"): "read",
    ("POST", "/api/config/customers/{customerId}/resources"): "write",
    ("GET", "/api/config/customers/{customerId}/resources/{resourceKey}"): "read",
    ("PATCH", "/api/config/customers/{customerId}/resources/{resourceKey}"): "write",
    ("DELETE", "/api/config/customers/{customerId}/resources/{resourceKey}"): "write",
    ("GET", "/api/config/cost-models"): "read",
    ("POST", "/api/config/cost-models"): "write",
    ("GET", "/api/config/cost-models/{id}"): "read",
    ("PATCH", "/api/config/cost-models/{id}"): "write",
    ("DELETE", "/api/config/cost-models/{id}"): "write",
    ("GET", "/api/usage/customers/{customerId}/resources/{resourceKey}/history"): "read",
    ("GET", "/ui/session"): "read",
}


class _Tenants:
    """customer id -> tenant id, as :func:`check_customer` learnt it."""

    def __init__(self) -> None:
        self.of: dict[str, str] = {}
        #: customer id -> keys of its resources the ingest route found stored
        self.resources: dict[str, set[str]] = {}


#: the memo of every app of this process (see :func:`forget_customers`)
_MEMOS: Final[weakref.WeakSet[_Tenants]] = weakref.WeakSet()


_CALLER: Final = web.RequestKey("caller", ApiKey)
_SCOPE: Final = web.RequestKey("route_scope", str)
_AUTHENTICATORS: Final = web.AppKey("authenticators", list)
_TOUCHER: Final = web.AppKey("key_toucher", Toucher)
_TENANTS: Final = web.AppKey("customer_tenants", _Tenants)
_CHALLENGE: Final = 'Bearer realm="resmon"'
#: at most this many customers' tenants are remembered
_REMEMBERED: Final = 100_000


def _route(request: web.Request) -> tuple[str, str | None]:
    """(method, route path) of the matched route; path None when no route matched."""
    resource = request.match_info.route.resource
    method = hdrs.METH_GET if request.method == hdrs.METH_HEAD else request.method
    return method, (resource.canonical if resource is not None else None)


def required_scope(method: str, path: str) -> str | None:
    """The scope ``method path`` needs; None for a public route. KeyError for an unknown one."""
    if path in PUBLIC:
        return None
    return ROUTE_SCOPES[(method, path)]


def check_routes(routes: Iterable[web.AbstractRoute]) -> None:
    """RuntimeError for a route that is neither public nor in :data:`ROUTE_SCOPES`."""
    for route in routes:
        if route.method == hdrs.METH_HEAD or route.resource is None:
            continue
        try:
            required_scope(route.method, route.resource.canonical)
        except KeyError:
            raise RuntimeError(
                f"route {route.method} {route.resource.canonical} has no scope: add it to "
                "hub.api.auth.ROUTE_SCOPES (or PUBLIC)"
            ) from None


def unauthorized(message: str) -> web.Response:
    """A 401 with the Bearer challenge and ``message``."""
    return _unauthorized(message)


def _unauthorized(message: str) -> web.Response:
    response = error_response(401, message, "Authorization")
    response.headers[hdrs.WWW_AUTHENTICATE] = _CHALLENGE
    return response


def _presented(request: web.Request) -> str | None:
    header = request.headers.get(hdrs.AUTHORIZATION)
    if header is not None:
        scheme, _, value = header.strip().partition(" ")
        return value.strip() if scheme.lower() == "bearer" else ""
    given = request.headers.get("X-API-Key")
    return given.strip() if given is not None else None


#: another way to present credentials than the key headers (the stream token, a dashboard
#: session): the key the request stands for, a refusal, or None when the request does
#: not use this way (the next one is tried). Register with :func:`add_authenticator`.
Authenticator = Callable[[web.Request], Awaitable[ApiKey | web.Response | None]]


def add_authenticator(app: web.Application, authenticator: Authenticator) -> None:
    """Accept ``authenticator``'s credentials on requests that send no key header."""
    app[_AUTHENTICATORS].append(authenticator)


async def _presented_key(request: web.Request) -> ApiKey | web.Response:
    """The valid, active key of the request, or the 401 refusing it."""
    ctx = context_of(request)
    metrics = ctx.metrics
    presented = _presented(request)
    if presented is None:
        for other in request.app[_AUTHENTICATORS]:
            got: ApiKey | web.Response | None = await other(request)
            if got is not None:
                return got
        metrics.auth_refused.labels("missing").inc()
        return _unauthorized(
            "an API key is required: send `Authorization: Bearer <key>` or `X-API-Key: <key>`"
            " (or log in at /ui/login)"
        )
    if presented == "":
        metrics.auth_refused.labels("malformed").inc()
        return _unauthorized("the Authorization header must read `Bearer <key>`")
    try:
        check_key(presented)
    except KeyFormatError as exc:
        metrics.auth_refused.labels("malformed").inc()
        _log.info("api_key_refused", reason="malformed", path=request.path)
        return _unauthorized(str(exc))
    key = await find_key(ctx.db, ctx.config.api_key_secret, presented)
    return refuse_inactive(request, key)


def refuse_inactive(request: web.Request, key: ApiKey | None) -> ApiKey | web.Response:
    """``key`` if it exists and is neither revoked nor expired, else the 401 (counted)."""
    now = dt.datetime.now(dt.UTC)
    reason = (
        "unknown"
        if key is None
        else "revoked"
        if key.revoked_at is not None
        else "expired"
        if key.expires_at is not None and key.expires_at <= now
        else None
    )
    if key is None or reason is not None:
        context_of(request).metrics.auth_refused.labels(reason or "unknown").inc()
        _log.info("api_key_refused", reason=reason, key_id=key.id if key else None)
        return _unauthorized(f"the API key is {reason}")
    return key


async def _refusal(request: web.Request, scope: str | None) -> web.Response | None:
    """None if the request's key is valid and has ``scope`` (any scope when None)."""
    ctx = context_of(request)
    metrics = ctx.metrics
    key = await _presented_key(request)
    if isinstance(key, web.Response):
        return key
    if scope is not None and scope not in key.scopes:
        metrics.auth_refused.labels("scope").inc()
        _log.info("api_key_lacks_scope", key_id=key.id, scope=scope, path=request.path)
        return error_response(403, f"this API key lacks the {scope!r} scope", "Authorization")
    request[_CALLER] = key
    if scope is not None:
        request[_SCOPE] = scope
    if request.app[_TOUCHER].due(key.id):
        try:
            await touch_key(ctx.db, key.id)
        except HubError as exc:  # the request goes on; the last-used time is a hint
            metrics.storage_failures.labels("api_key_touch").inc()
            _log.warning("api_key_touch_failed", key_id=key.id, error=str(exc))
    return None


@web.middleware
async def authenticate(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Check the request's API key against its route's scope (unmatched paths need a key)."""
    method, path = _route(request)
    if path is not None and path in PUBLIC:
        return await handler(request)
    scope = ROUTE_SCOPES.get((method, path)) if path is not None else None
    if (refused := await _refusal(request, scope)) is not None:
        return refused
    return await handler(request)


def setup(app: web.Application) -> None:
    """What :func:`authenticate` keeps per app; call before serving."""
    app[_TOUCHER] = Toucher()
    app[_AUTHENTICATORS] = []
    memo = _Tenants()
    _MEMOS.add(memo)
    app[_TENANTS] = memo
    app[_AUTHENTICATORS] = []


def forget_customers(customer_ids: Iterable[str] | None) -> None:
    """Make every app of this process read these customers' tenants again (None: all).

    A deleted customer's id can be created again, in another tenant: each hub
    calls this when it hears that a customer changed.
    """
    for memo in list(_MEMOS):
        if customer_ids is None:
            memo.of.clear()
            memo.resources.clear()
        else:
            for customer_id in customer_ids:
                memo.of.pop(customer_id, None)
                memo.resources.pop(customer_id, None)


def stored_resources(request: web.Request) -> dict[str, set[str]]:
    """Customer id -> keys of its resources known to be stored; forgotten with the
    customer (:func:`forget_customers`, on any change notice of the customer's)."""
    return request.app[_TENANTS].resources


def customer_tenants(request: web.Request) -> dict[str, str]:
    """Customer id -> tenant id of the customers this app has seen; add to it with
    :func:`remember_tenant` (a deleted customer is forgotten: :func:`forget_customers`)."""
    return request.app[_TENANTS].of


def remember_tenant(request: web.Request, customer_id: str, tenant_id: str) -> None:
    known = customer_tenants(request)
    if len(known) < _REMEMBERED:
        known[customer_id] = tenant_id


def caller_of(request: web.Request) -> ApiKey:
    """The key the request was authenticated with."""
    return request[_CALLER]


def current_scope(request: web.Request) -> str | None:
    """The scope the request's route needed (None: a public route, or no route matched)."""
    return request.get(_SCOPE)


async def check_customer(request: web.Request, customer_id: str) -> None:
    """NotFoundError unless the caller's key may see ``customer_id`` (its tenant, its customers).

    An unknown customer is also NotFoundError; a customer's tenant is remembered
    until :func:`forget_customers` (a customer is deleted before its id can
    belong to another tenant).
    """
    key = caller_of(request)
    missing = NotFoundError(f"customer {customer_id!r} not found")
    if key.customer_ids is not None and customer_id not in key.customer_ids:
        raise missing
    tenant = customer_tenants(request).get(customer_id)
    if tenant is None:
        tenant = await tenant_of_customer(context_of(request).db, customer_id)
        if tenant is None:
            raise missing
        remember_tenant(request, customer_id, tenant)
    if tenant != key.tenant_id:
        raise missing


def check_tenant(request: web.Request, tenant: str) -> str:
    """The caller's tenant id if ``tenant`` names it (``default``: the default tenant).

    NotFoundError for another tenant, and for a key restricted to customers.
    """
    key = caller_of(request)
    wanted = DEFAULT_TENANT if tenant == "default" else tenant
    if wanted != key.tenant_id or key.customer_ids is not None:
        raise NotFoundError(f"tenant {tenant!r} not found")
    return key.tenant_id
