"""Reading Prometheus metrics in tests, through the public registry API."""

from __future__ import annotations

from typing import Any

__all__ = ["sample"]


def sample(metrics: Any, name: str, **labels: str) -> float:
    """The value of sample ``name`` (e.g. ``resmon_hub_readings_consumed_total``), 0 if unset.

    ``metrics`` is a component's metrics object (``HubMetrics``, ``AgentMetrics``):
    read through its registry, the public API, as a scraper would see the value.
    """
    value = metrics.registry.get_sample_value(name, labels or None)
    return 0.0 if value is None else float(value)
