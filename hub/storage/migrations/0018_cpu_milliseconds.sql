-- CPU time is counted in milliseconds (it was whole seconds), so that callers can
-- send CPU time finer than a second. Every stored figure of a cpu resource in the
-- base unit is multiplied by 1000, exactly; figures in a catalog unit (alerts'
-- current and threshold values, which carry their own unit) and costs do not
-- change. A cpu resource is one whose resource key's type is cpu (customer/cpu or
-- customer/cpu/name): the type its readings were checked against.
--
-- Stop every hub before this runs (an older hub would go on writing seconds); the
-- check constraint at the end refuses raw cpu rows in seconds from one left running.

-- A figure past 2^63-1 / 1000 has no BIGINT in milliseconds: refuse, naming it,
-- rather than fail on "bigint out of range" somewhere in the middle.
DO $$
DECLARE
    cap CONSTANT bigint := 9223372036854775;  -- floor((2^63 - 1) / 1000)
    bad text;
BEGIN
    SELECT format('customer_resources %s: current_usage %s, limit_value %s, stat_anchor %s',
                  resource_key, current_usage, limit_value, stat_anchor) INTO bad
    FROM customer_resources
    WHERE split_part(resource_key, '/', 2) = 'cpu'
      AND (current_usage > cap OR limit_value > cap OR stat_anchor > cap)
    LIMIT 1;
    IF bad IS NULL THEN
        SELECT format('usage_metrics event %s: metric_value %s second', event_id, metric_value)
        INTO bad FROM usage_metrics WHERE metric_unit = 'second' AND metric_value > cap LIMIT 1;
    END IF;
    IF bad IS NULL THEN
        SELECT format('usage_aggregates %s %s of %s: min %s, max %s', a.period_type,
                      a.period_start, cr.resource_key, a.min_usage, a.max_usage) INTO bad
        FROM usage_aggregates a JOIN customer_resources cr ON cr.id = a.customer_resource_id
        WHERE split_part(cr.resource_key, '/', 2) = 'cpu'
          AND (a.min_usage > cap OR a.max_usage > cap)
        LIMIT 1;
    END IF;
    IF bad IS NULL THEN
        SELECT format('cost_forecasts %s of %s: predicted_usage %s', f.forecast_period_start,
                      cr.resource_key, f.predicted_usage) INTO bad
        FROM cost_forecasts f JOIN customer_resources cr ON cr.id = f.customer_resource_id
        WHERE split_part(cr.resource_key, '/', 2) = 'cpu' AND f.predicted_usage > cap
        LIMIT 1;
    END IF;
    IF bad IS NULL AND to_regclass('ingest_keys') IS NOT NULL THEN
        EXECUTE 'SELECT format(''ingest_keys %s of %s: value %s'', event_id, resource_key, value)
                 FROM ingest_keys WHERE split_part(resource_key, ''/'', 2) = ''cpu''
                   AND value > $1 LIMIT 1' INTO bad USING cap;
    END IF;
    IF bad IS NOT NULL THEN
        RAISE EXCEPTION 'CPU seconds too large to count in milliseconds (more than % s): %; '
            'correct or delete that row, then start the hub again', cap, bad
            USING ERRCODE = 'numeric_value_out_of_range';
    END IF;
END $$;

-- The period total, the limit, and the actor's statistics: the mean of the reading
-- rate (per second) scales by 1000, its M2 (a sum of squares) by 1000^2, the gauge
-- anchor by 1000. A new total_version makes an actor still holding seconds reload.
UPDATE customer_resources SET
    current_usage = current_usage * 1000,
    limit_value = limit_value * 1000,
    stat_mean = stat_mean * 1000,
    stat_m2 = stat_m2 * 1000000,
    stat_anchor = stat_anchor * 1000,
    total_version = total_version + 1,
    updated_at = now()
WHERE split_part(resource_key, '/', 2) = 'cpu';

-- Raw readings say their unit.
UPDATE usage_metrics SET metric_value = metric_value * 1000, metric_unit = 'millisecond'
WHERE metric_unit = 'second';

-- Buckets: sums, extremes and the unit factor scale together, so cost
-- (round(total / unit_factor * cost_per_unit, 4)) is the same number; the average is
-- recomputed from the exact total as the next upsert would (the stored one was
-- rounded to 0.0001 s).
UPDATE usage_aggregates a SET
    min_usage = a.min_usage * 1000,
    max_usage = a.max_usage * 1000,
    total_usage = a.total_usage * 1000,
    avg_usage = CASE WHEN a.sample_count > 0
                     THEN round(a.total_usage * 1000 / a.sample_count, 4)
                     ELSE a.avg_usage * 1000 END,
    unit_factor = a.unit_factor * 1000
FROM customer_resources cr
WHERE cr.id = a.customer_resource_id AND split_part(cr.resource_key, '/', 2) = 'cpu';

UPDATE cost_forecasts f SET predicted_usage = f.predicted_usage * 1000
FROM customer_resources cr
WHERE cr.id = f.customer_resource_id AND split_part(cr.resource_key, '/', 2) = 'cpu'
  AND f.predicted_usage IS NOT NULL;

-- Idempotency keys hold the first reading's value in base units: a retry after the
-- upgrade is compared (and republished) in milliseconds.
DO $$
BEGIN
    IF to_regclass('ingest_keys') IS NOT NULL THEN
        UPDATE ingest_keys SET value = value * 1000 WHERE split_part(resource_key, '/', 2) = 'cpu';
    END IF;
END $$;

-- Undelivered outbox rows carry Redis usage entries (usage and limit in base units,
-- with their unit): rewrite the ones in seconds. Alert events in them are in the
-- catalog unit and stay as they are.
UPDATE hub_outbox o SET payload = convert_to(
    jsonb_set(p.doc, '{usage}', (
        SELECT jsonb_agg(
            CASE WHEN u->>'unit' = 'second' THEN u || jsonb_build_object(
                'usage', (u->>'usage')::numeric * 1000,
                'limit', CASE WHEN jsonb_typeof(u->'limit') = 'number'
                              THEN to_jsonb((u->>'limit')::numeric * 1000) ELSE u->'limit' END,
                'unit', 'millisecond')
            ELSE u END ORDER BY n)
        FROM jsonb_array_elements(p.doc->'usage') WITH ORDINALITY AS e(u, n)))::text,
    'UTF8')
FROM (SELECT id, convert_from(payload, 'UTF8')::jsonb AS doc FROM hub_outbox
      WHERE position('"unit":"second"' IN convert_from(payload, 'UTF8')) > 0) AS p
WHERE o.id = p.id AND EXISTS (
    SELECT 1 FROM jsonb_array_elements(p.doc->'usage') AS x(u) WHERE x.u->>'unit' = 'second');

-- From here on no raw reading is stored in seconds: a hub of an earlier release left
-- running has its cpu readings refused (and dead-lettered with this name) instead of
-- counting seconds as milliseconds.
ALTER TABLE usage_metrics ADD CONSTRAINT usage_metrics_cpu_in_milliseconds
    CHECK (metric_unit <> 'second');
