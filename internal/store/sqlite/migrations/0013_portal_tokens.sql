-- Issued portal tokens: the token's id (jti) and grant, never the token.
-- A row is kept until the token expires, so that a revocation holds for
-- as long as the token could be used.
CREATE TABLE portal_tokens (
    id          TEXT    PRIMARY KEY,
    customer_id TEXT    NOT NULL,
    subject     TEXT    NOT NULL,
    meters      TEXT,   -- JSON array of meter slugs; NULL: every meter
    created_by  TEXT    NOT NULL,
    created_us  INTEGER NOT NULL,
    expires_us  INTEGER NOT NULL,
    revoked_us  INTEGER
);
CREATE INDEX portal_tokens_customer ON portal_tokens (customer_id, expires_us);
CREATE INDEX portal_tokens_expires ON portal_tokens (expires_us);
