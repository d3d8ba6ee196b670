"""schemathesis against the running hub: every operation of the served document, every check.

The hub runs on real PostgreSQL, Redis and the broker (the ``hub`` fixture); the
key has every scope. schemathesis' CLI loads ``/api/openapi.yaml`` from the hub
and sends a bounded number of generated requests per operation (valid ones and,
for negative testing, invalid ones). It fails on a 5xx, a response that is not
what the document says (status, content type, headers, body schema), valid data
refused or invalid data accepted, and auth that the document promises but the
hub ignores. Exit code 1 is a failure; 2 (bad schema or nothing tested) too.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import anyio
import asyncpg  # type: ignore[import-untyped]
import pytest
from _notify_fakes import raise_alert

from hub import RunningHub, provision_resource
from hub.api import openapi

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.anyio]

#: generated requests per operation and phase: enough to find what a route gets
#: wrong, small enough for about two minutes on two cores
MAX_EXAMPLES = 25
SEED = 20261204
CONFIG = Path(__file__).with_name("schemathesis.toml")


async def _known_objects(db: asyncpg.Connection) -> str:
    """A customer with two resources and an open alert; their ids as schemathesis dictionaries.

    Half of the generated ids are these, so requests reach real objects (and
    their answers are checked against the schemas) instead of only 404s.
    """
    customer = "cust-contract"
    bandwidth = await provision_resource(db, customer, "bandwidth", 10**12)
    cpu = await provision_resource(db, customer, "cpu", 3_600_000)
    alert = await raise_alert(db, cpu, "CRITICAL", "3500000")
    return (
        "\n[dictionaries]\n"
        f'customers = {{ values = ["{customer}"] }}\n'
        f'resources = {{ values = ["{bandwidth}", "{cpu}", "bandwidth", "cpu"] }}\n'
        f'alerts = {{ values = ["{alert}"] }}\n'
        "\n[parameters]\n"
        '"path.customerId" = { dictionary = "customers", probability = 0.5 }\n'
        '"query.customerId" = { dictionary = "customers", probability = 0.5 }\n'
        '"path.resourceKey" = { dictionary = "resources", probability = 0.5 }\n'
        '"query.resourceKey" = { dictionary = "resources", probability = 0.5 }\n'
        '"path.id" = { dictionary = "alerts", probability = 0.3 }\n'
        '"query.alertId" = { dictionary = "alerts", probability = 0.5 }\n'
    )


@pytest.mark.timeout(420)
async def test_the_hub_keeps_its_contract(
    hub: RunningHub, db: asyncpg.Connection, api_key: str, tmp_path: Path
) -> None:
    schemathesis = Path(sys.executable).parent / "schemathesis"
    config = tmp_path / "schemathesis.toml"  # the key stays out of the command line
    config.write_text(CONFIG.read_text(encoding="utf-8") + await _known_objects(db))
    command = [
        str(schemathesis),
        "--config-file",
        str(config),
        "run",
        f"{hub.http_url}/api/openapi.yaml",
        "--checks",
        "all",
        "--phases",  # stateful (inferred links) would double the run: see docs/api.md
        "examples,coverage,fuzzing",
        "--max-examples",
        str(MAX_EXAMPLES),
        "--seed",
        str(SEED),
        "--workers",
        "2",
        "--request-timeout",
        "30",
        "--report",
        "junit",
        "--report-dir",
        str(tmp_path),
    ]
    env = {**os.environ, "RESMON_TEST_KEY": api_key, "NO_COLOR": "1"}
    with anyio.fail_after(400):
        done = await anyio.run_process(command, check=False, env=env, cwd=tmp_path)
    output = done.stdout.decode(errors="replace") + done.stderr.decode(errors="replace")
    assert done.returncode == 0, output[-20000:]
    selected = re.search(r"Selected: (\d+)/(\d+)", output)
    tested = re.search(r"Tested: (\d+)", output)
    assert selected is not None, output[-5000:]
    assert tested is not None, output[-5000:]
    # every operation it loaded but the endless stream (disabled in schemathesis.toml)
    assert int(tested[1]) == int(selected[1]) == int(selected[2]) - 1, output[-5000:]
    assert int(selected[2]) >= len(openapi.ROUTES) - 1, output[-5000:]
    print(output[output.find("SUMMARY") :])  # shown with -rP: operations, cases, time
