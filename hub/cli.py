"""``resmon hub run|migrate|keys|cost|recommend`` (and ``forecast``, in forecast_cli.py)."""

from __future__ import annotations

import signal
from typing import Any, TypeVar

import anyio
import click

from ._exceptions import HubError
from .cli_support import cost_settings, database_url, with_db
from .config import ENV_HELP, HubConfig
from .forecast_cli import forecast
from .notify.settings import ENV_HELP as NOTIFY_ENV_HELP

__all__ = ["hub"]


T = TypeVar("T")


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
    from .storage.migrate import migrate

    url, address = database_url()
    try:
        applied = anyio.run(lambda: migrate(url, address=address))
    except HubError as exc:
        raise click.ClickException(str(exc)) from None
    if applied:
        click.echo(f"applied migrations: {', '.join(f'{v:04d}' for v in applied)}")
    else:
        click.echo("database is up to date")


@hub.command("openapi")
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, writable=True),
    help="write the document here (docs/openapi-monitoring.yaml in the repository); "
    "default: print it",
)
def openapi_cmd(output: str | None) -> None:
    """Print or write the REST API's OpenAPI 3.1 document (generated from its types)."""
    from .api.openapi import render

    text = render()
    if output is None:
        click.echo(text, nl=False)
        return
    with open(output, "w", encoding="utf-8") as out:
        out.write(text)
    click.echo(f"wrote {output}")


def _server_secret() -> str:
    import os

    from .apikeys import check_server_secret

    secret = os.environ.get("RESMON_API_KEY_SECRET", "").strip()
    try:
        check_server_secret(secret)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    return secret


@hub.group("keys")
def keys() -> None:
    """API keys of the REST API (needs DATABASE_URL; create also RESMON_API_KEY_SECRET)."""


@keys.command("create")
@click.option("--tenant", required=True, help="tenant name or id (`default` for the default one)")
@click.option("--scope", "scope", required=True, help="comma-separated: read,write,ingest,admin")
@click.option("--name", default=None, help="who or what uses the key (default: the scopes)")
@click.option(
    "--customer", "customers", multiple=True, help="restrict the key to this customer (repeat)"
)
@click.option("--expires-in", default=None, help="e.g. 30d, 12h, 90m; default: never")
def keys_create(
    tenant: str, scope: str, name: str | None, customers: tuple[str, ...], expires_in: str | None
) -> None:
    """Create a key and print it (only this once) and its id."""
    import datetime as dt

    from .apikeys import check_restriction, parse_duration, parse_scopes
    from .storage import apikeys as stored

    secret = _server_secret()
    try:
        scopes = parse_scopes(scope)
        check_restriction(scopes, list(customers) or None)
        seconds = parse_duration(expires_in) if expires_in is not None else None
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    expires = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=seconds) if seconds else None

    async def create(conn: Any) -> stored.Created:
        tenant_id = await stored.resolve_tenant(conn, tenant)
        for customer in customers:
            if await stored.tenant_of_customer(conn, customer) != tenant_id:
                raise HubError(f"customer {customer!r} not found in tenant {tenant!r}")
        return await stored.create_key(
            conn,
            secret,
            tenant_id=tenant_id,
            name=name or ",".join(scopes),
            scopes=scopes,
            customer_ids=list(customers) or None,
            expires_at=expires,
        )

    created = with_db(create)
    click.echo(created.key)
    click.echo(f"id {created.api_key.id}  (the key is shown only now; store it safely)", err=True)


@keys.command("list")
@click.option("--tenant", default=None, help="only this tenant's keys (name or id)")
def keys_list(tenant: str | None) -> None:
    """List keys: id, tenant, name, scopes, customers, expiry, revoked, last used."""
    from .storage import apikeys as stored

    async def fetch(conn: Any) -> list[stored.ApiKey]:
        tenant_id = await stored.resolve_tenant(conn, tenant) if tenant else None
        return await stored.list_keys(conn, tenant_id)

    for key in with_db(fetch):
        click.echo(
            "\t".join(
                (
                    key.id,
                    key.tenant_id,
                    key.name,
                    ",".join(key.scopes),
                    ",".join(key.customer_ids or ("*",)),
                    f"expires={key.expires_at.isoformat() if key.expires_at else 'never'}",
                    f"revoked={key.revoked_at.isoformat() if key.revoked_at else 'no'}",
                    f"last_used={key.last_used_at.isoformat() if key.last_used_at else 'never'}",
                )
            )
        )


@keys.command("revoke")
@click.argument("key_id")
def keys_revoke(key_id: str) -> None:
    """Revoke the key with id KEY_ID (at once for every hub)."""
    from .storage import apikeys as stored

    key = with_db(lambda conn: stored.revoke_key(conn, key_id))
    click.echo(f"revoked {key.id} ({key.name}) at {key.revoked_at}")


@hub.group("cost")
def cost() -> None:
    """Cost breakdowns: show a customer's bill, close finished periods."""


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

    url, address, config = cost_settings()
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

    url, address, config = cost_settings()

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


hub.add_command(forecast)  # resmon hub forecast refresh / show (hub/forecast_cli.py)


@hub.group("recommend")
def recommend_group() -> None:
    """Cost optimization recommendations: run the daily job, list what it found."""


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

    _, _, config = cost_settings()
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

    result = with_db(work)
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

    async def work(conn: Any) -> Any:
        return await recommendations.listing(conn, customer_id=customer, status=status)

    found = with_db(work)
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
