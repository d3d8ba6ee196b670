"""Hub benchmarks for ``resmon bench``: actor core, memory, end to end, HTTP ingest.

Every suite returns :class:`benchmarks.runner.Figure` values and is bounded in
time (``quick`` for a smoke run). Baselines are measured in the same run:

- ``core_suite``: readings/s through threshold + anomaly + forecast, the way
  the registry drives actors (group a batch by key, one actor call per key),
  beside the plan's way (a per-resource list of the last 24 h scanned for
  mean / standard deviation on every reading, dict lookups, float math);
  RSS of a process holding 1,000,000 resident actors in the registry's
  shards, beside the same resources held as one dict each.
- ``e2e_suite``: a ``resmon hub run`` child process against the broker,
  PostgreSQL and Redis (``DATABASE_URL`` / ``REDIS_URL`` /
  ``KAFKA_BOOTSTRAP_SERVERS``, or embedded servers when unset): the sustained
  rate at which it drains a pre-loaded backlog, and the latency from a
  reading being handed to the Kafka producer to its alert arriving on
  ``resource.alerts`` (committed in PostgreSQL and published by then), as an
  HdrHistogram while a paced stream runs.
- ``ingest_suite``: events/s accepted by ``POST /api/metrics/ingest`` in
  batches of 500, beside one event per request.
"""

from __future__ import annotations

import datetime as dt
import math
import os
import subprocess
import sys
import time
from collections import deque
from typing import Any
from zoneinfo import ZoneInfo

from hub.actors.actor import ResourceActor
from hub.actors.registry import Registry
from hub.checks.thresholds import Level
from protocol import UsageReading

from .runner import Figure

__all__ = ["core_suite", "e2e_suite", "ingest_suite"]

_T0 = int(dt.datetime(2025, 11, 3, tzinfo=dt.UTC).timestamp() * 1000)
_STEP = 600_000  # a reading every 10 minutes: 144 points in the anomaly window
_DAY = 24 * 3_600_000


def _readings(n_keys: int, per_key: int) -> list[list[UsageReading]]:
    """``per_key`` batches, each one reading of every key, a minute apart."""
    return [
        [
            UsageReading(
                customer_id=f"c{i}",
                resource_type="bandwidth",
                resource_key=f"c{i}/bandwidth",
                value=1_000_000 + (i * 7919 + j * 104729) % 200_001 - 100_000,
                unit="byte",
                start_ms=_T0 + j * _STEP,
                end_ms=_T0 + (j + 1) * _STEP,
            )
            for i in range(n_keys)
        ]
        for j in range(per_key)
    ]


def _actor(i: int, limit: int | None = 10**12) -> ResourceActor:
    """An actor in steady state: two days of history, so every check runs on every reading."""
    a = ResourceActor(
        key=f"c{i}/bandwidth",
        resource_id=f"00000000-0000-0000-0000-{i:012d}",
        customer_id=f"c{i}",
        resource_type="bandwidth",
        unit="GB",
        kind="delta",
        total=0,
        period=-1,
        limit=limit,
        warning_bp=8000,
        critical_bp=9500,
        level=Level.NONE,
    )
    a.period = 2025 * 12 + 10
    a.total = 288 * 1_000_000
    a.weight, a.mean, a.m2 = 144.0, 1666.7, 144.0 * 96.0**2
    a.last_ms, a.points, a.first_ms = _T0, 288, _T0 - 2 * _DAY
    return a


def _core_rate(batches: list[list[UsageReading]], n_keys: int) -> float:
    """readings/s of the registry's per-batch path (group by key, run each actor)."""
    registry = Registry(None, tz=ZoneInfo("UTC"))
    actors = {f"c{i}/bandwidth": _actor(i) for i in range(n_keys)}
    apply = registry.apply_loaded  # a shard worker's per-key step, without the mailbox hop
    count = 0
    started = time.perf_counter()
    for batch in batches:
        by_key: dict[str, list[UsageReading]] = {}
        for r in batch:
            got = by_key.get(r.resource_key)
            if got is None:
                by_key[r.resource_key] = [r]
            else:
                got.append(r)
        now = time.monotonic()
        for key, readings in by_key.items():
            if apply(actors[key], 0, readings, now) is None:
                raise AssertionError("a benchmark reading failed")
        count += len(batch)
    return count / (time.perf_counter() - started)


