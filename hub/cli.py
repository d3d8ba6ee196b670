"""``resmon hub run`` and ``resmon hub migrate``."""

from __future__ import annotations

import signal
from typing import Any

import anyio
import click

from ._exceptions import HubError
from .config import ENV_HELP, HubConfig
from .notify.settings import ENV_HELP as NOTIFY_ENV_HELP

__all__ = ["hub"]


def _config() -> HubConfig:
    try:
        return HubConfig.from_env()
    except HubError as exc:
        raise click.ClickException(str(exc)) from None


def _backend_options() -> dict[str, Any]:
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return {}
    return {"use_uvloop": True}


@click.group("hub")
def hub() -> None:
    """Central hub: consume usage, run checks, store, serve REST."""


@hub.command(
    "run",
    help="Run the hub: migrate the database, consume usage from Kafka, keep one actor per "
    "resource, raise threshold, anomaly and forecast alerts, store to PostgreSQL, cache in "
    "Redis, notify people, serve REST.\n\n"
    "Configured by environment variables:\n\n\b\n"
    + ENV_HELP
    + "\n\nNotifications (email, SMS, Slack, webhooks; see docs/alerts.md):\n\n\b\n"
    + NOTIFY_ENV_HELP,
)
def run() -> None:
    config = _config()

    async def main() -> None:
        from .app import run_hub

        async with anyio.create_task_group() as tg:
            with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
                tg.start_soon(run_hub, config)
                async for _ in signals:
                    tg.cancel_scope.cancel()
                    break

    try:
        anyio.run(main, backend_options=_backend_options())
    except HubError as exc:
        raise click.ClickException(str(exc)) from None
    except BaseExceptionGroup as group:
        hub_errors = [e for e in _leaves(group) if isinstance(e, HubError)]
        if hub_errors:
            raise click.ClickException(str(hub_errors[0])) from None
        raise


def _leaves(group: BaseExceptionGroup[BaseException]) -> list[BaseException]:
    out: list[BaseException] = []
    for exc in group.exceptions:
        if isinstance(exc, BaseExceptionGroup):
            out.extend(_leaves(exc))
        else:
            out.append(exc)
    return out


@hub.command("migrate")
def migrate_cmd() -> None:
    """Apply pending database migrations (needs DATABASE_URL only); safe to run twice."""
    import os

    from .config import check_database_url
    from .storage.migrate import migrate

    url = os.environ.get("DATABASE_URL", "").strip()
    if not url:
        raise click.ClickException("DATABASE_URL is not set")
    try:
        address = check_database_url(url)
    except HubError as exc:
        raise click.ClickException(str(exc)) from None
    try:
        applied = anyio.run(lambda: migrate(url, address=address))
    except HubError as exc:
        raise click.ClickException(str(exc)) from None
    if applied:
        click.echo(f"applied migrations: {', '.join(f'{v:04d}' for v in applied)}")
    else:
        click.echo("database is up to date")


@hub.group("cost")
def cost() -> None:
    """Cost breakdowns: show a customer's bill, close finished periods."""


def _cost_settings() -> tuple[str, str, Any]:
    """DATABASE_URL, its host:port, and the rest of the hub's config the cost commands read."""
    import os

    from .config import HUB_VARS, check_database_url
    from .env import read

    url = os.environ.get("DATABASE_URL", "").strip()
    if not url:
        raise click.ClickException("DATABASE_URL is not set")
    wanted = {
        "RESMON_BILLING_TZ",
        "RESMON_CURRENCY",
        "RESMON_COST_ROUNDING",
        "RESMON_RECOMMEND_MIN_SAVINGS",
    }
    try:
        address = check_database_url(url)
        values = read([v for v in HUB_VARS if v.name in wanted], os.environ)
        # the remaining fields only have to be valid; the cost commands do not use them
        config = HubConfig(
            database_url=url,
            redis_url="redis://unused",
            kafka_bootstrap_servers="unused:1",
            **values,
        )
    except HubError as exc:
        raise click.ClickException(str(exc)) from None
    return url, address, config


