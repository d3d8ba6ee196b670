"""Child processes of a load test: agents and hubs (the real ``resmon`` CLI),
their metrics endpoints, and CPU / RSS sampling of every process involved.

Agents and hubs run as separate processes, as in production, so their CPU
and memory are measured separately and a hub can be added (scale-out) or a
broker paused without touching the others. The simulator runs in the
runner's own process: it is the "world" the scenario switches.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import anyio
import structlog

__all__ = ["Child", "ProcessSampler", "metric_sum", "scrape", "spawn", "stop"]

_log = structlog.get_logger(component="loadtest._procs")
_MAIN = "import sys; from resmon.cli import main; sys.exit(main())"


@dataclass
class Child:
    """A started ``resmon`` child: role label, process, log file and metrics URL."""

    label: str
    proc: subprocess.Popen[bytes]
    log: Path
    metrics_url: str
    started_at: float = field(default_factory=time.monotonic)


def spawn(
    label: str, args: list[str], log: Path, metrics_url: str, env: Mapping[str, str]
) -> Child:
    """Start ``resmon ARGS`` (this interpreter) with output to ``log``."""
    log.parent.mkdir(parents=True, exist_ok=True)
    handle = log.open("ab")
    full_env = {**os.environ, **env, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(  # noqa: S603 - our own CLI with our arguments
        [sys.executable, "-c", _MAIN, "--log-format", "json", *args],
        stdout=handle,
        stderr=subprocess.STDOUT,
        env=full_env,
        start_new_session=True,
    )
    handle.close()
    _log.info("loadtest.spawned", role=label, pid=proc.pid, log=str(log))
    return Child(label, proc, log, metrics_url)


async def stop(child: Child, grace: float = 20.0) -> int | None:
    """SIGTERM, then SIGKILL after ``grace`` seconds; returns the exit code."""
    proc = child.proc
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        with anyio.move_on_after(grace):
            while proc.poll() is None:  # noqa: ASYNC110 - a Popen has no awaitable exit
                await anyio.sleep(0.05)
        if proc.poll() is None:
            _log.warning("loadtest.kill", role=child.label, pid=proc.pid)
            proc.kill()
            proc.wait()
    return proc.returncode


async def scrape(url: str, limit: float = 2.0) -> dict[str, float]:
    """A Prometheus text page as ``{name{labels}: value}``; empty when unreachable."""
    import aiohttp

    try:
        timeout = aiohttp.ClientTimeout(total=limit)
        async with aiohttp.ClientSession(timeout=timeout) as http, http.get(url) as resp:
            text = await resp.text()
    except (aiohttp.ClientError, TimeoutError, OSError):
        return {}
    values: dict[str, float] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        name, _, value = line.rpartition(" ")
        try:
            values[name] = float(value)
        except ValueError:
            continue
    return values


def metric_sum(values: Mapping[str, float], name: str) -> float:
    """Sum of a metric over its label sets (``name`` or ``name{...}``)."""
    return sum(v for k, v in values.items() if k == name or k.startswith(name + "{"))


class ProcessSampler:
    """CPU seconds and peak RSS per labelled process (psutil), sampled on demand."""

    def __init__(self) -> None:
        import psutil

        self._psutil = psutil
        self._procs: dict[str, psutil.Process] = {}
        self.cpu_s: dict[str, float] = {}
        self.peak_rss: dict[str, int] = {}
        self.rss: dict[str, int] = {}
        self._cpu0: dict[str, float] = {}
        self._added: dict[str, float] = {}
        self._last: dict[str, float] = {}

    def add(self, label: str, pid: int) -> None:
        try:
            proc = self._psutil.Process(pid)
            times = proc.cpu_times()
        except self._psutil.Error:
            return
        self._procs[label] = proc
        self._cpu0[label] = times.user + times.system
        self._added[label] = time.monotonic()
        self.cpu_s.setdefault(label, 0.0)

    def cpu_percent(self, label: str) -> float:
        """CPU time over the time the process was watched, in % of one core."""
        watched = self._last.get(label, 0.0) - self._added.get(label, 0.0)
        return 100 * self.cpu_s.get(label, 0.0) / watched if watched > 0 else 0.0

    def pid(self, label: str) -> int | None:
        """The process id behind ``label``, if it is sampled."""
        proc = self._procs.get(label)
        return None if proc is None else int(proc.pid)

    def find_servers(self) -> None:
        """Label the embedded servers among this process's descendants."""
        me = self._psutil.Process()
        for proc in me.children(recursive=True):
            try:
                name = proc.name()
            except self._psutil.Error:
                continue
            for needle, label in (
                ("postgres", "postgresql"),
                ("redis", "redis"),
                ("tansu", "broker"),
            ):
                if needle in name and label not in self._procs:
                    self.add(label, proc.pid)

    def sample(self) -> None:
        for label, proc in list(self._procs.items()):
            try:
                with proc.oneshot():
                    times = proc.cpu_times()
                    rss = proc.memory_info().rss
                    if label == "postgresql":  # the postmaster's backends do the work
                        for kid in proc.children(recursive=True):
                            kt = kid.cpu_times()
                            times = type(times)(*(a + b for a, b in zip(times, kt, strict=False)))
                            rss += kid.memory_info().rss
            except self._psutil.Error:
                continue
            self.cpu_s[label] = times.user + times.system - self._cpu0[label]
            self._last[label] = time.monotonic()
            self.rss[label] = rss
            self.peak_rss[label] = max(self.peak_rss.get(label, 0), rss)
