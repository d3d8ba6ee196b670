"""hub.costs is a pure domain package: the standard library, msgspec, the ISO 4217
table and protocol only; no database, no event loop, no web framework."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

COSTS = Path(__file__).resolve().parents[2] / "hub" / "costs"
ALLOWED = {"msgspec", "iso4217", "protocol"}
FORBIDDEN_STDLIB = {"asyncio", "socket", "sqlite3", "threading", "subprocess"}


def test_hub_costs_imports_only_the_standard_library_msgspec_iso4217_and_protocol() -> None:
    files = sorted(COSTS.glob("*.py"))
    assert len(files) >= 7
    wrong = []
    for path in files:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue  # relative imports stay inside hub.costs
            for name in names:
                top = name.partition(".")[0]
                stdlib = top in sys.stdlib_module_names and top not in FORBIDDEN_STDLIB
                if not (stdlib or top in ALLOWED or top == "__future__"):
                    wrong.append(f"{path.name}:{node.lineno} imports {name}")
    assert wrong == []
