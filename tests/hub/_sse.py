"""A small server-sent events reader for the stream tests (what EventSource does)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import aiohttp

__all__ = ["Event", "SseReader"]


@dataclass
class Event:
    kind: str
    data: Any
    id: str | None = None
    comments: list[str] = field(default_factory=list)


class SseReader:
    """Reads the events of an open ``text/event-stream`` response, one at a time."""

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        assert response.status == 200, response.status
        assert response.content_type == "text/event-stream"
        self.response = response
        #: the id of the last event with one (what EventSource sends as Last-Event-ID)
        self.last_id: str | None = None

    async def next(self) -> Event:
        """The next event (comments and ``retry`` lines are skipped)."""
        kind, data, eid = "message", [], None
        comments: list[str] = []
        while True:
            raw = await self.response.content.readline()
            if not raw:
                raise EOFError("the stream ended")
            line = raw.decode().rstrip("\n")
            if line == "":
                if data:
                    if eid is not None:
                        self.last_id = eid
                    return Event(kind, json.loads("\n".join(data)), eid, comments)
                continue
            if line.startswith(":"):
                comments.append(line[1:].strip())
                continue
            name, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if name == "event":
                kind = value
            elif name == "data":
                data.append(value)
            elif name == "id":
                eid = value

    async def next_of(self, kind: str, **match: Any) -> Event:
        """The next event of ``kind`` whose data has the ``match`` fields (others skipped)."""
        while True:
            event = await self.next()
            if event.kind == kind and all(event.data.get(k) == v for k, v in match.items()):
                return event
