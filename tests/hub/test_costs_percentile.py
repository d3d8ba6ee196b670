"""95th-percentile bandwidth billing: the rank rule, direction modes, sums across
interfaces, duplicates, splits, over-speed deltas and gaps, and a plain reference."""

from __future__ import annotations

import math
from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hub.costs import (
    WINDOW_MS,
    CostModel,
    Gap,
    Percentile95,
    Period,
    PricingError,
    RateMeasure,
    Sample,
    Volume,
    measure_rate,
    nearest_rank,
    price,
)

W = WINDOW_MS
#: bytes in one 5-minute window at 1 Mbps: 10^6 bit/s x 300 s / 8
MBPS_WINDOW = 37_500_000
TWENTY = Period(0, 20 * W)


def _series(
    mbps: list[Fraction | int],
    direction: str = "in",
    interface: str = "eth0",
    speed: int | None = None,
) -> list[Sample]:
    return [
        Sample(interface, direction, i * W, (i + 1) * W, int(rate * MBPS_WINDOW), speed)  # type: ignore[arg-type]
        for i, rate in enumerate(mbps)
    ]


def _mbps(measure: RateMeasure) -> Fraction:
    return measure.rate_mbps


# -- the rank rule ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("n", "rank"),
    [
        (0, 0),
        (1, 1),
        (19, 19),
        (20, 19),
        (21, 20),
        (100, 95),
        (8640, 8208),
        (8639, 8208),
        (8928, 8482),
    ],
)
def test_nearest_rank_is_ceil_of_95_percent_of_n(n: int, rank: int) -> None:
    # 8640 = a 30-day month of 5-minute windows: 0.95 x 8640 = 8208 exactly
    assert nearest_rank(n) == rank


def test_nearest_rank_against_the_round_minus_one_zero_based_form() -> None:
    """``round(0.95 n) - 1`` (zero-based, as often written) picks the same sample as
    ``ceil(0.95 n)`` (one-based) except when 0.95 n has a fraction below one half,
    where it rounds down (n mod 20 in 11..19), or exactly one half with Python's
    round-half-even going down (n mod 40 = 30). Then it bills one sample lower."""
    differ = []
    for n in range(1, 10_001):
        ours = nearest_rank(n) - 1  # zero-based index
        theirs = round(0.95 * n) - 1
        assert theirs in (ours, ours - 1)
        if theirs != ours:
            differ.append(n)
    assert differ == [n for n in range(1, 10_001) if n % 20 in range(11, 20) or n % 40 == 30]
    assert 8639 in differ  # a 30-day month missing one window
    assert 8640 not in differ  # a whole 30-day month agrees ...
    assert 8928 not in differ  # ... and so does a 31-day one


def test_where_the_forms_differ_the_billed_rate_differs() -> None:
    # 30 windows at 1..30 Mbps: ceil(28.5) = 29th value = 29 Mbps; round(28.5) - 1 = 27 -> 28
    measure = measure_rate(_series(list(range(1, 31))), Period(0, 30 * W), "max_of_directions")
    assert measure.rank == 29
    assert _mbps(measure) == 29
    assert sorted(range(1, 31))[round(0.95 * 30) - 1] == 28


# -- a known series in each direction mode, priced ---------------------------------------

IN = list(range(1, 21))  # window i: i Mbps in
OUT = [21 - i for i in IN]  # and 21 - i Mbps out


