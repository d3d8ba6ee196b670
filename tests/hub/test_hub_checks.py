"""The actor's checks on pure data: gauges with hysteresis, anomaly robustness, forecast."""

from __future__ import annotations

import datetime as dt

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hub.actors.actor import Change, CheckSettings, ResourceActor
from hub.checks import Level, Transition
from hub.checks.anomaly import AnomalySettings, fold, zscore
from hub.checks.forecast import predict
from protocol import UsageReading

NOV = int(dt.datetime(2025, 11, 1, tzinfo=dt.UTC).timestamp() * 1000)
END = int(dt.datetime(2025, 12, 1, tzinfo=dt.UTC).timestamp() * 1000)
PERIOD = 2025 * 12 + 10
MIN = 60_000


def actor(kind: str = "delta", limit: int | None = 1000) -> ResourceActor:
    return ResourceActor(
        key="c/storage" if kind == "level" else "c/bandwidth",
        resource_id="00000000-0000-0000-0000-000000000001",
        customer_id="c",
        resource_type="storage" if kind == "level" else "bandwidth",
        unit="GB",
        kind=kind,
        total=0,
        period=-1,
        limit=limit,
        warning_bp=8000,
        critical_bp=9500,
        level=Level.NONE,
    )


def feed(a: ResourceActor, values: list[int], *, step: int = 10 * MIN) -> list[Change]:
    out: list[Change] = []
    kind = a.kind
    for i, v in enumerate(values):
        end = NOV + (a.points + 1) * step
        r = UsageReading(
            customer_id="c",
            resource_type=a.resource_type,
            resource_key=a.key,
            value=v,
            unit="byte",
            start_ms=end - step,
            end_ms=end,
            kind=kind,  # type: ignore[arg-type]
        )
        assert a.handle(r, PERIOD, (NOV, END), CheckSettings(), out), i
    return out


def test_a_gauge_warns_once_and_resolves_only_below_the_hysteresis_gap() -> None:
    a = actor("level", limit=10**12)  # no pace: the forecast needs a rising level
    gb = 10**9
    changes = feed(a, [700 * gb, 810 * gb, 790 * gb, 760 * gb, 820 * gb, 740 * gb, 700 * gb])
    assert [(c.check, c.transition, c.level) for c in changes] == [
        ("threshold", Transition.RAISE_WARNING, Level.WARNING),
        ("threshold", Transition.RESOLVE, Level.NONE),
    ]
    assert changes[1].total == 740 * gb  # 76 % and 79 % kept the warning open


def test_a_flat_new_resource_gets_no_anomaly_before_an_hour_and_ten_points() -> None:
    a = actor(limit=None)
    # ten one-minute readings, then a drop: too little history for a verdict
    assert feed(a, [100] * 10 + [10], step=MIN) == []


def test_a_tenfold_spike_is_one_anomaly_resolved_by_the_next_normal_reading() -> None:
    a = actor(limit=None)
    values = [1000 + (i * 37) % 100 for i in range(30)]
    changes = feed(a, [*values, 10_000, 1010, 10_000])
    assert [(c.check, c.transition) for c in changes] == [
        ("anomaly", Transition.RAISE),
        ("anomaly", Transition.RESOLVE),
        ("anomaly", Transition.RAISE),
    ]
    assert changes[0].z > 3


def test_the_zscore_ignores_history_older_than_the_window() -> None:
    s = AnomalySettings()
    w, mean, m2, last = 0.0, 0.0, 0.0, 0
    for i in range(50):
        w, mean, m2, last = fold(100.0 + i % 3, w, mean, m2, last, NOV + i * MIN, s.window_ms)
    # a week later the 50 points weigh ~ 50 * e^-7 < min_weight: no verdict
    assert zscore(1e6, w, mean, m2, last, last + 7 * 24 * 3_600_000, s) is None
    assert zscore(1e6, w, mean, m2, last, last + MIN, s) > 3


def test_a_resource_on_pace_for_its_limit_gets_a_dated_confident_forecast() -> None:
    # 1000 per day since the 1st, at noon on the 10th: 9500 of 20000
    at = NOV + int(9.5 * 86_400_000)
    got = predict(
        total=9500,
        limit=20_000,
        since_ms=NOV,
        base=0,
        at_ms=at,
        end_ms=END,
        points=100,
        rate_std=0.001,
    )
    assert got is not None
    crossing, confidence, projected = got
    assert dt.datetime.fromtimestamp(crossing / 1000, tz=dt.UTC).date() == dt.date(2025, 11, 21)
    assert confidence > 0.99
    assert projected == 30_000


def test_a_slow_resource_gets_no_forecast_and_unlimited_resources_none_at_all() -> None:
    a = actor(limit=10**9)
    assert [c for c in feed(a, [1000] * 50) if c.check == "forecast"] == []
    b = actor(limit=None)
    assert feed(b, [10**6] * 50) == []


