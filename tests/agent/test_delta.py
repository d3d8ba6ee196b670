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
    split_at_boot,
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


def step(track: Track, cur: CounterReading) -> tuple[Track, Delta | Gap | None]:
    """:func:`advance` for an interval that yields at most one outcome (no reboot split)."""
    track, outcomes = advance(track, cur)
    assert len(outcomes) <= 1, outcomes
    return track, outcomes[0] if outcomes else None


def test_first_sample_yields_no_delta() -> None:
    track, outcome = step(Track(), reading(100, at_s=0))
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
    track, _ = step(Track(), reading(100, at_s=0))
    track, outcome = step(track, reading(None, at_s=60))
    assert outcome == Gap("counter_missing", T0, T0 + 60_000, outcome.detail)  # type: ignore[union-attr]
    # and the next good sample has no baseline to subtract from: another gap, then deltas
    track, outcome = step(track, reading(300, at_s=120))
    assert isinstance(outcome, Gap)
    assert outcome.reason == "counter_missing"
    track, outcome = step(track, reading(400, at_s=180))
    assert outcome == Delta(100, T0 + 120_000, T0 + 180_000)


def test_a_failed_poll_keeps_the_baseline_and_the_next_sample_bridges_it_exactly() -> None:
    track, _ = step(Track(), reading(100, at_s=0))
    failed, gap = fail(track, T0 + 60_000, detail="timeout")
    assert gap is None  # nothing at failure time: no hole, no overlap, no guess
    assert failed.baseline == track.baseline
    assert failed.last_end_ms == T0
    failed, gap = fail(failed, T0 + 120_000, detail="timeout")
    assert gap is None
    _, outcome = step(failed, reading(500, at_s=180))
    assert outcome == Delta(400, T0, T0 + 180_000)


def test_a_failure_before_any_sample_reports_nothing() -> None:
    track, gap = fail(Track(), T0)
    assert gap is None
    assert step(track, reading(1, at_s=1))[1] is None


def test_a_reboot_during_an_outage_is_a_reboot_gap_over_the_whole_span() -> None:
    track, _ = step(Track(), reading(10_000, at_s=0, uptime_cs=500_000))
    track, _ = fail(track, T0 + 60_000)
    track, outcome = step(track, reading(20, at_s=120, uptime_cs=3000))
    assert isinstance(outcome, Gap)
    assert (outcome.reason, outcome.start_ms, outcome.end_ms) == ("reboot", T0, T0 + 120_000)


def test_a_reboot_during_a_long_outage_is_caught_even_when_sysuptime_grew() -> None:
    # up 10 min at the last sample; dead for an hour, rebooted 30 min ago: sysUpTime is
    # larger than before, but shorter than the span, so the counters restarted
    track, _ = step(Track(), reading(10**12, at_s=0, uptime_cs=60_000))
    for minute in range(1, 60):
        track, gap = fail(track, T0 + minute * 60_000)
        assert gap is None
    track, outcome = step(track, reading(10**12 + 5, at_s=3600, uptime_cs=180_000))
    assert isinstance(outcome, Gap)
    assert (outcome.reason, outcome.start_ms, outcome.end_ms) == ("reboot", T0, T0 + 3_600_000)
    # and the following interval is exact again
    _, outcome = step(track, reading(10**12 + 50, at_s=3660, uptime_cs=186_000))
    assert outcome == Delta(45, T0 + 3_600_000, T0 + 3_660_000)


def test_uptime_continuous_needs_the_router_up_for_the_whole_span() -> None:
    assert uptime_continuous(60_000, T0, 60_000 + 6000, T0 + 60_000)
    assert uptime_continuous(0, T0, 6000, T0 + 60_000)  # booted right before the last sample
    assert not uptime_continuous(60_000, T0, 180_000, T0 + 3_600_000)
    assert not uptime_continuous(500_000, T0, 300, T0 + 60_000)
    assert uptime_continuous(2**32 - 3000, T0, 3000, T0 + 60_000)  # its own 497-day wrap


