-- Events are deduplicated per subject: (source, id, subject). With the
-- global (source, id), a credential bound to one customer could send first
-- an event with the source and id another customer's agent uses, and that
-- customer's real event would be skipped as a duplicate.
CREATE UNIQUE INDEX events_source_id_subject ON events (source, id, subject);
DROP INDEX events_source_id;
