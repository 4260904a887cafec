package sqlite

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/shopspring/decimal"

	"github.com/tally-metering/tally/internal/meter"
	"github.com/tally-metering/tally/internal/store"
)

func rollupWhere(q store.RollupQuery) (string, []any) {
	where := "meter_id = ? AND minute >= ? AND minute < ?"
	args := []any{q.MeterID, q.From, q.To}
	if len(q.Subjects) > 0 {
		where += " AND subject IN (" + placeholders(len(q.Subjects)) + ")"
		for _, s := range q.Subjects {
			args = append(args, s)
		}
	}
	return where, args
}

// QueryRollups implements store.Rollups.
func (db *DB) QueryRollups(ctx context.Context, q store.RollupQuery) ([]store.Rollup, error) {
	where, args := rollupWhere(q)
	// Hold the overlay while reading the table so that a concurrent flush
	// can't make a delta appear in both or in neither.
	db.ov.mu.RLock()
	defer db.ov.mu.RUnlock()
	rows, err := db.r.QueryContext(ctx, "SELECT subject, group_key, minute, count, sum, min, max, latest, latest_us, latest_seq FROM rollups WHERE "+where, args...)
	if err != nil {
		return nil, fmt.Errorf("query rollups: %w", err)
	}
	defer rows.Close()
	var out []store.Rollup
	for rows.Next() {
		r := store.Rollup{MeterID: q.MeterID}
		var sum, mn, mx, latest string
		if err := rows.Scan(&r.Subject, &r.GroupKey, &r.Minute, &r.State.Count, &sum, &mn, &mx, &latest, &r.State.LatestTime, &r.State.LatestSeq); err != nil {
			return nil, fmt.Errorf("query rollups: %w", err)
		}
		if err := parseDecimals(&r.State, sum, mn, mx, latest); err != nil {
			return nil, fmt.Errorf("query rollups: meter %s subject %s minute %d: %w", q.MeterID, r.Subject, r.Minute, err)
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("query rollups: %w", err)
	}
	return db.ov.appendTo(out, q), nil
}

func parseDecimals(s *meter.State, sum, mn, mx, latest string) error {
	var err error
	if s.Sum, err = parseDecimal(sum); err != nil {
		return err
	}
	if s.Min, err = parseDecimal(mn); err != nil {
		return err
	}
	if s.Max, err = parseDecimal(mx); err != nil {
		return err
	}
	s.Latest, err = parseDecimal(latest)
	return err
}

// parseDecimal reads a stored decimal; "0", the value of every field an
// aggregation does not use, costs nothing.
func parseDecimal(s string) (decimal.Decimal, error) {
	if s == "0" {
		return decimal.Zero, nil
	}
	return decimal.NewFromString(s)
}

// QueryUniqueValues implements store.Rollups.
func (db *DB) QueryUniqueValues(ctx context.Context, q store.RollupQuery) ([]store.UniqueValue, error) {
	where, args := rollupWhere(q)
	rows, err := db.r.QueryContext(ctx, "SELECT subject, group_key, minute, value FROM unique_values WHERE "+where, args...)
	if err != nil {
		return nil, fmt.Errorf("query unique values: %w", err)
	}
	defer rows.Close()
	var out []store.UniqueValue
	for rows.Next() {
		u := store.UniqueValue{MeterID: q.MeterID}
		if err := rows.Scan(&u.Subject, &u.GroupKey, &u.Minute, &u.Value); err != nil {
			return nil, fmt.Errorf("query unique values: %w", err)
		}
		out = append(out, u)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("query unique values: %w", err)
	}
	return out, nil
}

// PutMeter implements store.Rollups.
func (db *DB) PutMeter(ctx context.Context, m meter.Meter, rollups []store.Rollup, uniques []store.UniqueValue, errs []store.EventError) error {
	meterID := m.ID
	def, err := json.Marshal(m)
	if err != nil {
		return fmt.Errorf("put meter: %w", err)
	}
	db.mu.Lock()
	defer db.mu.Unlock()
	// Pending deltas were computed with the old meter set: write them first,
	// so that no replay after a crash mixes them with the new definition.
	if err := db.flushLocked(ctx); err != nil {
		return fmt.Errorf("put meter: %w", err)
	}
	tx, err := db.w.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("put meter: %w", err)
	}
	defer tx.Rollback()
	_, err = tx.ExecContext(ctx, `INSERT INTO meters (id, slug, def) VALUES (?, ?, ?)
 ON CONFLICT (id) DO UPDATE SET slug = excluded.slug, def = excluded.def`, m.ID, m.Slug, string(def))
	if isUniqueViolation(err) {
		return fmt.Errorf("meter %q: %w", m.Slug, store.ErrConflict)
	}
	if err != nil {
		return fmt.Errorf("put meter: %w", err)
	}
	if err := clearDerived(ctx, tx, meterID); err != nil {
		return fmt.Errorf("put meter: %w", err)
	}
	cells := make(subjectCells)
	for i := range rollups {
		r := rollups[i]
		k := cellKey{subject: r.Subject, groupKey: r.GroupKey, minute: r.Minute}
		if cells[r.Subject] == nil {
			cells[r.Subject] = make(map[cellKey]*meter.State)
		}
		if s, ok := cells[r.Subject][k]; ok {
			s.MergeFor(m.Aggregation, r.State)
			continue
		}
		st := r.State
		cells[r.Subject][k] = &st
	}
	us := make(map[uniqueKey]struct{}, len(uniques))
	for _, u := range uniques {
		us[uniqueKey{rollupKey{meterID: meterID, subject: u.Subject, groupKey: u.GroupKey, minute: u.Minute}, u.Value}] = struct{}{}
	}
	for i := range errs {
		errs[i].MeterID = meterID
	}
	if err := upsertStates(ctx, tx, map[string]subjectCells{meterID: cells}, map[string]meter.Aggregation{meterID: m.Aggregation}); err != nil {
		return fmt.Errorf("put meter: %w", err)
	}
	if err := writeUniquesAndErrors(ctx, tx, us, errs); err != nil {
		return fmt.Errorf("put meter: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("put meter: %w", err)
	}
	return nil
}
