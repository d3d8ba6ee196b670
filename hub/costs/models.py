"""Price models: what one resource costs, as validated msgspec structs.

A :class:`CostModel` is a base cost per billing period (monthly or yearly),
an optional included quota, and at most one usage price:

* :class:`PerUnit` - the catalog's ``cost_per_unit`` for every unit used;
* :class:`Overage` - the plan's ``overage_rate`` per unit above the resource's limit;
* :class:`Tiered` - graduated or volume tiers, each with an inclusive ``upTo``
  (the last tier open), a unit price and/or a flat price;
* :class:`Package` - a price per started package of N units;
* :class:`Percentile95` - 95th-percentile bandwidth: a committed data rate
  and a price per Mbps above it;
* :class:`TimeOfUse` - peak and off-peak prices per unit: usage in the peak
  hours (a window of local hours in the billing time zone) at one price, the
  rest at the other.

JSON field names are camelCase. Every amount is a decimal (a JSON number or a
string); a Python float is refused. Errors name the field:
``tiers[1].upTo: 100 is not above the previous tier's upTo (100)``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from decimal import Decimal
from typing import Any, Final, Literal, get_args

import msgspec

from .errors import PricingError
from .money import exact

__all__ = [
    "BillingPeriod",
    "CostModel",
    "DirectionMode",
    "Overage",
    "Package",
    "PerUnit",
    "Percentile95",
    "Tier",
    "Tiered",
    "TimeOfUse",
    "UsagePrice",
    "catalog_model",
    "load_cost_model",
    "plan_model",
]

BillingPeriod = Literal["monthly", "yearly"]
#: how the in and out directions of a bandwidth bill become one rate
DirectionMode = Literal["max_of_directions", "sum_of_directions", "max_per_window"]

_STRUCT: Final[dict[str, Any]] = {
    "frozen": True,
    "rename": "camel",
    "forbid_unknown_fields": True,
}


def _non_negative(value: object, where: str) -> None:
    if exact(value, where) < 0:
        raise PricingError(where, f"{value} is negative")


def _one_of(value: object, allowed: tuple[str, ...], where: str) -> None:
    if value not in allowed:
        raise PricingError(where, f"{value!r} is not one of {', '.join(allowed)}")


def _positive(value: object, where: str) -> None:
    if exact(value, where) <= 0:
        raise PricingError(where, f"{value} must be above zero")


class PerUnit(msgspec.Struct, tag="perUnit", tag_field="type", **_STRUCT):
    """Every unit used (above the included quota) at ``unitPrice``."""

    unit_price: Decimal

    def __post_init__(self) -> None:
        _non_negative(self.unit_price, "unitPrice")


class Overage(msgspec.Struct, tag="overage", tag_field="type", **_STRUCT):
    """The plan's rule: ``rate`` per unit used above the resource's limit."""

    rate: Decimal

    def __post_init__(self) -> None:
        _non_negative(self.rate, "rate")


class Tier(msgspec.Struct, **_STRUCT):
    """One tier: up to and including ``upTo`` units (``None``: no upper end)."""

    up_to: Decimal | None = None
    unit_price: Decimal = Decimal(0)
    flat_price: Decimal = Decimal(0)


class Tiered(msgspec.Struct, tag="tiered", tag_field="type", **_STRUCT):
    """Tiers over the usage above the included quota.

    ``graduated``: each unit is priced in the tier it falls in, and a tier's
    flat price is charged once usage enters it. ``volume``: all units are
    priced in the one tier the whole usage falls in, plus that tier's flat price.
    """

    mode: Literal["graduated", "volume"]
    tiers: list[Tier]

    def __post_init__(self) -> None:
        _one_of(self.mode, ("graduated", "volume"), "mode")
        if not self.tiers:
            raise PricingError("tiers", "at least one tier is needed")
        previous = Decimal(0)
        last = len(self.tiers) - 1
        for index, tier in enumerate(self.tiers):
            where = f"tiers[{index}]"
            _non_negative(tier.unit_price, f"{where}.unitPrice")
            _non_negative(tier.flat_price, f"{where}.flatPrice")
            if tier.up_to is None:
                if index != last:
                    raise PricingError(f"{where}.upTo", "only the last tier may be open (no upTo)")
                continue
            if index == last:
                raise PricingError(
                    f"{where}.upTo",
                    "the last tier must be open (leave upTo out), so no usage "
                    "falls outside every tier",
                )
            exact(tier.up_to, f"{where}.upTo")
            if tier.up_to <= previous:
                raise PricingError(
                    f"{where}.upTo",
                    f"{tier.up_to} is not above the previous tier's upTo ({previous})",
                )
            previous = tier.up_to


class Package(msgspec.Struct, tag="package", tag_field="type", **_STRUCT):
    """``price`` per package of ``size`` units; a started package is a whole one."""

    size: Decimal
    price: Decimal

    def __post_init__(self) -> None:
        _positive(self.size, "size")
        _non_negative(self.price, "price")


class Percentile95(msgspec.Struct, tag="percentile95", tag_field="type", **_STRUCT):
    """95th-percentile bandwidth above a committed data rate (CDR), per Mbps.

    The base cost of the model is the commitment's price; ``overagePerMbps``
    is charged for each Mbps (10^6 bit/s) of the 95th percentile above
    ``committedMbps``.
    """

    committed_mbps: Decimal
    overage_per_mbps: Decimal
    direction: DirectionMode = "max_of_directions"

    def __post_init__(self) -> None:
        _one_of(self.direction, get_args(DirectionMode), "direction")
        _non_negative(self.committed_mbps, "committedMbps")
        _non_negative(self.overage_per_mbps, "overagePerMbps")


class TimeOfUse(msgspec.Struct, tag="timeOfUse", tag_field="type", **_STRUCT):
    """Peak and off-peak unit prices.

    The peak hours are the local hours ``h`` of the billing time zone with
    ``peakStart <= h < peakEnd`` (0-24; a window with ``peakStart > peakEnd``
    runs over midnight, 22 to 6). Usage in an hour of the window is charged at
    ``peakPrice`` per unit, every other unit at ``offPeakPrice``.
    """

    peak_start: int
    peak_end: int
    peak_price: Decimal
    off_peak_price: Decimal

    def __post_init__(self) -> None:
        for where, hour in (("peakStart", self.peak_start), ("peakEnd", self.peak_end)):
            if isinstance(hour, bool) or not 0 <= hour <= 24:
                raise PricingError(where, f"{hour!r} is not an hour from 0 to 24")
        if self.peak_start % 24 == self.peak_end % 24:
            raise PricingError(
                "peakEnd",
                f"{self.peak_end} makes an empty or whole-day peak window from "
                f"{self.peak_start}; use perUnit for one price",
            )
        _non_negative(self.peak_price, "peakPrice")
        _non_negative(self.off_peak_price, "offPeakPrice")

    def is_peak(self, hour: int) -> bool:
        """Whether local hour ``hour`` (0-23) is in the peak window."""
        start, end = self.peak_start % 24, self.peak_end % 24
        return start <= hour < end if start < end else hour >= start or hour < end

    @property
    def window(self) -> str:
        """The peak window as text: ``08:00-20:00``."""
        return f"{self.peak_start:02d}:00-{self.peak_end:02d}:00"


UsagePrice = PerUnit | Overage | Tiered | Package | Percentile95 | TimeOfUse


class CostModel(msgspec.Struct, **_STRUCT):
    """What a resource costs per billing period.

    ``baseCost`` is charged per period (prorated when the resource is active
    for part of it); ``included`` units per period are free before ``usage``
    prices the rest. The plan's model is ``baseCost`` + ``Overage``; the
    catalog's is ``PerUnit(cost_per_unit)``.
    """

    billing_period: BillingPeriod = "monthly"
    base_cost: Decimal = Decimal(0)
    included: Decimal = Decimal(0)
    usage: UsagePrice | None = None
    name: str = ""

    def __post_init__(self) -> None:
        _one_of(self.billing_period, get_args(BillingPeriod), "billingPeriod")
        _non_negative(self.base_cost, "baseCost")
        _non_negative(self.included, "included")
        if self.included and isinstance(self.usage, TimeOfUse):
            raise PricingError(
                "included",
                "not used with timeOfUse: which hours an included unit comes from is undefined",
            )
        if self.included and isinstance(self.usage, Overage | Percentile95):
            allowance = "the resource's limit" if isinstance(self.usage, Overage) else "the CDR"
            raise PricingError(
                "included",
                f"not used with {type(self.usage).__name__}: {allowance} is the allowance",
            )


def plan_model(
    billing_period: str,
    base_cost: Decimal | None,
    overage_rate: Decimal | None,
    name: str = "",
) -> CostModel:
    """The plan's model from a ``cost_models`` row: base cost + overage above the limit.

    A NULL ``base_cost`` is no base cost; a NULL ``overage_rate`` is no
    overage charge (the base cost only).
    """
    _one_of(billing_period, get_args(BillingPeriod), "billingPeriod")
    return CostModel(
        billing_period=billing_period,  # type: ignore[arg-type]  # checked just above
        base_cost=Decimal(0) if base_cost is None else base_cost,
        usage=None if overage_rate is None else Overage(overage_rate),
        name=name,
    )


def catalog_model(
    cost_per_unit: Decimal | None, billing_period: BillingPeriod = "monthly"
) -> CostModel:
    """Pure usage billing at a catalog's ``cost_per_unit`` (NULL: the resource is free)."""
    usage = None if cost_per_unit is None else PerUnit(cost_per_unit)
    return CostModel(billing_period=billing_period, usage=usage)


