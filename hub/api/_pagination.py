"""Cursor pagination for list routes: ``?limit=`` and ``?cursor=`` -> ``{"items", "next"}``.

A list is sorted by a key that ends with the row's id (the tie-break), so the
order is total and stable. ``next`` is the sort key of the page's last row,
JSON-encoded and then urlsafe-base64 encoded (no padding): opaque to clients,
who pass it back as ``cursor`` for the rows after it. Rows inserted between two
requests never make a row appear twice or be skipped: a page starts strictly
after the previous page's last key. ``next`` is null on the last page.

A route reads the request with :func:`page_request`, fetches ``limit + 1`` rows
after ``after`` (the decoded cursor, None for the first page), and answers
:func:`page` of them. A malformed ``limit`` or ``cursor`` is a 400 naming it.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import uuid
from collections.abc import Callable, Mapping, Sequence
from decimal import Decimal
from typing import Annotated, Any, Final, Generic, TypeVar

import msgspec

from protocol import DecodeError

from ._params import bounded_int

__all__ = [
    "DEFAULT_LIMIT",
    "MAX_LIMIT",
    "Instant",
    "Page",
    "PageRequest",
    "Serial",
    "decode_cursor",
    "encode_cursor",
    "page",
    "page_request",
]

T = TypeVar("T")

#: sort-key field types for :func:`page_request`: a time with its zone, a BIGSERIAL id;
#: ``uuid.UUID`` checks an id (given back as its text), ``Decimal`` a finite amount
Instant = Annotated[dt.datetime, msgspec.Meta(tz=True)]
Serial = Annotated[int, msgspec.Meta(ge=1, le=2**63 - 1)]
#: the largest amount a cursor may hold (far beyond any stored saving)
_MAX_AMOUNT: Final = Decimal(10) ** 30

DEFAULT_LIMIT: Final = 100
MAX_LIMIT: Final = 500
#: the longest cursor accepted (a sort key of a few fields is far shorter)
_MAX_CURSOR: Final = 400
_encoder: Final = msgspec.json.Encoder(decimal_format="string")


class Page(msgspec.Struct, Generic[T], frozen=True):
    """One page of a list: its rows and the cursor of the next page (None: the last one)."""

    items: list[T]
    next: str | None


class PageRequest(msgspec.Struct, frozen=True):
    """What a list request asks for: at most ``limit`` rows after the sort key ``after``."""

    limit: int
    after: tuple[Any, ...] | None = None


def encode_cursor(key: Sequence[Any]) -> str:
    """The opaque cursor of sort key ``key`` (values msgspec can encode as JSON)."""
    raw = _encoder.encode(list(key))
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def decode_cursor(cursor: str, types: Sequence[Any]) -> tuple[Any, ...]:
    """The sort key in ``cursor``, one value of each of ``types``; DecodeError naming
    ``cursor`` when it is not a cursor of this list."""
    bad = DecodeError(
        "not a cursor of this list: pass the `next` value of the previous page unchanged",
        where="cursor",
    )
    if not cursor or len(cursor) > _MAX_CURSOR:
        raise bad
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        values = msgspec.json.decode(raw, type=list[Any])
    except (binascii.Error, ValueError, msgspec.DecodeError):
        raise bad from None
    if len(values) != len(types):
        raise bad
    try:
        pairs = zip(values, types, strict=True)
        key = tuple(msgspec.convert(v, t) for v, t in pairs)
    except msgspec.ValidationError:
        raise bad from None
    if any(isinstance(v, Decimal) and not (v.is_finite() and abs(v) < _MAX_AMOUNT) for v in key):
        raise bad
    return tuple(str(v) if isinstance(v, uuid.UUID) else v for v in key)


def page_request(query: Mapping[str, str], key_types: Sequence[Any]) -> PageRequest:
    """The ``limit`` (1-500, default 100) and decoded ``cursor`` of a list request.

    ``key_types``: the type of each field of the list's sort key (the id last).
    DecodeError (a 400 naming the parameter) for a bad ``limit`` or ``cursor``.
    """
    limit = bounded_int(query, "limit", 1, MAX_LIMIT, DEFAULT_LIMIT)
    cursor = query.get("cursor")
    return PageRequest(limit, decode_cursor(cursor, key_types) if cursor is not None else None)


def page(rows: Sequence[T], request: PageRequest, key: Callable[[T], Sequence[Any]]) -> Page[T]:
    """The page of ``rows`` (fetched as ``request.limit + 1``, in the list's order);
    ``key`` gives a row's sort key, whose cursor is ``next`` when more rows follow."""
    if len(rows) <= request.limit:
        return Page(list(rows), None)
    shown = list(rows[: request.limit])
    return Page(shown, encode_cursor(key(shown[-1])))
