-- The outbox's due and deadline-watch queries read pending reports in the
-- order they ask for straight from an index: with only (target,
-- next_attempt_us), every round sorted all of a target's due reports (all
-- 100,000 of an hour share next_attempt_us) to take 800.
CREATE INDEX reports_due_order ON reports (target, next_attempt_us, hour_us, id) WHERE state IN ('pending', 'sending');
CREATE INDEX reports_unsettled ON reports (target, hour_us, id) WHERE state IN ('pending', 'sending');
DROP INDEX reports_due;
