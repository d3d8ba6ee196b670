"""Pricing: exact bills from a cost model and a period's usage (issue 12, section 1).

A pure domain package (no database, no I/O): the storage, REST and CLI layers
build on it. ``docs/costs.md`` explains each rule with worked examples.

* :mod:`.money` - currency (ISO 4217 minor units), rounding, exact amounts;
* :mod:`.models` - cost models as validated structs (:func:`load_cost_model`);
* :mod:`.tiers` - graduated and volume tiers, packages, per-unit prices;
* :mod:`.percentile` - 95th-percentile bandwidth rates from 5-minute windows;
* :mod:`.proration` - billing periods and the exact duration ratio;
* :mod:`.peak` - usage split into peak and off-peak hours (time-of-use prices);
* :mod:`.breakdown` - the result: lines rounded once, total, inputs;
* :mod:`.pricing` - :func:`price`, which puts them together.
"""

from .breakdown import Breakdown, Inputs, Line
from .errors import PricingError
from .models import (
    CostModel,
    DirectionMode,
    Overage,
    Package,
    Percentile95,
    PerUnit,
    Tier,
    Tiered,
    TimeOfUse,
    catalog_model,
    load_cost_model,
    plan_model,
)
from .money import MoneyPolicy, Rounding, minor_units
from .peak import PeakSplit, split_hours
from .percentile import WINDOW_MS, Gap, RateMeasure, Sample, measure_rate, nearest_rank
from .pricing import PlanSpan, Volume, price, price_plan_change
from .proration import Period, Proration, billing_period, prorate

__all__ = [
    "WINDOW_MS",
    "Breakdown",
    "CostModel",
    "DirectionMode",
    "Gap",
    "Inputs",
    "Line",
    "MoneyPolicy",
    "Overage",
    "Package",
    "PeakSplit",
    "PerUnit",
    "Percentile95",
    "Period",
    "PlanSpan",
    "PricingError",
    "Proration",
    "RateMeasure",
    "Rounding",
    "Sample",
    "Tier",
    "Tiered",
    "TimeOfUse",
    "Volume",
    "billing_period",
    "catalog_model",
    "load_cost_model",
    "measure_rate",
    "minor_units",
    "nearest_rank",
    "plan_model",
    "price",
    "price_plan_change",
    "prorate",
    "split_hours",
]
