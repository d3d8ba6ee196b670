"""Helpers shared by the hub tests."""

from __future__ import annotations

__all__ = ["BASE_UNITS", "event", "minute_reading", "sample", "until", "wait_for"]

import inspect
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import asyncpg  # type: ignore[import-untyped]
from _metrics import sample

from protocol import UsageReading

#: when the minute-long readings of :func:`minute_reading` start
T0 = 1_764_000_000_000  # 2025-11-24T16:00:00Z


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


#: the base unit of each catalog resource type, as the agent and the ingest route send it
BASE_UNITS = {"bandwidth": "byte", "storage": "byte", "api_calls": "request", "cpu": "millisecond"}


def minute_reading(
    key: str, i: int, value: int, *, start_ms: int = T0, step_ms: int = 60_000, **extra: Any
) -> UsageReading:
    """Reading ``i`` of ``key``: ``value`` base units over the ``i``-th step after ``start_ms``.

    The customer and resource type come from the key (``customer/type[/name]``), the
    unit from the type; ``extra`` sets any other field (``device``, ``unit``, ...).
    """
    customer, rtype = key.split("/")[:2]
    fields: dict[str, Any] = {"unit": BASE_UNITS.get(rtype, "byte"), **extra}
    return UsageReading(
        customer_id=customer,
        resource_type=rtype,
        resource_key=key,
        value=value,
        start_ms=start_ms + i * step_ms,
        end_ms=start_ms + (i + 1) * step_ms,
        **fields,
    )


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
