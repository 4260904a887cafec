-- Finalized invoices: def is the whole billing.Invoice as JSON, written once
-- and never changed. One invoice per subscription and period start, so
-- finalizing a period twice stores nothing the second time. Drafts are
-- computed on demand and never stored.
CREATE TABLE invoices (
    id              TEXT    PRIMARY KEY,
    subscription_id TEXT    NOT NULL REFERENCES subscriptions (id),
    customer_id     TEXT    NOT NULL,
    period_start_us INTEGER NOT NULL,
    def             TEXT    NOT NULL,
    UNIQUE (subscription_id, period_start_us)
);
CREATE INDEX invoices_customer ON invoices (customer_id, period_start_us, subscription_id);
CREATE INDEX invoices_period ON invoices (period_start_us, subscription_id);
