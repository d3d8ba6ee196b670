"""The API key format: prefix, length, alphabet, checksum; the keyed hash; scopes; durations."""

from __future__ import annotations

import pytest

from hub.apikeys import (
    KEY_LENGTH,
    PREFIX,
    KeyFormatError,
    check_key,
    check_restriction,
    check_server_secret,
    hash_key,
    new_key,
    parse_duration,
    parse_scopes,
)

_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


def test_a_new_key_has_the_prefix_the_length_and_passes_its_own_check() -> None:
    keys = {new_key() for _ in range(200)}
    assert len(keys) == 200  # random
    for key in keys:
        assert key.startswith(PREFIX)
        assert len(key) == KEY_LENGTH == 53
        assert set(key[len(PREFIX) :]) <= set(_ALPHABET)
        check_key(key)


def test_every_single_changed_character_is_caught_by_the_checksum() -> None:
    key = new_key()
    for i in range(len(PREFIX), KEY_LENGTH):
        for other in ("0", "z", "Q"):
            if key[i] == other:
                continue
            with pytest.raises(KeyFormatError, match="checksum does not match"):
                check_key(key[:i] + other + key[i + 1 :])


def test_two_swapped_neighbours_are_caught() -> None:
    key = new_key()
    i = next(i for i in range(len(PREFIX), KEY_LENGTH - 1) if key[i] != key[i + 1])
    with pytest.raises(KeyFormatError, match="checksum"):
        check_key(key[:i] + key[i + 1] + key[i] + key[i + 2 :])


@pytest.mark.parametrize(
    ("make", "said"),
    [
        (lambda k: "ghp_" + k[4:], "starts with 'rsm_'"),
        (lambda k: k[:-1], "53 characters long, not 52"),
        (lambda k: k + "0", "not 54"),
        (lambda k: k[:10] + "-" + k[11:], "only letters and digits"),
        (lambda k: "", "starts with"),
    ],
)
def test_malformed_keys_are_named_without_echoing_the_key(make: object, said: str) -> None:
    key = new_key()
    bad = make(key)  # type: ignore[operator]
    with pytest.raises(KeyFormatError, match=said) as caught:
        check_key(bad)
    assert key[4:20] not in str(caught.value)


def test_the_hash_is_keyed_by_the_server_secret() -> None:
    key = new_key()
    a, b = "a" * 32, "b" * 32
    assert hash_key(a, key) == hash_key(a, key)
    assert hash_key(a, key) != hash_key(b, key)
    assert len(hash_key(a, key)) == 64
    assert key not in hash_key(a, key)


def test_the_server_secret_must_be_long_enough() -> None:
    check_server_secret("x" * 32)
    with pytest.raises(ValueError, match="RESMON_API_KEY_SECRET is not set"):
        check_server_secret("")
    with pytest.raises(ValueError, match="RESMON_API_KEY_SECRET has 31 characters"):
        check_server_secret("x" * 31)


def test_scopes_parse_in_canonical_order_and_unknown_ones_are_named() -> None:
    assert parse_scopes("ingest, read") == ("read", "ingest")
    assert parse_scopes(["ADMIN", "write"]) == ("write", "admin")
    with pytest.raises(ValueError, match="unknown delete"):
        parse_scopes("read,delete")
    with pytest.raises(ValueError, match="at least one"):
        parse_scopes(" , ")


def test_durations_and_the_admin_restriction() -> None:
    assert parse_duration("30d") == 30 * 86400
    assert parse_duration("12h") == 43200
    assert parse_duration("90m") == 5400
    assert parse_duration("5s") == 5
    for bad in ("", "0d", "30", "1w", "-1d", "1.5h"):
        with pytest.raises(ValueError, match="expected a number and s, m, h or d"):
            parse_duration(bad)
    assert parse_duration("36500d") == 36500 * 86400
    with pytest.raises(ValueError, match="at most 36500d"):
        parse_duration("9904532d")  # past any date: an overflow (500) before
    check_restriction(("read",), ["c1"])
    check_restriction(("admin",), None)
    with pytest.raises(ValueError, match="admin key"):
        check_restriction(("read", "admin"), ["c1"])
    with pytest.raises(ValueError, match="at least one customer"):
        check_restriction(("read",), [])
