-- Idempotency keys of POST /api/metrics/ingest: the first canonical reading sent under
-- each caller eventId (scoped to tenant and customer in event_id, a hash of the three).
-- A retry is republished as exactly that reading (same CloudEvent id, same event time)
-- so the consumer's dedup drops it, however late it comes within the retention window;
-- the same eventId with a different payload is refused. Rows older than the retention
-- window are deleted by the hub's retention task, as the dedup records are.
CREATE TABLE ingest_keys (
    event_id      TEXT PRIMARY KEY,
    resource_key  TEXT NOT NULL,
    value         BIGINT NOT NULL,
    start_ms      BIGINT NOT NULL,
    end_ms        BIGINT NOT NULL,
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX idx_ingest_keys_created ON ingest_keys(created_at);
