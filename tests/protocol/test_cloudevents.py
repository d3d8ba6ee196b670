"""CloudEvents binary-mode encoding: ids, headers, round trips, SDK interop, garbage."""

from __future__ import annotations

from decimal import Decimal
from typing import cast

import msgspec
import pytest
from cloudevents.core.bindings.kafka import KafkaMessage, from_binary, to_binary, to_structured
from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v1.event import CloudEvent

from protocol import (
    BUFFERED_HEADER,
    TYPE_THRESHOLD,
    TYPE_USAGE_GAP,
    TYPE_USAGE_RAW,
    AlertEvent,
    DecodeError,
    UsageGap,
    UsageReading,
    buffered_header,
    decode_record,
    encode_event,
    resource_key,
)


def _reading(value: int = 1_234_567_890_123, end_ms: int = 1_700_000_060_000) -> UsageReading:
    return UsageReading(
        customer_id="cust-0001",
        resource_type="bandwidth",
        resource_key=resource_key("cust-0001", "bandwidth"),
        value=value,
        unit="byte",
        start_ms=end_ms - 60_000,
        end_ms=end_ms,
        device="rtr-1",
        interface="ge-0/0/1",
        direction="in",
    )


def test_same_reading_always_gets_the_same_event_id() -> None:
    first = encode_event(_reading(), source="urn:resmon:agent:a1")
    again = encode_event(_reading(), source="urn:resmon:agent:a1")
    assert first.event_id == again.event_id
    assert first.value == again.value


def test_different_readings_get_different_event_ids() -> None:
    ids = {
        encode_event(_reading(end_ms=1_700_000_000_000 + i), source="s").event_id
        for i in range(500)
    }
    assert len(ids) == 500


def test_record_key_is_the_resource_key_so_one_resource_stays_ordered() -> None:
    record = encode_event(_reading(), source="s")
    assert record.key == b"cust-0001/bandwidth"


def test_binary_mode_headers_carry_the_required_attributes() -> None:
    record = encode_event(_reading(), source="urn:resmon:agent:a1")
    headers = dict(record.headers)
    assert headers["ce_specversion"] == b"1.0"
    assert headers["ce_type"] == TYPE_USAGE_RAW.encode()
    assert headers["ce_source"] == b"urn:resmon:agent:a1"
    assert headers["ce_id"] == record.event_id.encode()
    assert headers["ce_time"] == b"2023-11-14T22:14:20.000Z"
    assert headers["content-type"] == b"application/json"


def test_reading_round_trips_with_exact_integer_value() -> None:
    big = 2**64 - 1
    record = encode_event(_reading(value=big), source="s")
    decoded = decode_record(record.value, record.headers)
    assert decoded.data == _reading(value=big)
    assert decoded.id == record.event_id
    assert decoded.type == TYPE_USAGE_RAW


def test_gap_round_trips() -> None:
    gap = UsageGap(
        customer_id="c",
        resource_type="bandwidth",
        resource_key="c/bandwidth",
        start_ms=1,
        end_ms=2,
        reason="reboot",
    )
    record = encode_event(gap, source="s")
    decoded = decode_record(record.value, record.headers)
    assert decoded.type == TYPE_USAGE_GAP
    assert decoded.data == gap


def test_alert_event_needs_an_explicit_type_and_keeps_decimals_exact() -> None:
    alert = AlertEvent(
        alert_id="a1",
        customer_id="c",
        resource_type="bandwidth",
        resource_key="c/bandwidth",
        alert_type="THRESHOLD_WARNING",
        severity="HIGH",
        status="ACTIVE",
        message="m",
        current_usage=Decimal("800.000000001"),
        threshold=Decimal("800"),
        limit=Decimal("1000"),
        percentage=Decimal("80.0000000001"),
        unit="GB",
        at_ms=5,
    )
    with pytest.raises(TypeError, match="event_type is required"):
        encode_event(alert, source="s")
    record = encode_event(alert, source="s", event_type=TYPE_THRESHOLD, id="a1")
    decoded = decode_record(record.value, record.headers)
    assert decoded.data == alert


def test_cloudevents_sdk_reads_what_we_write() -> None:
    record = encode_event(_reading(), source="urn:resmon:agent:a1")
    message = KafkaMessage(headers=dict(record.headers), key=record.key, value=record.value)
    event = from_binary(message, JSONFormat())
    assert event.get_id() == record.event_id
    assert event.get_type() == TYPE_USAGE_RAW
    assert event.get_source() == "urn:resmon:agent:a1"
    data = event.get_data()
    assert isinstance(data, dict)
    assert data["value"] == 1_234_567_890_123


