"""Price one resource for one billing period: a model and a measured usage in, a breakdown out."""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from fractions import Fraction

import msgspec

from protocol import UnitError, unit_factor

from .breakdown import Breakdown, Charge, Inputs, assemble, overage_percent
from .errors import PricingError
from .models import CostModel, Overage, Package, Percentile95, PerUnit, Tiered, TimeOfUse
from .money import WIDE, MoneyPolicy, shown
from .percentile import RateMeasure, nearest_rank
from .proration import RULE, Period, Proration, prorate
from .tiers import package, per_unit, tiered

__all__ = ["PlanSpan", "Volume", "price", "price_plan_change"]


class Volume(msgspec.Struct, frozen=True, rename="camel", forbid_unknown_fields=True):
    """A period's usage: an exact count of base units, billed in the catalog ``unit``."""

    base: int
    unit: str
    #: the part of ``base`` used in the peak hours (a timeOfUse model needs it)
    peak_base: int | None = None

    def __post_init__(self) -> None:
        if isinstance(self.base, bool) or not isinstance(self.base, int) or self.base < 0:
            raise PricingError("usage.base", f"{self.base!r} is not a whole count >= 0")
        peak = self.peak_base
        if peak is not None and (
            isinstance(peak, bool) or not isinstance(peak, int) or not 0 <= peak <= self.base
        ):
            raise PricingError(
                "usage.peakBase", f"{peak!r} is not a whole count from 0 to the usage ({self.base})"
            )
        try:
            unit_factor(self.unit)
        except UnitError as exc:
            raise PricingError("usage.unit", str(exc)) from None

    @property
    def quantity(self) -> Fraction:
        """The usage in catalog units, exactly (3,600 s is one hour)."""
        return Fraction(self.base, unit_factor(self.unit)[1])


def _base(model: CostModel, proration: Proration | None) -> list[Charge]:
    if not model.base_cost:
        return []
    cost = Fraction(model.base_cost)
    text = f"base cost per {model.billing_period.removesuffix('ly')}"
    if proration is None:
        return [Charge("base", text, cost, Fraction(1), "period", model.base_cost)]
    ratio = proration.exact_ratio
    return [
        Charge(
            "base",
            f"{text}, prorated x {ratio.numerator}/{ratio.denominator} of the period",
            cost * ratio,
            ratio,
            "period",
            model.base_cost,
            proration=proration,
        )
    ]


def _volume_charges(
    model: CostModel, usage: Volume, limit: Fraction | None
) -> tuple[list[Charge], str]:
    price, unit, quantity = model.usage, usage.unit, usage.quantity
    included = Fraction(model.included)
    billable = max(Fraction(0), quantity - included)
    above = f" above {shown(included)} {unit} included" if included else ""
    if price is None:
        return [], "base cost only"
    if isinstance(price, PerUnit):
        text = f"every {unit}{above} at {price.unit_price}"
        return [per_unit(billable, price.unit_price, unit, kind="usage", description=text)], text
    if isinstance(price, Overage):
        over = Fraction(0) if limit is None else max(Fraction(0), quantity - limit)
        allowance = "no limit" if limit is None else f"limit {shown(limit)} {unit}"
        text = f"the plan's overage: {price.rate} per {unit} above the limit ({allowance})"
        charge = per_unit(over, price.rate, unit, kind="overage", description=text)
        return [charge], text
    if isinstance(price, Tiered):
        return tiered(billable, price, unit), f"{price.mode} tiers over the usage{above}"
    if isinstance(price, Package):
        text = f"{price.price} per started package of {price.size} {unit}{above}"
        return [package(billable, price, unit)], text
    if isinstance(price, TimeOfUse):
        return _time_of_use(price, usage)
    raise PricingError("usage", "a 95th-percentile model is priced from a RateMeasure")


