"""Optimization recommendation routes (docs/recommendations.md).

======  ===============================================  ======================================
method  path                                             what
======  ===============================================  ======================================
GET     /api/recommendations?customerId=&status=         stored recommendations, largest first
        &limit=&cursor=                                  (a page: ``{"items", "next"}``)
POST    /api/recommendations/{id}/apply                  ``{"by": "name"}``: applied (a resize
                                                         moves the resource to its plan/limit)
POST    /api/recommendations/{id}/dismiss                ``{"by": "name", "reason": "..."}``
======  ===============================================  ======================================

Both actions are audited (``recommendation_audit``). An unknown id is 404, a
recommendation no longer open 409, a dismissal without a ``reason`` 400 naming
it. ``by`` defaults to the calling key's name; a key sees only its tenant's
recommendations (another tenant's id is a 404, as an unknown one).
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from decimal import Decimal

import msgspec
from aiohttp import web

from .._exceptions import NotFoundError
from ..storage import recommendations
from ._http import context_of, error_response, json_response
from ._pagination import page, page_request
from .auth import caller_of, check_customer
from .stream import publish_change

__all__ = ["add_recommendation_routes"]


class RecommendationAction(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    by: str = ""
    reason: str = ""


_decoder = msgspec.json.Decoder(RecommendationAction)


async def _action(request: web.Request) -> RecommendationAction | web.Response:
    raw = await request.read()
    try:
        action = _decoder.decode(raw) if raw.strip() else RecommendationAction()
    except msgspec.ValidationError as exc:
        return error_response(400, str(exc), "body")
    except msgspec.DecodeError as exc:
        return error_response(400, f"body is not valid JSON: {exc}", "body")
    if not action.by.strip():  # who acts: the key's name unless the body says
        action = msgspec.structs.replace(action, by=caller_of(request).name)
    return action


async def list_recommendations(request: web.Request) -> web.Response:
    status = request.query.get("status")
    if status is not None and status not in recommendations.STATUSES:
        return error_response(
            400, f"status {status!r} is not one of {', '.join(recommendations.STATUSES)}", "status"
        )
    customer = request.query.get("customerId")
    if customer is not None:
        await check_customer(request, customer)  # another tenant's customer: 404
    wanted = page_request(request.query, (Decimal, uuid.UUID))
    key = caller_of(request)
    found = await recommendations.listing(
        context_of(request).db,
        customer_id=customer,
        status=status,
        tenant_id=key.tenant_id,
        customer_ids=key.customer_ids,
        limit=wanted.limit + 1,
        after=wanted.after,
    )
    return json_response(
        page(found, wanted, lambda r: (Decimal(r.monthly_savings), r.recommendation_id))
    )


async def _act(
    request: web.Request,
    act: Callable[[RecommendationAction], Awaitable[recommendations.StoredRecommendation]],
) -> web.Response:
    """Read the action, do it, answer the recommendation as it now is (409: not open)."""
    rid = request.match_info["id"]
    customer = await recommendations.customer_of(context_of(request).db, rid)
    if customer is None:
        raise NotFoundError(f"recommendation {rid} not found")
    await check_customer(request, customer)  # another tenant's recommendation: 404
    action = await _action(request)
    if isinstance(action, web.Response):
        return action
    try:
        done = await act(action)
    except recommendations.RecommendationStateError as exc:
        return error_response(409, str(exc), "status")
    change = {"change": done.status.lower(), **msgspec.to_builtins(done)}
    await publish_change(request, "recommendation", done.customer_id, change)
    return json_response(done)


async def apply(request: web.Request) -> web.Response:
    db, rid = context_of(request).db, request.match_info["id"]
    return await _act(request, lambda action: recommendations.apply(db, rid, action.by))


async def dismiss(request: web.Request) -> web.Response:
    db, rid = context_of(request).db, request.match_info["id"]

    async def act(action: RecommendationAction) -> recommendations.StoredRecommendation:
        if not action.reason.strip():
            raise _NoReasonError
        return await recommendations.dismiss(db, rid, action.by, action.reason)

    try:
        return await _act(request, act)
    except _NoReasonError:
        return error_response(400, "a reason for dismissing is required", "$.reason")


class _NoReasonError(Exception):
    pass


def add_recommendation_routes(app: web.Application) -> None:
    app.router.add_get("/api/recommendations", list_recommendations)
    app.router.add_post("/api/recommendations/{id}/apply", apply)
    app.router.add_post("/api/recommendations/{id}/dismiss", dismiss)
