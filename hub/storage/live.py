"""The live stream's backlog in Redis: one Redis stream per tenant, read by every hub.

Keys (``prefix`` is the hub's Redis prefix): ``{prefix}:live:{tenant}``, a
Redis stream capped at about ``maxlen`` entries (``XADD ... MAXLEN ~``). Each
entry has three fields: ``type`` (``usage``, ``alert`` or ``recommendation``),
``customer`` (the customer it is about) and ``data`` (the JSON the server-sent
event carries). The entry id (``<ms>-<seq>``) is the event's id, so a client
that reconnects with ``Last-Event-ID`` resumes right after the last event it
saw, from whichever hub it reaches, as long as the entry is still in the
backlog.

Whichever hub commits a batch writes its events here; every hub serving
``GET /api/stream`` reads them, so a client sees every hub's events.
:class:`LivePublisher` is what writers use: it holds back usage updates so a
resource gets at most one per ``interval`` seconds (the latest value wins and
goes out when the interval is over), and writes usage only for tenants with a
stream open lately: ``{prefix}:live-watch:{tenant}``, set by every open stream
with a time to live of :data:`WATCH_TTL_S` seconds.
"""

from __future__ import annotations

import math
import re
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Final

import anyio
import msgspec
import redis.asyncio as aioredis

from .._exceptions import HubError, cache_errors
from .current import CachedUsage

__all__ = [
    "ENTRY_ID",
    "KINDS",
    "WATCH_TTL_S",
    "LiveEvent",
    "LivePublisher",
    "LiveStream",
    "usage_data",
]

#: the event types the stream carries
KINDS: Final = ("usage", "alert", "recommendation")
#: seconds a tenant counts as watched after a stream of it was last open (on any hub)
WATCH_TTL_S: Final = 300
#: the shape of an entry id (and so of a valid ``Last-Event-ID``)
ENTRY_ID: Final = re.compile(r"\d{1,20}-\d{1,20}")


class LiveEvent(msgspec.Struct, frozen=True):
    """One event of a tenant's stream."""

    tenant: str
    kind: str
    customer: str
    data: bytes


class LiveStream:
    """Append to and read from the tenants' streams."""

    def __init__(
        self,
        client: aioredis.Redis[bytes],
        *,
        prefix: str = "resmon",
        maxlen: int = 1000,
        address: str = "Redis",
    ) -> None:
        self.client = client
        self.prefix = prefix
        self.maxlen = maxlen
        self._address = address

    def key(self, tenant: str) -> str:
        return f"{self.prefix}:live:{tenant}"

    async def publish(self, events: Sequence[LiveEvent]) -> None:
        """Append ``events`` (in order), one round trip; CacheError if Redis fails."""
        if not events:
            return
        with cache_errors(self._address):
            async with self.client.pipeline(transaction=False) as pipe:
                for e in events:
                    fields: dict[str | bytes, str | bytes] = {
                        "type": e.kind,
                        "customer": e.customer,
                        "data": e.data,
                    }
                    pipe.xadd(self.key(e.tenant), fields, maxlen=self.maxlen, approximate=True)
                await pipe.execute()

    async def watch(self, tenant: str, ttl: int = WATCH_TTL_S) -> None:
        """Note that a stream of ``tenant`` is open (usage events are written for ``ttl`` s)."""
        with cache_errors(self._address):
            await self.client.set(self._watch_key(tenant), b"1", ex=ttl)

    async def watched(self, tenants: Sequence[str]) -> list[bool]:
        """Whether each of ``tenants`` is watched."""
        with cache_errors(self._address):
            got = await self.client.mget([self._watch_key(t) for t in tenants])
        return [v is not None for v in got]

    def _watch_key(self, tenant: str) -> str:
        return f"{self.prefix}:live-watch:{tenant}"

    async def last_id(self, tenant: str) -> str:
        """The id of the tenant's newest entry ("0-0" for an empty stream): read after it."""
        with cache_errors(self._address):
            newest = await self.client.xrevrange(self.key(tenant), count=1)
        return _text(newest[0][0]) if newest else "0-0"

    async def read(
        self, tenant: str, after: str, *, block_ms: int, count: int = 200
    ) -> list[tuple[str, LiveEvent]]:
        """Entries after ``after``; waits up to ``block_ms`` when there are none yet."""
        with cache_errors(self._address):
            got = await self.client.xread({self.key(tenant): after}, count=count, block=block_ms)
        out = []
        for _stream, entries in got or ():
            for entry_id, fields in entries:
                out.append(
                    (
                        _text(entry_id),
                        LiveEvent(
                            tenant=tenant,
                            kind=_text(fields.get(b"type", b"")),
                            customer=_text(fields.get(b"customer", b"")),
                            data=bytes(fields.get(b"data", b"{}")),
                        ),
                    )
                )
        return out


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


#: customer ids -> their tenant ids (the customers it knows of)
TenantLookup = Callable[[list[str]], Awaitable[dict[str, str]]]

_encoder = msgspec.json.Encoder(decimal_format="string")


def usage_data(u: CachedUsage) -> bytes:
    """The data of a ``usage`` event: the cached usage and its customer."""
    customer = u.resource_key.split("/", 1)[0]
    return _encoder.encode({"customerId": customer, **msgspec.to_builtins(u)})


class _Held(msgspec.Struct):
    event: LiveEvent
    due: float


