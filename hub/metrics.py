"""The hub's Prometheus metrics, in a registry of its own (several hubs can share a process)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from protocol import STAGE_BUCKETS

__all__ = ["STAGE_SAMPLES", "HubMetrics"]

#: readings per batch whose per-reading stages are observed, spread evenly over the
#: batch: an observation costs a few microseconds, too much for every reading at
#: tens of thousands a second; the per-batch stages are observed once per batch
STAGE_SAMPLES = 32


class HubMetrics:
    """Counters and timings served at ``GET /metrics``."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.readings = Counter(
            "resmon_hub_readings_consumed", "Usage readings applied to totals", registry=r
        )
        self.duplicates = Counter(
            "resmon_hub_duplicates_dropped", "Events dropped because their id was seen", registry=r
        )
        self.dead_letters = Counter(
            "resmon_hub_dead_letters", "Records written to dead_letters", registry=r
        )
        self.tenant_refused = Counter(
            "resmon_hub_tenant_refused",
            "Kafka events dead-lettered for their tenant (tenant_mismatch, unknown_tenant)",
            ["reason"],
            registry=r,
        )
        self.gaps = Counter("resmon_hub_usage_gaps", "Usage gaps recorded", registry=r)
        self.late = Counter(
            "resmon_hub_late_readings",
            "Readings of an earlier billing period (not counted)",
            registry=r,
        )
        self.alerts = Counter(
            "resmon_hub_alerts", "Alert transitions", ["alert_type", "status"], registry=r
        )
        self.provisioned = Counter(
            "resmon_hub_resources_auto_provisioned", "Unknown resources created", registry=r
        )
        self.batches_fenced = Counter(
            "resmon_hub_batches_fenced",
            "Batches dropped because another hub instance had committed past their start",
            registry=r,
        )
        self.batches_isolated = Counter(
            "resmon_hub_batches_isolated",
            "Batches PostgreSQL refused, split to dead-letter the refused record(s)",
            registry=r,
        )
        self.offset_resets = Counter(
            "resmon_hub_offset_resets",
            "Partitions whose stored offset lay outside the broker's log, resumed from its start",
            ["topic", "partition"],
            registry=r,
        )
        self.storage_failures = Counter(
            "resmon_hub_storage_failures",
            "PostgreSQL failures a background loop survived and retried (reconnecting)",
            ["component"],
            registry=r,
        )
        self.auth_refused = Counter(
            "resmon_hub_api_auth_refused",
            "REST requests refused for their API key (missing, malformed, unknown, revoked, "
            "expired, scope, session: a bad dashboard cookie, csrf: a change without its token)",
            ["reason"],
            registry=r,
        )
        self.batch_failures = Counter(
            "resmon_hub_batch_failures", "Batches rolled back and retried", registry=r
        )
        self.fetch_failures = Counter(
            "resmon_hub_fetch_failures",
            "Kafka fetches that failed and were retried after a backoff",
            registry=r,
        )
        self.position_resets = Counter(
            "resmon_hub_fetch_position_resets",
            "Fetch positions found outside the broker's log while consuming (re-read from the "
            "offset PostgreSQL holds, or from the log start if that is outside too)",
            ["topic", "partition"],
            registry=r,
        )
        self.batches_realigned = Counter(
            "resmon_hub_batches_realigned",
            "Batches dropped because a partition's records did not continue from its stored "
            "offset (fetched before a seek); re-read from that offset",
            registry=r,
        )
        self.unreadable_records = Counter(
            "resmon_hub_unreadable_records",
            "Records the Kafka client could not parse (a header name that is not UTF-8), "
            "dead-lettered without their bytes",
            registry=r,
        )
        self.kafka_commit_failures = Counter(
            "resmon_hub_kafka_commit_failures",
            "Kafka offset commits that failed after a PostgreSQL commit (PostgreSQL's offsets "
            "still hold)",
            registry=r,
        )
        self.outbox_left_at_stop = Counter(
            "resmon_hub_outbox_left_at_stop",
            "Outbox rows a stop could not deliver within its grace period (the next drain does)",
            registry=r,
        )
        self.outbox_undecodable = Counter(
            "resmon_hub_outbox_undecodable",
            "Outbox rows whose payload could not be decoded (left in hub_outbox, skipped)",
            registry=r,
        )
        self.side_effect_failures = Counter(
            "resmon_hub_side_effect_failures",
            "Redis updates or alert publishes that failed after a commit",
            ["target"],
            registry=r,
        )
        self.ingested = Counter(
            "resmon_hub_http_ingested", "Events accepted by POST /api/metrics/ingest", registry=r
        )
        self.ingest_rounded = Counter(
            "resmon_hub_http_ingest_rounded",
            "Ingested values rounded to a whole base unit (not sent with ?strict=true)",
            registry=r,
        )
        self.batch_seconds = Histogram(
            "resmon_hub_batch_commit_seconds",
            "Time to process and commit one batch",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
            registry=r,
        )
        self.change_overflows = Counter(
            "resmon_hub_resource_change_overflows",
            "Times resource-change notices came faster than they were applied: every actor "
            "was reloaded instead",
            registry=r,
        )
        self.cost_samples_unbilled = Counter(
            "resmon_hub_cost_samples_unbilled",
            "Bandwidth time or rows a 95th-percentile bill left out: no_data and over_speed "
            "gaps, duplicate samples, rows without a direction (counted per computation)",
            ["reason"],
            registry=r,
        )
        self.cost_close_failures = Counter(
            "resmon_hub_cost_close_failures",
            "Closed periods whose bill could not be computed (bad cost model or samples)",
            registry=r,
        )
        # forecasts (hub.storage.forecasts): the scheduled and on-demand refresh
        self.forecasts_made = Counter(
            "resmon_hub_forecasts_made", "End-of-period forecasts stored", registry=r
        )
        self.forecasts_none = Counter(
            "resmon_hub_forecasts_none",
            "Resources answered with no forecast, by reason",
            ["reason"],
            registry=r,
        )
        self.forecast_cost_unavailable = Counter(
            "resmon_hub_forecast_cost_unavailable",
            "Forecasts stored without a cost because the resource's pricing is undetermined",
            registry=r,
        )
        self.forecast_failures = Counter(
            "resmon_hub_forecast_failures",
            "Forecasts that failed: one resource (scope=resource) or a whole refresh (refresh)",
            ["scope"],
            registry=r,
        )
        self.forecast_alerts = Counter(
            "resmon_hub_forecast_alerts",
            "Stored-forecast FORECAST_LIMIT alerts raised (status=active) or resolved",
            ["status"],
            registry=r,
        )
        self.recommendations = Counter(
            "resmon_hub_recommendations",
            "Optimization recommendations the job created (new ids), per kind",
            ["kind"],
            registry=r,
        )
        self.recommend_failures = Counter(
            "resmon_hub_recommend_failures",
            "Resources (reason=resource) or catalog plans (reason=plan) the recommendation "
            "job skipped because their cost model or usage was refused",
            ["reason"],
            registry=r,
        )
        self.actors = Gauge("resmon_hub_actors", "Live resource actors", registry=r)
        self.consumer_lag = Gauge(
            "resmon_hub_consumer_lag",
            "Records of the usage topic not yet consumed, per assigned partition (after a batch)",
            ["partition"],
            registry=r,
        )
        self.api_seconds = Histogram(
            "resmon_hub_api_request_seconds",
            "Time to answer a REST request, by method, route and status (streams excluded)",
            ["method", "route", "status"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
            registry=r,
        )
        self.stream_clients = Gauge(
            "resmon_hub_stream_clients", "Clients connected to GET /api/stream", registry=r
        )
        self.stream_events = Counter(
            "resmon_hub_stream_events_sent",
            "Server-sent events written to /api/stream clients, per event type",
            ["type"],
            registry=r,
        )
        self.rate_limited = Counter(
            "resmon_hub_api_rate_limited",
            "Requests refused with 429: the key's budget (a scope, or key) was used up",
            ["budget"],
            registry=r,
        )
        self.rate_limit_unavailable = Counter(
            "resmon_hub_api_rate_limit_unavailable",
            "Requests let through unlimited because Redis could not count them (fail open)",
            registry=r,
        )
        self.reading_stage = Histogram(
            "resmon_hub_reading_stage_seconds",
            "Seconds a reading spent in a stage on its way to an alert: buffered (poll done "
            "-> appended to the agent's disk buffer), sent (-> the Kafka record timestamp), "
            "fetched (-> fetched by the hub), decided (-> its actor decided), committed (-> "
            "PostgreSQL commit), published (-> the batch's alerts published); poll_to_commit "
            "is the whole way to the commit. Per-reading stages are sampled (up to "
            f"{STAGE_SAMPLES} readings a batch), per-batch ones observed once a batch; "
            "buffered, sent and fetched compare clocks of different hosts",
            ["stage"],
            buckets=STAGE_BUCKETS,
            registry=r,
        )
        self._stage = {
            name: self.reading_stage.labels(name)
            for name in (
                "buffered", "sent", "fetched", "decided", "committed", "published",
                "poll_to_commit",
            )
        }  # fmt: skip

    def observe_stage(self, stage: str, seconds: float) -> None:
        """One observation of a per-batch stage (``decided``, ``committed``, ``published``)."""
        self._stage[stage].observe(seconds)

    def observe_reading(
        self,
        end_ms: int,
        buffered_ms: int | None,
        broker_ms: int | None,
        fetched_ms: int,
        committed_ms: int,
    ) -> None:
        """The per-reading stages of one (sampled) reading, from its times in ms.

        ``buffered_ms`` is the agent's ``ce_resmonbuffered`` stamp (None without
        it), ``broker_ms`` the Kafka record timestamp (None when the record has none).
        """
        st = self._stage
        if buffered_ms is not None:
            st["buffered"].observe((buffered_ms - end_ms) / 1000)
            if broker_ms is not None:
                st["sent"].observe((broker_ms - buffered_ms) / 1000)
        if broker_ms is not None:
            st["fetched"].observe((fetched_ms - broker_ms) / 1000)
        st["poll_to_commit"].observe((committed_ms - end_ms) / 1000)

    def render(self) -> bytes:
        return bytes(generate_latest(self.registry))
