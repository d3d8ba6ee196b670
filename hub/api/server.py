"""Serving the REST app on a TCP port inside a task group."""

from __future__ import annotations

import errno

import anyio
from aiohttp import web
from anyio.abc import TaskStatus

from .._exceptions import HubError

__all__ = ["serve"]


async def serve(
    app: web.Application,
    host: str,
    port: int,
    *,
    task_status: TaskStatus[int] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``app`` until cancelled; ``task_status.started(bound_port)`` (port 0 picks one)."""
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        try:
            await site.start()
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise HubError(
                    f"HTTP port {host}:{port} is already in use (set RESMON_HUB_HTTP to another)"
                ) from None
            raise HubError(f"cannot listen on {host}:{port} (RESMON_HUB_HTTP): {exc}") from None
        bound = port
        sockets = getattr(site._server, "sockets", None)
        if sockets:
            bound = int(sockets[0].getsockname()[1])
        task_status.started(bound)
        await anyio.sleep_forever()
    finally:
        with anyio.CancelScope(shield=True):
            await runner.cleanup()
