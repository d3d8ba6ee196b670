"""Helpers for the deployment tests: where things are and how to run the tools."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

__all__ = ["REPO", "VENV_BIN", "run", "tool"]

REPO = Path(__file__).resolve().parents[2]
#: the bin directory of the virtualenv running the tests (ansible, uv, hadolint, resmon)
VENV_BIN = Path(sys.executable).parent


def tool(name: str) -> str | None:
    """The path of a command: the test virtualenv's first, then PATH."""
    candidate = VENV_BIN / name
    if candidate.exists():
        return str(candidate)
    return shutil.which(name)


def run(
    argv: list[str],
    *,
    cwd: Path = REPO,
    env: dict[str, str] | None = None,
    timeout: float = 120,
) -> subprocess.CompletedProcess[str]:
    """Run a command, stdout and stderr merged, never raising on its exit code."""
    full_env = {**os.environ, "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    full_env.update(env or {})
    return subprocess.run(
        argv,
        cwd=cwd,
        env=full_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=timeout,
        check=False,
    )
