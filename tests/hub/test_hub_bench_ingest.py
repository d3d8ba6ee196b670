"""``resmon bench --only ingest`` (quick) runs against the test servers and reports."""

from __future__ import annotations

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_the_ingest_bench_posts_events_the_api_accepts(
    monkeypatch: pytest.MonkeyPatch, pg_dsn: str, redis_url: str, kafka_bootstrap: str
) -> None:
    """The suite once posted events of 2025 that the API now refuses as expired."""
    monkeypatch.setenv("DATABASE_URL", pg_dsn)
    monkeypatch.setenv("REDIS_URL", redis_url)
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", kafka_bootstrap)
    from benchmarks.hub import ingest_suite

    (figure,) = ingest_suite(quick=True)
    assert figure.suite == "ingest"
    assert figure.value > 0
    assert figure.baseline_value is not None
    assert figure.baseline_value > 0
