"""Query parameters several routes share, parsed or refused with a 400 naming them."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Set

from protocol import DecodeError

__all__ = ["bounded_int", "choice", "iso_time"]


def iso_time(query: Mapping[str, str], name: str) -> dt.datetime | None:
    """Parameter ``name`` as an ISO 8601 instant with an offset (``Z`` or ``+02:00``).

    None when absent; DecodeError naming ``name`` when it is not such an instant.
    """
    given = query.get(name)
    if given is None:
        return None
    try:
        when = dt.datetime.fromisoformat(given)
    except ValueError:
        raise DecodeError(
            f"must be an ISO 8601 time such as 2026-01-31T12:00:00Z, not {given!r}", where=name
        ) from None
    if when.tzinfo is None:
        raise DecodeError(f"{given!r} has no UTC offset: end it with Z or +HH:MM", where=name)
    try:
        return when.astimezone(dt.UTC)
    except OverflowError:  # e.g. 0001-01-01T00:00:00+01:00: before year 1 in UTC
        raise DecodeError(f"{given!r} is out of range", where=name) from None


def choice(query: Mapping[str, str], name: str, allowed: Set[str]) -> str | None:
    """Parameter ``name`` upper-cased, if one of ``allowed``; None when absent."""
    given = query.get(name)
    if given is None:
        return None
    if given.upper() not in allowed:
        raise DecodeError(f"must be one of {', '.join(sorted(allowed))}, not {given!r}", where=name)
    return given.upper()


def bounded_int(query: Mapping[str, str], name: str, low: int, high: int, default: int) -> int:
    """Parameter ``name`` as an integer from ``low`` to ``high``; ``default`` when absent."""
    given = query.get(name)
    if given is None:
        return default
    try:
        value = int(given)
    except ValueError:
        value = low - 1
    if not low <= value <= high:
        raise DecodeError(f"must be an integer from {low} to {high}, not {given!r}", where=name)
    return value
