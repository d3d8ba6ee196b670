"""Deterministic event ids: the same reading always gets the same id.

Agents may send a reading twice (a retry, a replay of the disk buffer after a
crash); the hub drops the second copy by id. The id is a hash of the reading's
canonical encoding with a per-type prefix, formatted as a UUID so it fits the
``UUID`` columns of the schema.
"""

from __future__ import annotations

import hashlib
import uuid

import msgspec

__all__ = ["event_id"]

_encoder = msgspec.msgpack.Encoder()


def event_id(event_type: str, event: msgspec.Struct) -> str:
    """A stable UUID-formatted id for ``event`` of CloudEvents type ``event_type``."""
    digest = hashlib.blake2b(
        _encoder.encode(event), digest_size=16, person=b"resmon-eventid", key=event_type.encode()
    ).digest()
    return str(uuid.UUID(bytes=digest))
