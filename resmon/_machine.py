"""One line describing the machine a measurement ran on (cores, CPU, Python, OS).

Shared by the load-test results and the benchmark report, so both name the
machine the same way.
"""

from __future__ import annotations

import os
import platform
from pathlib import Path

__all__ = ["machine_description"]


def machine_description() -> str:
    cpu = platform.processor() or "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (
        f"{os.cpu_count()} cores, {cpu}; Python {platform.python_version()} "
        f"({platform.python_implementation()}), {platform.system()} {platform.release()}"
    )
