"""Per-key rate limits, counted in Redis so every hub of a group shares them.

Every route that needs a key is limited (the public ones are not). Each key
has a budget per scope (``RESMON_RATE_LIMIT_READ`` ... ``_ADMIN``), or one of
its own (``RESMON_RATE_LIMIT_KEYS``); see :mod:`hub.ratelimits`. The counting
is the :mod:`limits` library's fixed window, stored in Redis under
``{prefix}:ratelimit``: one Redis call per request and limit (the counter's
increment), plus its TTL once per window a hub did not open itself.

Every response of a limited route carries ``RateLimit-Limit``,
``RateLimit-Remaining`` and ``RateLimit-Reset`` (seconds until the window
starts over) for the budget the request used (the tightest one when a budget
has several limits). A request over the limit is 429 with ``Retry-After``
(seconds) and counted in ``resmon_hub_api_rate_limited_total``.

When Redis cannot be asked the limiter lets requests through (fails open):
the API stays up while Redis is, say, restarting. Each such request is counted
in ``resmon_hub_api_rate_limit_unavailable_total`` and a warning is logged (at
most one every 30 s); its response has no ``RateLimit-*`` headers.
"""

from __future__ import annotations

import math
import time
import urllib.parse
from collections.abc import Awaitable, Callable
from typing import Final

import redis.exceptions
import structlog
from aiohttp import web
from limits import RateLimitItem
from limits.aio.storage import RedisStorage
from limits.aio.strategies import FixedWindowRateLimiter
from limits.errors import StorageError

from ..ratelimits import RateLimits
from ._http import CONTEXT, context_of, error_response
from .auth import caller_of, current_scope

__all__ = ["limit_rate", "setup"]

_log = structlog.get_logger(component="hub.api.ratelimit")

_HEADERS: Final = web.RequestKey("rate_limit_headers", dict)
_WARNED: Final = web.AppKey("rate_limit_warned", list)
_LIMITS: Final = web.AppKey("rate_limits", RateLimits)
#: seconds between two warnings that Redis could not be asked
_WARN_EVERY: Final = 30.0


def _storage_uri(redis_url: str) -> str:
    """``redis_url`` as the limits package takes it: async, with the port written out.

    redis-py reads ``redis://host`` as port 6379; limits insists on a port.
    """
    parts = urllib.parse.urlsplit(redis_url)
    if parts.port is None and parts.hostname:
        host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
        auth = parts.netloc.rpartition("@")[0]
        netloc = f"{auth}@{host}:6379" if auth else f"{host}:6379"
        parts = parts._replace(netloc=netloc)
    return "async+" + urllib.parse.urlunsplit(parts)


def setup(app: web.Application) -> None:
    """The limiter of ``app`` (its Redis connection opens on first use)."""
    config = app[CONTEXT].config
    app[_LIMITS] = config.rate_limits
    storage = RedisStorage(
        _storage_uri(config.redis_url),
        implementation="redispy",
        key_prefix=f"{config.redis_prefix}:ratelimit",
        wrap_exceptions=True,
        socket_connect_timeout=1,
        socket_timeout=1,
    )
    app[_LIMITER] = _Windows(FixedWindowRateLimiter(storage))
    app[_WARNED] = [0.0]
    app.on_response_prepare.append(_add_headers)

    async def close(_app: web.Application) -> None:
        client = getattr(storage.bridge, "storage", None)
        if client is not None:
            await client.aclose()

    app.on_cleanup.append(close)


async def _add_headers(request: web.Request, response: web.StreamResponse) -> None:
    """The request's ``RateLimit-*`` headers on whatever response it got (errors too)."""
    headers = request.get(_HEADERS)
    if headers:
        response.headers.update(headers)


class _Windows:
    """When each fixed window a hub has seen ends, so a request costs one Redis call.

    The count comes from the library's storage (one ``INCR`` with its expiry, a
    script, exactly as :class:`FixedWindowRateLimiter` counts a hit); a window's
    end is known when this hub opened it (count 1) and asked of Redis (its TTL)
    only when it is not known yet or is over, e.g. a window another hub opened.
    """

    def __init__(self, limiter: FixedWindowRateLimiter) -> None:
        self.storage = limiter.storage
        self._ends: dict[str, float] = {}

    async def hit(self, item: RateLimitItem, *who: str) -> tuple[int, float]:
        """(requests counted in the window, including this one; seconds until it ends)."""
        key = item.key_for(*who)
        count = await self.storage.incr(key, item.get_expiry())
        now = time.time()
        end = self._ends.get(key)
        if count == 1:
            end = now + item.get_expiry()
        elif end is None or end <= now:
            end = await self.storage.get_expiry(key)
        if len(self._ends) > 100_000:
            self._ends = {k: e for k, e in self._ends.items() if e > now}
        self._ends[key] = end
        # the storage keeps whole seconds: never more than the window itself
        return count, min(float(item.get_expiry()), max(0.0, end - now))


_LIMITER: Final = web.AppKey("rate_limiter", _Windows)


async def _check(
    windows: _Windows, items: tuple[RateLimitItem, ...], *who: str
) -> tuple[bool, dict[str, str]]:
    """(allowed, headers) after counting the request against every one of ``items``."""
    allowed = True
    tightest: tuple[int, float, int] | None = None  # remaining, reset, limit
    retry = 0.0
    for item in items:
        count, reset = await windows.hit(item, *who)
        remaining = max(0, item.amount - count)
        if count > item.amount:
            allowed = False
            retry = max(retry, reset)
        if tightest is None or remaining < tightest[0]:
            tightest = (remaining, reset, item.amount)
    assert tightest is not None  # items is never empty here
    remaining, reset, amount = tightest
    headers = {
        "RateLimit-Limit": str(amount),
        "RateLimit-Remaining": str(remaining),
        "RateLimit-Reset": str(max(1, math.ceil(reset))),
    }
    if not allowed:
        headers["Retry-After"] = str(max(1, math.ceil(retry)))
    return allowed, headers


@web.middleware
async def limit_rate(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Count the request against its key's budget; 429 past it (after authentication)."""
    scope = current_scope(request)
    if scope is None:  # public, or no route matched
        return await handler(request)
    ctx = context_of(request)
    key = caller_of(request)
    budget, items = request.app[_LIMITS].of(key.id, scope)
    if not items:
        return await handler(request)
    try:
        allowed, headers = await _check(request.app[_LIMITER], items, key.id, budget)
    except (StorageError, redis.exceptions.RedisError, OSError) as exc:
        ctx.metrics.rate_limit_unavailable.inc()
        warned = request.app[_WARNED]
        if time.monotonic() - warned[0] >= _WARN_EVERY:
            warned[0] = time.monotonic()
            _log.warning(
                "rate_limit_unavailable",
                error=type(exc).__name__,
                then="requests pass unlimited until Redis answers",
            )
        return await handler(request)
    request[_HEADERS] = headers
    if not allowed:
        ctx.metrics.rate_limited.labels(budget).inc()
        _log.info("rate_limited", key_id=key.id, budget=budget)
        return error_response(
            429,
            f"rate limit of this API key for {budget!r} requests reached "
            f"({headers['RateLimit-Limit']} per window); retry in "
            f"{headers['Retry-After']} s",
            "Authorization",
        )
    return await handler(request)
