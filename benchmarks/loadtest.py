"""``resmon bench --only loadtest``: the isp-10k and faults scenarios as figures.

Each scenario runs end to end (embedded servers unless the ``*_URL``
variables are set); its Markdown summary is appended to BENCHMARKS.md and
its JSON result is kept in ``loadtest-results/``. ``quick`` runs ``smoke``
instead of isp-10k, for a check of the wiring.
"""

from __future__ import annotations

from pathlib import Path

import anyio

from loadtest._result import Result, render_markdown, write_result
from loadtest._runner import RunOptions, run_scenario
from loadtest._scenario import load_scenario

from .runner import Figure

__all__ = ["markdown_sections", "scenario_figures", "suite"]

_RESULTS: list[Result] = []
_OUTPUT = Path("loadtest-results")


def _run(name: str) -> Result:
    scenario = load_scenario(name)
    opts = RunOptions(state_dir=Path(".resmon-state/bench-loadtest"), progress=False)
    result = anyio.run(lambda: run_scenario(scenario, opts), backend_options={"use_uvloop": True})
    write_result(result, _OUTPUT)
    _RESULTS.append(result)
    return result


def scenario_figures(r: Result) -> list[Figure]:
    """The figures one scenario contributes to BENCHMARKS.md."""
    cmd = f"resmon loadtest run {r.scenario}"
    offered = r.resources * 2 / r.interval_s  # two directions per interface per poll
    status = "passed" if r.passed else "FAILED: " + "; ".join(r.failures)
    lat = r.alert_latency
    return [
        Figure(
            suite="loadtest",
            name=f"{r.scenario}: readings/s consumed by the hub(s) while traffic flowed",
            value=r.consumed_per_s,
            unit="readings/s",
            command=cmd,
            baseline_name="offered: resources x 2 directions / interval",
            baseline_value=offered,
            notes=f"{r.resources:,} resources, {r.agents} agent(s), {r.hubs} hub(s), "
            + (f"{r.v3_routers} of {r.routers} routers over SNMPv3, " if r.v3_routers else "")
            + f"{r.polls_per_s:,.1f} polls/s; peak {r.peak_consumed_per_s:,.0f}/s; "
            f"max consumer lag {r.max_consumer_lag:,}; run {status}.",
        ),
        Figure(
            suite="loadtest",
            name=f"{r.scenario}: billed bytes vs simulator ground truth",
            value=r.accuracy_percent,
            unit="%",
            command=cmd,
            target=99.9,
            notes=f"{r.exact_resources_matching:,}/{r.exact_resources:,} resources exact to the "
            f"byte; {r.gap_resources} resource(s) on rebooted/dead/faulty routers billed "
            f"{r.gap_billed_bytes:,} of {r.gap_truth_bytes:,} bytes, "
            f"{r.gap_reported_bytes:,} inside reported gaps "
            f"(unexplained {r.gap_unexplained_bytes:,}).",
        ),
        Figure(
            suite="loadtest",
            name=f"{r.scenario}: lost + duplicate readings",
            value=float(r.lost_readings + r.duplicate_readings),
            unit="readings",
            command=cmd,
            higher_is_better=False,
            target=0,
            notes=f"{r.readings_produced:,} produced, {r.readings_stored:,} stored; "
            f"{r.duplicates_dropped:,} redeliveries dropped by event id.",
        ),
        Figure(
            suite="loadtest",
            name=f"{r.scenario}: alert latency p99, scheduled crossing -> alert row",
            value=lat.p99_ms,
            unit="ms",
            command=cmd,
            higher_is_better=False,
            baseline_name="poll interval (the wait for the next poll is part of it)",
            baseline_value=r.interval_s * 1000,
            notes=f"p50 {lat.p50_ms:,.0f} / p90 {lat.p90_ms:,.0f} / max {lat.max_ms:,.0f} ms, "
            f"n={lat.count}; {r.missing_alerts} missing of {r.expected_alerts}"
            + (
                f" ({r.warnings_skipped} warnings not expected: one poll crossed both thresholds)."
                if r.warnings_skipped
                else "."
            ),
        ),
        Figure(
            suite="loadtest",
            name=f"{r.scenario}: alert latency p99, crossing poll -> alert row",
            value=r.pipeline_latency.p99_ms,
            unit="ms",
            command=cmd,
            higher_is_better=False,
            notes=f"p50 {r.pipeline_latency.p50_ms:,.0f} / max {r.pipeline_latency.max_ms:,.0f} "
            "ms: agent -> broker -> hub -> PostgreSQL, without the wait for the poll.",
        ),
    ]


def suite(quick: bool = False) -> list[Figure]:
    figures: list[Figure] = []
    for name in ("smoke", "faults") if quick else ("isp-10k", "faults"):
        figures += scenario_figures(_run(name))
    return figures


def markdown_sections() -> list[str]:
    """Each scenario's summary, one level down, for BENCHMARKS.md."""
    return [
        "\n".join("#" + line if line.startswith("#") else line for line in text.splitlines())
        for text in map(render_markdown, _RESULTS)
    ]
