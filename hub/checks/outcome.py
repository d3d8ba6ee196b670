"""``Outcome``: what one actor did with its readings of one batch.

The actor (:mod:`hub.actors`) makes it; the batch transaction
(:mod:`hub.storage.batch`) stores its total and statistics, and
:mod:`hub.alerts.records` turns its changes into alert rows and events.
"""

from __future__ import annotations

import msgspec

from protocol import UsageReading

from .change import Change
from .stats import Stats
from .thresholds import Level

__all__ = ["Outcome"]


class Outcome(msgspec.Struct, gc=False):
    """What one actor did with its readings of one batch.

    A batch makes one per key, and they live until the batch is stored, so
    they are not tracked by the garbage collector (``gc=False``: a full
    collection per batch otherwise): nothing an outcome holds (strings,
    numbers, changes, readings) refers back to it, so it is never part of a
    reference cycle. Keep it that way.
    """

    key: str
    resource_id: str
    customer_id: str
    resource_type: str
    unit: str
    kind: str
    total: int
    period: int
    limit: int | None
    level: Level
    changes: list[Change]
    #: readings of an earlier billing period: stored, not counted
    late: int = 0
    provisioned: bool = False
    #: the actor's statistics after the batch (stored with the total)
    stats: Stats = Stats()
    #: (reading, reason) the actor refused: dead-lettered, not stored, not counted
    poisoned: list[tuple[UsageReading, str]] = []
    cost_per_unit: str | None = None
    #: the stored total's version this outcome builds on (written over compare-and-set)
    version: int = 0
