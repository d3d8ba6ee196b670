"""Counter delta math. Pure functions: no I/O, no clock, no logging.

A router's octet counters only ever grow, modulo their width (2^32 or 2^64).
Between two samples of one counter the exact usage is the difference modulo
the width, unless something broke the series; then the interval is a *gap*
with a reason, never a guess and never a zero:

- ``reboot``: sysUpTime went back, or is shorter than the time since the last
  sample (the router restarted in between, so the counters restarted from zero).
  The first value read after the boot is the traffic since the boot, and
  sysUpTime says when the boot was: :func:`split_at_boot` bills that value as a
  delta over ``[boot, sample)`` and reports only ``[last sample, boot)`` as the
  gap. A non-zero ``ifCounterDiscontinuityTime`` after the boot moves the start
  of the counted span to the moment it names. The whole interval stays one
  gap when the value cannot be vouched for: the target is configured as not
  restarting its counters at zero, the interface speed is unknown, the value
  is more than the speed allows since the boot, a Counter32 may have wrapped
  since the boot, or the boot time does not fall inside the interval;
- ``discontinuity``: the router says so (``ifCounterDiscontinuityTime``
  changed), the counter width changed (HC counters appeared or vanished), the
  agent's clock did not advance, or a Counter32 could have wrapped more than
  once since the last sample (a fast interface, or an unknown speed across
  failed polls);
- ``over_speed``: the delta is more than the interface could have carried in
  the elapsed time at ``ifHighSpeed`` (plus a tolerance) -- a counter reset
  the router did not announce, or a Counter32 that wrapped more than once;
- ``counter_missing``: the router gave no value for the counter;
- ``agent_restart``: the agent itself was not running (see :func:`resume`);
- ``buffer_full``: not produced here. The agent measured the interval but could
  not keep the reading: its disk buffer was full or could not be written (see
  :mod:`edge_agent.sink`);
- ``poll_failed``: no longer produced. Kept in :data:`GapReason` for wire
  compatibility with events from older agents, which reported every failed
  poll as a gap and dropped the baseline.

A failed poll (the router did not answer, answered garbage, or was skipped
while backed off) is *not* a gap: :func:`fail` keeps the last good sample as
the baseline, so the next good sample yields one delta over the whole span
since it (``compute_delta(baseline, cur)``, with every check above applied to
that span) -- or one gap over that span when a check fails. Nothing is
reported at the time of the failure; it stays visible in the agent's
``resmon_agent_poll_errors`` / ``resmon_agent_target_up`` metrics and in the
target's state (``failing`` / ``backoff``, ``consecutiveFailures``,
``lastErrorKind``) in ``/healthz``. A router that never answers again yields
no event at all until it does.

:class:`Track` is the per-counter state the poller keeps; :func:`advance` and
:func:`fail` move it forward and say what the interval since the last sample
was. Every interval after the first sample is covered by exactly one delta or
one gap (a reboot's interval by one gap followed by one delta), with no holes
and no overlaps.
"""

from __future__ import annotations

from typing import Final, Literal

import msgspec

from protocol import GapReason

__all__ = [
    "OVER_SPEED_SLACK_BYTES",
    "OVER_SPEED_TOLERANCE_PCT",
    "UPTIME_MODULUS",
    "UPTIME_SLACK_MS",
    "CounterReading",
    "Delta",
    "Gap",
    "GapReason",
    "Track",
    "advance",
    "compute_delta",
    "fail",
    "is_stale",
    "max_plausible_bytes",
    "resume",
    "split_at_boot",
    "uptime_continuous",
]


#: sysUpTime is a TimeTicks (hundredths of a second) that wraps after ~497 days
UPTIME_MODULUS: Final = 2**32
#: how far over the line rate a delta may be before it is called over-speed
OVER_SPEED_TOLERANCE_PCT: Final = 10
#: plus this many bytes, for tiny intervals and timestamp jitter
OVER_SPEED_SLACK_BYTES: Final = 1_000_000
#: how much shorter than the time since the last sample sysUpTime may be (at least)
UPTIME_SLACK_MS: Final = 10_000


