"""The result of a load test run: one msgspec struct, written as JSON and Markdown."""

from __future__ import annotations

from pathlib import Path

import msgspec

from ._stages import StageLatency, render_stages

__all__ = ["GapRouter", "Latency", "ProcessUsage", "Result", "render_markdown", "write_result"]


class Latency(msgspec.Struct, kw_only=True):
    """Alert latency, milliseconds, from the scheduled threshold crossing to the alert row."""

    count: int = 0
    p50_ms: float = 0.0
    p90_ms: float = 0.0
    p99_ms: float = 0.0
    max_ms: float = 0.0


class ProcessUsage(msgspec.Struct, kw_only=True):
    cpu_s: float
    cpu_percent: float  #: of one core, averaged over the run
    peak_rss_mb: float


class GapRouter(msgspec.Struct, kw_only=True):
    """The resources of one router an event may rightly make lose bytes (reboot, dead, faults)."""

    router: str
    actions: list[str] = []  #: the scenario's events for this router
    resources: int = 0
    billed_bytes: int = 0
    truth_bytes: int = 0
    reported_bytes: int = 0  #: ground truth inside the gaps the hub recorded for them
    billed_percent: float = 0.0  #: billed / truth
    reported_percent: float = 0.0  #: in reported gaps / truth


class Result(msgspec.Struct, kw_only=True):
    scenario: str
    description: str = ""
    started: str = ""
    machine: str = ""
    passed: bool = False
    failures: list[str] = []
    notes: list[str] = []
    routers: int = 0
    v3_routers: int = 0  #: of them, polled over SNMPv3
    interfaces: int = 0
    resources: int = 0
    agents: int = 0
    hubs: int = 0
    interval_s: float = 0.0
    traffic_s: float = 0.0
    wall_s: float = 0.0
    drain_s: float = 0.0  #: from traffic stop until every reading was stored
    # throughput over the traffic window
    polls: int = 0
    poll_errors: int = 0
    polls_per_s: float = 0.0
    sim_requests: int = 0
    sim_requests_per_s: float = 0.0
    readings_produced: int = 0  #: by agents (deltas computed)
    readings_acked: int = 0  #: by Kafka, to agents
    readings_consumed: int = 0  #: applied by hubs
    readings_stored: int = 0  #: rows in usage_metrics (distinct event ids)
    produced_per_s: float = 0.0
    acked_per_s: float = 0.0
    consumed_per_s: float = 0.0
    peak_consumed_per_s: float = 0.0
    gaps: int = 0  #: usage gaps the hub recorded (reboots, discontinuities)
    #: produced by agents (their counter at the last scrape before they stopped), never
    #: stored; a poll between that scrape and the agent's exit can make stored > produced
    lost_readings: int = 0
    duplicate_readings: int = 0  #: stored twice (same event id)
    #: in the agents' crash-safe disk buffers when they were stopped (sent on their next
    #: start): not lost, not stored by this run
    left_in_agent_buffers: int = 0
    duplicates_dropped: int = 0  #: redeliveries the hubs recognised and skipped
    max_consumer_lag: int = 0
    final_consumer_lag: int = 0
    # accuracy
    exact_resources: int = 0  #: resources no fault could make lose bytes
    exact_resources_matching: int = 0  #: billed == ground truth to the byte
    billed_bytes: int = 0  #: over the exact resources
    truth_bytes: int = 0
    accuracy_percent: float = 0.0
    #: on routers that rebooted, were dead or had faults: intervals may rightly be gaps
    gap_resources: int = 0
    gap_billed_bytes: int = 0
    gap_truth_bytes: int = 0
    gap_reported_bytes: int = 0  #: ground truth inside the gaps the hub recorded for them
    gap_unexplained_bytes: int = 0  #: truth - billed - reported: should be ~0
    gap_reasons: dict[str, int] = {}
    gap_breaches: int = 0  #: breached resources among them (their alerts are not judged)
    #: the same figures per router (position order)
    gap_routers: list[GapRouter] = []
    # alerts
    expected_alerts: int = 0
    alerts_on_time: int = 0
    missing_alerts: int = 0
    #: WARNINGs not raised, rightly: one poll took usage over warning and critical at once
    warnings_skipped: int = 0
    unexpected_threshold_alerts: int = 0
    other_alerts: dict[str, int] = {}
    alert_latency: Latency = msgspec.field(default_factory=Latency)
    #: from the poll whose reading crossed the threshold (its timestamp) to the alert row:
    #: agent -> broker -> hub -> PostgreSQL, without the wait for the poll
    pipeline_latency: Latency = msgspec.field(default_factory=Latency)
    #: latency per stage over the whole run, from the agents' and hubs' histograms
    agent_stages: dict[str, StageLatency] = {}
    hub_stages: dict[str, StageLatency] = {}
    processes: dict[str, ProcessUsage] = {}
    simulator: dict[str, int] = {}
    timeline: list[dict[str, float]] = []  #: sampled counters (t, polls, consumed, lag, ...)


def _row(label: str, value: object) -> str:
    return f"| {label} | {value} |"


