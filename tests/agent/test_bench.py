"""``resmon bench --only agent`` runs (quick mode) and reports figures with baselines."""

from __future__ import annotations

import pytest

pytestmark = [pytest.mark.slow]


def test_the_agent_bench_suite_reports_figures_beside_a_same_run_baseline() -> None:
    pytest.importorskip("simulator")
    from benchmarks.agent import suite

    figures = suite(quick=True)
    names = [f.name for f in figures]
    assert any("varbinds/s per core" in n for n in names)
    assert any("wall time" in n for n in names)
    assert any("agent CPU" in n for n in names)
    assert any("CPU per 1,000 counters" in n for n in names)
    for figure in figures:
        assert figure.suite == "agent"
        assert figure.value > 0
        assert figure.baseline_value is not None
        assert figure.baseline_value > 0
        if "CPU per 1,000 counters" not in figure.name:  # the goal the agent works toward
            assert figure.target_met is True, figure