def _time_of_use(price: TimeOfUse, usage: Volume) -> tuple[list[Charge], str]:
    if usage.peak_base is None:
        raise PricingError(
            "usage.peakBase", "a timeOfUse model needs the usage of the peak hours (hour buckets)"
        )
    unit = usage.unit
    peak = Fraction(usage.peak_base, unit_factor(unit)[1])
    off = usage.quantity - peak
    window = price.window
    text = (
        f"peak hours {window} (billing time zone) at {price.peak_price} per {unit}, "
        f"the other hours at {price.off_peak_price}"
    )
    charges = [
        per_unit(
            peak,
            price.peak_price,
            unit,
            kind="peak",
            description=f"usage in the peak hours {window} at {price.peak_price} per {unit}",
        ),
        per_unit(
            off,
            price.off_peak_price,
            unit,
            kind="offPeak",
            description=f"usage outside {window} at {price.off_peak_price} per {unit}",
        ),
    ]
    return charges, text


def _rate_charges(
    price: Percentile95, rate: RateMeasure, period: Period
) -> tuple[list[Charge], str]:
    if rate.mode != price.direction:
        raise PricingError(
            "usage.mode", f"measured as {rate.mode}, the model bills {price.direction}"
        )
    over = max(Fraction(0), rate.rate_mbps - Fraction(price.committed_mbps))
    text = (
        f"95th percentile of 5-minute rates (nearest rank ceil(0.95 n): {rate.rank} of "
        f"{rate.ranked}, {price.direction}) above the {price.committed_mbps} Mbps CDR at "
        f"{price.overage_per_mbps} per Mbps"
    )
    if not period.start_ms <= rate.period.start_ms < rate.period.end_ms <= period.end_ms:
        raise PricingError("usage.period", "the rate was measured outside the billing period")
    if rate.rank != nearest_rank(rate.ranked):
        raise PricingError("usage.rank", f"{rate.rank} is not ceil(0.95 x {rate.ranked})")
    charge = per_unit(over, price.overage_per_mbps, "Mbps", kind="overage", description=text)
    return [charge], text


def _limit(limit_base: int | None, unit: str) -> Fraction | None:
    """The resource's limit in catalog units, exactly."""
    if limit_base is None:
        return None
    if isinstance(limit_base, bool) or not isinstance(limit_base, int) or limit_base < 0:
        raise PricingError("limitBase", f"{limit_base!r} is not a whole count >= 0")
    return Fraction(limit_base, unit_factor(unit)[1])


def price(
    model: CostModel,
    usage: Volume | RateMeasure,
    *,
    period: Period,
    money: MoneyPolicy | None = None,
    active: Period | None = None,
    limit_base: int | None = None,
    sources: Sequence[str] = (),
) -> Breakdown:
    """The breakdown of ``model`` applied to ``usage`` over the billing ``period``.

    ``active`` is the part of the period the resource had this model (it started
    or changed plan inside it): the base cost is prorated by the exact duration
    ratio. ``limit_base`` is the resource's limit in base units, as
    ``customer_resources.limit_value`` holds it (None: unlimited); a
    95th-percentile model has none (its CDR is the allowance).
    A change of plan inside a period is :func:`price_plan_change`.
    """
    money = money or MoneyPolicy()
    proration = prorate(period, active)
    charges = _base(model, proration)
    allowance: Fraction | None
    if isinstance(model.usage, Percentile95):
        if not isinstance(usage, RateMeasure):
            raise PricingError("usage", "a 95th-percentile model needs a RateMeasure")
        if limit_base is not None:
            raise PricingError("limitBase", "a 95th-percentile model's allowance is its CDR")
        usage_charges, rule = _rate_charges(model.usage, usage, period)
        quantity, unit, allowance = usage.rate_mbps, "Mbps", Fraction(model.usage.committed_mbps)
        inputs = Inputs(rate=usage, sources=tuple(sources))
    else:
        if not isinstance(usage, Volume):
            raise PricingError("usage", "a volume model needs a Volume, not a rate")
        exact_limit = _limit(limit_base, usage.unit)
        usage_charges, rule = _volume_charges(model, usage, exact_limit)
        quantity, unit = usage.quantity, usage.unit
        included = Fraction(model.included)
        allowance = exact_limit if exact_limit is not None else (included or None)
        inputs = Inputs(
            usage_base=usage.base,
            base_unit=unit_factor(unit)[0],
            peak_base=usage.peak_base if isinstance(model.usage, TimeOfUse) else None,
            sources=tuple(sources),
        )
    rule = f"{rule}; each line rounded {money.rounding.replace('_', '-')} to {money.minor_units} "
    rule += "places, total = sum of the rounded lines"
    if proration is not None:
        rule += f"; base cost prorated by {proration.rule}"
    return assemble(
        [*charges, *usage_charges],
        money=money,
        model=model,
        period=period,
        rule=rule,
        usage=quantity,
        unit=unit,
        limit=allowance,
        proration=proration,
        inputs=inputs,
    )


