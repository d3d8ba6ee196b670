"""Counter delta math: exact deltas across wraps; reboots, jumps and failures are gaps."""

from __future__ import annotations

import itertools
from typing import Literal, cast

import msgspec
from hypothesis import given
from hypothesis import strategies as st

from edge_agent.delta import (
    CounterReading,
    Delta,
    Gap,
    Track,
    advance,
    compute_delta,
    fail,
    max_plausible_bytes,
)

T0 = 1_700_000_000_000


def reading(
    value: int | None,
    *,
    at_s: float,
    uptime_cs: int | None = None,
    width: Literal[32, 64] = 64,
    speed: int | None = None,
) -> CounterReading:
    return CounterReading(
        value=value,
        width=width,
        uptime_cs=int(at_s * 100) + 1000 if uptime_cs is None else uptime_cs,
        at_ms=T0 + int(at_s * 1000),
        high_speed_mbps=speed,
    )


def test_first_sample_yields_no_delta() -> None:
    track, outcome = advance(Track(), reading(100, at_s=0))
    assert outcome is None
    assert track.baseline is not None


def test_a_plain_increase_is_the_delta() -> None:
    assert compute_delta(reading(100, at_s=0), reading(350, at_s=60)) == Delta(250, T0, T0 + 60_000)


def test_counter32_wrap_yields_positive_delta() -> None:
    prev = reading(2**32 - 100, at_s=0, width=32)
    cur = reading(50, at_s=60, width=32)
    assert compute_delta(prev, cur) == Delta(150, T0, T0 + 60_000)


def test_counter64_wrap_yields_positive_delta() -> None:
    outcome = compute_delta(reading(2**64 - 1, at_s=0), reading(9, at_s=60))
    assert outcome == Delta(10, T0, T0 + 60_000)


def test_sysuptime_going_back_is_a_reboot_gap() -> None:
    outcome = compute_delta(
        reading(10_000, at_s=0, uptime_cs=500_000), reading(20_000, at_s=60, uptime_cs=300)
    )
    assert isinstance(outcome, Gap)
    assert outcome.reason == "reboot"


def test_sysuptime_wrapping_after_497_days_is_not_a_reboot() -> None:
    prev = reading(1000, at_s=0, uptime_cs=2**32 - 3000)
    cur = reading(2000, at_s=60, uptime_cs=3000)
    assert compute_delta(prev, cur) == Delta(1000, T0, T0 + 60_000)


def test_a_delta_beyond_line_rate_is_an_over_speed_gap() -> None:
    # 10 Mbit/s for 60 s is 75 MB; 10 GB cannot have happened
    outcome = compute_delta(reading(0, at_s=0, speed=10), reading(10**10, at_s=60, speed=10))
    assert isinstance(outcome, Gap)
    assert outcome.reason == "over_speed"


def test_a_delta_at_line_rate_is_accepted() -> None:
    full = 10 * 1_000_000 * 60 // 8
    assert compute_delta(reading(0, at_s=0, speed=10), reading(full, at_s=60, speed=10)) == Delta(
        full, T0, T0 + 60_000
    )


def test_unknown_speed_disables_the_over_speed_check() -> None:
    assert isinstance(compute_delta(reading(0, at_s=0, speed=0), reading(10**15, at_s=60)), Delta)


def test_a_counter32_that_may_have_wrapped_twice_is_a_gap_not_a_guess() -> None:
    # 10 Gbit/s fills 2^32 bytes in ~3.4 s
    prev = reading(100, at_s=0, width=32, speed=10_000)
    outcome = compute_delta(prev, reading(50, at_s=60, width=32, speed=10_000))
    assert isinstance(outcome, Gap)
    assert outcome.reason == "discontinuity"
    assert compute_delta(prev, reading(10**9, at_s=1, width=32, speed=10_000)) == Delta(
        10**9 - 100, T0, T0 + 1000
    )


def test_a_counter_width_change_is_a_discontinuity() -> None:
    outcome = compute_delta(reading(5, at_s=0, width=32), reading(10, at_s=60, width=64))
    assert isinstance(outcome, Gap)
    assert outcome.reason == "discontinuity"


def test_a_changed_if_counter_discontinuity_time_is_a_discontinuity_gap() -> None:
    prev = msgspec.structs.replace(reading(1000, at_s=0), discontinuity_cs=500)
    same = msgspec.structs.replace(reading(2000, at_s=60), discontinuity_cs=500)
    moved = msgspec.structs.replace(reading(10, at_s=60), discontinuity_cs=5900)
    assert compute_delta(prev, same) == Delta(1000, T0, T0 + 60_000)
    gap = compute_delta(prev, moved)
    assert isinstance(gap, Gap)
    assert gap.reason == "discontinuity"
    assert "ifCounterDiscontinuityTime" in gap.detail


def test_a_router_without_if_counter_discontinuity_time_is_not_a_discontinuity() -> None:
    prev = msgspec.structs.replace(reading(1000, at_s=0), discontinuity_cs=None)
    cur = msgspec.structs.replace(reading(2000, at_s=60), discontinuity_cs=77)
    assert compute_delta(prev, cur) == Delta(1000, T0, T0 + 60_000)


