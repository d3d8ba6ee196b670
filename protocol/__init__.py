"""resmon's wire protocol: usage readings, gaps, alerts and optimization events,
their CloudEvents 1.0 Kafka encoding (binary content mode), deterministic ids,
and exact unit conversion.

Both the edge agent and the hub import only this package to talk to each other.
"""

from ._cloudevents import (
    BUFFERED_HEADER,
    STAGE_BUCKETS,
    TOPIC_ALERTS,
    TOPIC_OPTIMIZATION,
    TOPIC_USAGE_RAW,
    TYPE_ALERT,
    TYPE_OPTIMIZATION,
    TYPE_THRESHOLD,
    TYPE_USAGE_GAP,
    TYPE_USAGE_RAW,
    DecodedEvent,
    KafkaRecord,
    buffered_header,
    decode_record,
    encode_event,
)
from ._events import (
    AlertEvent,
    GapReason,
    OptimizationEvent,
    UsageGap,
    UsageReading,
    resource_key,
)
from ._exceptions import DecodeError, ProtocolError, UnitError
from ._ids import event_id
from ._ingest import UsageEvent, check_utf8, decode_usage_events, to_reading, to_rounded_reading
from ._units import (
    BASE_UNITS,
    FORMER_BASE_UNITS,
    RESOURCE_BASE_UNIT,
    base_unit_of,
    from_base,
    rebase,
    to_base,
    to_base_rounded,
    unit_factor,
)

__all__ = [
    "BASE_UNITS",
    "BUFFERED_HEADER",
    "FORMER_BASE_UNITS",
    "RESOURCE_BASE_UNIT",
    "STAGE_BUCKETS",
    "TOPIC_ALERTS",
    "TOPIC_OPTIMIZATION",
    "TOPIC_USAGE_RAW",
    "TYPE_ALERT",
    "TYPE_OPTIMIZATION",
    "TYPE_THRESHOLD",
    "TYPE_USAGE_GAP",
    "TYPE_USAGE_RAW",
    "AlertEvent",
    "DecodeError",
    "DecodedEvent",
    "GapReason",
    "KafkaRecord",
    "OptimizationEvent",
    "ProtocolError",
    "UnitError",
    "UsageEvent",
    "UsageGap",
    "UsageReading",
    "base_unit_of",
    "buffered_header",
    "check_utf8",
    "decode_record",
    "decode_usage_events",
    "encode_event",
    "event_id",
    "from_base",
    "rebase",
    "resource_key",
    "to_base",
    "to_base_rounded",
    "to_reading",
    "to_rounded_reading",
    "unit_factor",
]