class PlanSpan(msgspec.Struct, frozen=True, kw_only=True):
    """One plan a resource had during part of a billing period, and its usage then."""

    #: the plan's name or id, shown on its lines
    plan: str
    model: CostModel
    #: when the resource had this plan (clipped to the period)
    active: Period
    usage: Volume
    limit_base: int | None = None


def price_plan_change(
    spans: Sequence[PlanSpan],
    *,
    period: Period,
    money: MoneyPolicy | None = None,
    sources: Sequence[str] = (),
) -> Breakdown:
    """One breakdown for a resource whose plan changed inside ``period``.

    Each span is priced under its own plan, its base cost prorated by the exact
    duration ratio of its ``active`` span (the same rule as a mid-period start),
    its usage (measured in that span) against that plan's limit and prices,
    which are not scaled. The lines of every span are kept, each rounded once
    and naming its plan; the total is the sum of all of them. Spans must be in
    time order, must not overlap and must share the billing period, currency
    and catalog unit; 95th-percentile plans are refused (their rank is taken
    over the whole period, not per plan).
    """
    money = money or MoneyPolicy()
    if not spans:
        raise PricingError("spans", "at least one plan span is needed")
    unit = spans[0].usage.unit
    previous_end = period.start_ms
    bills: list[Breakdown] = []
    for index, span in enumerate(spans):
        where = f"spans[{index}]"
        if isinstance(span.model.usage, Percentile95):
            raise PricingError(
                f"{where}.model", "a 95th-percentile plan is ranked over the whole period"
            )
        if span.model.billing_period != spans[0].model.billing_period:
            raise PricingError(
                f"{where}.model.billingPeriod", "all plans must bill the same period"
            )
        if span.usage.unit != unit:
            raise PricingError(f"{where}.usage.unit", f"{span.usage.unit} is not {unit}")
        if span.active.start_ms < previous_end:
            raise PricingError(f"{where}.active", "overlaps the span before it or the period start")
        previous_end = span.active.end_ms
        if previous_end > period.end_ms:
            raise PricingError(f"{where}.active", "ends after the billing period")
        bills.append(
            price(
                span.model,
                span.usage,
                period=period,
                money=money,
                active=span.active,
                limit_base=span.limit_base,
            )
        )
    lines = []
    total = Decimal(0).scaleb(-money.minor_units)
    for span, bill in zip(spans, bills, strict=True):
        for line in bill.lines:
            lines.append(msgspec.structs.replace(line, plan=span.plan))
            total = WIDE.add(total, line.amount)
    last, last_bill = spans[-1], bills[-1]
    usage = sum((span.usage.quantity for span in spans), Fraction(0))
    limit = None if last_bill.limit is None else Fraction(last_bill.limit)
    changes = ", ".join(
        f"{span.plan} [{span.active.start_ms}, {span.active.end_ms}) ms" for span in spans
    )
    rule = (
        f"plan changed inside the period: {changes}; each plan's base cost prorated by "
        f"{RULE}, its usage priced under its own rule; each line rounded "
        f"{money.rounding.replace('_', '-')} to {money.minor_units} places, total = sum of "
        "the rounded lines of every plan"
    )
    return Breakdown(
        currency=money.currency,
        rounding=money.rounding,
        billing_period=last.model.billing_period,
        period=period,
        rule=rule,
        model=last.model,
        usage=shown(usage),
        unit=unit,
        limit=last_bill.limit,
        overage_percent=overage_percent(usage, limit),
        lines=lines,
        total=total,
        proration=None,
        inputs=Inputs(
            usage_base=sum(span.usage.base for span in spans),
            base_unit=unit_factor(unit)[0],
            sources=tuple(sources),
        ),
    )
