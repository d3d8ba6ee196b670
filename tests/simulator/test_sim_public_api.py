"""The public surface others build on (``resmon demo``, agent tests)."""

from __future__ import annotations

import inspect

import simulator
from simulator import Fleet


def test_the_public_names_are_exported() -> None:
    assert set(simulator.__all__) == {
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
    }
    for name in simulator.__all__:
        assert getattr(simulator, name) is not None


def test_fleet_generate_takes_the_documented_arguments() -> None:
    params = inspect.signature(Fleet.generate).parameters
    assert list(params)[:5] == ["routers", "interfaces", "base_port", "rate_bps", "community"]


def test_endpoints_unpack_as_router_host_port_community() -> None:
    fleet = Fleet.generate(routers=1, interfaces=1, base_port=16100, community="c")
    ((router, host, port, community),) = fleet.endpoints
    assert (router, host, port, community) == ("rtr-0001", "127.0.0.1", 16100, "c")


def test_the_sim_command_is_where_the_root_cli_looks_for_it() -> None:
    from simulator.cli import sim

    assert sim.name == "sim"
