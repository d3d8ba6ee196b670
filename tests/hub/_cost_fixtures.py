"""Generated usage histories for the cost breakdown tests, written the way the hub writes them."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from zoneinfo import ZoneInfo

import asyncpg  # type: ignore[import-untyped]

from hub import provision_resource
from hub.costs import WINDOW_MS
from hub.storage.aggregates import Bucketer, write_aggregates
from protocol import UsageReading

UTC = dt.UTC
HOUR = 3_600_000
#: one Mbps over one 5-minute window, in bytes: 10^6 bit/s x 300 s / 8
MBPS_WINDOW = 37_500_000


def ms(*parts: int, tz: dt.tzinfo = UTC) -> int:
    return int(dt.datetime(*parts, tzinfo=tz).timestamp() * 1000)


async def resource(
    db: asyncpg.Connection,
    customer: str,
    rtype: str,
    *,
    name: str | None = None,
    limit: int | None = None,
    model: dict[str, object] | None = None,
    plan: tuple[str | None, str | None] | None = None,
    billing_start: dt.datetime | None = None,
    speed_bps: int | None = None,
) -> tuple[str, str]:
    """A provisioned resource (key, id), on a plan given as ``pricing`` JSON or (base, overage)."""
    key = await provision_resource(db, customer, rtype, limit, name)
    model_id = None
    if model is not None or plan is not None:
        base, overage = plan if plan is not None else (None, None)
        model_id = await db.fetchval(
            "INSERT INTO cost_models (tenant_id, model_name, billing_period, base_cost, "
            "overage_rate, pricing) VALUES ('00000000-0000-0000-0000-000000000000', $1, "
            "'monthly', $2::numeric, $3::numeric, $4::jsonb) RETURNING id",
            f"plan of {key}",
            base,
            overage,
            None if model is None else json.dumps(model),
        )
    rid = await db.fetchval(
        "UPDATE customer_resources SET cost_model_id = $2, billing_start = $3, speed_bps = $4 "
        "WHERE resource_key = $1 RETURNING id::text",
        key,
        model_id,
        billing_start,
        speed_bps,
    )
    return key, rid


async def readings(
    db: asyncpg.Connection,
    key: str,
    rid: str,
    spans: list[tuple[int, int, int]],
    *,
    tz: str = "UTC",
    unit: str = "byte",
) -> None:
    """Add ``(start_ms, end_ms, value)`` readings to the month buckets, as a batch does."""
    customer, rtype = key.split("/")[:2]
    row = await db.fetchrow(
        "SELECT rc.unit, rc.cost_per_unit::text AS cpu FROM customer_resources cr "
        "JOIN resource_catalogs rc ON rc.id = cr.resource_catalog_id WHERE cr.id = $1",
        rid,
    )
    inputs = [
        (
            rid,
            UsageReading(customer, rtype, key, value, unit, start, end),
            row["unit"],
            row["cpu"],
        )
        for start, end, value in spans
    ]
    await write_aggregates(db, inputs, Bucketer(ZoneInfo(tz)))


async def raw_rows(
    db: asyncpg.Connection, rid: str, rows: list[tuple[str | None, int, int, int, str]]
) -> None:
    """Raw bandwidth rows ``(direction, start_ms, end_ms, bytes, interface)`` in usage_metrics."""

    def ts(at: int) -> dt.datetime:
        return dt.datetime.fromtimestamp(at / 1000, tz=UTC)

    await db.copy_records_to_table(
        "usage_metrics",
        columns=[
            "customer_resource_id",
            "event_id",
            "metric_start",
            "metric_timestamp",
            "metric_value",
            "metric_unit",
            "kind",
            "metadata",
        ],
        records=[
            (
                uuid.UUID(rid),
                str(uuid.uuid4()),
                ts(start),
                ts(end),
                value,
                "byte",
                "delta",
                json.dumps(
                    {"device": "r1", "interface": interface}
                    | ({"direction": direction} if direction else {})
                ),
            )
            for direction, start, end, value, interface in rows
        ],
    )


def windows(start_ms: int, count: int) -> list[int]:
    return [start_ms + i * WINDOW_MS for i in range(count)]
