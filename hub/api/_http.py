"""What every route shares: the context the handlers read and the JSON answers they give.

Every error is an RFC 9457 problem details object (``application/problem+json``),
built by :func:`error_response`::

    {"type": "https://resmon.dev/problems/validation", "title": "Invalid request",
     "status": 400, "detail": "limit must be an integer 1-1000",
     "instance": "/api/alerts", "errors": [{"parameter": "limit", "message": "..."}]}

``type`` is a stable URI per kind of error (:data:`PROBLEM_TYPES`); ``instance``
is the request's path; ``errors`` names what was wrong: ``path`` is a JSON path
into the request body (``$.scopes``, ``$[1].eventId``), ``parameter`` a query or
path parameter or a header (``limit``, ``Content-Type``).
"""

from __future__ import annotations

import contextvars
import hashlib
import http
import re
from typing import Any, Final

import msgspec
from aiohttp import web
from aiokafka import AIOKafkaProducer

from ..config import HubConfig
from ..metrics import HubMetrics
from ..storage.live import LivePublisher
from ..storage.provision import Executor
from ..storage.redis_cache import RedisCache

__all__ = [
    "CONTEXT",
    "PROBLEM_BASE",
    "PROBLEM_JSON",
    "PROBLEM_TYPES",
    "ApiContext",
    "FieldError",
    "Problem",
    "context_of",
    "error_response",
    "etag_of",
    "json_response",
    "precondition_failure",
    "problem_of",
    "request_path",
    "reset_request_path",
]

_encoder = msgspec.json.Encoder(decimal_format="string")

PROBLEM_JSON: Final = "application/problem+json"
PROBLEM_BASE: Final = "https://resmon.dev/problems/"

#: status -> (the last segment of its problem type URI, its title)
PROBLEM_TYPES: Final[dict[int, tuple[str, str]]] = {
    400: ("validation", "Invalid request"),
    401: ("unauthorized", "API key missing or not valid"),
    403: ("forbidden", "API key lacks a scope"),
    404: ("not-found", "Not found"),
    405: ("method-not-allowed", "Method not allowed"),
    409: ("conflict", "Conflicts with the current state"),
    412: ("precondition-failed", "Precondition failed"),
    413: ("too-large", "Request body too large"),
    415: ("unsupported-media-type", "Unsupported media type"),
    422: ("unprocessable", "Request cannot be processed"),
    428: ("precondition-required", "Precondition required"),
    429: ("rate-limited", "Too many requests"),
    500: ("internal", "Internal error"),
    503: ("unavailable", "Service unavailable"),
}

#: a ``where`` naming a parameter or header is an ``errors`` entry for these statuses only
_PARAMETER_STATUSES: Final = frozenset({400, 401, 403, 413, 415, 422})

_AT: Final = re.compile(r"at `(\$[^`]*)`")
_PATH: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_path", default=None)


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


class FieldError(msgspec.Struct, frozen=True, omit_defaults=True):
    """One thing wrong with the request: a body field (``path``) or a ``parameter``."""

    message: str
    #: JSON path into the request body: ``$`` (the whole body), ``$.name``, ``$[0].eventId``
    path: str | None = None
    #: a query or path parameter or a header: ``limit``, ``customerId``, ``Content-Type``
    parameter: str | None = None


class Problem(msgspec.Struct, frozen=True, omit_defaults=True):
    """RFC 9457 problem details: every error the API answers."""

    #: a stable URI per kind of error (``https://resmon.dev/problems/<kind>``)
    type: str
    title: str
    status: int
    #: what went wrong, in words, naming the field or parameter
    detail: str
    #: the request path
    instance: str | None = None
    errors: list[FieldError] = []


def json_response(
    data: Any, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    return web.Response(
        body=_encoder.encode(data), status=status, content_type="application/json", headers=headers
    )


def etag_of(body: bytes) -> str:
    """The strong ``ETag`` of an answer's body: changes whenever the answer does."""
    return '"' + hashlib.blake2b(body, digest_size=16).hexdigest() + '"'


def precondition_failure(if_match: str | None, method: str, etag: str) -> tuple[int, str] | None:
    """Why ``If-Match`` does not allow a change of the object now tagged ``etag``, or None.

    (428, why) without the header; (412, why) unless it names ``etag`` or ``*``.
    """
    if if_match is None or not if_match.strip():
        return 428, f"{method} needs an If-Match header with the ETag a GET of it answered"
    tags = [t.strip() for t in if_match.split(",")]
    if "*" not in tags and etag not in tags:
        return 412, (
            f"If-Match {if_match.strip()} does not name the current version: it changed since "
            "it was read; GET it again and redo the change"
        )
    return None


def request_path(path: str | None) -> contextvars.Token[str | None]:
    """Make ``path`` the ``instance`` of the problems answered in this request's task."""
    return _PATH.set(path)


def reset_request_path(token: contextvars.Token[str | None]) -> None:
    _PATH.reset(token)


def _field_errors(status: int, message: str, where: str | None) -> list[FieldError]:
    if not where or where.startswith("/"):
        return []  # nothing named, or the request path (the problem's ``instance``)
    if where == "body":  # msgspec says where: "... - at `$.scopes[0]`"
        at = _AT.search(message)
        return [FieldError(message, path=at.group(1) if at else "$")]
    if where.startswith("$"):
        return [FieldError(message, path=p) for p in where.split("/") if p.startswith("$")]
    if status in _PARAMETER_STATUSES:
        return [FieldError(message, parameter=where)]
    return []


def problem_of(status: int, message: str, where: str | None = None) -> Problem:
    """The problem details of an error: ``where`` is the field, parameter or path it is about."""
    kind, title = PROBLEM_TYPES.get(status, (f"http-{status}", ""))
    if not title:
        try:
            title = http.HTTPStatus(status).phrase
        except ValueError:
            title = "Error"
    return Problem(
        type=PROBLEM_BASE + kind,
        title=title,
        status=status,
        detail=message,
        instance=_PATH.get(),
        errors=_field_errors(status, message, where),
    )


def error_response(status: int, message: str, where: str | None = None) -> web.Response:
    """A problem details answer (``application/problem+json``); see :func:`problem_of`."""
    return web.Response(
        body=_encoder.encode(problem_of(status, message, where)),
        status=status,
        content_type=PROBLEM_JSON,
    )


def context_of(request: web.Request) -> ApiContext:
    return request.app[CONTEXT]
