"""`resmon demo` on a bare machine: embedded servers, routers, agent and hub.

The promise in the README: within 60 s the REST API shows resources with
non-zero usage and at least one alert.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from resmon._ports import free_tcp_port

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture
def state_dir() -> Iterator[Path]:
    # Embedded PostgreSQL runs as an unprivileged user when we are root, so the
    # state directory must be reachable by others (pytest's tmp_path is 0700).
    path = Path(tempfile.mkdtemp(prefix="resmon-demo-"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _get(url: str, key: str) -> Any:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {key}"})
    with urllib.request.urlopen(request, timeout=2) as resp:
        return json.loads(resp.read())


def test_demo_shows_usage_and_an_alert_within_60_seconds(state_dir: Path) -> None:
    port = free_tcp_port()
    base = f"http://127.0.0.1:{port}"
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in {"DATABASE_URL", "REDIS_URL", "KAFKA_BOOTSTRAP_SERVERS"}
    }
    resmon = str(Path(sys.executable).with_name("resmon"))
    started = time.monotonic()
    proc = subprocess.Popen(
        [
            resmon,
            "--log-format",
            "json",
            "demo",
            "--duration",
            "90",
            "--state-dir",
            str(state_dir),
            "--http",
            f"127.0.0.1:{port}",
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        resources: list[dict[str, Any]] = []
        alerts: list[dict[str, Any]] = []
        while time.monotonic() - started < 60:
            assert proc.poll() is None, "resmon demo exited early"
            key_file = state_dir / "api-key"
            try:
                key = key_file.read_text().strip()
                resources = _get(f"{base}/api/metrics/customer/cust-0001/current", key)
                alerts = _get(f"{base}/api/alerts", key)["items"]
            except (urllib.error.URLError, ConnectionError, FileNotFoundError):
                pass
            if alerts and any(r["usage"] > 0 for r in resources):
                break
            time.sleep(1)
        assert any(r["usage"] > 0 for r in resources), resources
        assert alerts, "no alert within 60 s"
        assert alerts[0]["customerId"] == "cust-0001"
        assert alerts[0]["alertType"] in {"THRESHOLD_WARNING", "THRESHOLD_CRITICAL"}
        # the printed history and readiness calls answer: usage in the last hour, raw rows
        history = _get(
            f"{base}/api/usage/customers/cust-0001/resources/cust-0001/bandwidth/history"
            "?range=1h&points=60",
            key,
        )
        assert history["source"] == "raw"
        assert 0 < len(history["points"]) <= 60
        assert sum(p["baseValue"] for p in history["points"]) > 0
        with urllib.request.urlopen(f"{base}/readyz", timeout=5) as resp:
            assert json.loads(resp.read())["status"] == "ready"
        # the printed dashboard answers, and the printed key logs in to it
        with urllib.request.urlopen(f"{base}/", timeout=5) as resp:
            assert b"resmon dashboard" in resp.read()
        login = urllib.request.Request(
            f"{base}/ui/login",
            data=json.dumps({"key": key}).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(login, timeout=5) as resp:
            assert "resmon_session=" in resp.headers["Set-Cookie"]
        with pytest.raises(urllib.error.HTTPError) as refused:  # the same call without the key
            urllib.request.urlopen(f"{base}/api/alerts", timeout=2)
        assert refused.value.code == 401
        refused.value.close()  # the error holds the response open
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, out
    assert "hub REST API on" in out
    assert f"dashboard:  {base}/" in out
    assert f'curl -H "Authorization: Bearer {key}" {base}/api/alerts' in out
    assert f"{base}/api/usage/customers/cust-0001/resources/cust-0001/bandwidth/history" in out
    assert "stopped." in out
