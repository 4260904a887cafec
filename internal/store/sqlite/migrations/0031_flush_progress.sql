-- A flush of the rollup overlay in progress (see overlay.go): its cells are
-- written in key order, a slice per ingest transaction. Once they are all
-- written applied_seq becomes flush_seq; until then the cells up to and
-- including (flush_meter, flush_subject, flush_minute, flush_group) hold
-- the events up to flush_seq. flush_seq 0: no flush in progress.
ALTER TABLE projection_state ADD COLUMN flush_seq INTEGER NOT NULL DEFAULT 0;
ALTER TABLE projection_state ADD COLUMN flush_meter TEXT NOT NULL DEFAULT '';
ALTER TABLE projection_state ADD COLUMN flush_subject TEXT NOT NULL DEFAULT '';
ALTER TABLE projection_state ADD COLUMN flush_minute INTEGER NOT NULL DEFAULT 0;
ALTER TABLE projection_state ADD COLUMN flush_group TEXT NOT NULL DEFAULT '';
