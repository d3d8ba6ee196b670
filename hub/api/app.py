"""REST routes. Errors are RFC 9457 problem details (hub/api/_http.py, docs/api.md).

=======  ==============================================  =====================================
method   path                                            what
=======  ==============================================  =====================================
GET      /healthz                                        PostgreSQL reachable -> 200, else 503
GET      /readyz                                         PostgreSQL, Redis, Kafka answer -> 200,
                                                         else 503 naming each failing check
GET      /metrics                                        Prometheus text
POST     /api/metrics/ingest                             UsageEvent or list -> 200 + event ids
GET      /api/metrics/customer/{customerId}/current      usage now (Redis, else PostgreSQL)
GET      /api/monitoring/customers/{customerId}/resources  resources as stored
*        /api/alerts/..., /api/notifications, ...      alerts, preferences: see api/alerts.py
GET      /api/costs/customers/{customerId}[/resources/{resourceKey}]  bills: see api/costs.py
GET      /api/forecasts/customers/{customerId}           stored forecasts: see api/forecasts.py
*        /api/config/...                                 configuration CRUD: see api/config.py
GET      /api/usage/customers/{customerId}/resources/{resourceKey}/history  usage series
                                                         (raw/hourly/daily): see api/usage.py
*        /api/recommendations[/{id}/apply|dismiss]     advice: see api/recommendations.py
*        /, /ui/login, /ui/logout, /ui/session, /ui/static  the dashboard: see api/ui.py
GET      /api/stream, POST /api/stream/token            live events (SSE): see api/stream.py
=======  ==============================================  =====================================

The lists (alerts, notifications, keys, recommendations) answer pages,
``{"items": [...], "next": cursor | null}`` with ``?limit=`` and ``?cursor=``
(see api/_pagination.py). docs/api.md documents the routes with examples.
"""

from __future__ import annotations

import hashlib
import re
import time
import uuid
from collections.abc import Awaitable, Callable
from decimal import Decimal
from typing import Final

import msgspec
import structlog
from aiohttp import hdrs, web
from prometheus_client import CONTENT_TYPE_LATEST

from protocol import (
    DecodeError,
    UsageEvent,
    UsageReading,
    check_utf8,
    decode_usage_events,
    encode_event,
    to_reading,
    to_rounded_reading,
)

from .._exceptions import HubError, NotFoundError, UnreachableError, storage_errors
from ..kafka import publish_many
from ..storage import queries
from ..storage.apikeys import ApiKey, claim_customers
from ..storage.partitions import retention_horizon_ms
from ..storage.provision import Executor, existing_keys, unprovisionable_types
from ..validation import validate_event_id, validate_reading
from . import auth, ratelimit
from ._http import (
    CONTEXT,
    ApiContext,
    context_of,
    error_response,
    json_response,
    request_path,
    reset_request_path,
)
from .alerts import add_alert_routes
from .config import add_config_routes
from .costs import add_cost_routes
from .forecasts import add_forecast_routes
from .keys import add_key_routes
from .openapi import add_contract_routes
from .ready import readyz
from .recommendations import add_recommendation_routes
from .schemas import Health, IngestResult
from .stream import add_stream_routes
from .ui import add_ui_routes
from .usage import add_usage_routes

__all__ = ["ApiContext", "create_app"]

_log = structlog.get_logger(component="hub.api.app")
_PATH = re.compile(r"at `(\$[^`]*)`")


#: the longest path or query parameter (customer ids, resource keys, filters)
_MAX_PARAM = 500


#: the spellings of a true/false query parameter
_FLAGS: Final = {"true": True, "1": True, "false": False, "0": False}
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
#: at most this many customers' stored resources are remembered by the ingest route
_SEEN_RESOURCES: Final = 100_000


