"""Cost breakdown routes. Amounts are decimal strings, never JSON numbers.

=======  ================================================================  ======================
method   path                                                              what
=======  ================================================================  ======================
GET      /api/costs/customers/{customerId}?period=YYYY-MM                  every resource's bill
GET      /api/costs/customers/{customerId}/resources/{resourceKey}?period=  one resource's bill
=======  ================================================================  ======================

``resourceKey`` is the whole key with its slashes (``cust-1/bandwidth/wan1``,
``%2F`` works too) or the part after the customer id (``bandwidth/wan1``).
``period`` defaults to the current billing period, to date. A closed period is
served as stored by the hub's close (``"stored": true``), else computed from
what is stored now. Unknown customer or resource: 404 naming it; a bad
``period``: 400 naming it.
"""

from __future__ import annotations

import time
from decimal import Decimal
from zoneinfo import ZoneInfo

import msgspec
from aiohttp import web

from ..calendar import month_of
from ..costs import PricingError
from ..storage import costs
from . import auth
from ._http import context_of, error_response, json_response

__all__ = ["add_cost_routes"]


class CustomerCosts(msgspec.Struct, frozen=True, rename="camel"):
    customer_id: str
    period: str
    currency: str | None
    #: the sum of the resources' totals; None when they are in different currencies
    total: Decimal | None
    resources: list[costs.CostView]


def _month(request: web.Request, tz: ZoneInfo, now_ms: int) -> int | web.Response:
    text = request.query.get("period")
    if text is None:
        return month_of(now_ms, tz)
    try:
        return costs.parse_month(text)
    except PricingError as exc:
        return error_response(400, str(exc), "period")


def customer_costs(customer_id: str, month: int, views: list[costs.CostView]) -> CustomerCosts:
    """The customer's bill for ``month``: each resource's view and their total."""
    currencies = {v.breakdown.currency for v in views}
    one = len(currencies) == 1
    return CustomerCosts(
        customer_id=customer_id,
        period=costs.month_label(month),
        currency=currencies.pop() if one else None,
        total=costs.total_of(views) if one else None,
        resources=views,
    )


async def _views(
    request: web.Request, resource_key: str | None
) -> tuple[int, list[costs.CostView]] | web.Response:
    ctx = context_of(request)
    tz = ZoneInfo(ctx.config.billing_tz)
    now_ms = time.time_ns() // 1_000_000
    month = _month(request, tz, now_ms)
    if isinstance(month, web.Response):
        return month
    customer = request.match_info["customerId"]
    await auth.check_customer(request, customer)  # another tenant's customer: 404
    try:
        got = await costs.views(
            ctx.db,
            customer,
            month,
            resource_key,
            tz=tz,
            money=ctx.config.money,
            now_ms=now_ms,
            metrics=ctx.metrics,
        )
    except PricingError as exc:
        return error_response(422, str(exc), exc.where)
    return month, got


async def customer(request: web.Request) -> web.Response:
    got = await _views(request, None)
    if isinstance(got, web.Response):
        return got
    month, views = got
    return json_response(customer_costs(request.match_info["customerId"], month, views))


async def resource(request: web.Request) -> web.Response:
    customer_id = request.match_info["customerId"]
    key = request.match_info["resourceKey"]
    if not key.startswith(f"{customer_id}/"):
        key = f"{customer_id}/{key}"
    got = await _views(request, key)
    if isinstance(got, web.Response):
        return got
    return json_response(got[1][0])


def add_cost_routes(app: web.Application) -> None:
    app.router.add_get("/api/costs/customers/{customerId}", customer)
    app.router.add_get("/api/costs/customers/{customerId}/resources/{resourceKey:.+}", resource)
