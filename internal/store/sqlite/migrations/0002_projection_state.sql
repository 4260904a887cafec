-- How far the rollups table reflects the events table: events with a
-- greater seq are applied in memory and flushed later (see overlay.go), and
-- are replayed from the raw events after a crash.
CREATE TABLE projection_state (
    id          INTEGER PRIMARY KEY CHECK (id = 1),
    applied_seq INTEGER NOT NULL
);
INSERT INTO projection_state (id, applied_seq) SELECT 1, COALESCE(MAX(seq), 0) FROM events;