def test_a_missing_counter_is_a_gap_not_zero() -> None:
    track, _ = advance(Track(), reading(100, at_s=0))
    track, outcome = advance(track, reading(None, at_s=60))
    assert outcome == Gap("counter_missing", T0, T0 + 60_000, outcome.detail)  # type: ignore[union-attr]
    # and the next good sample has no baseline to subtract from: another gap, then deltas
    track, outcome = advance(track, reading(300, at_s=120))
    assert isinstance(outcome, Gap)
    assert outcome.reason == "counter_missing"
    track, outcome = advance(track, reading(400, at_s=180))
    assert outcome == Delta(100, T0 + 120_000, T0 + 180_000)


def test_a_failed_poll_is_a_gap_never_zero() -> None:
    track, _ = advance(Track(), reading(100, at_s=0))
    track, gap = fail(track, T0 + 60_000, detail="timeout")
    assert gap == Gap("poll_failed", T0, T0 + 60_000, "timeout")
    track, outcome = advance(track, reading(500, at_s=120))
    assert isinstance(outcome, Gap)
    assert outcome.reason == "poll_failed"
    assert (outcome.start_ms, outcome.end_ms) == (T0 + 60_000, T0 + 120_000)


def test_a_failure_before_any_sample_reports_nothing() -> None:
    track, gap = fail(Track(), T0)
    assert gap is None
    assert advance(track, reading(1, at_s=1))[1] is None


def test_a_sample_from_the_past_is_ignored() -> None:
    track, _ = advance(Track(), reading(100, at_s=60))
    same, outcome = advance(track, reading(50, at_s=30))
    assert outcome is None
    assert same == track


def test_max_plausible_bytes_is_line_rate_plus_tolerance() -> None:
    assert max_plausible_bytes(8, 1000) > 1_000_000
    assert max_plausible_bytes(8, 1000) < 3_000_000


# -- properties ----------------------------------------------------------------------------

widths = st.sampled_from([32, 64])


@st.composite
def clean_series(draw: st.DrawFn) -> tuple[int, list[CounterReading], list[int]]:
    """A counter series with wraps but no discontinuity; increments stay under line rate."""
    width = cast(Literal[32, 64], draw(widths))
    # a Counter32 on a faster link could wrap twice within a step: that is a gap (tested below)
    speed = draw(st.sampled_from([None, 0, 100] if width == 32 else [None, 0, 100, 10_000]))
    start = draw(st.integers(0, 2**width - 1))
    steps = draw(st.lists(st.integers(1, 300_000), min_size=1, max_size=40))  # ms between polls
    uptime = draw(st.integers(0, 2**31))
    at_ms, value = T0, start
    series = [CounterReading(value, width, uptime, at_ms, speed)]
    increments = []
    for step in steps:
        limit = 2**width - 1
        if speed:
            limit = min(limit, speed * 1_000_000 * step // 8000)
        inc = draw(st.integers(0, limit))
        increments.append(inc)
        at_ms += step
        uptime += step // 10
        value = (value + inc) % 2**width
        series.append(CounterReading(value, width, uptime, at_ms, speed))
    return width, series, increments


@given(clean_series())
def test_deltas_of_a_clean_series_sum_to_last_minus_first_modulo_the_width(
    case: tuple[int, list[CounterReading], list[int]],
) -> None:
    width, series, increments = case
    track = Track()
    deltas = []
    for sample in series:
        track, outcome = advance(track, sample)
        if outcome is not None:
            assert isinstance(outcome, Delta), outcome
            deltas.append(outcome)
    assert sum(d.value for d in deltas) % 2**width == (
        (series[-1].value or 0) - (series[0].value or 0)
    ) % (2**width)
    assert [d.value for d in deltas] == increments
    # the intervals tile the timeline: each starts where the previous ended
    assert all(a.end_ms == b.start_ms for a, b in itertools.pairwise(deltas))


@given(
    st.integers(0, 2**64 - 1),
    st.integers(0, 2**64 - 1),
    st.integers(1, 2**31),  # far from sysUpTime's own wrap at 2^32 (497 days)
    st.integers(0, 2**32 - 1),
    st.integers(1, 600_000),
)
def test_a_reboot_never_yields_a_delta(
    v0: int, v1: int, up0: int, up1_raw: int, step_ms: int
) -> None:
    up1 = up1_raw % up0  # uptime went back
    prev = CounterReading(v0, 64, up0, T0, None)
    cur = CounterReading(v1, 64, up1, T0 + step_ms, None)
    outcome = compute_delta(prev, cur)
    assert isinstance(outcome, Gap)
    assert outcome.reason == "reboot"


@given(
    st.lists(st.one_of(st.none(), st.integers(0, 2**64 - 1)), min_size=1, max_size=30),
    st.lists(st.booleans(), min_size=30, max_size=30),
)
def test_failed_polls_are_gaps_and_the_timeline_has_no_holes_or_overlaps(
    values: list[int | None], failures: list[bool]
) -> None:
    track = Track()
    outcomes: list[Delta | Gap] = []
    for i, value in enumerate(values):
        at_ms = T0 + (i + 1) * 60_000
        if failures[i]:
            track, gap = fail(track, at_ms)
            if gap is not None:
                assert gap.reason == "poll_failed"
                outcomes.append(gap)
            continue
        track, outcome = advance(track, CounterReading(value, 64, (i + 1) * 6000, at_ms, None))
        if outcome is not None:
            outcomes.append(outcome)
        if value is None and outcome is not None:
            assert isinstance(outcome, Gap)
    for prev, cur in itertools.pairwise(outcomes):
        assert prev.end_ms == cur.start_ms
    for i, outcome in enumerate(outcomes):
        if isinstance(outcome, Delta):
            # a delta never spans a failed poll or a missing counter
            assert outcome.end_ms - outcome.start_ms == 60_000, i
