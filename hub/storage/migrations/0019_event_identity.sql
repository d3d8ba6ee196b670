-- Dedup identity becomes (CloudEvents source, id) on the Kafka path, as the CloudEvents
-- spec defines it. Until now processed_events was keyed on (id, event_at) alone, so two
-- producers that happened to use one id for events of the same time lost the second
-- one's usage, silently.
--
-- Key representation: a 16-byte BLAKE2b digest of source and id (see
-- hub.storage.batch.event_key), with the event time as before: PRIMARY KEY (event_key,
-- event_at), partitioned by month of event_at as in 0012. One row is written per
-- reading, so the index is what grows and what every claim probes. Measured on 400,000
-- random ids with 50 sources: the (id, event_at) index took 89 bytes a row, a composite
-- (source, id, event_at) 124, the digest 65, and claiming was no slower (the digest
-- costs under 1 us a reading in Python). The digest is fixed-width whatever the length
-- of the source or id, and a 128-bit digest makes an accidental collision negligible
-- (~10^-15 after 10^12 events).
--
-- Keys claimed before this migration cannot be converted: they hold the id only, and
-- the source is stored nowhere else (usage_metrics.source and usage_gaps.source name
-- the data's origin, e.g. "snmp", not the CloudEvents source; the agent id is not in
-- the rows either). So the old table is kept, read-only, as processed_events_legacy,
-- and this migration records in dedup_cutover the latest event time it can hold
-- (the migration's time, or a later event time if a reading from a clock ahead was
-- claimed). An event whose time is at or before that cutover is also looked up there
-- by (id, event_at), so a replay across the upgrade counts once, as before it. The
-- price: an event of a time before the cutover that arrives for the first time after
-- the upgrade, from another source but with an id already claimed, is still dropped
-- as a duplicate, as it was before. Events after the cutover never touch the legacy
-- table. The legacy partitions are dropped by retention like the new ones; once the
-- cutover is older than the retention horizon every event it could match is refused
-- as expired anyway. On a new database the legacy table is empty and no cutover is
-- recorded: the lookup never runs.
--
-- usage_gaps: UNIQUE (event_id) becomes UNIQUE (event_source, event_id); usage_metrics
-- and usage_gaps record the event's source beside its id (NULL for rows written before
-- this migration), so the rows name their event completely and a later re-keying can
-- be computed from them.
--
-- Hubs of older versions write processed_events by the old columns and fail every
-- batch (logged and counted as batch failures, nothing applied) once this has run:
-- stop all hubs of a group before upgrading.

ALTER TABLE processed_events RENAME TO processed_events_legacy;
ALTER INDEX processed_events_pkey RENAME TO processed_events_legacy_pkey;

-- the partitions and their indexes keep their names through a rename: move them out
-- of the way of the new table's processed_events_pYYYYMM / _default
DO $$
DECLARE part record;
        idx record;
BEGIN
    FOR part IN SELECT c.oid, c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
                WHERE i.inhparent = 'processed_events_legacy'::regclass
    LOOP
        FOR idx IN SELECT c.relname FROM pg_index x JOIN pg_class c ON c.oid = x.indexrelid
                   WHERE x.indrelid = part.oid
        LOOP
            EXECUTE format('ALTER INDEX %I RENAME TO %I', idx.relname,
                           regexp_replace(idx.relname, '^processed_events_', 'processed_events_legacy_'));
        END LOOP;
        EXECUTE format('ALTER TABLE %I RENAME TO %I', part.relname,
                       regexp_replace(part.relname, '^processed_events_', 'processed_events_legacy_'));
    END LOOP;
END $$;

CREATE TABLE processed_events (
    event_key     BYTEA NOT NULL CHECK (octet_length(event_key) = 16),  -- digest of (source, id)
    event_at      TIMESTAMPTZ NOT NULL,   -- end of the event's interval; the partition key
    processed_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (event_key, event_at)
) PARTITION BY RANGE (event_at);
-- catches an event whose month has no partition yet (the hub creates them ahead)
CREATE TABLE processed_events_default PARTITION OF processed_events DEFAULT;

-- at most one row: events at or before legacy_until are also looked up by id alone in
-- processed_events_legacy
CREATE TABLE dedup_cutover (
    only_row      BOOLEAN PRIMARY KEY DEFAULT true CHECK (only_row),
    legacy_until  TIMESTAMPTZ NOT NULL,
    recorded_at   TIMESTAMPTZ NOT NULL DEFAULT now()
);
-- every legacy row ends at or before now() or is one of the (few) ending later, which
-- partition pruning finds without scanning the past months
INSERT INTO dedup_cutover (legacy_until)
SELECT GREATEST(now(), (SELECT max(event_at) FROM processed_events_legacy WHERE event_at > now()))
WHERE EXISTS (SELECT 1 FROM processed_events_legacy);

ALTER TABLE usage_metrics ADD COLUMN event_source TEXT;
ALTER TABLE usage_gaps ADD COLUMN event_source TEXT;
ALTER TABLE usage_gaps DROP CONSTRAINT usage_gaps_event_id_key;
ALTER TABLE usage_gaps ADD CONSTRAINT usage_gaps_event_source_event_id_key
    UNIQUE (event_source, event_id);