def _line_text(line: Any) -> str:
    """``kind  quantity unit x price (+ flat)``; the words of the rule are printed once below."""
    kind = f"tier {line.tier}" if line.tier is not None else line.kind
    if line.quantity is None:
        return f"  {kind:<8} {line.description}"
    what = f"{line.quantity} {line.unit or ''}".rstrip()
    if line.unit_price is not None:
        what += f" x {line.unit_price}"
    if line.flat_price is not None:
        what += f" + {line.flat_price} flat"
    if line.proration is not None:
        what += f" (prorated, ratio {line.proration.ratio})"
    return f"  {kind:<8} {what}"


def _print_view(view: Any) -> None:
    bill = view.breakdown
    state = "closed" if view.closed else "to date"
    if view.stored:
        state += f", stored {view.computed_at.isoformat()}"
    click.echo(f"{view.resource_key}  {bill.currency}  ({state})")
    limit = f" of {bill.limit} {bill.unit}" if bill.limit is not None else " (no limit)"
    over = f", {bill.overage_percent} % over" if bill.overage_percent is not None else ""
    click.echo(f"  usage {bill.usage} {bill.unit}{limit}{over}")
    width = max([len(_line_text(line)) for line in bill.lines] + [20])
    for line in bill.lines:
        click.echo(f"{_line_text(line):<{width}}  {line.amount:>14}")
    click.echo(f"{'  total':<{width}}  {bill.total:>14}")
    click.echo(f"  rule: {bill.rule}")
    rate = bill.inputs.rate
    if rate is not None:
        gaps: dict[str, int] = {}
        for gap in rate.gaps:
            gaps[gap.reason] = gaps.get(gap.reason, 0) + 1
        shown = ", ".join(f"{n} {reason}" for reason, n in sorted(gaps.items())) or "none"
        click.echo(
            f"  95th: rank {rate.rank} of {rate.ranked} windows ({rate.windows} in the span), "
            f"{rate.rate_bps} bit/s; gaps: {shown}; duplicates: {rate.duplicates}"
        )
    for source in bill.inputs.sources:
        click.echo(f"  from: {source}")


@cost.command("show")
@click.option("--customer", required=True, help="customer id")
@click.option("--resource", "resource_key", help="resource key (cust/type[/name] or type[/name])")
@click.option("--period", help="billing month YYYY-MM (default: the current one, to date)")
@click.option("--json", "as_json", is_flag=True, help="print the breakdown as JSON")
def cost_show(customer: str, resource_key: str | None, period: str | None, as_json: bool) -> None:
    """Print a customer's cost breakdown (needs DATABASE_URL; reads RESMON_BILLING_TZ,
    RESMON_CURRENCY, RESMON_COST_ROUNDING)."""
    import time
    from zoneinfo import ZoneInfo

    import asyncpg  # type: ignore[import-untyped]
    import msgspec

    from ._exceptions import storage_errors
    from .api.costs import customer_costs
    from .calendar import month_of
    from .costs import PricingError
    from .metrics import HubMetrics
    from .storage import costs

    url, address, config = _cost_settings()
    tz = ZoneInfo(config.billing_tz)
    now_ms = time.time_ns() // 1_000_000
    try:
        month = month_of(now_ms, tz) if period is None else costs.parse_month(period)
    except PricingError as exc:
        raise click.UsageError(f"--period: {exc.problem}") from None
    key = resource_key
    if key is not None and not key.startswith(f"{customer}/"):
        key = f"{customer}/{key}"

    async def main() -> list[costs.CostView]:
        with storage_errors(address):
            conn = await asyncpg.connect(url)
        try:
            return await costs.views(
                conn,
                customer,
                month,
                key,
                tz=tz,
                money=config.money,
                now_ms=now_ms,
                metrics=HubMetrics(),
            )
        finally:
            await conn.close()

    try:
        views = anyio.run(main)
    except (HubError, PricingError) as exc:
        raise click.ClickException(str(exc)) from None
    if as_json:
        data: Any = views[0] if key is not None else customer_costs(customer, month, views)
        click.echo(msgspec.json.encode(data).decode())
        return
    bill = customer_costs(customer, month, views)
    click.echo(f"customer {customer}, period {bill.period}")
    for view in views:
        click.echo("")
        _print_view(view)
    if key is None:
        click.echo("")
        total = "mixed currencies" if bill.total is None else f"{bill.total} {bill.currency}"
        click.echo(f"total: {total}")


