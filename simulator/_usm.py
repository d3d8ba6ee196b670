"""SNMPv3 User-based Security Model: users, keys, digests and AES privacy.

- Password to key and key localisation: RFC 3414 A.2 (MD5, SHA-1) and
  RFC 7860 (SHA-224/256/384/512); keys are localised per router engine ID.
- Authentication: HMAC-MD5-96, HMAC-SHA-96 (RFC 3414) and HMAC-SHA-2
  (RFC 7860: usmHMAC128SHA224, usmHMAC192SHA256, usmHMAC256SHA384,
  usmHMAC384SHA512 - truncated to 16, 24, 32 and 48 bytes).
- Privacy: AES-128 in CFB mode (RFC 3826); AES-192 and AES-256 with the key
  extension of draft-blumenthal-aes-usm-04 (``Kul' = Kul || H(Kul) || ...``),
  the variant net-snmp and pysnmp call "AES-192"/"AES-256"
  (``usmAesBlumenthalCfb192Protocol``).

Password-to-key hashes a megabyte, so it runs once per user; localisation
is one hash per (user, engine) and cached.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable
from typing import Any, Final, Literal

__all__ = [
    "AUTH_PROTOCOLS",
    "PRIV_PROTOCOLS",
    "AuthProtocol",
    "PrivProtocol",
    "UsmUser",
    "aes_decrypt",
    "aes_encrypt",
    "localize_key",
    "password_to_key",
]

AuthProtocol = Literal["none", "md5", "sha", "sha224", "sha256", "sha384", "sha512"]
PrivProtocol = Literal["none", "aes", "aes128", "aes192", "aes256"]

#: auth protocol -> (hash constructor, digest bytes carried in msgAuthenticationParameters)
AUTH_PROTOCOLS: Final[dict[str, tuple[Callable[..., Any], int]]] = {
    "md5": (hashlib.md5, 12),
    "sha": (hashlib.sha1, 12),
    "sha224": (hashlib.sha224, 16),
    "sha256": (hashlib.sha256, 24),
    "sha384": (hashlib.sha384, 32),
    "sha512": (hashlib.sha512, 48),
}
#: priv protocol -> AES key bytes
PRIV_PROTOCOLS: Final[dict[str, int]] = {"aes": 16, "aes128": 16, "aes192": 24, "aes256": 32}

_MEGABYTE: Final = 1_048_576


def password_to_key(password: bytes, auth: str) -> bytes:
    """Ku: the hash of the password repeated to one megabyte (RFC 3414 A.2.1/A.2.2)."""
    if not password:
        raise ValueError("an SNMPv3 password cannot be empty")
    factory = AUTH_PROTOCOLS[auth][0]
    data = password * (_MEGABYTE // len(password) + 1)
    return bytes(factory(data[:_MEGABYTE]).digest())


def localize_key(ku: bytes, engine_id: bytes, auth: str) -> bytes:
    """Kul = H(Ku || engineID || Ku) (RFC 3414 2.6, RFC 7860 9.3)."""
    return bytes(AUTH_PROTOCOLS[auth][0](ku + engine_id + ku).digest())


def _extend_blumenthal(kul: bytes, size: int, auth: str) -> bytes:
    factory = AUTH_PROTOCOLS[auth][0]
    key = kul
    while len(key) < size:
        key += factory(key).digest()
    return key[:size]


def _cipher(key: bytes, iv: bytes) -> Any:
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms

    try:  # cryptography >= 47 keeps CFB among the "decrepit" modes
        from cryptography.hazmat.decrepit.ciphers.modes import CFB
    except ImportError:  # pragma: no cover - older cryptography
        from cryptography.hazmat.primitives.ciphers.modes import CFB

    return Cipher(algorithms.AES(key), CFB(iv))


def aes_encrypt(key: bytes, boots: int, time: int, salt: bytes, plaintext: bytes) -> bytes:
    """AES-CFB128 with IV = engineBoots || engineTime || salt (RFC 3826 3.1.2.1)."""
    iv = boots.to_bytes(4, "big") + time.to_bytes(4, "big") + salt
    enc = _cipher(key, iv).encryptor()
    return bytes(enc.update(plaintext) + enc.finalize())


def aes_decrypt(key: bytes, boots: int, time: int, salt: bytes, ciphertext: bytes) -> bytes:
    """The inverse of :func:`aes_encrypt`."""
    iv = boots.to_bytes(4, "big") + time.to_bytes(4, "big") + salt
    dec = _cipher(key, iv).decryptor()
    return bytes(dec.update(ciphertext) + dec.finalize())


class UsmUser:
    """One USM user with its protocols; localised keys are cached per engine ID.

    Keys never appear in ``repr`` or logs.
    """

    __slots__ = ("_auth_ku", "_localized", "_priv_ku", "auth", "digest_size", "name", "priv")

    def __init__(
        self,
        name: str,
        *,
        auth: AuthProtocol = "none",
        auth_key: str | None = None,
        priv: PrivProtocol = "none",
        priv_key: str | None = None,
    ) -> None:
        if priv != "none" and auth == "none":
            raise ValueError(f"user {name!r}: privacy needs an authentication protocol")
        if auth != "none" and not auth_key:
            raise ValueError(f"user {name!r}: auth_key is required with auth {auth!r}")
        if priv != "none" and not priv_key:
            raise ValueError(f"user {name!r}: priv_key is required with priv {priv!r}")
        if auth_key is not None and auth != "none" and len(auth_key) < 8:
            raise ValueError(f"user {name!r}: auth_key must have at least 8 characters")
        if priv_key is not None and priv != "none" and len(priv_key) < 8:
            raise ValueError(f"user {name!r}: priv_key must have at least 8 characters")
        self.name = name.encode()
        self.auth = auth
        self.priv = priv
        self.digest_size = AUTH_PROTOCOLS[auth][1] if auth != "none" else 0
        self._auth_ku = (
            password_to_key(auth_key.encode(), auth) if auth_key and auth != "none" else b""
        )
        self._priv_ku = (
            password_to_key(priv_key.encode(), auth) if priv_key and priv != "none" else b""
        )
        self._localized: dict[bytes, tuple[bytes, bytes]] = {}

    def __repr__(self) -> str:
        return f"UsmUser({self.name.decode()!r}, auth={self.auth!r}, priv={self.priv!r})"

    @property
    def level(self) -> int:
        """msgFlags security bits this user needs: 0 noAuthNoPriv, 1 authNoPriv, 3 authPriv."""
        return (1 if self.auth != "none" else 0) | (2 if self.priv != "none" else 0)

    def keys(self, engine_id: bytes) -> tuple[bytes, bytes]:
        """(auth key, priv key) localised to ``engine_id`` (empty when not used)."""
        cached = self._localized.get(engine_id)
        if cached is None:
            auth_key = localize_key(self._auth_ku, engine_id, self.auth) if self._auth_ku else b""
            priv_key = b""
            if self._priv_ku:
                kul = localize_key(self._priv_ku, engine_id, self.auth)
                priv_key = _extend_blumenthal(kul, PRIV_PROTOCOLS[self.priv], self.auth)
            cached = self._localized[engine_id] = (auth_key, priv_key)
        return cached

    def digest(self, engine_id: bytes, message: bytes) -> bytes:
        """The truncated HMAC of a whole message (auth parameters zeroed)."""
        factory, size = AUTH_PROTOCOLS[self.auth]
        return hmac.new(self.keys(engine_id)[0], message, factory).digest()[:size]
