"""Deterministic event ids: the same reading always gets the same id.

Agents may send a reading twice (a retry, a replay of the disk buffer after a
crash); the hub drops the second copy by id. The id is a hash of the reading's
canonical encoding with a per-type prefix, formatted as a UUID so it fits the
``UUID`` columns of the schema.

A reading in a base unit that replaced a coarser one (CPU milliseconds, which
were whole seconds) is hashed in the former unit when it is a whole number of
it, so a reading keeps the id an earlier release gave it: a retry of a CPU
event sent across the upgrade is still recognised as the same event.
"""

from __future__ import annotations

import hashlib

import msgspec

from ._events import UsageReading
from ._units import FORMER_BASE_UNITS, unit_factor

__all__ = ["event_id"]

_encoder = msgspec.msgpack.Encoder()
#: today's base unit -> (the former base unit it replaced, how many of it make one)
_FORMER: dict[str, tuple[str, int]] = {
    base: (former, factor) for former in FORMER_BASE_UNITS for base, factor in [unit_factor(former)]
}


def _canonical(event: msgspec.Struct) -> msgspec.Struct:
    if type(event) is UsageReading and (former := _FORMER.get(event.unit)) is not None:
        unit, factor = former
        if event.value % factor == 0:
            return msgspec.structs.replace(event, value=event.value // factor, unit=unit)
    return event


def event_id(event_type: str, event: msgspec.Struct) -> str:
    """A stable UUID-formatted id for ``event`` of CloudEvents type ``event_type``."""
    digest = hashlib.blake2b(
        _encoder.encode(_canonical(event)),
        digest_size=16,
        person=b"resmon-eventid",
        key=event_type.encode(),
    ).hexdigest()
    # the canonical UUID text (8-4-4-4-12 lowercase hex), without building a UUID object
    return f"{digest[:8]}-{digest[8:12]}-{digest[12:16]}-{digest[16:20]}-{digest[20:]}"
