-- Issue 12, section 2: what a resource is billed by, and the stored bill of each
-- closed period.
--
-- A plan (cost_models row) may carry its full price model as JSON (tiers, packages,
-- included quota, 95th percentile; the format of docs/costs.md). Without it the plan
-- is its base cost plus its overage rate above the resource's limit.
ALTER TABLE cost_models ADD COLUMN pricing JSONB;

-- The plan a resource is billed on (NULL: the catalog's cost_per_unit for every unit),
-- when its billing began (NULL: it is billed for whole periods; inside a period the
-- base cost is prorated by the exact duration ratio), and the speed of its interface
-- (bit/s; NULL: unknown), above which a bandwidth sample is a counter glitch.
ALTER TABLE customer_resources
    ADD COLUMN cost_model_id UUID REFERENCES cost_models(id),
    ADD COLUMN billing_start TIMESTAMPTZ,
    ADD COLUMN speed_bps BIGINT CHECK (speed_bps > 0);

-- The breakdown of one resource for one closed billing period, as served. For a
-- monthly period it is authoritative: the month bucket's usage_aggregates.cost is set
-- to its total in the same transaction. A reading that arrives later moves the
-- bucket's updated_at past computed_at, and the next close recomputes the period.
CREATE TABLE cost_breakdowns (
    id                    UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    customer_resource_id  UUID NOT NULL REFERENCES customer_resources(id),
    period_start          TIMESTAMPTZ NOT NULL,
    period_end            TIMESTAMPTZ NOT NULL,
    billing_period        VARCHAR(10) NOT NULL,
    currency              CHAR(3) NOT NULL,
    total                 NUMERIC(38, 4) NOT NULL,
    lines                 JSONB NOT NULL,
    rule                  TEXT NOT NULL,
    inputs                JSONB NOT NULL,
    breakdown             JSONB NOT NULL,      -- the whole hub.costs.Breakdown
    computed_at           TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (customer_resource_id, period_start)
);