def _sdk_event(event_id: str) -> CloudEvent:
    """A reading as the CloudEvents SDK builds it, from another producer."""
    return CloudEvent(
        attributes={
            "type": TYPE_USAGE_RAW,
            "source": "urn:other",
            "id": event_id,
            "datacontenttype": "application/json",
        },
        data=msgspec.to_builtins(_reading()),
    )


def test_we_read_what_the_cloudevents_sdk_writes() -> None:
    message = to_binary(_sdk_event("x-1"), JSONFormat())
    decoded = decode_record(message.value, list(message.headers.items()))
    assert decoded.id == "x-1"
    assert decoded.data == _reading()


@pytest.mark.parametrize(
    ("value", "headers", "where"),
    [
        (b"{}", [], "ce_specversion"),
        (b"{}", [("ce_specversion", b"0.3")], "ce_specversion"),
        (b"{}", [("ce_specversion", b"1.0"), ("ce_type", b"nope")], "ce_type"),
        (b"not json", [("ce_specversion", b"1.0"), ("ce_type", TYPE_USAGE_RAW.encode())], "data"),
        (
            b'{"value": 1}',
            [("ce_specversion", b"1.0"), ("ce_type", TYPE_USAGE_RAW.encode())],
            "data",
        ),
        (None, [("ce_specversion", b"1.0"), ("ce_type", TYPE_USAGE_RAW.encode())], "value"),
        (
            b"{}",
            [
                ("ce_specversion", b"1.0"),
                ("ce_type", TYPE_USAGE_RAW.encode()),
                ("content-type", b"text/xml"),
            ],
            "content-type",
        ),
    ],
)
def test_garbage_raises_a_decode_error_naming_the_bad_part(
    value: bytes | None, headers: list[tuple[str, bytes]], where: str
) -> None:
    with pytest.raises(DecodeError) as info:
        decode_record(value, headers)
    assert info.value.where == where
    assert str(info.value).startswith(where)


def test_negative_or_float_values_are_refused() -> None:
    good = encode_event(_reading(), source="s")
    for bad in (b'"value":-1', b'"value":1.5'):
        raw = good.value.replace(b'"value":1234567890123', bad)
        with pytest.raises(DecodeError):
            decode_record(raw, good.headers)


def test_we_read_structured_mode_events_the_cloudevents_sdk_writes() -> None:
    message = to_structured(_sdk_event("s-1"), JSONFormat())
    decoded = decode_record(message.value, list(message.headers.items()))
    assert (decoded.id, decoded.source, decoded.type) == ("s-1", "urn:other", TYPE_USAGE_RAW)
    assert decoded.data == _reading()


@pytest.mark.parametrize(
    ("value", "where"),
    [
        (b"not json", "value"),
        (b'{"specversion":"1.0","id":"1","source":"s","type":"nope","data":{}}', "type"),
        (b'{"specversion":"1.0","id":"1","source":"s","type":"resource.usage.raw.v1"}', "data"),
        (
            b'{"specversion":"1.0","id":"1","source":"s","type":"resource.usage.raw.v1",'
            b'"data_base64":"e30="}',
            "data",
        ),
    ],
)
def test_structured_mode_garbage_is_a_decode_error(value: bytes, where: str) -> None:
    headers = [("content-type", b"application/cloudevents+json; charset=utf-8")]
    with pytest.raises(DecodeError) as info:
        decode_record(value, headers)
    assert info.value.where == where


def test_batch_mode_records_are_refused_with_the_reason() -> None:
    with pytest.raises(DecodeError, match="batch-mode"):
        decode_record(b"[]", [("content-type", b"application/cloudevents-batch+json")])


@pytest.mark.parametrize("mode", ["binary", "structured"])
def test_invalid_utf8_inside_the_data_is_a_decode_error_not_a_crash(mode: str) -> None:
    good = encode_event(_reading(), source="s")
    bad = good.value.replace(b'"cust-0001"', b'"cust-\xff0001"', 1)
    assert bad != good.value
    if mode == "binary":
        value, headers = bad, good.headers
    else:
        value = b'{"specversion":"1.0","id":"1","source":"s","type":"%s","data":%s}' % (
            TYPE_USAGE_RAW.encode(),
            bad,
        )
        headers = [("content-type", b"application/cloudevents+json")]
    with pytest.raises(DecodeError, match="UTF-8"):
        decode_record(value, headers)


def test_a_header_that_is_not_utf8_is_a_decode_error() -> None:
    good = encode_event(_reading(), source="s")
    headers = [(k, b"\xff\xfe" if k == "ce_id" else v) for k, v in good.headers]
    with pytest.raises(DecodeError) as info:
        decode_record(good.value, headers)
    assert info.value.where == "ce_id"


