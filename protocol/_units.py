"""Units: exact integer base units on the wire, catalog units for display and cost.

Counters travel as integers in a *base unit* (bytes, requests, CPU milliseconds).
Catalog units (GB, hour, ...) exist only for thresholds shown to people and for
cost, and conversions use :class:`decimal.Decimal`, never floats.

GB means 10^9 bytes (SI, as ISPs bill); GiB is 2^30 when a catalog asks for it.
"""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Context, Decimal, Inexact, InvalidOperation, Overflow
from typing import Final

from ._exceptions import UnitError

__all__ = [
    "BASE_UNITS",
    "FORMER_BASE_UNITS",
    "RESOURCE_BASE_UNIT",
    "base_unit_of",
    "from_base",
    "rebase",
    "to_base",
    "to_base_rounded",
    "unit_factor",
]

#: catalog/display unit -> (base unit, how many base units one of it is)
_FACTORS: Final[dict[str, tuple[str, int]]] = {
    "byte": ("byte", 1),
    "B": ("byte", 1),
    "KB": ("byte", 10**3),
    "MB": ("byte", 10**6),
    "GB": ("byte", 10**9),
    "TB": ("byte", 10**12),
    "KiB": ("byte", 2**10),
    "MiB": ("byte", 2**20),
    "GiB": ("byte", 2**30),
    "TiB": ("byte", 2**40),
    "request": ("request", 1),
    "requests": ("request", 1),
    "millisecond": ("millisecond", 1),
    "milliseconds": ("millisecond", 1),
    "ms": ("millisecond", 1),
    "second": ("millisecond", 1000),
    "seconds": ("millisecond", 1000),
    "minute": ("millisecond", 60_000),
    "hour": ("millisecond", 3_600_000),
    "hours": ("millisecond", 3_600_000),
}

BASE_UNITS: Final = frozenset({"byte", "request", "millisecond"})

#: units that were the base unit of a resource type in an earlier release. CPU time
#: was counted in whole seconds until migration 0018; a reading still carrying
#: ``second`` (a record produced before the upgrade, an older agent) is converted
#: exactly by :func:`rebase` instead of being refused.
FORMER_BASE_UNITS: Final = frozenset({"second"})

#: the base unit each known resource type is measured in
RESOURCE_BASE_UNIT: Final[dict[str, str]] = {
    "bandwidth": "byte",
    "storage": "byte",
    "memory": "byte",
    "api_calls": "request",
    "cpu": "millisecond",
}


def unit_factor(unit: str) -> tuple[str, int]:
    """Return ``(base_unit, factor)`` for a catalog or base unit name."""
    try:
        return _FACTORS[unit]
    except KeyError:
        known = ", ".join(sorted(_FACTORS))
        raise UnitError(f"unknown unit {unit!r}; known units: {known}") from None


def base_unit_of(unit: str) -> str:
    return unit_factor(unit)[0]


#: a value in a request: at most this many digits before and after the point ...
_MAX_DIGITS: Final = 40
#: ... so that times any unit factor it stays well inside this precision: exact
_INPUT: Final = Context(prec=120, traps=[Inexact, InvalidOperation, Overflow])


def _in_base(value: Decimal | int, unit: str) -> Decimal:
    """``value`` in ``unit`` times the unit's factor, exactly; checked finite, bounded, >= 0."""
    _, factor = unit_factor(unit)
    given = Decimal(value)
    if not given.is_finite():
        raise UnitError(f"{value} is not a finite number")
    exponent = int(given.as_tuple().exponent)  # finite: an int
    if given and (given.adjusted() > _MAX_DIGITS or exponent < -_MAX_DIGITS):
        raise UnitError(
            f"{value} {unit} is out of range (at most {_MAX_DIGITS} digits either side of the dot)"
        )
    try:
        exact = _INPUT.multiply(given, Decimal(factor))  # exact, or it raises: never rounded
    except ArithmeticError:  # pragma: no cover - the bounds above keep it exact
        raise UnitError(f"{value} {unit} cannot be converted exactly") from None
    if exact < 0:
        raise UnitError(f"{value} {unit} is negative; usage cannot go below zero")
    return exact


def to_base(value: Decimal | int, unit: str) -> int:
    """Convert ``value`` in ``unit`` to an exact integer count of the base unit.

    Raises :class:`UnitError` when the result is not a whole number of base
    units (1.5 bytes cannot be billed), is negative, or the value is not a
    finite number of at most 40 digits either side of the point. Never rounds.
    """
    exact = _in_base(value, unit)
    if exact != exact.to_integral_value():
        raise UnitError(f"{value} {unit} is not a whole number of {base_unit_of(unit)}s ({exact})")
    return int(exact)


def to_base_rounded(value: Decimal | int, unit: str) -> tuple[int, Decimal]:
    """Convert like :func:`to_base`, but round a fraction of a base unit half to even.

    Returns the whole count and by how much it was rounded (the absolute
    difference from the exact value, in base units: ``0`` when it was exact).
    Refuses what :func:`to_base` refuses except a fraction of a base unit.
    """
    exact = _in_base(value, unit)
    whole = exact.to_integral_value(rounding=ROUND_HALF_EVEN)
    return int(whole), _INPUT.normalize(_INPUT.abs(_INPUT.subtract(exact, whole)))


#: enough digits for any 64-bit count divided by 2^40 or 10^12, exactly
_EXACT = Context(prec=80)


def from_base(value: int, unit: str) -> Decimal:
    """Convert an integer count of base units to ``unit``.

    Exact for byte units (their factors are powers of 2 and 10, whose
    quotients terminate) and for seconds; an hour is 3,600,000 ms, so a count
    of milliseconds that is not a multiple of 9 has no finite decimal form in
    hours and is carried to 80 digits.
    Cost code multiplies before it divides for that reason.
    """
    _, factor = unit_factor(unit)
    return _EXACT.divide(Decimal(value), Decimal(factor))


#: the largest count a reading may carry (PostgreSQL BIGINT)
_MAX_COUNT: Final = 2**63 - 1


def rebase(value: int, unit: str) -> tuple[int, str]:
    """``value`` in ``unit`` as ``(count, base unit)``, for a unit in :data:`FORMER_BASE_UNITS`.

    Exact (the factor is an integer). Raises :class:`UnitError` for a unit that
    was never a base unit, or when the count would exceed 2^63-1.
    """
    if unit not in FORMER_BASE_UNITS:
        raise UnitError(f"{unit!r} was never a base unit; nothing to convert")
    base, factor = unit_factor(unit)
    count = value * factor
    if count > _MAX_COUNT:
        raise UnitError(f"{value} {unit} is {count} {base}s, more than 2^63-1")
    return count, base
