"""What the runner reads from the servers: topic setup, consumer lag, billed
totals, alerts, stored readings; and the final :class:`Result`."""

from __future__ import annotations

import itertools
import time
from typing import TYPE_CHECKING, Any

import anyio
import structlog

from resmon._machine import machine_description

from ._result import GapRouter, Latency, ProcessUsage, Result
from ._stages import AGENT_STAGES, HUB_STAGES, stage_buckets, stage_latencies
from ._world import NS, World

if TYPE_CHECKING:
    from ._runner import _Run

__all__ = ["collect", "consumer_lag", "create_topic", "db_totals"]

_log = structlog.get_logger(component="loadtest._collect")
_consumers: dict[str, Any] = {}


async def create_topic(bootstrap: str, topic: str, partitions: int) -> None:
    """Create the run's usage topic with ``partitions`` (so hubs can share it)."""
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic
    from aiokafka.errors import TopicAlreadyExistsError

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, partitions, 1)])
    except TopicAlreadyExistsError:
        pass
    finally:
        await admin.close()


async def _end_offsets(bootstrap: str, topic: str) -> int | None:
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = _consumers.get(bootstrap)
    if consumer is None:
        consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
        await consumer.start()
        _consumers[bootstrap] = consumer
    parts = consumer.partitions_for_topic(topic)
    if not parts:
        await consumer._client.force_metadata_update()
        parts = consumer.partitions_for_topic(topic) or set()
    offsets = await consumer.end_offsets([TopicPartition(topic, p) for p in parts])
    return int(sum(offsets.values()))


async def consumer_lag(urls: Any, topic: str, group: str) -> int | None:
    """Records on the topic not yet applied by the hubs (None if the broker does not answer)."""
    import asyncpg  # type: ignore[import-untyped]

    end: int | None = None
    with anyio.move_on_after(2):
        try:
            end = await _end_offsets(urls.kafka_bootstrap_servers, topic)
        except Exception as exc:  # the broker is paused or restarting
            _log.debug("loadtest.lag_unavailable", error=str(exc))
    if end is None:
        return None
    conn = await asyncpg.connect(urls.database_url)
    try:
        done = await conn.fetchval(
            "SELECT coalesce(sum(next_offset), 0) FROM consumer_offsets"
            " WHERE consumer_group = $1 AND topic = $2",
            group,
            topic,
        )
    finally:
        await conn.close()
    return max(end - int(done), 0)


async def close_consumers() -> None:
    for consumer in _consumers.values():
        await consumer.stop()
    _consumers.clear()


#: events after which a router's resources may rightly miss bytes: a reboot makes
#: the interval around it a gap. An unanswered poll is no longer a gap (the agent
#: keeps its baseline and the next answer bills the whole outage exactly), but a
#: dead or faulty router can still end the run unanswered, or leave a Counter32 of
#: unknown speed unbridgeable: its resources are checked as truth = billed + in gaps
_GAP_ACTIONS = ("reboot", "renumber", "dead", "faults")


def _gap_routers(world: World) -> set[int]:
    return {i for e in world.scenario.events if e.action in _GAP_ACTIONS for i in e.routers}


def _union(intervals: list[tuple[int, int]]) -> list[tuple[int, int]]:
    merged: list[tuple[int, int]] = []
    for a, b in sorted(intervals):
        if merged and a <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], b))
        elif b > a:
            merged.append((a, b))
    return merged


def _ns(ts: Any) -> int:
    return int(ts.timestamp() * 1e6) * 1000


async def _billed(database_url: str, world: World) -> dict[str, int]:
    import asyncpg

    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch(
            "SELECT resource_key, current_usage FROM customer_resources"
            " WHERE resource_key = ANY($1::text[])",
            [r.key for r in world.resources],
        )
    finally:
        await conn.close()
    return {r["resource_key"]: int(r["current_usage"] or 0) for r in rows}


async def db_totals(database_url: str, world: World) -> dict[str, int]:
    """How many exact resources already bill exactly their ground truth."""
    billed = await _billed(database_url, world)
    gap = _gap_routers(world)
    exact = [r for r in world.resources if r.router_index not in gap]
    matching = sum(1 for r in exact if billed.get(r.key) == r.truth)
    return {
        "exact": len(exact),
        "exact_matching": matching,
        "billed": sum(billed.values()),
        "truth": sum(r.truth for r in world.resources),
    }


