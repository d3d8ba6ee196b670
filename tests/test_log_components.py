"""Every log line says which part of resmon wrote it (``component``: the module)."""

from __future__ import annotations

import importlib
import pkgutil

import pytest
from structlog.testing import capture_logs

PACKAGES = ("hub", "edge_agent", "simulator", "loadtest")


def _modules_with_a_logger() -> list[str]:
    """Modules of the product packages holding a module-level structlog logger."""
    found = []
    for package in PACKAGES:
        root = importlib.import_module(package)
        for info in pkgutil.walk_packages(root.__path__, prefix=f"{package}."):
            module = importlib.import_module(info.name)
            logger = getattr(module, "_log", None) or getattr(module, "log", None)
            if callable(getattr(logger, "bind", None)):
                found.append(info.name)
    return found


MODULES = _modules_with_a_logger()


def test_the_modules_that_log_were_found() -> None:
    assert {"hub.consumer", "hub.outbox", "edge_agent.poller", "edge_agent.forwarder"} <= set(
        MODULES
    )


@pytest.mark.parametrize("name", MODULES)
def test_a_modules_log_lines_carry_its_name_as_component(name: str) -> None:
    module = importlib.import_module(name)
    logger = getattr(module, "_log", None) or module.log
    with capture_logs() as lines:
        logger.info("probe", detail=1)
    assert lines == [{"component": name, "event": "probe", "detail": 1, "log_level": "info"}]
