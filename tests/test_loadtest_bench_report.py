"""``resmon bench`` reports every suite: failures and missing packages become
"not run" lines with the reason, never a crash of the whole run."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from benchmarks import runner as bench
from benchmarks.runner import Figure, render_markdown, run_suites


def _ok(quick: bool) -> list[Figure]:
    return [Figure(suite="good", name="things/s", value=10.0, unit="/s", command="x",
                   baseline_name="naive", baseline_value=5.0)]  # fmt: skip


def _boom(quick: bool) -> list[Figure]:
    # what a suite that runs a task group raises: the report shows the real error
    raise ExceptionGroup("unhandled errors in a TaskGroup", [RuntimeError("broker unreachable")])


def test_a_failing_suite_is_reported_with_its_reason_and_the_others_still_run(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    suites = {
        "bad": ("tests.nowhere:suite", "fails"),
        "missing": ("no_such_package.bench:suite", "is not installed"),
        "good": ("tests.somewhere:suite", "works"),
    }
    monkeypatch.setattr(bench, "SUITES", suites)
    loaders = {"tests.nowhere:suite": _boom, "tests.somewhere:suite": _ok}

    def load(target: str) -> object:
        if target in loaders:
            return loaders[target]
        raise ImportError(f"No module named {target.partition('.')[0]!r}")

    monkeypatch.setattr(bench, "_load", load)
    monkeypatch.setattr(bench.importlib, "import_module", lambda name: object())
    figures, not_run, runs, _ = run_suites(("bad", "missing", "good"), quick=True)
    assert [f.name for f in figures] == ["things/s"]
    assert "RuntimeError: broker unreachable" in not_run["bad"]
    assert "no_such_package" in not_run["missing"]
    assert [(r.name, r.status) for r in runs] == [
        ("bad", "failed"),
        ("missing", "not run"),
        ("good", "ok"),
    ]
    report = render_markdown(
        figures, not_run, started=datetime(2026, 1, 1, tzinfo=UTC), suites=runs, total_s=3
    )
    assert "Machine: " in report
    assert "| good | things/s | 10 /s | - | - | naive | 5 | 2.00x |" in report
    assert "| bad | fails | failed: RuntimeError: broker unreachable |" in report
    assert "## Suites not run" in report


def test_resmon_bench_runs_the_suites_of_the_checkout() -> None:
    from click.testing import CliRunner

    from resmon.cli import main

    result = CliRunner().invoke(main, ["bench", "--help"])
    assert result.exit_code == 0, result.output
    suites = "agent|api|costs|dashboard|hub-core|hub-e2e|ingest|loadtest|recommend|simulator"
    assert suites in result.output


def test_resmon_bench_without_the_benchmarks_says_how_to_get_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An installed wheel has no benchmarks package: the command says where they are."""
    import sys

    from click.testing import CliRunner

    from resmon.cli import main

    for name in [m for m in sys.modules if m == "benchmarks" or m.startswith("benchmarks.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "benchmarks", None)  # what an import finds when it is absent
    result = CliRunner().invoke(main, ["bench", "--only", "agent"])
    assert result.exit_code == 1
    assert "not part of the installed package" in result.output
    assert "source checkout" in result.output
    assert "make bench" in result.output
