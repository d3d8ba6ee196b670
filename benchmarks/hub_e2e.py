"""The end-to-end and ingest benchmarks (see :mod:`benchmarks.hub`); needs the servers."""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import secrets
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import asyncpg  # type: ignore[import-untyped]
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from hub.config import HubConfig
from hub.storage.apikeys import create_key
from hub.storage.migrate import migrate
from hub.storage.provision import DEFAULT_TENANT
from loadtest._procs import scrape
from loadtest._stages import HUB_STAGES, StageLatency, render_stages, stage_buckets, stage_latencies
from protocol import AlertEvent, UsageReading, decode_record, encode_event
from resmon._ports import free_tcp_port

from .runner import Figure

__all__ = ["http_config", "markdown_sections", "run_e2e", "run_ingest"]

#: the stage breakdowns of this run's hub-e2e (title, stages), for BENCHMARKS.md
_BREAKDOWNS: list[tuple[str, dict[str, StageLatency]]] = []

_T0 = 1_764_547_200_000  # 2025-12-01T00:00:00Z
_STEP = 600_000
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
#: background stream as a fraction of the measured drain rate during the latency run
#: RESMON_API_KEY_SECRET of the hubs the benchmarks start (their databases are throwaway)
_KEY_SECRET = secrets.token_hex(32)
LOAD = float(os.environ.get("RESMON_BENCH_LOAD", "0.25"))


@contextlib.asynccontextmanager
async def _servers() -> AsyncIterator[tuple[str, str, str]]:
    """URLs of PostgreSQL (a fresh database), Redis and the broker; embedded when unset."""
    from resmon.embedded import embedded_servers

    with tempfile.TemporaryDirectory(prefix="resmon-bench-") as state:
        async with embedded_servers(state, progress=lambda _m: None) as urls:
            name = f"resmon_bench_{uuid.uuid4().hex[:10]}"
            admin = await asyncpg.connect(urls.database_url)
            try:
                await admin.execute(f'CREATE DATABASE "{name}"')
            finally:
                await admin.close()
            base = urls.database_url.rsplit("/", 1)[0]
            try:
                yield f"{base}/{name}", urls.redis_url, urls.kafka_bootstrap_servers
            finally:
                admin = await asyncpg.connect(urls.database_url)
                try:
                    await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
                finally:
                    await admin.close()


async def _provision(db: asyncpg.Connection, prefix: str, n: int, limit: int | None) -> list[str]:
    await db.execute(
        """INSERT INTO customers (id, tenant_id)
           SELECT $1 || g, $2::uuid FROM generate_series(0, $3 - 1) g ON CONFLICT DO NOTHING""",
        prefix,
        DEFAULT_TENANT,
        n,
    )
    await db.execute(
        """INSERT INTO customer_resources (customer_id, resource_catalog_id, resource_key, kind,
               limit_value)
           SELECT $1 || g, (SELECT id FROM resource_catalogs WHERE resource_type = 'bandwidth'
                            ORDER BY created_at, resource_name LIMIT 1),
                  $1 || g || '/bandwidth', 'delta', $3
           FROM generate_series(0, $2 - 1) g""",
        prefix,
        n,
        limit,
    )
    return [f"{prefix}{i}/bandwidth" for i in range(n)]


def _reading(key: str, j: int, value: int) -> UsageReading:
    return UsageReading(
        customer_id=key.split("/", 1)[0],
        resource_type="bandwidth",
        resource_key=key,
        value=value,
        unit="byte",
        start_ms=_T0 + j * _STEP,
        end_ms=_T0 + (j + 1) * _STEP,
    )


