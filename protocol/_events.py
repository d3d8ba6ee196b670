"""Wire structs: what travels between agents, the hub and the outside world.

Schema evolution follows msgspec's rules: a new field always has a default and
an existing field never changes type. JSON field names are camelCase, as in the
original plan's ``UsageEvent``.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Literal

import msgspec

__all__ = [
    "AlertEvent",
    "GapReason",
    "OptimizationEvent",
    "UsageGap",
    "UsageReading",
    "resource_key",
]

Kind = Literal["delta", "level"]
Direction = Literal["in", "out"]
#: a count of base units: usage never goes below zero
Count = Annotated[int, msgspec.Meta(ge=0)]
#: milliseconds since the Unix epoch
EpochMs = Annotated[int, msgspec.Meta(ge=0)]


def resource_key(customer_id: str, resource_type: str, name: str | None = None) -> str:
    """The identity of one customer resource: the Kafka key and the hub actor's name.

    ``name`` tells apart two resources of one type (two circuits of one customer).
    """
    return f"{customer_id}/{resource_type}/{name}" if name else f"{customer_id}/{resource_type}"


class UsageReading(msgspec.Struct, frozen=True, rename="camel", forbid_unknown_fields=True):
    """One exact usage figure for one customer resource over ``[start_ms, end_ms)``.

    ``kind="delta"`` values are summed over the billing period (bytes moved,
    requests served, CPU milliseconds); ``kind="level"`` values are the level
    at ``end_ms`` (storage or memory in use). ``value`` is an integer count of
    ``unit``, which is a base unit (``byte``, ``request``, ``millisecond``). A
    CPU reading in ``second`` (before milliseconds) is converted when decoded.
    """

    customer_id: str
    resource_type: str
    resource_key: str
    value: Count
    unit: str
    start_ms: EpochMs
    end_ms: EpochMs
    kind: Kind = "delta"
    source: str = "snmp"
    tenant_id: str | None = None
    device: str | None = None
    interface: str | None = None
    direction: Direction | None = None


#: why a stretch of a resource's usage is unknown (see docs/architecture.md)
GapReason = Literal[
    "poll_failed",
    "reboot",
    "discontinuity",
    "over_speed",
    "counter_missing",
    "agent_restart",
    "buffer_full",
]


class UsageGap(msgspec.Struct, frozen=True, rename="camel", forbid_unknown_fields=True):
    """An interval for which no usage could be measured, and why.

    A failed poll, a device reboot or a counter discontinuity is never billed
    as zero or as garbage: it is reported as a gap so the hub and the billing
    team can see it.
    """

    customer_id: str
    resource_type: str
    resource_key: str
    start_ms: EpochMs
    end_ms: EpochMs
    reason: GapReason
    source: str = "snmp"
    tenant_id: str | None = None
    device: str | None = None
    interface: str | None = None
    direction: Direction | None = None
    detail: str | None = None


class AlertEvent(msgspec.Struct, frozen=True, rename="camel"):
    """An alert raised, escalated or resolved by the hub (``resource.alerts``).

    Values are in the catalog unit (``unit``), as exact decimals.
    """

    alert_id: str
    customer_id: str
    resource_type: str
    resource_key: str
    alert_type: str
    severity: str
    status: str
    message: str
    current_usage: Decimal
    threshold: Decimal | None
    limit: Decimal | None
    percentage: Decimal | None
    unit: str
    at_ms: int
    tenant_id: str | None = None
    #: anomalies: how many standard deviations the reading was from the window's mean
    z_score: float | None = None
    #: forecasts: when the period total is expected to reach the limit (ms since epoch)
    forecast_at_ms: int | None = None
    #: forecasts: confidence in that date, percent (0..100)
    confidence: Decimal | None = None


class OptimizationEvent(msgspec.Struct, frozen=True, rename="camel"):
    """A cost optimization recommendation (``optimization.events``)."""

    recommendation_id: str
    customer_id: str
    recommendation_type: str
    potential_savings: Decimal
    currency: str
    description: str
    at_ms: int
    resource_key: str | None = None
    tenant_id: str | None = None
