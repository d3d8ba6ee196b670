-- Issue 12, section 3: one stored forecast per resource and billing period, written
-- by the forecast refresh (hub/storage/forecasts.py) and replaced by the next one.
--
-- A row is either a forecast (method, usage and its 80 % / 95 % intervals, the
-- measured coverage) or "no forecast" (reason + reason_detail, every number NULL).
-- Its cost is the pricing of the predicted usage and of each interval bound; when
-- the resource's pricing cannot be determined, the cost columns are NULL and
-- cost_unavailable says why. Usage is in base units (bytes, requests,
-- milliseconds), costs in the currency column.

-- The plan link of migration 0021 (cost breakdowns): repeated here so that the
-- forecast prices a resource the way its bill does whichever of the two is applied
-- first; once one ran, the other's ADD COLUMN IF NOT EXISTS does nothing.
ALTER TABLE cost_models ADD COLUMN IF NOT EXISTS pricing JSONB;
ALTER TABLE customer_resources
    ADD COLUMN IF NOT EXISTS cost_model_id UUID REFERENCES cost_models(id),
    ADD COLUMN IF NOT EXISTS billing_start TIMESTAMPTZ;

-- Nothing wrote cost_forecasts before this migration; keep only the newest row of a
-- resource and period if anything did, so that the key below holds.
DELETE FROM cost_forecasts f
USING cost_forecasts newer
WHERE newer.customer_resource_id = f.customer_resource_id
  AND newer.forecast_period_start = f.forecast_period_start
  AND (newer.created_at, newer.id) > (f.created_at, f.id);

ALTER TABLE cost_forecasts
    ADD COLUMN method              TEXT,
    ADD COLUMN as_of               DATE,            -- the forecast's "today" (billing zone)
    ADD COLUMN used_to_date        BIGINT,
    ADD COLUMN usage_low_80        BIGINT,
    ADD COLUMN usage_high_80       BIGINT,
    ADD COLUMN usage_low_95        BIGINT,
    ADD COLUMN usage_high_95       BIGINT,
    ADD COLUMN cost_low_80         NUMERIC(38, 4),
    ADD COLUMN cost_high_80        NUMERIC(38, 4),
    ADD COLUMN cost_low_95         NUMERIC(38, 4),
    ADD COLUMN cost_high_95        NUMERIC(38, 4),
    ADD COLUMN currency            CHAR(3),
    ADD COLUMN cost_unavailable    TEXT,
    ADD COLUMN coverage_80         NUMERIC(5, 2),   -- measured, percent (confidence_level: 95 %)
    ADD COLUMN backtest_origins    INTEGER,
    ADD COLUMN limit_value         BIGINT,          -- the limit the probability refers to
    ADD COLUMN probability_above_limit NUMERIC(5, 4),
    ADD COLUMN reason              TEXT,
    ADD COLUMN reason_detail       TEXT,
    ADD COLUMN computed_at         TIMESTAMPTZ NOT NULL DEFAULT now(),
    ADD CONSTRAINT cost_forecasts_resource_period UNIQUE (customer_resource_id, forecast_period_start),
    ADD CONSTRAINT cost_forecasts_answer CHECK (reason IS NULL OR predicted_usage IS NULL),
    ADD CONSTRAINT cost_forecasts_probability
        CHECK (probability_above_limit BETWEEN 0 AND 1);
