"""95th-percentile bandwidth: the rate an ISP bills transit on.

The billing period is cut into 5-minute windows aligned to the epoch (and so to
every period boundary, which must fall on one). Samples carry the bytes one
interface moved in one direction over ``[start_ms, end_ms)``:

1. Identical samples (same interface, direction, span and bytes) count once; the
   same span with different bytes, or two samples that overlap, is refused.
2. A sample that moved more than its interface's speed allows over its own span
   (``bytes * 8 > speed_bps * seconds``) is a counter glitch, not a burst: it is
   left out and reported as an ``over_speed`` gap. Time with no sample at all
   is reported as a ``no_data`` gap. Neither is billed.
3. Each sample's bytes go to the windows it covers, in proportion to time (a
   sample inside one window goes to it whole, so splitting a window's bytes
   over several samples changes nothing). Windows are summed across every
   interface of the bill, per direction.
4. The rate of a window is ``bytes * 8 / 300`` bit/s. The windows that have any
   data are ranked ascending and the 95th percentile is the one at the
   1-based nearest rank ``ceil(0.95 * n)``. Windows with no data are not ranked.

Direction modes: ``max_of_directions`` ranks in and out separately and bills the
larger 95th; ``sum_of_directions`` ranks in+out per window;
``max_per_window`` ranks max(in, out) per window.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Iterable, Sequence
from decimal import Decimal
from fractions import Fraction
from typing import Final, Literal, NoReturn, get_args

import msgspec

from .errors import PricingError
from .models import DirectionMode
from .money import shown
from .proration import Period

__all__ = [
    "WINDOW_MS",
    "Gap",
    "RateMeasure",
    "Sample",
    "measure_rate",
    "nearest_rank",
]

WINDOW_MS: Final = 300_000
Direction = Literal["in", "out"]
#: a window's bytes: whole, or a rational share of a sample that spans windows
Bytes = int | Fraction
DIRECTIONS: Final[tuple[Direction, Direction]] = ("in", "out")


class Sample(msgspec.Struct, frozen=True, rename="camel", forbid_unknown_fields=True):
    """Bytes one interface moved in one direction over ``[start_ms, end_ms)``."""

    interface: str
    direction: Direction
    start_ms: int
    end_ms: int
    bytes: int
    #: the interface's speed, bit/s (None: unknown, no plausibility check)
    speed_bps: int | None = None


class Gap(msgspec.Struct, frozen=True, rename="camel"):
    """Time of one interface and direction that is not billed, and why."""

    interface: str
    direction: Direction
    start_ms: int
    end_ms: int
    reason: Literal["no_data", "over_speed"]


class RateMeasure(msgspec.Struct, frozen=True, rename="camel"):
    """The billed 95th-percentile rate of a period and how it was reached."""

    mode: DirectionMode
    #: the span measured: the billing period, or the part of it the resource was active
    period: Period
    #: 5-minute windows in the period, and how many of them had data (n)
    windows: int
    ranked: int
    #: the 1-based nearest rank ceil(0.95 n); 0 when no window had data
    rank: int
    #: the billed rate, bit/s (12 places when it has no finite decimal form) ...
    rate_bps: Decimal
    #: ... and exactly, as (numerator, denominator)
    rate_exact: tuple[int, int]
    #: start of the window at that rank (None when no window had data)
    window_start_ms: int | None
    #: each direction's own 95th, bit/s (what max_of_directions bills the larger of)
    per_direction: dict[str, Decimal]
    samples: int
    duplicates: int
    #: samples wholly outside the period (ignored)
    outside: int
    gaps: list[Gap]

    @property
    def rate_mbps(self) -> Fraction:
        return Fraction(*self.rate_exact) / 10**6


def nearest_rank(count: int) -> int:
    """The 1-based nearest rank of the 95th percentile of ``count`` values: ceil(0.95 n)."""
    return -(-95 * count // 100)


def _plausible(sample: object) -> bool:
    """The fast test of a sample; :func:`_refuse` names the fault of one that fails it."""
    return (
        type(sample) is Sample
        and type(sample.start_ms) is int
        and type(sample.end_ms) is int
        and type(sample.bytes) is int
        and 0 <= sample.start_ms < sample.end_ms
        and sample.bytes >= 0
        and sample.direction in DIRECTIONS
        and type(sample.interface) is str
        and sample.interface != ""
        and (sample.speed_bps is None or (type(sample.speed_bps) is int and sample.speed_bps > 0))
    )


def _refuse(sample: object, where: str) -> NoReturn:
    if not isinstance(sample, Sample):
        raise PricingError(where, f"{type(sample).__name__} is not a Sample")
    for name, value in (
        ("startMs", sample.start_ms),
        ("endMs", sample.end_ms),
        ("bytes", sample.bytes),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise PricingError(f"{where}.{name}", f"{value!r} is not a whole number >= 0")
    if sample.end_ms <= sample.start_ms:
        raise PricingError(f"{where}.endMs", f"{sample.end_ms} is not after {sample.start_ms}")
    if sample.direction not in DIRECTIONS:
        raise PricingError(f"{where}.direction", f"{sample.direction!r} is not in or out")
    if not isinstance(sample.interface, str) or not sample.interface:
        raise PricingError(f"{where}.interface", "is empty")
    speed = sample.speed_bps
    if speed is not None and (isinstance(speed, bool) or not isinstance(speed, int) or speed <= 0):
        raise PricingError(f"{where}.speedBps", f"{speed!r} is not a speed above zero")
    raise PricingError(where, f"{sample!r} is not a usable sample")  # pragma: no cover


def _distinct(samples: Sequence[Sample]) -> tuple[list[Sample], int]:
    """The samples with exact duplicates dropped, and how many were; conflicts refused."""
    by_series: dict[tuple[str, str], list[tuple[int, Sample]]] = defaultdict(list)
    for index, sample in enumerate(samples):
        if not _plausible(sample):
            _refuse(sample, f"samples[{index}]")
        by_series[sample.interface, sample.direction].append((index, sample))
    kept: list[Sample] = []
    duplicates = 0
    for series in by_series.values():
        series.sort(key=lambda item: (item[1].start_ms, item[1].end_ms))
        last: tuple[int, Sample] | None = None
        for index, sample in series:
            if last is not None:
                first, previous = last
                same_span = (previous.start_ms, previous.end_ms) == (sample.start_ms, sample.end_ms)
                if same_span and previous.bytes == sample.bytes:
                    duplicates += 1
                    continue
                if same_span or sample.start_ms < previous.end_ms:
                    what = "the same span with other bytes" if same_span else "overlapping spans"
                    raise PricingError(
                        f"samples[{index}]",
                        f"{sample.interface} {sample.direction} [{sample.start_ms}, "
                        f"{sample.end_ms}) and samples[{first}] have {what}",
                    )
            kept.append(sample)
            last = (index, sample)
    return kept, duplicates


def _uncovered(spans: Iterable[tuple[int, int]], period: Period) -> list[tuple[int, int]]:
    holes: list[tuple[int, int]] = []
    cursor = period.start_ms
    for start, end in sorted(spans):
        if start > cursor:
            holes.append((cursor, start))
        cursor = max(cursor, end)
    if cursor < period.end_ms:
        holes.append((cursor, period.end_ms))
    return holes


def _ranked(values: dict[int, Bytes]) -> tuple[int, int, Bytes, int | None]:
    """(n, rank, bytes at that rank, its window) of one series of window byte counts."""
    ordered = sorted(values.items(), key=lambda item: (item[1], item[0]))
    rank = nearest_rank(len(ordered))
    if rank == 0:
        return 0, 0, 0, None
    window, amount = ordered[rank - 1]
    return len(ordered), rank, amount, window


def _merge(whole: dict[int, int], shared: dict[int, Fraction]) -> dict[int, Bytes]:
    """Each window's bytes: an int, or a rational where a shared sample added to it."""
    merged: dict[int, Bytes] = dict(whole)
    for window, part in shared.items():
        merged[window] = merged.get(window, 0) + part
    return merged


