"""CloudEvents 1.0 over Kafka: binary content mode out, binary or structured mode in.

The event's attributes travel as ``ce_*`` record headers, the data (JSON) as
the record value and the resource key as the record key, per the CloudEvents
Kafka protocol binding. This is the hot path of every agent and of the hub, so
it is written directly against the binding; the tests check it against the
CloudEvents SDK in both directions.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Final, TypeAlias

import msgspec

from ._events import AlertEvent, OptimizationEvent, UsageGap, UsageReading
from ._exceptions import DecodeError, UnitError
from ._ids import event_id
from ._units import FORMER_BASE_UNITS, RESOURCE_BASE_UNIT, base_unit_of, rebase

__all__ = [
    "BUFFERED_HEADER",
    "STAGE_BUCKETS",
    "TOPIC_ALERTS",
    "TOPIC_OPTIMIZATION",
    "TOPIC_USAGE_RAW",
    "TYPE_ALERT",
    "TYPE_OPTIMIZATION",
    "TYPE_THRESHOLD",
    "TYPE_USAGE_GAP",
    "TYPE_USAGE_RAW",
    "DecodedEvent",
    "KafkaRecord",
    "buffered_header",
    "decode_record",
    "encode_event",
]

TOPIC_USAGE_RAW: Final = "resource.usage.raw"
TOPIC_ALERTS: Final = "resource.alerts"
TOPIC_OPTIMIZATION: Final = "optimization.events"

TYPE_USAGE_RAW: Final = "resource.usage.raw.v1"
TYPE_USAGE_GAP: Final = "resource.usage.gap.v1"
TYPE_THRESHOLD: Final = "usage.threshold.v1"
TYPE_ALERT: Final = "resource.alert.v1"
TYPE_OPTIMIZATION: Final = "cost.optimization.v1"

#: CloudEvents extension attribute ``resmonbuffered``: when the agent appended the
#: event to its disk buffer, milliseconds since the epoch on the agent's clock. Only
#: for the latency breakdown per stage; an event without it (an older agent, another
#: producer) decodes the same, with ``buffered_ms`` None.
BUFFERED_HEADER: Final = "ce_resmonbuffered"
#: bucket bounds (seconds) of the agent's and the hub's per-stage latency histograms,
#: one ladder for both so their stages read side by side: 1-2-5 from 0.5 ms to 5 min
STAGE_BUCKETS: Final = (
    0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5,
    1.0, 2.0, 5.0, 10.0, 20.0, 60.0, 300.0,
)  # fmt: skip

_CONTENT_TYPE: Final = b"application/json"
_SPECVERSION: Final = b"1.0"
_STRUCTURED: Final = b"application/cloudevents+json"
_BATCH: Final = b"application/cloudevents-batch+json"

Payload: TypeAlias = UsageReading | UsageGap | AlertEvent | OptimizationEvent

_TYPE_OF: Final[dict[type, str]] = {
    UsageReading: TYPE_USAGE_RAW,
    UsageGap: TYPE_USAGE_GAP,
}
_DECODERS: Final[dict[str, msgspec.json.Decoder[Payload]]] = {
    TYPE_USAGE_RAW: msgspec.json.Decoder(UsageReading),
    TYPE_USAGE_GAP: msgspec.json.Decoder(UsageGap),
    TYPE_THRESHOLD: msgspec.json.Decoder(AlertEvent),
    TYPE_ALERT: msgspec.json.Decoder(AlertEvent),
    TYPE_OPTIMIZATION: msgspec.json.Decoder(OptimizationEvent),
}
_encoder = msgspec.json.Encoder(decimal_format="string")

Headers: TypeAlias = list[tuple[str, bytes]]


class KafkaRecord(msgspec.Struct, frozen=True):
    """What to hand to a Kafka producer: topic-independent key, value and headers."""

    key: bytes
    value: bytes
    headers: Headers
    event_id: str


class DecodedEvent(msgspec.Struct, frozen=True):
    """A record turned back into a typed payload plus its CloudEvents attributes."""

    id: str
    type: str
    source: str
    time: str | None
    data: Payload
    #: the ``resmonbuffered`` extension (ms), None when absent or not a whole number
    buffered_ms: int | None = None


def buffered_header(ms: int) -> tuple[str, bytes]:
    """The ``resmonbuffered`` header for an event buffered at ``ms`` (see BUFFERED_HEADER)."""
    return (BUFFERED_HEADER, str(ms).encode())


def _buffered_ms(raw: bytes | None) -> int | None:
    """The ``resmonbuffered`` value; a malformed one is treated as absent.

    It only feeds a latency histogram: refusing a billable reading for it would
    lose usage, so it is never a reason to dead-letter the event.
    """
    if raw is None or not raw.isdigit() or len(raw) > 16:
        return None
    return int(raw)


def _format_time(ms: int) -> bytes:
    return (
        datetime.fromtimestamp(ms / 1000, tz=UTC)
        .isoformat(timespec="milliseconds")
        .replace("+00:00", "Z")
        .encode()
    )


def encode_event(
    payload: Payload,
    *,
    source: str,
    event_type: str | None = None,
    id: str | None = None,
    time_ms: int | None = None,
) -> KafkaRecord:
    """Encode ``payload`` as a binary-mode CloudEvent Kafka record.

    ``event_type`` is inferred for readings and gaps; alert events need it
    (``usage.threshold.v1`` or ``resource.alert.v1``). ``id`` defaults to the
    deterministic :func:`~protocol.event_id`, so re-encoding a reading gives
    the same id.
    """
    etype = event_type or _TYPE_OF.get(type(payload))
    if etype is None:
        raise TypeError(f"event_type is required for {type(payload).__name__}")
    eid = id or event_id(etype, payload)
    if time_ms is None:
        time_ms = getattr(payload, "end_ms", None) or getattr(payload, "at_ms", None)
    headers: Headers = [
        ("ce_specversion", _SPECVERSION),
        ("ce_id", eid.encode()),
        ("ce_source", source.encode()),
        ("ce_type", etype.encode()),
        ("content-type", _CONTENT_TYPE),
    ]
    if time_ms is not None:
        headers.append(("ce_time", _format_time(time_ms)))
    subject: str | None = getattr(payload, "resource_key", None)
    key: str = subject or payload.customer_id
    if subject:
        headers.append(("ce_subject", subject.encode()))
    return KafkaRecord(
        key=key.encode(), value=_encoder.encode(payload), headers=headers, event_id=eid
    )


def _header(headers: dict[str, bytes], name: str) -> str:
    raw = headers.get(name)
    if raw is None:
        why = "header has no value" if name in headers else "missing CloudEvents header"
        raise DecodeError(why, where=name)
    try:
        return raw.decode()
    except UnicodeDecodeError:
        raise DecodeError("header is not UTF-8", where=name) from None


def _decode_data(decoder: msgspec.json.Decoder[Payload], value: bytes) -> Payload:
    """The event's data, or :class:`DecodeError` for anything that is not a valid payload.

    A reading counted in a former base unit of its resource type (CPU seconds,
    from before milliseconds) comes out in today's base unit, exactly.
    """
    try:
        data = decoder.decode(value)
    except msgspec.ValidationError as exc:
        raise DecodeError(str(exc), where="data") from None
    except msgspec.DecodeError as exc:
        raise DecodeError(f"data is not valid JSON: {exc}", where="data") from None
    except UnicodeDecodeError as exc:  # msgspec checks UTF-8 lazily, inside strings
        raise DecodeError(
            f"data is not valid UTF-8: byte 0x{exc.object[exc.start]:02x} inside a string",
            where="data",
        ) from None
    if isinstance(data, UsageReading) and data.unit in FORMER_BASE_UNITS:
        return _rebased(data)
    return data


def _rebased(reading: UsageReading) -> UsageReading:
    if RESOURCE_BASE_UNIT.get(reading.resource_type) != base_unit_of(reading.unit):
        return reading  # not this type's former unit: the hub refuses it, naming both units
    try:
        value, unit = rebase(reading.value, reading.unit)
    except UnitError as exc:
        raise DecodeError(str(exc), where="data.value") from None
    return msgspec.structs.replace(reading, value=value, unit=unit)


class _Structured(msgspec.Struct, frozen=True):
    """A structured-mode CloudEvent: the attributes and the data in one JSON object."""

    specversion: str
    id: str
    source: str
    type: str
    time: str | None = None
    subject: str | None = None
    datacontenttype: str = "application/json"
    data: msgspec.Raw = msgspec.Raw(b"null")
    data_base64: str | None = None


_structured = msgspec.json.Decoder(_Structured)


def _decode_structured(value: bytes | None) -> DecodedEvent:
    if value is None:
        raise DecodeError("record has no data", where="value")
    try:
        envelope = _structured.decode(value)
    except msgspec.ValidationError as exc:
        raise DecodeError(f"structured-mode event: {exc}", where="value") from None
    except (msgspec.DecodeError, UnicodeDecodeError) as exc:
        raise DecodeError(
            f"structured-mode event is not valid JSON: {exc}", where="value"
        ) from None
    if envelope.specversion != "1.0":
        raise DecodeError(f"unsupported specversion {envelope.specversion!r}", where="specversion")
    decoder = _DECODERS.get(envelope.type)
    if decoder is None:
        raise DecodeError(f"unknown event type {envelope.type!r}", where="type")
    if not envelope.datacontenttype.startswith(_CONTENT_TYPE.decode()):
        raise DecodeError(
            f"unsupported datacontenttype {envelope.datacontenttype!r}", where="datacontenttype"
        )
    if bytes(envelope.data) == b"null":
        why = "data_base64 is not supported" if envelope.data_base64 else "event has no data"
        raise DecodeError(why, where="data")
    return DecodedEvent(
        id=envelope.id,
        type=envelope.type,
        source=envelope.source,
        time=envelope.time,
        data=_decode_data(decoder, bytes(envelope.data)),
    )


def decode_record(
    value: bytes | None, headers: list[tuple[str, bytes]] | tuple[tuple[str, bytes], ...]
) -> DecodedEvent:
    """Decode a CloudEvent Kafka record; raise :class:`DecodeError` on garbage, never more.

    Binary mode (``ce_*`` headers, the data as the value) is what resmon
    sends; structured mode (``content-type: application/cloudevents+json``,
    attributes and data in one JSON object) is accepted from other
    producers. Batch mode is not defined by the Kafka binding and is refused.
    """
    hdrs = dict(headers)
    ctype = hdrs.get("content-type", _CONTENT_TYPE)
    if ctype is None:  # Kafka allows a header without a value
        raise DecodeError("header has no value", where="content-type")
    if "ce_specversion" not in hdrs:
        if ctype.startswith(_STRUCTURED):
            return _decode_structured(value)
        if ctype.startswith(_BATCH):
            raise DecodeError(
                "batch-mode CloudEvents are not defined for Kafka; send one event per record",
                where="content-type",
            )
    spec = _header(hdrs, "ce_specversion")
    if spec != "1.0":
        raise DecodeError(f"unsupported specversion {spec!r}", where="ce_specversion")
    etype = _header(hdrs, "ce_type")
    decoder = _DECODERS.get(etype)
    if decoder is None:
        raise DecodeError(f"unknown event type {etype!r}", where="ce_type")
    if not ctype.startswith(_CONTENT_TYPE):
        raise DecodeError(f"unsupported content type {ctype!r}", where="content-type")
    if value is None:
        raise DecodeError("record has no data", where="value")
    data = _decode_data(decoder, value)
    time = hdrs.get("ce_time")
    return DecodedEvent(
        id=_header(hdrs, "ce_id"),
        type=etype,
        source=_header(hdrs, "ce_source"),
        time=time.decode(errors="replace") if time is not None else None,
        data=data,
        buffered_ms=_buffered_ms(hdrs.get(BUFFERED_HEADER)),
    )
