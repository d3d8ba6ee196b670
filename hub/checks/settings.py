"""``CheckSettings``: what every actor's checks are tuned with (from :class:`~hub.HubConfig`)."""

from __future__ import annotations

import msgspec

from .anomaly import AnomalySettings
from .forecast import ForecastSettings

__all__ = ["CheckSettings"]


class CheckSettings(msgspec.Struct, frozen=True, kw_only=True):
    #: hysteresis below the warning threshold before an episode resolves, in basis points
    gap_bp: int = 500
    anomaly: AnomalySettings = AnomalySettings()
    forecast: ForecastSettings = ForecastSettings()
