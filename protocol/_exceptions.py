"""The exception tree of the wire protocol.

Every decoding problem raises :class:`ProtocolError` (or a subclass), never a
library exception, so callers can count and dead-letter bad records with one
``except`` clause and a message that says what was wrong.
"""

from __future__ import annotations

__all__ = ["DecodeError", "ProtocolError", "UnitError"]


class ProtocolError(Exception):
    """Base class for everything the protocol package raises."""


class DecodeError(ProtocolError):
    """Bytes or headers that are not a valid resmon event.

    ``where`` names the part that was wrong (a header name, or a JSON path such
    as ``$.value``) so the message can be shown to an operator as is.
    """

    def __init__(self, message: str, *, where: str | None = None) -> None:
        self.where = where
        super().__init__(f"{where}: {message}" if where else message)


class UnitError(ProtocolError):
    """A unit that resmon does not know, or a value that is not exact in the base unit."""
