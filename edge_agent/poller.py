"""Poll every target on an aligned schedule and turn counters into usage events.

Each cycle starts at a multiple of ``interval`` (plus up to ``jitter``
seconds, so a fleet of agents does not poll in lockstep). Targets are polled
concurrently, at most ``max_concurrency`` at a time (and at most
``max_in_flight`` requests per device, in the client), each within its own
deadline: a dead router costs its own deadline, never the others' time. After
``backoff_after_failures`` failed polls in a row a target is backed off: it is
skipped for ``interval x 2^k`` seconds (at most ``backoff_max``) before the
next try. A failed or skipped poll reports nothing: every track keeps its
last good sample as the baseline (:func:`edge_agent.delta.fail`), so the
next answer bridges the whole outage with one exact delta per counter, or one
gap when the delta math cannot vouch for the span (a reboot in between, a
Counter32 that may have wrapped twice, ...). The failures themselves show in
``resmon_agent_poll_errors``, ``resmon_agent_target_up`` and ``/healthz``. Each
target's state (``ok``, ``failing``, ``backoff``) is in :meth:`Poller.status`,
the ``/healthz`` document and the ``resmon_agent_target_*`` metrics.

Per target the poller walks the interface table (on the first poll, every
``rediscover_interval`` and after a reboot), maps interfaces to customer
resources (:mod:`edge_agent.mapping`), GETs the counters, runs the pure delta
math (:mod:`edge_agent.delta`) per interface name and direction, and appends
``UsageReading`` / ``UsageGap`` CloudEvents to the buffer.
"""

from __future__ import annotations

import contextlib
import math
import os
import random
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
import msgspec
import structlog
from anyio.abc import TaskStatus

from protocol import KafkaRecord, UsageGap, UsageReading, encode_event

from ._exceptions import SnmpError
from .config import AgentConfig, TargetConfig
from .delta import (
    CounterReading,
    Delta,
    Gap,
    Track,
    advance,
    fail,
    is_stale,
    resume,
    uptime_continuous,
)
from .mapping import Direction, MappedInterface, map_interfaces
from .metrics import AgentMetrics
from .snmp import CounterSample, SnmpClient

__all__ = ["Poller", "TargetState"]

log = structlog.get_logger(component="edge_agent.poller")

Sink = Callable[[list[KafkaRecord]], Awaitable[Any]]

#: target -> "ifName direction" -> end of the last interval reported (Unix ms)
_Checkpoint = dict[str, dict[str, int]]
_checkpoint_decoder = msgspec.msgpack.Decoder(_Checkpoint)
_DIRECTIONS: dict[str, Direction] = {"in": "in", "out": "out"}


class TargetState:
    """What the poller remembers about one router between cycles."""

    def __init__(self, name: str) -> None:
        self.log = log.bind(target=name)  # every line about this router names it
        self.interfaces: dict[str, MappedInterface] | None = None  # by ifName
        self.discovered_at = -math.inf
        self.last_uptime_cs: int | None = None
        self.tracks: dict[tuple[str, Direction], Track] = {}  # (ifName, direction)
        self.consecutive_failures = 0
        self.next_attempt = -math.inf  # monotonic seconds; later while backed off
        self.last_error_kind: str | None = None
        self.last_success_ms: int | None = None
        self.skipped = 0


