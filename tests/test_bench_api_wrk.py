"""The api benchmark's reading of wrk's report, on reports captured from real runs.

The fixtures are wrk 4.1 (Debian) output of ``resmon bench --only api``'s
scripts against a running hub: single ingest posts, and the same with a
revoked key (every response a 401).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.api import parse_wrk

FIXTURES = Path(__file__).parent / "fixtures" / "wrk"


def test_a_real_ingest_report_gives_rate_percentiles_and_status_counts() -> None:
    text = (FIXTURES / "ingest-200.txt").read_text()
    r = parse_wrk(text)
    assert r.connections == 200
    assert r.requests == sum(r.statuses.values())
    assert set(r.statuses) == {200}
    assert r.not_200 == 0
    assert r.requests_per_s == pytest.approx(r.requests / r.seconds, rel=0.05)
    # the figures as wrk printed them (555.81ms, 2.99s, 1250 requests in 5.09s)
    assert (r.requests, r.seconds, r.requests_per_s) == (1250, 5.09, 245.49)
    assert r.p50_ms == pytest.approx(555.81)
    assert r.p99_ms == pytest.approx(2990)
    assert r.statuses == {200: 1250}


def test_a_real_report_of_refused_requests_counts_them() -> None:
    r = parse_wrk((FIXTURES / "ingest-401.txt").read_text())
    assert r.statuses == {401: 5005}
    assert (r.connections, r.p50_ms, r.p99_ms) == (20, 17.51, 96.22)
    assert r.non_2xx_3xx == r.statuses[401] == r.requests
    assert r.not_200 == r.requests


def test_times_in_every_wrk_unit_are_milliseconds() -> None:
    text = (FIXTURES / "ingest-200.txt").read_text()
    head, _, tail = text.partition("Latency Distribution")
    lines = tail.splitlines()
    lines[1:5] = ["  50%  950.00us", "  75%  2.50ms", "  90%  1.20s", "  99%  1.50m"]
    r = parse_wrk(head + "Latency Distribution" + "\n".join(lines))
    assert r.p50_ms == pytest.approx(0.95)
    assert r.p99_ms == pytest.approx(90_000)


def test_output_that_is_not_a_report_is_refused_naming_what_is_missing() -> None:
    text = (FIXTURES / "ingest-200.txt").read_text()
    without = "\n".join(line for line in text.splitlines() if "99%" not in line)
    with pytest.raises(ValueError, match="latency distribution 99%"):
        parse_wrk(without)
    scriptless = "\n".join(line for line in text.splitlines() if not line.startswith("status "))
    with pytest.raises(ValueError, match="status <code> <count>"):
        parse_wrk(scriptless)
