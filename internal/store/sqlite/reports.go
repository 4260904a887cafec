package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/tally-metering/tally/internal/report"
)

var _ report.Outbox = (*DB)(nil)

// LoadStreams implements report.Outbox.
func (db *DB) LoadStreams(ctx context.Context, subscriptionIDs []string) ([]report.Stream, error) {
	if subscriptionIDs == nil {
		return db.loadStreams(ctx, `SELECT state FROM report_streams`)
	}
	var out []report.Stream
	for chunk := range slices.Chunk(subscriptionIDs, 500) {
		args := make([]any, len(chunk))
		for i, id := range chunk {
			args[i] = id
		}
		q := `SELECT state FROM report_streams WHERE subscription_id IN (?` + strings.Repeat(",?", len(chunk)-1) + `)`
		sts, err := db.loadStreams(ctx, q, args...)
		if err != nil {
			return nil, err
		}
		out = append(out, sts...)
	}
	return out, nil
}

func (db *DB) loadStreams(ctx context.Context, q string, args ...any) ([]report.Stream, error) {
	rows, err := db.r.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("load report streams: %w", err)
	}
	defer rows.Close()
	var out []report.Stream
	for rows.Next() {
		st, err := scanDef[report.Stream](rows, "report stream")
		if err != nil {
			return nil, fmt.Errorf("load report streams: %w", err)
		}
		out = append(out, st)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("load report streams: %w", err)
	}
	return out, nil
}

