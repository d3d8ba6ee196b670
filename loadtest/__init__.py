"""Load tests: thousands of simulated routers through real agents, broker and hubs.

``resmon loadtest run smoke`` (or ``isp-10k``, ``burst``, ``faults``,
``scale-out``, or a YAML file) starts the servers, the simulator, agents and
hubs, drives the scenario and reports throughput per stage, consumer lag,
alert latency, billed-bytes accuracy against the simulator's ground truth,
lost and duplicate readings, and CPU / RSS per process. See docs/loadtest.md.
"""

from __future__ import annotations

from ._result import Latency, ProcessUsage, Result, render_markdown, write_result
from ._runner import RunOptions, run_scenario
from ._scenario import (
    SCENARIO_DIR,
    Event,
    ProfileMix,
    Scenario,
    ScenarioError,
    list_scenarios,
    load_scenario,
)
from ._world import Resource, World, build_world

__all__ = [
    "SCENARIO_DIR",
    "Event",
    "Latency",
    "ProcessUsage",
    "ProfileMix",
    "Resource",
    "Result",
    "RunOptions",
    "Scenario",
    "ScenarioError",
    "World",
    "build_world",
    "list_scenarios",
    "load_scenario",
    "render_markdown",
    "run_scenario",
    "write_result",
]
