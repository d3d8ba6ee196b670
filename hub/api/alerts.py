"""Alert and notification routes. Errors are problem details (docs/api.md).

=======  ===============================================  ==================================
method   path                                             what
=======  ===============================================  ==================================
GET      /api/alerts?status=&severity=&type=&customerId=  alerts, newest first; also
         &resourceKey=&from=&to=&limit=&cursor=         ``resourceKey``, ``from``/``to``
GET      /api/alerts/{id}                                 one alert
GET      /api/alerts/{id}/history                         audit trail of its episode
POST     /api/alerts/{id}/acknowledge                     ``{"by": "...", "comment": "..."}``
POST     /api/alerts/{id}/resolve                         (``by`` default: the API key's name)
GET/PUT  /api/customers/{customerId}/notification-preferences  effective / the customer's own
GET/PUT  /api/tenants/{tenantId}/notification-preferences  tenant default (``default`` = built-in)
GET      /api/notifications?status=&customerId=&alertId=  notification log, retries,
         &limit=&cursor=                                 dead letters (``status=DEAD``)
=======  ===============================================  ==================================

Both lists are pages ``{"items": [...], "next": cursor | null}`` (see
:mod:`hub.api._pagination`); ``from``/``to`` bound the alerts' creation time
(ISO 8601, ``[from, to)``).

An illegal transition (acknowledging a RESOLVED alert, resolving twice) is
409 with the current status in the message. Webhook URLs are shown as
``scheme://host/***`` and secrets as ``***``.
"""

from __future__ import annotations

import uuid
from typing import Final

import msgspec
import structlog
from aiohttp import hdrs, web

from .._exceptions import HubError, NotFoundError, storage_errors
from ..alerts import lifecycle
from ..notify import log as notify_log
from ..notify._exceptions import PreferencesError
from ..notify.preferences import Stored, decode_preferences, masked, save_preferences
from ..notify.preferences import stored_preferences as load_preferences
from ..notify.settings import NotifyConfig
from ..storage import queries
from ..storage.provision import connection
from ._http import (
    ApiContext,
    context_of,
    error_response,
    etag_of,
    json_response,
    precondition_failure,
)
from ._pagination import Instant, Serial, page, page_request
from ._params import choice, iso_time
from .auth import caller_of, check_customer, check_tenant
from .stream import publish_change

__all__ = ["add_alert_routes"]

_encoder = msgspec.json.Encoder(decimal_format="string")
_log = structlog.get_logger(component="hub.api.alerts")
_STATUSES: Final = frozenset({"ACTIVE", "ACKNOWLEDGED", "RESOLVED"})
_LOG_STATUSES: Final = frozenset({"PENDING", "SENDING", "SENT", "DEAD", "SUPPRESSED"})
_SEVERITIES: Final = frozenset({"LOW", "MEDIUM", "HIGH", "CRITICAL"})
_TYPES: Final = frozenset(
    {"THRESHOLD_WARNING", "THRESHOLD_CRITICAL", "ANOMALY_DETECTED", "FORECAST_LIMIT"}
)


