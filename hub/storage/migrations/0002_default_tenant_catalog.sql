-- The default tenant and the plan's default resource catalog.
INSERT INTO tenants (id, name)
VALUES ('00000000-0000-0000-0000-000000000000', 'default')
ON CONFLICT DO NOTHING;

INSERT INTO resource_catalogs (tenant_id, resource_type, resource_name, unit, cost_per_unit, is_billable)
VALUES
    ('00000000-0000-0000-0000-000000000000', 'bandwidth', 'Internet 100Mbps', 'GB', 0.10, true),
    ('00000000-0000-0000-0000-000000000000', 'bandwidth', 'Internet 500Mbps', 'GB', 0.08, true),
    ('00000000-0000-0000-0000-000000000000', 'storage', 'Cloud Storage 1TB', 'GB', 0.05, true),
    ('00000000-0000-0000-0000-000000000000', 'api_calls', 'API Requests', 'request', 0.001, true),
    ('00000000-0000-0000-0000-000000000000', 'cpu', 'CPU Hours', 'hour', 0.05, true)
ON CONFLICT DO NOTHING;