def render_markdown(r: Result) -> str:
    lat = r.alert_latency
    lines = [
        f"# Load test `{r.scenario}` — {'PASS' if r.passed else 'FAIL'}",
        "",
        r.description,
        "",
        f"{r.started} on {r.machine}",
        "",
        "| figure | value |",
        "| --- | --- |",
        _row(
            "routers x interfaces (resources)",
            f"{r.routers} x {r.interfaces} ({r.resources:,})"
            + (f"; {r.v3_routers} routers polled over SNMPv3" if r.v3_routers else ""),
        ),
        _row("agents / hubs", f"{r.agents} / {r.hubs}"),
        _row("poll interval / traffic", f"{r.interval_s:g} s / {r.traffic_s:g} s"),
        _row("polls/s (errors)", f"{r.polls_per_s:,.1f} ({r.poll_errors:,} of {r.polls:,})"),
        _row("SNMP requests/s at the simulator", f"{r.sim_requests_per_s:,.0f}"),
        _row(
            "readings/s produced -> acked -> consumed",
            f"{r.produced_per_s:,.0f} -> {r.acked_per_s:,.0f} -> {r.consumed_per_s:,.0f}",
        ),
        _row("peak readings/s consumed", f"{r.peak_consumed_per_s:,.0f}"),
        _row("readings produced / stored", f"{r.readings_produced:,} / {r.readings_stored:,}"),
        _row("lost / duplicate readings", f"{r.lost_readings:,} / {r.duplicate_readings:,}"),
        _row("left in agent disk buffers at stop", f"{r.left_in_agent_buffers:,}"),
        _row("redeliveries dropped by id", f"{r.duplicates_dropped:,}"),
        _row("consumer lag max / final", f"{r.max_consumer_lag:,} / {r.final_consumer_lag:,}"),
        _row("drain after traffic stop", f"{r.drain_s:.1f} s"),
        _row(
            "billed accuracy (exact resources)",
            f"{r.accuracy_percent:.3f} % ({r.exact_resources_matching:,}/{r.exact_resources:,} "
            f"to the byte; {r.billed_bytes:,} of {r.truth_bytes:,} bytes)",
        ),
        _row(
            "resources with gaps (reboot, dead, faults)",
            f"{r.gap_resources:,}: billed {r.gap_billed_bytes:,} + in reported gaps "
            f"{r.gap_reported_bytes:,} of {r.gap_truth_bytes:,} bytes "
            f"(unexplained {r.gap_unexplained_bytes:,})",
        ),
        _row(
            "usage gaps recorded",
            f"{r.gaps:,}"
            + (
                f" ({', '.join(f'{k} {v}' for k, v in r.gap_reasons.items())})"
                if r.gap_reasons
                else ""
            ),
        ),
        _row(
            "threshold alerts expected / on time / missing / unexpected",
            f"{r.expected_alerts} / {r.alerts_on_time} / {r.missing_alerts} / "
            f"{r.unexpected_threshold_alerts}"
            + (
                f" (+{r.warnings_skipped} warnings rightly skipped: one poll crossed "
                "warning and critical)"
                if r.warnings_skipped
                else ""
            ),
        ),
        _row(
            "alert latency p50 / p90 / p99 / max",
            f"{lat.p50_ms:,.0f} / {lat.p90_ms:,.0f} / {lat.p99_ms:,.0f} / {lat.max_ms:,.0f} ms "
            f"(n={lat.count})",
        ),
        _row(
            "alert latency after the crossing poll p50 / p90 / p99 / max",
            f"{r.pipeline_latency.p50_ms:,.0f} / {r.pipeline_latency.p90_ms:,.0f} / "
            f"{r.pipeline_latency.p99_ms:,.0f} / {r.pipeline_latency.max_ms:,.0f} ms "
            f"(n={r.pipeline_latency.count})",
        ),
        _row("other alerts", ", ".join(f"{k} {v}" for k, v in r.other_alerts.items()) or "none"),
        "",
        "| process | CPU s | CPU % of a core (while watched) | peak RSS MB |",
        "| --- | --- | --- | --- |",
    ]
    for label, p in r.processes.items():
        lines.append(f"| {label} | {p.cpu_s:.1f} | {p.cpu_percent:.0f} | {p.peak_rss_mb:.0f} |")
    if r.agent_stages or r.hub_stages:
        lines += [
            "",
            "Latency per stage over the run (from `resmon_agent_reading_stage_seconds` and "
            "`resmon_hub_reading_stage_seconds`; percentiles estimated inside histogram "
            "buckets; agent stages once per poll batch, hub per-reading stages sampled):",
            "",
        ]
        if r.agent_stages:
            lines += [*render_stages("agent", r.agent_stages), ""]
        if r.hub_stages:
            lines += render_stages("hub", r.hub_stages)
    if r.gap_routers:
        lines += [
            "",
            "| router with gaps | events | resources | billed % | in reported gaps % |",
            "| --- | --- | --- | --- | --- |",
        ]
        for g in r.gap_routers:
            lines.append(
                f"| {g.router} | {', '.join(g.actions)} | {g.resources} | "
                f"{g.billed_percent:.3f} | {g.reported_percent:.3f} |"
            )
    if r.failures:
        lines += ["", "## Failures", "", *[f"- {f}" for f in r.failures]]
    if r.notes:
        lines += ["", "## Notes", "", *[f"- {n}" for n in r.notes]]
    return "\n".join(lines) + "\n"


def write_result(result: Result, directory: Path) -> tuple[Path, Path]:
    """``<scenario>.json`` and ``<scenario>.md`` in ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    json_path = directory / f"{result.scenario}.json"
    md_path = directory / f"{result.scenario}.md"
    json_path.write_bytes(msgspec.json.format(msgspec.json.encode(result)))
    md_path.write_text(render_markdown(result))
    return json_path, md_path
