"""The cost routes and ``resmon hub cost``: breakdowns as decimal strings, errors named."""

from __future__ import annotations

import json
import time
from decimal import Decimal
from typing import Any

import anyio
import asyncpg  # type: ignore[import-untyped]
import pytest
from _cost_fixtures import HOUR, ms, readings, resource
from _keys import bearer, make_key
from _problem import named
from aiohttp.test_utils import TestClient, TestServer
from click.testing import CliRunner

from hub import HubConfig, migrate
from hub.api.app import ApiContext, create_app
from hub.cli import hub as hub_cli
from hub.metrics import HubMetrics

pytestmark = [pytest.mark.integration]


def no_floats(text: str) -> Any:
    """``text`` parsed as JSON, refusing any number with a fraction or exponent."""

    def refuse(number: str) -> None:
        raise AssertionError(f"a JSON float in the answer: {number}")

    return json.loads(text, parse_float=refuse)


async def two_resources(db: asyncpg.Connection, customer: str) -> tuple[str, str]:
    """A bandwidth resource at the catalog's 0.10/GB and a named plan resource, March 2026."""
    bw, bw_id = await resource(db, customer, "bandwidth", name="wan/1")
    await readings(db, bw, bw_id, [(ms(2026, 3, 2), ms(2026, 3, 2, 1), 12_345_000_000)])
    cpu, cpu_id = await resource(db, customer, "cpu", limit=100 * HOUR, plan=("10", "0.02"))
    # 130 hours of CPU time in milliseconds
    await readings(
        db, cpu, cpu_id, [(ms(2026, 3, 3), ms(2026, 3, 3, 1), 130 * HOUR)], unit="millisecond"
    )
    return bw, cpu


@pytest.mark.anyio
async def test_the_cost_routes(db: asyncpg.Connection, hub_config: HubConfig, unique: str) -> None:
    customer = f"cust-{unique}"
    bw, cpu = await two_resources(db, customer)
    app = create_app(ApiContext(config=hub_config, db=db, metrics=HubMetrics()))
    async with TestClient(TestServer(app), headers=bearer(await make_key(db))) as client:
        whole = await client.get(f"/api/costs/customers/{customer}?period=2026-03")
        assert whole.status == 200
        body = no_floats(await whole.text())
        one = await client.get(f"/api/costs/customers/{customer}/resources/{bw}?period=2026-03")
        escaped = await client.get(
            f"/api/costs/customers/{customer}/resources/{bw.replace('/', '%2F')}?period=2026-03"
        )
        short = await client.get(
            f"/api/costs/customers/{customer}/resources/bandwidth/wan/1?period=2026-03"
        )
        now = await client.get(f"/api/costs/customers/{customer}/resources/cpu")
        errors = {
            "customer": await client.get("/api/costs/customers/nobody?period=2026-03"),
            "resource": await client.get(f"/api/costs/customers/{customer}/resources/storage"),
            "period": await client.get(f"/api/costs/customers/{customer}?period=2026-3"),
            "month": await client.get(f"/api/costs/customers/{customer}?period=2026-00"),
        }
        answers = {name: (r.status, await r.json()) for name, r in errors.items()}
        resource_bodies = [no_floats(await r.text()) for r in (one, escaped, short)]
        current = no_floats(await now.text())
    # hand: bandwidth 12.345 GB x 0.10 = 1.2345 -> 1.23 (half-even); cpu: base 10.00 + (130 - 100)
    # hours x 0.02 = 0.60 -> 10.60; customer total 1.23 + 10.60 = 11.83
    assert body["customerId"] == customer
    assert body["period"] == "2026-03"
    assert body["currency"] == "USD"
    assert body["total"] == "11.83"
    by_key = {r["resourceKey"]: r for r in body["resources"]}
    assert sorted(by_key) == sorted([bw, cpu])
    assert by_key[bw]["breakdown"]["total"] == "1.23"
    assert by_key[bw]["breakdown"]["usage"] == "12.345"
    assert [(x["kind"], x["amount"]) for x in by_key[cpu]["breakdown"]["lines"]] == [
        ("base", "10.00"),
        ("overage", "0.60"),
    ]
    assert by_key[cpu]["breakdown"]["overagePercent"] == "30"
    assert by_key[cpu]["closed"] is True
    assert by_key[cpu]["stored"] is False
    assert all(b == resource_bodies[0] for b in resource_bodies)
    assert resource_bodies[0]["breakdown"]["total"] == "1.23"
    # no period: the current billing period, to date (no usage in it yet: the base cost)
    assert current["closed"] is False
    assert current["breakdown"]["total"] == "10.00"
    assert current["breakdown"]["period"]["startMs"] <= time.time() * 1000
    assert answers["customer"] == (
        404,
        {
            "type": "https://resmon.dev/problems/not-found",
            "title": "Not found",
            "status": 404,
            "detail": "customer 'nobody' not found",
            "instance": "/api/costs/customers/nobody",
        },
    )
    assert answers["resource"][0] == 404
    assert answers["resource"][1]["detail"] == (
        f"resource '{customer}/storage' not found for customer '{customer}'"
    )
    for name in ("period", "month"):
        status, answer = answers[name]
        assert status == 400
        assert named(answer) == "period"
        assert "is not a month written YYYY-MM" in answer["detail"]


