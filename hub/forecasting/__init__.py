"""Forecasts of a resource's end-of-period usage, with calibrated prediction intervals.

Pure domain code (no database, no event loop): :func:`forecast_period` takes
daily totals and a period and answers a :class:`UsageForecast` or a
:class:`NoForecast` with its reason. ``docs/forecasting.md`` describes the
methods and their measured accuracy.
"""

from __future__ import annotations

from .forecast import (
    DEFAULT_METHODS,
    ForecastInputError,
    Interval,
    NoForecast,
    UsageForecast,
    forecast_period,
)
from .methods import METHODS, Method

__all__ = [
    "DEFAULT_METHODS",
    "METHODS",
    "ForecastInputError",
    "Interval",
    "Method",
    "NoForecast",
    "UsageForecast",
    "forecast_period",
]
