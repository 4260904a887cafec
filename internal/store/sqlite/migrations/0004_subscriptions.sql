-- Subscriptions: def is the whole billing.Subscription as JSON. A
-- subscription is never deleted; cancelling it keeps it.
CREATE TABLE subscriptions (
    id           TEXT    PRIMARY KEY,
    customer_id  TEXT    NOT NULL REFERENCES customers (id),
    plan_id      TEXT    NOT NULL,
    plan_version INTEGER NOT NULL,
    start_us     INTEGER NOT NULL,
    status       TEXT    NOT NULL CHECK (status IN ('active', 'scheduled_cancel', 'canceled')),
    def          TEXT    NOT NULL,
    FOREIGN KEY (plan_id, plan_version) REFERENCES plans (id, version)
);
CREATE INDEX subscriptions_customer ON subscriptions (customer_id, start_us, id);
CREATE INDEX subscriptions_plan ON subscriptions (plan_id, start_us, id);
CREATE INDEX subscriptions_start ON subscriptions (start_us, id);
