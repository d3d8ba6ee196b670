"""``resmon bench``: run the benchmark suites and write BENCHMARKS.md.

Each suite is a function in a module of this package named after what it
measures (:mod:`benchmarks.simulator`, :mod:`benchmarks.agent`,
:mod:`benchmarks.hub`, :mod:`benchmarks.loadtest`) that returns
:class:`Figure` values; every figure carries the baseline measured in the
same run (the naive way of doing the same job) so the ratio means something
on whatever machine ran it. Latency percentiles come from HdrHistogram.

Suites are imported lazily: a suite whose dependencies are missing, or that
raises, is reported as "not run" with the reason (the other suites still
run), never silently skipped. The report names the date, the machine and how
long each suite took. A suite module may also define ``markdown_sections()``
returning extra Markdown (e.g. the load-test summaries) appended to the report.
"""

from __future__ import annotations

import importlib
import sys
import time
import traceback
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

import click
import msgspec

from resmon._machine import machine_description

__all__ = [
    "SUITES",
    "Figure",
    "SuiteRun",
    "SuiteSkipped",
    "bench",
    "machine_description",
    "render_markdown",
    "run_suites",
]


class SuiteSkipped(Exception):
    """Raised by a suite that cannot run here (a tool missing); reported as "skipped"."""


class Figure(msgspec.Struct, frozen=True, kw_only=True):
    """One measured figure and the baseline measured beside it."""

    suite: str
    name: str
    value: float
    unit: str
    command: str
    higher_is_better: bool = True
    target: float | None = None
    baseline_name: str | None = None
    baseline_value: float | None = None
    notes: str = ""

    @property
    def ratio(self) -> float | None:
        if not self.baseline_value or not self.value:
            return None
        if self.higher_is_better:
            return self.value / self.baseline_value
        return self.baseline_value / self.value

    @property
    def target_met(self) -> bool | None:
        if self.target is None:
            return None
        return self.value >= self.target if self.higher_is_better else self.value <= self.target


#: suite name -> ("module:function", what it measures). The function takes
#: ``quick: bool`` and returns ``list[Figure]``.
SUITES: Final[dict[str, tuple[str, str]]] = {
    "simulator": ("benchmarks.simulator:suite", "GETBULK responses/s the simulator answers"),
    "agent": (
        "benchmarks.agent:suite",
        "varbinds/s polled per core; a 1,000 x 48 poll; CPU per 1,000 counters, full path",
    ),
    "hub-core": (
        "benchmarks.hub:core_suite",
        "actor core readings/s; RSS with 1,000,000 resources",
    ),
    "hub-e2e": (
        "benchmarks.hub:e2e_suite",
        "readings/s and alert latency through broker, PG, Redis",
    ),
    "ingest": ("benchmarks.hub:ingest_suite", "POST /api/metrics/ingest events/s"),
    "loadtest": ("benchmarks.loadtest:suite", "isp-10k and faults scenarios end to end"),
    "costs": ("benchmarks.costs:suite", "closed-month cost breakdowns/s for 10,000 resources"),
    "recommend": (
        "benchmarks.recommend:suite",
        "daily recommendation job's time for 10,000 resources x 30 days",
    ),
    "api": ("benchmarks.api:suite", "REST API under wrk: ingest req/s, batch events/s, reads p99"),
    "dashboard": (
        "benchmarks.dashboard:suite",
        "dashboard in Chromium: first load, JavaScript shipped, alert to screen",
    ),
}


class SuiteRun(msgspec.Struct, kw_only=True):
    """How one suite went: ``status`` is "ok", "not run" or "failed"."""

    name: str
    what: str
    status: str
    seconds: float = 0.0
    reason: str = ""
    figures: int = 0


def _fmt(value: float | None) -> str:
    if value is None:
        return "-"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:,.3g}"


def _memory() -> str:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return f", {int(line.split()[1]) / 2**20:.0f} GiB RAM"
    except (OSError, ValueError, IndexError):
        pass
    return ""


