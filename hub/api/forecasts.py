"""Stored forecast routes. Errors are problem details (docs/api.md).

=======  ===============================================  ==================================
method   path                                             what
=======  ===============================================  ==================================
GET      /api/forecasts/customers/{customerId}            the newest stored forecast of each
                                                          of the customer's resources
                                                          (``?resourceKey=`` for one)
=======  ===============================================  ==================================

Each item is a forecast (method, usage and cost intervals, measured coverage,
probability above the limit) or ``"forecast": false`` with the reason; an
unknown customer or resource is 404. The rows are written by the refresh
(``hub/storage/forecasts.py``); this route only reads them.
"""

from __future__ import annotations

import msgspec
from aiohttp import web

from .._exceptions import storage_errors
from ..storage.forecasts import StoredForecast, stored_forecasts
from . import auth
from ._http import context_of, json_response

__all__ = ["CustomerForecasts", "add_forecast_routes"]


class CustomerForecasts(msgspec.Struct, frozen=True, rename="camel"):
    customer_id: str
    #: the newest stored forecast of each resource (one with ``?resourceKey=``)
    forecasts: list[StoredForecast]


async def customer_forecasts(request: web.Request) -> web.Response:
    ctx = context_of(request)
    customer = request.match_info["customerId"]
    await auth.check_customer(request, customer)  # another tenant's customer: 404
    resource_key = request.query.get("resourceKey") or None
    with storage_errors(ctx.config.database_address):
        rows = await stored_forecasts(ctx.db, customer_id=customer, resource_key=resource_key)
    return json_response(CustomerForecasts(customer_id=customer, forecasts=rows))


def add_forecast_routes(app: web.Application) -> None:
    app.router.add_get("/api/forecasts/customers/{customerId}", customer_forecasts)