class AlertAction(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    by: str | None = None
    comment: str | None = None


_action_decoder = msgspec.json.Decoder(AlertAction)


def _notify_config(ctx: ApiContext) -> NotifyConfig:
    config = getattr(ctx.config, "notify", None)
    return config if isinstance(config, NotifyConfig) else NotifyConfig()


async def list_alerts(request: web.Request) -> web.Response:
    q = request.query
    status = choice(q, "status", _STATUSES)
    severity = choice(q, "severity", _SEVERITIES)
    alert_type = choice(q, "type", _TYPES)
    since, until = iso_time(q, "from"), iso_time(q, "to")
    if since is not None and until is not None and since >= until:
        return error_response(400, "from must be before to", "from")
    wanted = page_request(q, (Instant, uuid.UUID))
    customer = await _customer_filter(request)
    key = caller_of(request)
    rows = await queries.list_alerts(
        context_of(request).db,
        status=status,
        severity=severity,
        alert_type=alert_type,
        since=since,
        until=until,
        customer_id=customer,
        resource_key=q.get("resourceKey"),
        limit=wanted.limit + 1,
        after=wanted.after,
        tenant_id=key.tenant_id,
        customer_ids=key.customer_ids,
    )
    return json_response(page(rows, wanted, lambda a: (a.created_at, a.id)))


async def _customer_filter(request: web.Request) -> str | None:
    """The ``customerId`` filter, if any; NotFoundError for a customer the key cannot see."""
    customer = request.query.get("customerId")
    if customer is not None:
        await check_customer(request, customer)
    return customer


async def _visible_alert(request: web.Request, alert_id: str) -> queries.AlertRow:
    """The alert, if the caller's key may see its customer; else NotFoundError as for none."""
    row = await lifecycle.get_alert(context_of(request).db, alert_id)
    try:
        await check_customer(request, row.customer_id)
    except NotFoundError:
        raise NotFoundError(f"alert {alert_id} not found") from None
    return row


async def get_alert(request: web.Request) -> web.Response:
    return json_response(await _visible_alert(request, request.match_info["id"]))


async def history(request: web.Request) -> web.Response:
    alert_id = request.match_info["id"]
    await _visible_alert(request, alert_id)
    return json_response(await lifecycle.history(context_of(request).db, alert_id))


def _actor(request: web.Request, action: AlertAction) -> str:
    """Who acts: the body's ``by``, else the name of the caller's API key."""
    return action.by.strip() if action.by and action.by.strip() else caller_of(request).name


async def _action(request: web.Request) -> AlertAction | web.Response:
    raw = await request.read()
    try:
        return _action_decoder.decode(raw) if raw.strip() else AlertAction()
    except msgspec.ValidationError as exc:
        return error_response(400, str(exc), "body")
    except msgspec.DecodeError as exc:
        return error_response(400, f"body is not valid JSON: {exc}", "body")


async def acknowledge(request: web.Request) -> web.Response:
    action = await _action(request)
    if isinstance(action, web.Response):
        return action
    alert_id = request.match_info["id"]
    await _visible_alert(request, alert_id)
    try:
        row = await lifecycle.acknowledge(
            context_of(request).db, alert_id, _actor(request, action), action.comment
        )
    except lifecycle.IllegalTransitionError as exc:
        return error_response(409, str(exc), "status")
    except ValueError as exc:
        return error_response(400, str(exc), "body")
    await _published(request, row, "acknowledged")
    return json_response(row)


async def _published(request: web.Request, row: queries.AlertRow, change: str) -> None:
    data = {"alertId": row.id, "change": change, **msgspec.to_builtins(row)}
    await publish_change(request, "alert", row.customer_id, data)


async def resolve(request: web.Request) -> web.Response:
    action = await _action(request)
    if isinstance(action, web.Response):
        return action
    ctx = context_of(request)
    alert_id = request.match_info["id"]
    await _visible_alert(request, alert_id)
    try:
        row = await lifecycle.resolve(ctx.db, alert_id, _actor(request, action), action.comment)
    except lifecycle.IllegalTransitionError as exc:
        return error_response(409, str(exc), "status")
    except ValueError as exc:
        return error_response(400, str(exc), "body")
    if ctx.cache is not None:
        try:
            await ctx.cache.forget_alert(row.customer_id, row.resource_key)
        except HubError as exc:
            _log.warning("cache_update_failed", error=str(exc))
    await _published(request, row, "resolved")
    return json_response(row)


def _shown(stored: Stored) -> Stored:
    return msgspec.structs.replace(stored, preferences=masked(stored.preferences))


def _tenant(request: web.Request) -> str:
    return check_tenant(request, request.match_info["tenantId"])


async def _customer(request: web.Request) -> str:
    customer = request.match_info["customerId"]
    await check_customer(request, customer)
    return customer


def _prefs_answer(stored: Stored) -> web.Response:
    """The preferences as shown (secrets masked), with their ``ETag``."""
    body = _encoder.encode(_shown(stored))
    return web.Response(
        body=body, content_type="application/json", headers={hdrs.ETAG: etag_of(body)}
    )


async def get_customer_prefs(request: web.Request) -> web.Response:
    stored = await load_preferences(context_of(request).db, customer_id=await _customer(request))
    return _prefs_answer(stored)


async def get_tenant_prefs(request: web.Request) -> web.Response:
    stored = await load_preferences(context_of(request).db, tenant_id=_tenant(request))
    return _prefs_answer(stored)


async def _put(request: web.Request, **scope: str) -> web.Response:
    """Replace the preferences of ``scope``, once ``If-Match`` names their current ETag.

    The check and the write hold a transaction-scoped advisory lock on the scope,
    so of two writers that read the same version one wins and the other gets 412
    (there may be no row to lock yet: the first write creates it).
    """
    ctx = context_of(request)
    try:
        prefs = decode_preferences(await request.read(), _notify_config(ctx).allow_networks)
    except PreferencesError as exc:
        return error_response(400, str(exc), exc.where)
    by = request.headers.get("X-Resmon-User") or caller_of(request).name
    ((what, who),) = scope.items()
    with storage_errors(ctx.config.database_address):
        async with connection(ctx.db) as conn, conn.transaction():
            await conn.execute(
                "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))",
                f"resmon-preferences:{what}:{who}",
            )
            current = _encoder.encode(_shown(await load_preferences(conn, **scope)))
            failure = precondition_failure(
                request.headers.get(hdrs.IF_MATCH), request.method, etag_of(current)
            )
            if failure is not None:
                return error_response(*failure, "If-Match")
            stored = await save_preferences(conn, prefs, by=by, **scope)
    _log.info("notification_preferences_saved", **scope)
    return _prefs_answer(stored)


async def put_customer_prefs(request: web.Request) -> web.Response:
    return await _put(request, customer_id=await _customer(request))


async def put_tenant_prefs(request: web.Request) -> web.Response:
    return await _put(request, tenant_id=_tenant(request))


async def notifications(request: web.Request) -> web.Response:
    q = request.query
    status = choice(q, "status", _LOG_STATUSES)
    wanted = page_request(q, (Serial,))
    alert_id = q.get("alertId")
    if alert_id is not None:
        try:
            uuid.UUID(alert_id)
        except ValueError:
            return error_response(
                400, f"alertId {alert_id!r} is not an alert id (a UUID)", "alertId"
            )
        await _visible_alert(request, alert_id)  # 404 for an unknown (or another's) id
    customer = await _customer_filter(request)
    key = caller_of(request)
    rows = await notify_log.list_log(
        context_of(request).db,
        status=status,
        customer_id=customer,
        alert_id=alert_id,
        limit=wanted.limit + 1,
        before_id=wanted.after[0] if wanted.after is not None else None,
        tenant_id=key.tenant_id,
        customer_ids=key.customer_ids,
    )
    return json_response(page(rows, wanted, lambda n: (n.id,)))


def add_alert_routes(app: web.Application) -> None:
    r = app.router
    r.add_get("/api/alerts", list_alerts)
    r.add_get("/api/alerts/{id}", get_alert)
    r.add_get("/api/alerts/{id}/history", history)
    r.add_post("/api/alerts/{id}/acknowledge", acknowledge)
    r.add_post("/api/alerts/{id}/resolve", resolve)
    r.add_get("/api/customers/{customerId}/notification-preferences", get_customer_prefs)
    r.add_put("/api/customers/{customerId}/notification-preferences", put_customer_prefs)
    r.add_get("/api/tenants/{tenantId}/notification-preferences", get_tenant_prefs)
    r.add_put("/api/tenants/{tenantId}/notification-preferences", put_tenant_prefs)
    r.add_get("/api/notifications", notifications)
