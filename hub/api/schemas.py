"""Response bodies of the routes in hub/api/app.py (the OpenAPI document reads them)."""

from __future__ import annotations

import msgspec

__all__ = ["Health", "IngestResult"]


class Health(msgspec.Struct, frozen=True):
    """``/healthz``: PostgreSQL answered."""

    status: str = "ok"


class IngestResult(msgspec.Struct, frozen=True, rename="camel"):
    """What ``POST /api/metrics/ingest`` accepted."""

    #: how many events were published
    accepted: int
    #: the CloudEvent id of each event, in the order sent (a retry gets the same id)
    event_ids: list[str]
    #: how many values were rounded to a whole base unit (not with ``?strict=true``)
    rounded: int
    #: the largest rounding, in base units (a decimal string)
    max_rounding: str