def _hub(config: HubConfig, log: Path, port: int) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "DATABASE_URL": config.database_url,
        "REDIS_URL": config.redis_url,
        "KAFKA_BOOTSTRAP_SERVERS": config.kafka_bootstrap_servers,
        "RESMON_HUB_GROUP": config.consumer_group,
        "RESMON_HUB_USAGE_TOPIC": config.usage_topic,
        "RESMON_HUB_ALERTS_TOPIC": config.alerts_topic,
        "RESMON_HUB_SESSION_MS": "2000",
        "RESMON_HUB_HTTP": f"127.0.0.1:{port}",
        "RESMON_RETENTION_DAYS": "36500",
        "RESMON_REDIS_PREFIX": config.redis_prefix,
        "RESMON_API_KEY_SECRET": config.api_key_secret,
    }
    resmon = str(Path(sys.executable).with_name("resmon"))
    return subprocess.Popen(  # noqa: S603 - our own resmon executable
        [resmon, "hub", "run"], env=env, stdout=log.open("ab"), stderr=subprocess.STDOUT
    )


async def _wait_count(db: asyncpg.Connection, n: int, deadline: float) -> tuple[float, float]:
    """Wait until ``n`` events are processed: (time of the first, time of the last)."""
    first = 0.0
    while True:
        done = await db.fetchval("SELECT count(*) FROM processed_events")
        now = time.perf_counter()
        if done and not first:
            first = now
        if done >= n:
            return first, now
        if now > deadline:
            raise TimeoutError(f"the hub processed {done} of {n} readings in time")
        await anyio.sleep(0.05)


