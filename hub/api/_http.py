"""What every route shares: the context the handlers read and the JSON answers they give.

Errors are JSON: ``{"error": "...", "where": "..."}`` (where: the field,
parameter or path the error is about).
"""

from __future__ import annotations

from typing import Any

import msgspec
from aiohttp import web
from aiokafka import AIOKafkaProducer

from ..config import HubConfig
from ..metrics import HubMetrics
from ..storage.live import LivePublisher
from ..storage.provision import Executor
from ..storage.redis_cache import RedisCache

__all__ = ["CONTEXT", "ApiContext", "context_of", "error_response", "json_response"]

_encoder = msgspec.json.Encoder(decimal_format="string")


class ApiContext(msgspec.Struct):
    """What the handlers need; ``producer``/``cache`` may be None (ingest/cache disabled)."""

    config: HubConfig
    db: Executor
    metrics: HubMetrics
    cache: RedisCache | None = None
    producer: AIOKafkaProducer | None = None
    #: the live stream (``GET /api/stream``); None: the stream is off
    live: LivePublisher | None = None


CONTEXT = web.AppKey("context", ApiContext)


def json_response(
    data: Any, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    return web.Response(
        body=_encoder.encode(data), status=status, content_type="application/json", headers=headers
    )


def error_response(status: int, message: str, where: str | None = None) -> web.Response:
    return json_response({"error": message, "where": where}, status)


def context_of(request: web.Request) -> ApiContext:
    return request.app[CONTEXT]