@pytest.mark.parametrize(
    ("mode", "mbps"),
    [
        ("max_of_directions", 19),  # 95th of in = 19 (rank 19 of 20), of out = 19: max 19
        ("sum_of_directions", 21),  # in + out = 21 in every window
        ("max_per_window", 20),  # max(i, 21-i): 11,11,12,12,...,20,20 -> 19th = 20
    ],
)
def test_each_direction_mode_on_a_known_series(mode: str, mbps: int) -> None:
    samples = _series(IN, "in") + _series(OUT, "out")
    measure = measure_rate(samples, TWENTY, mode)  # type: ignore[arg-type]
    assert (measure.ranked, measure.rank) == (20, 19)
    assert _mbps(measure) == mbps
    assert measure.rate_bps == mbps * 10**6
    # CDR 10 Mbps for 100.00, overage 2.50 per Mbps above it
    model = CostModel(
        base_cost=Decimal(100),
        usage=Percentile95(Decimal(10), Decimal("2.50"), direction=mode),  # type: ignore[arg-type]
    )
    bill = price(model, measure, period=TWENTY)
    assert [str(line.amount) for line in bill.lines] == ["100.00", f"{(mbps - 10) * 2.5:.2f}"]
    assert bill.total == 100 + (mbps - 10) * Decimal("2.5")  # 122.50, 127.50, 125.00
    assert (bill.usage, bill.unit, bill.limit) == (mbps, "Mbps", 10)
    assert bill.overage_percent == (mbps - 10) * 10  # % of the CDR
    assert bill.inputs.rate == measure
    assert measure.per_direction == {"in": 19 * 10**6, "out": 19 * 10**6}  # each alone


def test_a_rate_that_does_not_terminate_is_billed_from_its_exact_value() -> None:
    # one window of 1 byte: 8 / 300 bit/s = 0.0266... bit/s
    measure = measure_rate([Sample("eth0", "in", 0, W, 1)], Period(0, W), "max_of_directions")
    assert measure.rate_exact == (2, 75)
    assert measure.rate_bps == Decimal("0.026666666667")
    # 10^9 bytes in 300 s = 26.666... Mbps; CDR 20 at 3 per Mbps: 6.666... x 3 = 20.00
    big = measure_rate([Sample("eth0", "in", 0, W, 10**9)], Period(0, W), "max_of_directions")
    model = CostModel(usage=Percentile95(Decimal(20), Decimal(3)))
    assert price(model, big, period=Period(0, W)).total == Decimal("20.00")


def test_under_the_cdr_costs_only_the_commitment_and_no_samples_bill_zero() -> None:
    model = CostModel(base_cost=Decimal(100), usage=Percentile95(Decimal(50), Decimal(3)))
    quiet = measure_rate(_series(IN), TWENTY, "max_of_directions")
    assert price(model, quiet, period=TWENTY).total == Decimal("100.00")
    empty = measure_rate([], TWENTY, "max_of_directions", interfaces=["eth0"])
    assert (empty.ranked, empty.rank, empty.window_start_ms) == (0, 0, None)
    assert price(model, empty, period=TWENTY).total == Decimal("100.00")
    assert [(g.direction, g.start_ms, g.end_ms) for g in empty.gaps] == [
        ("in", 0, 20 * W),
        ("out", 0, 20 * W),
    ]


# -- windows: sums across interfaces, duplicates, splits ----------------------------------


def test_windows_are_summed_across_interfaces_before_ranking() -> None:
    # eth0 carries i Mbps in window i, eth1 carries 20 - i: each 95th is 19, the sum is 20
    both = _series(IN, interface="eth0") + _series([20 - i for i in IN], interface="eth1")
    assert _mbps(measure_rate(both, TWENTY, "max_of_directions")) == 20


def test_duplicate_and_split_samples_in_a_window_change_nothing() -> None:
    plain = measure_rate(_series(IN), TWENTY, "sum_of_directions")
    duplicated = _series(IN) + _series(IN)
    twice = measure_rate(duplicated, TWENTY, "sum_of_directions")
    assert twice.duplicates == 20
    split = []
    for sample in _series(IN):
        cut = sample.start_ms + 137_000
        first = sample.bytes // 3
        split.append(Sample("eth0", "in", sample.start_ms, cut, first))
        split.append(Sample("eth0", "in", cut, sample.end_ms, sample.bytes - first))
    halves = measure_rate(split, TWENTY, "sum_of_directions")
    assert (twice.rate_exact, halves.rate_exact) == (plain.rate_exact, plain.rate_exact)
    # no "in" time is missing; the direction nobody measured is one gap
    assert halves.gaps == plain.gaps == [Gap("eth0", "out", 0, 20 * W, "no_data")]


def test_a_sample_across_a_window_boundary_is_shared_in_proportion_to_time() -> None:
    # [150 s, 450 s) with 600 bytes: 300 to each window; 300 bytes / 300 s = 8 bit/s
    samples = [Sample("eth0", "in", 150_000, 450_000, 600)]
    measure = measure_rate(samples, Period(0, 2 * W), "max_of_directions")
    assert measure.ranked == 2
    assert measure.rate_bps == 8
    assert [(g.start_ms, g.end_ms) for g in measure.gaps if g.direction == "in"] == [
        (0, 150_000),
        (450_000, 600_000),
    ]


