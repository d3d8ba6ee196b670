"""The ``resmon`` command line.

Each role's commands live with the role (``edge_agent/cli.py``,
``hub/cli.py``, ``simulator/cli.py``) and are imported only when used, so an
agent host without the hub's dependencies can still run ``resmon agent ...``.
"""

from __future__ import annotations

import importlib
from typing import Final

import click

from . import __version__
from ._logging import configure_logging

__all__ = ["main"]

#: subcommand -> ("module:attribute", one-line help shown by ``resmon --help``)
_COMMANDS: Final[dict[str, tuple[str, str]]] = {
    "agent": ("edge_agent.cli:agent", "Edge agent: poll SNMP routers and forward usage to Kafka."),
    "hub": ("hub.cli:hub", "Central hub: consume usage, run checks, store, serve REST."),
    "sim": ("simulator.cli:sim", "Simulated routers answering SNMP, for demos and load tests."),
    "demo": ("resmon.demo:demo", "Run routers, agent, hub and servers on this machine."),
    "bench": ("benchmarks.runner:bench", "Run the benchmark suites and write BENCHMARKS.md."),
    "loadtest": ("loadtest.cli:loadtest", "Drive scenarios of simulated routers through it all."),
}


def _missing_message(cmd_name: str, exc: ImportError) -> str:
    """What to tell someone whose ``resmon <cmd_name>`` cannot import what it needs."""
    missing = exc.name or str(exc)
    if missing.partition(".")[0] == "benchmarks":
        return (
            f"'resmon {cmd_name}' runs the benchmark suites, which are not part of the "
            "installed package: they are the benchmarks/ folder of a resmon source checkout. "
            "In a checkout run 'make bench' (or 'pip install -e .[all]' and then "
            "'resmon bench')."
        )
    extra = {"agent": "agent", "hub": "hub", "demo": "all", "bench": "all"}.get(cmd_name, cmd_name)
    return (
        f"'resmon {cmd_name}' needs the Python package {missing!r}, which is not "
        f"installed. Install it with: pip install 'resmon[{extra}]'"
    )


class _LazyGroup(click.Group):
    """A group whose subcommands are imported on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted([*super().list_commands(ctx), *_COMMANDS])

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in _COMMANDS:
            return super().get_command(ctx, cmd_name)
        target, short_help = _COMMANDS[cmd_name]
        module_name, attr = target.split(":")
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            message = _missing_message(cmd_name, exc)

            # takes any arguments, so `resmon hub run ...` shows the message, not a usage error
            @click.command(
                cmd_name,
                help=short_help,
                context_settings={"ignore_unknown_options": True, "allow_extra_args": True},
            )
            @click.argument("args", nargs=-1, type=click.UNPROCESSED)
            def unavailable(args: tuple[str, ...]) -> None:
                raise click.ClickException(message)

            return unavailable
        command = getattr(module, attr)
        assert isinstance(command, click.Command)
        command.short_help = command.short_help or short_help
        return command


@click.group(cls=_LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="resmon")
@click.option(
    "--log-level",
    default="info",
    show_default=True,
    type=click.Choice(["debug", "info", "warning", "error"]),
    help="Least severe log events to print.",
)
@click.option(
    "--log-format",
    default="auto",
    show_default=True,
    type=click.Choice(["auto", "json", "console"]),
    help="json for machines, console for people; auto picks console on a terminal.",
)
def main(log_level: str, log_format: str) -> None:
    """resmon: exact, real-time customer resource usage for ISPs.

    \b
    Typical use:
      resmon demo                         everything on this machine, for a look
      resmon agent check-config -c agent.yaml
      resmon agent run -c agent.yaml      near the routers
      resmon hub migrate && resmon hub run
      resmon sim --routers 10             simulated routers for tests

    The hub reads DATABASE_URL, REDIS_URL and KAFKA_BOOTSTRAP_SERVERS.
    """
    configure_logging(log_level, log_format)  # type: ignore[arg-type]
