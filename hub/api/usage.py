"""Usage history routes (scope ``read``).

=======  ======================================================================  ============
method   path                                                                    what
=======  ======================================================================  ============
GET      /api/usage/customers/{customerId}/resources/{resourceKey}/history       a series
=======  ======================================================================  ============

Query: ``range=1h|24h|7d|30d`` (ending now; the default is ``24h``) or
``from=`` and ``to=`` (ISO 8601 with an offset; ``to`` defaults to now), and
``points=`` (at most that many buckets: 1-5000, default 500). The answer is a
:class:`~hub.storage.history.UsageHistory`: the buckets, which storage level
they came from (``raw``, ``hourly``, ``daily``; see :mod:`hub.storage.history`),
the range actually covered (widened to whole hours or days for an aggregate
level), and the resource's limit and warning/critical thresholds.

``resourceKey`` is the whole key with its slashes (``cust-1/bandwidth/wan1``,
``%2F`` works too) or the part after the customer id (``bandwidth/wan1``). A
customer or resource the key may not see is 404, as one that does not exist;
a bad parameter is 400 naming it.
"""

from __future__ import annotations

import datetime as dt
from typing import Final
from zoneinfo import ZoneInfo

from aiohttp import web

from protocol import DecodeError

from ..storage.history import MAX_POINTS, plan, usage_history
from ..storage.partitions import retention_horizon_ms
from . import auth
from ._http import context_of, json_response
from ._params import bounded_int, iso_time

__all__ = ["RANGES", "add_usage_routes"]

#: the named ranges, each ending now
RANGES: Final = {
    "1h": dt.timedelta(hours=1),
    "24h": dt.timedelta(hours=24),
    "7d": dt.timedelta(days=7),
    "30d": dt.timedelta(days=30),
}
DEFAULT_RANGE: Final = "24h"
DEFAULT_POINTS: Final = 500
#: the instants a custom range may span (nothing was measured before the first)
_EARLIEST: Final = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_LATEST: Final = dt.datetime(2200, 1, 1, tzinfo=dt.UTC)


def _window(q: dict[str, str], now: dt.datetime) -> tuple[dt.datetime, dt.datetime]:
    """``[from, to)`` of the request: a named ``range`` ending now, or ``from``/``to``."""
    named = q.get("range")
    since, until = iso_time(q, "from"), iso_time(q, "to")
    if named is not None:
        if since is not None or until is not None:
            raise DecodeError("give either range or from/to, not both", where="range")
        if named not in RANGES:
            raise DecodeError(f"must be one of {', '.join(RANGES)}, not {named!r}", where="range")
        return now - RANGES[named], now
    if since is None:
        if until is not None:
            raise DecodeError("to needs a from (or use range)", where="from")
        return now - RANGES[DEFAULT_RANGE], now
    until = until or now
    if since >= until:
        raise DecodeError("must be before to", where="from")
    if since < _EARLIEST:
        raise DecodeError(f"must not be before {_EARLIEST.isoformat()}", where="from")
    if until > _LATEST:
        raise DecodeError(f"must not be after {_LATEST.isoformat()}", where="to")
    return since, until


async def history(request: web.Request) -> web.Response:
    ctx = context_of(request)
    customer = request.match_info["customerId"]
    key = request.match_info["resourceKey"]
    if not key.startswith(f"{customer}/"):
        key = f"{customer}/{key}"
    q = dict(request.query)
    start, end = _window(q, dt.datetime.now(dt.UTC))
    points = bounded_int(q, "points", 1, MAX_POINTS, DEFAULT_POINTS)
    await auth.check_customer(request, customer)  # another tenant's customer: 404
    tz = ZoneInfo(ctx.config.billing_tz)
    horizon = dt.datetime.fromtimestamp(
        retention_horizon_ms(ctx.config.retention_days) / 1000, tz=dt.UTC
    )
    planned = plan(start, end, points, tz=tz, raw_horizon=horizon)
    return json_response(await usage_history(ctx.db, customer, key, planned, tz=tz))


def add_usage_routes(app: web.Application) -> None:
    app.router.add_get(
        "/api/usage/customers/{customerId}/resources/{resourceKey:.+}/history", history
    )
