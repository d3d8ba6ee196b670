"""The one interface every delivery channel implements, and shared HTTP handling."""

from __future__ import annotations

import contextlib
import email.utils
import time
from collections.abc import Iterator, Mapping
from typing import Protocol

import aiohttp
import msgspec

from .._exceptions import DeliveryError, UnsafeURLError
from ..message import Message

__all__ = ["Channel", "Target", "check_response", "http_errors", "retry_after"]


class Target(msgspec.Struct, frozen=True):
    """Where one message goes on a channel (from the customer's preferences)."""

    recipients: tuple[str, ...] = ()
    url: str | None = None
    secret: str | None = None


class Channel(Protocol):
    """Deliver ``message`` to ``target`` or raise :class:`DeliveryError`."""

    name: str

    async def send(self, message: Message, target: Target) -> None: ...


#: the longest ``Retry-After`` honoured: past it the delivery deadline decides
RETRY_AFTER_MAX_S = 86_400.0


def retry_after(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or an HTTP date), at most a day.

    Capped so that any server's answer can be stored with the attempt (an
    unstorable value failed the attempt's record, and the row was sent again
    and again without ever reaching its deadline).
    """
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return min(float(value), RETRY_AFTER_MAX_S)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, OverflowError):
        return None
    return min(max(0.0, when.timestamp() - time.time()), RETRY_AFTER_MAX_S)


_RETRYABLE = frozenset({408, 425, 429, 500, 502, 503, 504})


def check_response(status: int, headers: Mapping[str, str], what: str, body: str = "") -> None:
    """Raise DeliveryError unless ``status`` is 2xx; never includes the URL."""
    if 200 <= status < 300:
        return
    if 300 <= status < 400:
        raise DeliveryError(
            f"{what} answered {status} redirect; redirects are refused (SSRF guard)",
            retryable=False,
            status=status,
        )
    detail = f": {body[:200]}" if body else ""
    raise DeliveryError(
        f"{what} answered {status}{detail}",
        retryable=status in _RETRYABLE,
        retry_after=retry_after(headers.get("Retry-After")),
        status=status,
    )


@contextlib.contextmanager
def http_errors(what: str) -> Iterator[None]:
    """Translate aiohttp / socket errors into DeliveryError without echoing the URL."""
    try:
        yield
    except DeliveryError:
        raise
    except UnsafeURLError as exc:
        raise DeliveryError(f"{what}: {exc}", retryable=False) from None
    except aiohttp.ClientConnectorError as exc:
        cause = exc.__cause__ or exc.__context__
        if isinstance(cause, UnsafeURLError):
            raise DeliveryError(f"{what}: {cause}", retryable=False) from None
        raise DeliveryError(f"{what}: cannot connect ({type(exc).__name__})") from None
    except (aiohttp.ClientError, TimeoutError, OSError) as exc:
        raise DeliveryError(f"{what}: {type(exc).__name__}") from None
