"""``resmon hub run``, ``resmon hub migrate`` and ``resmon hub forecast ...``."""

from __future__ import annotations

import signal
from typing import Any

import anyio
import click

from ._exceptions import HubError
from .config import ENV_HELP, HubConfig
from .forecast_cli import forecast
from .notify.settings import ENV_HELP as NOTIFY_ENV_HELP

__all__ = ["hub"]


def _config() -> HubConfig:
    try:
        return HubConfig.from_env()
    except HubError as exc:
        raise click.ClickException(str(exc)) from None


def _backend_options() -> dict[str, Any]:
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return {}
    return {"use_uvloop": True}


@click.group("hub")
def hub() -> None:
    """Central hub: consume usage, run checks, store, serve REST."""


@hub.command(
    "run",
    help="Run the hub: migrate the database, consume usage from Kafka, keep one actor per "
    "resource, raise threshold, anomaly and forecast alerts, store to PostgreSQL, cache in "
    "Redis, notify people, serve REST.\n\n"
    "Configured by environment variables:\n\n\b\n"
    + ENV_HELP
    + "\n\nNotifications (email, SMS, Slack, webhooks; see docs/alerts.md):\n\n\b\n"
    + NOTIFY_ENV_HELP,
)
def run() -> None:
    config = _config()

    async def main() -> None:
        from .app import run_hub

        async with anyio.create_task_group() as tg:
            with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
                tg.start_soon(run_hub, config)
                async for _ in signals:
                    tg.cancel_scope.cancel()
                    break

    try:
        anyio.run(main, backend_options=_backend_options())
    except HubError as exc:
        raise click.ClickException(str(exc)) from None
    except BaseExceptionGroup as group:
        hub_errors = [e for e in _leaves(group) if isinstance(e, HubError)]
        if hub_errors:
            raise click.ClickException(str(hub_errors[0])) from None
        raise


def _leaves(group: BaseExceptionGroup[BaseException]) -> list[BaseException]:
    out: list[BaseException] = []
    for exc in group.exceptions:
        if isinstance(exc, BaseExceptionGroup):
            out.extend(_leaves(exc))
        else:
            out.append(exc)
    return out


@hub.command("migrate")
def migrate_cmd() -> None:
    """Apply pending database migrations (needs DATABASE_URL only); safe to run twice."""
    import os

    from .config import check_database_url
    from .storage.migrate import migrate

    url = os.environ.get("DATABASE_URL", "").strip()
    if not url:
        raise click.ClickException("DATABASE_URL is not set")
    try:
        address = check_database_url(url)
    except HubError as exc:
        raise click.ClickException(str(exc)) from None
    try:
        applied = anyio.run(lambda: migrate(url, address=address))
    except HubError as exc:
        raise click.ClickException(str(exc)) from None
    if applied:
        click.echo(f"applied migrations: {', '.join(f'{v:04d}' for v in applied)}")
    else:
        click.echo("database is up to date")


hub.add_command(forecast)  # resmon hub forecast refresh / show (hub/forecast_cli.py)
