"""Environment variables: one table per component, read and documented from the same rows.

A component (the hub, its notifier) lists its variables once as :class:`Var`
rows. :func:`read` turns an environment into keyword arguments for the
component's config struct, and :func:`help_table` renders the table that
``resmon hub run --help`` prints, with each default taken from the struct
itself, so the help cannot drift from what the parser does
(``tests/hub/test_hub_config.py`` holds the two together).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from decimal import Decimal, InvalidOperation
from typing import Any

import msgspec

from ._exceptions import ConfigError

__all__ = ["Var", "decimal", "help_table", "integer", "number", "read", "text"]

#: ``parse(variable, value)``: the field's value, or ConfigError naming the variable
Parser = Callable[[str, str], Any]


def text(variable: str, value: str) -> str:
    return value


def lower(variable: str, value: str) -> str:
    return value.lower()


def number(variable: str, value: str) -> float:
    try:
        return float(value)
    except ValueError:
        raise ConfigError(f"{variable}={value!r}: expected a number") from None


def integer(variable: str, value: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise ConfigError(f"{variable}={value!r}: expected a whole number") from None


def decimal(variable: str, value: str) -> Decimal:
    try:
        got = Decimal(value)
    except InvalidOperation:
        raise ConfigError(f"{variable}={value!r}: expected a number") from None
    if not got.is_finite():
        raise ConfigError(f"{variable}={value!r}: expected a finite number")
    return got


class Var(msgspec.Struct, frozen=True):
    """One environment variable: its name, the config field(s) it sets, what it means."""

    name: str
    #: the field it sets; several when ``parse`` returns a tuple (host and port)
    fields: str | tuple[str, ...]
    meaning: str
    #: an example of a valid value (the tests read each one back)
    example: str
    parse: Parser = text
    #: the default as the help shows it, when the struct's own default does not say it
    shown: str | None = None
    required: bool = False


def read(variables: Iterable[Var], env: Mapping[str, str]) -> dict[str, Any]:
    """The fields ``env`` sets, parsed; a missing required variable raises ConfigError."""
    values: dict[str, Any] = {}
    for var in variables:
        raw = env.get(var.name, "").strip()
        if not raw:
            if var.required:
                raise ConfigError(f"{var.name} is not set; see `resmon hub run --help`")
            continue
        got = var.parse(var.name, raw)
        if isinstance(var.fields, tuple):
            values.update(zip(var.fields, got, strict=True))
        else:
            values[var.fields] = got
    return values


def _shown(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def help_table(variables: Sequence[Var], config: type[msgspec.Struct]) -> str:
    """The variables as a plain-text table (variable, meaning, default) for ``--help``."""
    defaults = {
        f.name: f.default
        for f in msgspec.structs.fields(config)
        if f.default is not msgspec.NODEFAULT
    }
    rows = [("variable", "meaning", "default")]
    for var in variables:
        if var.shown is not None:
            shown = var.shown
        elif var.required:
            shown = "(required)"
        else:
            field = var.fields[0] if isinstance(var.fields, tuple) else var.fields
            shown = _shown(defaults.get(field))
        rows.append((var.name, var.meaning, shown))
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    rule = "  ".join("=" * w for w in widths)
    lines = [rule, _line(rows[0], widths), rule, *(_line(r, widths) for r in rows[1:]), rule]
    return "\n".join(lines)


def _line(row: tuple[str, str, str], widths: list[int]) -> str:
    return "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
