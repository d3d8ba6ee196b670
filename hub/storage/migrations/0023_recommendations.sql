-- Issue 12, section 4: cost optimization recommendations.
--
-- A plan may name the catalog entry it is for (its resource type and unit) and the
-- limit that comes with it: such plans are what a resize recommendation chooses from.
ALTER TABLE cost_models
    ADD COLUMN resource_catalog_id UUID REFERENCES resource_catalogs(id),
    ADD COLUMN limit_value BIGINT CHECK (limit_value >= 0);  -- base units; NULL: none

-- One recommendation per deterministic id (hub.costs.recommend.recommendation_id): the
-- daily job refreshes its savings and evidence and keeps its status, so the same advice
-- is neither duplicated nor re-opened once applied or dismissed.
CREATE TABLE recommendations (
    id                    UUID PRIMARY KEY,
    customer_id           TEXT NOT NULL REFERENCES customers(id),
    customer_resource_id  UUID NOT NULL REFERENCES customer_resources(id),
    kind                  VARCHAR(30) NOT NULL,
    direction             VARCHAR(10) NOT NULL DEFAULT '',
    target_cost_model_id  UUID REFERENCES cost_models(id),
    monthly_savings       NUMERIC NOT NULL,   -- rounded to the currency's minor unit
    currency              CHAR(3) NOT NULL,
    effort                VARCHAR(10) NOT NULL,
    description           TEXT NOT NULL,
    evidence              JSONB NOT NULL,
    status                VARCHAR(10) NOT NULL DEFAULT 'open'
                          CHECK (status IN ('open', 'applied', 'dismissed')),
    status_by             TEXT,            -- who applied or dismissed it
    status_at             TIMESTAMPTZ,     -- when
    reason                TEXT,            -- why it was dismissed
    first_seen            TIMESTAMPTZ NOT NULL DEFAULT now(),
    last_seen             TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX idx_recommendations_customer ON recommendations(customer_id, status);

-- Every change of a recommendation: created by the job, applied, dismissed.
CREATE TABLE recommendation_audit (
    id                 BIGSERIAL PRIMARY KEY,
    recommendation_id  UUID NOT NULL REFERENCES recommendations(id),
    action             VARCHAR(20) NOT NULL CHECK (action IN ('created', 'applied', 'dismissed')),
    actor              TEXT NOT NULL,
    reason             TEXT,
    details            JSONB NOT NULL DEFAULT '{}',
    at                 TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX idx_recommendation_audit_rec ON recommendation_audit(recommendation_id);