// CommitPlan implements report.Outbox.
func (db *DB) CommitPlan(ctx context.Context, streams []report.Stream, reports []report.Report, lateSeq int64) error {
	tx, err := db.w.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("commit report plan: %w", err)
	}
	defer tx.Rollback()
	putStream, err := tx.PrepareContext(ctx, `INSERT INTO report_streams (id, subscription_id, state) VALUES (?, ?, ?)
		ON CONFLICT (id) DO UPDATE SET state = excluded.state`)
	if err != nil {
		return fmt.Errorf("commit report plan: %w", err)
	}
	defer putStream.Close()
	for _, st := range streams {
		def, err := json.Marshal(st)
		if err != nil {
			return fmt.Errorf("commit report plan: stream %s: %w", st.ID, err)
		}
		if _, err := putStream.ExecContext(ctx, st.ID, st.SubscriptionID, string(def)); err != nil {
			return fmt.Errorf("commit report plan: stream %s: %w", st.ID, err)
		}
	}
	if len(reports) > 0 {
		ins, err := tx.PrepareContext(ctx, `INSERT INTO reports (id, stream_id, target, subscription_id, customer_id, hour_us, state, next_attempt_us, def)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING`)
		if err != nil {
			return fmt.Errorf("commit report plan: %w", err)
		}
		defer ins.Close()
		for _, r := range reports {
			def, err := json.Marshal(r)
			if err != nil {
				return fmt.Errorf("commit report plan: report %s: %w", r.ID, err)
			}
			if _, err := ins.ExecContext(ctx, r.ID, r.StreamID, r.Target, r.SubscriptionID, r.CustomerID,
				r.Hour.UnixMicro(), string(r.State), r.NextAttemptAt.UnixMicro(), string(def)); err != nil {
				return fmt.Errorf("commit report plan: report %s: %w", r.ID, err)
			}
		}
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO report_meta (key, value) VALUES ('late_seq', ?)
		ON CONFLICT (key) DO UPDATE SET value = max(value, excluded.value)`, lateSeq); err != nil {
		return fmt.Errorf("commit report plan: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("commit report plan: %w", err)
	}
	return nil
}

// LateCursor implements report.Outbox.
func (db *DB) LateCursor(ctx context.Context) (int64, error) {
	var v int64
	err := db.r.QueryRowContext(ctx, `SELECT value FROM report_meta WHERE key = 'late_seq'`).Scan(&v)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("late cursor: %w", err)
	}
	return v, nil
}

// LateEvents implements report.Outbox. The condition is the partial index's
// own, so SQLite answers from that index.
func (db *DB) LateEvents(ctx context.Context, afterSeq int64, limit int) ([]report.LateEvent, error) {
	// Corrections (voids, amendments, cancellation rules) change usage
	// after the fact as late events do: their marks are listed with them.
	rows, err := db.r.QueryContext(ctx, `SELECT seq, subject, time_us FROM (
		SELECT seq, subject, time_us FROM events
		WHERE ingested_us >= time_us - (time_us % 3600000000) + 3600000000 AND seq > ?
		UNION ALL
		SELECT seq, subject, time_us FROM correction_marks WHERE seq > ?)
		ORDER BY seq LIMIT ?`, afterSeq, afterSeq, limit)
	if err != nil {
		return nil, fmt.Errorf("late events: %w", err)
	}
	defer rows.Close()
	var out []report.LateEvent
	for rows.Next() {
		var e report.LateEvent
		var us int64
		if err := rows.Scan(&e.Seq, &e.Subject, &us); err != nil {
			return nil, fmt.Errorf("late events: %w", err)
		}
		e.Time = time.UnixMicro(us).UTC()
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("late events: %w", err)
	}
	return out, nil
}

func (db *DB) queryReports(ctx context.Context, what, q string, args ...any) ([]report.Report, error) {
	rows, err := db.r.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	defer rows.Close()
	out := []report.Report{}
	for rows.Next() {
		var def, state string
		var next int64
		if err := rows.Scan(&def, &state, &next); err != nil {
			return nil, fmt.Errorf("%s: %w", what, err)
		}
		var r report.Report
		if err := json.Unmarshal([]byte(def), &r); err != nil {
			return nil, fmt.Errorf("%s: decode report: %w", what, err)
		}
		// The columns are the truth for what changes; def for the rest.
		r.State, r.NextAttemptAt = report.State(state), time.UnixMicro(next).UTC()
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	return out, nil
}

// DueReports implements report.Outbox.
func (db *DB) DueReports(ctx context.Context, target string, now time.Time, limit int) ([]report.Report, error) {
	return db.queryReports(ctx, "due reports", `SELECT def, state, next_attempt_us FROM reports
		WHERE target = ? AND state IN ('pending', 'sending') AND next_attempt_us <= ?
		ORDER BY next_attempt_us, hour_us, id LIMIT ?`, target, now.UnixMicro(), limit)
}

// Unsettled implements report.Outbox.
func (db *DB) Unsettled(ctx context.Context, target string, hourBefore time.Time, limit int) ([]report.Report, error) {
	return db.queryReports(ctx, "unsettled reports", `SELECT def, state, next_attempt_us FROM reports
		WHERE target = ? AND state IN ('pending', 'sending') AND hour_us < ?
		ORDER BY hour_us, id LIMIT ?`, target, hourBefore.UnixMicro(), limit)
}

// MarkSending implements report.Outbox.
func (db *DB) MarkSending(ctx context.Context, ids []string, now, retryAt time.Time) error {
	return db.updateReports(ctx, "mark reports sending", ids, func(tx *sql.Tx, r *report.Report) error {
		r.State, r.Attempts, r.NextAttemptAt, r.UpdatedAt = report.StateSending, r.Attempts+1, retryAt.UTC(), now.UTC()
		if r.FirstAttemptAt == nil {
			at := now.UTC()
			r.FirstAttemptAt = &at
		}
		return nil
	})
}

// RecordDeliveries implements report.Outbox.
func (db *DB) RecordDeliveries(ctx context.Context, ds []report.Delivery, now time.Time) error {
	byID := make(map[string]report.Delivery, len(ds))
	ids := make([]string, 0, len(ds))
	for _, d := range ds {
		byID[d.ReportID] = d
		ids = append(ids, d.ReportID)
	}
	return db.updateReports(ctx, "record report deliveries", ids, func(tx *sql.Tx, r *report.Report) error {
		d := byID[r.ID]
		given := r.State == report.StateExpired || r.State == report.StateCancelled
		r.State, r.LastError, r.UpdatedAt = d.State, d.LastError, now.UTC()
		r.Attempts = max(r.Attempts, d.Attempt.Attempt)
		if d.State == report.StatePending {
			r.NextAttemptAt = d.NextAttemptAt.UTC()
		}
		a := d.Attempt
		a.ReportID = r.ID
		def, err := json.Marshal(a)
		if err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO report_attempts (report_id, attempt, def) VALUES (?, ?, ?)
			ON CONFLICT (report_id, attempt) DO UPDATE SET def = excluded.def`, r.ID, a.Attempt, string(def)); err != nil {
			return err
		}
		if (d.State == report.StateExpired || d.State == report.StateCancelled) && !given {
			return db.unreport(ctx, tx, *r)
		}
		return nil
	})
}

// unreport takes an expired or cancelled report's quantity off its
// stream's Reported.
func (db *DB) unreport(ctx context.Context, tx *sql.Tx, r report.Report) error {
	var def string
	err := tx.QueryRowContext(ctx, `SELECT state FROM report_streams WHERE id = ?`, r.StreamID).Scan(&def)
	if errors.Is(err, sql.ErrNoRows) {
		return nil
	}
	if err != nil {
		return err
	}
	var st report.Stream
	if err := json.Unmarshal([]byte(def), &st); err != nil {
		return err
	}
	st.Reported = st.Reported.Sub(r.Quantity)
	b, err := json.Marshal(st)
	if err != nil {
		return err
	}
	_, err = tx.ExecContext(ctx, `UPDATE report_streams SET state = ? WHERE id = ?`, string(b), st.ID)
	return err
}

