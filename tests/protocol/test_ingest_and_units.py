"""The plan's HTTP UsageEvent and exact unit conversion."""

from __future__ import annotations

from decimal import Context, Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocol import (
    BASE_UNITS,
    RESOURCE_BASE_UNIT,
    DecodeError,
    UnitError,
    base_unit_of,
    decode_usage_events,
    from_base,
    rebase,
    to_base,
    to_base_rounded,
    to_reading,
    to_rounded_reading,
)

NOW = 1_700_000_000_000


def test_plan_example_event_converts_to_exact_bytes() -> None:
    body = (
        b'{"customerId": "cust-123", "resourceType": "bandwidth", "value": 1024.5,'
        b' "unit": "GB", "timestamp": "2024-01-15T10:30:00Z", "source": "snmp"}'
    )
    [event] = decode_usage_events(body)
    reading = to_reading(event, now_ms=NOW)
    assert reading.value == 1_024_500_000_000
    assert reading.unit == "byte"
    assert reading.resource_key == "cust-123/bandwidth"
    assert reading.end_ms == 1_705_314_600_000
    assert reading.kind == "delta"


def test_batch_form_decodes_a_list() -> None:
    body = (
        b'[{"customerId":"a","resourceType":"api_calls","value":3,"unit":"request"},'
        b'{"customerId":"b","resourceType":"storage","value":2,"unit":"GiB"}]'
    )
    first, second = (to_reading(e, now_ms=NOW) for e in decode_usage_events(body))
    assert (first.value, first.kind, first.end_ms) == (3, "delta", NOW)
    assert (second.value, second.kind) == (2 * 2**30, "level")


def test_unknown_field_is_refused_by_name() -> None:
    with pytest.raises(DecodeError, match="unknownField"):
        decode_usage_events(
            b'{"customerId":"a","resourceType":"cpu","value":1,"unit":"hour","unknownField":1}'
        )


def test_unknown_resource_type_is_refused() -> None:
    with pytest.raises(DecodeError, match="resourceType"):
        decode_usage_events(b'{"customerId":"a","resourceType":"gold","value":1,"unit":"GB"}')


def test_unit_of_the_wrong_dimension_is_refused() -> None:
    [event] = decode_usage_events(
        b'{"customerId":"a","resourceType":"bandwidth","value":1,"unit":"hour"}'
    )
    with pytest.raises(DecodeError, match="measured in bytes"):
        to_reading(event, now_ms=NOW)


def test_fraction_of_a_byte_is_refused_not_rounded() -> None:
    [event] = decode_usage_events(
        b'{"customerId":"a","resourceType":"bandwidth","value":0.0000000001,"unit":"GB"}'
    )
    with pytest.raises(DecodeError, match="whole number"):
        to_reading(event, now_ms=NOW)


def test_unknown_unit_lists_the_known_ones() -> None:
    with pytest.raises(UnitError, match="known units"):
        to_base(1, "furlong")


@given(st.integers(min_value=0, max_value=2**64), st.sampled_from(["GB", "MB", "GiB", "TiB", "TB"]))
def test_byte_units_convert_back_and_forth_exactly(value: int, unit: str) -> None:

    assert to_base(from_base(value, unit), unit) == value


def test_one_gigabyte_is_ten_to_the_ninth_bytes() -> None:
    assert to_base(Decimal("1"), "GB") == 10**9
    assert from_base(1_500_000_000, "GB") == Decimal("1.5")


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ("Infinity", "not a finite number"),
        ("-Infinity", "not a finite number"),
        ("NaN", "not a finite number"),
        ("sNaN", "not a finite number"),
        ("1e1000000", "out of range"),
        ("1E-41", "out of range"),
        ("1.0000000000000000000000000000001", "whole number"),
    ],
)
def test_to_base_never_rounds_and_refuses_what_is_not_a_finite_exact_value(
    value: str, says: str
) -> None:
    with pytest.raises(UnitError, match=says):
        to_base(Decimal(value), "byte")


def test_to_base_is_exact_beyond_the_default_decimal_precision() -> None:
    # 30 significant digits: the default 28-digit context would round this
    assert to_base(Decimal("123456789012345678901234567.890"), "KB") == (
        123456789012345678901234567890
    )


@pytest.mark.parametrize(
    ("value", "unit", "whole", "by"),
    [
        ("0.5", "byte", 0, "0.5"),
        ("1.5", "byte", 2, "0.5"),
        ("2.5", "byte", 2, "0.5"),
        ("2.5000001", "byte", 3, "0.4999999"),
        ("523.1234567891234", "GB", 523_123_456_789, "0.1234"),
        ("0.0000000004", "GB", 0, "0.4"),
        ("7", "GB", 7 * 10**9, "0"),
        ("0.000000000001", "TB", 1, "0"),
        ("0.0005", "second", 0, "0.5"),  # CPU time, to the millisecond
        ("0.0015", "second", 2, "0.5"),
        ("1.0004", "seconds", 1_000, "0.4"),
        ("0.0000001", "hour", 0, "0.36"),
        ("0.00000125", "hour", 4, "0.5"),
    ],
)
def test_to_base_rounded_rounds_half_to_even_and_says_by_how_much(
    value: str, unit: str, whole: int, by: str
) -> None:
    assert to_base_rounded(Decimal(value), unit) == (whole, Decimal(by))


