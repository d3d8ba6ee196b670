"""Live updates as server-sent events (docs/api.md, "Live stream").

======  ==================  ==============================================================
method  path                what
======  ==================  ==============================================================
GET     /api/stream         ``text/event-stream`` of the tenant's ``usage``, ``alert`` and
                            ``recommendation`` events (``?customerId=``: one customer's),
                            a ``heartbeat`` every RESMON_STREAM_HEARTBEAT_S seconds
POST    /api/stream/token   ``{"token", "expiresAt", "keyId", "customerIds"}``: a
                            short-lived token that authenticates
                            ``GET /api/stream?token=...`` (EventSource cannot send
                            headers); ``?customerId=``: for that customer's events only
======  ==================  ==============================================================

Events come from the tenant's Redis stream (:mod:`hub.storage.live`), which
every hub of a group writes to after its batches commit, so any hub serves
every hub's events. Each event's ``id`` is its backlog entry; a client that
reconnects with ``Last-Event-ID`` (EventSource does it by itself) gets what
it missed, as far as the backlog still holds it. A key restricted to customers
sees only theirs. The token is accepted on ``GET /api/stream`` only, and the
key it was made from must still be active when the stream opens.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from typing import Final

import msgspec
import structlog
from aiohttp import web

from .._exceptions import HubError
from ..apikeys import StreamGrant, TokenError, check_stream_token, stream_token
from ..storage.apikeys import ApiKey, key_by_id
from ..storage.live import ENTRY_ID, WATCH_TTL_S, LivePublisher
from ._http import context_of, error_response, json_response
from .auth import (
    add_authenticator,
    caller_of,
    check_customer,
    refuse_inactive,
    unauthorized,
)

__all__ = ["add_stream_routes", "publish_change"]

_log = structlog.get_logger(component="hub.api.stream")

STREAM_PATH: Final = "/api/stream"
#: longest one read of the backlog waits for new entries (ms): how soon a stop or a
#: gone client is noticed, and the heartbeat's granularity
_BLOCK_MS: Final = 500
_CLOSING: Final = web.AppKey("stream_closing", asyncio.Event)


class StreamToken(msgspec.Struct, frozen=True, rename="camel"):
    """A token for ``GET /api/stream?token=``; valid until ``expires_at``."""

    token: str
    expires_at: dt.datetime
    #: the key the token stands for
    key_id: str
    #: the customers the stream shows (None: every customer the key may see)
    customer_ids: tuple[str, ...] | None


def _live(request: web.Request) -> LivePublisher:
    live = context_of(request).live
    if live is None:
        raise HubError("the live stream is not running on this hub")
    return live


async def create_token(request: web.Request) -> web.Response:
    ctx = context_of(request)
    key = caller_of(request)
    customers = key.customer_ids
    if (customer := request.query.get("customerId")) is not None:
        await check_customer(request, customer)  # another tenant's customer: 404
        customers = (customer,)
    expires = int(time.time()) + ctx.config.stream_token_seconds
    if key.expires_at is not None:  # never outlive the key
        expires = min(expires, int(key.expires_at.timestamp()))
    grant = StreamGrant(key.id, key.tenant_id, customers, expires)
    token = stream_token(ctx.config.api_key_secret, grant)
    _log.info("stream_token_created", key_id=key.id, expires=expires)
    at = dt.datetime.fromtimestamp(expires, dt.UTC)
    body = StreamToken(token, at, key.id, customers)
    return json_response(body, headers={"Cache-Control": "no-store"})


async def _token_key(request: web.Request) -> ApiKey | web.Response | None:
    """The key behind ``?token=`` on the stream route (None: not this way)."""
    token = request.query.get("token")
    if token is None or request.path != STREAM_PATH:
        return None
    ctx = context_of(request)
    try:
        grant = check_stream_token(ctx.config.api_key_secret, token, time.time())
    except TokenError as exc:
        ctx.metrics.auth_refused.labels("token").inc()
        _log.info("stream_token_refused", reason=str(exc))
        return unauthorized(str(exc))
    key = refuse_inactive(request, await key_by_id(ctx.db, grant.key_id))
    if isinstance(key, web.Response):
        return key
    if key.tenant_id != grant.tenant_id:
        return unauthorized("the stream token does not match its key")
    if grant.customer_ids is not None:  # a token for some customers only: narrower, never wider
        own = key.customer_ids
        narrowed = tuple(c for c in grant.customer_ids if own is None or c in own)
        key = msgspec.structs.replace(key, customer_ids=narrowed)
    return key


def _frame(entry_id: str | None, kind: str, data: bytes) -> bytes:
    head = f"id: {entry_id}\n" if entry_id is not None else ""
    # the data is one line of JSON (msgspec writes no newlines)
    return f"{head}event: {kind}\ndata: ".encode() + data + b"\n\n"


async def stream(request: web.Request) -> web.StreamResponse:
    ctx = context_of(request)
    key = caller_of(request)
    customer = request.query.get("customerId")
    if customer is not None:
        await check_customer(request, customer)  # another tenant's customer: 404
    resume = request.headers.get("Last-Event-ID") or request.query.get("lastEventId")
    if resume is not None and not ENTRY_ID.fullmatch(resume.strip()):
        return error_response(
            400,
            "Last-Event-ID must be the id of an event of this stream (<ms>-<n>)",
            "Last-Event-ID",
        )
    live = _live(request)
    await live.stream.watch(key.tenant_id)  # from now on usage is written for the tenant
    cursor = resume.strip() if resume else await live.stream.last_id(key.tenant_id)
    allowed = set(key.customer_ids) if key.customer_ids is not None else None
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-cache",
            "X-Accel-Buffering": "no",
        }
    )
    await response.prepare(request)
    metrics = ctx.metrics
    metrics.stream_clients.inc()
    closing = request.app[_CLOSING]
    every = ctx.config.stream_heartbeat_seconds
    try:
        await response.write(b"retry: 2000\n: connected\n\n")
        beat = time.monotonic() + every
        rewatch = time.monotonic() + WATCH_TTL_S / 5
        while not closing.is_set():
            transport = request.transport
            if transport is None or transport.is_closing():
                break
            wait = max(1, min(_BLOCK_MS, int((beat - time.monotonic()) * 1000)))
            try:
                entries = await live.stream.read(key.tenant_id, cursor, block_ms=wait)
            except HubError as exc:
                metrics.side_effect_failures.labels("stream").inc()
                _log.warning("stream_read_failed", error=str(exc), retry_in_s=1)
                await asyncio.sleep(1)
                entries = []
            for entry_id, event in entries:
                cursor = entry_id
                if customer is not None and event.customer != customer:
                    continue
                if allowed is not None and event.customer not in allowed:
                    continue
                await response.write(_frame(entry_id, event.kind, event.data))
                metrics.stream_events.labels(event.kind).inc()
            if time.monotonic() >= rewatch:
                rewatch = time.monotonic() + WATCH_TTL_S / 5
                try:
                    await live.stream.watch(key.tenant_id)
                except HubError as exc:
                    _log.warning("stream_watch_failed", error=str(exc))
            if time.monotonic() >= beat:
                now = int(time.time() * 1000)
                await response.write(_frame(None, "heartbeat", b'{"atMs":%d}' % now))
                metrics.stream_events.labels("heartbeat").inc()
                beat = time.monotonic() + every
    except (ConnectionResetError, ConnectionError):
        pass  # the client went away
    finally:
        metrics.stream_clients.dec()
    return response


async def _close_streams(app: web.Application) -> None:
    app[_CLOSING].set()


def add_stream_routes(app: web.Application) -> None:
    app[_CLOSING] = asyncio.Event()
    app.on_shutdown.append(_close_streams)
    add_authenticator(app, _token_key)
    app.router.add_get(STREAM_PATH, stream)
    app.router.add_post("/api/stream/token", create_token)


_encoder = msgspec.json.Encoder(decimal_format="string")


async def publish_change(request: web.Request, kind: str, customer: str, data: object) -> None:
    """Put a change made through the API (``alert``, ``recommendation``) on the live stream.

    ``data`` is a msgspec struct or a dict; the stream is best effort: a Redis
    failure is counted and logged, the request it follows has succeeded anyway.
    """
    ctx = context_of(request)
    if ctx.live is None:
        return
    try:
        await ctx.live.send(kind, [(customer, _encoder.encode(data))])
    except HubError as exc:
        ctx.metrics.side_effect_failures.labels("stream").inc()
        _log.warning("stream_publish_failed", error=str(exc))
