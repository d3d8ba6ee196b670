"""API keys: their format, checksum, scopes and stored hash (pure: no I/O).

A key reads ``rsm_<43 base62 characters: a 256-bit random secret><6 base62
characters: CRC32 of everything before it>``. The prefix lets secret scanners
find a leaked key; the checksum lets the hub refuse a mistyped or truncated key
without asking the database. The hub stores only
``HMAC-SHA-256(RESMON_API_KEY_SECRET, key)``: a stolen table does not give
usable keys, and without the server secret the hashes cannot be tested offline.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import zlib
from typing import Final

__all__ = [
    "KEY_LENGTH",
    "MIN_SECRET_LENGTH",
    "PREFIX",
    "SCOPES",
    "KeyFormatError",
    "check_key",
    "check_restriction",
    "check_server_secret",
    "hash_key",
    "new_key",
    "parse_duration",
    "parse_scopes",
]

PREFIX: Final = "rsm_"
_ALPHABET: Final = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_SECRET_CHARS: Final = 43  # 62**43 > 2**256
_CHECK_CHARS: Final = 6  # 62**6 > 2**32
KEY_LENGTH: Final = len(PREFIX) + _SECRET_CHARS + _CHECK_CHARS
_SHAPE: Final = re.compile(rf"{PREFIX}[0-9A-Za-z]{{{_SECRET_CHARS + _CHECK_CHARS}}}")
#: the shortest RESMON_API_KEY_SECRET the hub accepts (characters)
MIN_SECRET_LENGTH: Final = 32

#: what a key may do: read data; write (alert actions, preferences); ingest usage; admin (keys)
SCOPES: Final = ("read", "write", "ingest", "admin")


class KeyFormatError(ValueError):
    """A string that is not a well-formed key; the message says what is wrong, never the key."""


def _base62(number: int, width: int) -> str:
    out = []
    for _ in range(width):
        number, digit = divmod(number, 62)
        out.append(_ALPHABET[digit])
    if number:
        raise ValueError("number too large for the width")
    return "".join(reversed(out))


def _checksum(body: str) -> str:
    return _base62(zlib.crc32(body.encode("ascii")), _CHECK_CHARS)


def new_key() -> str:
    """A fresh random key (256 bits from :mod:`secrets`)."""
    body = PREFIX + _base62(secrets.randbits(256), _SECRET_CHARS)
    return body + _checksum(body)


def check_key(key: str) -> None:
    """Raise :class:`KeyFormatError` unless ``key`` has the prefix, length, characters, checksum."""
    if not key.startswith(PREFIX):
        raise KeyFormatError(f"an API key starts with {PREFIX!r}")
    if len(key) != KEY_LENGTH:
        raise KeyFormatError(f"an API key is {KEY_LENGTH} characters long, not {len(key)}")
    if not _SHAPE.fullmatch(key):
        raise KeyFormatError(f"an API key has only letters and digits after {PREFIX!r}")
    body, check = key[:-_CHECK_CHARS], key[-_CHECK_CHARS:]
    if not hmac.compare_digest(_checksum(body), check):
        raise KeyFormatError("the API key's checksum does not match: it was mistyped or cut")


def check_server_secret(secret: str) -> None:
    """Raise ValueError naming RESMON_API_KEY_SECRET unless ``secret`` is long enough."""
    if len(secret) < MIN_SECRET_LENGTH:
        what = "is not set" if not secret else f"has {len(secret)} characters"
        raise ValueError(
            f"RESMON_API_KEY_SECRET {what}: the hub needs at least {MIN_SECRET_LENGTH} random "
            "characters to hash API keys with (e.g. `openssl rand -hex 32`)"
        )


def hash_key(server_secret: str, key: str) -> str:
    """The stored form of ``key``: hex HMAC-SHA-256 under the server secret."""
    return hmac.new(server_secret.encode(), key.encode(), hashlib.sha256).hexdigest()


def parse_scopes(text: str | list[str]) -> tuple[str, ...]:
    """``read,ingest`` (or a list) as known scopes in canonical order (ValueError: a bad one)."""
    names = text.split(",") if isinstance(text, str) else text
    wanted = {n.strip().lower() for n in names if n.strip()}
    if not wanted:
        raise ValueError(f"scopes: give at least one of {', '.join(SCOPES)}")
    if unknown := sorted(wanted - set(SCOPES)):
        raise ValueError(f"scopes: unknown {', '.join(unknown)}; known: {', '.join(SCOPES)}")
    return tuple(s for s in SCOPES if s in wanted)


#: the longest a key may be valid for: 100 years
MAX_EXPIRY_S: Final = 100 * 365 * 86400
_DURATION: Final = re.compile(r"([1-9][0-9]{0,6})([smhd])")
_UNIT_S: Final = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> int:
    """``30d``, ``12h``, ``90m`` or ``3600s`` in seconds; ValueError saying the expected form."""
    found = _DURATION.fullmatch(text.strip().lower())
    if found is None:
        raise ValueError(f"expires in {text!r}: expected a number and s, m, h or d, e.g. 30d")
    seconds = int(found.group(1)) * _UNIT_S[found.group(2)]
    if seconds > MAX_EXPIRY_S:
        raise ValueError(f"expires in {text!r}: at most {MAX_EXPIRY_S // 86400}d (100 years)")
    return seconds


def check_restriction(scopes: tuple[str, ...], customer_ids: list[str] | None) -> None:
    """ValueError for a customer-restricted admin key (admin manages the whole tenant)."""
    if customer_ids is not None and not customer_ids:
        raise ValueError("customers: give at least one customer id, or none for every customer")
    if customer_ids and "admin" in scopes:
        raise ValueError(
            "an admin key manages the whole tenant: it cannot be restricted to customers"
        )