def _latency(hist: Any) -> Latency:
    if not hist.get_total_count():
        return Latency()
    return Latency(
        count=hist.get_total_count(),
        p50_ms=hist.get_value_at_percentile(50) / 1000,
        p90_ms=hist.get_value_at_percentile(90) / 1000,
        p99_ms=hist.get_value_at_percentile(99) / 1000,
        max_ms=hist.get_max_value() / 1000,
    )


async def _observed_crossings(conn: Any, world: World) -> dict[tuple[str, str], int]:
    """When the poll whose reading took usage over each threshold happened (ns).

    Readings are summed in time order (both directions of a poll share a
    timestamp); the first poll at which the running total reaches the
    threshold is the one that made the hub raise the alert.
    """
    s = world.scenario
    breached = [r for r in world.resources if r.breach]
    rows = await conn.fetch(
        "SELECT r.resource_key, m.metric_timestamp, m.metric_value FROM usage_metrics m"
        " JOIN customer_resources r ON r.id = m.customer_resource_id"
        " WHERE r.resource_key = ANY($1::text[])"
        " ORDER BY r.resource_key, m.metric_timestamp",
        [r.key for r in breached],
    )
    limits = {r.key: r.limit for r in breached}
    found: dict[tuple[str, str], int] = {}
    totals: dict[str, int] = {}
    for row in rows:
        key = row["resource_key"]
        total = totals[key] = totals.get(key, 0) + int(row["metric_value"])
        ts = int(row["metric_timestamp"].timestamp() * 1e6) * 1000
        for kind, pct in (
            ("THRESHOLD_WARNING", s.warning_percent),
            ("THRESHOLD_CRITICAL", s.critical_percent),
        ):
            if (key, kind) not in found and total * 100 >= limits[key] * pct:
                found[key, kind] = ts
    return found


def warning_optional(observed: dict[tuple[str, str], int], key: str) -> bool:
    """Whether the hub may rightly raise no WARNING for ``key``.

    The plan's rule: a reading that takes usage to the critical threshold
    raises CRITICAL, whatever the level before. When one poll took the stored
    total over both thresholds (``observed`` crossings share a timestamp),
    whether a WARNING comes first depends on the order of that poll's readings
    (in and out), so it is not required; it is counted when it comes.
    """
    warning = observed.get((key, "THRESHOLD_WARNING"))
    return warning is not None and warning == observed.get((key, "THRESHOLD_CRITICAL"))


def _rate(timeline: list[dict[str, float]], key: str, t0: float, t1: float) -> float:
    inside = [p for p in timeline if t0 <= p["t"] <= t1]
    if len(inside) < 2:
        return 0.0
    a, b = inside[0], inside[-1]
    return (b[key] - a[key]) / (b["t"] - a["t"]) if b["t"] > a["t"] else 0.0


def _peak(timeline: list[dict[str, float]], key: str) -> float:
    best = 0.0
    for a, b in itertools.pairwise(timeline):
        if b["t"] > a["t"]:
            best = max(best, (b[key] - a[key]) / (b["t"] - a["t"]))
    return best


