"""Simulated routers answering SNMPv2c and SNMPv3 (USM), with ground truth for their counters.

One asyncio process serves N routers x M interfaces (system group, ifTable,
ifXTable) with a hand-written BER codec, fast enough for load tests. Counters
are a pure function of time, so tests can ask the fleet how many octets an
interface really carried between two readings.

::

    from simulator import Fleet

    fleet = Fleet.generate(routers=3, interfaces=4, base_port=0)
    async with fleet.serve(host="127.0.0.1"):
        for router, host, port, community in fleet.endpoints:
            ...
"""

from __future__ import annotations

from ._agent import Agent, AgentStats
from ._exceptions import (
    BerError,
    BindError,
    ConfigError,
    PortInUseError,
    SimulatorError,
    UnknownRouterError,
)
from ._fleet import Endpoint, Fleet, FleetStats
from ._mib import OIDS, MibView
from ._model import (
    AnomalyConfig,
    FaultConfig,
    FleetConfig,
    InterfaceConfig,
    RouterConfig,
    UserConfig,
    generate_config,
    load_config,
    validate_config,
)
from ._router import Direction, SimRouter
from ._usm import UsmUser, localize_key, password_to_key

__all__ = [
    "OIDS",
    "Agent",
    "AgentStats",
    "AnomalyConfig",
    "BerError",
    "BindError",
    "ConfigError",
    "Direction",
    "Endpoint",
    "FaultConfig",
    "Fleet",
    "FleetConfig",
    "FleetStats",
    "InterfaceConfig",
    "MibView",
    "PortInUseError",
    "RouterConfig",
    "SimRouter",
    "SimulatorError",
    "UnknownRouterError",
    "UserConfig",
    "UsmUser",
    "generate_config",
    "load_config",
    "localize_key",
    "password_to_key",
    "validate_config",
]
