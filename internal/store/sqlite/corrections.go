package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/tally-metering/tally/internal/meter"
	"github.com/tally-metering/tally/internal/store"
)

// Corrections (voids, amendments, cancellation rules) change the rollups
// by rebuilding whole cells — one meter's subject and minute, every group
// — from the raw events in them, under the writer lock and after the
// overlay is flushed: no append runs meanwhile, and the rebuilt rows hold
// every committed event, so neither the overlay nor a replay after a crash
// (which starts above applied_seq, advanced by the flush) counts anything
// twice. MIN, MAX, LATEST and UNIQUE_COUNT can't take an event out of a
// state, so every aggregation is rebuilt the same way.

type querier interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
}

// attachCorrections fills in the corrections of evs, read through q.
func attachCorrections(ctx context.Context, q querier, evs []store.StoredEvent) error {
	if len(evs) == 0 {
		return nil
	}
	lo, hi := evs[0].Seq, evs[0].Seq
	idx := make(map[int64]int, len(evs))
	for i, e := range evs {
		lo, hi = min(lo, e.Seq), max(hi, e.Seq)
		idx[e.Seq] = i
	}
	rows, err := q.QueryContext(ctx, "SELECT seq, kind, data, reason, actor, at_us FROM event_corrections WHERE seq BETWEEN ? AND ? ORDER BY seq, n", lo, hi)
	if err != nil {
		return fmt.Errorf("read corrections: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var seq, at int64
		var c store.Correction
		var data []byte
		if err := rows.Scan(&seq, &c.Kind, &data, &c.Reason, &c.Actor, &at); err != nil {
			return fmt.Errorf("read corrections: %w", err)
		}
		i, ok := idx[seq]
		if !ok {
			continue
		}
		if len(data) > 0 {
			c.Data = json.RawMessage(data)
		}
		c.At = time.UnixMicro(at).UTC()
		evs[i].Corrections = append(evs[i].Corrections, c)
	}
	return rows.Err()
}

const eventColumns = "seq, source, id, type, subject, time_us, ingested_us, raw"

// CorrectEvent implements store.Corrections.
func (db *DB) CorrectEvent(ctx context.Context, key store.EventKey, c store.Correction, check func(store.StoredEvent) error, p store.Projector) (store.StoredEvent, error) {
	db.mu.Lock()
	defer db.mu.Unlock()
	if err := db.flushLocked(ctx); err != nil {
		return store.StoredEvent{}, fmt.Errorf("correct event: %w", err)
	}
	tx, err := db.w.BeginTx(ctx, nil)
	if err != nil {
		return store.StoredEvent{}, fmt.Errorf("correct event: %w", err)
	}
	defer tx.Rollback()
	rows, err := tx.QueryContext(ctx, "SELECT "+eventColumns+" FROM events WHERE source = ? AND id = ? AND subject = ?", key.Source, key.ID, key.Subject)
	if err != nil {
		return store.StoredEvent{}, fmt.Errorf("correct event: %w", err)
	}
	evs, err := scanEvents(rows)
	if err != nil {
		return store.StoredEvent{}, fmt.Errorf("correct event: %w", err)
	}
	if len(evs) == 0 {
		return store.StoredEvent{}, fmt.Errorf("event source %q id %q subject %q: %w", key.Source, key.ID, key.Subject, store.ErrNotFound)
	}
	if err := attachCorrections(ctx, tx, evs); err != nil {
		return store.StoredEvent{}, fmt.Errorf("correct event: %w", err)
	}
	e := evs[0]
	if err := check(e); err != nil {
		return e, err
	}
	var data []byte
	if c.Kind == store.CorrectionAmend {
		data = c.Data
	}
	if _, err := tx.ExecContext(ctx, "INSERT INTO event_corrections (seq, n, kind, data, reason, actor, at_us) VALUES (?, ?, ?, ?, ?, ?, ?)",
		e.Seq, len(e.Corrections)+1, c.Kind, data, c.Reason, c.Actor, c.At.UnixMicro()); err != nil {
		return e, fmt.Errorf("correct event: %w", err)
	}
	e.Corrections = append(e.Corrections, c)
	// The event's validation errors follow its data.
	cs, err := p.Contributions(e)
	if err != nil {
		return e, fmt.Errorf("correct event: %w", err)
	}
	if _, err := tx.ExecContext(ctx, "DELETE FROM event_errors WHERE seq = ?", e.Seq); err != nil {
		return e, fmt.Errorf("correct event: %w", err)
	}
	var errs []store.EventError
	e.ValidationErrors = nil
	for _, c := range cs {
		if c.Err != "" {
			errs = append(errs, store.EventError{Seq: e.Seq, MeterID: c.MeterID, Message: c.Err})
			e.ValidationErrors = append(e.ValidationErrors, c.Err)
		}
	}
	if err := writeUniquesAndErrors(ctx, tx, nil, errs); err != nil {
		return e, fmt.Errorf("correct event: %w", err)
	}
	minute := store.MinuteOf(e.Time)
	var cells []store.Cell
	for _, id := range p.Meters(e.Type) {
		cells = append(cells, store.Cell{MeterID: id, Subject: e.Subject, Minute: minute})
	}
	marks, err := recomputeCells(ctx, tx, cells, p)
	if err != nil {
		return e, fmt.Errorf("correct event: %w", err)
	}
	n, err := db.writeMarks(ctx, tx, marks)
	if err != nil {
		return e, fmt.Errorf("correct event: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return e, fmt.Errorf("correct event: %w", err)
	}
	db.nextSeq += n
	return e, nil
}

// RecomputeCells implements store.Corrections.
func (db *DB) RecomputeCells(ctx context.Context, cells []store.Cell, p store.Projector) error {
	if len(cells) == 0 {
		return nil
	}
	db.mu.Lock()
	defer db.mu.Unlock()
	if err := db.flushLocked(ctx); err != nil {
		return fmt.Errorf("recompute rollups: %w", err)
	}
	tx, err := db.w.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("recompute rollups: %w", err)
	}
	defer tx.Rollback()
	marks, err := recomputeCells(ctx, tx, cells, p)
	if err != nil {
		return fmt.Errorf("recompute rollups: %w", err)
	}
	n, err := db.writeMarks(ctx, tx, marks)
	if err != nil {
		return fmt.Errorf("recompute rollups: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("recompute rollups: %w", err)
	}
	db.nextSeq += n
	return nil
}

// writeMarks records, with seqs from the events' sequence, the first
// minute changed per subject; the caller adds the count to nextSeq once
// tx commits.
func (db *DB) writeMarks(ctx context.Context, tx *sql.Tx, marks map[string]int64) (int64, error) {
	seq := db.nextSeq
	for _, subject := range slices.Sorted(maps.Keys(marks)) {
		if _, err := tx.ExecContext(ctx, "INSERT INTO correction_marks (seq, subject, time_us) VALUES (?, ?, ?)", seq, subject, marks[subject]*1_000_000); err != nil {
			return 0, fmt.Errorf("record correction: %w", err)
		}
		seq++
	}
	return seq - db.nextSeq, nil
}

// recomputeCells rebuilds cells inside tx and returns the first minute
// changed per subject. The events are read a minute at a time, through
// the index on (time_us, subject): the rows of the subjects asked for
// only, when they are few.
func recomputeCells(ctx context.Context, tx *sql.Tx, cells []store.Cell, p store.Projector) (map[string]int64, error) {
	type place struct {
		subject string
		minute  int64
	}
	byMinute := make(map[int64]map[string]map[string]bool) // minute → subject → meter ids
	var minutes []int64
	for _, c := range cells {
		subs := byMinute[c.Minute]
		if subs == nil {
			subs = make(map[string]map[string]bool)
			byMinute[c.Minute] = subs
			minutes = append(minutes, c.Minute)
		}
		if subs[c.Subject] == nil {
			subs[c.Subject] = make(map[string]bool)
		}
		subs[c.Subject][c.MeterID] = true
	}
	marks := make(map[string]int64)
	delRollups, err := tx.PrepareContext(ctx, "DELETE FROM rollups WHERE meter_id = ? AND subject = ? AND minute = ?")
	if err != nil {
		return nil, err
	}
	defer delRollups.Close()
	delUniques, err := tx.PrepareContext(ctx, "DELETE FROM unique_values WHERE meter_id = ? AND subject = ? AND minute = ?")
	if err != nil {
		return nil, err
	}
	defer delUniques.Close()
	readAll, err := tx.PrepareContext(ctx, "SELECT "+eventColumns+" FROM events WHERE time_us >= ? AND time_us < ?")
	if err != nil {
		return nil, err
	}
	defer readAll.Close()
	states := make(map[string]subjectCells)
	uniques := make(map[uniqueKey]struct{})
	for _, minute := range minutes {
		subs := byMinute[minute]
		from, to := minute*1_000_000, (minute+60)*1_000_000
		var rows *sql.Rows
		if len(subs) <= 200 {
			args := []any{from, to}
			for _, s := range slices.Sorted(maps.Keys(subs)) {
				args = append(args, s)
			}
			rows, err = tx.QueryContext(ctx, "SELECT "+eventColumns+" FROM events WHERE time_us >= ? AND time_us < ? AND subject IN ("+placeholders(len(subs))+")", args...)
		} else {
			rows, err = readAll.QueryContext(ctx, from, to)
		}
		if err != nil {
			return nil, fmt.Errorf("read events: %w", err)
		}
		evs, err := scanEvents(rows)
		if err != nil {
			return nil, fmt.Errorf("read events: %w", err)
		}
		if err := attachCorrections(ctx, tx, evs); err != nil {
			return nil, err
		}
		for subject, meters := range subs {
			for id := range meters {
				if _, err := delRollups.ExecContext(ctx, id, subject, minute); err != nil {
					return nil, fmt.Errorf("clear rollups: %w", err)
				}
				if _, err := delUniques.ExecContext(ctx, id, subject, minute); err != nil {
					return nil, fmt.Errorf("clear distinct values: %w", err)
				}
			}
			if m, ok := marks[subject]; !ok || minute < m {
				marks[subject] = minute
			}
		}
		for _, e := range evs {
			meters := subs[e.Subject]
			if meters == nil {
				continue
			}
			cs, err := p.Contributions(e)
			if err != nil {
				return nil, err
			}
			for _, c := range cs {
				if c.Err != "" || !meters[c.MeterID] {
					continue
				}
				addContributions(states, e.Subject, minute, e.Time.UnixMicro(), e.Seq, []store.Contribution{c})
				if c.Aggregation == meter.UniqueCount {
					uniques[uniqueKey{rollupKey{c.MeterID, e.Subject, c.GroupKey, minute}, c.Unique}] = struct{}{}
				}
			}
		}
	}
	if err := upsertStates(ctx, tx, states, nil); err != nil {
		return nil, err
	}
	if err := writeUniquesAndErrors(ctx, tx, uniques, nil); err != nil {
		return nil, err
	}
	return marks, nil
}

// LastSeq implements store.Corrections.
func (db *DB) LastSeq(ctx context.Context) (int64, error) {
	db.mu.Lock()
	defer db.mu.Unlock()
	return db.nextSeq - 1, nil
}

// scanPage is how many events ScanMatching hands out per read of their
// corrections.
const scanPage = 5000

// ScanMatching implements store.Corrections. It reads with one query on a
// read connection: an event-time range is read through the index on
// (time_us, subject), anything else by scanning the table.
func (db *DB) ScanMatching(ctx context.Context, f store.EventScan, fn func(store.StoredEvent) error) error {
	var where []string
	var args []any
	in := func(col string, vals []string) {
		if len(vals) == 0 {
			return
		}
		where = append(where, col+" IN ("+placeholders(len(vals))+")")
		for _, v := range vals {
			args = append(args, v)
		}
	}
	bound := func(cond string, t time.Time) {
		if !t.IsZero() {
			where = append(where, cond)
			args = append(args, t.UnixMicro())
		}
	}
	in("type", f.Types)
	in("subject", f.Subjects)
	bound("time_us >= ?", f.From)
	bound("time_us < ?", f.To)
	bound("ingested_us >= ?", f.IngestedFrom)
	bound("ingested_us < ?", f.IngestedTo)
	if f.MaxSeq > 0 {
		where = append(where, "seq <= ?")
		args = append(args, f.MaxSeq)
	}
	q := "SELECT " + eventColumns + " FROM events"
	if len(where) > 0 {
		q += " WHERE " + strings.Join(where, " AND ")
	}
	rows, err := db.r.QueryContext(ctx, q, args...)
	if err != nil {
		return fmt.Errorf("scan events: %w", err)
	}
	defer rows.Close()
	page := make([]store.StoredEvent, 0, scanPage)
	emit := func() error {
		if err := attachCorrections(ctx, db.r, page); err != nil {
			return fmt.Errorf("scan events: %w", err)
		}
		for _, e := range page {
			if err := fn(e); err != nil {
				return err
			}
		}
		page = page[:0]
		return nil
	}
	for rows.Next() {
		e, err := scanEvent(rows)
		if err != nil {
			return fmt.Errorf("scan events: %w", err)
		}
		page = append(page, e)
		if len(page) == scanPage {
			if err := emit(); err != nil {
				return err
			}
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("scan events: %w", err)
	}
	return emit()
}

// CreateRule implements store.Corrections.
func (db *DB) CreateRule(ctx context.Context, r store.CancellationRule) error {
	def, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("create rule: %w", err)
	}
	db.mu.Lock()
	defer db.mu.Unlock()
	_, err = db.w.ExecContext(ctx, "INSERT INTO cancellation_rules (id, created_us, def) VALUES (?, ?, ?)", r.ID, r.CreatedAt.UnixMicro(), string(def))
	if isUniqueViolation(err) {
		return fmt.Errorf("rule %s: %w", r.ID, store.ErrConflict)
	}
	if err != nil {
		return fmt.Errorf("create rule: %w", err)
	}
	return nil
}

// UpdateRule implements store.Corrections.
func (db *DB) UpdateRule(ctx context.Context, r store.CancellationRule) error {
	def, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("update rule: %w", err)
	}
	db.mu.Lock()
	defer db.mu.Unlock()
	res, err := db.w.ExecContext(ctx, "UPDATE cancellation_rules SET def = ? WHERE id = ?", string(def), r.ID)
	if err != nil {
		return fmt.Errorf("update rule: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("cancellation rule %s: %w", r.ID, store.ErrNotFound)
	}
	return nil
}

// GetRule implements store.Corrections.
func (db *DB) GetRule(ctx context.Context, id string) (store.CancellationRule, error) {
	var def string
	err := db.r.QueryRowContext(ctx, "SELECT def FROM cancellation_rules WHERE id = ?", id).Scan(&def)
	if errors.Is(err, sql.ErrNoRows) {
		return store.CancellationRule{}, fmt.Errorf("cancellation rule %s: %w", id, store.ErrNotFound)
	}
	if err != nil {
		return store.CancellationRule{}, fmt.Errorf("get rule: %w", err)
	}
	var r store.CancellationRule
	if err := json.Unmarshal([]byte(def), &r); err != nil {
		return r, fmt.Errorf("get rule %s: %w", id, err)
	}
	return r, nil
}

// ListRules implements store.Corrections.
func (db *DB) ListRules(ctx context.Context) ([]store.CancellationRule, error) {
	rows, err := db.r.QueryContext(ctx, "SELECT def FROM cancellation_rules ORDER BY created_us, id")
	if err != nil {
		return nil, fmt.Errorf("list rules: %w", err)
	}
	defer rows.Close()
	var out []store.CancellationRule
	for rows.Next() {
		var def string
		if err := rows.Scan(&def); err != nil {
			return nil, fmt.Errorf("list rules: %w", err)
		}
		var r store.CancellationRule
		if err := json.Unmarshal([]byte(def), &r); err != nil {
			return nil, fmt.Errorf("list rules: %w", err)
		}
		out = append(out, r)
	}
	return out, rows.Err()
}
