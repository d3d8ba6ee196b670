"""The result of pricing: lines rounded once each, and what they came from."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction
from typing import Literal

import msgspec

from .models import BillingPeriod, CostModel
from .money import WIDE, MoneyPolicy, Rounding, shown
from .percentile import RateMeasure
from .proration import Period, Proration

__all__ = ["Breakdown", "Charge", "Inputs", "Line", "LineKind", "assemble"]

LineKind = Literal["base", "usage", "overage", "tier", "package", "peak", "offPeak"]


@dataclass(frozen=True, slots=True)
class Charge:
    """One line before rounding: its exact amount and how it was reached."""

    kind: LineKind
    description: str
    amount: Fraction
    quantity: Fraction | None = None
    unit: str | None = None
    #: prices as the model wrote them (the amount is computed exactly from them)
    unit_price: Decimal | None = None
    flat_price: Decimal | None = None
    tier: int | None = None
    proration: Proration | None = None


class Line(msgspec.Struct, frozen=True, rename="camel", omit_defaults=True):
    """One line of a breakdown. ``amount`` is ``unrounded`` rounded once.

    ``quantity`` and ``unrounded`` are exact unless they have no finite decimal
    form (a third of a month), when they are shown to 12 places; the amount is
    always rounded from the exact value, not from what is shown.
    """

    kind: LineKind
    description: str
    unrounded: Decimal
    amount: Decimal
    quantity: Decimal | None = None
    unit: str | None = None
    unit_price: Decimal | None = None
    flat_price: Decimal | None = None
    #: 1-based tier number, for ``tier`` lines
    tier: int | None = None
    proration: Proration | None = None
    #: the plan the line was charged under, when the plan changed inside the period
    plan: str | None = None


class Inputs(msgspec.Struct, frozen=True, rename="camel", omit_defaults=True):
    """What a breakdown was computed from."""

    #: the period's usage as an exact count of the base unit (bytes, requests, seconds)
    usage_base: int | None = None
    base_unit: str | None = None
    #: the part of ``usage_base`` used in the peak hours (a timeOfUse model)
    peak_base: int | None = None
    #: the 95th-percentile measurement, for bandwidth billed by rate
    rate: RateMeasure | None = None
    #: the caller's references to its sources (aggregate rows, sample batches)
    sources: tuple[str, ...] = ()


class Breakdown(msgspec.Struct, frozen=True, rename="camel"):
    """A priced period of one resource. ``total`` is the sum of the rounded lines."""

    currency: str
    rounding: Rounding
    billing_period: BillingPeriod
    period: Period
    #: in words: which rule produced the lines
    rule: str
    model: CostModel
    #: usage in catalog units (or the 95th-percentile rate in Mbps)
    usage: Decimal
    unit: str
    #: the allowance usage is compared with (limit, included quota or CDR); None: none
    limit: Decimal | None
    #: how far usage is above the limit, % of the limit (0 at or under it; None: no limit)
    overage_percent: Decimal | None
    lines: list[Line]
    total: Decimal
    proration: Proration | None
    inputs: Inputs


def round_line(charge: Charge, money: MoneyPolicy) -> Line:
    def show(value: Fraction | None) -> Decimal | None:
        return None if value is None else shown(value)

    return Line(
        kind=charge.kind,
        description=charge.description,
        unrounded=shown(charge.amount),
        amount=money.round(charge.amount),
        quantity=show(charge.quantity),
        unit=charge.unit,
        unit_price=charge.unit_price,
        flat_price=charge.flat_price,
        tier=charge.tier,
        proration=charge.proration,
    )


def overage_percent(usage: Fraction, limit: Fraction | None) -> Decimal | None:
    """``(usage - limit) / limit * 100`` above the limit, 0 under it, None without one.

    A limit of zero has no percentage (any usage is over it): None.
    """
    if limit is None or limit == 0:
        return None
    return shown(max(Fraction(0), usage - limit) / limit * 100)


def assemble(
    charges: Sequence[Charge],
    *,
    money: MoneyPolicy,
    model: CostModel,
    period: Period,
    rule: str,
    usage: Fraction,
    unit: str,
    limit: Fraction | None,
    proration: Proration | None,
    inputs: Inputs,
) -> Breakdown:
    """Round each charge once and add up the rounded lines."""
    lines = [round_line(charge, money) for charge in charges]
    total = Decimal(0).scaleb(-money.minor_units)  # "0.00" for a bill of no lines
    for line in lines:
        total = WIDE.add(total, line.amount)
    return Breakdown(
        currency=money.currency,
        rounding=money.rounding,
        billing_period=model.billing_period,
        period=period,
        rule=rule,
        model=model,
        usage=shown(usage),
        unit=unit,
        limit=None if limit is None else shown(limit),
        overage_percent=overage_percent(usage, limit),
        lines=lines,
        total=total,
        proration=proration,
        inputs=inputs,
    )
