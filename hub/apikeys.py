"""API keys: their format, checksum, scopes and stored hash (pure: no I/O).

A key reads ``rsm_<43 base62 characters: a 256-bit random secret><6 base62
characters: CRC32 of everything before it>``. The prefix lets secret scanners
find a leaked key; the checksum lets the hub refuse a mistyped or truncated key
without asking the database. The hub stores only
``HMAC-SHA-256(RESMON_API_KEY_SECRET, key)``: a stolen table does not give
usable keys, and without the server secret the hashes cannot be tested offline.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import secrets
import zlib
from typing import Final

import msgspec

__all__ = [
    "KEY_LENGTH",
    "MAX_TOKEN_LENGTH",
    "MIN_SECRET_LENGTH",
    "PREFIX",
    "SCOPES",
    "TOKEN_PREFIX",
    "KeyFormatError",
    "StreamGrant",
    "TokenError",
    "check_key",
    "check_restriction",
    "check_server_secret",
    "check_stream_token",
    "hash_key",
    "new_key",
    "parse_duration",
    "parse_scopes",
    "stream_token",
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


#: what a stream token starts with (``rst_<payload>.<signature>``)
TOKEN_PREFIX: Final = "rst_"  # noqa: S105 - a prefix, not a secret
#: the longest token the hub reads (a key restricted to very many customers makes long ones)
MAX_TOKEN_LENGTH: Final = 16_384
_TOKEN_CONTEXT: Final = b"resmon stream token v1\x00"


class TokenError(ValueError):
    """A stream token that is malformed, forged or expired; the message never quotes it."""


class StreamGrant(msgspec.Struct, frozen=True):
    """What a stream token stands for: a key, its tenant and customers, until ``expires``."""

    key_id: str = msgspec.field(name="k")
    tenant_id: str = msgspec.field(name="t")
    customer_ids: tuple[str, ...] | None = msgspec.field(name="c")
    #: seconds since the epoch
    expires: int = msgspec.field(name="e")


_grant_decoder = msgspec.json.Decoder(StreamGrant)


def _token_mac(server_secret: str, payload: bytes) -> bytes:
    return hmac.new(server_secret.encode(), _TOKEN_CONTEXT + payload, hashlib.sha256).digest()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def stream_token(server_secret: str, grant: StreamGrant) -> str:
    """A token for ``grant``, signed with HMAC-SHA-256 under a key derived from the secret."""
    payload = msgspec.json.encode(grant)
    return f"{TOKEN_PREFIX}{_b64(payload)}.{_b64(_token_mac(server_secret, payload))}"


def check_stream_token(server_secret: str, token: str, now_s: float) -> StreamGrant:
    """The grant ``token`` carries; TokenError if it is malformed, not ours, or expired."""
    if not token.startswith(TOKEN_PREFIX) or len(token) > MAX_TOKEN_LENGTH:
        raise TokenError(
            f"a stream token starts with {TOKEN_PREFIX!r} (from POST /api/stream/token)"
        )
    body, dot, signature = token[len(TOKEN_PREFIX) :].partition(".")
    try:
        payload, mac = _unb64(body), _unb64(signature)
    except (ValueError, binascii.Error):
        raise TokenError("the stream token is not well formed") from None
    if not dot or not hmac.compare_digest(mac, _token_mac(server_secret, payload)):
        raise TokenError("the stream token's signature does not match")
    try:
        grant = _grant_decoder.decode(payload)
    except (msgspec.DecodeError, msgspec.ValidationError):
        raise TokenError("the stream token is not well formed") from None
    if grant.expires <= now_s:
        raise TokenError("the stream token has expired: ask POST /api/stream/token for a new one")
    return grant
