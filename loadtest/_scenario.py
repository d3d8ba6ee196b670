"""Scenarios: what a load test runs, as YAML files in ``loadtest/scenarios/``.

A scenario says how big the simulated network is, how traffic behaves, which
resources cross their limit and when, what breaks (reboots, a dead router,
loss, a broker outage) and how many agents and hubs carry the load. Unknown
keys are errors naming the file and key path, like every resmon config.

Time in a scenario is seconds after the fleet epoch (the runner's start of
traffic bookkeeping). Traffic flows between ``warmup_s`` and
``warmup_s + traffic_s`` and stands still outside, so the final counters are
exact and billed bytes can be compared with ground truth to the byte.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import msgspec

from simulator import AnomalyConfig, FaultConfig

__all__ = [
    "SCENARIO_DIR",
    "Event",
    "ProfileMix",
    "Scenario",
    "ScenarioError",
    "list_scenarios",
    "load_scenario",
]

SCENARIO_DIR = Path(__file__).parent / "scenarios"

_Pos = Annotated[float, msgspec.Meta(gt=0)]
_NonNeg = Annotated[float, msgspec.Meta(ge=0)]
_Fraction = Annotated[float, msgspec.Meta(ge=0, le=1)]


class ScenarioError(Exception):
    """A scenario file is missing or invalid; the message names the file and key."""


class ProfileMix(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A share of the interfaces with a traffic profile (see the simulator README)."""

    fraction: _Fraction
    diurnal_amplitude: Annotated[float, msgspec.Meta(ge=0, le=0.95)] = 0.0
    diurnal_period_s: _Pos = 86_400.0
    burst_every_s: _NonNeg = 0.0
    burst_length_s: _NonNeg = 0.0
    burst_factor: Annotated[float, msgspec.Meta(ge=0)] = 1.0
    anomalies: list[AnomalyConfig] = []


class Event(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Something the runner does at ``at_s`` (seconds after the epoch).

    ``routers`` are positions in the fleet (0-based). Actions: ``reboot``,
    ``renumber`` (reboot with ifIndex renumbering), ``dead`` / ``alive``,
    ``faults`` (set ``faults``; null clears them), ``broker_pause`` for
    ``duration_s`` (SIGSTOP, then SIGCONT: see docs/loadtest.md), ``hub_pause``
    (every running hub, likewise: a backlog the hubs must then catch up on),
    ``add_hub`` (scale out: one more hub joins the consumer group).
    """

    at_s: _NonNeg
    action: Literal[
        "reboot", "renumber", "dead", "alive", "faults", "broker_pause", "hub_pause", "add_hub"
    ]
    routers: list[int] = []
    faults: FaultConfig | None = None
    duration_s: _NonNeg = 0.0


class Scenario(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One load test."""

    name: str
    description: str = ""
    routers: Annotated[int, msgspec.Meta(ge=1)] = 3
    interfaces: Annotated[int, msgspec.Meta(ge=1, le=256)] = 4  #: per router
    rate: Annotated[int, msgspec.Meta(ge=0)] = 10_000  #: octets/s in per interface
    out_rate: Annotated[int, msgspec.Meta(ge=0)] | None = None  #: default rate / 2
    interval: _Pos = 1.0  #: agent poll interval, seconds
    max_repetitions: Annotated[int, msgspec.Meta(ge=1, le=200)] = 25
    timeout: _Pos = 1.0  #: SNMP timeout per request, seconds
    retries: Annotated[int, msgspec.Meta(ge=0)] = 1
    warmup_s: _NonNeg = 3.0  #: traffic starts here: the agents' baselines come first
    traffic_s: _Pos = 10.0  #: traffic flows this long, then counters stand still
    drain_timeout_s: _Pos = 60.0  #: how long to wait for every reading after traffic stops
    agents: Annotated[int, msgspec.Meta(ge=1)] = 1
    hubs: Annotated[int, msgspec.Meta(ge=1)] = 1
    partitions: Annotated[int, msgspec.Meta(ge=1)] = 6  #: of the usage topic
    #: share of resources whose limit is crossed during the run, and when (seconds after
    #: warmup) their usage reaches the critical threshold
    breach_fraction: _Fraction = 0.0
    breach_at_s: _NonNeg = 5.0
    warning_percent: Annotated[int, msgspec.Meta(ge=1, le=100)] = 80
    critical_percent: Annotated[int, msgspec.Meta(ge=1, le=100)] = 95
    #: share of interfaces whose counters start just below 2^32 (Counter32 wraps)
    #: and just below 2^64 (Counter64 wraps) during the run
    wrap32_fraction: _Fraction = 0.0
    wrap64_fraction: _Fraction = 0.0
    #: share of routers the agents poll over SNMPv3 (authPriv, SHA + AES-128, a user
    #: the simulator serves on every router); the rest over v2c
    v3_fraction: _Fraction = 0.0
    profiles: list[ProfileMix] = []
    events: list[Event] = []
    sample_every_s: _Pos = 1.0  #: progress / metrics sampling period


def load_scenario(name_or_path: str | Path) -> Scenario:
    """A shipped scenario by name (``smoke``) or any YAML file by path."""
    path = Path(name_or_path)
    if not path.suffix and not path.exists():
        path = SCENARIO_DIR / f"{name_or_path}.yaml"
    try:
        raw = path.read_bytes()
    except OSError as exc:
        known = ", ".join(list_scenarios())
        raise ScenarioError(f"{path}: cannot read ({exc.strerror}); shipped: {known}") from None
    try:
        scenario = msgspec.yaml.decode(raw, type=Scenario)
    except msgspec.ValidationError as exc:
        message, _, where = str(exc).partition(" - at ")
        raise ScenarioError(f"{path}: {where.strip('`') or '$'}: {message}") from None
    except msgspec.DecodeError as exc:
        raise ScenarioError(f"{path}: not valid YAML: {exc}") from None
    if sum(p.fraction for p in scenario.profiles) > 1:
        raise ScenarioError(f"{path}: $.profiles: fractions add up to more than 1")
    for i, event in enumerate(scenario.events):
        bad = [r for r in event.routers if r >= scenario.routers]
        if bad:
            raise ScenarioError(f"{path}: $.events[{i}].routers: no router {bad[0]}")
    return scenario


def list_scenarios() -> list[str]:
    """Names of the shipped scenarios."""
    return sorted(p.stem for p in SCENARIO_DIR.glob("*.yaml"))
