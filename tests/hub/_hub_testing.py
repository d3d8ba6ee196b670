"""Helpers shared by the hub tests."""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import asyncpg  # type: ignore[import-untyped]


async def until(check: Callable[[], Awaitable[bool] | bool], interval: float = 0.02) -> None:
    """Poll ``check`` until it is true; the caller bounds the wait with ``fail_after``."""
    while True:
        result = check()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return
        await anyio.sleep(interval)


async def wait_for(conn: asyncpg.Connection, sql: str, expected: Any, *args: Any) -> None:
    """Poll ``sql`` until it returns ``expected``."""

    async def check() -> bool:
        return bool(await conn.fetchval(sql, *args) == expected)

    await until(check)


def event(customer: str, value: str, unit: str = "GB", **extra: Any) -> dict[str, Any]:
    """One bandwidth ``UsageEvent`` as the ingest route takes it."""
    return {
        "customerId": customer,
        "resourceType": "bandwidth",
        "value": value,
        "unit": unit,
        "timestamp": "2026-11-20T10:00:00Z",
        **extra,
    }


def sample(metrics: Any, name: str, **labels: str) -> float:
    """The value of sample ``name`` (e.g. ``resmon_hub_readings_consumed_total``), 0 if unset.

    ``metrics`` is a :class:`hub.metrics.HubMetrics`: read through its registry,
    the public API, as a scraper would see the value.
    """
    value = metrics.registry.get_sample_value(name, labels or None)
    return 0.0 if value is None else float(value)


async def send_reading(
    producer: Any,
    topic: str,
    reading: Any,
    *,
    value: bytes | None = None,
    headers: list[tuple[str, bytes | None]] | None = None,
    partition: int | None = None,
) -> None:
    """Send ``reading`` as the agents do; ``value``/``headers`` replace its record's."""
    from protocol import encode_event

    record = encode_event(reading, source="urn:test")
    await producer.send_and_wait(
        topic,
        value=record.value if value is None else value,
        key=record.key,
        headers=record.headers if headers is None else headers,
        partition=partition,
    )