def _refused_body(request: web.Request) -> web.Response | None:
    """A request body that no route reads: anything but JSON (415)."""
    if request.method not in _BODY_METHODS or not request.body_exists:
        return None
    if request.content_type == "application/json":  # parameters (charset=...) are allowed
        return None
    given = request.headers.get(hdrs.CONTENT_TYPE)
    said = f"Content-Type {given!r} is not accepted" if given else "Content-Type is missing"
    return error_response(415, f"{said}; send the body as application/json", "Content-Type")


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def _checked(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Parameters of a sane length and a JSON, UTF-8 body (after the key is checked)."""
    for name, value in (*request.match_info.items(), *request.query.items()):
        if name == "token":  # the stream token, checked (and its length) by authentication
            continue
        if "\x00" in value or len(value) > _MAX_PARAM:
            return error_response(
                400, f"{name} must be at most {_MAX_PARAM} characters, without NUL", name
            )
    if (refused := _refused_body(request)) is not None:
        return refused
    if request.body_exists:  # read once (aiohttp keeps it for the handler): UTF-8 or 400
        body = await request.read()
        check_utf8(body)
        if (at := _nul_at(body)) is not None:
            return error_response(400, f"{at} contains a NUL (\\u0000): it cannot be stored", at)
    return await handler(request)


_ESCAPED_NUL: Final = re.compile(rb"(\\+)u0000")


def _nul_at(body: bytes) -> str | None:
    """The JSON path of the first string of ``body`` with a NUL (``\\u0000``), if any.

    PostgreSQL text cannot hold NUL. None too for a body that is not JSON (its
    route says why).
    """
    if b"u0000" not in body or not any(
        len(m.group(1)) % 2 == 1 for m in _ESCAPED_NUL.finditer(body)
    ):
        return None
    try:
        tree = msgspec.json.decode(body)
    except msgspec.DecodeError:
        return None
    return _nul_in(tree, "$")


def _nul_in(node: object, at: str) -> str | None:
    if isinstance(node, str):
        return at if "\x00" in node else None
    if isinstance(node, list):
        items: list[tuple[str, object]] = [(f"{at}[{i}]", v) for i, v in enumerate(node)]
    elif isinstance(node, dict):
        items = [(f"{at}.{k}", v) for k, v in node.items()]
        if (key := next((k for k in node if "\x00" in k), None)) is not None:
            return f"{at}.{key.replace(chr(0), '?')}"
    else:
        return None
    for path, value in items:
        if (found := _nul_in(value, path)) is not None:
            return found
    return None


@web.middleware
async def _timed(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Time each answer (``resmon_hub_api_request_seconds``); a stream's lifetime is no answer."""
    started = time.perf_counter()
    response = await handler(request)
    if response.content_type != "text/event-stream":
        resource = request.match_info.route.resource
        route = resource.canonical if resource is not None else "unmatched"
        context_of(request).metrics.api_seconds.labels(
            request.method, route, str(response.status)
        ).observe(time.perf_counter() - started)
    return response


@web.middleware
async def _errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every error as problem details, ``instance`` the request path."""
    token = request_path(request.path)
    try:
        return await _answered(request, handler)
    finally:
        reset_request_path(token)


def _http_error(request: web.Request, exc: web.HTTPException) -> web.Response:
    """An aiohttp HTTP error (no route, wrong method, body too large) as problem details."""
    if isinstance(exc, web.HTTPMethodNotAllowed):
        allowed = sorted(exc.allowed_methods)
        response = error_response(
            405,
            f"{request.method} is not allowed on {request.path}; allowed: {', '.join(allowed)}",
            request.path,
        )
        response.headers[hdrs.ALLOW] = ",".join(allowed)
        return response
    if isinstance(exc, web.HTTPNotFound) and exc.text in (None, "404: Not Found"):
        return error_response(404, f"no route {request.path}", request.path)
    detail = exc.text.removeprefix(f"{exc.status}: ") if exc.text else exc.reason
    return error_response(exc.status, detail, request.path)


async def _answered(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except DecodeError as exc:
        return error_response(400, str(exc), exc.where)
    except NotFoundError as exc:
        return error_response(404, str(exc), request.path)
    except UnreachableError as exc:
        return error_response(503, str(exc), exc.variable)
    except HubError as exc:
        _log.error("request_failed", path=request.path, error=str(exc))
        return error_response(503, str(exc), request.path)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return _http_error(request, exc)
    except Exception:  # a bug: answer in problem details like every other error, and log it
        _log.exception("request_crashed", path=request.path)
        return error_response(500, "internal error; the hub's log has the details", request.path)


async def healthz(request: web.Request) -> web.Response:
    ctx = context_of(request)
    with storage_errors(ctx.config.database_address):
        await ctx.db.fetchval("SELECT 1")
    return json_response(Health())


async def metrics(request: web.Request) -> web.Response:
    body = context_of(request).metrics.render()
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def current(request: web.Request) -> web.Response:
    ctx = context_of(request)
    customer = request.match_info["customerId"]
    await auth.check_customer(request, customer)
    if ctx.cache is not None:
        try:
            cached = await ctx.cache.current_usage(customer)
        except HubError as exc:
            _log.warning("cache_read_failed", error=str(exc))
        else:
            if cached is not None:
                return json_response(cached, headers={"X-Resmon-Source": "redis"})
    usage = await queries.current_usage(ctx.db, customer, billing_tz=ctx.config.billing_tz)
    if ctx.cache is not None:
        try:
            await ctx.cache.fill_usage(customer, usage)
        except HubError as exc:
            _log.warning("cache_update_failed", error=str(exc))
    return json_response(usage, headers={"X-Resmon-Source": "postgresql"})


async def resources(request: web.Request) -> web.Response:
    ctx = context_of(request)
    customer = request.match_info["customerId"]
    await auth.check_customer(request, customer)
    tz = ctx.config.billing_tz
    return json_response(await queries.customer_resources(ctx.db, customer, billing_tz=tz))


def _event_id(event: UsageEvent) -> str | None:
    """The CloudEvent id of ``event``; None for one derived from its fields and ``timestamp``.

    A caller's ``eventId`` is scoped to its tenant and customer (two customers may
    use the same one): the id is a hash of the three, so a retry gets the same id.
    Without ``eventId`` and ``timestamp`` there is nothing a retry could be matched
    by, and an id derived from the fields and the arrival time would merge
    distinct events of the same millisecond: such an event gets an id of its own.
    """
    if event.event_id is not None:
        scope = "\x1f".join((event.tenant_id or "", event.customer_id, event.event_id))
        digest = hashlib.blake2b(scope.encode(), digest_size=16, person=b"resmon-ingestid")
        return str(uuid.UUID(bytes=digest.digest()))
    if event.timestamp is not None:
        return None
    return str(uuid.uuid4())


_CLAIM_KEYS = """
INSERT INTO ingest_keys AS k (event_id, resource_key, value, start_ms, end_ms)
SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[], $4::bigint[], $5::bigint[])
ON CONFLICT (event_id) DO UPDATE SET event_id = k.event_id
RETURNING event_id, resource_key, value, start_ms, end_ms"""


async def _claim_event_ids(
    db: Executor, keyed: list[tuple[int, UsageEvent, UsageReading, str]], *, many: bool
) -> dict[int, UsageReading] | web.Response:
    """Remember each caller ``eventId``'s first reading; a retry becomes exactly that one.

    Returns index -> the reading to publish (the stored first one for a retry,
    so its CloudEvent id and event time match and the consumer drops it), or a
    409 when an ``eventId`` was used before for a different resource, value or
    ``timestamp``.
    """
    rows = await db.fetch(
        _CLAIM_KEYS,
        [eid for _, _, _, eid in keyed],
        [r.resource_key for _, _, r, _ in keyed],
        [r.value for _, _, r, _ in keyed],
        [r.start_ms for _, _, r, _ in keyed],
        [r.end_ms for _, _, r, _ in keyed],
    )
    stored = {row["event_id"]: row for row in rows}
    out: dict[int, UsageReading] = {}
    for i, event, reading, eid in keyed:
        row = stored[eid]
        same_time = event.timestamp is None or (
            row["start_ms"] == reading.start_ms and row["end_ms"] == reading.end_ms
        )
        if (
            row["resource_key"] != reading.resource_key
            or row["value"] != reading.value
            or not (same_time)
        ):
            at = f"$[{i}]" if many else "$"
            return error_response(
                409,
                f"event {at}: eventId {event.event_id!r} was already used for a different "
                f"event ({row['resource_key']}, value {row['value']} base units, "
                f"{row['start_ms']}..{row['end_ms']} ms); a retry must repeat the event",
                f"{at}.eventId",
            )
        out[i] = msgspec.structs.replace(reading, start_ms=row["start_ms"], end_ms=row["end_ms"])
    return out


async def _unprovisionable(
    db: Executor, readings: list[tuple[str, UsageReading]], seen: dict[str, set[str]]
) -> web.Response | None:
    """A 422 for the first reading of a resource that neither exists nor can be created.

    The hub creates an unknown customer's resource from the default tenant's
    catalog; without an entry for the type it would dead-letter the reading after
    this answer, so it is refused here instead. ``seen`` holds, per customer, the
    keys of resources found stored (forgotten on a change notice of the customer's,
    see :func:`hub.api.auth.forget_customers`); it is added to.
    """
    asked = {
        r.resource_key for _, r in readings if r.resource_key not in seen.get(r.customer_id, ())
    }
    known = await existing_keys(db, list(asked)) if asked else set()
    for _, r in readings:
        if r.resource_key in known and (r.customer_id in seen or len(seen) < _SEEN_RESOURCES):
            seen.setdefault(r.customer_id, set()).add(r.resource_key)
    unknown = [(at, r) for at, r in readings if r.resource_key in asked - known]
    if not unknown:
        return None
    missing = await unprovisionable_types(db, {r.resource_type for _, r in unknown})
    for at, r in unknown:
        if r.resource_type in missing:
            _log.info("ingest_unprovisionable", resource_key=r.resource_key)
            return error_response(
                422,
                f"event {at}: resource {r.resource_key!r} does not exist and cannot be "
                f"provisioned: the default tenant has no catalog entry for {r.resource_type!r}",
                f"{at}.resourceType",
            )
    return None


async def _foreign_customer(
    request: web.Request, db: Executor, caller: ApiKey, events: list[UsageEvent]
) -> web.Response | None:
    """A 404 for the first event of a customer the key may not write to.

    Customers seen for the first time join the key's tenant. A customer's tenant
    once known is not read again until a change of the customer is announced
    (see :func:`hub.api.auth.forget_customers`).
    """
    many = len(events) > 1
    ids = list(dict.fromkeys(e.customer_id for e in events))
    allowed = set(ids) if caller.customer_ids is None else set(ids) & set(caller.customer_ids)
    remembered = auth.customer_tenants(request)
    owners = {c: remembered[c] for c in allowed if c in remembered}
    if asked := sorted(allowed - owners.keys()):
        claimed = await claim_customers(db, asked, caller.tenant_id)
        for customer, tenant in claimed.items():
            auth.remember_tenant(request, customer, tenant)
        owners.update(claimed)
    for i, event in enumerate(events):
        if owners.get(event.customer_id) != caller.tenant_id:
            at = f"$[{i}]" if many else "$"
            _log.info("ingest_foreign_customer", key_id=caller.id, at=at)
            return error_response(
                404, f"event {at}: customer {event.customer_id!r} not found", f"{at}.customerId"
            )
    return None


async def ingest(request: web.Request) -> web.Response:
    ctx = context_of(request)
    if ctx.producer is None:
        return error_response(503, "ingest is disabled on this hub (no Kafka producer)", "producer")
    strict = request.query.get("strict", "false").lower()
    if strict not in _FLAGS:
        return error_response(400, f"strict must be true or false, not {strict!r}", "strict")
    exact = _FLAGS[strict]
    body = await request.read()
    try:
        events = decode_usage_events(body)
    except DecodeError as exc:
        path = _PATH.search(str(exc))
        return error_response(400, str(exc), exc.where or (path.group(1) if path else "body"))
    if not events:
        return error_response(400, "no events in the body", "body")
    caller = auth.caller_of(request)  # the key's tenant, whatever the body's tenantId says
    events = [msgspec.structs.replace(e, tenant_id=caller.tenant_id) for e in events]
    now = time.time_ns() // 1_000_000
    horizon = retention_horizon_ms(ctx.config.retention_days)
    records = []
    first: dict[str, int] = {}
    readings: list[tuple[str, UsageReading]] = []
    rounded, max_rounding = 0, Decimal(0)
    for i, event in enumerate(events):
        at = f"$[{i}]" if len(events) > 1 else "$"
        if event.event_id is not None and (why := validate_event_id(event.event_id)):
            return error_response(400, f"event {at}: eventId {why}", f"{at}.eventId")
        try:
            if exact:
                reading = to_reading(event, now_ms=now)
            else:
                reading, by = to_rounded_reading(event, now_ms=now)
                if by:
                    rounded += 1
                    max_rounding = max(max_rounding, by)
        except DecodeError as exc:
            where = (exc.where or "$").replace("$", at)
            return error_response(400, f"event {at}: {exc}", where)
        if (why := validate_reading(reading, now_ms=now)) is not None:
            return error_response(400, f"event {at}: {why}", at)
        if reading.end_ms < horizon:
            return error_response(
                400,
                f"event {at}: ends before the retention horizon "
                f"(RESMON_RETENTION_DAYS={ctx.config.retention_days}); it would not be stored",
                f"{at}.timestamp",
            )
        record = encode_event(reading, source=ctx.config.source, id=_event_id(event))
        if (earlier := first.setdefault(record.event_id, i)) != i:
            return error_response(
                400,
                f"events $[{earlier}] and {at} are the same event (id {record.event_id}): "
                "it would count once; give each its own timestamp or eventId",
                at,
            )
        records.append(record)
        readings.append((at, reading))
    if refused := await _unprovisionable(ctx.db, readings, auth.stored_resources(request)):
        return refused
    if (refused := await _foreign_customer(request, ctx.db, caller, events)) is not None:
        return refused
    keyed = [
        (i, event, reading, record.event_id)
        for i, (event, (_, reading), record) in enumerate(
            zip(events, readings, records, strict=True)
        )
        if event.event_id is not None
    ]
    if keyed:
        with storage_errors(ctx.config.database_address):
            claimed = await _claim_event_ids(ctx.db, keyed, many=len(events) > 1)
        if isinstance(claimed, web.Response):
            return claimed
        for i, reading in claimed.items():
            records[i] = encode_event(reading, source=ctx.config.source, id=records[i].event_id)
    await publish_many(ctx.producer, ctx.config.usage_topic, records)
    ctx.metrics.ingested.inc(len(records))
    if rounded:
        ctx.metrics.ingest_rounded.inc(rounded)
    return json_response(
        IngestResult(
            accepted=len(records),
            event_ids=[r.event_id for r in records],
            rounded=rounded,
            max_rounding=format(max_rounding, "f"),
        )
    )


def create_app(context: ApiContext) -> web.Application:
    """The aiohttp application; run it with :func:`hub.api.serve` or a test client."""
    app = web.Application(
        middlewares=[_timed, _errors, auth.authenticate, ratelimit.limit_rate, _checked],
        client_max_size=4 * 1024 * 1024,
    )
    app[CONTEXT] = context
    auth.setup(app)
    ratelimit.setup(app)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    app.router.add_post("/api/metrics/ingest", ingest)
    app.router.add_get("/api/metrics/customer/{customerId}/current", current)
    app.router.add_get("/api/monitoring/customers/{customerId}/resources", resources)
    add_alert_routes(app)
    add_cost_routes(app)
    add_forecast_routes(app)
    add_key_routes(app)
    add_ui_routes(app)
    add_stream_routes(app)
    add_config_routes(app)
    add_contract_routes(app)
    add_usage_routes(app)
    auth.check_routes(app.router.routes())
    add_recommendation_routes(app)
    return app
