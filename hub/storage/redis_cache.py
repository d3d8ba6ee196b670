"""Live state in Redis: current usage per customer and active alerts.

Keys (``prefix`` defaults to ``resmon``):

- ``{prefix}:usage:{customer}`` hash: field resource key -> JSON
  ``{"resourceKey", "resourceType", "usage", "unit", "limit", "catalogUnit",
  "usageInUnit", "limitInUnit", "percentage", "level", "updated"}`` with
  usage/limit in base units (ints) and the ``*InUnit`` values as decimal
  strings;
- ``{prefix}:alerts:{customer}`` hash: field resource key -> the open
  threshold alert (JSON of :class:`protocol.AlertEvent`), deleted when it
  resolves; open anomaly and forecast alerts under ``{resource key}#anomaly``
  and ``{resource key}#forecast``.

Both expire ``ttl`` seconds after their last update. A usage hash is
*complete* (lists every resource of the customer) only when it holds the
field ``_complete``: the API fills it from PostgreSQL on a miss
(:meth:`RedisCache.fill_usage`) and trusts it only then, since batch updates
write just the resources that had readings. ``unknownMs`` (the time of the
current billing period reported gaps cover) comes from PostgreSQL only: the
fill keeps it per resource in the field ``_unknown`` (JSON object, resource
key -> ms) and writes the fill time in ``_complete``; a hash filled more than
``unknown_max_age_ms`` ago reads as a miss, so a new gap shows within that
time. Changing a resource
(``provision_resource`` → NOTIFY) drops the customer's hash. The cache is written
after each committed batch, by a Lua script (one ``EVALSHA`` per batch, so the
server must allow scripting); PostgreSQL stays the source of truth, so a Redis
failure is logged and counted, never fatal.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import msgspec
import redis.asyncio as aioredis
from redis.exceptions import NoScriptError

from protocol import RESOURCE_BASE_UNIT, AlertEvent

from .._exceptions import cache_errors
from .current import CachedUsage, now_ms

__all__ = ["RedisCache"]


_usage_decoder = msgspec.json.Decoder(CachedUsage)
_unknown_decoder = msgspec.json.Decoder(dict[str, int])
_COMPLETE = b"_complete"
_UNKNOWN = b"_unknown"
_FIELD_SUFFIX = {"ANOMALY_DETECTED": "#anomaly", "FORECAST_LIMIT": "#forecast"}
_encoder = msgspec.json.Encoder(decimal_format="string")

#: KEYS: hashes; ARGV: ttl, then per hash: n, then n (field, value) pairs; an empty
#: value deletes the field. Every hash written gets the ttl.
_WRITE = """
local ttl = ARGV[1]
local j = 2
for i = 1, #KEYS do
  local key = KEYS[i]
  local n = tonumber(ARGV[j])
  j = j + 1
  for _ = 1, n do
    local value = ARGV[j + 1]
    if value == '' then
      redis.call('HDEL', key, ARGV[j])
    else
      redis.call('HSET', key, ARGV[j], value)
    end
    j = j + 2
  end
  redis.call('EXPIRE', key, ttl)
