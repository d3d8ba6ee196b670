"""What the hub can store: the checks every reading, gap and event id passes first.

Both doors use them: the Kafka consumer (a record that fails is dead-lettered
with the reason) and ``POST /api/metrics/ingest`` (a 400 naming the field).
Anything PostgreSQL would refuse is refused here, before a batch's
transaction, because a record the database cannot store would fail its batch
on every retry and hold up the partition.
"""

from __future__ import annotations

import time

from protocol import RESOURCE_BASE_UNIT, UsageGap, UsageReading

__all__ = [
    "FUTURE_ALLOWANCE_MS",
    "MAX_EVENT_ID",
    "MAX_EVENT_SOURCE",
    "validate_event_id",
    "validate_event_source",
    "validate_reading",
]

_MAX_VALUE = 2**63 - 1
_MAX_MS = 253_402_300_799_999  # 9999-12-31T23:59:59.999Z


#: text fields (wire name, attribute) and how long they may be: the columns they land
#: in, with room to spare where the column is TEXT (an index entry must stay far below
#: PostgreSQL's ~2.7 kB)
_TEXT_LIMITS = (
    ("customerId", "customer_id", 200),
    ("resourceType", "resource_type", 50),
    ("resourceKey", "resource_key", 500),
    ("unit", "unit", 20),
    ("source", "source", 50),
    ("tenantId", "tenant_id", 100),
    ("device", "device", 255),
    ("interface", "interface", 255),
    ("detail", "detail", 2000),
)
#: the longest CloudEvent id stored (``usage_metrics.event_id``, ``usage_gaps.event_id``)
MAX_EVENT_ID = 200
#: the longest CloudEvent source stored (``usage_*.event_source``): with the id, an entry
#: of the ``usage_gaps`` unique index stays under PostgreSQL's limit in any UTF-8
MAX_EVENT_SOURCE = 255
#: how far ahead of this hub's clock a reading may end (clock skew); a reading from
#: further ahead would start a billing month early and make this month's readings late
FUTURE_ALLOWANCE_MS = 3_600_000


def _identity_text(value: str, limit: int) -> str | None:
    if not 0 < len(value) <= limit or "\x00" in value:
        return f"must be 1..{limit} characters without NUL (has {len(value)})"
    return None


def validate_event_id(event_id: str) -> str | None:
    """Why ``event_id`` cannot be stored as a CloudEvent id (a predicate for the
    caller to name: "must be ..."), or None if it can."""
    return _identity_text(event_id, MAX_EVENT_ID)


def validate_event_source(source: str) -> str | None:
    """Why ``source`` cannot be stored as a CloudEvent source (as :func:`validate_event_id`)."""
    return _identity_text(source, MAX_EVENT_SOURCE)


def validate_reading(r: UsageReading | UsageGap, *, now_ms: int | None = None) -> str | None:
    """Why ``r`` cannot be stored, or None if it can."""
    for name, attribute, limit in _TEXT_LIMITS:
        value = getattr(r, attribute, None)
        if value is None:
            continue
        if "\x00" in value:
            return f"{name} contains a NUL character"
        if len(value) > limit:
            return f"{name} is {len(value)} characters long; at most {limit}"
    prefix = f"{r.customer_id}/{r.resource_type}"
    if not r.customer_id or "/" in r.customer_id or not r.resource_type:
        return "customerId/resourceType must be non-empty and customerId must not contain '/'"
    if r.resource_key != prefix and not r.resource_key.startswith(prefix + "/"):
        return f"resourceKey {r.resource_key!r} does not start with {prefix!r}"
    if not 0 <= r.start_ms <= r.end_ms <= _MAX_MS:
        return f"need 0 <= startMs <= endMs <= {_MAX_MS}"
    now = time.time_ns() // 1_000_000 if now_ms is None else now_ms
    if r.end_ms > now + FUTURE_ALLOWANCE_MS:
        ahead = (r.end_ms - now) / 3_600_000
        return (
            f"endMs {r.end_ms} is {ahead:,.1f} h ahead of this hub's clock (at most "
            f"{FUTURE_ALLOWANCE_MS // 60_000} min): check the sender's clock"
        )
    if isinstance(r, UsageReading):
        if not 0 <= r.value <= _MAX_VALUE:
            return f"value {r.value} is outside 0..2^63-1"
        expected = RESOURCE_BASE_UNIT.get(r.resource_type)
        if expected is not None and r.unit != expected:
            return f"unit {r.unit!r} is not the base unit {expected!r} of {r.resource_type}"
    return None
