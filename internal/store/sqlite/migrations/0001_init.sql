-- Raw events: the record of truth. (source, id) is the deduplication key.
CREATE TABLE events (
    seq         INTEGER PRIMARY KEY,
    source      TEXT    NOT NULL,
    id          TEXT    NOT NULL,
    type        TEXT    NOT NULL,
    subject     TEXT    NOT NULL,
    time_us     INTEGER NOT NULL,
    ingested_us INTEGER NOT NULL,
    raw         BLOB    NOT NULL
);
CREATE UNIQUE INDEX events_source_id ON events (source, id);

-- Why a meter could not count an event (the event is kept all the same).
CREATE TABLE event_errors (
    seq      INTEGER NOT NULL,
    meter_id TEXT    NOT NULL,
    message  TEXT    NOT NULL,
    PRIMARY KEY (seq, meter_id)
) WITHOUT ROWID;
CREATE INDEX event_errors_meter ON event_errors (meter_id);

CREATE TABLE meters (
    id   TEXT PRIMARY KEY,
    slug TEXT NOT NULL UNIQUE,
    def  TEXT NOT NULL
);

-- Per-minute aggregation state of each meter, subject and group: a
-- projection of events. Decimals are kept as exact text.
CREATE TABLE rollups (
    meter_id   TEXT    NOT NULL,
    subject    TEXT    NOT NULL,
    minute     INTEGER NOT NULL,
    group_key  TEXT    NOT NULL,
    count      INTEGER NOT NULL,
    sum        TEXT    NOT NULL,
    min        TEXT    NOT NULL,
    max        TEXT    NOT NULL,
    latest     TEXT    NOT NULL,
    latest_us  INTEGER NOT NULL,
    latest_seq INTEGER NOT NULL,
    PRIMARY KEY (meter_id, subject, minute, group_key)
) WITHOUT ROWID;

-- Distinct values seen by UNIQUE_COUNT meters, per minute.
CREATE TABLE unique_values (
    meter_id  TEXT    NOT NULL,
    subject   TEXT    NOT NULL,
    minute    INTEGER NOT NULL,
    group_key TEXT    NOT NULL,
    value     TEXT    NOT NULL,
    PRIMARY KEY (meter_id, subject, minute, group_key, value)
) WITHOUT ROWID;

CREATE TABLE subjects (
    key                TEXT PRIMARY KEY,
    display_name       TEXT,
    metadata           TEXT,
    stripe_customer_id TEXT,
    created_us         INTEGER NOT NULL,
    updated_us         INTEGER NOT NULL
);
