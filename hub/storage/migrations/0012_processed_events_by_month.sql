-- processed_events partitioned by the month (UTC) of each event's interval end, the
-- same months as usage_metrics, so retention drops the dedup records with the raw rows
-- instead of letting the table grow forever.
--
-- The key is (id, event_at): a redelivered event has the same interval end, so it lands
-- in the same partition and conflicts there. The hub refuses (dead-letters) events
-- older than the retention horizon, whose dedup records may be gone.
--
-- Existing ids get their event's end from usage_metrics or usage_gaps. Ids with neither
-- (readings dead-lettered after they were claimed) are not carried over: a redelivery
-- of one is judged again.
ALTER TABLE processed_events RENAME TO processed_events_unpartitioned;
ALTER INDEX processed_events_pkey RENAME TO processed_events_unpartitioned_pkey;

CREATE TABLE processed_events (
    id            TEXT NOT NULL,
    event_at      TIMESTAMPTZ NOT NULL,   -- end of the event's interval; the partition key
    processed_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (id, event_at)
) PARTITION BY RANGE (event_at);
-- catches an event whose month has no partition yet (the hub creates them ahead)
CREATE TABLE processed_events_default PARTITION OF processed_events DEFAULT;

CREATE TEMPORARY TABLE processed_events_carried ON COMMIT DROP AS
SELECT DISTINCT ON (pe.id) pe.id, coalesce(um.metric_timestamp, ug.gap_end) AS event_at,
       pe.processed_at
FROM processed_events_unpartitioned pe
LEFT JOIN usage_metrics um ON um.event_id = pe.id
LEFT JOIN usage_gaps ug ON ug.event_id = pe.id
WHERE coalesce(um.metric_timestamp, ug.gap_end) IS NOT NULL
ORDER BY pe.id;

DO $$
DECLARE m timestamptz;
BEGIN
    FOR m IN SELECT DISTINCT date_trunc('month', event_at, 'UTC') FROM processed_events_carried
    LOOP
        EXECUTE format(
            'CREATE TABLE %I PARTITION OF processed_events FOR VALUES FROM (%L) TO (%L)',
            'processed_events_p' || to_char(m AT TIME ZONE 'UTC', 'YYYYMM'),
            m, m + interval '1 month');
    END LOOP;
END $$;
INSERT INTO processed_events (id, event_at, processed_at)
SELECT id, event_at, processed_at FROM processed_events_carried;
DROP TABLE processed_events_unpartitioned;
