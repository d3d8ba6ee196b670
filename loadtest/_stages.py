"""The per-stage latency breakdown, read back from the agents' and hubs' histograms.

The agent exports ``resmon_agent_reading_stage_seconds{stage}`` and the hub
``resmon_hub_reading_stage_seconds{stage}`` (Prometheus histograms). From
scraped pages (:func:`loadtest._procs.scrape`) this module adds the pages of
several processes, takes the difference between two scrapes (a window), and
estimates percentiles as Prometheus' ``histogram_quantile`` does: linear
inside the bucket that holds the rank, the lowest bucket starting at 0. An
estimate is only as fine as the buckets (a 1-2-5 ladder); a rank in the
``+Inf`` bucket reports the largest finite bound.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping

import msgspec

__all__ = [
    "AGENT_STAGES",
    "HUB_STAGES",
    "StageLatency",
    "render_stages",
    "stage_buckets",
    "stage_latencies",
]

AGENT_STAGES = "resmon_agent_reading_stage_seconds"
HUB_STAGES = "resmon_hub_reading_stage_seconds"

#: the hub's stages in the order a reading passes them
STAGE_ORDER = (
    "buffered",
    "acked",
    "sent",
    "fetched",
    "decided",
    "committed",
    "published",
    "poll_to_commit",
)

_LABEL = re.compile(r'(\w+)="([^"]*)"')


class StageLatency(msgspec.Struct, kw_only=True):
    """One stage: observations and estimated percentiles, milliseconds."""

    count: int = 0
    p50_ms: float = 0.0
    p99_ms: float = 0.0


Buckets = dict[str, dict[float, float]]


def stage_buckets(pages: Iterable[Mapping[str, float]], metric: str) -> Buckets:
    """Cumulative bucket counts per stage (``{stage: {le: count}}``), summed over ``pages``."""
    out: Buckets = {}
    prefix = f"{metric}_bucket{{"
    for page in pages:
        for name, value in page.items():
            if not name.startswith(prefix):
                continue
            labels = dict(_LABEL.findall(name[len(prefix) - 1 :]))
            stage, le = labels.get("stage"), labels.get("le")
            if stage is None or le is None:
                continue
            bound = math.inf if le == "+Inf" else float(le)
            per = out.setdefault(stage, {})
            per[bound] = per.get(bound, 0.0) + value
    return out


def _quantile(q: float, buckets: Mapping[float, float]) -> float:
    bounds = sorted(buckets)
    total = buckets[bounds[-1]]
    rank = q * total
    lower, below = 0.0, 0.0
    for bound in bounds:
        count = buckets[bound]
        if count >= rank:
            if math.isinf(bound):
                return lower
            inside = count - below
            return lower + (bound - lower) * ((rank - below) / inside if inside else 1.0)
        lower, below = bound, count
    return lower


def stage_latencies(after: Buckets, before: Buckets | None = None) -> dict[str, StageLatency]:
    """Per stage, the observations between ``before`` and ``after`` (or all of ``after``)."""
    out: dict[str, StageLatency] = {}
    order = {name: i for i, name in enumerate(STAGE_ORDER)}
    for stage in sorted(after, key=lambda s: (order.get(s, len(order)), s)):
        old = (before or {}).get(stage, {})
        window = {le: n - old.get(le, 0.0) for le, n in after[stage].items()}
        count = int(window.get(math.inf, 0.0))
        if count <= 0:
            continue
        out[stage] = StageLatency(
            count=count,
            p50_ms=_quantile(0.5, window) * 1000,
            p99_ms=_quantile(0.99, window) * 1000,
        )
    return out


def render_stages(title: str, stages: Mapping[str, StageLatency]) -> list[str]:
    """A Markdown table of ``stages`` under a ``title`` row."""
    lines = [
        f"| {title} stage | readings observed | p50 ms | p99 ms |",
        "| --- | --- | --- | --- |",
    ]
    for name, s in stages.items():
        lines.append(f"| {name} | {s.count:,} | {s.p50_ms:,.1f} | {s.p99_ms:,.1f} |")
    return lines
