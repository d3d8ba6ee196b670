"""Counter delta math: exact deltas across wraps and failed polls; reboots and jumps are gaps."""

from __future__ import annotations

import itertools
from typing import Literal, cast

import msgspec
from hypothesis import given
from hypothesis import strategies as st

from edge_agent.delta import (
    UPTIME_SLACK_MS,
    CounterReading,
    Delta,
    Gap,
    Track,
    advance,
    compute_delta,
    fail,
    max_plausible_bytes,
    uptime_continuous,
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


def test_a_failed_poll_keeps_the_baseline_and_the_next_sample_bridges_it_exactly() -> None:
    track, _ = advance(Track(), reading(100, at_s=0))
    failed, gap = fail(track, T0 + 60_000, detail="timeout")
    assert gap is None  # nothing at failure time: no hole, no overlap, no guess
    assert failed.baseline == track.baseline
    assert failed.last_end_ms == T0
    failed, gap = fail(failed, T0 + 120_000, detail="timeout")
    assert gap is None
    _, outcome = advance(failed, reading(500, at_s=180))
    assert outcome == Delta(400, T0, T0 + 180_000)


def test_a_failure_before_any_sample_reports_nothing() -> None:
    track, gap = fail(Track(), T0)
    assert gap is None
    assert advance(track, reading(1, at_s=1))[1] is None


def test_a_reboot_during_an_outage_is_a_reboot_gap_over_the_whole_span() -> None:
    track, _ = advance(Track(), reading(10_000, at_s=0, uptime_cs=500_000))
    track, _ = fail(track, T0 + 60_000)
    track, outcome = advance(track, reading(20, at_s=120, uptime_cs=3000))
    assert isinstance(outcome, Gap)
    assert (outcome.reason, outcome.start_ms, outcome.end_ms) == ("reboot", T0, T0 + 120_000)


def test_a_reboot_during_a_long_outage_is_caught_even_when_sysuptime_grew() -> None:
    # up 10 min at the last sample; dead for an hour, rebooted 30 min ago: sysUpTime is
    # larger than before, but shorter than the span, so the counters restarted
    track, _ = advance(Track(), reading(10**12, at_s=0, uptime_cs=60_000))
    for minute in range(1, 60):
        track, gap = fail(track, T0 + minute * 60_000)
        assert gap is None
    track, outcome = advance(track, reading(10**12 + 5, at_s=3600, uptime_cs=180_000))
    assert isinstance(outcome, Gap)
    assert (outcome.reason, outcome.start_ms, outcome.end_ms) == ("reboot", T0, T0 + 3_600_000)
    # and the following interval is exact again
    _, outcome = advance(track, reading(10**12 + 50, at_s=3660, uptime_cs=186_000))
    assert outcome == Delta(45, T0 + 3_600_000, T0 + 3_660_000)


def test_uptime_continuous_needs_the_router_up_for_the_whole_span() -> None:
    assert uptime_continuous(60_000, T0, 60_000 + 6000, T0 + 60_000)
    assert uptime_continuous(0, T0, 6000, T0 + 60_000)  # booted right before the last sample
    assert not uptime_continuous(60_000, T0, 180_000, T0 + 3_600_000)
    assert not uptime_continuous(500_000, T0, 300, T0 + 60_000)
    assert uptime_continuous(2**32 - 3000, T0, 3000, T0 + 60_000)  # its own 497-day wrap


def test_a_discontinuity_during_an_outage_is_a_gap_over_the_whole_span() -> None:
    prev = msgspec.structs.replace(reading(1000, at_s=0), discontinuity_cs=500)
    track, _ = advance(Track(), prev)
    track, _ = fail(track, T0 + 60_000)
    moved = msgspec.structs.replace(reading(10, at_s=120), discontinuity_cs=9000)
    _, outcome = advance(track, moved)
    assert isinstance(outcome, Gap)
    assert (outcome.reason, outcome.start_ms, outcome.end_ms) == ("discontinuity", T0, T0 + 120_000)


def test_the_over_speed_check_of_a_bridged_span_uses_its_whole_length() -> None:
    # 10 Mbit/s: two minutes at line rate is fine across a failed poll, three minutes' worth is not
    full = 10 * 1_000_000 * 120 // 8
    track, _ = advance(Track(), reading(0, at_s=0, speed=10))
    track, _ = fail(track, T0 + 60_000)
    _, outcome = advance(track, reading(full, at_s=120, speed=10))
    assert outcome == Delta(full, T0, T0 + 120_000)
    _, outcome = advance(track, reading(full * 3 // 2, at_s=120, speed=10))
    assert isinstance(outcome, Gap)
    assert (outcome.reason, outcome.start_ms, outcome.end_ms) == ("over_speed", T0, T0 + 120_000)


def test_a_counter32_that_may_have_wrapped_twice_during_an_outage_is_a_gap() -> None:
    # 100 Mbit/s fills 2^32 bytes in ~5.7 min: one failed poll at 3 min is bridged, five are not
    track, _ = advance(Track(), reading(2**32 - 100, at_s=0, width=32, speed=100))
    short, _ = fail(track, T0 + 90_000)
    _, outcome = advance(short, reading(900, at_s=180, width=32, speed=100))
    assert outcome == Delta(1000, T0, T0 + 180_000)
    long = track
    for i in range(1, 6):
        long, _ = fail(long, T0 + i * 60_000)
    _, outcome = advance(long, reading(900, at_s=360, width=32, speed=100))
    assert isinstance(outcome, Gap)
    assert (outcome.reason, outcome.start_ms, outcome.end_ms) == ("discontinuity", T0, T0 + 360_000)


def test_a_counter32_of_unknown_speed_is_not_bridged_across_a_failed_poll() -> None:
    track, _ = advance(Track(), reading(100, at_s=0, width=32))
    assert advance(track, reading(900, at_s=60, width=32))[1] == Delta(800, T0, T0 + 60_000)
    failed, _ = fail(track, T0 + 60_000)
    after, outcome = advance(failed, reading(900, at_s=120, width=32))
    assert isinstance(outcome, Gap)
    assert (outcome.reason, outcome.start_ms, outcome.end_ms) == ("discontinuity", T0, T0 + 120_000)
    assert advance(after, reading(950, at_s=180, width=32))[1] == Delta(
        50, T0 + 120_000, T0 + 180_000
    )
    # a Counter64 of unknown speed is bridged: it cannot wrap in any real outage
    track64, _ = advance(Track(), reading(100, at_s=0))
    track64, _ = fail(track64, T0 + 60_000)
    assert advance(track64, reading(900, at_s=120))[1] == Delta(800, T0, T0 + 120_000)


def test_a_failed_poll_after_a_missing_counter_extends_the_pending_gap() -> None:
    track, _ = advance(Track(), reading(100, at_s=0))
    track, outcome = advance(track, reading(None, at_s=60))
    assert isinstance(outcome, Gap)
    track, gap = fail(track, T0 + 120_000)
    assert gap is None
    track, outcome = advance(track, reading(300, at_s=180))
    assert isinstance(outcome, Gap)
    assert (outcome.reason, outcome.start_ms, outcome.end_ms) == (
        "counter_missing",
        T0 + 60_000,
        T0 + 180_000,
    )
    assert advance(track, reading(400, at_s=240))[1] == Delta(100, T0 + 180_000, T0 + 240_000)


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


@given(clean_series(), st.data())
def test_a_clean_series_with_failed_polls_interleaved_still_sums_exactly(
    case: tuple[int, list[CounterReading], list[int]], data: st.DataObject
) -> None:
    width, series, increments = case
    # any poll but the first and the last may fail: its sample is never seen
    failed = [False] + [data.draw(st.booleans()) for _ in series[1:-1]] + [False]
    if len(series) == 1:
        failed = [False]
    track = Track()
    outcomes: list[Delta | Gap] = []
    # the increments each outcome spans, to check every delta is exact
    spanned: list[int] = []
    pending = 0
    for i, sample in enumerate(series):
        if i:
            pending += increments[i - 1]
        if failed[i]:
            track, gap = fail(track, sample.at_ms, detail="timeout")
            assert gap is None  # a failure is never reported at failure time
            continue
        track, outcome = advance(track, sample)
        if outcome is not None:
            outcomes.append(outcome)
            spanned.append(pending)
        pending = 0
    good = [sample for sample, f in zip(series, failed, strict=True) if not f]
    # one outcome per consecutive pair of good samples, tiling the timeline
    assert [(o.start_ms, o.end_ms) for o in outcomes] == [
        (a.at_ms, b.at_ms) for a, b in itertools.pairwise(good)
    ]
    speed = series[0].high_speed_mbps or 0
    for outcome, inc, (a, b) in zip(outcomes, spanned, itertools.pairwise(good), strict=True):
        if isinstance(outcome, Delta):
            # never lose or invent a byte; only the generator's unphysical traffic (2^64
            # bytes over a few minutes on a link of unknown speed) can exceed the width
            assert inc < 2**width or (width == 64 and not speed)
            assert outcome.value == inc % 2**width
            continue
        # only a Counter32 bridging failed polls may be a gap: it could have wrapped twice
        assert width == 32, outcome
        assert outcome.reason == "discontinuity", outcome
        bridged = any(failed[series.index(a) + 1 : series.index(b)])
        assert bridged, outcome
        assert not speed or max_plausible_bytes(speed, b.at_ms - a.at_ms) >= 2**32, outcome
    if all(isinstance(o, Delta) for o in outcomes):
        assert sum(o.value for o in outcomes if isinstance(o, Delta)) % 2**width == (
            (series[-1].value or 0) - (series[0].value or 0)
        ) % (2**width)
    if width == 64:
        assert all(isinstance(o, Delta) for o in outcomes)


@given(
    st.integers(0, 2**64 - 1),
    st.integers(0, 2**64 - 1),
    st.integers(1, 2**31),  # far from sysUpTime's own wrap at 2^32 (497 days)
    st.integers(1, 50),  # failed polls during the outage
    st.integers(1, 600_000),  # ms between polls
    st.integers(0, 10**6),  # how long before the next answer the router came back (cs)
)
def test_a_reboot_during_an_outage_is_one_reboot_gap_over_the_span(
    v0: int, v1: int, up0: int, failures: int, step_ms: int, up_after_cs: int
) -> None:
    span_ms = (failures + 1) * step_ms
    # the router restarted after the last sample: it has been up for less than the span
    up1 = min(up_after_cs, max(0, (span_ms - 100 * UPTIME_SLACK_MS) // 10))
    if up1 * 10 + max(UPTIME_SLACK_MS, span_ms // 100) >= span_ms and up1 >= up0:
        up1 = 0  # too close to the span to tell: make it one sysUpTime clearly went back from
    track, _ = advance(Track(), CounterReading(v0, 64, up0, T0, None))
    for i in range(1, failures + 1):
        track, gap = fail(track, T0 + i * step_ms)
        assert gap is None
    track, outcome = advance(track, CounterReading(v1, 64, up1, T0 + span_ms, None))
    assert isinstance(outcome, Gap)
    assert (outcome.reason, outcome.start_ms, outcome.end_ms) == ("reboot", T0, T0 + span_ms)
    assert track.baseline is not None  # the next interval is exact again
    _, after = advance(
        track, CounterReading(v1 + 7, 64, up1 + step_ms // 10, T0 + span_ms + step_ms)
    )
    assert after == Delta(7, T0 + span_ms, T0 + span_ms + step_ms)


@given(
    st.lists(st.one_of(st.none(), st.integers(0, 2**64 - 1)), min_size=1, max_size=30),
    st.lists(st.booleans(), min_size=30, max_size=30),
)
def test_failed_polls_leave_no_holes_or_overlaps_and_are_never_gaps(
    values: list[int | None], failures: list[bool]
) -> None:
    track = Track()
    outcomes: list[Delta | Gap] = []
    good: list[int] = []
    for i, value in enumerate(values):
        at_ms = T0 + (i + 1) * 60_000
        if failures[i]:
            track, gap = fail(track, at_ms)
            assert gap is None
            continue
        track, outcome = advance(track, CounterReading(value, 64, (i + 1) * 6000, at_ms, None))
        good.append(at_ms)
        if outcome is not None:
            outcomes.append(outcome)
            assert outcome.start_ms == good[-2]  # starts at the previous answered poll
            assert outcome.end_ms == at_ms
        if value is None and outcome is not None:
            assert isinstance(outcome, Gap)
            assert outcome.reason == "counter_missing"
    assert len(outcomes) == max(len(good) - 1, 0)
    for prev, cur in itertools.pairwise(outcomes):
        assert prev.end_ms == cur.start_ms
    for outcome in outcomes:
        assert not (isinstance(outcome, Gap) and outcome.reason == "poll_failed")