@cost.command("close")
def cost_close() -> None:
    """Store the bill of every closed period not stored yet (or changed since), and set each
    closed month's usage_aggregates.cost to its total (what the hub does hourly)."""
    import time
    from zoneinfo import ZoneInfo

    import asyncpg

    from ._exceptions import storage_errors
    from .metrics import HubMetrics
    from .storage import costs

    url, address, config = _cost_settings()

    async def main() -> int:
        with storage_errors(address):
            conn = await asyncpg.connect(url)
        try:
            closed = await costs.close_periods(
                conn,
                tz=ZoneInfo(config.billing_tz),
                money=config.money,
                now_ms=time.time_ns() // 1_000_000,
                metrics=HubMetrics(),
            )
        finally:
            await conn.close()
        return len(closed)

    try:
        count = anyio.run(main)
    except HubError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"closed {count} period(s)")


@hub.group("recommend")
def recommend_group() -> None:
    """Cost optimization recommendations: run the daily job, list what it found."""


def _on_database(address: str, url: str, work: Any) -> Any:
    """``work(conn)`` on one connection to DATABASE_URL; a HubError becomes a CLI error."""
    import asyncpg

    from ._exceptions import storage_errors

    async def main() -> Any:
        with storage_errors(address):
            conn = await asyncpg.connect(url)
        try:
            return await work(conn)
        finally:
            await conn.close()

    try:
        return anyio.run(main)
    except HubError as exc:
        raise click.ClickException(str(exc)) from None


@recommend_group.command("run")
@click.option("--customer", default=None, help="only this customer's resources")
def recommend_run(customer: str | None) -> None:
    """Recommend for every active resource and store the advice; new recommendations'
    cost.optimization.v1 events go to the hub's outbox, which a running hub publishes
    (needs DATABASE_URL; reads RESMON_BILLING_TZ, RESMON_CURRENCY, RESMON_COST_ROUNDING,
    RESMON_RECOMMEND_MIN_SAVINGS)."""
    import time
    from zoneinfo import ZoneInfo

    from .metrics import HubMetrics
    from .outbox import optimization_outbox
    from .storage import recommendations

    url, address, config = _cost_settings()
    now_ms = time.time_ns() // 1_000_000

    async def work(conn: Any) -> Any:
        return await recommendations.run(
            conn,
            settings=config.recommend_settings,
            money=config.money,
            tz=ZoneInfo(config.billing_tz),
            now_ms=now_ms,
            metrics=HubMetrics(),
            customer_id=customer,
            on_created=optimization_outbox(config.source, now_ms),
        )

    result = _on_database(address, url, work)
    for rec in result.created:
        click.echo(f"new  {rec.kind:<16} {rec.resource_key}  {rec.monthly_savings} {rec.currency}")
    click.echo(
        f"{result.resources} resource(s): {len(result.created)} new, {result.refreshed} "
        f"refreshed, {result.failed} failed"
    )
    if result.failed:
        raise click.ClickException(f"{result.failed} resource(s) could not be assessed (see log)")


@recommend_group.command("list")
@click.option("--customer", default=None, help="only this customer's")
@click.option("--status", default=None, help="open, applied or dismissed")
@click.option("--json", "as_json", is_flag=True, help="print them as JSON")
def recommend_list(customer: str | None, status: str | None, as_json: bool) -> None:
    """List stored recommendations, largest saving first (needs DATABASE_URL)."""
    import msgspec

    from .storage import recommendations

    if status is not None and status not in recommendations.STATUSES:
        raise click.BadParameter(
            f"{status!r} is not one of {', '.join(recommendations.STATUSES)}", param_hint="--status"
        )
    url, address, _ = _cost_settings()

    async def work(conn: Any) -> Any:
        return await recommendations.listing(conn, customer_id=customer, status=status)

    found = _on_database(address, url, work)
    if as_json:
        click.echo(msgspec.json.encode(found).decode())
        return
    for rec in found:
        click.echo(
            f"{rec.recommendation_id}  {rec.status:<9} {rec.kind:<16} {rec.resource_key}  "
            f"{rec.monthly_savings} {rec.currency}/month  {rec.effort}"
        )
        click.echo(f"    {rec.description}")
    click.echo(f"{len(found)} recommendation(s)")
