-- When each customer owned each subject (billing.Ownership): a customer's
-- usage over a range of time is each subject's usage while it owned it.
-- from_us is NULL for a subject's first owner (it owns it since the
-- beginning of time), to_us NULL while the customer owns it. A subject
-- has at most one owner at a time; customer_subjects stays the index of
-- the current owners.
CREATE TABLE subject_owners (
    subject     TEXT    NOT NULL,
    customer_id TEXT    NOT NULL REFERENCES customers (id),
    from_us     INTEGER,
    to_us       INTEGER,
    CHECK (from_us IS NULL OR to_us IS NULL OR from_us <= to_us)
);
CREATE INDEX subject_owners_customer ON subject_owners (customer_id);
CREATE INDEX subject_owners_subject ON subject_owners (subject, to_us);
CREATE UNIQUE INDEX subject_owners_current ON subject_owners (subject) WHERE to_us IS NULL;

-- History before this migration was not kept. What is known: a live
-- customer owns its subjects now, and a deleted customer owned the
-- subjects it listed until it was deleted (to the end of that minute:
-- ownership is kept in whole minutes). Chained per subject in order of
-- deletion (the live owner last), each owner takes the subject when the
-- one before it let go of it; the first owns it since the beginning of
-- time, so usage billed before this migration is billed the same after it.
INSERT INTO subject_owners (subject, customer_id, from_us, to_us)
SELECT subject, customer_id,
       LAG(to_us) OVER (PARTITION BY subject ORDER BY to_us IS NULL, to_us, customer_id),
       to_us
FROM (
    SELECT j.value AS subject, c.id AS customer_id,
           (c.deleted_us / 60000000 + (c.deleted_us % 60000000 > 0)) * 60000000 AS to_us
    FROM customers c, json_each(c.def, '$.subjects') j
    WHERE c.deleted_us IS NOT NULL AND j.type = 'text'
    UNION ALL
    SELECT subject, customer_id, NULL FROM customer_subjects
);