class LivePublisher:
    """Writes a hub's events to :class:`LiveStream`, off the delivery path.

    :meth:`offer_usage` and :meth:`offer` only queue (at most ``queue`` batches;
    more are refused, and the caller counts them); :meth:`run` writes. Usage
    updates are written only for *watched* tenants (a stream was open on any hub
    in the last :data:`WATCH_TTL_S` seconds, so a client
    that reconnects still finds what it missed), and coalesced: a resource's
    update goes out at once when it had none in the last ``interval`` seconds,
    otherwise it is kept (replacing an older one kept) until the interval is
    over. Alerts and recommendations go out at once, watched or not. Customers
    are mapped to their tenant with ``tenants``, cached until
    :meth:`forget_customers` (a customer deleted and created again elsewhere).
    """

    def __init__(
        self,
        stream: LiveStream,
        tenants: TenantLookup,
        *,
        interval: float = 1.0,
        queue: int = 1024,
    ) -> None:
        self.stream = stream
        self.interval = interval
        self._lookup = tenants
        self._tenants: dict[str, str] = {}
        self._watched: dict[str, float] = {}  # tenant -> until when it counts as watched
        self._sent: dict[str, float] = {}  # resource key -> when its last update went out
        self._held: dict[str, _Held] = {}
        self._queue = queue
        self._pending: deque[tuple[str, Sequence[Any]]] = deque()
        self._wake = anyio.Event()

    def offer_usage(self, usage: Sequence[CachedUsage]) -> bool:
        """Queue a delivered batch's usage; False when the queue is full (dropped)."""
        return self._offer("usage", usage)

    def offer(self, kind: str, items: Sequence[tuple[str, bytes]]) -> bool:
        """Queue ``(customer, data)`` events of ``kind``; False when the queue is full."""
        return self._offer(kind, items)

    def _offer(self, kind: str, items: Sequence[Any]) -> bool:
        if not items:
            return True
        if len(self._pending) >= self._queue:
            return False
        self._pending.append((kind, items))
        self._wake.set()
        return True

    def forget_customers(self, customers: Sequence[str] | None) -> None:
        """Forget the tenant of ``customers`` (None: of all): a deleted customer's id may
        come back in another tenant, whose stream must then get its events."""
        if customers is None:
            self._tenants.clear()
        else:
            for c in customers:
                self._tenants.pop(c, None)

    async def tenants_of(self, customers: Sequence[str]) -> dict[str, str]:
        """The tenant of each of ``customers`` that exists."""
        missing = sorted({c for c in customers if c not in self._tenants})
        if missing:
            found = await self._lookup(missing)
            if len(self._tenants) > 100_000:
                self._tenants.clear()
            self._tenants.update(found)
        return {c: self._tenants[c] for c in customers if c in self._tenants}

    async def watched(self, tenants: set[str]) -> set[str]:
        """Which of ``tenants`` have had a stream open lately (a yes is trusted for 1 s)."""
        now = time.monotonic()
        unsure = sorted(t for t in tenants if self._watched.get(t, 0.0) <= now)
        if unsure:
            for tenant, yes in zip(unsure, await self.stream.watched(unsure), strict=True):
                if yes:
                    self._watched[tenant] = now + 1.0
                else:
                    self._watched.pop(tenant, None)
        return {t for t in tenants if self._watched.get(t, 0.0) > now}

    async def send(self, kind: str, items: Sequence[tuple[str, bytes]]) -> None:
        """Publish ``(customer, data)`` events of ``kind`` now (no coalescing)."""
        owners = await self.tenants_of([c for c, _ in items])
        await self.stream.publish(
            [LiveEvent(owners[c], kind, c, data) for c, data in items if c in owners]
        )

    async def usage(self, usage: Sequence[CachedUsage]) -> None:
        """Usage updates of watched tenants: sent or held (see the class)."""
        customers = [u.resource_key.split("/", 1)[0] for u in usage]
        owners = await self.tenants_of(customers)
        watched = await self.watched(set(owners.values()))
        now = time.monotonic()
        out = []
        for customer, u in zip(customers, usage, strict=True):
            tenant = owners.get(customer)
            if tenant is None or tenant not in watched:
                continue
            resource = u.resource_key
            event = LiveEvent(tenant, "usage", customer, usage_data(u))
            last = self._sent.get(resource)
            if resource in self._held or (last is not None and now - last < self.interval):
                due = (last if last is not None else now) + self.interval
                self._held[resource] = _Held(event, due)
            else:
                self._sent[resource] = now
                out.append(event)
        if len(self._sent) > 100_000:  # forget resources quiet for longer than the interval
            self._sent = {k: t for k, t in self._sent.items() if now - t < self.interval}
        await self.stream.publish(out)

    async def flush_due(self) -> float | None:
        """Send the held updates that are due; seconds until the next one (None: none held)."""
        now = time.monotonic()
        due = [k for k, h in self._held.items() if h.due <= now]
        events = []
        for k in due:
            events.append(self._held.pop(k).event)
            self._sent[k] = now
        if events:
            await self.stream.publish(events)
        if not self._held:
            return None
        return max(0.0, min(h.due for h in self._held.values()) - time.monotonic())

    async def run(self, on_error: Callable[[HubError], None]) -> None:
        """Write what is offered and the held updates when due, until cancelled.

        ``on_error`` gets each failed write (the events of that write are lost).
        """
        while True:
            while self._pending:
                kind, items = self._pending.popleft()
                try:
                    if kind == "usage":
                        await self.usage(items)
                    else:
                        await self.send(kind, items)
                except HubError as exc:
                    on_error(exc)
            try:
                wait = await self.flush_due()
            except HubError as exc:
                on_error(exc)
                wait = self.interval
            self._wake = anyio.Event()
            if self._pending:
                continue
            with anyio.move_on_after(math.inf if wait is None else wait):
                await self._wake.wait()
