-- Customers: def is the whole billing.Customer as JSON. A deleted customer
-- is kept (deleted_us set) for its history; only live customers need a
-- unique key.
CREATE TABLE customers (
    id         TEXT PRIMARY KEY,
    key        TEXT    NOT NULL,
    created_us INTEGER NOT NULL,
    deleted_us INTEGER,
    def        TEXT    NOT NULL
);
CREATE UNIQUE INDEX customers_live_key ON customers (key) WHERE deleted_us IS NULL;
CREATE INDEX customers_key ON customers (key, deleted_us);

-- Which live customer owns each subject: at most one.
CREATE TABLE customer_subjects (
    subject     TEXT PRIMARY KEY,
    customer_id TEXT NOT NULL REFERENCES customers (id)
) WITHOUT ROWID;
CREATE INDEX customer_subjects_customer ON customer_subjects (customer_id);

-- Users of a customer. key and email are '' when not set.
CREATE TABLE customer_users (
    id          TEXT PRIMARY KEY,
    customer_id TEXT    NOT NULL REFERENCES customers (id),
    key         TEXT    NOT NULL,
    email       TEXT    NOT NULL,
    created_us  INTEGER NOT NULL,
    def         TEXT    NOT NULL
);
CREATE UNIQUE INDEX customer_users_key ON customer_users (customer_id, key) WHERE key <> '';
CREATE UNIQUE INDEX customer_users_email ON customer_users (customer_id, email) WHERE email <> '';
CREATE INDEX customer_users_customer ON customer_users (customer_id, created_us);

-- Plan versions: def is the whole billing.Plan as JSON. Versions of a plan
-- share id and key.
CREATE TABLE plans (
    id      TEXT    NOT NULL,
    key     TEXT    NOT NULL,
    version INTEGER NOT NULL,
    status  TEXT    NOT NULL CHECK (status IN ('draft', 'published')),
    def     TEXT    NOT NULL,
    PRIMARY KEY (id, version),
    UNIQUE (key, version)
);
