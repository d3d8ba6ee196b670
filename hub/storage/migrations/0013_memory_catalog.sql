-- A catalog row for memory, the gauge the wire protocol carries next to storage:
-- without one a memory reading had no catalog to be provisioned from and was
-- dead-lettered. Monitored (thresholds, anomalies, forecasts), not billed.
INSERT INTO resource_catalogs (tenant_id, resource_type, resource_name, unit, cost_per_unit, is_billable)
VALUES ('00000000-0000-0000-0000-000000000000', 'memory', 'Memory', 'GB', 0, false)
ON CONFLICT DO NOTHING;