async def _e2e(quick: bool) -> list[Figure]:
    from hdrh.histogram import HdrHistogram

    tag = uuid.uuid4().hex[:8]
    backlog_keys, per_key = (2000, 10) if quick else (5000, 60)
    trigger_n = 1000 if quick else 5000
    stream_s = 4.0 if quick else 30.0
    cmd = "resmon bench --only hub-e2e" + (" --quick" if quick else "")
    async with _servers() as (dsn, redis_url, bootstrap):
        config = HubConfig(
            database_url=dsn,
            redis_url=redis_url,
            kafka_bootstrap_servers=bootstrap,
            api_key_secret=_KEY_SECRET,
            consumer_group=f"bench-{tag}",
            usage_topic=f"bench-usage-{tag}",
            alerts_topic=f"bench-alerts-{tag}",
            redis_prefix=f"bench-{tag}",
        )
        await migrate(dsn)
        db = await asyncpg.connect(dsn)
        producer = AIOKafkaProducer(
            bootstrap_servers=bootstrap, enable_idempotence=False, acks="all", linger_ms=2
        )
        await producer.start()
        log = Path(tempfile.gettempdir()) / f"resmon-bench-hub-{tag}.log"
        hub: subprocess.Popen[bytes] | None = None
        try:
            keys = await _provision(db, f"bk{tag}-", backlog_keys, 10**15)
            triggers = await _provision(db, f"bt{tag}-", trigger_n, 1000)
            from hub.kafka import ensure_topics

            await ensure_topics(config)
            # 1. a backlog, drained as fast as the hub can
            records = [
                encode_event(_reading(k, j, 1_000_000 + j), source="urn:bench")
                for j in range(per_key)
                for k in keys
            ]
            for rec in records:
                await producer.send(
                    config.usage_topic, value=rec.value, key=rec.key, headers=rec.headers
                )
            await producer.flush()
            port = free_tcp_port()
            metrics_url = f"http://127.0.0.1:{port}/metrics"
            hub = _hub(config, log, port)
            first, last = await _wait_count(db, len(records), time.perf_counter() + 200)
            rate = (len(records) - 1) / max(last - first, 1e-6)
            drained = stage_buckets([await scrape(metrics_url)], HUB_STAGES)
            # 2. a paced stream in which each trigger resource warns, then escalates
            hist = HdrHistogram(1, 60_000_000, 3)  # microseconds
            sent: dict[tuple[str, int], float] = {}
            consumer = AIOKafkaConsumer(
                config.alerts_topic,
                bootstrap_servers=bootstrap,
                auto_offset_reset="earliest",
                fetch_max_wait_ms=20,
            )
            await consumer.start()
            expected = 2 * trigger_n
            received = 0

            async def collect() -> None:
                nonlocal received
                while received < expected:
                    batch = await consumer.getmany(timeout_ms=100)
                    now = time.perf_counter()
                    for recs in batch.values():
                        for rec in recs:
                            ev = decode_record(rec.value, list(rec.headers or ()))
                            data = ev.data
                            if isinstance(data, AlertEvent) and data.status == "ACTIVE":
                                at = sent.get((data.resource_key, data.at_ms))
                                if at is not None:
                                    hist.record_value(max(1, int((now - at) * 1e6)))
                                    received += 1

            stream_rate = 0.0
            with anyio.fail_after(stream_s + 60):
                async with anyio.create_task_group() as tg:
                    tg.start_soon(collect)
                    ticks = int(stream_s * 50)  # every 20 ms
                    per_tick_bg = max(1, int(rate * LOAD / 50))
                    j0 = per_key
                    t_start = time.perf_counter()
                    bg = 0
                    for t in range(ticks):
                        for _ in range(per_tick_bg):
                            k = keys[bg % len(keys)]
                            j = j0 + bg // len(keys)
                            rec = encode_event(_reading(k, j, 1000), source="urn:bench")
                            await producer.send(
                                config.usage_topic,
                                value=rec.value,
                                key=rec.key,
                                headers=rec.headers,
                            )
                            bg += 1
                        i = t % trigger_n
                        if t < 2 * trigger_n:
                            step, value = (0, 850) if t < trigger_n else (1, 100)
                            key = triggers[i]
                            r = _reading(key, step, value)
                            rec = encode_event(r, source="urn:bench")
                            sent[(key, r.end_ms)] = time.perf_counter()
                            await producer.send(
                                config.usage_topic,
                                value=rec.value,
                                key=rec.key,
                                headers=rec.headers,
                            )
                        await anyio.sleep_until(t_start + (t + 1) / 50)
                    stream_rate = bg / (time.perf_counter() - t_start)
                    expected = min(expected, len(sent))
            await consumer.stop()
            streamed = stage_buckets([await scrape(metrics_url)], HUB_STAGES)
        finally:
            if hub is not None:
                hub.terminate()
                try:
                    hub.wait(15)
                except subprocess.TimeoutExpired:
                    hub.kill()
            await producer.stop()
            await db.close()
    _BREAKDOWNS[:] = [
        (f"backlog drain ({len(records):,} readings)", stage_latencies(drained)),
        (
            f"paced stream ({stream_rate:,.0f} readings/s + {hist.get_total_count():,} alerts)",
            stage_latencies(streamed, drained),
        ),
    ]
    for _title, stages in _BREAKDOWNS:  # synthetic interval ends: not a latency here
        stages.pop("poll_to_commit", None)
    for title, stages in _BREAKDOWNS:
        print("\n".join([f"hub-e2e, {title}:", *render_stages("hub", stages)]), file=sys.stderr)
    p50 = hist.get_value_at_percentile(50) / 1000
    p99 = hist.get_value_at_percentile(99) / 1000
    n = hist.get_total_count()
    note = (
        f"one `resmon hub run` child; broker, PostgreSQL, Redis and the load generator on "
        f"the same machine. Backlog: {len(records):,} readings of {backlog_keys:,} resources."
    )
    lat_note = (
        f"{n:,} threshold alerts of resources first seen in the stream, measured from the "
        f"producer send to arrival on resource.alerts, while a background stream of "
        f"{stream_rate:,.0f} readings/s ran for {stream_s:g} s; HdrHistogram."
    )
    return [
        Figure(suite="hub-e2e", name="sustained readings/s (backlog drain)", value=rate,
               unit="readings/s", command=cmd, target=50_000, notes=note),
        Figure(suite="hub-e2e", name="alert latency p50", value=p50, unit="ms", command=cmd,
               higher_is_better=False, notes=lat_note),
        Figure(suite="hub-e2e", name="alert latency p99", value=p99, unit="ms", command=cmd,
               higher_is_better=False, target=250, notes=lat_note),
    ]  # fmt: skip


