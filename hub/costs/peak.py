"""Peak and off-peak usage: hour buckets split by the tariff's peak window.

A :class:`~.models.TimeOfUse` model prices the usage of the peak hours and of
the other hours apart. :func:`split_hours` sums a period's hour buckets (each
``(start in epoch ms, usage in base units)``) into the two parts: a bucket
belongs to the local hour, in the billing time zone, in which it starts. With
the hub's hour buckets (aligned to UTC hours) in a zone whose offset is whole
hours, every bucket is one local hour, summer time included (a 06:00 UTC
bucket is 08:00 in Berlin in July and 07:00 in January).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from zoneinfo import ZoneInfo

import msgspec

from .errors import PricingError
from .models import TimeOfUse

__all__ = ["PeakSplit", "split_hours"]


class PeakSplit(msgspec.Struct, frozen=True, rename="camel"):
    """A period's usage in base units, in the peak hours and in the others."""

    peak_base: int
    off_peak_base: int
    #: hour buckets summed
    hours: int

    @property
    def base(self) -> int:
        return self.peak_base + self.off_peak_base


def split_hours(buckets: Sequence[tuple[int, int]], tariff: TimeOfUse, tz: str) -> PeakSplit:
    """Sum ``buckets`` into the peak and off-peak usage of ``tariff`` in the zone ``tz``."""
    zone = ZoneInfo(tz)
    peak = off = 0
    for index, (start_ms, base) in enumerate(buckets):
        if isinstance(base, bool) or not isinstance(base, int) or base < 0:
            raise PricingError(f"hours[{index}]", f"{base!r} is not a whole count >= 0")
        hour = dt.datetime.fromtimestamp(start_ms / 1000, tz=zone).hour
        if tariff.is_peak(hour):
            peak += base
        else:
            off += base
    return PeakSplit(peak_base=peak, off_peak_base=off, hours=len(buckets))