// Requeue implements report.Outbox.
func (db *DB) Requeue(ctx context.Context, id string, res report.Resource, now time.Time) error {
	return db.updateReports(ctx, "requeue report", []string{id}, func(tx *sql.Tx, r *report.Report) error {
		if r.State != report.StateFailed {
			return fmt.Errorf("report %s is %s; only a failed report can be sent again", r.ID, r.State)
		}
		// A person decided to send it again: a fresh start, also for the
		// dedupe window.
		r.State, r.Resource, r.NextAttemptAt, r.UpdatedAt, r.LastError, r.FirstAttemptAt = report.StatePending, res, now.UTC(), now.UTC(), "", nil
		return nil
	})
}

// updateReports reads each report of ids, lets fn change it, and writes it
// back, all in one transaction. An unknown id is report.ErrNotFound.
func (db *DB) updateReports(ctx context.Context, what string, ids []string, fn func(*sql.Tx, *report.Report) error) error {
	tx, err := db.w.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	defer tx.Rollback()
	get, err := tx.PrepareContext(ctx, `SELECT def, state, next_attempt_us FROM reports WHERE id = ?`)
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	defer get.Close()
	put, err := tx.PrepareContext(ctx, `UPDATE reports SET state = ?, next_attempt_us = ?, def = ? WHERE id = ?`)
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	defer put.Close()
	for _, id := range ids {
		var def, state string
		var next int64
		err := get.QueryRowContext(ctx, id).Scan(&def, &state, &next)
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("%s: %s: %w", what, id, report.ErrNotFound)
		}
		if err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		var r report.Report
		if err := json.Unmarshal([]byte(def), &r); err != nil {
			return fmt.Errorf("%s: decode report %s: %w", what, id, err)
		}
		r.State, r.NextAttemptAt = report.State(state), time.UnixMicro(next).UTC()
		if err := fn(tx, &r); err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		b, err := json.Marshal(r)
		if err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		if _, err := put.ExecContext(ctx, string(r.State), r.NextAttemptAt.UnixMicro(), string(b), r.ID); err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	return nil
}

// ListReports implements report.Outbox.
func (db *DB) ListReports(ctx context.Context, f report.Filter) ([]report.Report, error) {
	var where []string
	var args []any
	add := func(cond string, v any) {
		where = append(where, cond)
		args = append(args, v)
	}
	if f.CustomerID != "" {
		add("customer_id = ?", f.CustomerID)
	}
	if f.SubscriptionID != "" {
		add("subscription_id = ?", f.SubscriptionID)
	}
	if f.Target != "" {
		add("target = ?", f.Target)
	}
	if f.State != "" {
		add("state = ?", string(f.State))
	}
	if !f.HourFrom.IsZero() {
		add("hour_us >= ?", f.HourFrom.UnixMicro())
	}
	if !f.HourTo.IsZero() {
		add("hour_us < ?", f.HourTo.UnixMicro())
	}
	if f.After != "" {
		where = append(where, "(hour_us, id) > (SELECT hour_us, id FROM reports WHERE id = ?)")
		args = append(args, f.After)
	}
	q := "SELECT def, state, next_attempt_us FROM reports"
	if len(where) > 0 {
		q += " WHERE " + strings.Join(where, " AND ")
	}
	q += " ORDER BY hour_us, id"
	if f.Limit > 0 {
		q += " LIMIT ?"
		args = append(args, f.Limit)
	}
	return db.queryReports(ctx, "list reports", q, args...)
}

// GetReport implements report.Outbox.
func (db *DB) GetReport(ctx context.Context, id string) (report.Report, []report.Attempt, error) {
	rs, err := db.queryReports(ctx, "get report", `SELECT def, state, next_attempt_us FROM reports WHERE id = ?`, id)
	if err != nil {
		return report.Report{}, nil, err
	}
	if len(rs) == 0 {
		return report.Report{}, nil, fmt.Errorf("get report %s: %w", id, report.ErrNotFound)
	}
	rows, err := db.r.QueryContext(ctx, `SELECT def FROM report_attempts WHERE report_id = ? ORDER BY attempt`, id)
	if err != nil {
		return report.Report{}, nil, fmt.Errorf("get report %s: %w", id, err)
	}
	defer rows.Close()
	attempts := []report.Attempt{}
	for rows.Next() {
		a, err := scanDef[report.Attempt](rows, "report attempt")
		if err != nil {
			return report.Report{}, nil, fmt.Errorf("get report %s: %w", id, err)
		}
		attempts = append(attempts, a)
	}
	if err := rows.Err(); err != nil {
		return report.Report{}, nil, fmt.Errorf("get report %s: %w", id, err)
	}
	return rs[0], attempts, nil
}