async def collect(run: _Run, drain_s: float) -> Result:
    import asyncpg
    from hdrh.histogram import HdrHistogram

    s = run.scenario
    world = run.world
    last = run.timeline[-1]
    keys = [r.key for r in world.resources]
    conn = await asyncpg.connect(run.urls.database_url)
    try:
        billed = {
            r["resource_key"]: int(r["current_usage"] or 0)
            for r in await conn.fetch(
                "SELECT resource_key, current_usage FROM customer_resources"
                " WHERE resource_key = ANY($1::text[])",
                keys,
            )
        }
        alerts = await conn.fetch(
            "SELECT r.resource_key, a.alert_type, a.created_at FROM alerts a"
            " JOIN customer_resources r ON r.id = a.customer_resource_id"
            " WHERE r.resource_key = ANY($1::text[])",
            keys,
        )
        stored = await conn.fetchrow(
            "SELECT count(*) AS n, count(DISTINCT (m.event_source, m.event_id)) AS d"
            " FROM usage_metrics m"
            " JOIN customer_resources r ON r.id = m.customer_resource_id"
            " WHERE r.resource_key = ANY($1::text[])",
            keys,
        )
        observed = await _observed_crossings(conn, world)
        gap_rows = await conn.fetch(
            "SELECT resource_key, gap_start, gap_end, reason FROM usage_gaps"
            " WHERE resource_key = ANY($1::text[])",
            keys,
        )
        gaps = await conn.fetchval(
            "SELECT count(*) FROM usage_gaps WHERE resource_key = ANY($1::text[])", keys
        )
    finally:
        await conn.close()
    await close_consumers()

    r = Result(scenario=s.name, description=s.description.strip(), machine=machine_description())
    r.notes = run.notes
    r.routers, r.interfaces, r.resources = s.routers, s.interfaces, len(world.resources)
    r.v3_routers = len(world.v3_routers)
    r.agents, r.hubs = s.agents, len(run.hubs)
    r.interval_s, r.traffic_s = s.interval, s.traffic_s
    r.wall_s = time.monotonic() - run.started_mono
    r.drain_s = drain_s
    t0, t1 = s.warmup_s, s.warmup_s + s.traffic_s
    tl = run.timeline
    r.polls, r.poll_errors = int(last["polls"]), int(last["poll_errors"])
    r.polls_per_s = _rate(tl, "polls", t0, t1)
    r.sim_requests = int(last["sim_requests"])
    r.sim_requests_per_s = _rate(tl, "sim_requests", t0, t1)
    r.readings_produced, r.readings_acked = int(last["produced"]), int(last["acked"])
    r.readings_consumed = int(last["consumed"])
    r.produced_per_s = _rate(tl, "produced", t0, t1)
    r.acked_per_s = _rate(tl, "acked", t0, t1)
    r.consumed_per_s = _rate(tl, "consumed", t0, t1)
    r.peak_consumed_per_s = _peak(tl, "consumed")
    r.readings_stored = int(stored["d"])
    r.duplicate_readings = int(stored["n"]) - int(stored["d"])
    r.left_in_agent_buffers = run.left_in_buffers
    r.lost_readings = max(r.readings_produced - r.readings_stored - r.left_in_agent_buffers, 0)
    r.duplicates_dropped = int(last["dup_dropped"])
    r.gaps = int(gaps)
    r.max_consumer_lag = run.max_lag
    r.final_consumer_lag = int(last["lag"])
    r.timeline = tl
    r.agent_stages = stage_latencies(stage_buckets(run.agent_pages.values(), AGENT_STAGES))
    r.hub_stages = stage_latencies(stage_buckets(run.hub_pages.values(), HUB_STAGES))

    gap_routers = _gap_routers(world)
    by_key = {res.key: res for res in world.resources}
    reasons: dict[str, int] = {}
    in_gaps: dict[str, int] = {}
    t_on = run.fleet.epoch_ns + round(s.warmup_s * NS)
    t_off = t_on + round(s.traffic_s * NS)
    spans: dict[str, list[tuple[int, int]]] = {}
    for row in gap_rows:
        reasons[row["reason"]] = reasons.get(row["reason"], 0) + 1
        a = min(max(_ns(row["gap_start"]), t_on), t_off)
        b = min(max(_ns(row["gap_end"]), t_on), t_off)
        spans.setdefault(row["resource_key"], []).append((a, b))
    for key, intervals in spans.items():
        res = by_key[key]
        # gaps of both directions, and of consecutive failed polls, overlap: a byte
        # can only be missing once, so count the union of the intervals
        for a, b in _union(intervals):
            in_gaps[key] = in_gaps.get(key, 0) + sum(
                run.fleet.bytes_between(res.router, res.interface, d, a, b) for d in ("in", "out")
            )
    r.gap_reasons = reasons
    per_router: dict[int, GapRouter] = {}
    for e in s.events:
        if e.action in _GAP_ACTIONS:
            for i in e.routers:
                per_router.setdefault(i, GapRouter(router=world.config.routers[i].name))
                per_router[i].actions.append(e.action)
    for res in world.resources:
        got = billed.get(res.key, 0)
        if res.router_index in gap_routers:
            r.gap_resources += 1
            r.gap_billed_bytes += got
            r.gap_truth_bytes += res.truth
            r.gap_reported_bytes += in_gaps.get(res.key, 0)
            g = per_router[res.router_index]
            g.resources += 1
            g.billed_bytes += got
            g.truth_bytes += res.truth
            g.reported_bytes += in_gaps.get(res.key, 0)
        else:
            r.exact_resources += 1
            r.billed_bytes += got
            r.truth_bytes += res.truth
            r.exact_resources_matching += got == res.truth
    r.accuracy_percent = 100.0 * r.billed_bytes / r.truth_bytes if r.truth_bytes else 100.0
    for g in per_router.values():
        g.billed_percent = 100.0 * g.billed_bytes / g.truth_bytes if g.truth_bytes else 100.0
        g.reported_percent = 100.0 * g.reported_bytes / g.truth_bytes if g.truth_bytes else 0.0
    r.gap_routers = [per_router[i] for i in sorted(per_router)]

    r.gap_unexplained_bytes = r.gap_truth_bytes - r.gap_billed_bytes - r.gap_reported_bytes
    hist = HdrHistogram(1, 3_600_000_000, 3)  # microseconds
    pipeline = HdrHistogram(1, 3_600_000_000, 3)
    seen: dict[tuple[str, str], int] = {}
    other: dict[str, int] = {}
    for row in alerts:
        kind = row["alert_type"]
        res = by_key[row["resource_key"]]
        if kind not in ("THRESHOLD_WARNING", "THRESHOLD_CRITICAL"):
            other[kind] = other.get(kind, 0) + 1
            continue
        if not res.breach:
            r.unexpected_threshold_alerts += 1
            continue
        at_ns = int(row["created_at"].timestamp() * 1e6) * 1000
        seen[res.key, kind] = at_ns
    r.other_alerts = other
    for res in world.resources:
        if not res.breach:
            continue
        if res.router_index in gap_routers:
            r.gap_breaches += 1
            continue
        for kind, due in (
            ("THRESHOLD_WARNING", res.warning_at_ns),
            ("THRESHOLD_CRITICAL", res.critical_at_ns),
        ):
            if due is None:
                continue
            got_ns = seen.get((res.key, kind))
            jumped = kind == "THRESHOLD_WARNING" and warning_optional(observed, res.key)
            if got_ns is None and jumped:
                r.warnings_skipped += 1
                continue
            r.expected_alerts += 1
            due += run.fleet.epoch_ns
            if got_ns is None:
                r.missing_alerts += 1
                continue
            r.alerts_on_time += 1
            hist.record_value(max((got_ns - due) // 1000, 1))
            polled = observed.get((res.key, kind))
            if polled is not None:
                pipeline.record_value(max((got_ns - polled) // 1000, 1))
    r.alert_latency = _latency(hist)
    r.pipeline_latency = _latency(pipeline)
    for label in run.sampler.cpu_s:
        r.processes[label] = ProcessUsage(
            cpu_s=run.sampler.cpu_s[label],
            cpu_percent=run.sampler.cpu_percent(label),
            peak_rss_mb=run.sampler.peak_rss.get(label, 0) / 2**20,
        )
    stats = run.fleet.stats
    r.simulator = {k: int(getattr(stats, k)) for k in stats.__struct_fields__}

    failures = []
    if r.lost_readings:
        failures.append(f"{r.lost_readings} readings produced by agents were never stored")
    if r.duplicate_readings:
        failures.append(f"{r.duplicate_readings} readings stored twice")
    if r.exact_resources_matching != r.exact_resources:
        failures.append(
            f"{r.exact_resources - r.exact_resources_matching} resources do not bill their "
            "ground truth to the byte"
        )
    if r.missing_alerts:
        failures.append(f"{r.missing_alerts} expected threshold alerts are missing")
    if r.unexpected_threshold_alerts:
        failures.append(f"{r.unexpected_threshold_alerts} threshold alerts nobody scheduled")
    if r.gap_billed_bytes > r.gap_truth_bytes:
        failures.append("resources with gaps billed more than they carried")
    # gap bounds come from the agent's clock, the truth from the simulator's: allow
    # 50 ms of traffic per gap for the time between the two reading the counter
    slack = sum(reasons.values()) * (s.rate + (s.out_rate or s.rate // 2)) // 20
    if abs(r.gap_unexplained_bytes) > max(slack, 0):
        failures.append(
            f"{r.gap_unexplained_bytes:,} bytes missing from resources with gaps are not inside "
            "a reported gap"
        )
    r.failures = failures
    r.passed = not failures
    _ = NS
    return r
