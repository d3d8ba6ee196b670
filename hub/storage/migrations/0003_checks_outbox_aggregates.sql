-- Issue 4: streaming anomaly/forecast state on the resource, anomaly and forecast
-- episodes on alerts, the transactional outbox, incremental aggregates.

-- The actor's compact statistics (exponentially decayed mean / M2 of the
-- reading rate, or of the level), written in the batch transaction, so a
-- rebuilt actor continues exactly where the last committed batch left it.
ALTER TABLE customer_resources
    ADD COLUMN stat_weight   DOUBLE PRECISION NOT NULL DEFAULT 0,
    ADD COLUMN stat_mean     DOUBLE PRECISION NOT NULL DEFAULT 0,
    ADD COLUMN stat_m2       DOUBLE PRECISION NOT NULL DEFAULT 0,
    ADD COLUMN stat_last_ms  BIGINT NOT NULL DEFAULT 0,
    ADD COLUMN stat_points   INTEGER NOT NULL DEFAULT 0,
    ADD COLUMN stat_first_ms BIGINT NOT NULL DEFAULT 0,   -- first point of the period (gauge slope)
    ADD COLUMN stat_anchor   BIGINT NOT NULL DEFAULT 0;   -- the level at stat_first_ms

ALTER TABLE alerts
    ADD COLUMN z_score     DOUBLE PRECISION,
    ADD COLUMN forecast_at TIMESTAMPTZ,           -- when the limit is predicted to be reached
    ADD COLUMN confidence  NUMERIC(5, 2);         -- 0-100
-- one open anomaly episode and one open forecast episode per resource at a time
CREATE UNIQUE INDEX uq_alerts_open_anomaly ON alerts(customer_resource_id)
    WHERE status <> 'RESOLVED' AND alert_type = 'ANOMALY_DETECTED';
CREATE UNIQUE INDEX uq_alerts_open_forecast ON alerts(customer_resource_id)
    WHERE status <> 'RESOLVED' AND alert_type = 'FORECAST_LIMIT';

-- Side effects of a committed batch (alert CloudEvents, Redis updates), written in
-- the batch transaction and deleted once delivered; a crash in between leaves the
-- row for the next drain. Event ids are deterministic, so a re-delivery is idempotent.
CREATE TABLE hub_outbox (
    id          BIGSERIAL PRIMARY KEY,
    payload     BYTEA NOT NULL,                   -- msgspec JSON of hub.outbox.OutboxBatch
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- Aggregates are maintained incrementally: avg = total / sample_count; cost is
-- recomputed from the whole total with the price and unit factor stored beside it.
ALTER TABLE usage_aggregates
    ADD COLUMN sample_count BIGINT NOT NULL DEFAULT 0,
    ADD COLUMN cost_per_unit NUMERIC(10, 4),          -- catalog price applied
    ADD COLUMN unit_factor NUMERIC(38, 0),            -- base units per catalog unit
    ALTER COLUMN total_usage TYPE NUMERIC(38, 0),
    ALTER COLUMN cost TYPE NUMERIC(18, 4),
    ADD COLUMN updated_at TIMESTAMPTZ NOT NULL DEFAULT now();

-- usage_metrics partitioned by month (UTC) so retention drops whole partitions.
ALTER TABLE usage_metrics RENAME TO usage_metrics_unpartitioned;
ALTER INDEX usage_metrics_pkey RENAME TO usage_metrics_unpartitioned_pkey;
ALTER INDEX idx_usage_metrics_customer_time RENAME TO idx_usage_metrics_unpartitioned_ct;
ALTER INDEX idx_usage_metrics_time RENAME TO idx_usage_metrics_unpartitioned_t;

CREATE TABLE usage_metrics (
    id                    UUID NOT NULL DEFAULT gen_random_uuid(),
    customer_resource_id  UUID NOT NULL REFERENCES customer_resources(id),
    event_id              TEXT NOT NULL,
    metric_start          TIMESTAMPTZ NOT NULL,
    metric_timestamp      TIMESTAMPTZ NOT NULL,   -- end of the interval; the partition key
    metric_value          BIGINT NOT NULL,
    metric_unit           VARCHAR(20) NOT NULL,
    kind                  VARCHAR(10) NOT NULL,
    source                VARCHAR(50),
    metadata              JSONB,
    created_at            TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (id, metric_timestamp)
) PARTITION BY RANGE (metric_timestamp);
CREATE INDEX idx_usage_metrics_customer_time ON usage_metrics(customer_resource_id, metric_timestamp);
CREATE INDEX idx_usage_metrics_time ON usage_metrics(metric_timestamp);
-- catches a reading whose month has no partition yet (the hub creates them ahead)
CREATE TABLE usage_metrics_default PARTITION OF usage_metrics DEFAULT;

DO $$
DECLARE m timestamptz;
BEGIN
    FOR m IN SELECT DISTINCT date_trunc('month', metric_timestamp, 'UTC')
             FROM usage_metrics_unpartitioned LOOP
        EXECUTE format(
            'CREATE TABLE %I PARTITION OF usage_metrics FOR VALUES FROM (%L) TO (%L)',
            'usage_metrics_p' || to_char(m AT TIME ZONE 'UTC', 'YYYYMM'),
            m, m + interval '1 month');
    END LOOP;
END $$;
INSERT INTO usage_metrics SELECT * FROM usage_metrics_unpartitioned;
DROP TABLE usage_metrics_unpartitioned;