_FACTOR = {
    "byte": 1,
    "KB": 10**3,
    "GB": 10**9,
    "TiB": 2**40,
    "request": 1,
    "millisecond": 1,
    "second": 1000,
    "minute": 60_000,
    "hour": 3_600_000,
}


@given(
    st.decimals(min_value=0, max_value=10**15, places=12, allow_nan=False, allow_infinity=False),
    st.sampled_from(sorted(_FACTOR)),
)
def test_to_base_rounded_is_the_nearest_whole_count_and_to_base_when_exact(
    value: Decimal, unit: str
) -> None:
    whole, by = to_base_rounded(value, unit)
    exact = Context(prec=100).multiply(value, _FACTOR[unit])
    assert abs(exact - whole) == by
    assert by <= Decimal("0.5")
    if by == Decimal("0.5"):
        assert whole % 2 == 0  # a tie goes to the even neighbour
    if by == 0:
        assert to_base(value, unit) == whole
    else:
        with pytest.raises(UnitError, match="not a whole number"):
            to_base(value, unit)


@pytest.mark.parametrize("value", ["-0.4", "Infinity", "NaN", "1e41", "1e-41"])
def test_to_base_rounded_refuses_what_to_base_refuses_other_than_a_fraction(value: str) -> None:
    with pytest.raises(UnitError):
        to_base_rounded(Decimal(value), "byte")


def test_a_rounded_reading_carries_the_whole_count_and_an_exact_one_is_refused() -> None:
    [event] = decode_usage_events(
        b'{"customerId":"a","resourceType":"bandwidth","value":0.0000000015,"unit":"GB"}'
    )
    reading, by = to_rounded_reading(event, now_ms=NOW)
    assert (reading.value, by) == (2, Decimal("0.5"))
    with pytest.raises(DecodeError, match="not a whole number of bytes"):
        to_reading(event, now_ms=NOW)


def test_cpu_time_is_counted_in_milliseconds() -> None:
    assert RESOURCE_BASE_UNIT["cpu"] == "millisecond"
    assert "millisecond" in BASE_UNITS
    assert "second" not in BASE_UNITS
    for unit in ("ms", "millisecond", "milliseconds", "second", "seconds", "minute", "hour"):
        assert base_unit_of(unit) == "millisecond"


@pytest.mark.parametrize(
    ("value", "unit", "ms"),
    [
        ("1", "ms", 1),
        ("1.5", "second", 1_500),
        ("0.001", "second", 1),
        ("1.5", "hour", 5_400_000),
        ("0.0015", "hour", 5_400),
        ("0.25", "minute", 15_000),
        ("2", "hours", 7_200_000),
        ("86400", "seconds", 86_400_000),
    ],
)
def test_cpu_values_finer_than_a_second_convert_exactly_to_milliseconds(
    value: str, unit: str, ms: int
) -> None:
    assert to_base(Decimal(value), unit) == ms
    assert to_base_rounded(Decimal(value), unit) == (ms, Decimal(0))
    assert from_base(ms, unit) == Decimal(value)


@pytest.mark.parametrize(
    ("value", "unit"), [("0.0005", "second"), ("1.0004", "seconds"), ("0.0000001", "hour")]
)
def test_cpu_time_finer_than_a_millisecond_is_refused_by_to_base_naming_milliseconds(
    value: str, unit: str
) -> None:
    with pytest.raises(UnitError, match="not a whole number of milliseconds"):
        to_base(Decimal(value), unit)


@given(st.integers(min_value=0, max_value=2**64), st.sampled_from(["second", "minute", "hour"]))
def test_whole_time_units_convert_to_milliseconds_and_back_exactly(value: int, unit: str) -> None:
    ms = to_base(value, unit)
    assert ms == value * _FACTOR[unit]
    assert from_base(ms, unit) == value


def test_milliseconds_in_hours_are_exact_for_multiples_of_nine_else_carried_to_80_digits() -> None:
    assert from_base(9, "hour") == Decimal("0.0000025")
    one = from_base(1, "hour")  # 1 / 3,600,000 = 2.777...e-7
    assert len(one.as_tuple().digits) == 80
    assert abs(one * 3_600_000 - 1) < Decimal("1e-78")


def test_a_cpu_event_posted_in_seconds_or_hours_becomes_a_reading_in_milliseconds() -> None:
    [hours, seconds] = decode_usage_events(
        b'[{"customerId":"a","resourceType":"cpu","value":0.0015,"unit":"hour"},'
        b'{"customerId":"a","resourceType":"cpu","value":0.0004,"unit":"second"}]'
    )
    reading = to_reading(hours, now_ms=NOW)
    assert (reading.value, reading.unit, reading.kind) == (5_400, "millisecond", "delta")
    rounded, by = to_rounded_reading(seconds, now_ms=NOW)
    assert (rounded.value, by) == (0, Decimal("0.4"))
    with pytest.raises(DecodeError, match="not a whole number of milliseconds"):
        to_reading(seconds, now_ms=NOW)


def test_rebase_turns_former_cpu_seconds_into_milliseconds_and_refuses_the_rest() -> None:
    assert rebase(7, "second") == (7_000, "millisecond")
    assert rebase((2**63 - 1) // 1000, "second")[0] == (2**63 - 1) // 1000 * 1000
    with pytest.raises(UnitError, match="more than 2\\^63-1"):
        rebase((2**63 - 1) // 1000 + 1, "second")
    with pytest.raises(UnitError, match="never a base unit"):
        rebase(7, "hour")
