"""Reading the hub's RFC 9457 problem details in tests."""

from __future__ import annotations

from typing import Any


def named(problem: dict[str, Any]) -> str:
    """What the problem's ``errors`` name: JSON paths or parameters, ``/``-joined.

    AssertionError if the problem has no ``errors`` entry.
    """
    errors = problem.get("errors") or []
    assert errors, f"the problem names no field or parameter: {problem}"
    return "/".join(e.get("path") or e["parameter"] for e in errors)
