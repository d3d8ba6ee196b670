"""The agent's Prometheus metrics, in a registry of its own (one per running agent)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from protocol import STAGE_BUCKETS

__all__ = ["AgentMetrics"]


class AgentMetrics:
    """Counters the poller, buffer and forwarder update; ``render()`` is ``/metrics``."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.polls = Counter("resmon_agent_polls", "Polls attempted", ["target"], registry=r)
        self.poll_errors = Counter(
            "resmon_agent_poll_errors", "Polls that failed", ["target", "kind"], registry=r
        )
        self.poll_seconds = Histogram(
            "resmon_agent_poll_seconds", "Time one target's poll took", ["target"], registry=r
        )
        self.polls_skipped = Counter(
            "resmon_agent_polls_skipped",
            "Polls not attempted because the target is backed off",
            ["target"],
            registry=r,
        )
        self.target_up = Gauge(
            "resmon_agent_target_up",
            "1 if the target's last poll succeeded",
            ["target"],
            registry=r,
        )
        self.target_backoff = Gauge(
            "resmon_agent_target_backoff_seconds",
            "Seconds a failing target is skipped before its next try (0 = not backed off)",
            ["target"],
            registry=r,
        )
        self.readings = Counter("resmon_agent_readings", "Usage readings produced", registry=r)
        self.gaps = Counter("resmon_agent_gaps", "Usage gaps produced", ["reason"], registry=r)
        self.samples_ignored = Counter(
            "resmon_agent_samples_ignored",
            "Counter samples dropped because the agent clock went back (baselines kept)",
            ["target"],
            registry=r,
        )
        self.counters_unmapped = Counter(
            "resmon_agent_counters_unmapped",
            "Counters (interface, direction) that left the interface table or the mapping",
            ["target"],
            registry=r,
        )
        self.poll_ticks_missed = Counter(
            "resmon_agent_poll_ticks_missed",
            "Aligned poll ticks skipped because a cycle ran past them",
            registry=r,
        )
        self.checkpoint_errors = Counter(
            "resmon_agent_checkpoint_errors",
            "Poller checkpoints not read, synced or written",
            ["op"],
            registry=r,
        )
        self.buffer_records = Gauge(
            "resmon_agent_buffer_records", "Records waiting in the disk buffer", registry=r
        )
        self.buffer_bytes = Gauge(
            "resmon_agent_buffer_bytes", "Bytes waiting in the disk buffer", registry=r
        )
        self.buffer_oldest_age = Gauge(
            "resmon_agent_buffer_oldest_age_seconds",
            "Age of the oldest record Kafka has not acknowledged yet (0 = none)",
            registry=r,
        )
        self.buffer_dropped = Counter(
            "resmon_agent_buffer_dropped", "Records dropped because the buffer was full", registry=r
        )
        self.buffer_corrupt = Counter(
            "resmon_agent_buffer_corrupt", "Torn or corrupt buffer frames skipped", registry=r
        )
        self.buffer_write_errors = Counter(
            "resmon_agent_buffer_write_errors",
            "Readings a failed buffer write (disk full, I/O error) did not keep; reported as gaps",
            registry=r,
        )
        self.buffer_unreported_spans = Gauge(
            "resmon_agent_buffer_unreported_spans",
            "Spans of readings the buffer did not keep, waiting to be written as gaps",
            registry=r,
        )
        self.buffer_corrupt_salvaged = Counter(
            "resmon_agent_buffer_corrupt_salvaged",
            "Corrupt buffer frames whose record could still be read: reported as gaps",
            registry=r,
        )
        self.buffer_sync_errors = Counter(
            "resmon_agent_buffer_sync_errors",
            "Buffer syncs (fsync) that failed in housekeeping; retried",
            registry=r,
        )
        self.housekeeping_errors = Counter(
            "resmon_agent_housekeeping_errors",
            "Gauge refreshes in housekeeping that failed (retried at the next period)",
            registry=r,
        )
        self.buffer_blocks = Counter(
            "resmon_agent_buffer_blocks",
            "Writes that waited for room in a full buffer (when_full: block)",
            registry=r,
        )
        self.buffer_blocked_seconds = Counter(
            "resmon_agent_buffer_blocked_seconds",
            "Seconds writes waited for room in a full buffer (when_full: block)",
            registry=r,
        )
        self.buffer_gaps_held = Counter(
            "resmon_agent_buffer_gaps_held",
            "Writes that held pending buffer_full gaps back because the buffer had no room",
            registry=r,
        )
        self.buffer_gaps_recovered = Counter(
            "resmon_agent_buffer_gaps_recovered",
            "Pending gap spans recovered from the gap journal at start (after a crash)",
            registry=r,
        )
        self.gap_journal_errors = Counter(
            "resmon_agent_gap_journal_errors",
            "Gap journal operations that failed (pending gaps kept in memory only)",
            ["op"],
            registry=r,
        )
        self.dead_lettered = Counter(
            "resmon_agent_dead_lettered",
            "Records Kafka refused for good, moved to the dead-letter file",
            ["error"],
            registry=r,
        )
        self.dead_letter_errors = Counter(
            "resmon_agent_dead_letter_errors",
            "Refused records that could not be written to the dead-letter file (lost)",
            registry=r,
        )
        # the buffer's own totals last added to the counters above
        self._seen: dict[str, float] = {}
        self.sent = Counter("resmon_agent_records_sent", "Records Kafka acknowledged", registry=r)
        self.send_errors = Counter(
            "resmon_agent_send_errors", "Batches Kafka did not acknowledge", registry=r
        )
        self.forward_errors = Counter(
            "resmon_agent_forward_errors",
            "Forwarding attempts that failed with an unexpected error (retried)",
            registry=r,
        )
        self.send_seconds = Histogram(
            "resmon_agent_send_seconds", "Time from send to Kafka acknowledgement", registry=r
        )

        self.reading_stage = Histogram(
            "resmon_agent_reading_stage_seconds",
            "Seconds a reading spent in a stage: buffered (poll done, its end_ms, -> appended "
            "to the disk buffer), acked (appended -> Kafka acknowledged it); observed once per "
            "poll batch (the readings of one poll share both times)",
            ["stage"],
            buckets=STAGE_BUCKETS,
            registry=r,
        )
        self.stage_buffered = self.reading_stage.labels("buffered")
        self.stage_acked = self.reading_stage.labels("acked")

    def observe_buffer_totals(self, **totals: float) -> None:
        """Add what the buffer's totals (``dropped=``, ``corrupt=``...) grew by since the last call.

        Each keyword names the counter attribute ``buffer_<name>``.
        """
        for name, total in totals.items():
            counter: Counter = getattr(self, f"buffer_{name}")
            counter.inc(max(0.0, total - self._seen.get(name, 0)))
            self._seen[name] = total

    def render(self) -> bytes:
        return generate_latest(self.registry)