class CounterReading(msgspec.Struct, frozen=True):
    """One sample of one counter.

    ``value`` is ``None`` when the router gave no value. ``uptime_cs`` is the
    router's sysUpTime (hundredths of a second) and ``at_ms`` the agent's wall
    clock (Unix ms) of the sample. ``high_speed_mbps`` is ifHighSpeed (0 or
    ``None`` = unknown, no over-speed check). ``discontinuity_cs`` is the
    interface's ifCounterDiscontinuityTime (``None`` when the router has none):
    when it changes, the counter was reset without a reboot.
    """

    value: int | None
    width: Literal[32, 64]
    uptime_cs: int
    at_ms: int
    high_speed_mbps: int | None = None
    discontinuity_cs: int | None = None


class Delta(msgspec.Struct, frozen=True):
    """Exactly ``value`` units moved over ``[start_ms, end_ms)``."""

    value: int
    start_ms: int
    end_ms: int


class Gap(msgspec.Struct, frozen=True):
    """Nothing can be said about ``[start_ms, end_ms)``, because of ``reason``."""

    reason: GapReason
    start_ms: int
    end_ms: int
    detail: str = ""


def uptime_continuous(prev_uptime_cs: int, prev_ms: int, cur_uptime_cs: int, cur_ms: int) -> bool:
    """Whether the router stayed up between two samples, judged by its sysUpTime.

    sysUpTime must have gone forward (allowing for its own 2^32 wrap) *and* be
    at least the wall-clock time between the samples: after a long outage a
    router that restarted in between can report a larger sysUpTime than before,
    yet one shorter than the span, and its counters restarted from zero.
    """
    elapsed_ms = max(0, cur_ms - prev_ms)
    if cur_uptime_cs >= prev_uptime_cs:
        # slack for the request's round trip and clock drift between the two clocks
        slack_ms = max(UPTIME_SLACK_MS, elapsed_ms // 100)
        return cur_uptime_cs * 10 + slack_ms >= elapsed_ms
    # sysUpTime itself wraps after 497 days: a wrap is only plausible when the
    # wall clock elapsed roughly what the modular uptime difference says.
    elapsed_cs = elapsed_ms // 10
    modular_cs = (cur_uptime_cs - prev_uptime_cs) % UPTIME_MODULUS
    return prev_uptime_cs + elapsed_cs >= UPTIME_MODULUS and abs(modular_cs - elapsed_cs) <= max(
        6000, elapsed_cs // 10
    )


def _uptime_advanced(prev: CounterReading, cur: CounterReading) -> bool:
    return uptime_continuous(prev.uptime_cs, prev.at_ms, cur.uptime_cs, cur.at_ms)


def max_plausible_bytes(speed_mbps: int, elapsed_ms: int) -> int:
    """The most bytes an interface of ``speed_mbps`` can move in ``elapsed_ms``, with tolerance."""
    bits = speed_mbps * 1_000_000 * elapsed_ms // 1000
    return bits * (100 + OVER_SPEED_TOLERANCE_PCT) // (8 * 100) + OVER_SPEED_SLACK_BYTES


def compute_delta(prev: CounterReading, cur: CounterReading) -> Delta | Gap:
    """The usage between two samples of one counter, or a gap saying why there is none."""
    start, end = prev.at_ms, cur.at_ms
    if prev.value is None or cur.value is None:
        return Gap("counter_missing", start, end, "the router gave no counter value")
    if end <= start:
        return Gap("discontinuity", start, end, "the agent clock did not advance")
    if not _uptime_advanced(prev, cur):
        return Gap(
            "reboot", start, end, f"sysUpTime went back from {prev.uptime_cs} to {cur.uptime_cs}"
        )
    if (
        prev.discontinuity_cs is not None
        and cur.discontinuity_cs is not None
        and prev.discontinuity_cs != cur.discontinuity_cs
    ):
        return Gap(
            "discontinuity",
            start,
            end,
            f"ifCounterDiscontinuityTime changed from {prev.discontinuity_cs} "
            f"to {cur.discontinuity_cs}",
        )
    if prev.width != cur.width:
        return Gap(
            "discontinuity", start, end, f"counter width changed {prev.width} -> {cur.width} bits"
        )
    value = (cur.value - prev.value) % (1 << cur.width)
    speed = max(prev.high_speed_mbps or 0, cur.high_speed_mbps or 0)
    if speed > 0:
        # the router's own clock is the better measure of elapsed time; take the
        # larger of the two so a late poll is never mistaken for over-speed
        uptime_ms = ((cur.uptime_cs - prev.uptime_cs) % UPTIME_MODULUS) * 10
        limit = max_plausible_bytes(speed, max(end - start, uptime_ms))
        if cur.width == 32 and limit >= 1 << 32:
            return Gap(
                "discontinuity",
                start,
                end,
                f"a Counter32 at {speed} Mbit/s may have wrapped more than once "
                f"in {(end - start) // 1000}s; poll faster or use HC counters",
            )
        if value > limit:
            return Gap(
                "over_speed",
                start,
                end,
                f"delta of {value} bytes is more than {speed} Mbit/s allows ({limit})",
            )
    return Delta(value, start, end)


def split_at_boot(
    prev: CounterReading, cur: CounterReading, *, counters_restart_at_zero: bool = True
) -> tuple[Gap, Delta] | Gap:
    """The interval of a reboot: a gap up to the boot and a delta since it, or one gap.

    ``prev`` is the last sample before the reboot and ``cur`` the first after it
    (both with values; :func:`compute_delta` found the reboot). The counters
    restarted at zero at the boot, ``cur.uptime_cs`` hundredths of a second
    before ``cur`` was taken, so ``cur.value`` is exactly what moved since then.
    When the router reports a non-zero ``ifCounterDiscontinuityTime`` (the
    sysUpTime at which the counters last restarted), the counted span starts
    there instead. Returns the whole interval as one ``reboot`` gap, saying
    why, when that value cannot be vouched for.
    """
    assert cur.value is not None
    whole = Gap(
        "reboot",
        prev.at_ms,
        cur.at_ms,
        f"sysUpTime went back from {prev.uptime_cs} to {cur.uptime_cs}",
    )

    def unbilled(why: str) -> Gap:
        return Gap(whole.reason, whole.start_ms, whole.end_ms, f"{whole.detail}; {why}")

    if not counters_restart_at_zero:
        return unbilled("the target is configured with counters_restart_at_zero: false")
    counted_cs = cur.uptime_cs
    if cur.discontinuity_cs:
        if cur.discontinuity_cs > cur.uptime_cs:
            return unbilled(
                f"ifCounterDiscontinuityTime {cur.discontinuity_cs} is later than "
                f"sysUpTime {cur.uptime_cs}"
            )
        counted_cs = cur.uptime_cs - cur.discontinuity_cs
    start = cur.at_ms - counted_cs * 10
    if not prev.at_ms < start < cur.at_ms:
        return unbilled("the counters did not restart inside the interval")
    speed = cur.high_speed_mbps or 0
    if speed <= 0:
        return unbilled("the interface speed is unknown, so the value since the boot is unchecked")
    limit = max_plausible_bytes(speed, counted_cs * 10)
    if cur.width == 32 and limit >= 1 << 32:
        return unbilled(f"a Counter32 at {speed} Mbit/s may have wrapped since the boot")
    if cur.value > limit:
        return unbilled(
            f"{cur.value} bytes since the boot is more than {speed} Mbit/s allows ({limit}); "
            "the counters did not restart at zero"
        )
    return Gap(whole.reason, prev.at_ms, start, f"{whole.detail}; traffic since the boot billed"), (
        Delta(cur.value, start, cur.at_ms)
    )


class Track(msgspec.Struct, frozen=True):
    """What the poller remembers about one counter between polls.

    ``baseline`` is the last good sample (``None`` before the first or after a
    gap), ``last_end_ms`` the end of the last reported interval, ``pending``
    the reason for the next gap when there is no baseline, and ``failed_polls``
    how many polls failed since the last sample (the next interval bridges them).
    """

    baseline: CounterReading | None = None
    last_end_ms: int | None = None
    pending: GapReason | None = None
    failed_polls: int = 0


def advance(
    track: Track, cur: CounterReading, *, counters_restart_at_zero: bool = True
) -> tuple[Track, list[Delta | Gap]]:
    """Take a new sample; say what happened since the last one (nothing for the first).

    The interval since the last sample may span failed polls: it is still one
    delta (or one gap), except across a reboot, which may be a gap up to the
    boot and a delta since it (:func:`split_at_boot`; ``counters_restart_at_zero``
    is the target's setting). A sample that is not later than the last
    reported interval (the agent's clock went back) is ignored: the track is
    returned unchanged, with nothing to report (see :func:`is_stale`).
    """
    start = track.last_end_ms
    if is_stale(track, cur):
        return track, []
    if cur.value is None:
        missing: list[Delta | Gap] = []
        if start is not None:
            missing = [Gap("counter_missing", start, cur.at_ms, "the router gave no counter value")]
        return Track(None, cur.at_ms, "counter_missing"), missing
    if track.baseline is None:
        unmeasured: list[Delta | Gap] = []
        if start is not None:
            unmeasured = [
                Gap(track.pending or "discontinuity", start, cur.at_ms, "no baseline sample")
            ]
        return Track(cur, cur.at_ms), unmeasured
    outcome = compute_delta(track.baseline, cur)
    if isinstance(outcome, Gap) and outcome.reason == "reboot":
        split = split_at_boot(
            track.baseline, cur, counters_restart_at_zero=counters_restart_at_zero
        )
        return Track(cur, cur.at_ms), list(split) if isinstance(split, tuple) else [split]
    if (
        isinstance(outcome, Delta)
        and track.failed_polls
        and cur.width == 32
        and not (track.baseline.high_speed_mbps or cur.high_speed_mbps)
    ):
        # without a speed nothing bounds how often a Counter32 wrapped across the outage
        outcome = Gap(
            "discontinuity",
            outcome.start_ms,
            outcome.end_ms,
            f"a Counter32 of unknown speed may have wrapped more than once "
            f"across {track.failed_polls} failed or unstored poll(s)",
        )
    return Track(cur, cur.at_ms), [outcome]


def is_stale(track: Track, cur: CounterReading) -> bool:
    """Whether ``cur`` is no later than the end of the track's reported timeline.

    :func:`advance` ignores such a sample (the agent's clock went back); the
    caller logs and counts it.
    """
    return track.last_end_ms is not None and cur.at_ms <= track.last_end_ms


def fail(track: Track, now_ms: int, detail: str = "") -> tuple[Track, Gap | None]:
    """A poll failed (or was skipped) at ``now_ms``: report nothing, keep the baseline.

    The last good sample stays the baseline, so the next good sample covers the
    whole span since it with one delta or one gap (see the module docstring).
    Never returns a gap; the signature is kept for callers that forward one.
    """
    del now_ms, detail  # the failure is visible in the poller's metrics, not the timeline
    if track.last_end_ms is None:
        return track, None
    return msgspec.structs.replace(track, failed_polls=track.failed_polls + 1), None


def resume(last_end_ms: int) -> Track:
    """The track of a counter after an agent restart: the interval since the last one
    reported before the restart becomes an ``agent_restart`` gap at the next sample.

    No baseline is checkpointed, so the span is never bridged by a delta: the
    agent cannot know what happened to the router while it was not running.
    """
    return Track(None, last_end_ms, "agent_restart")
