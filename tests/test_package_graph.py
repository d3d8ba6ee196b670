"""The top-level packages import in one direction: the shared codecs (protocol,
snmpber) import no role, the roles (edge_agent, hub, simulator) import no other
role, nor the CLI package, nor the benchmarks, and nothing in the product
imports the benchmarks. Every import statement counts, including those inside
functions."""

from __future__ import annotations

import ast
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PRODUCT = ("protocol", "snmpber", "edge_agent", "hub", "simulator", "loadtest", "resmon")

#: package -> top-level packages it must never import
FORBIDDEN = {
    "protocol": {"snmpber", "edge_agent", "hub", "simulator", "loadtest", "resmon", "benchmarks"},
    "snmpber": {"protocol", "edge_agent", "hub", "simulator", "loadtest", "resmon", "benchmarks"},
    "edge_agent": {"hub", "simulator", "loadtest", "resmon", "benchmarks"},
    "hub": {"edge_agent", "simulator", "loadtest", "resmon", "benchmarks"},
    "simulator": {"edge_agent", "hub", "loadtest", "resmon", "benchmarks"},
    "loadtest": {"benchmarks"},
    "resmon": {"benchmarks"},
}


def imported_packages(path: Path) -> Iterator[tuple[int, str]]:
    """(line, top-level package) of every import in ``path``; relative ones resolved."""
    package = path.relative_to(ROOT).parts[:-1]  # the package a module or __init__ is in
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name.partition(".")[0]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - (node.level - 1)]
                yield node.lineno, (base[0] if base else (node.module or "").partition(".")[0])
            elif node.module:
                yield node.lineno, node.module.partition(".")[0]


def test_the_scanner_sees_relative_absolute_and_function_level_imports() -> None:
    # a scanner that missed imports would let every check below pass on anything
    fastv2c = {pkg for _, pkg in imported_packages(ROOT / "edge_agent" / "snmp" / "fastv2c.py")}
    assert {"edge_agent", "asyncio", "anyio"} <= fastv2c  # ``from ..config`` is edge_agent
    cli = {pkg for _, pkg in imported_packages(ROOT / "edge_agent" / "cli.py")}
    assert "edge_agent" in cli
    runner = {pkg for _, pkg in imported_packages(ROOT / "benchmarks" / "agent.py")}
    assert {"edge_agent", "benchmarks", "pysnmp"} <= runner  # pysnmp: inside a function


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_a_product_package_imports_no_package_above_or_beside_it(package: str) -> None:
    files = sorted((ROOT / package).rglob("*.py"))
    assert files, f"no Python files under {package}/"
    wrong = [
        f"{path.relative_to(ROOT)}:{line} imports {target}"
        for path in files
        for line, target in imported_packages(path)
        if target in FORBIDDEN[package]
    ]
    assert wrong == []


def test_the_wheel_ships_the_product_packages_and_not_the_benchmarks() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    shipped = project["tool"]["hatch"]["build"]["targets"]["wheel"]["packages"]
    assert sorted(shipped) == sorted(PRODUCT)
    for package in PRODUCT:
        assert not list((ROOT / package).rglob("*bench*.py")), package
    hub_extra = project["project"]["optional-dependencies"]["hub"]
    assert not [dep for dep in hub_extra if dep.startswith("hdrhistogram")]