def _refuse_floats(value: object, where: str) -> None:
    if isinstance(value, float):
        raise PricingError(where, f"{value!r} is a float; write amounts as strings or integers")
    if isinstance(value, Mapping):
        for key, item in value.items():
            _refuse_floats(item, f"{where}.{key}")
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            _refuse_floats(item, f"{where}[{index}]")


_AT: Final = re.compile(r"^(?P<problem>.*) - at `(?P<path>[^`]*)`$", re.DOTALL)
_OURS: Final = re.compile(r"^(?P<field>[A-Za-z][\w\[\].]*): (?P<problem>.*)$", re.DOTALL)


def _located(message: str) -> PricingError:
    """One error naming the full path, from msgspec's ``problem - at `$.path```."""
    at = _AT.match(message)
    path, problem = (at["path"], at["problem"]) if at else ("$", message)
    ours = _OURS.match(problem)  # raised by a __post_init__ below ``path``
    if ours is not None:
        return PricingError(f"{path}.{ours['field']}", ours["problem"])
    return PricingError(path, problem)


def load_cost_model(data: bytes | str | Mapping[str, Any]) -> CostModel:
    """A :class:`CostModel` from JSON text (numbers read exactly) or a mapping.

    Raises :class:`PricingError` naming the path of the first bad field.
    """
    try:
        if isinstance(data, bytes | str):
            return msgspec.json.decode(data, type=CostModel)
        _refuse_floats(data, "$")
        return msgspec.convert(data, CostModel)
    except msgspec.ValidationError as exc:
        raise _located(str(exc)) from None
    except msgspec.DecodeError as exc:
        raise PricingError("cost model", f"not JSON: {exc}") from None
