-- Alerts from the stored forecasts (cost_forecasts): a FORECAST_LIMIT alert the
-- forecast refresh raises when the period's forecast total is above the limit.
--
-- forecast_period_start names the billing period such an alert is about; it is NULL
-- on the actors' pace-based FORECAST_LIMIT alerts. The two sources keep one open
-- episode each per resource: the actor's hot path closes only its own (pace) row, the
-- refresh only its own, and a stored-forecast alert is raised at most once per
-- resource and period while it is open.
ALTER TABLE alerts ADD COLUMN forecast_period_start DATE;

DROP INDEX uq_alerts_open_forecast;
CREATE UNIQUE INDEX uq_alerts_open_forecast ON alerts(customer_resource_id)
    WHERE status <> 'RESOLVED' AND alert_type = 'FORECAST_LIMIT'
      AND forecast_period_start IS NULL;
CREATE UNIQUE INDEX uq_alerts_open_stored_forecast ON alerts(customer_resource_id)
    WHERE status <> 'RESOLVED' AND alert_type = 'FORECAST_LIMIT'
      AND forecast_period_start IS NOT NULL;
CREATE INDEX idx_alerts_forecast_period ON alerts(customer_resource_id, forecast_period_start)
    WHERE forecast_period_start IS NOT NULL;
