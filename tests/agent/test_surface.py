"""The public surface: every module declares __all__ and the package re-exports what it says."""

from __future__ import annotations

import importlib
import pkgutil

import edge_agent


def test_every_module_declares_all_and_its_names_exist() -> None:
    for info in pkgutil.walk_packages(edge_agent.__path__, "edge_agent."):
        module = importlib.import_module(info.name)
        assert hasattr(module, "__all__"), info.name
        for name in module.__all__:
            assert hasattr(module, name), f"{info.name}.{name}"


def test_the_package_exports_config_loading_and_the_exception_tree() -> None:
    assert {"load_config", "config_from_dict", "AgentConfig", "AgentError", "ConfigError"} <= set(
        edge_agent.__all__
    )
    for name in edge_agent.__all__:
        assert getattr(edge_agent, name) is not None
    assert issubclass(edge_agent.SnmpTimeout, edge_agent.SnmpError)
    assert issubclass(edge_agent.BufferFullError, edge_agent.DiskBufferError)
