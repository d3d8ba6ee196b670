"""The BER codec: exact encodings, round trips, and BerError on bad bytes."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pyasn1.codec.ber import decoder as pyasn1_decoder
from pyasn1.codec.ber import encoder as pyasn1_encoder
from pysnmp.proto import api

from simulator import BerError
from simulator._ber import Message, Pdu, Value, decode_message, encode_message, encode_value
from snmpber import (
    COUNTER32,
    COUNTER64,
    END_OF_MIB_VIEW,
    GAUGE32,
    GET,
    GETBULK,
    INTEGER,
    NO_SUCH_INSTANCE,
    NO_SUCH_OBJECT,
    NULL,
    OBJECT_IDENTIFIER,
    OCTET_STRING,
    RESPONSE,
    TIMETICKS,
    decode_oid,
    encode_length,
    encode_oid,
    parse_oid,
    read_tlv,
)

V2C = api.PROTOCOL_MODULES[api.SNMP_VERSION_2C]


def _round_trip(value: Value) -> Value:
    msg = Message(1, b"public", Pdu(RESPONSE, 1, 0, 0, [((1, 3, 6, 1), value)]))
    return decode_message(encode_message(msg)).pdu.varbinds[0][1]


@pytest.mark.parametrize(
    ("value", "encoded"),
    [
        (0, "020100"),
        (127, "02017f"),
        (128, "02020080"),
        (256, "02020100"),
        (-1, "0201ff"),
        (-128, "020180"),
        (-129, "0202ff7f"),
        (2**31 - 1, "02047fffffff"),
        (-(2**31), "020480000000"),
    ],
)
def test_integer_encodes_in_the_fewest_twos_complement_octets(value: int, encoded: str) -> None:
    assert encode_value(Value(INTEGER, value)).hex() == encoded
    assert _round_trip(Value(INTEGER, value)) == Value(INTEGER, value)


@given(st.integers(min_value=-(2**63), max_value=2**63 - 1))
def test_any_integer_round_trips(value: int) -> None:
    assert _round_trip(Value(INTEGER, value)) == Value(INTEGER, value)


@pytest.mark.parametrize("value", [0, 1, 2**32 - 1, 2**32, 2**63, 2**64 - 1])
def test_counter64_round_trips_values_up_to_two_to_the_64_minus_one(value: int) -> None:
    assert _round_trip(Value(COUNTER64, value)) == Value(COUNTER64, value)


def test_counter64_top_value_has_a_leading_zero_octet() -> None:
    assert encode_value(Value(COUNTER64, 2**64 - 1)).hex() == "460900ffffffffffffffff"


@pytest.mark.parametrize(("tag", "bits"), [(COUNTER32, 32), (GAUGE32, 32), (TIMETICKS, 32)])
def test_unsigned_32_bit_types_round_trip_their_maximum_and_reject_more(
    tag: int, bits: int
) -> None:
    assert _round_trip(Value(tag, 2**bits - 1)) == Value(tag, 2**bits - 1)
    with pytest.raises(BerError):
        encode_value(Value(tag, 2**bits))
    with pytest.raises(BerError):
        encode_value(Value(tag, -1))


@pytest.mark.parametrize(
    ("oid", "encoded"),
    [
        ("1.3.6.1.2.1.1.3.0", "06082b06010201010300"),
        ("1.3.6.1.4.1.2636", "06072b06010401944c"),
        ("2.999.3", "0603883703"),
        ("1.3.128.16383.16384", "06082b8100ff7f818000"),
    ],
)
def test_oid_encodings_match_x690(oid: str, encoded: str) -> None:
    assert encode_oid(parse_oid(oid)).hex() == encoded
    assert decode_oid(bytes.fromhex(encoded)[2:]) == parse_oid(oid)


@given(
    st.tuples(st.integers(0, 1), st.integers(0, 39)),
    st.lists(st.integers(0, 2**64), max_size=40),
)
def test_long_oids_with_large_sub_ids_round_trip(head: tuple[int, int], tail: list[int]) -> None:
    oid = (*head, *tail)
    assert _round_trip(Value(OBJECT_IDENTIFIER, oid)) == Value(OBJECT_IDENTIFIER, oid)


@pytest.mark.parametrize("size", [0, 127, 128, 255, 256, 4095, 4096, 70_000])
def test_octet_strings_round_trip_with_short_and_long_lengths(size: int) -> None:
    value = Value(OCTET_STRING, bytes(range(256)) * (size // 256) + bytes(size % 256))
    assert _round_trip(value) == value


@pytest.mark.parametrize("n", [0, 1, 127, 128, 255, 256, 65535, 65536, 2**24])
def test_lengths_decode_back_to_themselves(n: int) -> None:
    header = bytes((OCTET_STRING,)) + encode_length(n)
    tag, start, end = read_tlv(header + bytes(n), 0, len(header) + n)
    assert (tag, end - start) == (OCTET_STRING, n)


def test_exceptions_and_null_are_empty_values() -> None:
    for tag in (NULL, NO_SUCH_OBJECT, NO_SUCH_INSTANCE, END_OF_MIB_VIEW):
        assert encode_value(Value(tag)) == bytes((tag, 0))
        assert _round_trip(Value(tag)) == Value(tag)


def test_our_message_decodes_with_pysnmp_to_the_same_fields() -> None:
    varbinds = [
        ((1, 3, 6, 1, 2, 1, 1, 3, 0), Value(TIMETICKS, 123456)),
        ((1, 3, 6, 1, 2, 1, 31, 1, 1, 1, 6, 1), Value(COUNTER64, 2**64 - 2)),
        ((1, 3, 6, 1, 2, 1, 2, 2, 1, 10, 1), Value(COUNTER32, 2**32 - 1)),
        ((1, 3, 6, 1, 2, 1, 1, 5, 0), Value(OCTET_STRING, b"r1")),
        ((1, 3, 6, 1, 2, 1, 1, 2, 0), Value(OBJECT_IDENTIFIER, (1, 3, 6, 1, 4, 1, 2636))),
        ((1, 3, 6, 1, 2, 1, 2, 1, 0), Value(INTEGER, -5)),
    ]
    data = encode_message(Message(1, b"public", Pdu(RESPONSE, -42, 0, 0, varbinds)))
    msg, rest = pyasn1_decoder.decode(data, asn1Spec=V2C.Message())
    assert rest == b""
    pdu = V2C.apiMessage.get_pdu(msg)
    assert str(V2C.apiMessage.get_community(msg)) == "public"
    assert int(V2C.apiPDU.get_request_id(pdu)) == -42
    decoded = [(tuple(oid), val) for oid, val in V2C.apiPDU.get_varbinds(pdu)]
    assert [oid for oid, _ in decoded] == [oid for oid, _ in varbinds]
    assert [int(v) for _, v in decoded[:3]] == [123456, 2**64 - 2, 2**32 - 1]
    assert bytes(decoded[3][1]) == b"r1"
    assert tuple(decoded[4][1]) == (1, 3, 6, 1, 4, 1, 2636)
    assert int(decoded[5][1]) == -5


def test_a_pysnmp_getbulk_request_decodes_with_our_codec() -> None:
    pdu = V2C.GetBulkRequestPDU()
    V2C.apiBulkPDU.set_defaults(pdu)
    V2C.apiBulkPDU.set_request_id(pdu, 99)
    V2C.apiBulkPDU.set_non_repeaters(pdu, 1)
    V2C.apiBulkPDU.set_max_repetitions(pdu, 25)
    V2C.apiBulkPDU.set_varbinds(
        pdu, [((1, 3, 6, 1, 2, 1, 1, 3), V2C.Null("")), ((1, 3, 6, 1, 2, 1, 31), V2C.Null(""))]
    )
    msg = V2C.Message()
    V2C.apiMessage.set_defaults(msg)
    V2C.apiMessage.set_community(msg, "s3cret")
    V2C.apiMessage.set_pdu(msg, pdu)
    decoded = decode_message(pyasn1_encoder.encode(msg))
    assert decoded.version == 1
    assert decoded.community == b"s3cret"
    assert decoded.pdu == Pdu(
        GETBULK,
        99,
        1,
        25,
        [((1, 3, 6, 1, 2, 1, 1, 3), Value(NULL)), ((1, 3, 6, 1, 2, 1, 31), Value(NULL))],
    )


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x30",
        b"\x30\x05\x02\x01\x01",  # length past the end
        b"\x30\x84\xff\xff\xff\xff",  # huge length
        b"\x30\x80\x00\x00",  # indefinite length
        b"\x30\x03\x02\x00\x00",  # empty INTEGER
        b"\x3f\x01\x00",  # multi-byte tag
        bytes.fromhex("300b020101040170a004020101"),  # PDU cut short
        bytes.fromhex("3011020101040170a0090201010201000201003000ff"),  # trailing byte
        bytes.fromhex("3012020101040170a00a020101020100020100300130"),  # varbind cut
    ],
)
def test_malformed_messages_raise_ber_error(data: bytes) -> None:
    with pytest.raises(BerError):
        decode_message(data)


def test_oid_with_an_unfinished_sub_id_is_malformed() -> None:
    with pytest.raises(BerError):
        decode_oid(b"\x2b\x86")
    with pytest.raises(BerError):
        decode_oid(b"")


@given(st.binary(max_size=200))
def test_random_bytes_decode_or_raise_ber_error_only(data: bytes) -> None:
    with contextlib.suppress(BerError):
        decode_message(data)


def test_oids_that_cannot_be_encoded_are_rejected() -> None:
    for oid in ["1", "3.1", "1.40", "1.3.-1", "1.3.x"]:
        with pytest.raises(BerError):
            encode_oid(parse_oid(oid))


def test_get_request_round_trips() -> None:
    msg = Message(1, b"c", Pdu(GET, 2**31 - 1, 0, 0, [((1, 3, 6, 1, 2, 1, 1, 1, 0), Value(NULL))]))
    assert decode_message(encode_message(msg)) == msg
