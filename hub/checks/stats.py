"""``Stats``: the compact history an actor's anomaly and forecast checks keep.

Seven numbers per resource, named (see :mod:`hub.checks.anomaly` for the
decayed mean / variance and :mod:`hub.checks.forecast` for the pace):

- ``weight``, ``mean``, ``m2``: the exponentially decayed weight, mean and
  sum of squared deviations of the observations (rate per second of a summed
  resource, level of a gauge);
- ``last_ms``: event time of the latest observation folded in;
- ``points``: exact count of observations;
- ``first_ms`` and ``anchor``: where the current billing period's pace is
  measured from (its first instant and the value there: 0 for a summed
  resource, the first level for a gauge); ``first_ms == 0`` means "not yet".

The actor holds these as flat slots (its hot path reads them per reading);
this struct is how they travel: from the stored row into an actor, and from
an actor's :class:`~hub.actors.actor.Outcome` into the batch transaction.
"""

from __future__ import annotations

import msgspec

__all__ = ["Stats"]


class Stats(msgspec.Struct, frozen=True, gc=False):
    weight: float = 0.0
    mean: float = 0.0
    m2: float = 0.0
    last_ms: int = 0
    points: int = 0
    first_ms: int = 0
    anchor: int = 0
