"""Threshold transitions: exact, one alert per crossing, escalation, hysteresis."""

from __future__ import annotations

import itertools
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hub.checks import Level, Transition, evaluate, percent_to_bp

W, C = 8000, 9500  # 80 %, 95 %


def test_below_warning_raises_nothing() -> None:
    assert evaluate(799_999, 1_000_000, W, C, Level.NONE) == (Level.NONE, Transition.NONE)


def test_exactly_at_warning_raises_warning() -> None:
    assert evaluate(800_000, 1_000_000, W, C, Level.NONE) == (
        Level.WARNING,
        Transition.RAISE_WARNING,
    )


def test_warning_is_not_repeated_while_it_stays() -> None:
    assert evaluate(900_000, 1_000_000, W, C, Level.WARNING) == (Level.WARNING, Transition.NONE)


def test_warning_escalates_to_critical() -> None:
    assert evaluate(950_000, 1_000_000, W, C, Level.WARNING) == (
        Level.CRITICAL,
        Transition.RAISE_CRITICAL,
    )


def test_jump_from_none_straight_to_critical() -> None:
    assert evaluate(2_000_000, 1_000_000, W, C, Level.NONE) == (
        Level.CRITICAL,
        Transition.RAISE_CRITICAL,
    )


def test_critical_does_not_step_down_to_warning() -> None:
    assert evaluate(850_000, 1_000_000, W, C, Level.CRITICAL) == (Level.CRITICAL, Transition.NONE)


def test_resolution_waits_for_the_hysteresis_gap() -> None:
    # 80 % - 5 points = 75 %: 76 % keeps the alert, 74.99 % resolves it
    assert evaluate(760_000, 1_000_000, W, C, Level.WARNING) == (Level.WARNING, Transition.NONE)
    assert evaluate(750_000, 1_000_000, W, C, Level.WARNING) == (Level.WARNING, Transition.NONE)
    assert evaluate(749_999, 1_000_000, W, C, Level.WARNING) == (Level.NONE, Transition.RESOLVE)
    assert evaluate(10, 1_000_000, W, C, Level.CRITICAL) == (Level.NONE, Transition.RESOLVE)


def test_unlimited_never_alerts_and_resolves_an_open_episode() -> None:
    assert evaluate(10**18, None, W, C, Level.NONE) == (Level.NONE, Transition.NONE)
    assert evaluate(10**18, None, W, C, Level.CRITICAL) == (Level.NONE, Transition.RESOLVE)


def test_comparison_is_exact_for_huge_counters() -> None:
    limit = 2**62 + 2  # 80 % of it is not a whole number
    just_below = (limit * W) // 10000  # floor: strictly below 80 % unless exact
    assert evaluate(just_below, limit, W, C, Level.NONE)[1] is Transition.NONE
    assert evaluate(just_below + 1, limit, W, C, Level.NONE)[1] is Transition.RAISE_WARNING


def test_percent_to_basis_points() -> None:
    assert percent_to_bp(Decimal("92.5")) == 9250
    assert percent_to_bp(80) == 8000
    with pytest.raises(ValueError, match="finer"):
        percent_to_bp(Decimal("80.001"))


@given(
    limit=st.integers(min_value=1, max_value=10**15),
    steps=st.lists(st.integers(min_value=0, max_value=10**14), min_size=1, max_size=60),
)
def test_rising_totals_give_at_most_one_warning_then_one_critical(
    limit: int, steps: list[int]
) -> None:
    total, level, seen = 0, Level.NONE, []
    for step in steps:
        total += step
        level, transition = evaluate(total, limit, W, C, level)
        if transition is not Transition.NONE:
            seen.append(transition)
    assert Transition.RESOLVE not in seen
    assert seen in (
        [],
        [Transition.RAISE_WARNING],
        [Transition.RAISE_WARNING, Transition.RAISE_CRITICAL],
        [Transition.RAISE_CRITICAL],
    )
    expected = (
        Level.CRITICAL
        if total * 100 >= limit * 95
        else Level.WARNING
        if total * 100 >= limit * 80
        else Level.NONE
    )
    assert level is expected


@given(
    limit=st.integers(min_value=1, max_value=10**12),
    levels=st.lists(st.integers(min_value=0, max_value=2 * 10**12), min_size=1, max_size=60),
)
def test_levels_alternate_raise_and_resolve(limit: int, levels: list[int]) -> None:
    level, transitions = Level.NONE, []
    for value in levels:
        new, transition = evaluate(value, limit, W, C, level)
        if transition is Transition.RESOLVE:
            assert value * 10000 < limit * (W - 500)
        if transition is not Transition.NONE:
            assert new is not level
            transitions.append(transition)
        level = new
    # never two resolves in a row, never a raise of the level already held
    for a, b in itertools.pairwise(transitions):
        assert not (a is Transition.RESOLVE and b is Transition.RESOLVE)
        assert not (a is b is Transition.RAISE_WARNING)
