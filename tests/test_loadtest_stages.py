"""Percentiles per stage read back from scraped Prometheus histogram pages."""

from __future__ import annotations

import math

from prometheus_client import CollectorRegistry, Histogram, generate_latest

from loadtest._stages import HUB_STAGES, stage_buckets, stage_latencies


def _page(registry: CollectorRegistry) -> dict[str, float]:
    """What ``loadtest._procs.scrape`` makes of a /metrics page."""
    values: dict[str, float] = {}
    for line in generate_latest(registry).decode().splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            values[name] = float(value)
    return values


def _histogram() -> tuple[CollectorRegistry, Histogram]:
    registry = CollectorRegistry()
    hist = Histogram(HUB_STAGES, "stages", ["stage"], buckets=(0.01, 0.1, 1.0), registry=registry)
    return registry, hist


def test_percentiles_interpolate_inside_the_bucket_that_holds_the_rank() -> None:
    registry, hist = _histogram()
    for _ in range(50):
        hist.labels("fetched").observe(0.005)  # (0, 0.01]
    for _ in range(50):
        hist.labels("fetched").observe(0.5)  # (0.1, 1]
    got = stage_latencies(stage_buckets([_page(registry)], HUB_STAGES))["fetched"]
    assert got.count == 100
    assert math.isclose(got.p50_ms, 10.0)  # rank 50: the top of the first bucket
    assert math.isclose(got.p99_ms, 100 + 900 * 49 / 50)  # rank 99 of (0.1, 1]: 98 %


def test_pages_add_up_and_a_window_is_the_difference_of_two_scrapes() -> None:
    registry_a, hist_a = _histogram()
    registry_b, hist_b = _histogram()
    hist_a.labels("sent").observe(0.05)
    before = stage_buckets([_page(registry_a), _page(registry_b)], HUB_STAGES)
    hist_a.labels("sent").observe(5.0)  # beyond the last bound: +Inf
    hist_b.labels("sent").observe(5.0)
    hist_b.labels("decided").observe(0.05)
    after = stage_buckets([_page(registry_a), _page(registry_b)], HUB_STAGES)
    assert stage_latencies(after)["sent"].count == 3
    window = stage_latencies(after, before)
    assert list(window) == ["sent", "decided"]  # in the order a reading passes them
    assert window["sent"].count == 2
    assert window["sent"].p50_ms == 1000.0  # in +Inf: the largest finite bound
    assert window["decided"].count == 1
