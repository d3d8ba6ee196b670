-- Alert lifecycle (issue 5): episodes, an audit trail of every transition, and
-- the database refusing illegal transitions whoever writes them.
--
-- episode_id ties the rows of one threshold episode together: the CRITICAL row
-- an escalation inserts inherits the episode of the WARNING row the same
-- transaction marked RESOLVED/'escalated'. Every other row starts an episode.
--
-- alert_transitions is written by triggers in the same transaction as the
-- alert row, so no transition can be lost; it is also the notification
-- outbox: rows with routed_at IS NULL are waiting for the notifier.
-- A comment and actor can be passed in with
--   SELECT set_config('resmon.comment', '...', true), set_config('resmon.actor', '...', true)

ALTER TABLE alerts ADD COLUMN episode_id UUID;
UPDATE alerts SET episode_id = id WHERE episode_id IS NULL;
CREATE INDEX idx_alerts_episode ON alerts(episode_id);

CREATE TABLE alert_transitions (
    id                    BIGSERIAL PRIMARY KEY,
    alert_id              UUID NOT NULL REFERENCES alerts(id) ON DELETE CASCADE,
    episode_id            UUID NOT NULL,
    customer_resource_id  UUID NOT NULL,
    -- RAISED, ESCALATED, ACKNOWLEDGED, RESOLVED, SUPERSEDED, REPEATED
    transition            VARCHAR(20) NOT NULL,
    from_status           VARCHAR(20),
    to_status             VARCHAR(20) NOT NULL,
    severity              VARCHAR(20) NOT NULL,
    actor                 TEXT,
    comment               TEXT,
    resolution            TEXT,
    at                    TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp(),
    routed_at             TIMESTAMPTZ
);
CREATE INDEX idx_alert_transitions_alert ON alert_transitions(alert_id, id);
CREATE INDEX idx_alert_transitions_unrouted ON alert_transitions(id) WHERE routed_at IS NULL;

CREATE FUNCTION resmon_alert_episode() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.episode_id IS NULL THEN
        -- an escalation: the same transaction just closed this resource's WARNING row
        SELECT a.episode_id INTO NEW.episode_id FROM alerts a
        WHERE a.customer_resource_id = NEW.customer_resource_id
          AND a.resolution = 'escalated' AND a.resolved_at = now()
          AND (a.alert_type = NEW.alert_type
               OR (a.alert_type LIKE 'THRESHOLD\_%' AND NEW.alert_type LIKE 'THRESHOLD\_%'))
          AND NOT EXISTS (SELECT 1 FROM alerts b WHERE b.episode_id = a.episode_id AND b.id <> a.id)
        LIMIT 1;
        NEW.episode_id := COALESCE(NEW.episode_id, NEW.id);
    END IF;
    RETURN NEW;
END $$;

CREATE TRIGGER alerts_episode BEFORE INSERT ON alerts
    FOR EACH ROW EXECUTE FUNCTION resmon_alert_episode();

CREATE FUNCTION resmon_alert_guard() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.status IS DISTINCT FROM OLD.status AND NOT (
        (OLD.status = 'ACTIVE' AND NEW.status IN ('ACKNOWLEDGED', 'RESOLVED'))
        OR (OLD.status = 'ACKNOWLEDGED' AND NEW.status = 'RESOLVED')
    ) THEN
        RAISE EXCEPTION 'illegal alert transition % -> %', OLD.status, NEW.status
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN NEW;
END $$;

CREATE TRIGGER alerts_guard BEFORE UPDATE OF status ON alerts
    FOR EACH ROW EXECUTE FUNCTION resmon_alert_guard();

CREATE FUNCTION resmon_alert_audit() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    kind TEXT;
    who TEXT := NULLIF(current_setting('resmon.actor', true), '');
    why TEXT := NULLIF(current_setting('resmon.comment', true), '');
BEGIN
    IF TG_OP = 'INSERT' THEN
        kind := CASE WHEN NEW.episode_id <> NEW.id THEN 'ESCALATED' ELSE 'RAISED' END;
        who := COALESCE(who, 'hub');
    ELSIF NEW.status IS DISTINCT FROM OLD.status THEN
        IF NEW.status = 'ACKNOWLEDGED' THEN
            kind := 'ACKNOWLEDGED';
            who := COALESCE(NEW.acknowledged_by, who);
        ELSIF NEW.resolution = 'escalated' THEN
            kind := 'SUPERSEDED';
            who := COALESCE(NEW.resolved_by, who);
        ELSE
            kind := 'RESOLVED';
            who := COALESCE(NEW.resolved_by, who);
        END IF;
    ELSE
        RETURN NEW;
    END IF;
    INSERT INTO alert_transitions (alert_id, episode_id, customer_resource_id, transition,
                                   from_status, to_status, severity, actor, comment, resolution,
                                   routed_at)
    VALUES (NEW.id, NEW.episode_id, NEW.customer_resource_id, kind,
            CASE WHEN TG_OP = 'UPDATE' THEN OLD.status END, NEW.status, NEW.severity, who, why,
            NEW.resolution,
            -- a superseded WARNING row is reported by the ESCALATED row, not on its own
            CASE WHEN kind = 'SUPERSEDED' THEN clock_timestamp() END);
    RETURN NEW;
END $$;

CREATE TRIGGER alerts_audit AFTER INSERT OR UPDATE ON alerts
    FOR EACH ROW EXECUTE FUNCTION resmon_alert_audit();
