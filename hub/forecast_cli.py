"""``resmon hub forecast refresh|show``: the stored forecasts, on demand (hub/storage/forecasts.py).

Both need ``DATABASE_URL`` only and read ``RESMON_BILLING_TZ`` (the billing
month and its days), ``RESMON_CURRENCY`` and ``RESMON_COST_ROUNDING`` (the
forecast's cost) as the hub does.
"""

from __future__ import annotations

import datetime as dt
from typing import Any
from zoneinfo import ZoneInfo

import click

from .cli_support import cost_settings, with_db

__all__ = ["forecast"]


@click.group("forecast")
def forecast() -> None:
    """Stored end-of-period forecasts: refresh them now, show a customer's."""


@forecast.command("refresh")
@click.option("--customer", help="only this customer's resources (default: every resource)")
@click.option(
    "--as-of",
    "as_of",
    type=click.DateTime(formats=["%Y-%m-%d"]),
    help="forecast as on this day (billing zone; the history ends the day before); default: today",
)
def refresh_cmd(customer: str | None, as_of: dt.datetime | None) -> None:
    """Forecast and store every resource's usage and cost for the current billing month (what
    the hub does every RESMON_FORECAST_REFRESH_S). Exits 1 if any resource failed."""
    from .metrics import HubMetrics
    from .outbox import forecast_alert_outbox
    from .storage.forecasts import RefreshSummary, refresh

    _, _, config = cost_settings()
    tz, money = ZoneInfo(config.billing_tz), config.money
    # the alerts' CloudEvents go to the outbox; a running hub publishes them
    on_alerts = forecast_alert_outbox(config.source, config.alerts_topic)

    async def work(conn: Any) -> RefreshSummary:
        day = None if as_of is None else as_of.date()
        return await refresh(
            conn,
            tz=tz,
            money=money,
            metrics=HubMetrics(),
            today=day,
            customer_id=customer,
            on_alerts=on_alerts,
        )

    summary = with_db(work)
    none = ", ".join(f"{n} {reason}" for reason, n in sorted(summary.no_forecast.items()))
    click.echo(f"forecasts stored: {summary.made}; no forecast: {none or 'none'}")
    for key, error in sorted(summary.failed.items()):
        click.echo(f"failed: {key}: {error}", err=True)
    if summary.failed:
        raise SystemExit(1)


def _pair(pair: tuple[Any, Any] | None, suffix: str = "") -> str:
    return "-" if pair is None else f"{pair[0]} .. {pair[1]}{suffix}"


def _print(row: Any) -> None:
    click.echo(
        f"{row.resource_key}  period {row.period_start} .. {row.period_end} (exclusive), "
        f"as of {row.as_of}, computed {row.computed_at.isoformat()}"
    )
    if not row.forecast:
        click.echo(f"  no forecast: {row.reason}: {row.reason_detail}")
        return
    limit = "no limit" if row.limit is None else f"limit {row.limit}"
    click.echo(f"  method {row.method}; used to date {row.used_to_date}; {limit}")
    click.echo(
        f"  usage {row.predicted_usage}  80 %: {_pair(row.usage_interval_80)}  "
        f"95 %: {_pair(row.usage_interval_95)}  (base units)"
    )
    click.echo(
        f"  measured coverage: 80 % interval {row.coverage_80} %, 95 % interval "
        f"{row.confidence_level} % (confidence), over {row.backtest_origins} backtest origins"
    )
    if row.probability_above_limit is not None:
        click.echo(f"  probability above the limit: {row.probability_above_limit}")
    if row.cost_unavailable is not None:
        click.echo(f"  cost: unavailable: {row.cost_unavailable}")
    else:
        unit = f" {row.currency}"
        click.echo(
            f"  cost {row.predicted_cost}{unit}  80 %: {_pair(row.cost_interval_80, unit)}  "
            f"95 %: {_pair(row.cost_interval_95, unit)}"
        )


@forecast.command("show")
@click.option("--customer", required=True, help="customer id")
@click.option("--resource", "resource_key", help="resource key (cust/type[/name] or type[/name])")
@click.option("--json", "as_json", is_flag=True, help="print what GET /api/forecasts/... returns")
def show_cmd(customer: str, resource_key: str | None, as_json: bool) -> None:
    """Print a customer's stored forecasts (newest period of each resource)."""
    import msgspec

    from .storage.forecasts import StoredForecast, stored_forecasts

    key = resource_key
    if key is not None and not key.startswith(f"{customer}/"):
        key = f"{customer}/{key}"

    async def work(conn: Any) -> list[StoredForecast]:
        return await stored_forecasts(conn, customer_id=customer, resource_key=key)

    rows = with_db(work)
    if as_json:
        encoder = msgspec.json.Encoder(decimal_format="string")
        click.echo(encoder.encode({"customerId": customer, "forecasts": rows}).decode())
        return
    if not rows:
        click.echo(f"customer {customer}: no stored forecast (run `resmon hub forecast refresh`)")
    for row in rows:
        _print(row)