def _one_at_a_time_rate(batches: list[list[UsageReading]], n_keys: int, *, inlined: bool) -> float:
    """readings/s of the checks alone, one reading per call, no batch bookkeeping.

    ``inlined``: ``ResourceActor.run`` (the arithmetic inlined, as the
    registry runs it); otherwise ``ResourceActor.handle``, the reference
    checks of ``hub.checks.reading`` built from the check functions.
    """
    from hub.checks import CheckSettings

    actors = {f"c{i}/bandwidth": _actor(i) for i in range(n_keys)}
    settings = CheckSettings()
    period = 2025 * 12 + 10
    bounds = (0, int(dt.datetime(2025, 12, 1, tzinfo=dt.UTC).timestamp() * 1000))
    out: list[Any] = []
    lo, hi, end = -math.inf, math.inf, bounds[1]
    count = 0
    started = time.perf_counter()
    for batch in batches:
        if inlined:
            for r in batch:
                actors[r.resource_key].run((r,), period, lo, hi, end, _no_month, settings, out)
        else:
            for r in batch:
                actors[r.resource_key].handle(r, period, bounds, settings, out)
        count += len(batch)
    return count / (time.perf_counter() - started)


def _no_month(ms: int) -> tuple[int, int, int]:  # pragma: no cover - every reading is in range
    raise AssertionError(f"no billing month for {ms}")


def _naive_rate(batches: list[list[UsageReading]], n_keys: int) -> float:
    """The plan's approach: per reading, scan the last 24 h of points for mean / std."""
    day = _DAY
    history = [(_T0 - k * _STEP, 1666.7 + (k % 7) * 10.0) for k in range(143, -1, -1)]
    state: dict[str, dict[str, object]] = {
        f"c{i}/bandwidth": {
            "total": 288 * 1_000_000,
            "limit": 10**12,
            "window": deque(history),
            "alerts": [],
        }
        for i in range(n_keys)
    }
    count = 0
    started = time.perf_counter()
    for batch in batches:
        for r in batch:
            s = state[r.resource_key]
            s["total"] = s["total"] + r.value  # type: ignore[operator]
            pct = s["total"] / s["limit"] * 100  # type: ignore[operator]
            if pct >= 95 or pct >= 80:
                s["alerts"].append(pct)  # type: ignore[attr-defined]
            window: deque[tuple[int, float]] = s["window"]  # type: ignore[assignment]
            x = r.value * 1000 / (r.end_ms - r.start_ms)
            while window and window[0][0] < r.end_ms - day:
                window.popleft()
            if len(window) > 10:
                values = [v for _, v in window]
                avg = sum(values) / len(values)
                std = math.sqrt(sum((v - avg) ** 2 for v in values) / len(values)) or 1e-12
                if abs((x - avg) / std) > 3:
                    s["alerts"].append(x)  # type: ignore[attr-defined]
                # forecast: linear pace over the period so far
                elapsed = r.end_ms - _T0
                _ = s["total"] / elapsed * (30 * day)  # type: ignore[operator]
            window.append((r.end_ms, x))
        count += len(batch)
    return count / (time.perf_counter() - started)


def _rss_mib() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _rss_child(n: int, naive: bool) -> None:
    """Hold ``n`` resident resources, print the process RSS in MiB (run in a child)."""
    before = _rss_mib()
    if naive:
        held: object = {
            f"c{i}/bandwidth": {
                "key": f"c{i}/bandwidth",
                "resource_id": f"00000000-0000-0000-0000-{i:012d}",
                "customer_id": f"c{i}",
                "resource_type": "bandwidth",
                "unit": "GB",
                "kind": "delta",
                "total": 1_000_000_000 + i,
                "limit": 10**12,
                "warning": 80.0,
                "critical": 95.0,
                "level": "NONE",
                "stats": [0.5 + i, 1.5 * i, 2.5 * i, _T0 + i, 11, _T0, 0],
            }
            for i in range(n)
        }
    else:
        registry = Registry(None, tz=ZoneInfo("UTC"))
        for i in range(n):
            a = _actor(i)
            a.total = 1_000_000_000 + i
            a.weight, a.mean, a.m2 = 0.5 + i, 1.5 * i, 2.5 * i
            a.last_ms, a.points, a.first_ms = _T0 + i, 11, _T0 - i
            registry._shards[registry._shard(a.key)].actors[a.key] = a
        held = registry
    print(f"{_rss_mib():.1f} {before:.1f} {len(held) if hasattr(held, '__len__') else 0}")


