-- API keys: only the SHA-256 of a key is kept, never the key.
CREATE TABLE api_keys (
    id           TEXT    PRIMARY KEY,
    hash         TEXT    NOT NULL UNIQUE,
    name         TEXT    NOT NULL,
    prefix       TEXT    NOT NULL,
    scope        TEXT    NOT NULL,
    customer_id  TEXT    NOT NULL,
    subject      TEXT    NOT NULL,
    created_by   TEXT    NOT NULL,
    created_us   INTEGER NOT NULL,
    expires_us   INTEGER,
    revoked_us   INTEGER,
    last_used_us INTEGER
);

-- The audit trail of administrative changes, appended and never changed.
CREATE TABLE audit_log (
    seq    INTEGER PRIMARY KEY AUTOINCREMENT,
    at_us  INTEGER NOT NULL,
    actor  TEXT    NOT NULL,
    method TEXT    NOT NULL,
    route  TEXT    NOT NULL,
    path   TEXT    NOT NULL,
    target TEXT    NOT NULL,
    status INTEGER NOT NULL,
    body   TEXT
);
CREATE INDEX audit_log_at ON audit_log (at_us);
CREATE INDEX audit_log_actor ON audit_log (actor, seq);