def test_resmon_hub_cost_show_and_close(pg_dsn: str, unique: str) -> None:
    customer = f"cust-{unique}"

    async def setup() -> tuple[str, str]:
        await migrate(pg_dsn)
        conn = await asyncpg.connect(pg_dsn)
        try:
            return await two_resources(conn, customer)
        finally:
            await conn.close()

    bw, cpu = anyio.run(setup)
    env = {"DATABASE_URL": pg_dsn, "RESMON_BILLING_TZ": "UTC", "RESMON_COST_ROUNDING": "half_up"}
    runner = CliRunner()
    text = runner.invoke(
        hub_cli, ["cost", "show", "--customer", customer, "--period", "2026-03"], env=env
    )
    assert text.exit_code == 0, text.output
    # hand: half-up rounding: 1.2345 -> 1.23 still (the third place is 4); cpu 10.00 + 0.60
    assert f"customer {customer}, period 2026-03" in text.output
    assert f"{cpu}  USD  (closed)" in text.output
    assert "usage 130 hour of 100 hour, 30 % over" in text.output
    assert "rule: the plan's overage: 0.0200 per hour above the limit" in text.output
    assert "half-up" in text.output
    assert text.output.rstrip().endswith("total: 11.83 USD")
    one = runner.invoke(
        hub_cli,
        ["cost", "show", "--customer", customer, "--resource", "bandwidth/wan/1",
         "--period", "2026-03", "--json"],
        env=env,
    )  # fmt: skip
    assert one.exit_code == 0, one.output
    parsed = no_floats(one.output)
    assert parsed["resourceKey"] == bw
    assert parsed["breakdown"]["total"] == "1.23"
    assert parsed["breakdown"]["rounding"] == "half_up"
    bad = runner.invoke(
        hub_cli, ["cost", "show", "--customer", customer, "--period", "3/26"], env=env
    )
    assert bad.exit_code == 2
    assert "--period: '3/26' is not a month written YYYY-MM" in bad.output
    missing = runner.invoke(hub_cli, ["cost", "show", "--customer", "nobody"], env=env)
    assert missing.exit_code == 1
    assert "customer 'nobody' not found" in missing.output
    closed = runner.invoke(hub_cli, ["cost", "close"], env=env)
    assert closed.exit_code == 0, closed.output
    assert closed.output.strip().splitlines()[-1] == "closed 2 period(s)"
    stored = runner.invoke(
        hub_cli, ["cost", "show", "--customer", customer, "--period", "2026-03", "--json"], env=env
    )
    views = no_floats(stored.output)["resources"]
    assert [v["stored"] for v in views] == [True, True]
    assert Decimal(no_floats(stored.output)["total"]) == Decimal("11.83")


@pytest.mark.anyio
async def test_a_cost_model_that_cannot_be_read_is_a_422_naming_resource_and_field(
    db: asyncpg.Connection, hub_config: HubConfig, unique: str
) -> None:
    customer = f"cust-{unique}"
    key, _ = await resource(db, customer, "bandwidth", model={"baseCost": "-1"})
    app = create_app(ApiContext(config=hub_config, db=db, metrics=HubMetrics()))
    async with TestClient(TestServer(app), headers=bearer(await make_key(db))) as client:
        got = await client.get(f"/api/costs/customers/{customer}?period=2026-03")
        answer = await got.json()
    assert got.status == 422
    assert answer["detail"] == f"resource {key}: cost model $.baseCost: -1 is negative"
