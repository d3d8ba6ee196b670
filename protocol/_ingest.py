"""The plan's HTTP ``UsageEvent``, as API gateways and apps post it.

``POST /api/metrics/ingest`` accepts this JSON (one object, or a list for the
batch form). It is converted to an exact :class:`UsageReading` in base units;
:func:`to_reading` refuses a value that is not a whole number of base units;
:func:`to_rounded_reading` rounds it half to even and says by how much.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Literal

import msgspec

from ._events import UsageReading, resource_key
from ._exceptions import DecodeError, UnitError
from ._units import RESOURCE_BASE_UNIT, to_base, to_base_rounded, unit_factor

__all__ = [
    "UsageEvent",
    "check_utf8",
    "decode_usage_events",
    "to_reading",
    "to_rounded_reading",
]

ResourceType = Literal["bandwidth", "storage", "api_calls", "cpu", "memory"]
_LEVEL_TYPES = frozenset({"storage", "memory"})


class UsageEvent(msgspec.Struct, frozen=True, rename="camel", forbid_unknown_fields=True):
    customer_id: str
    resource_type: ResourceType
    value: Decimal
    unit: str
    timestamp: datetime | None = None
    source: str = "api_gateway"
    resource_name: str | None = None
    tenant_id: str | None = None
    #: an idempotency key; when set, posting the same event twice counts it once
    event_id: str | None = None
    #: the start of the interval the value covers; defaults to ``timestamp``
    interval_start: datetime | None = None


_one = msgspec.json.Decoder(UsageEvent)
_many = msgspec.json.Decoder(list[UsageEvent] | UsageEvent)


def check_utf8(body: bytes) -> None:
    """Raise :class:`DecodeError` naming the byte offset where ``body`` stops being UTF-8."""
    try:
        body.decode("utf-8")
    except UnicodeDecodeError as exc:
        bad = body[exc.start : exc.end].hex()
        raise DecodeError(
            f"not valid UTF-8 at byte offset {exc.start} (0x{bad}: {exc.reason})",
            where="body",
        ) from None


def decode_usage_events(body: bytes) -> list[UsageEvent]:
    """Decode one event or a list of them; raise :class:`DecodeError` naming the bad field."""
    try:
        decoded = _many.decode(body)
    except UnicodeDecodeError:  # inside a JSON string; its offset is the string's, not the body's
        check_utf8(body)
        raise DecodeError("not valid UTF-8", where="body") from None  # pragma: no cover
    except msgspec.ValidationError as exc:
        raise DecodeError(str(exc)) from None
    except msgspec.DecodeError as exc:
        raise DecodeError(f"body is not valid JSON: {exc}") from None
    return decoded if isinstance(decoded, list) else [decoded]


def _ms(dt: datetime) -> int:
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return int(dt.timestamp() * 1000)


def to_reading(event: UsageEvent, *, now_ms: int) -> UsageReading:
    """Convert to an exact reading in the resource type's base unit (a fraction is refused)."""
    return _convert(event, now_ms, rounded=False)[0]


def to_rounded_reading(event: UsageEvent, *, now_ms: int) -> tuple[UsageReading, Decimal]:
    """Convert like :func:`to_reading`, rounding a fraction of a base unit half to even.

    Returns the reading and by how much its value was rounded, in base units.
    """
    return _convert(event, now_ms, rounded=True)


def _convert(event: UsageEvent, now_ms: int, *, rounded: bool) -> tuple[UsageReading, Decimal]:
    expected = RESOURCE_BASE_UNIT[event.resource_type]
    rounding = Decimal(0)
    try:
        base, _ = unit_factor(event.unit)
        if base != expected:
            raise UnitError(
                f"unit {event.unit!r} measures {base}s but {event.resource_type} "
                f"is measured in {expected}s"
            )
        if rounded:
            value, rounding = to_base_rounded(event.value, event.unit)
        else:
            value = to_base(event.value, event.unit)
    except UnitError as exc:
        raise DecodeError(str(exc), where="$.unit/$.value") from None
    end = _ms(event.timestamp) if event.timestamp else now_ms
    start = _ms(event.interval_start) if event.interval_start else end
    if start > end:
        raise DecodeError("intervalStart is after timestamp", where="$.intervalStart")
    reading = UsageReading(
        customer_id=event.customer_id,
        resource_type=event.resource_type,
        resource_key=resource_key(event.customer_id, event.resource_type, event.resource_name),
        value=value,
        unit=expected,
        start_ms=start,
        end_ms=end,
        kind="level" if event.resource_type in _LEVEL_TYPES else "delta",
        source=event.source,
        tenant_id=event.tenant_id,
    )
    return reading, rounding