def test_a_discontinuity_during_an_outage_is_a_gap_over_the_whole_span() -> None:
    prev = msgspec.structs.replace(reading(1000, at_s=0), discontinuity_cs=500)
    track, _ = step(Track(), prev)
    track, _ = fail(track, T0 + 60_000)
    moved = msgspec.structs.replace(reading(10, at_s=120), discontinuity_cs=9000)
    _, outcome = step(track, moved)
    assert isinstance(outcome, Gap)
    assert (outcome.reason, outcome.start_ms, outcome.end_ms) == ("discontinuity", T0, T0 + 120_000)


def test_the_over_speed_check_of_a_bridged_span_uses_its_whole_length() -> None:
    # 10 Mbit/s: two minutes at line rate is fine across a failed poll, three minutes' worth is not
    full = 10 * 1_000_000 * 120 // 8
    track, _ = step(Track(), reading(0, at_s=0, speed=10))
    track, _ = fail(track, T0 + 60_000)
    _, outcome = step(track, reading(full, at_s=120, speed=10))
    assert outcome == Delta(full, T0, T0 + 120_000)
    _, outcome = step(track, reading(full * 3 // 2, at_s=120, speed=10))
    assert isinstance(outcome, Gap)
    assert (outcome.reason, outcome.start_ms, outcome.end_ms) == ("over_speed", T0, T0 + 120_000)


def test_a_counter32_that_may_have_wrapped_twice_during_an_outage_is_a_gap() -> None:
    # 100 Mbit/s fills 2^32 bytes in ~5.7 min: one failed poll at 3 min is bridged, five are not
    track, _ = step(Track(), reading(2**32 - 100, at_s=0, width=32, speed=100))
    short, _ = fail(track, T0 + 90_000)
    _, outcome = step(short, reading(900, at_s=180, width=32, speed=100))
    assert outcome == Delta(1000, T0, T0 + 180_000)
    long = track
    for i in range(1, 6):
        long, _ = fail(long, T0 + i * 60_000)
    _, outcome = step(long, reading(900, at_s=360, width=32, speed=100))
    assert isinstance(outcome, Gap)
    assert (outcome.reason, outcome.start_ms, outcome.end_ms) == ("discontinuity", T0, T0 + 360_000)


def test_a_counter32_of_unknown_speed_is_not_bridged_across_a_failed_poll() -> None:
    track, _ = step(Track(), reading(100, at_s=0, width=32))
    assert step(track, reading(900, at_s=60, width=32))[1] == Delta(800, T0, T0 + 60_000)
    failed, _ = fail(track, T0 + 60_000)
    after, outcome = step(failed, reading(900, at_s=120, width=32))
    assert isinstance(outcome, Gap)
    assert (outcome.reason, outcome.start_ms, outcome.end_ms) == ("discontinuity", T0, T0 + 120_000)
    assert step(after, reading(950, at_s=180, width=32))[1] == Delta(50, T0 + 120_000, T0 + 180_000)
    # a Counter64 of unknown speed is bridged: it cannot wrap in any real outage
    track64, _ = step(Track(), reading(100, at_s=0))
    track64, _ = fail(track64, T0 + 60_000)
    assert step(track64, reading(900, at_s=120))[1] == Delta(800, T0, T0 + 120_000)


def test_a_failed_poll_after_a_missing_counter_extends_the_pending_gap() -> None:
    track, _ = step(Track(), reading(100, at_s=0))
    track, outcome = step(track, reading(None, at_s=60))
    assert isinstance(outcome, Gap)
    track, gap = fail(track, T0 + 120_000)
    assert gap is None
    track, outcome = step(track, reading(300, at_s=180))
    assert isinstance(outcome, Gap)
    assert (outcome.reason, outcome.start_ms, outcome.end_ms) == (
        "counter_missing",
        T0 + 60_000,
        T0 + 180_000,
    )
    assert step(track, reading(400, at_s=240))[1] == Delta(100, T0 + 180_000, T0 + 240_000)


def test_a_sample_from_the_past_is_ignored() -> None:
    track, _ = step(Track(), reading(100, at_s=60))
    same, outcome = step(track, reading(50, at_s=30))
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
        track, outcome = step(track, sample)
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
        track, outcome = step(track, sample)
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
    track, _ = step(Track(), CounterReading(v0, 64, up0, T0, None))
    for i in range(1, failures + 1):
        track, gap = fail(track, T0 + i * step_ms)
        assert gap is None
    track, outcome = step(track, CounterReading(v1, 64, up1, T0 + span_ms, None))
    assert isinstance(outcome, Gap)
    assert (outcome.reason, outcome.start_ms, outcome.end_ms) == ("reboot", T0, T0 + span_ms)
    assert track.baseline is not None  # the next interval is exact again
    _, after = step(track, CounterReading(v1 + 7, 64, up1 + step_ms // 10, T0 + span_ms + step_ms))
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
        track, outcome = step(track, CounterReading(value, 64, (i + 1) * 6000, at_ms, None))
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


# -- reboots: the traffic since the boot is billed -------------------------------------------


def rebooted(
    value: int,
    *,
    at_s: float,
    up_s: float,
    speed: int | None = 1000,
    width: Literal[32, 64] = 64,
    discontinuity_cs: int | None = None,
) -> CounterReading:
    """A sample ``up_s`` seconds after a boot (sysUpTime restarted then)."""
    return CounterReading(
        value, width, int(up_s * 100), T0 + int(at_s * 1000), speed, discontinuity_cs
    )


def test_after_a_reboot_the_traffic_since_the_boot_is_billed_and_only_the_rest_is_a_gap() -> None:
    track, _ = advance(Track(), reading(10**9, at_s=0, speed=1000))
    # rebooted 40 s after the last sample; 7 MB carried in the 20 s since the boot
    track, outcomes = advance(track, rebooted(7_000_000, at_s=60, up_s=20))
    gap, delta = outcomes
    assert isinstance(gap, Gap)
    assert (gap.reason, gap.start_ms, gap.end_ms) == ("reboot", T0, T0 + 40_000)
    assert delta == Delta(7_000_000, T0 + 40_000, T0 + 60_000)
    # the post-boot sample is the baseline of the next interval
    _, after = advance(track, rebooted(7_000_500, at_s=120, up_s=80))
    assert after == [Delta(500, T0 + 60_000, T0 + 120_000)]


def test_a_reboot_during_an_outage_bills_the_traffic_since_the_boot() -> None:
    track, _ = advance(Track(), reading(5, at_s=0, speed=1000, uptime_cs=500_000))
    for i in range(1, 10):
        track, _ = fail(track, T0 + i * 60_000)
    # up for 5 minutes at the answer 10 minutes later: sysUpTime went back
    _, outcomes = advance(track, rebooted(123_456, at_s=600, up_s=300))
    assert [(type(o).__name__, o.start_ms, o.end_ms) for o in outcomes] == [
        ("Gap", T0, T0 + 300_000),
        ("Delta", T0 + 300_000, T0 + 600_000),
    ]


def test_a_nonzero_if_counter_discontinuity_time_after_a_reboot_starts_the_billed_span_there() -> (
    None
):
    track, _ = advance(Track(), reading(10**9, at_s=0, speed=1000))
    # booted 30 s before the sample, counters cleared 10 s after the boot (at sysUpTime 1000)
    sample = rebooted(4_000, at_s=60, up_s=30, discontinuity_cs=1000)
    _, (gap, delta) = advance(track, sample)
    assert isinstance(gap, Gap)
    assert (gap.start_ms, gap.end_ms) == (T0, T0 + 40_000)
    assert delta == Delta(4_000, T0 + 40_000, T0 + 60_000)


def test_a_post_boot_value_beyond_the_interface_speed_keeps_the_whole_interval_a_gap() -> None:
    track, _ = advance(Track(), reading(10**9, at_s=0, speed=10))
    # 10 Mbit/s for 20 s is 25 MB; 10 GB means the counters did not restart at zero
    _, outcomes = advance(track, rebooted(10**10, at_s=60, up_s=20, speed=10))
    assert len(outcomes) == 1
    gap = outcomes[0]
    assert isinstance(gap, Gap)
    assert (gap.reason, gap.start_ms, gap.end_ms) == ("reboot", T0, T0 + 60_000)
    assert "did not restart at zero" in gap.detail


def test_a_target_whose_counters_do_not_restart_at_zero_keeps_the_whole_interval_a_gap() -> None:
    track, _ = advance(Track(), reading(10**9, at_s=0, speed=1000))
    _, outcomes = advance(track, rebooted(7_000, at_s=60, up_s=20), counters_restart_at_zero=False)
    assert [(o.reason, o.start_ms, o.end_ms) for o in outcomes if isinstance(o, Gap)] == [
        ("reboot", T0, T0 + 60_000)
    ]
    assert len(outcomes) == 1
    assert "counters_restart_at_zero: false" in outcomes[0].detail  # type: ignore[union-attr]


def test_a_reboot_on_an_interface_of_unknown_speed_keeps_the_whole_interval_a_gap() -> None:
    for speed in (None, 0):
        track, _ = advance(Track(), reading(10**9, at_s=0, speed=speed))
        _, outcomes = advance(track, rebooted(7_000, at_s=60, up_s=20, speed=speed))
        assert [(type(o).__name__, o.start_ms, o.end_ms) for o in outcomes] == [
            ("Gap", T0, T0 + 60_000)
        ]


def test_a_counter32_that_may_have_wrapped_since_the_boot_keeps_the_whole_interval_a_gap() -> None:
    # 10 Gbit/s fills 2^32 bytes in 3.4 s
    track, _ = advance(Track(), reading(10**9, at_s=0, width=32, speed=10_000))
    _, outcomes = advance(track, rebooted(7_000, at_s=60, up_s=20, width=32, speed=10_000))
    assert len(outcomes) == 1
    assert isinstance(outcomes[0], Gap)
    # a slow Counter32 cannot have wrapped in 20 s: billed
    track, _ = advance(Track(), reading(10**9, at_s=0, width=32, speed=100))
    _, outcomes = advance(track, rebooted(7_000, at_s=60, up_s=20, width=32, speed=100))
    assert outcomes[-1] == Delta(7_000, T0 + 40_000, T0 + 60_000)


def test_a_discontinuity_time_later_than_sysuptime_keeps_the_whole_interval_a_gap() -> None:
    track, _ = advance(Track(), reading(10**9, at_s=0, speed=1000))
    _, outcomes = advance(track, rebooted(7_000, at_s=60, up_s=20, discontinuity_cs=5000))
    assert len(outcomes) == 1
    assert isinstance(outcomes[0], Gap)
    assert (outcomes[0].start_ms, outcomes[0].end_ms) == (T0, T0 + 60_000)


def test_split_at_boot_never_bills_a_sample_taken_at_the_boot_itself() -> None:
    prev = reading(10**9, at_s=0, speed=1000)
    whole = split_at_boot(prev, rebooted(0, at_s=60, up_s=0))
    assert isinstance(whole, Gap)
    assert (whole.start_ms, whole.end_ms) == (T0, T0 + 60_000)


class _Truth:
    """Traffic as a function of time: a constant rate (bytes per 10 ms) per poll step."""

    def __init__(self) -> None:
        self.pieces: list[tuple[int, int, int]] = []  # [start, end) ms, bytes per 10 ms

    def add(self, start: int, end: int, per_10ms: int) -> None:
        self.pieces.append((start, end, per_10ms))

    def between(self, a: int, b: int) -> int:
        total = 0
        for start, end, rate in self.pieces:
            lo, hi = max(a, start), min(b, end)
            if lo < hi:
                total += rate * (hi - lo) // 10  # every bound is a multiple of 10 ms
        return total


@st.composite
def rebooting_timelines(
    draw: st.DrawFn,
) -> tuple[_Truth, list[tuple[str, CounterReading | int]], bool, set[int]]:
    """Polls of one Counter64 whose router reboots (and fails polls) at random moments.

    Returns the ground truth, the polls (``("fail", at_ms)`` or ``("good", sample)``),
    the target's ``counters_restart_at_zero`` and, for each reboot interval with a
    value at both ends, when its counted span starts (the boot, or the clearing of
    the counters after it).
    """
    speed = draw(st.sampled_from([None, 0, 100, 10_000]))
    restart = draw(st.booleans())
    announces = draw(st.booleans())  # the router shows ifCounterDiscontinuityTime
    # never more than the line rate, so a post-boot value is always plausible
    top = 10**6 if not speed else speed * 1_000_000 // 8 // 100
    truth = _Truth()
    boot = T0 - draw(st.integers(100_000, 2**31)) * 10  # up for a while at the first poll
    count_from = boot
    offset = draw(st.integers(0, 2**63))  # the counter's value at the first boot's start
    at = last_good = T0
    polls: list[tuple[str, CounterReading | int]] = []
    starts: set[int] = set()

    def sample(at_ms: int, missing: bool) -> CounterReading:
        value = truth.between(count_from, at_ms) + (offset if count_from < T0 else 0)
        disc = None
        if announces:
            disc = (count_from - boot) // 10
        return CounterReading(
            None if missing else value % 2**64,
            64,
            (at_ms - boot) // 10,
            at_ms,
            speed,
            disc,
        )

    polls.append(("good", sample(at, False)))
    had_value = True
    for _ in range(draw(st.integers(1, 10))):
        failures = draw(st.integers(0, 3))
        step = draw(st.integers(2, 30_000)) * 10
        for k in range(failures + 1):
            truth.add(at, at + step, draw(st.integers(0, top)))
            at += step
            if k < failures:
                polls.append(("fail", at))
        span = at - last_good
        # a reboot the sysUpTime check can tell from clock drift: not within the slack
        earliest = last_good + max(UPTIME_SLACK_MS, span // 100) + 10
        if draw(st.booleans()) and earliest < at - 10:
            boot = count_from = draw(st.integers(earliest // 10, (at - 10) // 10)) * 10
            if announces and draw(st.booleans()) and boot + 10 < at - 10:
                # counters cleared again some time after the boot
                count_from = draw(st.integers((boot + 10) // 10, (at - 10) // 10)) * 10
            rebooted_now = True
        else:
            rebooted_now = False
        missing = draw(st.integers(0, 9)) == 0
        if rebooted_now and had_value and not missing:
            starts.add(count_from)  # the interval has a baseline and a value: billable
        polls.append(("good", sample(at, missing)))
        had_value = not missing
        last_good = at
    return truth, polls, restart, starts


@given(rebooting_timelines())
def test_reboots_failures_and_missing_counters_tile_the_timeline_and_lose_only_what_is_unknown(
    case: tuple[_Truth, list[tuple[str, CounterReading | int]], bool, set[int]],
) -> None:
    truth, polls, restart, starts = case
    track = Track()
    outcomes: list[Delta | Gap] = []
    for kind, item in polls:
        if kind == "fail":
            assert isinstance(item, int)
            track, gap = fail(track, item)
            assert gap is None
        else:
            assert isinstance(item, CounterReading)
            track, new = advance(track, item, counters_restart_at_zero=restart)
            outcomes += new
    good = [item for kind, item in polls if kind == "good"]
    assert isinstance(good[0], CounterReading)
    assert isinstance(good[-1], CounterReading)
    first, last = good[0].at_ms, good[-1].at_ms
    # exactly one delta or gap over every instant: no holes, no overlaps
    assert outcomes[0].start_ms == first
    assert outcomes[-1].end_ms == last
    assert all(o.start_ms < o.end_ms for o in outcomes)
    assert all(a.end_ms == b.start_ms for a, b in itertools.pairwise(outcomes))
    # every delta is exact; what is not billed is inside a reported gap
    for o in outcomes:
        if isinstance(o, Delta):
            assert o.value == truth.between(o.start_ms, o.end_ms), o
    billed = sum(o.value for o in outcomes if isinstance(o, Delta))
    unknown = sum(truth.between(o.start_ms, o.end_ms) for o in outcomes if isinstance(o, Gap))
    assert billed + unknown == truth.between(first, last)
    # a reboot interval is billed from the boot (or the clearing after it) exactly when
    # the target restarts its counters at zero and the speed bounds the value
    speed = good[0].high_speed_mbps
    delta_starts = {o.start_ms for o in outcomes if isinstance(o, Delta)}
    gap_ends = {o.end_ms for o in outcomes if isinstance(o, Gap) and o.reason == "reboot"}
    if restart and speed:
        assert starts <= delta_starts & gap_ends
    else:
        assert not starts & delta_starts