def _cpu_seconds(value: int, resource_type: str = "cpu") -> UsageReading:
    """A reading as a sender from before milliseconds wrote it: CPU time in seconds."""
    return UsageReading(
        customer_id="cust-0001",
        resource_type=resource_type,
        resource_key=resource_key("cust-0001", resource_type),
        value=value,
        unit="second",
        start_ms=1_700_000_000_000,
        end_ms=1_700_000_060_000,
    )


@pytest.mark.parametrize("mode", ["binary", "structured"])
def test_a_cpu_reading_in_seconds_from_before_milliseconds_decodes_exactly_in_ms(
    mode: str,
) -> None:
    record = encode_event(_cpu_seconds(2**40 + 7), source="s")
    if mode == "binary":
        decoded = decode_record(record.value, record.headers)
    else:
        value = b'{"specversion":"1.0","id":"%s","source":"s","type":"%s","data":%s}' % (
            record.event_id.encode(),
            TYPE_USAGE_RAW.encode(),
            record.value,
        )
        decoded = decode_record(value, [("content-type", b"application/cloudevents+json")])
    assert decoded.id == record.event_id  # the id it was sent with: dedup still matches
    assert decoded.data == msgspec.structs.replace(
        _cpu_seconds(0), value=(2**40 + 7) * 1000, unit="millisecond"
    )


def test_cpu_seconds_beyond_what_milliseconds_can_hold_are_a_decode_error_naming_the_value() -> (
    None
):
    fits = (2**63 - 1) // 1000
    record = encode_event(_cpu_seconds(fits), source="s")
    assert cast("UsageReading", decode_record(record.value, record.headers).data).value == (
        fits * 1000
    )
    record = encode_event(_cpu_seconds(fits + 1), source="s")
    with pytest.raises(DecodeError, match=f"{fits + 1} second is .* more than 2") as info:
        decode_record(record.value, record.headers)
    assert info.value.where == "data.value"


def test_seconds_on_a_resource_type_not_measured_in_time_are_left_for_the_hub_to_refuse() -> None:
    record = encode_event(_cpu_seconds(5, "bandwidth"), source="s")
    assert decode_record(record.value, record.headers).data == _cpu_seconds(5, "bandwidth")


def test_a_whole_number_of_cpu_seconds_in_ms_keeps_the_id_the_release_before_gave_it() -> None:
    """So a cpu event posted before the upgrade and retried after it is counted once."""
    seconds = msgspec.structs.replace(_cpu_seconds(5), source="api_gateway")
    ms = msgspec.structs.replace(seconds, value=5_000, unit="millisecond")
    before = "b692c196-4d2f-6ccf-0523-6855fc026bbf"  # computed by the code of b493957
    assert encode_event(seconds, source="urn:resmon:hub").event_id == before
    assert encode_event(ms, source="urn:resmon:hub").event_id == before
    # a value that is not whole seconds, or another field, is another event
    finer = msgspec.structs.replace(ms, value=5_001)
    assert encode_event(finer, source="urn:resmon:hub").event_id != before
    later = msgspec.structs.replace(ms, end_ms=ms.end_ms + 1)
    assert encode_event(later, source="urn:resmon:hub").event_id != before


STAMPED_READING = UsageReading(
    customer_id="c1",
    resource_type="bandwidth",
    resource_key="c1/bandwidth",
    value=7,
    unit="byte",
    start_ms=1_700_000_000_000,
    end_ms=1_700_000_060_000,
)


def test_the_buffered_stamp_round_trips_and_a_record_without_it_still_decodes() -> None:
    reading = STAMPED_READING
    record = encode_event(reading, source="urn:agent:a1")
    old = decode_record(record.value, record.headers)  # as sent before the stamp existed
    assert old.buffered_ms is None
    assert old.data == reading
    stamped = [*record.headers, buffered_header(1_700_000_060_123)]
    assert ("ce_resmonbuffered", b"1700000060123") in stamped
    got = decode_record(record.value, stamped)
    assert got.buffered_ms == 1_700_000_060_123
    assert (got.id, got.data) == (old.id, old.data)  # the stamp changes nothing else


@pytest.mark.parametrize("raw", [b"", b"-5", b"12.5", b"soon", b"1" * 17])
def test_a_malformed_buffered_stamp_is_ignored_not_a_reason_to_refuse_the_reading(
    raw: bytes,
) -> None:
    reading = STAMPED_READING
    record = encode_event(reading, source="urn:agent:a1")
    got = decode_record(record.value, [*record.headers, (BUFFERED_HEADER, raw)])
    assert got.buffered_ms is None
    assert got.data == reading
