"""Dashboard benchmarks for ``resmon bench --only dashboard``, measured in a real browser.

An in-process hub (embedded PostgreSQL, Redis and broker unless ``DATABASE_URL``
... are set) serves the dashboard; Debian's Chromium (``/usr/bin/chromium``,
headless, driven by Playwright) logs in with an API key and measures, as the
browser tests drive it:

* first load to cards drawn: from the navigation's start to the overview's
  ``resmon:cards`` performance mark (12 resources; the median of the loads),
  target under 1 s;
* the JavaScript shipped: the bytes of every script the browser fetched after
  opening each view once (the vendored chart library included), target under
  150 kB;
* alert raised in the hub -> shown: from the alert row's ``created_at`` (the
  hub's transaction) to the moment its row appears in the open alerts view
  (a MutationObserver in the page, same machine clock), target under 1 s. The
  page gets it over the live stream when the hub has one, else by polling
  every 2 s.
"""

from __future__ import annotations

import statistics
import time
import uuid
from pathlib import Path
from typing import Any

import anyio
import asyncpg  # type: ignore[import-untyped]
import msgspec
from aiokafka import AIOKafkaProducer

from hub.storage.apikeys import create_key
from hub.storage.provision import DEFAULT_TENANT, provision_resource
from protocol import UsageReading, encode_event

from .hub_e2e import _servers, http_config
from .runner import Figure

__all__ = ["suite"]

CHROMIUM = Path("/usr/bin/chromium")
_VIEWS = ("overview", "chart", "alerts", "costs", "recommendations", "config")
#: records when each alert row first appears, by alert id (epoch ms)
_WATCH = """() => {
  window.__shown = {};
  const seen = (node) => {
    if (node.nodeType !== 1 || !node.matches || !node.matches("tr.alert")) return;
    if (!(node.dataset.alert in window.__shown)) window.__shown[node.dataset.alert] = Date.now();
  };
  new MutationObserver((records) => {
    for (const r of records) for (const n of r.addedNodes) seen(n);
  }).observe(document.body, { childList: true, subtree: true });
}"""


def suite(quick: bool) -> list[Figure]:
    if not CHROMIUM.exists():
        raise RuntimeError(f"no Chromium at {CHROMIUM}: `make system-deps` installs it (as root)")
    return anyio.run(_run, quick)


async def _send(producer: AIOKafkaProducer, topic: str, key: str, value: int, n: int) -> None:
    now = time.time_ns() // 1_000_000
    reading = UsageReading(
        customer_id=key.split("/", 1)[0],
        resource_type="api_calls",
        resource_key=key,
        value=value,
        unit="request",
        start_ms=now - 60_000 + n,
        end_ms=now - 30_000 + n,
    )
    record = encode_event(reading, source="urn:bench:dashboard")
    await producer.send_and_wait(topic, value=record.value, key=record.key, headers=record.headers)