def test_the_actors_inlined_anomaly_math_matches_the_reference_functions() -> None:
    a = actor(limit=None)
    s = AnomalySettings()
    w, mean, m2, last = 0.0, 0.0, 0.0, 0
    values = [1000 + (i * 37) % 100 for i in range(40)] + [5000]
    feed(a, values[:-1])
    for i, v in enumerate(values[:-1]):
        w, mean, m2, last = fold(
            v / 600.0, w, mean, m2, last, NOV + (i + 1) * 10 * MIN, s.window_ms
        )
    assert (a.weight, a.mean, a.m2, a.last_ms) == pytest.approx((w, mean, m2, last))
    at = NOV + 41 * 10 * MIN
    changes = feed(a, values[-1:])
    assert changes[0].z == pytest.approx(zscore(5000 / 600.0, w, mean, m2, last, at, s))


def test_the_batch_path_decides_exactly_what_handle_decides_reading_by_reading() -> None:
    """``ResourceActor.run`` over a key's readings (the registry's batch path) == handle()."""

    def series(kind: str) -> list[UsageReading]:
        out, t = [], NOV - 10 * 86_400_000  # starts in October: a month rollover inside
        for i in range(400):
            t += 3_600_000 if i % 50 else 60_000
            v = 10**9 * (5 + (i * 37) % 11) if kind == "level" else 10**7 * (3 + (i * 37) % 5)
            if i in (120, 121, 300):
                v *= 40  # spikes: anomalies, a forecast
            out.append(
                UsageReading(
                    customer_id="c",
                    resource_type="bandwidth",
                    resource_key="c/bandwidth",
                    value=v,
                    unit="byte",
                    start_ms=t - 60_000,
                    end_ms=t,
                    kind=kind,  # type: ignore[arg-type]
                )
            )
        late = msgspec.structs.replace(out[300], start_ms=NOV - 120_000, end_ms=NOV - 60_000)
        return [*out[:301], late, *out[301:]]

    seen: set[str] = set()
    for kind, limit in (("delta", 4 * 10**9), ("level", 10**11), ("delta", None)):
        changes, late = _agree(kind, limit, series(kind), chunk=7)
        assert late == 1
        seen |= {c.check for c in changes}
    assert seen == {"threshold", "anomaly", "forecast"}


@st.composite
def _series(draw: st.DrawFn) -> tuple[str, int | None, list[UsageReading]]:
    """A random resource history: steady stretches, bursts, quiet spells, a month boundary."""
    kind = draw(st.sampled_from(["delta", "level"]))
    limit = draw(st.sampled_from([None, 10**6, 10**8, 10**10, 10**12]))
    t = NOV - draw(st.integers(0, 3)) * 86_400_000  # may start in October
    readings = []
    for _ in range(draw(st.integers(1, 120))):
        step = draw(st.sampled_from([60_000, 300_000, 3_600_000, 6 * 3_600_000]))
        back = draw(st.sampled_from([0] * 9 + [1]))  # now and then out of order
        t += step
        end = t - back * step // 2
        base = draw(st.integers(0, 10**6))
        quiet = draw(st.integers(0, 3)) == 0  # a quiet spell lets a forecast resolve
        value = 0 if quiet else base * draw(st.sampled_from([1] * 9 + [50]))  # bursts
        readings.append(
            UsageReading(
                customer_id="c",
                resource_type="bandwidth",
                resource_key="c/bandwidth",
                value=value,
                unit="byte",
                start_ms=end - step,
                end_ms=end,
                kind=kind,  # type: ignore[arg-type]
            )
        )
    return kind, limit, readings


@settings(max_examples=300, deadline=None)
@given(_series(), st.integers(1, 9))
def test_the_inlined_batch_path_and_the_reference_checks_agree_on_random_series(
    case: tuple[str, int | None, list[UsageReading]], chunk: int
) -> None:
    """One source of truth: ``run`` (inlined, batches) == ``handle`` (hub.checks.reading)."""
    kind, limit, readings = case
    _agree(kind, limit, readings, chunk=chunk)


def _agree(
    kind: str, limit: int | None, readings: list[UsageReading], *, chunk: int
) -> tuple[list[Change], int]:
    """Feed ``readings`` through both paths; assert identical changes, late counts and state.

    One actor takes them one at a time through ``handle`` (the reference
    checks), the other in batches of ``chunk`` through the registry's inlined
    path. Returns the changes and the late count.
    """
    from zoneinfo import ZoneInfo

    from hub.actors.registry import Registry

    one, batch = actor(kind, limit), actor(kind, limit)
    registry = Registry(None, tz=ZoneInfo("UTC"))  # type: ignore[arg-type]
    expected: list[Change] = []
    late = 0
    for r in readings:
        period = registry._month(r.end_ms)[0]
        late += not one.handle(r, period, registry.bounds(period), CheckSettings(), expected)
    got: list[Change] = []
    batch_late = 0
    for i in range(0, len(readings), chunk):
        o = registry.apply_loaded(batch, 0, readings[i : i + chunk], 0.0)
        assert o is not None
        got.extend(o.changes)
        batch_late += o.late
    assert got == expected
    assert batch_late == late
    assert batch.stats == one.stats
    state = ("total", "period", "level", "anomaly", "forecast")
    assert [getattr(batch, k) for k in state] == [getattr(one, k) for k in state]
    return got, late
