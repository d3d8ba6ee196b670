"""API key administration (scope ``admin``, the caller's own tenant only).

=======  ==================  =====================================================
method   path                what
=======  ==================  =====================================================
POST     /api/keys           ``{"name", "scopes", "customerIds"?, "expiresIn"?}`` ->
                             201 ``{"key": "rsm_...", "apiKey": {...}}`` (key shown once)
GET      /api/keys           the tenant's keys (never the keys themselves), oldest
                             first, a page: ``?limit=&cursor=`` -> ``{"items", "next"}``
DELETE   /api/keys/{id}      revoke; another tenant's key is 404, the caller's own 409
=======  ==================  =====================================================

A new key cannot have a scope its creator lacks.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Annotated, Literal

import msgspec
import structlog
from aiohttp import web

from ..apikeys import check_restriction, parse_duration, parse_scopes
from ..storage import apikeys as stored
from ._http import context_of, error_response, json_response
from ._pagination import Instant, page, page_request
from .auth import caller_of, check_customer

__all__ = ["add_key_routes"]

_log = structlog.get_logger(component="hub.api.keys")


#: the schema of ``expiresIn`` (the handler says what is wrong with another)
_DURATION = "^ *[1-9][0-9]{0,6}[smhdSMHD] *$"
Scope = Literal["read", "write", "ingest", "admin"]


class NewKey(msgspec.Struct, frozen=True, rename="camel", forbid_unknown_fields=True):
    #: who or what uses the key
    name: Annotated[
        str, msgspec.Meta(min_length=1, max_length=200, extra_json_schema={"pattern": "\\S"})
    ]
    scopes: Annotated[list[Scope], msgspec.Meta(extra_json_schema={"minItems": 1})]
    #: only these customers (not with ``admin``); none: every customer of the tenant
    customer_ids: Annotated[list[str], msgspec.Meta(extra_json_schema={"minItems": 1})] | None = (
        None
    )
    #: e.g. ``30d``, ``12h`` (at most 100 years); none: the key does not expire
    expires_in: Annotated[str, msgspec.Meta(extra_json_schema={"pattern": _DURATION})] | None = None


_decoder = msgspec.json.Decoder(NewKey)


async def create(request: web.Request) -> web.Response:
    ctx = context_of(request)
    caller = caller_of(request)
    try:
        body = _decoder.decode(await request.read())
    except msgspec.ValidationError as exc:
        return error_response(400, str(exc), "body")
    except msgspec.DecodeError as exc:
        return error_response(400, f"body is not valid JSON: {exc}", "body")
    name = body.name.strip()
    if not 1 <= len(name) <= 200:
        return error_response(400, "name must be 1-200 characters", "$.name")
    try:
        scopes = parse_scopes(list(body.scopes))
        check_restriction(scopes, body.customer_ids)
        expires = parse_duration(body.expires_in) if body.expires_in is not None else None
    except ValueError as exc:
        return error_response(400, str(exc), "body")
    if missing := [s for s in scopes if s not in caller.scopes]:
        return error_response(
            403, f"a key cannot grant scopes it lacks: {', '.join(missing)}", "$.scopes"
        )
    for customer in body.customer_ids or ():
        await check_customer(request, customer)
    created = await stored.create_key(
        ctx.db,
        ctx.config.api_key_secret,
        tenant_id=caller.tenant_id,
        name=name,
        scopes=scopes,
        customer_ids=body.customer_ids,
        expires_at=dt.datetime.now(dt.UTC) + dt.timedelta(seconds=expires)
        if expires is not None
        else None,
    )
    _log.info("api_key_created", key_id=created.api_key.id, by=caller.id, scopes=scopes)
    return json_response(created, status=201)


async def list_keys(request: web.Request) -> web.Response:
    wanted = page_request(request.query, (Instant, uuid.UUID))
    rows = await stored.list_keys(
        context_of(request).db,
        caller_of(request).tenant_id,
        limit=wanted.limit + 1,
        after=wanted.after,
    )
    return json_response(page(rows, wanted, lambda k: (k.created_at, k.id)))


async def revoke(request: web.Request) -> web.Response:
    caller = caller_of(request)
    if request.match_info["id"] == caller.id:  # it would lock its caller out mid-session
        return error_response(
            409,
            "a key cannot revoke itself: revoke it with another admin key "
            "or `resmon hub keys revoke`",
            "id",
        )
    key = await stored.revoke_key(
        context_of(request).db, request.match_info["id"], tenant_id=caller.tenant_id
    )
    _log.info("api_key_revoked", key_id=key.id, by=caller.id)
    return json_response(key)


def add_key_routes(app: web.Application) -> None:
    r = app.router
    r.add_post("/api/keys", create)
    r.add_get("/api/keys", list_keys)
    r.add_delete("/api/keys/{id}", revoke)