async def _run(quick: bool) -> list[Figure]:
    from playwright.async_api import async_playwright

    from hub.app import run_hub

    tag = uuid.uuid4().hex[:8]
    loads = 5 if quick else 15
    alerts = 3 if quick else 10
    cmd = "resmon bench --only dashboard" + (" --quick" if quick else "")
    async with _servers() as (dsn, redis_url, bootstrap):
        # the e2e bench's hub, polling Kafka more often so an alert reaches the page sooner
        config = msgspec.structs.replace(
            http_config(dsn, redis_url, bootstrap, tag), batch_timeout_ms=50
        )
        customer = f"dash{tag}"
        async with anyio.create_task_group() as tg:
            hub = await tg.start(run_hub, config)
            db = await asyncpg.connect(dsn)
            producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
            await producer.start()
            try:
                keys = [
                    await provision_resource(db, customer, "api_calls", 1000, f"r{i:02d}")
                    for i in range(12 + alerts)
                ]
                for n, key in enumerate(keys[:12]):
                    await _send(producer, config.usage_topic, key, 100 + n, n)
                created = await create_key(
                    db,
                    config.api_key_secret,
                    tenant_id=DEFAULT_TENANT,
                    name="bench",
                    scopes=("read",),
                )
                async with async_playwright() as p:
                    browser = await p.chromium.launch(
                        executable_path=str(CHROMIUM), headless=True, args=["--no-sandbox"]
                    )
                    try:
                        page = await (await browser.new_context(base_url=hub.http_url)).new_page()
                        await page.goto("/ui/login")
                        await page.get_by_label("API key").fill(created.key)
                        await page.get_by_role("button", name="Log in").click()
                        await page.wait_for_selector("main[data-loaded=true]")
                        first = await _first_loads(page, loads)
                        shipped = await _shipped(page)
                        latencies = await _alert_latencies(
                            page, db, producer, config.usage_topic, keys[12:]
                        )
                    finally:
                        await browser.close()
            finally:
                await producer.stop()
                await db.close()
                tg.cancel_scope.cancel()
    stream = "the live stream" if latencies[1] else "polling every 2 s (no /api/stream)"
    return [
        Figure(suite="dashboard", name="first load to cards drawn (median)", value=first,
               unit="ms", command=cmd, higher_is_better=False, target=1000.0,
               notes=f"12 resource cards, loopback, headless Chromium; median of {loads} loads "
               "(navigation start to the overview's resmon:cards mark)."),
        Figure(suite="dashboard", name="JavaScript shipped (every view opened)", value=shipped,
               unit="kB", command=cmd, higher_is_better=False, target=150.0,
               notes="every script fetched, uPlot included, uncompressed (1 kB = 1000 bytes)."),
        Figure(suite="dashboard", name="alert raised in the hub -> shown (median)",
               value=latencies[0], unit="ms", command=cmd, higher_is_better=False,
               target=1000.0,
               notes=f"{alerts} alerts; from the alert row's created_at to its row in the open "
               f"alerts view; the page learnt of them by {stream}."),
    ]  # fmt: skip


async def _first_loads(page: Any, n: int) -> float:
    times = []
    for _ in range(n):
        await page.goto("/#/overview")
        await page.wait_for_function("performance.getEntriesByName('resmon:cards').length > 0")
        times.append(
            await page.evaluate("performance.getEntriesByName('resmon:cards')[0].startTime")
        )
    return float(statistics.median(times))


async def _shipped(page: Any) -> float:
    await page.goto("/#/overview")
    await page.wait_for_selector("main[data-loaded=true]")
    for view in _VIEWS:
        await page.evaluate(f"location.hash = '#/{view}'")
        await page.wait_for_selector(f"main[data-view={view}][data-loaded=true]")
    size = await page.evaluate(
        """performance.getEntriesByType("resource")
             .filter((e) => e.name.split("?")[0].endsWith(".js"))
             .reduce((sum, e) => sum + e.decodedBodySize, 0)"""
    )
    return float(size) / 1000


async def _alert_latencies(
    page: Any, db: asyncpg.Connection, producer: AIOKafkaProducer, topic: str, keys: list[str]
) -> tuple[float, bool]:
    """The median alert latency (ms) and whether the page was on the live stream."""
    await page.goto("/#/alerts")
    await page.wait_for_selector("main[data-view=alerts][data-loaded=true]")
    await page.evaluate(_WATCH)
    latencies = []
    for n, key in enumerate(keys):
        await _send(producer, topic, key, 990, 1000 + n)
        with anyio.fail_after(30):
            while True:
                row = await db.fetchrow(
                    """SELECT a.id::text AS id,
                              (extract(epoch FROM a.created_at) * 1000)::float8 AS at
                       FROM alerts a JOIN customer_resources cr ON cr.id = a.customer_resource_id
                       WHERE cr.resource_key = $1 ORDER BY a.created_at DESC LIMIT 1""",
                    key,
                )
                shown = (
                    await page.evaluate(f"window.__shown[{row['id']!r}] || null")
                    if row is not None
                    else None
                )
                if shown is not None:
                    latencies.append(shown - row["at"])
                    break
                await anyio.sleep(0.05)
        await anyio.sleep(0.5)  # apart, so that each is its own arrival
    live = await page.evaluate("document.body.dataset.live === 'stream'")
    return float(statistics.median(latencies)), bool(live)
