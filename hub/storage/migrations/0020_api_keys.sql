-- API keys of the REST API, one tenant each. Only a keyed hash of a key is kept
-- (HMAC-SHA-256 under RESMON_API_KEY_SECRET); the key itself is shown once, when
-- it is created. customer_ids NULL = every customer of the tenant.
CREATE TABLE api_keys (
    id            UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id     UUID NOT NULL REFERENCES tenants(id),
    name          TEXT NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    key_hash      TEXT NOT NULL UNIQUE,
    scopes        TEXT[] NOT NULL
                  CHECK (cardinality(scopes) > 0
                         AND scopes <@ ARRAY['read', 'write', 'ingest', 'admin']),
    customer_ids  TEXT[] CHECK (customer_ids IS NULL OR cardinality(customer_ids) > 0),
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    expires_at    TIMESTAMPTZ,
    revoked_at    TIMESTAMPTZ,
    last_used_at  TIMESTAMPTZ,
    -- an admin key manages every key of its tenant: it cannot be a customer's key
    CHECK (customer_ids IS NULL OR NOT 'admin' = ANY(scopes))
);
CREATE INDEX idx_api_keys_tenant ON api_keys(tenant_id, created_at);
