-- Marketplace and provider usage reporting: the outbox.

-- One row per report stream (subscription × target × dimension ×
-- deployment); state is the report.Stream as JSON.
CREATE TABLE report_streams (
    id              TEXT PRIMARY KEY,
    subscription_id TEXT NOT NULL,
    state           TEXT NOT NULL
);

-- Reports: id is deterministic (target, subscription, deployment,
-- dimension, hour).
CREATE TABLE reports (
    id              TEXT PRIMARY KEY,
    stream_id       TEXT    NOT NULL,
    target          TEXT    NOT NULL,
    subscription_id TEXT    NOT NULL,
    customer_id     TEXT    NOT NULL,
    hour_us         INTEGER NOT NULL,
    state           TEXT    NOT NULL,
    next_attempt_us INTEGER NOT NULL,
    def             TEXT    NOT NULL
);
CREATE INDEX reports_due ON reports (target, next_attempt_us) WHERE state IN ('pending', 'sending');
CREATE INDEX reports_hour ON reports (hour_us, id);
CREATE INDEX reports_subscription ON reports (subscription_id, hour_us);
CREATE INDEX reports_customer ON reports (customer_id, hour_us);

-- Every delivery attempt and the target's answer.
CREATE TABLE report_attempts (
    report_id TEXT    NOT NULL,
    attempt   INTEGER NOT NULL,
    def       TEXT    NOT NULL,
    PRIMARY KEY (report_id, attempt)
) WITHOUT ROWID;

CREATE TABLE report_meta (
    key   TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);

-- Events ingested after their UTC hour had ended: the reporter looks at
-- these to find usage for hours it may have reported already. The partial
-- index holds only such events, so it costs nothing for timely ones.
CREATE INDEX events_after_hour ON events (seq)
    WHERE ingested_us >= time_us - (time_us % 3600000000) + 3600000000;