def markdown_sections() -> list[str]:
    """The hub's latency per stage in this run's hub-e2e, for BENCHMARKS.md (once)."""
    if not _BREAKDOWNS:
        return []
    breakdowns, _BREAKDOWNS[:] = list(_BREAKDOWNS), []
    lines = [
        "## Latency per stage, hub-e2e",
        "",
        "`resmon bench --only hub-e2e`: the hub's `resmon_hub_reading_stage_seconds` "
        "histograms, scraped after the backlog drained and after the paced stream; "
        "percentiles estimated inside histogram buckets. The readings carry no agent "
        "stamp and synthetic interval times (so no buffered, sent or poll_to_commit "
        "stage here); fetched is from the producer's record timestamp.",
    ]
    for title, stages in breakdowns:
        lines += ["", f"{title}:", "", *render_stages("hub", stages)]
    return ["\n".join(lines)]


def run_e2e(quick: bool) -> list[Figure]:
    return anyio.run(_e2e, quick)


def http_config(dsn: str, redis_url: str, bootstrap: str, tag: str) -> HubConfig:
    """A hub serving HTTP on a free port, with topics and names of its own (``tag``)."""
    return HubConfig(
        database_url=dsn,
        redis_url=redis_url,
        kafka_bootstrap_servers=bootstrap,
        api_key_secret=_KEY_SECRET,
        http_port=0,
        consumer_group=f"bench-{tag}",
        usage_topic=f"bench-usage-{tag}",
        alerts_topic=f"bench-alerts-{tag}",
        redis_prefix=f"bench-{tag}",
        session_timeout_ms=2000,
        # the rate limiter runs (its Redis round trips are in the figures) with budgets
        # one benchmark key never reaches
        rate_limit_read="1000000/second",
        rate_limit_ingest="1000000/second",
    )


def run_ingest(quick: bool) -> list[Figure]:
    return anyio.run(_ingest, quick)


async def _ingest(quick: bool) -> list[Figure]:
    import aiohttp

    from hub.app import run_hub

    tag = uuid.uuid4().hex[:8]
    batches = 20 if quick else 200
    size = 500
    singles = 300 if quick else 2000
    cmd = "resmon bench --only ingest" + (" --quick" if quick else "")
    async with _servers() as (dsn, redis_url, bootstrap):
        config = http_config(dsn, redis_url, bootstrap, tag)

        # a millisecond apart from a day ago: distinct events, all inside retention and
        # none ahead of the hub's clock (the ingest API refuses both)
        base_ms = time.time_ns() // 1_000_000 - 86_400_000

        def event(i: int) -> dict[str, object]:
            return {
                "customerId": f"ing{tag}-{i % 1000}",
                "resourceType": "api_calls",
                "value": 1 + i % 7,
                "unit": "request",
                "timestamp": (_EPOCH + dt.timedelta(milliseconds=base_ms + i)).isoformat(),
            }

        async with anyio.create_task_group() as tg:
            hub = await tg.start(run_hub, config)
            url = f"{hub.http_url}/api/metrics/ingest"
            created = await create_key(
                hub.pool, _KEY_SECRET, tenant_id=DEFAULT_TENANT, name="bench", scopes=("ingest",)
            )
            auth = {"Authorization": f"Bearer {created.key}"}
            async with aiohttp.ClientSession(headers=auth) as http:
                async with http.post(url, json=[event(0)]) as resp:
                    if resp.status != 200:
                        raise RuntimeError(f"ingest refused: {resp.status} {await resp.text()}")
                t = time.perf_counter()
                for b in range(batches):
                    body = [event(1 + b * size + i) for i in range(size)]
                    async with http.post(url, json=body) as resp:
                        assert resp.status == 200, await resp.text()
                batch_rate = batches * size / (time.perf_counter() - t)
                t = time.perf_counter()
                for i in range(singles):
                    async with http.post(url, json=event(10**7 + i)) as resp:
                        assert resp.status == 200, await resp.text()
                single_rate = singles / (time.perf_counter() - t)
            tg.cancel_scope.cancel()
    return [
        Figure(suite="ingest", name="POST /api/metrics/ingest, batches of 500", value=batch_rate,
               unit="events/s", command=cmd, baseline_name="one event per request",
               baseline_value=single_rate,
               notes="validated (all or nothing per request) and acknowledged by the broker; "
               "in-process hub, aiohttp client on the same event loop."),
    ]  # fmt: skip
