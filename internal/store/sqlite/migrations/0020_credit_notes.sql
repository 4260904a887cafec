-- Credit notes: def is the whole billing.CreditNote as JSON, written once
-- and never changed. number is the one gapless sequence of credit notes
-- (shown as CN-000001); id is the subscription's sequence number
-- (cn_<subscription>_<n>), so a credit note computed twice from the same
-- state is stored once. credit_note_invoices indexes every invoice a
-- credit note has a line for; it is written in the credit note's
-- transaction.
CREATE TABLE credit_notes (
    id              TEXT    PRIMARY KEY,
    number          INTEGER NOT NULL UNIQUE,
    subscription_id TEXT    NOT NULL REFERENCES subscriptions (id),
    customer_id     TEXT    NOT NULL,
    def             TEXT    NOT NULL
);
CREATE INDEX credit_notes_subscription ON credit_notes (subscription_id, number);
CREATE INDEX credit_notes_customer ON credit_notes (customer_id, number);
CREATE TABLE credit_note_invoices (
    credit_note_id TEXT NOT NULL REFERENCES credit_notes (id),
    invoice_id     TEXT NOT NULL,
    PRIMARY KEY (invoice_id, credit_note_id)
);
