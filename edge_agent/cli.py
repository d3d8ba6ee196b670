"""``resmon agent ...``: run the agent, check its config, discover interfaces."""

from __future__ import annotations

import signal
import sys
from pathlib import Path

import anyio
import click

from ._exceptions import AgentError, ConfigError, SnmpError
from .config import AgentConfig, load_config

__all__ = ["agent"]

_config_option = click.option(
    "-c",
    "--config",
    "config_path",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="The agent's YAML configuration (see agent.yaml.example).",
)


def _load(path: Path) -> AgentConfig:
    try:
        return load_config(path)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None


def _summary(config: AgentConfig) -> str:
    lines = [
        f"agent_id: {config.agent_id}",
        f"interval: {config.interval:g}s (jitter {config.jitter:g}s, "
        f"deadline {config.effective_poll_deadline:g}s, concurrency {config.max_concurrency})",
        f"targets: {len(config.targets)}",
    ]
    for t in config.targets:
        security = (
            f" {t.security_level} user={t.security_name} {t.auth_protocol}"
            + (f"/{t.priv_protocol}" if t.security_level == "authPriv" else "")
            if t.version == "3"
            else ""
        )
        lines.append(f"  - {t.name} {t.host}:{t.port} v{t.version}{security}")
    lines.append(f"mapping rules: {len(config.mapping)}")
    lines += [
        f"  - {r.match_on} ~ /{r.pattern}/ -> {r.resource_type} ({r.direction})"
        for r in config.mapping
    ]
    k, b = config.kafka, config.buffer
    lines.append(f"kafka: {k.bootstrap_servers} topic={k.topic} compression={k.compression}")
    lines.append(f"buffer: {b.directory} max={b.max_bytes} bytes fsync={b.fsync} {b.when_full}")
    if config.http.enabled:
        lines.append(f"http: {config.http.host}:{config.http.port}")
    return "\n".join(lines)


@click.group("agent")
def agent() -> None:
    """Edge agent: poll SNMP routers and forward usage to Kafka."""


@agent.command("check-config")
@_config_option
def check_config(config_path: Path) -> None:
    """Validate the configuration; print a summary, or the error and exit 1."""
    config = _load(config_path)
    click.echo(f"OK {config_path}")
    click.echo(_summary(config))


@agent.command("run")
@_config_option
def run(config_path: Path) -> None:
    """Poll the routers and forward usage until SIGINT/SIGTERM."""
    from .app import run_agent

    config = _load(config_path)

    async def main() -> None:
        async with anyio.create_task_group() as tg:

            async def stop_on_signal() -> None:
                with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
                    async for _ in signals:
                        tg.cancel_scope.cancel()
                        return

            tg.start_soon(stop_on_signal)
            await run_agent(config)

    options = {"use_uvloop": True} if sys.platform != "win32" else {}
    try:
        anyio.run(main, backend="asyncio", backend_options=options)
    except (AgentError, BaseExceptionGroup) as exc:
        error = _agent_error(exc)
        if error is None:
            raise
        raise click.ClickException(str(error)) from None


def _agent_error(exc: BaseException) -> AgentError | None:
    """The first :class:`AgentError` in ``exc`` or its exception groups."""
    if isinstance(exc, AgentError):
        return exc
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            found = _agent_error(inner)
            if found is not None:
                return found
    return None


#: IF-MIB ifOperStatus values
_OPER_STATUS = {1: "up", 2: "down", 3: "test", 5: "dormant", 6: "absent", 7: "lldwn"}


@agent.command("discover")
@_config_option
@click.option("--target", "target_name", default=None, help="Only this target (by name).")
def discover(config_path: Path, target_name: str | None) -> None:
    """Walk the interface table of the targets and show how the rules map each interface."""
    from .mapping import map_interface
    from .snmp import PysnmpClient

    config = _load(config_path)
    targets = [t for t in config.targets if target_name in (None, t.name)]
    if not targets:
        raise click.ClickException(f"no target named {target_name!r} in {config_path}")

    async def main() -> int:
        client = PysnmpClient()
        failures = 0
        try:
            for target in targets:
                click.echo(f"{target.name} ({target.host}:{target.port})")
                try:
                    rows = await client.walk_interfaces(target)
                except SnmpError as exc:
                    click.echo(f"  error: {exc}")
                    failures += 1
                    continue
                for row in rows:
                    mapped = map_interface(config.mapping, row)
                    verdict = (
                        f"-> {mapped.resource_key} [{'/'.join(mapped.directions)}]"
                        if mapped
                        else "(not mapped)"
                    )
                    speed = f"{row.high_speed_mbps}M" if row.high_speed_mbps else "-"
                    status = _OPER_STATUS.get(row.oper_status or 0, "?")
                    click.echo(
                        f"  {row.if_index:>6}  {row.if_name:<20} {speed:>7} {status:<5} "
                        f"alias={row.if_alias!r}  {verdict}"
                    )
        finally:
            await client.aclose()
        return failures

    if anyio.run(main, backend="asyncio"):
        sys.exit(1)
