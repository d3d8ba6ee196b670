"""Cost optimization recommendations from a resource's usage history (issue 12, section 4).

Pure: a :class:`ResourceHistory` (the resource's plan, its daily usage and its
recent billing periods) and the catalog's plans go in, a list of
:class:`Recommendation` comes out. Every saving is what :func:`~.pricing.price`
bills under one model minus what it bills under another, so the cost model is
the only source of prices. ``docs/recommendations.md`` has the rules and worked
examples.

Kinds:

* ``RESIZE_RESOURCE`` down - the 95th percentile of the daily usage over the
  window is at most ``under_fraction`` of the limit and a cheaper plan's limit
  still covers it with ``headroom``;
* ``RESIZE_RESOURCE`` up - the overage billed over the recent periods, on
  average, exceeds the price step to the next larger plan;
* ``ELIMINATE_WASTE`` - idle for the whole window (usage below the floor) and
  still billed;
* ``COMPRESS_DATA`` - a level resource (storage) growing steadily: the cost of
  the growth projected over the next period, and what compressing it saves;
* ``SCHEDULE_OFF_PEAK`` - a resource on peak/off-peak prices (``timeOfUse``)
  whose usage is concentrated in the peak hours: what moving a share of the
  peak usage to the other hours saves.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from decimal import Decimal
from fractions import Fraction
from typing import Final, Literal

import msgspec

from protocol import unit_factor

from .errors import PricingError
from .models import CostModel, Percentile95, TimeOfUse
from .money import MoneyPolicy, shown
from .percentile import nearest_rank
from .pricing import Volume, price
from .proration import Period

__all__ = [
    "NAMESPACE",
    "Effort",
    "Kind",
    "Plan",
    "RecommendSettings",
    "Recommendation",
    "ResourceHistory",
    "recommend",
    "recommendation_id",
]

Kind = Literal["RESIZE_RESOURCE", "ELIMINATE_WASTE", "COMPRESS_DATA", "SCHEDULE_OFF_PEAK"]
Effort = Literal["LOW", "MEDIUM", "HIGH"]

#: namespace of the deterministic recommendation ids (UUID version 5)
NAMESPACE: Final = uuid.UUID("6f1d3b1e-6a0c-5b8e-9a57-2f4c1d0e7b31")

#: days a month is projected over from daily usage (a delta resource's month)
MONTH_DAYS: Final = 30


class RecommendSettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Tunables of the engine (``min_savings``: ``RESMON_RECOMMEND_MIN_SAVINGS``)."""

    #: smallest monthly saving (in the currency) worth a recommendation
    min_savings: Decimal = Decimal(10)
    #: days of daily usage a recommendation needs (and looks at)
    window_days: int = 30
    #: resize down only when the usage's 95th percentile is at most this share of the limit
    under_fraction: Decimal = Decimal("0.5")
    #: the smaller plan's limit must cover the 95th percentile times (1 + headroom)
    headroom: Decimal = Decimal("0.2")
    #: idle: the window's usage (a level's peak) below this share of the limit
    #: (unlimited: below ``idle_floor_units`` catalog units)
    idle_fraction: Decimal = Decimal("0.01")
    idle_floor_units: Decimal = Decimal(1)
    #: steady growth: least-squares fit with at least this R^2 and a positive slope
    growth_r2: Decimal = Decimal("0.8")
    #: share of the projected growth compression is assumed to remove
    compress_ratio: Decimal = Decimal("0.5")
    #: off-peak advice when at least this share of the window's usage is in peak hours
    peak_share: Decimal = Decimal("0.6")
    #: share of the peak usage assumed movable to off-peak hours
    off_peak_shift: Decimal = Decimal("0.5")

    def __post_init__(self) -> None:
        if self.min_savings < 0:
            raise PricingError("minSavings", f"{self.min_savings} is negative")
        if self.window_days < 2:
            raise PricingError("windowDays", f"{self.window_days} must be at least 2")
        for where, value in (
            ("underFraction", self.under_fraction),
            ("idleFraction", self.idle_fraction),
            ("growthR2", self.growth_r2),
            ("compressRatio", self.compress_ratio),
            ("peakShare", self.peak_share),
            ("offPeakShift", self.off_peak_shift),
        ):
            if not 0 < value <= 1:
                raise PricingError(where, f"{value} must be above 0 and at most 1")
        if self.headroom < 0 or self.idle_floor_units < 0:
            raise PricingError("headroom", "headroom and idleFloorUnits must be >= 0")


