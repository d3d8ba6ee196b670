-- An actor's statistics count every reading of its resource since it was created
-- (stat_points). As INTEGER the count ended at 2^31 - 1: the next reading's batch was
-- refused ("integer out of range") and, once isolated, every reading of that resource
-- was dead-lettered. BIGINT holds a count no resource reaches. The other counters of
-- customer_resources (current_usage, total_version, the stat_* times) are BIGINT already;
-- the INTEGER columns left in the schema hold Kafka partition numbers (int32 in Kafka
-- itself), HTTP status codes, attempt counts bounded by a delivery deadline and
-- per-hour message counts.
ALTER TABLE customer_resources ALTER COLUMN stat_points TYPE BIGINT;
