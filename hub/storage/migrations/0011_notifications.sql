-- Notifications (issue 5): preferences per tenant / customer, the delivery log
-- with its at-most-once key, and every delivery attempt.

CREATE TABLE notification_preferences (
    id           BIGSERIAL PRIMARY KEY,
    tenant_id    UUID REFERENCES tenants(id),
    customer_id  TEXT REFERENCES customers(id),
    settings     JSONB NOT NULL,
    updated_by   TEXT,
    updated_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    CHECK ((tenant_id IS NULL) <> (customer_id IS NULL)),
    UNIQUE (tenant_id),
    UNIQUE (customer_id)
);

-- One row per (episode, channel, recipient, transition): the unique key is what
-- makes "at most one notification" hold across restarts and several hubs.
CREATE TABLE notification_log (
    id               BIGSERIAL PRIMARY KEY,
    transition_id    BIGINT NOT NULL REFERENCES alert_transitions(id) ON DELETE CASCADE,
    alert_id         UUID NOT NULL,
    episode_id       UUID NOT NULL,
    customer_id      TEXT NOT NULL,
    tenant_id        UUID NOT NULL,
    customer_resource_id UUID NOT NULL,
    channel          VARCHAR(20) NOT NULL,          -- email, sms, slack, webhook
    target           TEXT NOT NULL DEFAULT '',      -- the phone number for sms, else ''
    transition_key   TEXT NOT NULL,                 -- e.g. RAISED:HIGH, REPEATED:CRITICAL:2
    transition       VARCHAR(20) NOT NULL,
    severity         VARCHAR(20) NOT NULL,
    status           VARCHAR(20) NOT NULL DEFAULT 'PENDING'
                     CHECK (status IN ('PENDING', 'SENDING', 'SENT', 'DEAD', 'SUPPRESSED')),
    attempts         INTEGER NOT NULL DEFAULT 0,
    next_attempt_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    deadline_at      TIMESTAMPTZ NOT NULL,
    lease_until      TIMESTAMPTZ,
    claimed_by       TEXT,
    message_id       UUID,                          -- rows sent in one grouped message share it
    last_error       TEXT,
    sent_at          TIMESTAMPTZ,
    created_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (episode_id, channel, target, transition_key)
);
CREATE INDEX idx_notification_log_due ON notification_log(next_attempt_at)
    WHERE status IN ('PENDING', 'SENDING');
CREATE INDEX idx_notification_log_customer ON notification_log(customer_id, channel)
    WHERE status = 'PENDING';
CREATE INDEX idx_notification_log_tenant_sent ON notification_log(tenant_id, channel, sent_at)
    WHERE status = 'SENT';
CREATE INDEX idx_notification_log_alert ON notification_log(alert_id);

CREATE TABLE notification_attempts (
    id           BIGSERIAL PRIMARY KEY,
    log_id       BIGINT NOT NULL REFERENCES notification_log(id) ON DELETE CASCADE,
    attempt      INTEGER NOT NULL,
    worker       TEXT NOT NULL,
    outcome      VARCHAR(20) NOT NULL,               -- sent, retry, dead, deferred
    status_code  INTEGER,
    retry_after  NUMERIC(10, 3),
    error        TEXT,
    at           TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX idx_notification_attempts_log ON notification_attempts(log_id, id);

-- Per-tenant rate limits: messages sent per channel per clock hour, reserved
-- atomically before a send, so several hubs together stay under the limit.
CREATE TABLE notification_rate (
    tenant_id   UUID NOT NULL,
    channel     VARCHAR(20) NOT NULL,
    hour        TIMESTAMPTZ NOT NULL,
    sent        INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, channel, hour)
);
