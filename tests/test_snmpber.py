"""The shared BER primitives agree with pyasn1 (pysnmp's codec) byte for byte, and
bad bytes are a BerError, never another exception."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pyasn1.codec.ber import decoder, encoder
from pyasn1.type import univ
from pysnmp.proto import rfc1902

import snmpber
from snmpber import (
    COUNTER64,
    INTEGER,
    OCTET_STRING,
    BerError,
    decode_oid,
    decode_signed,
    encode_length,
    encode_oid,
    encode_signed,
    encode_tlv,
    encode_unsigned,
    format_oid,
    parse_oid,
    read_tlv,
)

oids = st.tuples(st.integers(0, 1), st.integers(0, 39)).flatmap(
    lambda head: st.lists(st.integers(0, 2**64), max_size=30).map(lambda tail: (*head, *tail))
) | st.lists(st.integers(0, 2**40), max_size=10).flatmap(
    lambda tail: st.integers(0, 2**20).map(lambda second: (2, second, *tail))
)


def test_the_public_names_are_what_both_codecs_use() -> None:
    assert set(snmpber.__all__) >= {
        "BerError",
        "Oid",
        "read_tlv",
        "decode_oid",
        "decode_signed",
        "encode_length",
        "encode_tlv",
        "encode_signed",
        "encode_unsigned",
        "encode_oid",
        "encode_oid_content",
        "parse_oid",
        "format_oid",
        "UNSIGNED_BITS",
    }
    for name in snmpber.__all__:
        assert getattr(snmpber, name) is not None
    assert issubclass(BerError, ValueError)


@given(st.integers(-(2**70), 2**70))
def test_integers_encode_as_pyasn1_encodes_them(value: int) -> None:
    encoded = encode_signed(INTEGER, value)
    assert encoded == encoder.encode(univ.Integer(value))
    tag, start, end = read_tlv(encoded, 0, len(encoded))
    assert (tag, end) == (INTEGER, len(encoded))
    assert decode_signed(encoded, start, end) == value


@given(st.integers(0, 2**64 - 1))
def test_counter64_encodes_as_pysnmp_encodes_it(value: int) -> None:
    assert encode_unsigned(COUNTER64, value) == encoder.encode(rfc1902.Counter64(value))


@given(oids)
def test_oids_encode_as_pyasn1_encodes_them_and_decode_back(oid: tuple[int, ...]) -> None:
    encoded = encode_oid(oid)
    assert encoded == encoder.encode(univ.ObjectIdentifier(oid))
    _, start, end = read_tlv(encoded, 0, len(encoded))
    assert decode_oid(encoded[start:end]) == oid
    assert parse_oid(format_oid(oid)) == oid


@given(st.integers(0, 70_000))
def test_lengths_are_the_shortest_definite_form_pyasn1_writes(n: int) -> None:
    content = bytes(n)
    ours = encode_tlv(OCTET_STRING, content)
    assert ours == encoder.encode(univ.OctetString(content))
    assert ours[1 : 1 + len(encode_length(n))] == encode_length(n)
    assert read_tlv(ours, 0, len(ours)) == (OCTET_STRING, len(ours) - n, len(ours))
    decoded, rest = decoder.decode(ours)
    assert (bytes(decoded), rest) == (content, b"")


@given(st.binary(max_size=64))
def test_any_bytes_read_as_a_tlv_or_raise_ber_error_only(data: bytes) -> None:
    with contextlib.suppress(BerError):
        _, start, end = read_tlv(data, 0, len(data))
        assert 0 <= start <= end <= len(data)
        with contextlib.suppress(BerError):
            decode_oid(data[start:end])


@pytest.mark.parametrize("text", ["", "1", "3.1", "1.40", "1.3.-1", "1.3.x", "0.40.1"])
def test_oids_that_cannot_be_encoded_are_a_ber_error_naming_them(text: str) -> None:
    with pytest.raises(BerError, match=r"OID"):
        parse_oid(text)
