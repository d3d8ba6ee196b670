"""``resmon sim``: serve simulated routers until Ctrl-C (or SIGTERM)."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import anyio
import click
import msgspec
import structlog

from ._exceptions import SimulatorError
from ._fleet import Fleet
from ._model import generate_config, load_config, validate_config

__all__ = ["sim"]

_log = structlog.get_logger(component="simulator.cli")


def _print_endpoints(fleet: Fleet, as_json: bool) -> None:
    if as_json:
        for router, host, port, community in fleet.endpoints:
            click.echo(
                json.dumps({"router": router, "host": host, "port": port, "community": community})
            )
        return
    click.echo(f"{len(fleet.routers)} simulated routers (SNMPv2c), Ctrl-C to stop:")
    for router, host, port, community in fleet.endpoints:
        click.echo(f"  {router:<16} {host}:{port:<6} community {community}")


async def _serve(fleet: Fleet, host: str, as_json: bool) -> None:
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with fleet.serve(host):
            _print_endpoints(fleet, as_json)
            async for signum in signals:
                _log.info("sim.signal", signal=signal.Signals(signum).name)
                break


def _has_uvloop() -> bool:
    try:
        import uvloop  # noqa: F401
    except ImportError:  # pragma: no cover - uvloop is optional
        return False
    return True


@click.command("sim")
@click.option("--routers", default=10, show_default=True, type=click.IntRange(0), help="Routers.")
@click.option(
    "--interfaces", default=8, show_default=True, type=click.IntRange(0), help="Per router."
)
@click.option(
    "--base-port",
    type=click.IntRange(0, 65535),
    default=None,
    help="First UDP port; routers get consecutive ports; 0 = any free ports.  [default: 16100]",
)
@click.option(
    "--rate",
    default=1_000_000,
    show_default=True,
    type=click.IntRange(0),
    help="Receive rate per interface, octets/s (send rate: half).",
)
@click.option("--community", default=None, help="Read community.  [default: public]")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind.")
@click.option(
    "--shared-port",
    is_flag=True,
    help="All routers on one port, told apart by community <community>@<router>.",
)
@click.option(
    "-c",
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Fleet YAML file (see simulator/README.md); replaces --routers/--interfaces/--rate.",
)
@click.option("--json", "as_json", is_flag=True, help="Print endpoints as JSON lines.")
def sim(
    routers: int,
    interfaces: int,
    base_port: int | None,
    rate: int,
    community: str | None,
    host: str,
    shared_port: bool,
    config_path: Path | None,
    as_json: bool,
) -> None:
    """Simulated routers answering SNMPv2c (system, ifTable, ifXTable).

    Each router listens on its own UDP port from --base-port on (or all on one
    port with --shared-port). Counters grow at the configured rates; runs
    until Ctrl-C.
    """
    try:
        if config_path is not None:
            config = load_config(config_path)
            overrides: dict[str, object] = {}
            if base_port is not None:
                overrides["base_port"] = base_port
            if community is not None:
                overrides["community"] = community
            if shared_port:
                overrides["shared_port"] = True
            if overrides:
                config = validate_config(
                    msgspec.structs.replace(config, **overrides), str(config_path)
                )
        else:
            config = generate_config(
                routers=routers,
                interfaces=interfaces,
                base_port=16100 if base_port is None else base_port,
                rate_bps=rate,
                community="public" if community is None else community,
                shared_port=shared_port,
            )
        fleet = Fleet(config)
        anyio.run(_serve, fleet, host, as_json, backend_options={"use_uvloop": _has_uvloop()})
    except SimulatorError as exc:
        raise click.ClickException(str(exc)) from None
