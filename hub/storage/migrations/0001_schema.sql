-- resmon hub schema: the plan's seven tables plus tenants, customers and the
-- hub's bookkeeping (processed events, consumer offsets, dead letters, gaps).
-- Usage figures are exact integers in base units (bytes, requests, seconds);
-- catalog units (GB, hour) exist for display and cost only.

CREATE TABLE tenants (
    id          UUID PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE customers (
    id          TEXT PRIMARY KEY,            -- ISP account number, e.g. cust-0001
    tenant_id   UUID NOT NULL REFERENCES tenants(id),
    name        TEXT,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX idx_customers_tenant ON customers(tenant_id);

CREATE TABLE resource_catalogs (
    id             UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id      UUID NOT NULL REFERENCES tenants(id),
    resource_type  VARCHAR(50) NOT NULL,     -- bandwidth, storage, api_calls, cpu, memory
    resource_name  VARCHAR(100) NOT NULL,
    unit           VARCHAR(20) NOT NULL,     -- display/cost unit: GB, request, hour
    cost_per_unit  NUMERIC(10, 4),
    is_billable    BOOLEAN NOT NULL DEFAULT true,
    created_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (tenant_id, resource_name)
);
CREATE INDEX idx_resource_catalogs_tenant ON resource_catalogs(tenant_id);
CREATE INDEX idx_resource_catalogs_type ON resource_catalogs(resource_type);

CREATE TABLE customer_resources (
    id                   UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    customer_id          TEXT NOT NULL REFERENCES customers(id),
    resource_catalog_id  UUID NOT NULL REFERENCES resource_catalogs(id),
    resource_key         TEXT NOT NULL UNIQUE,  -- protocol resource_key: cust-0001/bandwidth
    name                 TEXT,                  -- tells apart two resources of one type
    subscription_id      UUID,
    kind                 VARCHAR(10) NOT NULL DEFAULT 'delta' CHECK (kind IN ('delta', 'level')),
    current_usage        BIGINT NOT NULL DEFAULT 0 CHECK (current_usage >= 0),  -- base units
    period_start         DATE,                  -- billing period current_usage belongs to
    limit_value          BIGINT CHECK (limit_value >= 0),  -- base units; NULL = unlimited
    warning_threshold    NUMERIC(5, 2) NOT NULL DEFAULT 80,   -- % of limit
    critical_threshold   NUMERIC(5, 2) NOT NULL DEFAULT 95,   -- % of limit
    status               VARCHAR(20) NOT NULL DEFAULT 'ACTIVE',
    auto_provisioned     BOOLEAN NOT NULL DEFAULT false,
    created_at           TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at           TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX idx_customer_resources_customer ON customer_resources(customer_id);
CREATE INDEX idx_customer_resources_status ON customer_resources(status);

CREATE TABLE usage_metrics (
    id                    UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    customer_resource_id  UUID NOT NULL REFERENCES customer_resources(id),
    event_id              TEXT NOT NULL,
    metric_start          TIMESTAMPTZ NOT NULL,
    metric_timestamp      TIMESTAMPTZ NOT NULL,   -- end of the interval
    metric_value          BIGINT NOT NULL,        -- exact, in metric_unit (a base unit)
    metric_unit           VARCHAR(20) NOT NULL,
    kind                  VARCHAR(10) NOT NULL,
    source                VARCHAR(50),
    metadata              JSONB,
    created_at            TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX idx_usage_metrics_customer_time ON usage_metrics(customer_resource_id, metric_timestamp);
CREATE INDEX idx_usage_metrics_time ON usage_metrics(metric_timestamp);

CREATE TABLE usage_aggregates (
    id                    UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    customer_resource_id  UUID NOT NULL REFERENCES customer_resources(id),
    period_type           VARCHAR(10) NOT NULL,   -- hour, day, week, month
    period_start          TIMESTAMPTZ NOT NULL,
    period_end            TIMESTAMPTZ NOT NULL,
    avg_usage             NUMERIC(38, 4),
    min_usage             BIGINT,
    max_usage             BIGINT,
    total_usage           BIGINT,
    cost                  NUMERIC(12, 2),
    created_at            TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (customer_resource_id, period_type, period_start)
);

CREATE TABLE alerts (
    id                    UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    customer_resource_id  UUID NOT NULL REFERENCES customer_resources(id),
    alert_type            VARCHAR(50) NOT NULL,   -- THRESHOLD_WARNING, THRESHOLD_CRITICAL, ANOMALY_DETECTED
    severity              VARCHAR(20) NOT NULL,   -- LOW, MEDIUM, HIGH, CRITICAL
    message               TEXT NOT NULL,
    current_value         NUMERIC(38, 9),         -- catalog unit
    threshold_value       NUMERIC(38, 9),         -- catalog unit
    unit                  VARCHAR(20),
    status                VARCHAR(20) NOT NULL DEFAULT 'ACTIVE'
                          CHECK (status IN ('ACTIVE', 'ACKNOWLEDGED', 'RESOLVED')),
    acknowledged_by       TEXT,
    acknowledged_at       TIMESTAMPTZ,
    resolved_by           TEXT,
    resolved_at           TIMESTAMPTZ,
    resolution            TEXT,                   -- recovered, escalated, manual, limit_removed
    created_at            TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX idx_alerts_status ON alerts(status);
CREATE INDEX idx_alerts_customer ON alerts(customer_resource_id);
-- one open threshold episode per resource at a time
CREATE UNIQUE INDEX uq_alerts_open_threshold ON alerts(customer_resource_id)
    WHERE status <> 'RESOLVED' AND alert_type LIKE 'THRESHOLD\_%';

CREATE TABLE cost_models (
    id              UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id       UUID NOT NULL REFERENCES tenants(id),
    model_name      VARCHAR(100) NOT NULL,
    billing_period  VARCHAR(20) NOT NULL,   -- monthly, yearly
    base_cost       NUMERIC(10, 2),
    overage_rate    NUMERIC(10, 4),
    is_active       BOOLEAN NOT NULL DEFAULT true,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE cost_forecasts (
    id                     UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    customer_resource_id   UUID NOT NULL REFERENCES customer_resources(id),
    forecast_period_start  DATE NOT NULL,
    forecast_period_end    DATE NOT NULL,
    predicted_usage        BIGINT,
    predicted_cost         NUMERIC(12, 2),
    confidence_level       NUMERIC(5, 2),
    created_at             TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- CloudEvent ids already applied: a replayed or re-sent event is dropped here.
CREATE TABLE processed_events (
    id            TEXT PRIMARY KEY,
    processed_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- Next Kafka offset to read, written in the same transaction as the data.
CREATE TABLE consumer_offsets (
    consumer_group  TEXT NOT NULL,
    topic           TEXT NOT NULL,
    partition       INTEGER NOT NULL,
    next_offset     BIGINT NOT NULL,
    updated_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer_group, topic, partition)
);

CREATE TABLE dead_letters (
    id              BIGSERIAL PRIMARY KEY,
    topic           TEXT NOT NULL,
    partition       INTEGER NOT NULL,
    kafka_offset    BIGINT NOT NULL,
    reason          TEXT NOT NULL,
    record_key      BYTEA,
    record_value    BYTEA,
    headers         JSONB,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (topic, partition, kafka_offset)
);

CREATE TABLE usage_gaps (
    id             UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    event_id       TEXT NOT NULL UNIQUE,
    customer_id    TEXT NOT NULL,
    resource_key   TEXT NOT NULL,
    resource_type  VARCHAR(50) NOT NULL,
    gap_start      TIMESTAMPTZ NOT NULL,
    gap_end        TIMESTAMPTZ NOT NULL,
    reason         VARCHAR(30) NOT NULL,
    source         VARCHAR(50),
    detail         TEXT,
    metadata       JSONB,
    created_at     TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX idx_usage_gaps_resource ON usage_gaps(resource_key, gap_start);
