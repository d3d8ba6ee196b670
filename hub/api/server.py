"""Serving the REST app on a TCP port inside a task group.

The access log (``RESMON_HUB_ACCESS_LOG=1``) is one structlog line per request,
``http_request`` with method, path, query, status and milliseconds. Query
values that are credentials (:data:`SECRET_PARAMS`, e.g. the stream token) are
written as ``***``; request headers (``Authorization``, ``X-API-Key``, cookies)
are never logged.
"""

from __future__ import annotations

import errno
import logging
from collections.abc import Mapping
from typing import Final

import anyio
import structlog
from aiohttp import web
from aiohttp.abc import AbstractAccessLogger
from anyio.abc import TaskStatus

from .._exceptions import HubError

__all__ = ["SECRET_PARAMS", "AccessLog", "runner", "serve"]

#: query parameters whose values are credentials: never logged
SECRET_PARAMS: Final = frozenset({"token", "key", "api_key", "apikey", "access_token"})

_access = structlog.get_logger(component="hub.api.access")


def redacted_query(query: Mapping[str, str]) -> str:
    """``query`` as ``a=1&token=***``: credential values hidden."""
    return "&".join(
        f"{name}={'***' if name.lower() in SECRET_PARAMS else value}"
        for name, value in query.items()
    )


class AccessLog(AbstractAccessLogger):
    """aiohttp's access log as structlog lines, credentials left out."""

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        _access.info(
            "http_request",
            method=request.method,
            path=request.path,
            query=redacted_query(request.query),
            status=response.status,
            ms=round(time * 1000, 2),
            remote=request.remote,
        )


def runner(app: web.Application, *, access_log: bool = False) -> web.AppRunner:
    """The runner the hub serves ``app`` with (its access log: :class:`AccessLog`)."""
    return web.AppRunner(
        app,
        access_log=logging.getLogger("hub.api.access") if access_log else None,
        access_log_class=AccessLog,
        handle_signals=False,
    )


async def serve(
    app: web.Application,
    host: str,
    port: int,
    *,
    access_log: bool = False,
    task_status: TaskStatus[int] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``app`` until cancelled; ``task_status.started(bound_port)`` (port 0 picks one)."""
    served = runner(app, access_log=access_log)
    await served.setup()
    try:
        site = web.TCPSite(served, host, port)
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
            await served.cleanup()
