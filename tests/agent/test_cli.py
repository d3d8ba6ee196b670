"""``resmon agent check-config`` and ``discover`` from the command line."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from resmon.cli import main

from .conftest import Snmpd

EXAMPLE = Path(__file__).resolve().parents[2] / "agent.yaml.example"


def test_check_config_prints_ok_and_a_summary_without_secrets() -> None:
    result = CliRunner().invoke(main, ["agent", "check-config", "-c", str(EXAMPLE)])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("OK ")
    assert "core-router-1" in result.output
    assert "change-me" not in result.output


def test_check_config_names_file_key_and_reason_and_exits_1(tmp_path: Path) -> None:
    path = tmp_path / "agent.yaml"
    path.write_text(
        "agent_id: a\ntargets:\n  - name: r\n    host: h\n    community: CANARY-s3cr3t\n"
        "    port: 99999\n"
    )
    result = CliRunner().invoke(main, ["agent", "check-config", "-c", str(path)])
    assert result.exit_code == 1
    assert str(path) in result.output
    assert "targets[0].port" in result.output
    assert "<= 65535" in result.output
    assert "CANARY" not in result.output


@pytest.mark.snmp
def test_discover_shows_interfaces_and_how_rules_map_them(tmp_path: Path, snmpd: Snmpd) -> None:
    host, port = snmpd
    path = tmp_path / "agent.yaml"
    path.write_text(
        f"agent_id: a\ntargets:\n  - name: r1\n    host: {host}\n    port: {port}\n"
        "    community: public\n"
        "mapping:\n  - pattern: '^(?P<customer>lo)$'\n    match_on: ifName\n"
    )
    result = CliRunner().invoke(main, ["agent", "discover", "-c", str(path), "--target", "r1"])
    assert result.exit_code == 0, result.output
    assert "r1 (" in result.output
    assert "-> lo/bandwidth [in/out]" in result.output


@pytest.mark.snmp
def test_discover_speaks_snmpv3_authpriv_and_shows_oper_status(
    tmp_path: Path, snmpd: Snmpd
) -> None:
    path = tmp_path / "agent.yaml"
    config = {
        "agent_id": "a",
        "targets": [snmpd.v3_target("u-sha512-aes256")],
        "mapping": [{"pattern": "^(?P<customer>lo)$", "match_on": "ifName"}],
    }
    path.write_text(yaml.safe_dump(config))
    result = CliRunner().invoke(main, ["agent", "discover", "-c", str(path)])
    assert result.exit_code == 0, result.output
    assert "-> lo/bandwidth [in/out]" in result.output
    assert " up " in result.output
    assert "CANARY" not in result.output


def test_discover_reports_an_unknown_target() -> None:
    result = CliRunner().invoke(main, ["agent", "discover", "-c", str(EXAMPLE), "--target", "nope"])
    assert result.exit_code == 1
    assert "no target named 'nope'" in result.output


@pytest.mark.slow
def test_agent_run_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    import signal
    import subprocess
    import sys
    import time

    path = tmp_path / "agent.yaml"
    path.write_text(
        "agent_id: a\ninterval: 1\ntargets:\n  - name: r1\n    host: 127.0.0.1\n    port: 1\n"
        "    community: CANARY-s3cr3t\n    timeout: 0.1\n    retries: 0\n"
        "kafka:\n  bootstrap_servers: 127.0.0.1:1\n"
        f"buffer:\n  directory: {tmp_path / 'buffer'}\nhttp:\n  port: 0\n"
    )
    resmon = str(Path(sys.executable).parent / "resmon")
    proc = subprocess.Popen(
        [resmon, "--log-format", "json", "agent", "run", "-c", str(path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    assert proc.stdout is not None
    lines = []
    deadline = time.monotonic() + 30
    for raw in proc.stdout:
        lines.append(raw.decode())
        if '"agent_started"' in lines[-1] or time.monotonic() > deadline:
            break
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=30)
    output = "".join(lines) + out.decode()
    assert proc.returncode == 0, output
    assert '"agent_stopped"' in output
    assert "CANARY" not in output
