"""What the hub's commands share: DATABASE_URL checked, a connection for one action,
and the part of the configuration that the cost and forecast commands read.

Every problem becomes a ``click.ClickException`` that names the variable, so a
command prints one line and exits 1 instead of a traceback.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import anyio
import click

from ._exceptions import HubError
from .config import HubConfig

__all__ = ["cost_settings", "database_url", "with_db"]

T = TypeVar("T")


def database_url() -> tuple[str, str]:
    """DATABASE_URL and its host:port, or a ClickException saying what is wrong."""
    import os

    from .config import check_database_url

    url = os.environ.get("DATABASE_URL", "").strip()
    if not url:
        raise click.ClickException("DATABASE_URL is not set")
    try:
        return url, check_database_url(url)
    except HubError as exc:
        raise click.ClickException(str(exc)) from None


def with_db(action: Callable[[Any], Awaitable[T]]) -> T:
    """Run ``action(connection)`` against DATABASE_URL; a HubError becomes a ClickException."""
    import asyncpg  # type: ignore[import-untyped]

    from ._exceptions import storage_errors

    url, address = database_url()

    async def main() -> T:
        with storage_errors(address):  # a database error part way is one clear line too
            conn = await asyncpg.connect(url)
            try:
                return await action(conn)
            finally:
                await conn.close()

    try:
        return anyio.run(main)
    except HubError as exc:
        raise click.ClickException(str(exc)) from None


def cost_settings() -> tuple[str, str, HubConfig]:
    """DATABASE_URL, its host:port, and the rest of the hub's config the cost commands read."""
    import os

    from .config import HUB_VARS
    from .env import read

    url, address = database_url()
    wanted = {
        "RESMON_BILLING_TZ",
        "RESMON_CURRENCY",
        "RESMON_COST_ROUNDING",
        "RESMON_RECOMMEND_MIN_SAVINGS",
        "RESMON_HUB_ALERTS_TOPIC",  # where the forecast refresh's alerts are published
    }
    try:
        values = read([v for v in HUB_VARS if v.name in wanted], os.environ)
        # the remaining fields only have to be valid; the cost commands do not use them
        config = HubConfig(
            database_url=url,
            redis_url="redis://unused",
            kafka_bootstrap_servers="unused:1",
            api_key_secret="not used by the cost commands".ljust(32, "."),
            **values,
        )
    except HubError as exc:
        raise click.ClickException(str(exc)) from None
    return url, address, config
