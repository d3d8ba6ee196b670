"""The dashboard's session: a cookie the hub signs, standing in for the API key it was made from.

``POST /ui/login`` checks an API key and answers a ``resmon_session`` cookie
(HttpOnly, SameSite=Strict, Secure behind https) that names the key's id, an
expiry and a random nonce, signed with HMAC-SHA256 under a key derived from
the hub's ``RESMON_API_KEY_SECRET``. The key itself is never in the cookie:
each request looks the key up by id, so revoking the key ends its sessions.

Requests that change something (POST, PUT, PATCH, DELETE) made with the cookie
must also send the session's CSRF token in ``X-CSRF-Token``; the token is an
HMAC of the nonce, answered by the login and by ``GET /ui/session``, and never
readable by another site.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from typing import Final

import msgspec

__all__ = [
    "COOKIE",
    "CSRF_HEADER",
    "SESSION_SECONDS",
    "Session",
    "SessionError",
    "csrf_matches",
    "csrf_token",
    "open_session",
    "seal",
]

#: the cookie's name
COOKIE: Final = "resmon_session"
#: the header that carries the CSRF token of a cookie request that changes something
CSRF_HEADER: Final = "X-CSRF-Token"
#: how long a session lasts (never past its key's own expiry)
SESSION_SECONDS: Final = 12 * 3600
_VERSION: Final = "v1"


class SessionError(Exception):
    """A cookie that is not a valid, unexpired session; the message says which."""


class Session(msgspec.Struct, frozen=True):
    #: the API key's id
    kid: str
    #: expiry, seconds since the epoch
    exp: int
    #: random, hex; the CSRF token is derived from it
    nonce: str


_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(Session)


def _signing_key(server_secret: str, purpose: bytes) -> bytes:
    return hmac.new(server_secret.encode(), b"resmon-dashboard\x00" + purpose, "sha256").digest()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _mac(server_secret: str, payload: str) -> str:
    key = _signing_key(server_secret, b"session")
    return _b64(hmac.new(key, payload.encode(), hashlib.sha256).digest())


def seal(server_secret: str, key_id: str, expires_at: int) -> tuple[str, Session]:
    """A new session of ``key_id`` until ``expires_at`` (epoch s): the cookie value and it."""
    session = Session(kid=key_id, exp=expires_at, nonce=secrets.token_hex(16))
    payload = f"{_VERSION}.{_b64(_encoder.encode(session))}"
    return f"{payload}.{_mac(server_secret, payload)}", session


def open_session(server_secret: str, cookie: str, now: float) -> Session:
    """The session ``cookie`` holds; SessionError if it is malformed, forged or expired."""
    version, _, rest = cookie.partition(".")
    body, _, mac = rest.partition(".")
    if version != _VERSION or not body or not mac:
        raise SessionError("the session cookie is malformed")
    if not hmac.compare_digest(mac, _mac(server_secret, f"{version}.{body}")):
        raise SessionError("the session cookie's signature does not match")
    try:
        session = _decoder.decode(_unb64(body))
    except (ValueError, msgspec.DecodeError):
        raise SessionError("the session cookie is malformed") from None
    if session.exp <= now:
        raise SessionError("the session has expired")
    return session


def csrf_token(server_secret: str, session: Session) -> str:
    """The CSRF token of ``session``."""
    key = _signing_key(server_secret, b"csrf")
    return _b64(hmac.new(key, session.nonce.encode(), hashlib.sha256).digest())


def csrf_matches(server_secret: str, session: Session, given: str | None) -> bool:
    """Whether ``given`` is ``session``'s CSRF token."""
    return given is not None and hmac.compare_digest(given, csrf_token(server_secret, session))
