"""``resmon loadtest``: run a scenario, list the shipped ones."""

from __future__ import annotations

from pathlib import Path

import anyio
import click

__all__ = ["loadtest"]


@click.group("loadtest")
def loadtest() -> None:
    """Drive thousands of simulated routers through agents and hubs, and measure."""


@loadtest.command("list")
def list_cmd() -> None:
    """The shipped scenarios (loadtest/scenarios/*.yaml)."""
    from ._scenario import list_scenarios, load_scenario

    for name in list_scenarios():
        s = load_scenario(name)
        first = (s.description.strip().splitlines() or [""])[0]
        click.echo(f"{name:<10} {s.routers * s.interfaces:>7,} resources  {first}")


@loadtest.command("run")
@click.argument("scenario")
@click.option(
    "--state-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path(".resmon-state/loadtest"),
    show_default=True,
    help="Embedded servers' data, agent buffers, child logs.",
)
@click.option(
    "--output",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("loadtest-results"),
    show_default=True,
    help="Directory for <scenario>.json and <scenario>.md.",
)
@click.option("--quiet", is_flag=True, help="No live progress table.")
@click.option(
    "--keep-database", is_flag=True, help="Keep the run's database (resmon_<run>) to inspect."
)
def run_cmd(scenario: str, state_dir: Path, output: Path, quiet: bool, keep_database: bool) -> None:
    """Run SCENARIO (a shipped name such as smoke, or a YAML file).

    \b
    Uses DATABASE_URL, REDIS_URL and KAFKA_BOOTSTRAP_SERVERS when set, else
    embedded servers under --state-dir. Exits 1 when the run fails its checks
    (lost or duplicate readings, inexact billing, missing alerts).
    """
    from ._result import render_markdown, write_result
    from ._runner import RunOptions, run_scenario
    from ._scenario import ScenarioError, load_scenario

    try:
        loaded = load_scenario(scenario)
    except ScenarioError as exc:
        raise click.ClickException(str(exc)) from None
    opts = RunOptions(
        state_dir=state_dir,
        progress=not quiet,
        say=lambda m: click.echo(m, err=True),
        keep_database=keep_database,
    )
    result = anyio.run(lambda: run_scenario(loaded, opts), backend_options={"use_uvloop": True})
    json_path, md_path = write_result(result, output)
    click.echo(render_markdown(result))
    click.echo(f"wrote {json_path} and {md_path}", err=True)
    if not result.passed:
        raise SystemExit(1)
