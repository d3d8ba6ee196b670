"""The dashboard in a real browser: Debian's Chromium, headless, driven by Playwright.

Each test runs a live hub (PostgreSQL, Redis, the test Kafka broker) and sends
readings through Kafka as the agents do. ``RESMON_SCREENSHOTS=1`` also writes
the screenshots of docs/img/ (otherwise a run leaves the tree as it was).
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import anyio
import asyncpg  # type: ignore[import-untyped]
import pytest
from _hub_testing import send_reading, until, wait_for
from _keys import make_key
from _notify_fakes import raise_alert
from aiokafka import AIOKafkaProducer

from hub import HubConfig, RunningHub, provision_resource
from hub.api import ApiContext, create_app
from protocol import UsageReading

playwright_api = pytest.importorskip(
    "playwright.async_api", reason="playwright is a dev dependency"
)

CHROMIUM = Path(os.environ.get("RESMON_CHROMIUM", "/usr/bin/chromium"))
SHOTS = Path(__file__).resolve().parents[2] / "docs" / "img"

pytestmark = [
    pytest.mark.integration,
    pytest.mark.anyio,
    pytest.mark.slow,
    pytest.mark.skipif(
        not CHROMIUM.exists(),
        reason=f"no Chromium at {CHROMIUM}: `make system-deps` installs Debian's (as root)",
    ),
]

#: routes the page asks for to learn whether this hub serves them (a 404 is an answer)
_PROBED = ("/api/usage/", "/api/stream")

#: how long the page may take to show what the hub has (the page polls every 2 s)
SHOWN_S = 15.0


@dataclass
class Dash:
    hub: RunningHub
    config: HubConfig
    db: asyncpg.Connection
    producer: AIOKafkaProducer
    customer: str
    resource: str
    key: str
    sent: int = 0

    async def send(self, value: int, resource: str | None = None, *, ago_s: int = 0) -> None:
        """A reading of ``value`` requests, ending ``ago_s`` before now, through Kafka."""
        key = resource or self.resource
        customer, rtype = key.split("/")[:2]
        now = time.time_ns() // 1_000_000 - ago_s * 1000
        self.sent += 1
        reading = UsageReading(
            customer_id=customer,
            resource_type=rtype,
            resource_key=key,
            value=value,
            unit="request",
            start_ms=now - 60_000 + self.sent,
            end_ms=now - 30_000 + self.sent,
        )
        await send_reading(self.producer, self.config.usage_topic, reading)


@pytest.fixture
async def dash(
    hub: RunningHub,
    hub_config: HubConfig,
    db: asyncpg.Connection,
    producer: AIOKafkaProducer,
    unique: str,
) -> Dash:
    customer = f"dash-{unique}"
    resource = await provision_resource(db, customer, "api_calls", 1000, "web", 80, 95)
    key = await make_key(db, name="operator")
    return Dash(hub, hub_config, db, producer, customer, resource, key)


@pytest.fixture
async def browser() -> AsyncIterator[playwright_api.Browser]:
    async with playwright_api.async_playwright() as p:
        chromium = await p.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=["--no-sandbox"]
        )
        try:
            yield chromium
        finally:
            await chromium.close()


async def _page(
    browser: playwright_api.Browser, dash: Dash, key: str | None = None, **options: object
) -> playwright_api.Page:
    """A fresh browser context, logged in with ``key`` (the operator's by default)."""
    context = await browser.new_context(base_url=str(dash.hub.http_url), **options)  # type: ignore[arg-type]
    page = await context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on(
        "console",
        lambda msg: (
            errors.append(msg.text)
            if msg.type == "error" and "Failed to load resource" not in msg.text
            else None
        ),
    )
    page.on(
        "response",
        lambda resp: (
            errors.append(f"{resp.status} {resp.url}")
            if resp.status >= 400 and not any(p in resp.url for p in _PROBED)
            else None
        ),
    )
    page.errors = errors  # type: ignore[attr-defined]
    await page.goto("/ui/login")
    await page.get_by_label("API key").fill(key or dash.key)
    await page.get_by_role("button", name="Log in").click()
    await page.wait_for_selector("main[data-loaded=true]")
    return page


async def _shot(page: playwright_api.Page, name: str) -> None:
    if os.environ.get("RESMON_SCREENSHOTS") == "1":
        SHOTS.mkdir(parents=True, exist_ok=True)
        await page.screenshot(path=str(SHOTS / f"dashboard-{name}.png"), full_page=True)


def _card(page: playwright_api.Page, resource: str) -> playwright_api.Locator:
    return page.locator(f'article.card[data-resource="{resource}"]')


async def _text_becomes(locator: playwright_api.Locator, expected: str) -> None:
    """Wait until ``locator`` shows ``expected``; else fail showing what the page shows."""
    with anyio.move_on_after(SHOWN_S):
        await until(lambda: _has_text(locator, expected), interval=0.1)
        return
    shown = await locator.page.locator("body").inner_text()
    raise AssertionError(f"{expected!r} never shown in {locator}; the page shows:\n{shown}")


async def _has_text(locator: playwright_api.Locator, expected: str) -> bool:
    return await locator.count() > 0 and expected in (await locator.first.inner_text())


def _no_errors(page: playwright_api.Page, allowed: tuple[str, ...] = ()) -> None:
    """No script error and no refused request (but those of ``allowed`` paths)."""
    errors = [e for e in page.errors if not any(a in e for a in allowed)]  # type: ignore[attr-defined]
    assert errors == [], errors


async def test_the_usage_bar_moves_and_turns_amber_at_the_warning(
    browser: playwright_api.Browser, dash: Dash
) -> None:
    await dash.send(100)
    page = await _page(browser, dash)
    card = _card(page, dash.resource)
    await _text_becomes(card.locator(".usage"), "100")
    assert await card.locator(".limit").inner_text() == "1,000"
    assert "10 %" in await card.locator(".pct").inner_text()
    assert await card.get_attribute("class") == "card level-ok"
    assert await card.locator("[role=meter]").get_attribute("aria-valuenow") == "10"
    await page.evaluate("window.__sameDocument = true")
    await dash.send(750)
    await _text_becomes(card.locator(".usage"), "850")
    assert await card.get_attribute("class") == "card level-warning"
    assert await card.locator("[role=meter]").get_attribute("aria-valuenow") == "85"
    assert "Warning" in await card.locator(".badge").inner_text()
    assert await page.evaluate("window.__sameDocument") is True  # moved without a reload
    lag = [
        s.value
        for family in dash.hub.metrics.registry.collect()
        if family.name == "resmon_hub_consumer_lag"
        for s in family.samples
    ]
    assert lag, "the consumer reports its lag once it has applied a batch"
    assert all(v == 0 for v in lag), lag  # every reading sent was consumed
    await _shot(page, "overview")
    _no_errors(page)


async def test_an_alert_arrives_without_reload_and_is_acknowledged_then_resolved(
    browser: playwright_api.Browser, dash: Dash
) -> None:
    page = await _page(browser, dash)
    await page.get_by_role("link", name="Alerts").click()
    await page.wait_for_selector("main[data-view=alerts][data-loaded=true]")
    await page.evaluate("window.__sameDocument = true")
    assert await page.locator("tr.alert").count() == 0
    await dash.send(960)  # 96 %: past the critical threshold
    row = page.locator("tr.alert").first
    await _text_becomes(row, dash.resource.split("/", 1)[1])
    assert await page.evaluate("window.__sameDocument") is True
    assert await page.evaluate("document.body.dataset.live") == "stream"  # pushed, not polled
    assert "CRITICAL" in await row.inner_text()
    await _shot(page, "alerts")
    alert_id = await row.get_attribute("data-alert")
    await row.get_by_role("button", name="Acknowledge").click()
    await _text_becomes(page.locator("tr.alert").first, "acknowledged")
    assert await _status(dash.db, alert_id) == "ACKNOWLEDGED"
    await page.locator("tr.alert").first.get_by_role("button", name="History").click()
    await _text_becomes(page.locator("tr.detail"), "ACKNOWLEDGED")
    await page.locator("tr.alert").first.get_by_role("button", name="Resolve").click()
    await _text_becomes(page.locator("#alert-count"), "0 alerts")
    assert await _status(dash.db, alert_id) == "RESOLVED"
    resolved_by = await dash.db.fetchval(
        "SELECT resolved_by FROM alerts WHERE id = $1::uuid", alert_id
    )
    assert resolved_by == "operator"  # the session acts as its key
    _no_errors(page)


async def _status(db: asyncpg.Connection, alert_id: str | None) -> str:
    return str(await db.fetchval("SELECT status FROM alerts WHERE id = $1::uuid", alert_id))


async def test_alert_actions_work_with_the_keyboard_only(
    browser: playwright_api.Browser, dash: Dash
) -> None:
    alert_id = await raise_alert(dash.db, dash.resource, "WARNING")
    page = await _page(browser, dash)
    await page.goto("/#/alerts")
    await page.wait_for_selector(f'tr.alert[data-alert="{alert_id}"]')

    async def tab_to(name_starts: str) -> None:
        for _ in range(60):
            await page.keyboard.press("Tab")
            label = await page.evaluate(
                "document.activeElement && document.activeElement.getAttribute('aria-label')"
            )
            if label and label.startswith(name_starts):
                return
        raise AssertionError(f"Tab never reached a control named {name_starts!r}")

    await tab_to("Acknowledge")
    await page.keyboard.press("Enter")
    await _text_becomes(page.locator(f'tr.alert[data-alert="{alert_id}"]'), "acknowledged")
    assert await _status(dash.db, alert_id) == "ACKNOWLEDGED"
    # focus stays in the list, on the alert's next action
    focused = await page.evaluate("document.activeElement.getAttribute('aria-label')")
    assert focused.startswith("Resolve"), focused
    await page.keyboard.press("Enter")
    await _text_becomes(page.locator("#alert-count"), "0 alerts")
    assert await _status(dash.db, alert_id) == "RESOLVED"
    _no_errors(page)


async def test_a_recommendation_is_applied_after_a_confirmation_saying_what_changes(
    browser: playwright_api.Browser, dash: Dash
) -> None:
    rid = str(uuid.uuid4())
    await dash.db.execute(
        """INSERT INTO recommendations (id, customer_id, customer_resource_id, kind,
               monthly_savings, currency, effort, description, evidence)
           SELECT $1::uuid, cr.customer_id, cr.id, 'ELIMINATE_WASTE', 42.50, 'USD', 'low',
                  'Remove the idle web API', '{"idleDays": "30", "usage": "0 requests"}'::jsonb
           FROM customer_resources cr WHERE cr.resource_key = $2""",
        rid,
        dash.resource,
    )
    page = await _page(browser, dash)
    await page.goto("/#/recommendations")
    rec = page.locator(f'article.rec[data-recommendation="{rid}"]')
    await _text_becomes(rec, "saves 42.50 USD / month")
    await rec.locator("summary").click()
    assert "idleDays" in await rec.inner_text()
    await _shot(page, "recommendations")
    await rec.get_by_role("button", name="Apply…").click()
    dialog = page.get_by_role("dialog")
    text = await dialog.inner_text()
    assert dash.resource in text
    assert "42.50 USD a month" in text
    await dialog.get_by_role("button", name="Cancel").click()
    assert await _rec_status(dash.db, rid) == "open"
    await rec.get_by_role("button", name="Apply…").click()
    await page.get_by_role("dialog").get_by_role("button", name="Apply").click()
    with anyio.fail_after(SHOWN_S):
        await until(lambda: _rec_status_is(dash.db, rid, "applied"), interval=0.1)
    await _text_becomes(page.locator("main"), "No open recommendations")
    _no_errors(page)


async def _rec_status(db: asyncpg.Connection, rid: str) -> str:
    return str(await db.fetchval("SELECT status FROM recommendations WHERE id = $1::uuid", rid))


async def _rec_status_is(db: asyncpg.Connection, rid: str, status: str) -> bool:
    return await _rec_status(db, rid) == status


async def test_a_customer_key_sees_only_its_customer(
    browser: playwright_api.Browser, dash: Dash, unique: str
) -> None:
    other = await provision_resource(dash.db, f"other-{unique}", "api_calls", 500, "web")
    await dash.send(100)
    await dash.send(50, other)
    portal = await make_key(dash.db, ("read",), name="portal", customer_ids=[f"other-{unique}"])
    page = await _page(browser, dash, portal)
    await _text_becomes(_card(page, other).locator(".usage"), "50")
    # both customers have an alert (raised after their readings were counted)
    await wait_for(
        dash.db,
        "SELECT current_usage FROM customer_resources WHERE resource_key = $1",
        100,
        dash.resource,
    )
    await raise_alert(dash.db, dash.resource, "WARNING")
    await raise_alert(dash.db, other, "WARNING")
    assert await page.locator("article.card").count() == 1
    options = await page.locator("#customer option").all_inner_texts()
    assert options == [f"other-{unique}"]
    await page.goto("/#/alerts")
    await page.wait_for_selector("main[data-view=alerts][data-loaded=true]")
    await _text_becomes(page.locator("#alert-count"), "1 alert")
    body = await page.locator("main").inner_text()
    assert dash.customer not in body
    assert f"other-{unique}" in body
    # a read-only key is offered no actions
    assert await page.get_by_role("button", name="Acknowledge").count() == 0
    _no_errors(page)


async def test_the_views_say_what_this_hub_does_not_serve(
    browser: playwright_api.Browser, dash: Dash
) -> None:
    """Configuration needs routes this hub may lack: a plain notice then, no fake data."""
    app = create_app(ApiContext(config=dash.hub.config, db=dash.hub.pool, metrics=dash.hub.metrics))
    routes = {r.resource.canonical for r in app.router.routes() if r.resource is not None}
    page = await _page(browser, dash)
    await page.goto("/#/config")
    await page.wait_for_selector("main[data-view=config][data-loaded=true]")
    if not any(path.startswith("/api/config/") for path in routes):
        await _text_becomes(page.locator("main"), "Configuration is not available on this hub")
    # the admin key manages keys here
    assert await page.get_by_role("button", name="Create key").count() == 1
    await _shot(page, "configuration")
    await page.goto("/#/costs")
    await page.wait_for_selector("main[data-view=costs][data-loaded=true]")
    await _text_becomes(page.locator("table.costs caption").first, f"Bill of {dash.customer}")
    await _shot(page, "costs")
    _no_errors(page)


async def test_the_chart_draws_the_history_and_switches_its_range(
    browser: playwright_api.Browser, dash: Dash
) -> None:
    for hours_ago, value in ((20, 40), (15, 60), (10, 50), (6, 80), (3, 30), (1, 40)):
        await dash.send(value, ago_s=hours_ago * 3600)
    await wait_for(
        dash.db,
        "SELECT current_usage FROM customer_resources WHERE resource_key = $1",
        300,
        dash.resource,
    )
    page = await _page(browser, dash)
    asked: list[str] = []
    page.on("request", lambda req: asked.append(req.url) if "/history?" in req.url else None)
    await page.goto(f"/#/chart?resource={dash.resource}")
    await page.wait_for_selector("main[data-view=chart][data-range='24h']")
    assert await page.locator(".plot canvas").count() >= 1
    summary = page.locator("#chart-summary")
    assert "raw data" in await summary.inner_text()
    label = await page.locator(".plot").get_attribute("aria-label")
    assert "limit 1000 request" in (label or "")
    await _shot(page, "chart")
    for button, value in (("7D", "7d"), ("1H", "1h"), ("30D", "30d")):
        await page.get_by_role("button", name=button, exact=True).click()
        await page.wait_for_selector(f"main[data-range='{value}']")
        pressed = page.get_by_role("button", name=button, exact=True)
        assert await pressed.get_attribute("aria-pressed") == "true"
        assert f"range={value}" in asked[-1]
    assert (
        await page.get_by_role("button", name="1H", exact=True).get_attribute("aria-pressed")
        == "false"
    )
    _no_errors(page)


async def test_a_limit_changed_in_the_configuration_rescales_the_bar(
    browser: playwright_api.Browser, dash: Dash
) -> None:
    await dash.send(300)
    page = await _page(browser, dash)
    card = _card(page, dash.resource)
    await _text_becomes(card.locator(".pct"), "30 %")
    await page.goto("/#/config")
    form = page.locator(f'form.resource-config[data-resource="{dash.resource}"]')
    await form.wait_for()
    await form.get_by_label("Limit").fill("2000")
    await form.get_by_label("Warning at").fill("10")
    await form.get_by_role("button", name="Save").click()
    await _text_becomes(page.locator("#status"), f"Saved {dash.resource}")
    stored = await dash.db.fetchrow(
        "SELECT limit_value, warning_threshold FROM customer_resources WHERE resource_key = $1",
        dash.resource,
    )
    assert (stored["limit_value"], stored["warning_threshold"]) == (2000, 10)
    await _shot(page, "configuration")
    # a bad value is refused with the hub's reason, next to the form
    await form.get_by_label("Critical at").fill("5")
    await form.get_by_role("button", name="Save").click()
    await _text_becomes(form.locator(".field-error"), "Not saved")
    await page.goto("/#/overview")
    card = _card(page, dash.resource)
    await _text_becomes(card.locator(".limit"), "2,000")
    await _text_becomes(card.locator(".pct"), "15 %")
    assert await card.locator("[role=meter]").get_attribute("aria-valuenow") == "15"
    assert await card.get_attribute("class") == "card level-warning"  # 15 % is past 10 %
    _no_errors(page, allowed=("/api/config/",))
