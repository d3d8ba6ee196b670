"""Billing periods and proration by the exact duration ratio.

One rule: a resource active for part of a billing period pays the period's
base cost times ``active time / period time``, both measured in milliseconds
of real elapsed time between UTC instants (so a month with a daylight-saving
change is 743 or 745 hours long, as the clock on the wall says). Usage is
billed as measured and the included quota, limit and tiers are not scaled:
they are what the plan promises for the period.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from fractions import Fraction
from typing import Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import msgspec

from .errors import PricingError
from .models import BillingPeriod
from .money import shown

__all__ = ["RULE", "Period", "Proration", "billing_period", "prorate"]

RULE: Final = "exact duration ratio: active milliseconds / period milliseconds"


class Period(msgspec.Struct, frozen=True, rename="camel", forbid_unknown_fields=True):
    """``[start_ms, end_ms)`` in milliseconds since the Unix epoch."""

    start_ms: int
    end_ms: int

    def __post_init__(self) -> None:
        for name, value in (("startMs", self.start_ms), ("endMs", self.end_ms)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise PricingError(name, f"{value!r} is not a millisecond timestamp")
        if self.end_ms <= self.start_ms:
            raise PricingError("endMs", f"{self.end_ms} is not after startMs {self.start_ms}")

    @property
    def duration_ms(self) -> int:
        return self.end_ms - self.start_ms


_EPOCH: Final = datetime(1970, 1, 1, tzinfo=ZoneInfo("UTC"))


def _ms(moment: datetime) -> int:
    return (moment - _EPOCH) // timedelta(milliseconds=1)


def billing_period(at_ms: int, period: BillingPeriod, tz: str = "UTC") -> Period:
    """The monthly or yearly billing period that contains ``at_ms``.

    Periods start at local midnight on the 1st of the month (or of January) in ``tz``.
    """
    try:
        zone = ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        raise PricingError("tz", f"{tz!r} is not a known IANA time zone") from None
    if at_ms < 0:
        raise PricingError("atMs", f"{at_ms} is before the epoch")
    local = (_EPOCH + timedelta(milliseconds=at_ms)).astimezone(zone)
    if period == "monthly":
        start = local.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
        year, month = (start.year + 1, 1) if start.month == 12 else (start.year, start.month + 1)
        end = start.replace(year=year, month=month)
    elif period == "yearly":
        start = local.replace(month=1, day=1, hour=0, minute=0, second=0, microsecond=0)
        end = start.replace(year=start.year + 1)
    else:
        raise PricingError("billingPeriod", f"{period!r} is not monthly or yearly")
    # replace() keeps the wall clock; the UTC offset is that of each new instant
    return Period(_ms(start), _ms(end))


class Proration(msgspec.Struct, frozen=True, rename="camel"):
    """How much of the billing period a resource was active, shown on the breakdown."""

    period: Period
    active: Period
    active_ms: int
    period_ms: int
    #: ``active_ms / period_ms`` (to 12 places when it has no finite decimal form)
    ratio: Decimal
    rule: str = RULE

    @property
    def exact_ratio(self) -> Fraction:
        return Fraction(self.active_ms, self.period_ms)


def prorate(period: Period, active: Period | None) -> Proration | None:
    """The proration of ``active`` within ``period``; ``None`` when it covers all of it.

    ``active`` is clipped to the period; one entirely outside it is refused.
    """
    if active is None:
        return None
    start = max(period.start_ms, active.start_ms)
    end = min(period.end_ms, active.end_ms)
    if end <= start:
        raise PricingError(
            "active",
            f"[{active.start_ms}, {active.end_ms}) does not overlap the billing "
            f"period [{period.start_ms}, {period.end_ms})",
        )
    if start == period.start_ms and end == period.end_ms:
        return None
    clipped = Period(start, end)
    ratio = Fraction(clipped.duration_ms, period.duration_ms)
    return Proration(
        period=period,
        active=clipped,
        active_ms=clipped.duration_ms,
        period_ms=period.duration_ms,
        ratio=shown(ratio),
    )
