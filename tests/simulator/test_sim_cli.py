"""``resmon sim``: options, config errors, serving until a signal."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from simtest_helpers import request

from resmon.cli import main
from simulator._ber import decode_message
from snmpber import GET


def test_sim_help_documents_the_options() -> None:
    result = CliRunner().invoke(main, ["sim", "--help"])
    assert result.exit_code == 0
    for option in ("--routers", "--interfaces", "--base-port", "--rate", "--config", "--json"):
        assert option in result.output


def test_sim_with_a_bad_config_fails_naming_the_file_and_key(tmp_path: Path) -> None:
    path = tmp_path / "sim.yaml"
    path.write_text("routers:\n  - name: r1\n    interfacs: []\n")
    result = CliRunner().invoke(main, ["--log-format", "json", "sim", "--config", str(path)])
    assert result.exit_code == 1
    assert str(path) in result.output
    assert "$.routers[0]" in result.output
    assert "interfacs" in result.output


def test_sim_serves_until_sigint_and_prints_its_endpoints(tmp_path: Path) -> None:
    config = tmp_path / "sim.yaml"
    config.write_text(
        "community: lab\nrouters:\n"
        "  - {name: a, interfaces: [{name: e0, customer: c1, in_rate: 10}]}\n"
        "  - {name: b}\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", "from resmon.cli import main; main()", "--log-format", "json",
         "sim", "--config", str(config), "--base-port", "0", "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        endpoints = [json.loads(proc.stdout.readline()) for _ in range(2)]
        assert [(e["router"], e["host"], e["community"]) for e in endpoints] == [
            ("a", "127.0.0.1", "lab"),
            ("b", "127.0.0.1", "lab"),
        ]
        assert all(e["port"] > 0 for e in endpoints)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.settimeout(10)
            sock.sendto(request(GET, (1, 3, 6, 1, 2, 1, 1, 5, 0), community="lab"),
                        ("127.0.0.1", endpoints[1]["port"]))  # fmt: skip
            reply = decode_message(sock.recv(65535))
        assert reply.pdu.varbinds[0][1].value == b"b"
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, stderr.decode()
    assert b"sim.stopped" in stderr
    assert b"lab" not in stderr  # the community never reaches the logs


@pytest.mark.parametrize("option", ["--routers", "--rate"])
def test_sim_rejects_negative_numbers(option: str) -> None:
    result = CliRunner().invoke(main, ["sim", option, "-1"])
    assert result.exit_code == 2