def _rss(n: int, naive: bool) -> float:
    out = subprocess.run(  # noqa: S603 - this interpreter, fixed arguments
        [sys.executable, "-m", "benchmarks.hub", "rss", str(n), "naive" if naive else "actors"],
        capture_output=True,
        text=True,
        check=True,
        timeout=240,
    ).stdout.split()
    return float(out[0])


def core_suite(quick: bool) -> list[Figure]:
    n_keys = 10_000
    per_key = 10 if quick else 60
    batches = _readings(n_keys, per_key)
    rounds = 2 if quick else 3
    ours = max(_core_rate(batches, n_keys) for _ in range(rounds))
    naive_batches = batches[:3] if quick else batches[:10]
    naive = max(_naive_rate(naive_batches, n_keys) for _ in range(rounds))
    cmd = "resmon bench --only hub-core" + (" --quick" if quick else "")
    figures = [
        Figure(
            suite="hub-core",
            name="actor core, threshold + anomaly + forecast",
            value=ours,
            unit="readings/s/core",
            command=cmd,
            target=500_000,
            baseline_name="plan: 24 h scan per reading",
            baseline_value=naive,
            notes=(
                f"{n_keys:,} resources in steady state (2 days of history, 144 points in "
                f"the 24 h window) x {per_key} readings, best of {rounds}; one core, CPython; "
                "the registry's batch path without the mailbox hop."
            ),
        )
    ]
    inlined = max(_one_at_a_time_rate(batches, n_keys, inlined=True) for _ in range(rounds))
    reference = max(_one_at_a_time_rate(batches, n_keys, inlined=False) for _ in range(rounds))
    figures.append(
        Figure(
            suite="hub-core",
            name="checks alone, inlined (ResourceActor.run), one reading at a time",
            value=inlined,
            unit="readings/s/core",
            command=cmd,
            target=500_000,
            baseline_name="reference checks (hub.checks.reading)",
            baseline_value=reference,
            notes="the same readings, one call each, no batch bookkeeping: the inlined "
            "arithmetic the registry runs against ResourceActor.handle, which calls the readable "
            "reference checks it is tested against (tests/hub/test_hub_checks.py); the ratio is "
            "what inlining buys.",
        )
    )
    n = 1_000_000
    rss = _rss(n, naive=False)
    naive_rss = _rss(n // 4 if quick else n, naive=True) * (4 if quick else 1)
    figures.append(
        Figure(
            suite="hub-core",
            name="RSS with 1,000,000 resident resources",
            value=rss,
            unit="MiB",
            command=cmd,
            higher_is_better=False,
            target=1024,
            baseline_name="a dict per resource" + (" (250k x 4)" if quick else ""),
            baseline_value=naive_rss,
            notes="whole process RSS (interpreter + hub modules included), in a fresh child.",
        )
    )
    return figures


def e2e_suite(quick: bool) -> list[Figure]:
    from .hub_e2e import run_e2e

    return run_e2e(quick)


def markdown_sections() -> list[str]:
    """The hub-e2e latency per stage, once after the run that measured it."""
    from .hub_e2e import markdown_sections as e2e_sections

    return e2e_sections()


def ingest_suite(quick: bool) -> list[Figure]:
    from .hub_e2e import run_ingest

    return run_ingest(quick)


if __name__ == "__main__" and len(sys.argv) == 4 and sys.argv[1] == "rss":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    _rss_child(int(sys.argv[2]), sys.argv[3] == "naive")