def test_conflicting_or_overlapping_samples_are_refused_naming_them() -> None:
    with pytest.raises(PricingError) as same:
        measure_rate(_series([1]) + _series([2]), Period(0, W), "max_of_directions")
    assert same.value.where == "samples[1]"
    assert "samples[0] have the same span with other bytes" in same.value.problem
    overlapping = [Sample("eth0", "in", 0, 200_000, 5), Sample("eth0", "in", 100_000, W, 5)]
    with pytest.raises(PricingError, match=r"samples\[1\]: .* overlapping spans"):
        measure_rate(overlapping, Period(0, W), "max_of_directions")


@pytest.mark.parametrize(
    ("sample", "where"),
    [
        (Sample("eth0", "in", W, W, 1), "samples[0].endMs"),
        (Sample("eth0", "in", 0, W, -1), "samples[0].bytes"),
        (Sample("eth0", "up", 0, W, 1), "samples[0].direction"),  # type: ignore[arg-type]
        (Sample("", "in", 0, W, 1), "samples[0].interface"),
        (Sample("eth0", "in", 0, W, 1, 0), "samples[0].speedBps"),
    ],
)
def test_a_bad_sample_is_refused_naming_its_field(sample: Sample, where: str) -> None:
    with pytest.raises(PricingError) as caught:
        measure_rate([sample], Period(0, W), "max_of_directions")
    assert caught.value.where == where


def test_the_period_must_start_and_end_on_a_window_boundary() -> None:
    with pytest.raises(PricingError, match=r"period.endMs: 301000 is not on a 5-minute"):
        measure_rate([], Period(0, W + 1000), "max_of_directions")


def test_an_interface_not_on_the_bill_is_refused_and_samples_outside_are_counted() -> None:
    with pytest.raises(PricingError, match="interface 'eth9' is not on this bill"):
        measure_rate(
            _series([1], interface="eth9"), Period(0, W), "max_of_directions", interfaces=["eth0"]
        )
    later = [Sample("eth0", "in", 5 * W, 6 * W, 99), *_series([1])]
    assert measure_rate(later, Period(0, W), "max_of_directions").outside == 1


# -- over-speed deltas and gaps are reported, not billed -----------------------------------


def test_a_delta_above_the_interface_speed_is_a_gap_not_a_burst() -> None:
    # 20 windows at 1 Mbps on a 100 Mbps port, two of them claim 1000 Mbps (a counter
    # glitch). Billed as data they would be the top two and rank 19 of 20 = 1000 Mbps.
    # Left out, 18 windows remain: rank ceil(17.1) = 18 -> 1 Mbps.
    rates: list[Fraction | int] = [1] * 20
    rates[4] = rates[12] = 1000
    measure = measure_rate(_series(rates, speed=100 * 10**6), TWENTY, "max_of_directions")
    assert (measure.ranked, measure.rank) == (18, 18)
    assert _mbps(measure) == 1
    over = [g for g in measure.gaps if g.reason == "over_speed"]
    assert over == [
        Gap("eth0", "in", 4 * W, 5 * W, "over_speed"),
        Gap("eth0", "in", 12 * W, 13 * W, "over_speed"),
    ]
    # exactly at line rate is plausible and billed
    full = measure_rate(_series([100], speed=100 * 10**6), Period(0, W), "max_of_directions")
    assert _mbps(full) == 100
    assert not [g for g in full.gaps if g.reason == "over_speed"]


def test_a_missing_window_is_a_gap_and_is_not_ranked() -> None:
    samples = [s for s in _series(IN) if s.start_ms != 7 * W]
    measure = measure_rate(samples, TWENTY, "max_of_directions")
    assert measure.ranked == 19
    assert Gap("eth0", "in", 7 * W, 8 * W, "no_data") in measure.gaps
    # a listed interface that sent nothing is a gap over the whole period in both directions
    silent = measure_rate(_series(IN), TWENTY, "max_of_directions", interfaces=["eth0", "eth1"])
    assert Gap("eth1", "in", 0, 20 * W, "no_data") in silent.gaps
    assert Gap("eth1", "out", 0, 20 * W, "no_data") in silent.gaps


