"""Usage prices: graduated and volume tiers, packages, a price per unit.

Each function takes the billable quantity (usage above the included quota, in
catalog units, exact) and returns the charges it makes, not yet rounded.
"""

from __future__ import annotations

import math
from decimal import Decimal
from fractions import Fraction
from typing import Literal

from .breakdown import Charge
from .models import Package, Tier, Tiered
from .money import shown

__all__ = ["graduated", "package", "per_unit", "tiered", "volume"]


def _bounds(tiers: list[Tier]) -> list[tuple[Fraction, Fraction | None]]:
    """(lower bound exclusive, upper bound inclusive or None) of each tier."""
    bounds: list[tuple[Fraction, Fraction | None]] = []
    lower = Fraction(0)
    for tier in tiers:
        upper = None if tier.up_to is None else Fraction(tier.up_to)
        bounds.append((lower, upper))
        if upper is not None:
            lower = upper
    return bounds


def _tier_charge(
    number: int,
    tier: Tier,
    bounds: tuple[Fraction, Fraction | None],
    units: Fraction,
    unit: str,
    how: str,
) -> Charge:
    """``units`` at ``tier``'s unit price plus its flat price, described with its bounds."""
    lower, upper = bounds
    span = f"above {shown(lower)} {unit}" if upper is None else f"up to {shown(upper)} {unit}"
    return Charge(
        kind="tier",
        description=f"tier {number} ({span}), {how}",
        amount=units * Fraction(tier.unit_price) + Fraction(tier.flat_price),
        quantity=units,
        unit=unit,
        unit_price=tier.unit_price,
        flat_price=tier.flat_price,
        tier=number,
    )


def graduated(quantity: Fraction, tiers: list[Tier], unit: str) -> list[Charge]:
    """Each unit at the price of the tier it falls in; a tier's flat price once it is entered.

    Tier i holds the units in ``(upTo[i-1], upTo[i]]``; zero usage enters no tier.
    """
    charges: list[Charge] = []
    for number, (tier, (lower, upper)) in enumerate(zip(tiers, _bounds(tiers), strict=True), 1):
        if quantity <= lower:
            break
        units = quantity - lower if upper is None else min(quantity, upper) - lower
        charges.append(_tier_charge(number, tier, (lower, upper), units, unit, "graduated"))
    return charges


def volume(quantity: Fraction, tiers: list[Tier], unit: str) -> list[Charge]:
    """All units at the price of the one tier the quantity falls in, plus its flat price.

    The tier is the first whose ``upTo`` is >= the quantity (bounds are
    inclusive); zero usage enters no tier.
    """
    if quantity == 0:
        return []
    for number, (tier, (lower, upper)) in enumerate(zip(tiers, _bounds(tiers), strict=True), 1):
        if upper is None or quantity <= upper:
            how = "volume: every unit at this tier's price"
            return [_tier_charge(number, tier, (lower, upper), quantity, unit, how)]
    raise AssertionError("the last tier is open: Tiered refuses anything else")  # pragma: no cover


def tiered(quantity: Fraction, price: Tiered, unit: str) -> list[Charge]:
    if price.mode == "graduated":
        return graduated(quantity, price.tiers, unit)
    return volume(quantity, price.tiers, unit)


def package(quantity: Fraction, price: Package, unit: str) -> Charge:
    """``price`` per package of ``size`` units, a started package counted whole."""
    size = Fraction(price.size)
    packages = math.ceil(quantity / size)
    return Charge(
        kind="package",
        description=f"{packages} package(s) of {price.size} {unit} (a started one counts whole)",
        amount=packages * Fraction(price.price),
        quantity=Fraction(packages),
        unit="package",
        unit_price=price.price,
    )


def per_unit(
    quantity: Fraction,
    unit_price: Decimal,
    unit: str,
    *,
    kind: Literal["usage", "overage", "peak", "offPeak"],
    description: str,
) -> Charge:
    """``quantity`` units at ``unit_price`` each."""
    return Charge(
        kind=kind,
        description=description,
        amount=quantity * Fraction(unit_price),
        quantity=quantity,
        unit=unit,
        unit_price=unit_price,
    )
