-- Voids and amendments of raw events: new facts kept beside the event,
-- which never changes. n orders one event's corrections; the last one says
-- how the event counts now.
CREATE TABLE event_corrections (
    seq    INTEGER NOT NULL,
    n      INTEGER NOT NULL,
    kind   TEXT    NOT NULL CHECK (kind IN ('void', 'amend')),
    data   BLOB,
    reason TEXT    NOT NULL,
    actor  TEXT    NOT NULL,
    at_us  INTEGER NOT NULL,
    PRIMARY KEY (seq, n)
) WITHOUT ROWID;

-- Cancellation rules, deleted ones included: def is the whole
-- store.CancellationRule as JSON.
CREATE TABLE cancellation_rules (
    id         TEXT    PRIMARY KEY,
    created_us INTEGER NOT NULL,
    def        TEXT    NOT NULL
);

-- Where a correction changed usage: the subject and the first changed
-- time. Their seqs come from the events' sequence, so that LateEvents
-- lists them among late events and reports and invoices made for those
-- hours are looked at again.
CREATE TABLE correction_marks (
    seq     INTEGER PRIMARY KEY,
    subject TEXT    NOT NULL,
    time_us INTEGER NOT NULL
);

-- Rebuilding one subject's minute (a void, an amendment, a rule's cells)
-- reads its events by time; the keys follow ingest's clock, so inserts
-- land at the index's end.
CREATE INDEX events_time_subject ON events (time_us, subject);