class Poller:
    """Polls ``config.targets`` through ``client`` and hands encoded events to ``sink``."""

    def __init__(
        self,
        config: AgentConfig,
        client: SnmpClient,
        sink: Sink,
        *,
        metrics: AgentMetrics | None = None,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        checkpoint: Path | None = None,
        before_checkpoint: Callable[[], None] | None = None,
    ) -> None:
        self.config = config
        self.client = client
        self.sink = sink
        self.metrics = metrics
        self._clock = clock
        self._monotonic = monotonic
        self._source = f"urn:resmon:agent:{config.agent_id}"
        self._limiter = anyio.CapacityLimiter(config.max_concurrency)
        self.states: dict[str, TargetState] = {t.name: TargetState(t.name) for t in config.targets}
        self.cycles = 0
        self._cycle_event: anyio.Event | None = None
        self._checkpoint = checkpoint
        self._before_checkpoint = before_checkpoint
        if checkpoint is not None:
            self._load_checkpoint(checkpoint)

    # -- scheduling ----------------------------------------------------------------

    def next_tick(self, now: float) -> float:
        """The next interval-aligned start time after ``now`` (wall clock seconds)."""
        interval = self.config.interval
        return (math.floor(now / interval) + 1) * interval

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Poll all targets once now, then at every aligned tick, until cancelled.

        A cycle belongs to a tick; the next one starts at the following tick
        (plus jitter), or at once if the cycle ended after it (a late cycle, not
        a skipped one). Only when a cycle runs past more than one tick (a slow
        sink or checkpoint: each target's poll is bounded by its deadline) are
        the ticks it overran skipped: logged as ``poll_cycle_overran`` and
        counted in ``resmon_agent_poll_ticks_missed_total``. The next poll
        bridges them.
        """
        task_status.started()
        interval = self.config.interval
        tick = math.floor(self._clock() / interval) * interval
        while True:
            started = self._clock()
            await self.poll_all()
            now = self._clock()
            tick += interval
            missed = max(0, math.floor((now - tick) / interval))
            if missed:
                log.warning(
                    "poll_cycle_overran",
                    seconds=round(now - started, 3),
                    interval=interval,
                    ticks_missed=missed,
                )
                if self.metrics:
                    self.metrics.poll_ticks_missed.inc(missed)
                tick += missed * interval
            elif tick - now > interval:  # the wall clock stepped back: align to it again
                tick = self.next_tick(now)
            if now < tick:
                await anyio.sleep(tick - now + random.uniform(0, self.config.jitter))
            else:
                await anyio.lowlevel.checkpoint()  # late: start at once

    async def poll_all(self) -> None:
        """One cycle: every target, concurrently, each within its deadline."""
        async with anyio.create_task_group() as tg:
            for target in self.config.targets:
                tg.start_soon(self._poll_and_store, target, name=f"poll {target.name}")
        self.cycles += 1
        if self._checkpoint is not None:
            self._save_checkpoint(self._checkpoint)
        if self._cycle_event is not None:
            self._cycle_event.set()
            self._cycle_event = None

    # -- restarts -------------------------------------------------------------------

    def _load_checkpoint(self, path: Path) -> None:
        """Resume every track that was reporting before a restart (see :func:`resume`)."""
        try:
            saved = _checkpoint_decoder.decode(path.read_bytes())
        except FileNotFoundError:
            return
        except (OSError, msgspec.DecodeError) as exc:
            # where the timelines ended is unknown: the time since is not reported as a gap
            log.warning("checkpoint_unreadable", path=str(path), error=str(exc))
            if self.metrics:
                self.metrics.checkpoint_errors.labels("read").inc()
            return
        for name, tracks in saved.items():
            state = self.states.get(name)
            if state is None:
                continue
            for key, last_end_ms in tracks.items():
                if_name, _, word = key.rpartition(" ")
                direction = _DIRECTIONS.get(word)
                if if_name and direction is not None:
                    state.tracks[(if_name, direction)] = resume(last_end_ms)

    def _save_checkpoint(self, path: Path) -> None:
        """Record where each track's reported timeline ends, after the events are durable.

        When they cannot be made durable (``before_checkpoint`` fails: an fsync
        error) the checkpoint is not advanced, so a restart reports the time
        since the last good one as a gap; logged and counted, and polling goes on.
        """
        if self._before_checkpoint is not None:
            try:
                self._before_checkpoint()
            except Exception as exc:
                log.error("checkpoint_skipped", path=str(path), error=str(exc))
                if self.metrics:
                    self.metrics.checkpoint_errors.labels("sync").inc()
                return
        data: _Checkpoint = {
            name: {
                f"{if_name} {direction}": track.last_end_ms
                for (if_name, direction), track in state.tracks.items()
                if track.last_end_ms is not None
            }
            for name, state in self.states.items()
        }
        tmp = path.with_suffix(".tmp")
        try:
            tmp.write_bytes(msgspec.msgpack.encode(data))
            os.replace(tmp, path)
        except OSError as exc:
            log.warning("checkpoint_failed", path=str(path), error=str(exc))
            if self.metrics:
                self.metrics.checkpoint_errors.labels("write").inc()
            with contextlib.suppress(OSError):
                tmp.unlink()

    async def wait_for_cycle(self, count: int) -> None:
        """Return once ``count`` cycles have completed (for the demo and tests)."""
        while self.cycles < count:
            self._cycle_event = self._cycle_event or anyio.Event()
            await self._cycle_event.wait()

    def status(self) -> dict[str, dict[str, Any]]:
        """Per target: state, failures in a row, last error kind, when it is tried next."""
        now = self._monotonic()
        out = {}
        for name, state in self.states.items():
            if state.next_attempt > now:
                word = "backoff"
            elif state.consecutive_failures:
                word = "failing"
            elif state.last_success_ms is None:
                word = "pending"
            else:
                word = "ok"
            out[name] = {
                "state": word,
                "consecutiveFailures": state.consecutive_failures,
                "lastErrorKind": state.last_error_kind,
                "lastSuccessMs": state.last_success_ms,
                "nextAttemptInS": round(max(0.0, state.next_attempt - now), 3),
                "skippedPolls": state.skipped,
            }
        return out

    def _state(self, target: TargetConfig) -> TargetState:
        state = self.states.get(target.name)
        if state is None:
            state = self.states[target.name] = TargetState(target.name)
        return state

    def _backoff(self, target: TargetConfig, state: TargetState) -> None:
        """Set when a failing target is tried next; report it in the metrics."""
        over = state.consecutive_failures - self.config.backoff_after_failures
        delay = 0.0
        if over >= 0:
            delay = min(self.config.interval * 2.0**over, self.config.backoff_max)
            state.next_attempt = self._monotonic() + delay
            state.log.info(
                "target_backed_off",
                consecutive=state.consecutive_failures,
                seconds=delay,
            )
        else:
            state.next_attempt = -math.inf
        if self.metrics:
            self.metrics.target_up.labels(target.name).set(0 if state.consecutive_failures else 1)
            self.metrics.target_backoff.labels(target.name).set(delay)

    async def _poll_and_store(self, target: TargetConfig) -> None:
        """Poll one target and store its events; an unexpected error fails this poll only."""
        try:
            await self._poll_and_store_once(target)
        except Exception as exc:  # a bug: this router's poll only, loudly; the others go on
            self._state(target).log.exception("poll_crashed", error_type=type(exc).__name__)
            error = SnmpError(f"internal error: {type(exc).__name__}", target=target.name)
            self._failed(target, error, kind="internal")
            self._backoff(target, self.states[target.name])

    async def _poll_and_store_once(self, target: TargetConfig) -> None:
        state = self._state(target)
        if state.next_attempt > self._monotonic():
            state.skipped += 1
            if self.metrics:
                self.metrics.polls_skipped.labels(target.name).inc()
            return
        async with self._limiter:
            started = self._monotonic()
            records: list[KafkaRecord] | None = None
            with anyio.move_on_after(self.config.effective_poll_deadline):
                records = await self.poll_target(target)
            if records is None:
                error = SnmpError(
                    f"poll exceeded its deadline of {self.config.effective_poll_deadline}s",
                    target=target.name,
                )
                records = self._failed(target, error, kind="deadline")
            if self.metrics:
                self.metrics.poll_seconds.labels(target.name).observe(self._monotonic() - started)
        self._backoff(target, state)
        if records:
            await self.sink(records)

    # -- one target ------------------------------------------------------------------

    async def poll_target(self, target: TargetConfig) -> list[KafkaRecord]:
        """Poll one router once; return the events to store. Never raises SnmpError."""
        state = self._state(target)
        if self.metrics:
            self.metrics.polls.labels(target.name).inc()
        try:
            if (
                state.interfaces is None
                or self._monotonic() - state.discovered_at >= self.config.rediscover_interval
            ):
                await self._discover(target, state)
            assert state.interfaces is not None
            if not state.interfaces:
                return []
            sample = await self._sample(target, state)
            if (
                state.last_uptime_cs is not None
                and state.last_success_ms is not None
                and not uptime_continuous(
                    state.last_uptime_cs,
                    state.last_success_ms,
                    sample.sys_uptime_cs,
                    sample.taken_ms,
                )
            ):
                # rebooted (perhaps during an outage, with sysUpTime now larger than
                # before): ifIndex may have been renumbered, so map again before using it
                state.log.info("router_rebooted")
                await self._discover(target, state)
                sample = await self._sample(target, state)
        except SnmpError as exc:
            return self._failed(target, exc, kind=exc.kind)
        except Exception as exc:  # a bug or library surprise: this router only, loudly
            state.log.exception("poll_crashed", error_type=type(exc).__name__)
            error = SnmpError(f"internal error: {type(exc).__name__}", target=target.name)
            return self._failed(target, error, kind="internal")
        state.last_uptime_cs = sample.sys_uptime_cs
        state.consecutive_failures = 0
        state.last_success_ms = sample.taken_ms
        return self._account(target, state, sample)

    async def _discover(self, target: TargetConfig, state: TargetState) -> None:
        rows = await self.client.walk_interfaces(target)
        mapped = map_interfaces(self.config.mapping, rows)
        state.interfaces = {m.if_name: m for m in mapped}
        state.discovered_at = self._monotonic()
        wanted = {(m.if_name, d) for m in mapped for d in m.directions}
        gone = [
            key
            for key, track in state.tracks.items()
            if key not in wanted and track.baseline is not None
        ]
        for key in gone:
            # no longer in the table (or no longer mapped): the time since its last
            # report is a gap if it comes back, never a silent hole
            last_end = state.tracks[key].last_end_ms
            state.tracks[key] = Track(None, last_end, "discontinuity")
        if gone:
            state.log.warning(
                "interfaces_unmapped",
                counters=[f"{name} {direction}" for name, direction in gone],
            )
            if self.metrics:
                self.metrics.counters_unmapped.labels(target.name).inc(len(gone))
        state.log.info("interfaces_discovered", interfaces=len(rows), mapped=len(mapped))

    async def _sample(self, target: TargetConfig, state: TargetState) -> CounterSample:
        assert state.interfaces is not None
        indexes = sorted({m.if_index for m in state.interfaces.values()})
        return await self.client.poll_counters(target, indexes)

    def _account(
        self, target: TargetConfig, state: TargetState, sample: CounterSample
    ) -> list[KafkaRecord]:
        assert state.interfaces is not None
        records: list[KafkaRecord] = []
        # tracks move on only once every event of the poll is encoded: an error part
        # way leaves them all at their baselines, so the next poll bridges this one
        updated: dict[tuple[str, Direction], Track] = {}
        stale = readings = 0
        for iface in state.interfaces.values():
            counters = sample.interfaces.get(iface.if_index)
            for direction in iface.directions:
                value = None
                if counters is not None:
                    value = counters.in_octets if direction == "in" else counters.out_octets
                reading = CounterReading(
                    value=value.value if value else None,
                    width=value.width if value else 64,
                    uptime_cs=sample.sys_uptime_cs,
                    at_ms=sample.taken_ms,
                    high_speed_mbps=(counters.high_speed_mbps if counters else None)
                    or iface.high_speed_mbps,
                    discontinuity_cs=counters.discontinuity_cs if counters else None,
                )
                key = (iface.if_name, direction)
                before = state.tracks.get(key, Track())
                stale += is_stale(before, reading)
                track, outcomes = advance(
                    before, reading, counters_restart_at_zero=target.counters_restart_at_zero
                )
                updated[key] = track
                for o in outcomes:
                    records.append(self._encode(target, iface, direction, o))
                    readings += type(o) is Delta
        state.tracks.update(updated)
        if self.metrics and readings:
            self.metrics.readings.inc(readings)  # once a poll, not once a reading
        if stale:
            # the agent's clock went back: the samples are dropped, the baselines kept
            state.log.warning(
                "samples_ignored",
                counters=stale,
                reason="the agent clock is behind the end of the reported timeline",
            )
            if self.metrics:
                self.metrics.samples_ignored.labels(target.name).inc(stale)
        return records

    def _failed(self, target: TargetConfig, error: SnmpError, *, kind: str) -> list[KafkaRecord]:
        state = self._state(target)
        state.consecutive_failures += 1
        state.last_error_kind = kind
        if self.metrics:
            self.metrics.poll_errors.labels(target.name, kind).inc()
        state.log.warning(
            "poll_failed",
            kind=kind,
            error=str(error),
            consecutive=state.consecutive_failures,
        )
        # the tracks keep their baselines: the next answer bridges this failure
        now_ms = int(self._clock() * 1000)
        records = []
        for (if_name, direction), track in list(state.tracks.items()):
            new_track, gap = fail(track, now_ms, detail=str(error))
            state.tracks[(if_name, direction)] = new_track
            iface = (state.interfaces or {}).get(if_name)
            if gap is not None and iface is not None:
                records.append(self._encode(target, iface, direction, gap))
        return records

    def _encode(
        self,
        target: TargetConfig,
        iface: MappedInterface,
        direction: Direction,
        outcome: Delta | Gap,
    ) -> KafkaRecord:
        payload: UsageReading | UsageGap
        if isinstance(outcome, Delta):
            payload = UsageReading(
                customer_id=iface.customer_id,
                resource_type=iface.resource_type,
                resource_key=iface.resource_key,
                value=outcome.value,
                unit="byte",
                start_ms=outcome.start_ms,
                end_ms=outcome.end_ms,
                kind="delta",
                source="snmp",
                tenant_id=self.config.tenant_id,
                device=target.name,
                interface=iface.if_name,
                direction=direction,
            )  # counted in resmon_agent_readings by the caller
        else:
            payload = UsageGap(
                customer_id=iface.customer_id,
                resource_type=iface.resource_type,
                resource_key=iface.resource_key,
                start_ms=outcome.start_ms,
                end_ms=outcome.end_ms,
                reason=outcome.reason,
                source="snmp",
                tenant_id=self.config.tenant_id,
                device=target.name,
                interface=iface.if_name,
                direction=direction,
                detail=outcome.detail or None,
            )
            if self.metrics:
                self.metrics.gaps.labels(outcome.reason).inc()
        return encode_event(payload, source=self._source)