end
return 0
"""
_WRITE_SHA = hashlib.sha1(_WRITE.encode()).hexdigest()  # noqa: S324 - Redis script id
#: arguments per EVALSHA (a script blocks Redis while it runs: keep each one short)
_CHUNK = 12_000


def base_unit(resource_type: str) -> str:
    return RESOURCE_BASE_UNIT.get(resource_type, "byte")


class RedisCache:
    """A thin, typed wrapper over ``redis.asyncio``."""

    def __init__(
        self,
        client: aioredis.Redis[bytes],
        *,
        prefix: str = "resmon",
        ttl: int = 3600,
        address: str = "Redis",
        unknown_max_age_ms: int = 60_000,
    ) -> None:
        self.client = client
        self.prefix = prefix
        self.ttl = ttl
        self.unknown_max_age_ms = unknown_max_age_ms
        self._address = address
        self._write_sha = _WRITE_SHA

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        prefix: str = "resmon",
        ttl: int = 3600,
        address: str = "Redis",
        unknown_max_age_ms: int = 60_000,
    ) -> RedisCache:
        client: aioredis.Redis[bytes] = aioredis.Redis.from_url(
            url, socket_connect_timeout=5, socket_timeout=5
        )
        return cls(
            client,
            prefix=prefix,
            ttl=ttl,
            address=address,
            unknown_max_age_ms=unknown_max_age_ms,
        )

    async def ping(self) -> None:
        with cache_errors(self._address):
            await self.client.ping()

    async def aclose(self) -> None:
        await self.client.aclose()  # type: ignore[attr-defined]  # stubs predate aclose

    def _usage_key(self, customer: str) -> str:
        return f"{self.prefix}:usage:{customer}"

    def _alerts_key(self, customer: str) -> str:
        return f"{self.prefix}:alerts:{customer}"

    async def update(self, usage: Sequence[CachedUsage], alerts: Sequence[AlertEvent]) -> None:
        """Write one committed batch's usage and alert changes.

        One ``EVALSHA`` per :data:`_CHUNK` writes (a Lua loop of ``HSET`` /
        ``HDEL`` and one ``EXPIRE`` per touched hash) instead of a pipeline
        of one command each: what costs here is the client's per-command
        work, and a batch touches thousands of resources.
        """
        if not usage and not alerts:
            return
        ops: dict[str, list[bytes | str]] = {}
        for u in usage:
            key = self._usage_key(u.resource_key.split("/", 1)[0])
            got = ops.get(key)
            if got is None:
                got = ops[key] = []
            got += (u.resource_key, _encoder.encode(u))
        for a in alerts:
            key = self._alerts_key(a.customer_id)
            field = a.resource_key + _FIELD_SUFFIX.get(a.alert_type, "")
            # an empty value deletes the field (a resolved alert)
            value = b"" if a.status == "RESOLVED" else _encoder.encode(a)
            ops.setdefault(key, []).extend((field, value))
        with cache_errors(self._address):
            keys: list[str] = []
            args: list[bytes | str | int] = [self.ttl]
            for key, pairs in ops.items():
                keys.append(key)
                args.append(len(pairs) // 2)
                args += pairs
                if len(args) >= _CHUNK:
                    await self._write(keys, args)
                    keys, args = [], [self.ttl]
            if keys:
                await self._write(keys, args)

    async def _write(self, keys: list[str], args: list[bytes | str | int]) -> None:
        try:
            await self.client.evalsha(self._write_sha, len(keys), *keys, *args)  # type: ignore[no-untyped-call]
        except NoScriptError:  # first use on this server (or after SCRIPT FLUSH)
            await self.client.eval(_WRITE, len(keys), *keys, *args)  # type: ignore[no-untyped-call]

    async def current_usage(self, customer: str) -> list[CachedUsage] | None:
        """Every resource of ``customer`` if the cache has them all, else None.

        Also None when the fill is older than ``unknown_max_age_ms``, so the
        unknown time is read from PostgreSQL again, and when an entry is in a
        unit that is no longer its resource type's base unit (cached before CPU
        time was counted in milliseconds).
        """
        with cache_errors(self._address):
            raw = await self.client.hgetall(self._usage_key(customer))
        filled = raw.get(_COMPLETE, b"")
        if not filled.isdigit() or now_ms() - int(filled) > self.unknown_max_age_ms:
            return None
        unknown = _unknown_decoder.decode(raw.get(_UNKNOWN, b"{}"))
        usage = [_usage_decoder.decode(v) for k, v in raw.items() if k not in (_COMPLETE, _UNKNOWN)]
        if any(u.unit != base_unit(u.resource_type) for u in usage):
            return None  # written in a former base unit (CPU seconds): refill from PostgreSQL
        return sorted(
            (
                u
                if u.unknown_ms is not None
                else msgspec.structs.replace(u, unknown_ms=unknown.get(u.resource_key))
                for u in usage
            ),
            key=lambda u: u.resource_key,
        )

    async def fill_usage(self, customer: str, usage: Sequence[CachedUsage]) -> None:
        """Store the complete list of ``customer``'s resources (read from PostgreSQL)."""
        key = self._usage_key(customer)
        unknown = {u.resource_key: u.unknown_ms for u in usage if u.unknown_ms is not None}
        with cache_errors(self._address):
            async with self.client.pipeline(transaction=True) as pipe:
                for u in usage:
                    pipe.hset(key, u.resource_key, _encoder.encode(u))
                pipe.hset(key, _UNKNOWN, _encoder.encode(unknown))
                pipe.hset(key, _COMPLETE, str(now_ms()))
                pipe.expire(key, self.ttl)
                await pipe.execute()

    async def forget_customer(self, customer: str) -> None:
        """Drop ``customer``'s cached usage (a resource was added or changed)."""
        with cache_errors(self._address):
            await self.client.delete(self._usage_key(customer))

    async def forget_all_usage(self) -> int:
        """Drop every customer's cached usage (changes were missed); return how many."""
        dropped = 0
        with cache_errors(self._address):
            batch: list[bytes] = []
            async for key in self.client.scan_iter(match=f"{self.prefix}:usage:*", count=1000):
                batch.append(key)
                if len(batch) >= 1000:
                    dropped += await self.client.delete(*batch)
                    batch.clear()
            if batch:
                dropped += await self.client.delete(*batch)
        return dropped

    async def forget_alert(
        self, customer: str, resource_key: str, alert_type: str | None = None
    ) -> None:
        """Drop the cached open alert of ``resource_key`` (an operator resolved it)."""
        if alert_type is not None:
            fields = [resource_key + _FIELD_SUFFIX.get(alert_type, "")]
        else:
            fields = [resource_key] + [resource_key + x for x in _FIELD_SUFFIX.values()]
        with cache_errors(self._address):
            await self.client.hdel(self._alerts_key(customer), *fields)

    async def active_alerts(self, customer: str) -> list[bytes]:
        with cache_errors(self._address):
            raw = await self.client.hgetall(self._alerts_key(customer))
        return [bytes(v) for v in raw.values()]