class Plan(msgspec.Struct, frozen=True, kw_only=True):
    """A plan a resource can be on: its cost model and the limit that comes with it."""

    plan_id: str
    model: CostModel
    #: the limit in base units (None: unlimited)
    limit_base: int | None = None


class ResourceHistory(msgspec.Struct, frozen=True, kw_only=True):
    """One resource's plan and usage, as the recommendation job loads it."""

    customer_id: str
    resource_key: str
    resource_type: str
    #: catalog unit the usage is billed in (GB, hour, request)
    unit: str
    #: ``delta`` (a day's usage adds up) or ``level`` (a day's peak level: storage, memory)
    kind: Literal["delta", "level"]
    plan: Plan
    #: the last days' usage in base units, oldest first (delta: the day's total; level: its peak)
    daily: Sequence[int]
    #: usage of the last closed billing periods, in base units (for resizing up)
    periods: Sequence[int] = ()
    #: the part of each day of ``daily`` used in the plan's peak hours (timeOfUse plans)
    peak_daily: Sequence[int] | None = None
    tenant_id: str | None = None


class Recommendation(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    """One recommendation: what to do, what it saves per month, and the numbers behind it."""

    recommendation_id: str
    kind: Kind
    customer_id: str
    resource_key: str
    #: ``down``/``up`` for a resize, else empty
    direction: str
    #: the plan a resize moves to, else empty
    target_plan_id: str
    monthly_savings: Decimal
    currency: str
    effort: Effort
    description: str
    #: the figures the recommendation was computed from, as decimal strings
    evidence: dict[str, str]


def recommendation_id(kind: str, customer_id: str, resource_key: str, action: str = "") -> str:
    """A stable id: the same advice for the same resource is the same id every day."""
    return str(uuid.uuid5(NAMESPACE, "\x1f".join((kind, customer_id, resource_key, action))))


#: any 30-day month: the base cost of a monthly model is not prorated inside it
_MONTH: Final = Period(0, MONTH_DAYS * 86_400_000)


def _monthly_cost(model: CostModel, usage: Fraction, unit: str, limit: int | None) -> Fraction:
    """The model's bill for one month with ``usage`` catalog units (rounded lines, summed)."""
    factor = unit_factor(unit)[1]
    base = int(-(-usage.numerator * factor // usage.denominator))  # whole base units, up
    bill = price(model, Volume(base, unit), period=_MONTH, limit_base=limit)
    return Fraction(bill.total)


def _units(base: int, unit: str) -> Fraction:
    return Fraction(base, unit_factor(unit)[1])


def _month_usage(history: ResourceHistory, daily_units: Fraction) -> Fraction:
    """A month's billed usage from a day's: a delta adds up over the month, a level does not."""
    return daily_units * MONTH_DAYS if history.kind == "delta" else daily_units


def _p95(values: Sequence[int]) -> int:
    ordered = sorted(values)
    return ordered[nearest_rank(len(ordered)) - 1]


def _text(value: Fraction | Decimal | int) -> str:
    return str(shown(Fraction(value)))


class _Engine:
    def __init__(self, settings: RecommendSettings, money: MoneyPolicy) -> None:
        self.settings = settings
        self.money = money

    def make(
        self,
        history: ResourceHistory,
        kind: Kind,
        saving: Fraction,
        *,
        effort: Effort,
        description: str,
        evidence: dict[str, str],
        direction: str = "",
        target: str = "",
    ) -> Recommendation | None:
        amount = self.money.round(saving)
        if amount < self.settings.min_savings:
            return None
        action = f"{direction}:{target}" if direction else ""
        return Recommendation(
            recommendation_id=recommendation_id(
                kind, history.customer_id, history.resource_key, action
            ),
            kind=kind,
            customer_id=history.customer_id,
            resource_key=history.resource_key,
            direction=direction,
            target_plan_id=target,
            monthly_savings=amount,
            currency=self.money.currency,
            effort=effort,
            description=description,
            evidence={**evidence, "monthlySavings": str(amount)},
        )

    def waste(self, history: ResourceHistory, window: Sequence[int]) -> Recommendation | None:
        plan, unit = history.plan, history.unit
        floor = (
            _units(plan.limit_base, unit) * Fraction(self.settings.idle_fraction)
            if plan.limit_base
            else Fraction(self.settings.idle_floor_units)
        )
        # a month's billed usage: a delta resource's total over the window, a level's peak
        used = _units(sum(window) if history.kind == "delta" else max(window), unit)
        if used >= floor:
            return None
        cost = _monthly_cost(plan.model, used, unit, plan.limit_base)
        return self.make(
            history,
            "ELIMINATE_WASTE",
            cost,
            effort="MEDIUM",
            description=(
                f"{history.resource_key} was idle for {len(window)} days ({_text(used)} {unit} "
                f"in all, under {_text(floor)}) and still costs {self.money.round(cost)} "
                f"{self.money.currency} a month; remove it"
            ),
            evidence={
                "days": str(len(window)),
                "usage": _text(used),
                "idleFloor": _text(floor),
                "monthlyCost": str(self.money.round(cost)),
                "unit": unit,
            },
        )

    def down(
        self, history: ResourceHistory, window: Sequence[int], catalog: Sequence[Plan]
    ) -> Recommendation | None:
        plan, unit = history.plan, history.unit
        if plan.limit_base is None:
            return None
        p95_day = _units(_p95(window), unit)
        need = _month_usage(history, p95_day)
        limit = _units(plan.limit_base, unit)
        if need > limit * Fraction(self.settings.under_fraction):
            return None
        covered = need * (1 + Fraction(self.settings.headroom))
        current = _monthly_cost(plan.model, need, unit, plan.limit_base)
        options = []
        for other in catalog:
            if other.plan_id == plan.plan_id or other.limit_base is None:
                continue
            if not covered <= _units(other.limit_base, unit) < limit:
                continue
            cost = _monthly_cost(other.model, need, unit, other.limit_base)
            options.append((current - cost, other, cost))
        if not options:
            return None
        # the largest saving; on a tie the plan with the smallest id, so the answer is stable
        saving, target, cost = min(options, key=lambda o: (-o[0], o[1].plan_id))
        return self.make(
            history,
            "RESIZE_RESOURCE",
            saving,
            direction="down",
            target=target.plan_id,
            effort="LOW",
            description=(
                f"{history.resource_key}: the 95th percentile of its daily usage needs "
                f"{_text(need)} {unit} a month against a {_text(limit)} {unit} limit; "
                f"plan {target.plan_id} ({_text(_units(target.limit_base or 0, unit))} {unit}) "
                f"covers it for {self.money.round(saving)} {self.money.currency} less a month"
            ),
            evidence={
                "days": str(len(window)),
                "p95DailyUsage": _text(p95_day),
                "monthlyNeed": _text(need),
                "currentLimit": _text(limit),
                "targetLimit": _text(_units(target.limit_base or 0, unit)),
                "requiredWithHeadroom": _text(covered),
                "currentMonthlyCost": str(self.money.round(current)),
                "targetMonthlyCost": str(self.money.round(cost)),
                "fromPlan": plan.plan_id,
                "unit": unit,
            },
        )

    def up(self, history: ResourceHistory, catalog: Sequence[Plan]) -> Recommendation | None:
        plan, unit = history.plan, history.unit
        if plan.limit_base is None or not history.periods:
            return None
        limit = _units(plan.limit_base, unit)
        larger = [
            other
            for other in catalog
            if other.plan_id != plan.plan_id
            and (other.limit_base is None or _units(other.limit_base, unit) > limit)
            and other.model.base_cost > plan.model.base_cost
        ]
        if not larger:
            return None
        step_plan = min(larger, key=lambda other: (other.model.base_cost, other.plan_id))
        usages = [_units(base, unit) for base in history.periods]
        n = len(usages)
        current = sum(
            (_monthly_cost(plan.model, u, unit, plan.limit_base) for u in usages), Fraction()
        )
        base = Fraction(plan.model.base_cost) * n
        overage = (current - base) / n
        step = Fraction(step_plan.model.base_cost - plan.model.base_cost)
        if overage <= step:
            return None
        target = sum(
            (_monthly_cost(step_plan.model, u, unit, step_plan.limit_base) for u in usages),
            Fraction(),
        )
        saving = (current - target) / n
        return self.make(
            history,
            "RESIZE_RESOURCE",
            saving,
            direction="up",
            target=step_plan.plan_id,
            effort="LOW",
            description=(
                f"{history.resource_key}: overage averaged {self.money.round(overage)} "
                f"{self.money.currency} a month over the last {n} periods, more than the "
                f"{self.money.round(step)} step to plan {step_plan.plan_id}; moving up saves "
                f"{self.money.round(saving)} a month"
            ),
            evidence={
                "periods": str(n),
                "periodUsage": ",".join(_text(u) for u in usages),
                "currentLimit": _text(limit),
                "averageOverage": str(self.money.round(overage)),
                "priceStep": str(self.money.round(step)),
                "currentAverageCost": str(self.money.round(current / n)),
                "targetAverageCost": str(self.money.round(target / n)),
                "fromPlan": plan.plan_id,
                "unit": unit,
            },
        )

    def off_peak(
        self, history: ResourceHistory, window: Sequence[int], peak_window: Sequence[int]
    ) -> Recommendation | None:
        plan, unit = history.plan, history.unit
        tariff = plan.model.usage
        if not isinstance(tariff, TimeOfUse) or tariff.peak_price <= tariff.off_peak_price:
            return None
        total, peak = sum(window), sum(peak_window)
        if total == 0 or Fraction(peak, total) < Fraction(self.settings.peak_share):
            return None
        moved = peak * Fraction(self.settings.off_peak_shift)
        moved_base = moved.numerator // moved.denominator  # whole base units
        current = price(
            plan.model, Volume(total, unit, peak), period=_MONTH, limit_base=plan.limit_base
        ).total
        shifted = price(
            plan.model,
            Volume(total, unit, peak - moved_base),
            period=_MONTH,
            limit_base=plan.limit_base,
        ).total
        saving = Fraction(current - shifted)
        share = Fraction(peak, total)
        return self.make(
            history,
            "SCHEDULE_OFF_PEAK",
            saving,
            effort="MEDIUM",
            description=(
                f"{history.resource_key}: {_text(share * 100)} % of its usage over "
                f"{len(window)} days is in the peak hours {tariff.window} at "
                f"{tariff.peak_price} per {unit} (off-peak {tariff.off_peak_price}); moving "
                f"{_text(_units(moved_base, unit))} {unit} a month to off-peak hours saves "
                f"{self.money.round(saving)} {self.money.currency} a month"
            ),
            evidence={
                "days": str(len(window)),
                "usage": _text(_units(total, unit)),
                "peakUsage": _text(_units(peak, unit)),
                "peakShare": _text(share),
                "peakWindow": tariff.window,
                "peakPrice": str(tariff.peak_price),
                "offPeakPrice": str(tariff.off_peak_price),
                "shiftFraction": str(self.settings.off_peak_shift),
                "shiftedUsage": _text(_units(moved_base, unit)),
                "currentMonthlyCost": str(current),
                "shiftedMonthlyCost": str(shifted),
                "unit": unit,
            },
        )

    def compress(self, history: ResourceHistory, window: Sequence[int]) -> Recommendation | None:
        if history.kind != "level":
            return None
        plan, unit = history.plan, history.unit
        levels = [_units(base, unit) for base in window]
        slope, r2 = _fit(levels)
        if slope <= 0 or r2 < Fraction(self.settings.growth_r2):
            return None
        now = levels[-1]
        growth = slope * MONTH_DAYS
        projected = now + growth
        compressed = now + growth * (1 - Fraction(self.settings.compress_ratio))
        cost_now = _monthly_cost(plan.model, now, unit, plan.limit_base)
        cost_projected = _monthly_cost(plan.model, projected, unit, plan.limit_base)
        cost_compressed = _monthly_cost(plan.model, compressed, unit, plan.limit_base)
        return self.make(
            history,
            "COMPRESS_DATA",
            cost_projected - cost_compressed,
            effort="MEDIUM",
            description=(
                f"{history.resource_key} grows {_text(slope)} {unit} a day; in "
                f"{MONTH_DAYS} days it costs {self.money.round(cost_projected - cost_now)} "
                f"{self.money.currency} more a month; compressing new data saves "
                f"{self.money.round(cost_projected - cost_compressed)}"
            ),
            evidence={
                "days": str(len(window)),
                "slopePerDay": _text(slope),
                "r2": _text(r2),
                "currentLevel": _text(now),
                "projectedLevel": _text(projected),
                "compressedLevel": _text(compressed),
                "currentMonthlyCost": str(self.money.round(cost_now)),
                "projectedMonthlyCost": str(self.money.round(cost_projected)),
                "growthCost": str(self.money.round(cost_projected - cost_now)),
                "compressRatio": str(self.settings.compress_ratio),
                "unit": unit,
            },
        )


def _fit(values: Sequence[Fraction]) -> tuple[Fraction, Fraction]:
    """Least-squares slope per step and R^2 of ``values`` against 0, 1, 2, ... (exact)."""
    n = len(values)
    mean_x = Fraction(n - 1, 2)
    mean_y = sum(values, Fraction()) / n
    sxx = sum(((x - mean_x) ** 2 for x in range(n)), Fraction())
    sxy = sum(((x - mean_x) * (y - mean_y) for x, y in enumerate(values)), Fraction())
    syy = sum(((y - mean_y) ** 2 for y in values), Fraction())
    slope = sxy / sxx
    r2 = Fraction(1) if syy == 0 else sxy * sxy / (sxx * syy)
    return slope, r2


def _time_of_use(engine: _Engine, history: ResourceHistory) -> list[Recommendation]:
    """A timeOfUse plan: off-peak advice from the daily peak usage (the volume rules
    price a usage without its hours, which such a plan cannot bill)."""
    days = engine.settings.window_days
    peak = history.peak_daily
    if peak is None or len(peak) != len(history.daily):
        raise PricingError(
            "peakDaily",
            "a timeOfUse plan needs the peak-hour usage of each day of the daily history",
        )
    for index, (value, total) in enumerate(zip(peak, history.daily, strict=True)):
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= total:
            raise PricingError(f"peakDaily[{index}]", f"{value!r} is not from 0 to {total}")
    if history.kind != "delta" or len(history.daily) < days:
        return []
    found = engine.off_peak(history, list(history.daily[-days:]), list(peak[-days:]))
    return [] if found is None else [found]


def recommend(
    history: ResourceHistory,
    catalog: Sequence[Plan],
    *,
    settings: RecommendSettings | None = None,
    money: MoneyPolicy | None = None,
) -> list[Recommendation]:
    """The recommendations for one resource whose monthly savings reach ``min_savings``.

    ``catalog`` holds the plans the resource could move to (same resource type
    and unit; its own plan may be among them). Fewer than ``window_days`` days
    of history give no recommendation based on daily usage. An idle resource
    is only told to go (not also to shrink); a 95th-percentile bandwidth plan
    is not resized (its bill is a rate, not a volume).
    """
    settings = settings or RecommendSettings()
    engine = _Engine(settings, money or MoneyPolicy())
    if (
        isinstance(history.plan.model.usage, Percentile95)
        or history.plan.model.billing_period != "monthly"
    ):
        return []
    for index, value in enumerate(history.daily):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise PricingError(f"daily[{index}]", f"{value!r} is not a whole count >= 0")
    if isinstance(history.plan.model.usage, TimeOfUse):
        return _time_of_use(engine, history)
    volume_plans = [
        plan
        for plan in catalog
        if not isinstance(plan.model.usage, Percentile95 | TimeOfUse)
        and plan.model.billing_period == "monthly"
    ]
    down = compress = None
    window = list(history.daily[-settings.window_days :])
    if len(window) == settings.window_days:
        waste = engine.waste(history, window)
        if waste is not None:
            return [waste]
        down = engine.down(history, window, volume_plans)
        compress = engine.compress(history, window)
    up = engine.up(history, volume_plans) if down is None else None
    return [r for r in (down, up, compress) if r is not None]
