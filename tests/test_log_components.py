"""Every log line says which part of resmon wrote it (``component``: the module)."""

from __future__ import annotations

import json
import subprocess
import sys

PACKAGES = ("hub", "edge_agent", "simulator", "loadtest")

# Run in a fresh interpreter: a test that configured logging for real (with
# cache_logger_on_first_use) has frozen the loggers it touched in this process.
_PROBE = """
import importlib, json, pkgutil, sys
from structlog.testing import capture_logs

found = {}
for package in sys.argv[1:]:
    root = importlib.import_module(package)
    for info in pkgutil.walk_packages(root.__path__, prefix=package + "."):
        module = importlib.import_module(info.name)
        logger = getattr(module, "_log", None) or getattr(module, "log", None)
        if not callable(getattr(logger, "bind", None)):
            continue
        with capture_logs() as lines:
            logger.info("probe", detail=1)
        found[info.name] = lines
print(json.dumps(found))
"""


def _probe() -> dict[str, list[dict[str, object]]]:
    out = subprocess.run(
        [sys.executable, "-c", _PROBE, *PACKAGES],
        check=True,
        capture_output=True,
        text=True,
        timeout=120,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def test_every_modules_log_lines_carry_its_name_as_component() -> None:
    found = _probe()
    assert {"hub.consumer", "hub.outbox", "edge_agent.poller", "edge_agent.forwarder"} <= set(found)
    wrong = {
        name: lines
        for name, lines in found.items()
        if lines != [{"component": name, "event": "probe", "detail": 1, "log_level": "info"}]
    }
    assert wrong == {}
