"""Array parameters as one text literal, cast in SQL.

asyncpg encodes an array parameter element by element, with type checks per
element; for the batch writes' wide ``unnest`` statements that cost the hub
more CPU than the statements cost PostgreSQL. One ``{a,b,c}`` string per
column, cast with ``$1::text::bigint[]`` and the like, is parsed by
PostgreSQL instead. Only for plain tokens: uuids, words, numbers, ISO dates
and ``NULL`` (no quoting is done).
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["array_literal"]


def array_literal(items: Iterable[str]) -> str:
    """``{a,b,c}`` of plain tokens (nothing here needs quoting)."""
    return "{" + ",".join(items) + "}"
