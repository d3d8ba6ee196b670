"""RedisCache.update: one Lua call per batch writes usage, opens and closes alerts."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest

from hub.storage import redis_cache
from hub.storage.aggregates import Bucketer
from hub.storage.current import CachedUsage
from hub.storage.redis_cache import RedisCache
from protocol import AlertEvent

pytestmark = [pytest.mark.integration, pytest.mark.anyio]


def usage(key: str, total: int) -> CachedUsage:
    return CachedUsage(
        resource_key=key,
        resource_type="bandwidth",
        usage=total,
        unit="byte",
        limit=None,
        catalog_unit="GB",
        usage_in_unit="0",
        limit_in_unit=None,
        percentage=None,
        level="OK",
        updated=1,
    )


def alert(key: str, status: str, alert_type: str = "THRESHOLD_WARNING") -> AlertEvent:
    return AlertEvent(
        alert_id="a1",
        customer_id=key.split("/", 1)[0],
        resource_type="bandwidth",
        resource_key=key,
        alert_type=alert_type,
        severity="MEDIUM",
        status=status,
        message="m",
        current_usage=Decimal(1),
        threshold=None,
        limit=None,
        percentage=None,
        unit="GB",
        at_ms=1,
    )


async def test_update_writes_usage_and_alerts_and_survives_a_script_flush(
    redis_url: str, unique: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = RedisCache.from_url(redis_url, prefix=f"t-{unique}", ttl=120)
    try:
        await cache.client.script_flush()  # the first call falls back to EVAL
        monkeypatch.setattr(redis_cache, "_CHUNK", 5)  # several calls per batch
        keys = [f"c{i % 3}-{unique}/bandwidth/{i}" for i in range(7)]
        await cache.update(
            [usage(k, i) for i, k in enumerate(keys)],
            [alert(keys[0], "ACTIVE"), alert(keys[0], "ACTIVE", "ANOMALY_DETECTED")],
        )
        got = await cache.client.hgetall(f"t-{unique}:usage:c1-{unique}")
        assert sorted(got) == sorted(k.encode() for k in keys if k.startswith("c1-"))
        assert 0 < await cache.client.ttl(f"t-{unique}:usage:c1-{unique}") <= 120
        alerts_key = f"t-{unique}:alerts:c0-{unique}"
        assert sorted(await cache.client.hkeys(alerts_key)) == [
            keys[0].encode(),
            f"{keys[0]}#anomaly".encode(),
        ]
        assert 0 < await cache.client.ttl(alerts_key) <= 120
        # a resolution deletes the field; usage is overwritten
        await cache.update([usage(keys[0], 99)], [alert(keys[0], "RESOLVED")])
        assert await cache.client.hkeys(alerts_key) == [f"{keys[0]}#anomaly".encode()]
        raw = await cache.client.hget(f"t-{unique}:usage:c0-{unique}", keys[0])
        assert b'"usage":99' in raw
    finally:
        await cache.client.delete(
            *[f"t-{unique}:{kind}:c{i}-{unique}" for kind in ("usage", "alerts") for i in range(3)]
        )
        await cache.aclose()


def test_bucket_bounds_in_ms_match_the_datetimes() -> None:
    for tz in ("UTC", "America/New_York", "Asia/Kathmandu"):
        b = Bucketer(ZoneInfo(tz))
        for ms in (1_764_547_200_000, 1_772_323_200_123, 1_762_063_200_000):
            as_ms = b.buckets_ms(ms)
            for (ptype, start, end), (p2, s_ms, e_ms) in zip(b.buckets(ms), as_ms, strict=True):
                assert ptype == p2
                assert dt.datetime.fromtimestamp(s_ms / 1000, dt.UTC) == start
                assert dt.datetime.fromtimestamp(e_ms / 1000, dt.UTC) == end
