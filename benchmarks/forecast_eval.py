"""Evaluate the end-of-period usage forecasts (``make forecast-eval``).

Generated daily-total series of known shape (trend, weekly seasonality,
bursts, level shifts, and a diurnal bandwidth series built from 5-minute
rates), each in several seeded replicas. Every series is cut into 30-day
billing periods; from each of the last four periods it is forecast on several
days (rolling origins), with only the days before that day visible, and the
forecast is compared with the period's real total.

For each method (ours: :data:`hub.forecasting.DEFAULT_METHODS` chosen per
resource by backtest; the benchmarks forced alone, with the same interval
calibration): MASE, the relative MAE against seasonal naive, the measured
coverage of the 80 % and 95 % intervals and their mean width (percent of the
real total). MASE scales each origin's absolute error by the mean absolute
error the seasonal naive forecast of the same horizon made on that origin's
own history (in-sample), so below 1 means better than seasonal naive usually
does on this series. Prints a Markdown table; deterministic for a given seed.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime, timedelta

import click

from hub.forecasting import DEFAULT_METHODS, METHODS, UsageForecast, forecast_period

DAYS = 180
PERIOD = 30
AGES = (3, 7, 12, 17, 22, 27)
FIRST_PERIOD = DAYS - 4 * PERIOD
LEVEL = 2e11  # bytes a day
WEEKDAY = (1.08, 1.1, 1.1, 1.06, 1.0, 0.72, 0.62)  # Monday first (day 0 is a Monday)
ORIGIN = date(2025, 1, 6)  # a Monday

Generator = Callable[[random.Random], list[float]]


def _noise(rng: random.Random, sd: float = 0.06) -> float:
    return max(0.0, 1.0 + rng.gauss(0.0, sd))


def trend(rng: random.Random) -> list[float]:
    slope = rng.uniform(0.002, 0.006)
    return [LEVEL * (1 + slope * t) * _noise(rng) for t in range(DAYS)]


def weekly(rng: random.Random) -> list[float]:
    return [LEVEL * WEEKDAY[t % 7] * _noise(rng) for t in range(DAYS)]


def trend_weekly(rng: random.Random) -> list[float]:
    slope = rng.uniform(0.002, 0.006)
    return [LEVEL * (1 + slope * t) * WEEKDAY[t % 7] * _noise(rng) for t in range(DAYS)]


def bursts(rng: random.Random) -> list[float]:
    return [v * (rng.uniform(2, 4) if rng.random() < 0.04 else 1.0) for v in weekly(rng)]


def level_shift(rng: random.Random) -> list[float]:
    at = rng.randrange(70, DAYS - 10)
    factor = rng.choice((rng.uniform(0.5, 0.7), rng.uniform(1.4, 1.8)))
    return [v * (factor if t >= at else 1.0) for t, v in enumerate(weekly(rng))]


def diurnal_bandwidth(rng: random.Random) -> list[float]:
    """Daily bytes of a residential ISP link: 5-minute rates with an evening peak,
    a business-hours shoulder on weekdays, slow growth and day-to-day weather."""
    peak_bps = 4e9
    growth = rng.uniform(0.0005, 0.003)
    mood = 0.0  # AR(1) day factor: events, weather, outages
    days = []
    for t in range(DAYS):
        mood = 0.7 * mood + rng.gauss(0.0, 0.05)
        weekend = t % 7 >= 5
        total = 0.0
        for window in range(288):
            hour = window / 12
            evening = math.exp(-(((hour - 21.0) / 3.5) ** 2))
            business = 0.0 if weekend else 0.35 * math.exp(-(((hour - 13.0) / 3.0) ** 2))
            night = 0.12
            profile = night + (1.15 if weekend else 1.0) * evening + business
            rate = peak_bps * profile * (1 + growth * t) * math.exp(mood + rng.gauss(0, 0.15))
            total += rate * 300 / 8
        days.append(total)
    return days


KINDS: dict[str, Generator] = {
    "trend": trend,
    "weekly": weekly,
    "trend + weekly": trend_weekly,
    "bursts": bursts,
    "level shift": level_shift,
    "diurnal bandwidth": diurnal_bandwidth,
}
#: the table's rows: label -> candidate methods given to forecast_period
CONTENDERS: dict[str, tuple[str, ...]] = {
    "**ours** (backtest choice)": DEFAULT_METHODS,
    "naive last value": ("naive",),
    "plan: linear trend": ("linear_trend",),
    "seasonal naive": ("seasonal_naive",),
}


def _snaive_scale(y: Sequence[float], h: int) -> float:
    """In-sample mean absolute error of the seasonal naive ``h``-day-sum forecast."""
    errs = [
        abs(
            math.fsum(y[t : t + h]) - math.fsum(METHODS["seasonal_naive"].forecast(y[:t], h).points)
        )
        for t in range(7, len(y) - h + 1)
    ]
    return math.fsum(errs) / len(errs)


class Tally:
    def __init__(self) -> None:
        self.abs_errors: list[float] = []
        self.scaled: list[float] = []
        self.hits = {80: 0, 95: 0}
        self.width = {80: 0.0, 95: 0.0}
        self.none = 0
        self.chosen: dict[str, int] = {}

    def add(self, f: UsageForecast, actual: float, scale: float) -> None:
        error = abs(actual - float(f.predicted))
        self.abs_errors.append(error)
        self.scaled.append(error / scale)
        for level, iv in ((80, f.interval_80), (95, f.interval_95)):
            self.hits[level] += float(iv.low) <= actual <= float(iv.high)
            self.width[level] += float(iv.high - iv.low) / actual
        self.chosen[f.method] = self.chosen.get(f.method, 0) + 1


def evaluate(replicas: int, seed: int) -> tuple[dict[str, dict[str, Tally]], float, int]:
    tallies = {kind: {name: Tally() for name in CONTENDERS} for kind in KINDS}
    spent, calls = 0.0, 0
    for k, (kind, make) in enumerate(KINDS.items()):
        for r in range(replicas):
            y = make(random.Random(seed * 1000 + k * 100 + r))
            ints = [round(v) for v in y]
            for p in range(FIRST_PERIOD, DAYS, PERIOD):
                actual = float(sum(ints[p : p + PERIOD]))
                for age in AGES:
                    today = p + age
                    history = [(ORIGIN + timedelta(days=t), ints[t]) for t in range(today)]
                    scale = _snaive_scale([float(v) for v in ints[:today]], PERIOD - age)
                    for name, methods in CONTENDERS.items():
                        began = time.perf_counter()
                        f = forecast_period(
                            history,
                            start=ORIGIN + timedelta(days=p),
                            end=ORIGIN + timedelta(days=p + PERIOD),
                            today=ORIGIN + timedelta(days=today),
                            methods=methods,
                        )
                        spent += time.perf_counter() - began
                        calls += 1
                        if isinstance(f, UsageForecast):
                            tallies[kind][name].add(f, actual, scale)
                        else:
                            tallies[kind][name].none += 1
    return tallies, spent, calls


def render(tallies: dict[str, dict[str, Tally]]) -> str:
    lines = [
        "| series | method | MASE | rel. MAE vs s-naive | 80 % covers | 80 % width "
        "| 95 % covers | 95 % width | n |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for kind, rows in tallies.items():
        snaive = math.fsum(rows["seasonal naive"].abs_errors)
        for name, t in rows.items():
            n = len(t.abs_errors)
            lines.append(
                f"| {kind} | {name} | {math.fsum(t.scaled) / n:.2f} "
                f"| {math.fsum(t.abs_errors) / snaive:.2f} "
                f"| {100 * t.hits[80] / n:.1f} % | {100 * t.width[80] / n:.1f} % "
                f"| {100 * t.hits[95] / n:.1f} % | {100 * t.width[95] / n:.1f} % "
                f"| {n}{f' ({t.none} none)' if t.none else ''} |"
            )
    return "\n".join(lines)


def render_choices(tallies: dict[str, dict[str, Tally]]) -> str:
    ours = next(iter(CONTENDERS))
    lines = ["| series | methods chosen by backtest (ours) |", "|---|---|"]
    for kind, rows in tallies.items():
        chosen = ", ".join(f"{m} {c}" for m, c in sorted(rows[ours].chosen.items()))
        lines.append(f"| {kind} | {chosen} |")
    return "\n".join(lines)


@click.command()
@click.option("--replicas", default=8, show_default=True, help="seeded series per kind")
@click.option("--seed", default=12, show_default=True)
def main(replicas: int, seed: int) -> None:
    """Print the forecast evaluation table (Markdown)."""
    tallies, spent, calls = evaluate(replicas, seed)
    origins = replicas * len(range(FIRST_PERIOD, DAYS, PERIOD)) * len(AGES)
    click.echo(
        f"Forecast evaluation, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC: {len(KINDS)} kinds x "
        f"{replicas} series x {origins // replicas} origins = {origins} forecasts per kind "
        f"and method (seed {seed}); {1000 * spent / calls:.1f} ms per forecast_period call\n"
    )
    click.echo(render(tallies))
    click.echo()
    click.echo(render_choices(tallies))


if __name__ == "__main__":
    main()