def test_a_rate_model_refuses_a_volume_and_a_measure_of_another_mode() -> None:
    model = CostModel(usage=Percentile95(Decimal(1), Decimal(1), direction="sum_of_directions"))
    with pytest.raises(PricingError, match="needs a RateMeasure"):
        price(model, Volume(1, "GB"), period=TWENTY)
    measure = measure_rate(_series(IN), TWENTY, "max_of_directions")
    with pytest.raises(PricingError, match=r"usage\.mode: measured as max_of_directions"):
        price(model, measure, period=TWENTY)
    with pytest.raises(PricingError, match="a volume model needs a Volume"):
        price(CostModel(), measure, period=TWENTY)
    same = CostModel(usage=Percentile95(Decimal(1), Decimal(1)))
    with pytest.raises(PricingError, match=r"usage\.period: the rate was measured outside"):
        price(same, measure, period=Period(0, 10 * W))
    with pytest.raises(PricingError, match="mode: 'in' is not one of max_of_directions"):
        measure_rate([], TWENTY, "in")  # type: ignore[arg-type]
    with pytest.raises(PricingError, match="limitBase: a 95th-percentile model's allowance"):
        price(same, measure, period=TWENTY, limit_base=10**12)


# -- property: random series against a plain reference ------------------------------------


def _reference(windows: list[dict[tuple[str, str], int]], mode: str) -> Fraction:
    """Plain 95th percentile: per window sum over interfaces, combine directions, sort,
    take the ceil(0.95 n)-th value (1-based); rate = bytes x 8 / 300."""

    def p95(values: list[int]) -> int:
        if not values:
            return 0
        values = sorted(values)
        return values[math.ceil(Fraction(95, 100) * len(values)) - 1]

    def total(window: dict[tuple[str, str], int], direction: str) -> int:
        return sum(b for (_, d), b in window.items() if d == direction)

    def has(window: dict[tuple[str, str], int], direction: str) -> bool:
        return any(d == direction for (_, d) in window)

    if mode == "max_of_directions":
        best = max(p95([total(w, d) for w in windows if has(w, d)]) for d in ("in", "out"))
    elif mode == "sum_of_directions":
        best = p95([total(w, "in") + total(w, "out") for w in windows if w])
    else:
        best = p95([max(total(w, "in"), total(w, "out")) for w in windows if w])
    return Fraction(best * 8, 300)


cells = st.dictionaries(
    st.tuples(st.sampled_from(["eth0", "eth1", "eth2"]), st.sampled_from(["in", "out"])),
    st.integers(0, 10**10),
    max_size=6,
)


@given(
    st.lists(cells, min_size=1, max_size=60),
    st.sampled_from(["max_of_directions", "sum_of_directions", "max_per_window"]),
    st.randoms(use_true_random=False),
)
def test_random_series_match_the_plain_reference(
    windows: list[dict[tuple[str, str], int]], mode: str, rnd: object
) -> None:
    import random

    assert isinstance(rnd, random.Random)
    samples: list[Sample] = []
    for index, window in enumerate(windows):
        start = index * W
        for (interface, direction), amount in window.items():
            how = rnd.choice(["whole", "split", "duplicate"])
            if how == "split":  # two samples of one window: the same bytes in total
                cut, part = start + rnd.randrange(1, W), rnd.randint(0, amount)
                samples.append(Sample(interface, direction, start, cut, part))  # type: ignore[arg-type]
                samples.append(Sample(interface, direction, cut, start + W, amount - part))  # type: ignore[arg-type]
            else:
                sample = Sample(interface, direction, start, start + W, amount)  # type: ignore[arg-type]
                samples += [sample, sample] if how == "duplicate" else [sample]
    rnd.shuffle(samples)
    measure = measure_rate(samples, Period(0, len(windows) * W), mode)  # type: ignore[arg-type]
    assert Fraction(*measure.rate_exact) == _reference(windows, mode)
    assert measure.rank == nearest_rank(measure.ranked)
