"""``CachedUsage``: one resource's current usage as readers see it.

The same shape comes from PostgreSQL (:func:`hub.storage.queries.current_usage`)
and from Redis (:class:`hub.storage.redis_cache.RedisCache`), and is what
``GET /api/metrics/customer/{customerId}/current`` serves; it lives here so
neither store imports the other.
"""

from __future__ import annotations

import time

import msgspec

__all__ = ["CachedUsage", "now_ms"]


class CachedUsage(msgspec.Struct, frozen=True, rename="camel"):
    """One resource's current usage, as cached and as served by the REST API."""

    resource_key: str
    resource_type: str
    usage: int
    unit: str
    limit: int | None
    catalog_unit: str
    usage_in_unit: str
    limit_in_unit: str | None
    percentage: str | None
    level: str
    updated: int
    #: ms of the current billing period that reported gaps cover (usage unknown there);
    #: ``None`` where it was not read from PostgreSQL
    unknown_ms: int | None = None


def now_ms() -> int:
    """The wall clock in epoch milliseconds (when a cached value was updated)."""
    return time.time_ns() // 1_000_000