def render_markdown(
    figures: list[Figure],
    not_run: dict[str, str],
    *,
    started: datetime,
    suites: list[SuiteRun] | None = None,
    sections: list[str] | None = None,
    total_s: float | None = None,
) -> str:
    lines = [
        "# Benchmarks",
        "",
        f"Run: {started.strftime('%Y-%m-%d %H:%M UTC')} with `make bench` "
        "(`resmon bench --output BENCHMARKS.md`).",
        f"Machine: {machine_description()}{_memory()}.",
        "",
        "Every figure is measured in the same run as its baseline; the ratio is "
        "ours over the baseline (higher is better for rates, lower for times).",
        "",
        "| suite | figure | value | target | met | baseline | baseline value | ratio |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for f in figures:
        met = {True: "yes", False: "**no**", None: "-"}[f.target_met]
        target = (
            "-" if f.target is None else ("≥ " if f.higher_is_better else "≤ ") + _fmt(f.target)
        )
        ratio = "-" if f.ratio is None else f"{f.ratio:.2f}x"
        lines.append(
            f"| {f.suite} | {f.name} | {_fmt(f.value)} {f.unit} | {target} | {met} "
            f"| {f.baseline_name or '-'} | {_fmt(f.baseline_value)} | {ratio} |"
        )
    if suites:
        took = f" (all suites: {total_s:,.0f} s)" if total_s is not None else ""
        lines += ["", f"## Suites{took}", "", "| suite | measures | status | seconds |"]
        lines.append("| --- | --- | --- | --- |")
        for run in suites:
            status = run.status if not run.reason else f"{run.status}: {run.reason}"
            lines.append(f"| {run.name} | {run.what} | {status} | {run.seconds:,.0f} |")
    lines += ["", "## How to reproduce each figure", ""]
    for f in figures:
        note = f" {f.notes}" if f.notes else ""
        lines.append(f"- **{f.suite} / {f.name}**: `{f.command}`.{note}")
    if not_run:
        lines += ["", "## Suites not run", ""]
        lines += [f"- **{name}**: {why}" for name, why in not_run.items()]
    for section in sections or []:
        lines += ["", section.rstrip()]
    return "\n".join(lines) + "\n"


def _load(target: str) -> Callable[[bool], list[Figure]]:
    module, _, attr = target.partition(":")
    fn = getattr(importlib.import_module(module), attr)
    assert callable(fn)
    return fn  # type: ignore[no-any-return]


@click.command("bench")
@click.option(
    "--only",
    multiple=True,
    type=click.Choice(sorted(SUITES)),
    help="Run only this suite (repeatable). Default: all.",
)
@click.option(
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write the Markdown report here (e.g. BENCHMARKS.md). Default: print it.",
)
@click.option("--quick", is_flag=True, help="Shorter runs, for a smoke check of the suites.")
def bench(only: tuple[str, ...], output: Path | None, quick: bool) -> None:
    """Run the benchmark suites and report figures beside same-run baselines."""
    started = datetime.now(UTC)
    t0 = time.monotonic()
    figures, not_run, suites, sections = run_suites(only or tuple(SUITES), quick)
    report = render_markdown(
        figures,
        not_run,
        started=started,
        suites=suites,
        sections=sections,
        total_s=time.monotonic() - t0,
    )
    if output is None:
        sys.stdout.write(report)
    else:
        output.write_text(report)
        click.echo(f"[bench] wrote {output}", err=True)


def run_suites(
    names: tuple[str, ...], quick: bool
) -> tuple[list[Figure], dict[str, str], list[SuiteRun], list[str]]:
    """Run the named suites; one that cannot be imported or raises is "not run"."""
    figures: list[Figure] = []
    not_run: dict[str, str] = {}
    suites: list[SuiteRun] = []
    sections: list[str] = []
    for name in names:
        target, what = SUITES[name]
        click.echo(f"[bench] {name}: {what} ...", err=True)
        t0 = time.monotonic()
        try:
            suite = _load(target)
        except ImportError as exc:
            reason = f"cannot import {target}: {exc}"
            not_run[name] = reason
            suites.append(SuiteRun(name=name, what=what, status="not run", reason=reason))
            click.echo(f"[bench] {name}: not run ({exc})", err=True)
            continue
        try:
            results = suite(quick)
        except SuiteSkipped as exc:
            not_run[name] = f"skipped: {exc}"
            suites.append(SuiteRun(name=name, what=what, status="skipped", reason=str(exc)))
            click.echo(f"[bench] {name}: skipped ({exc})", err=True)
            continue
        except Exception as exc:
            leaf: BaseException = exc
            while isinstance(leaf, BaseExceptionGroup) and leaf.exceptions:
                leaf = leaf.exceptions[0]  # the first real error, not the task-group wrapper
            reason = type(leaf).__name__ + (f": {leaf}" if str(leaf) else "")
            frames = traceback.extract_tb(leaf.__traceback__)
            where_line = f"{frames[-1].filename}:{frames[-1].lineno}" if frames else "?"
            not_run[name] = f"failed after {time.monotonic() - t0:.0f} s: {reason} ({where_line})"
            suites.append(
                SuiteRun(
                    name=name,
                    what=what,
                    status="failed",
                    seconds=time.monotonic() - t0,
                    reason=reason[:200],
                )
            )
            click.echo(f"[bench] {name}: FAILED ({reason})", err=True)
            continue
        figures.extend(results)
        for f in results:
            click.echo(f"[bench]   {f.name}: {_fmt(f.value)} {f.unit}", err=True)
        extra = getattr(
            importlib.import_module(target.partition(":")[0]), "markdown_sections", None
        )
        if callable(extra):
            sections.extend(extra())
        seconds = time.monotonic() - t0
        suites.append(
            SuiteRun(name=name, what=what, status="ok", seconds=seconds, figures=len(results))
        )
        click.echo(f"[bench] {name}: done in {seconds:.0f} s", err=True)
    return figures, not_run, suites, sections