def _bps(window_bytes: Bytes) -> Fraction:
    return Fraction(window_bytes) * 8 * 1000 / WINDOW_MS


def measure_rate(
    samples: Sequence[Sample],
    period: Period,
    mode: DirectionMode,
    interfaces: Collection[str] | None = None,
) -> RateMeasure:
    """The billed 95th-percentile rate of ``samples`` over ``period``, in ``mode``.

    ``interfaces`` names every interface of the bill, so one that sent nothing
    is reported as a gap; without it, the interfaces seen in ``samples``.
    """
    if mode not in get_args(DirectionMode):
        raise PricingError("mode", f"{mode!r} is not one of {', '.join(get_args(DirectionMode))}")
    for name, bound in (("startMs", period.start_ms), ("endMs", period.end_ms)):
        if bound % WINDOW_MS:
            raise PricingError(f"period.{name}", f"{bound} is not on a 5-minute boundary")
    kept, duplicates = _distinct(samples)
    names = set(interfaces) if interfaces is not None else {s.interface for s in kept}
    # integers while a window's bytes come whole; a rational only where a sample is shared
    whole: dict[Direction, dict[int, int]] = {d: defaultdict(int) for d in DIRECTIONS}
    shared: dict[Direction, dict[int, Fraction]] = {d: defaultdict(Fraction) for d in DIRECTIONS}
    seen: dict[tuple[str, Direction], list[tuple[int, int]]] = defaultdict(list)
    gaps: list[Gap] = []
    outside = 0
    for sample in kept:
        if sample.interface not in names:
            raise PricingError("samples", f"interface {sample.interface!r} is not on this bill")
        start, end = max(sample.start_ms, period.start_ms), min(sample.end_ms, period.end_ms)
        if end <= start:
            outside += 1
            continue
        seen[sample.interface, sample.direction].append((start, end))
        duration = sample.end_ms - sample.start_ms
        speed = sample.speed_bps
        if speed is not None and sample.bytes * 8 * 1000 > speed * duration:
            gaps.append(Gap(sample.interface, sample.direction, start, end, "over_speed"))
            continue
        first = start - start % WINDOW_MS
        if sample.start_ms >= first and sample.end_ms <= first + WINDOW_MS:
            whole[sample.direction][first] += sample.bytes  # inside one window: all of it
            continue
        for window in range(first, end, WINDOW_MS):  # across windows: shared by time
            overlap = min(end, window + WINDOW_MS) - max(start, window)
            shared[sample.direction][window] += Fraction(sample.bytes * overlap, duration)
    for interface in sorted(names):
        for direction in DIRECTIONS:
            for start, end in _uncovered(seen[interface, direction], period):
                gaps.append(Gap(interface, direction, start, end, "no_data"))
    gaps.sort(key=lambda gap: (gap.start_ms, gap.interface, gap.direction))

    windows = {d: _merge(whole[d], shared[d]) for d in DIRECTIONS}
    results = {d: _ranked(windows[d]) for d in DIRECTIONS}
    per_direction: dict[str, Decimal] = {d: shown(_bps(results[d][2])) for d in DIRECTIONS}
    if mode == "max_of_directions":
        n, rank, amount, chosen = max(results.values(), key=lambda result: result[2])
    else:
        inbound, outbound = windows["in"], windows["out"]
        merged = {
            w: (
                inbound.get(w, 0) + outbound.get(w, 0)
                if mode == "sum_of_directions"
                else max(inbound.get(w, 0), outbound.get(w, 0))
            )
            for w in inbound.keys() | outbound.keys()
        }
        n, rank, amount, chosen = _ranked(merged)
    rate = _bps(amount)
    return RateMeasure(
        mode=mode,
        period=period,
        windows=period.duration_ms // WINDOW_MS,
        ranked=n,
        rank=rank,
        rate_bps=shown(rate),
        rate_exact=(rate.numerator, rate.denominator),
        window_start_ms=chosen,
        per_direction=per_direction,
        samples=len(samples),
        duplicates=duplicates,
        outside=outside,
        gaps=gaps,
    )
