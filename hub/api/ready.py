"""``GET /readyz``: can this hub serve? PostgreSQL, Redis and Kafka each answer in time.

Public (no key), for load balancers and orchestrators. The three checks run
at once, each bounded by :data:`CHECK_TIMEOUT_S`:

- ``postgresql``: ``SELECT 1`` on the hub's pool;
- ``redis`` (when the hub has a cache): ``PING``;
- ``kafka`` (when the hub has a producer, i.e. ingest is on): a metadata
  request for the whole cluster through the producer's own client.

200 ``{"status": "ready", "checks": {"postgresql": "ok", ...}}`` when all pass;
503 ``{"status": "unavailable", "checks": {...}}`` otherwise, each failing
check's value saying what failed (the server, the variable that names it, and
the error or the timeout). A component the hub runs without reads
``"disabled"`` and does not make the hub unready.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Final

import msgspec
import structlog
from aiohttp import web
from aiokafka.errors import KafkaError

from .._exceptions import UnreachableError, storage_errors
from ._http import ApiContext, context_of, json_response

__all__ = ["CHECK_TIMEOUT_S", "Readiness", "readiness", "readyz"]

_log = structlog.get_logger(component="hub.api.ready")

#: how long each check may take before it counts as failed
CHECK_TIMEOUT_S: Final = 2.0
OK: Final = "ok"
DISABLED: Final = "disabled"


class Readiness(msgspec.Struct, frozen=True):
    """The answer of ``/readyz``: ``ready`` or ``unavailable``, and each check's outcome."""

    status: str
    checks: dict[str, str]


async def _check(where: str, probe: Callable[[], Awaitable[object]], limit_s: float) -> str:
    try:
        async with asyncio.timeout(limit_s):
            await probe()
    except TimeoutError:
        return f"{where}: no answer within {limit_s:g} s"
    except UnreachableError as exc:  # names the server and its variable already
        return str(exc)
    except Exception as exc:  # any failure makes the hub unready; say which and why
        return f"{where}: {exc}"
    return OK


async def readiness(ctx: ApiContext, limit_s: float = CHECK_TIMEOUT_S) -> Readiness:
    """Run the checks of ``ctx``'s components concurrently, each within ``limit_s``."""
    config = ctx.config

    async def postgresql() -> None:
        with storage_errors(config.database_address):
            await ctx.db.fetchval("SELECT 1")

    probes: dict[str, tuple[str, Callable[[], Awaitable[object]]]] = {
        "postgresql": (f"PostgreSQL {config.database_address} (DATABASE_URL)", postgresql),
    }
    if (cache := ctx.cache) is not None:
        probes["redis"] = (f"Redis {config.redis_address} (REDIS_URL)", cache.ping)
    if (producer := ctx.producer) is not None:
        servers = config.kafka_bootstrap_servers

        async def kafka() -> None:
            try:
                await producer.client.fetch_all_metadata()
            except KafkaError as exc:  # no broker answered (or none was ever reached)
                raise UnreachableError(
                    "Kafka", servers, "KAFKA_BOOTSTRAP_SERVERS", str(exc)
                ) from exc

        probes["kafka"] = (f"Kafka {servers} (KAFKA_BOOTSTRAP_SERVERS)", kafka)
    outcomes = await asyncio.gather(*(_check(*probe, limit_s) for probe in probes.values()))
    checks = {"postgresql": DISABLED, "redis": DISABLED, "kafka": DISABLED}
    checks.update(zip(probes, outcomes, strict=True))
    ready = all(v in (OK, DISABLED) for v in checks.values())
    return Readiness("ready" if ready else "unavailable", checks)


async def readyz(request: web.Request) -> web.Response:
    found = await readiness(context_of(request))
    if found.status != "ready":
        failing = sorted(k for k, v in found.checks.items() if v not in (OK, DISABLED))
        _log.warning("not_ready", failing=failing)
    return json_response(found, status=200 if found.status == "ready" else 503)
