-- Cost columns wide enough for the largest usage the contract admits: a period total
-- of up to 2^63-1 base units at a catalog price of up to 999,999.9999 per unit is
-- below 10^25, so NUMERIC(38, 4) holds every cost the hub can compute. A narrower
-- column made one large reading fail its batch on every retry.
ALTER TABLE usage_aggregates ALTER COLUMN cost TYPE NUMERIC(38, 4);
ALTER TABLE cost_forecasts ALTER COLUMN predicted_cost TYPE NUMERIC(38, 4);
ALTER TABLE cost_models ALTER COLUMN base_cost TYPE NUMERIC(38, 4);
