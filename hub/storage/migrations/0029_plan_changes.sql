-- The plan history a bill needs to prorate a change of plan inside a period.
--
-- Every change of customer_resources.cost_model_id from one plan to another (a
-- resize applied, an operator's UPDATE, whatever the writer) is recorded by a
-- trigger in the same transaction, with the limits before and after. Putting a
-- resource on its first plan (from the catalog's price, NULL) is not a change:
-- the resource is billed on that plan for its whole period, from billing_start.
CREATE TABLE customer_resource_plan_changes (
    id                    BIGSERIAL PRIMARY KEY,
    customer_resource_id  UUID NOT NULL REFERENCES customer_resources(id),
    changed_at            TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp(),
    from_cost_model_id    UUID NOT NULL REFERENCES cost_models(id),
    to_cost_model_id      UUID REFERENCES cost_models(id),
    from_limit            BIGINT,
    to_limit              BIGINT
);
CREATE INDEX idx_plan_changes_resource
    ON customer_resource_plan_changes(customer_resource_id, changed_at);

CREATE FUNCTION resmon_plan_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF OLD.cost_model_id IS NOT NULL
       AND NEW.cost_model_id IS DISTINCT FROM OLD.cost_model_id THEN
        INSERT INTO customer_resource_plan_changes
            (customer_resource_id, from_cost_model_id, to_cost_model_id, from_limit, to_limit)
        VALUES (NEW.id, OLD.cost_model_id, NEW.cost_model_id, OLD.limit_value, NEW.limit_value);
    END IF;
    RETURN NEW;
END $$;

CREATE TRIGGER customer_resources_plan_change AFTER UPDATE OF cost_model_id
    ON customer_resources FOR EACH ROW EXECUTE FUNCTION resmon_plan_change();
