"""Money: a currency with its ISO 4217 minor units and one rounding rule.

Amounts are :class:`decimal.Decimal` at the edges and exact rationals
(:class:`fractions.Fraction`) inside, so a division (a proration ratio, a rate
per second) loses nothing. Each line of a bill is rounded once, from its exact
value, to the currency's minor unit; the total is the sum of the rounded lines.
A float is refused wherever an amount comes in.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Context, Decimal
from fractions import Fraction
from typing import Final, Literal, get_args

import iso4217
import msgspec

from .errors import PricingError

__all__ = [
    "MoneyPolicy",
    "Rounding",
    "exact",
    "minor_units",
    "shown",
]

#: how a line's exact amount becomes an amount in minor units
Rounding = Literal["half_even", "half_up", "half_down", "up", "down", "ceiling", "floor"]
ROUNDINGS: Final = get_args(Rounding)

#: wide enough that placing the point in any amount or quantity here is exact
WIDE: Final = Context(prec=200)

#: places shown for a quantity or unrounded amount that has no finite decimal form
SHOWN_PLACES: Final = 12


def minor_units(currency: str) -> int:
    """Digits after the point in ``currency`` (ISO 4217 code): USD 2, JPY 0, BHD 3.

    Codes without minor units in the standard (gold, test codes) are refused:
    a bill cannot be rounded in them.
    """
    if not isinstance(currency, str) or len(currency) != 3 or not currency.isalpha():
        raise PricingError("currency", f"{currency!r} is not a three-letter ISO 4217 code")
    try:
        exponent = iso4217.Currency(currency.upper()).exponent
    except ValueError:
        raise PricingError("currency", f"{currency!r} is not an ISO 4217 currency") from None
    if exponent is None:
        raise PricingError("currency", f"{currency} has no minor unit in ISO 4217")
    return exponent


def exact(value: object, where: str) -> Fraction:
    """``value`` (a Decimal or an int; never a float) as an exact rational, checked finite."""
    if isinstance(value, bool) or not isinstance(value, Decimal | int | Fraction):
        kind = type(value).__name__
        raise PricingError(where, f"{value!r} is a {kind}; give a Decimal or an integer")
    if isinstance(value, Decimal) and not value.is_finite():
        raise PricingError(where, f"{value} is not a finite number")
    return Fraction(value)


def shown(value: Fraction) -> Decimal:
    """``value`` as a Decimal: exact when it has a finite decimal form, else to 12 places.

    For display only: amounts are always rounded from the exact rational.
    """
    twos = fives = 0
    rest = value.denominator
    while rest % 2 == 0:
        rest, twos = rest // 2, twos + 1
    while rest % 5 == 0:
        rest, fives = rest // 5, fives + 1
    if rest != 1:
        return _round(value, SHOWN_PLACES, "half_even")
    places = max(twos, fives)  # value = numerator * 2^(p-twos) * 5^(p-fives) / 10^p
    digits = value.numerator * 2 ** (places - twos) * 5 ** (places - fives)
    return Decimal(digits).scaleb(-places, WIDE)


def _round(value: Fraction, places: int, rounding: Rounding) -> Decimal:
    """``value`` rounded to ``places`` decimals by ``rounding``, from the exact rational."""
    scaled = value * 10**places
    sign = -1 if scaled < 0 else 1
    whole, rest = divmod(abs(scaled.numerator), scaled.denominator)
    half = Fraction(rest, scaled.denominator)  # the dropped part of |value|, in [0, 1)
    if rest == 0:
        away = False
    elif rounding == "up":
        away = True
    elif rounding == "down":
        away = False
    elif rounding == "ceiling":
        away = sign > 0
    elif rounding == "floor":
        away = sign < 0
    elif half != Fraction(1, 2):
        away = half > Fraction(1, 2)
    else:
        away = rounding == "half_up" or (rounding == "half_even" and whole % 2 == 1)
    units = sign * (whole + 1 if away else whole)
    return Decimal(units).scaleb(-places, WIDE)


class MoneyPolicy(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """The currency bills are in and how each line is rounded.

    ``from_env`` reads ``RESMON_CURRENCY`` (default ``USD``) and
    ``RESMON_COST_ROUNDING`` (default ``half_even``).
    """

    currency: str = "USD"
    rounding: Rounding = "half_even"

    def __post_init__(self) -> None:
        minor_units(self.currency)  # refuses an unknown code
        if self.currency != self.currency.upper():
            raise PricingError("currency", f"{self.currency!r}: write ISO 4217 codes in capitals")
        if self.rounding not in ROUNDINGS:
            raise PricingError(
                "rounding", f"{self.rounding!r} is not one of {', '.join(ROUNDINGS)}"
            )

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> MoneyPolicy:
        currency = environ.get("RESMON_CURRENCY", "USD").strip().upper()
        rounding = environ.get("RESMON_COST_ROUNDING", "half_even").strip().lower()
        try:
            minor_units(currency)
        except PricingError as exc:
            raise PricingError("RESMON_CURRENCY", exc.problem) from None
        if rounding not in ROUNDINGS:
            raise PricingError(
                "RESMON_COST_ROUNDING", f"{rounding!r} is not one of {', '.join(ROUNDINGS)}"
            )
        return cls(currency, rounding)  # type: ignore[arg-type]  # checked just above

    @property
    def minor_units(self) -> int:
        return minor_units(self.currency)

    def round(self, amount: Fraction) -> Decimal:
        """``amount`` rounded once to the currency's minor unit (``2.50`` for USD)."""
        return _round(amount, self.minor_units, self.rounding)
