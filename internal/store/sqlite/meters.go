package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/tally-metering/tally/internal/meter"
	"github.com/tally-metering/tally/internal/store"
)

// ListMeters implements store.Meters.
func (db *DB) ListMeters(ctx context.Context) ([]meter.Meter, error) {
	rows, err := db.r.QueryContext(ctx, "SELECT def FROM meters ORDER BY slug")
	if err != nil {
		return nil, fmt.Errorf("list meters: %w", err)
	}
	defer rows.Close()
	var out []meter.Meter
	for rows.Next() {
		var def string
		if err := rows.Scan(&def); err != nil {
			return nil, fmt.Errorf("list meters: %w", err)
		}
		var m meter.Meter
		if err := json.Unmarshal([]byte(def), &m); err != nil {
			return nil, fmt.Errorf("list meters: decode: %w", err)
		}
		out = append(out, m)
	}
	return out, rows.Err()
}

// GetMeter implements store.Meters.
func (db *DB) GetMeter(ctx context.Context, idOrSlug string) (meter.Meter, error) {
	var def string
	err := db.r.QueryRowContext(ctx, "SELECT def FROM meters WHERE id = ? OR slug = ? LIMIT 1", idOrSlug, idOrSlug).Scan(&def)
	if errors.Is(err, sql.ErrNoRows) {
		return meter.Meter{}, fmt.Errorf("meter %q: %w", idOrSlug, store.ErrNotFound)
	}
	if err != nil {
		return meter.Meter{}, fmt.Errorf("get meter: %w", err)
	}
	var m meter.Meter
	if err := json.Unmarshal([]byte(def), &m); err != nil {
		return meter.Meter{}, fmt.Errorf("get meter: decode: %w", err)
	}
	return m, nil
}

// CreateMeter implements store.Meters.
func (db *DB) CreateMeter(ctx context.Context, m meter.Meter) error {
	def, err := json.Marshal(m)
	if err != nil {
		return fmt.Errorf("create meter: %w", err)
	}
	_, err = db.w.ExecContext(ctx, "INSERT INTO meters (id, slug, def) VALUES (?, ?, ?)", m.ID, m.Slug, string(def))
	if isUniqueViolation(err) {
		return fmt.Errorf("meter %q: %w", m.Slug, store.ErrConflict)
	}
	if err != nil {
		return fmt.Errorf("create meter: %w", err)
	}
	return nil
}

// UpdateMeter implements store.Meters.
func (db *DB) UpdateMeter(ctx context.Context, m meter.Meter) error {
	def, err := json.Marshal(m)
	if err != nil {
		return fmt.Errorf("update meter: %w", err)
	}
	r, err := db.w.ExecContext(ctx, "UPDATE meters SET slug = ?, def = ? WHERE id = ?", m.Slug, string(def), m.ID)
	if isUniqueViolation(err) {
		return fmt.Errorf("meter %q: %w", m.Slug, store.ErrConflict)
	}
	if err != nil {
		return fmt.Errorf("update meter: %w", err)
	}
	if n, _ := r.RowsAffected(); n == 0 {
		return fmt.Errorf("meter %q: %w", m.ID, store.ErrNotFound)
	}
	return nil
}

// DeleteMeter implements store.Meters.
func (db *DB) DeleteMeter(ctx context.Context, id string) error {
	db.mu.Lock()
	defer db.mu.Unlock()
	if err := db.flushLocked(ctx); err != nil {
		return fmt.Errorf("delete meter: %w", err)
	}
	tx, err := db.w.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("delete meter: %w", err)
	}
	defer tx.Rollback()
	r, err := tx.ExecContext(ctx, "DELETE FROM meters WHERE id = ?", id)
	if err != nil {
		return fmt.Errorf("delete meter: %w", err)
	}
	if n, _ := r.RowsAffected(); n == 0 {
		return fmt.Errorf("meter %q: %w", id, store.ErrNotFound)
	}
	if err := clearDerived(ctx, tx, id); err != nil {
		return fmt.Errorf("delete meter: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("delete meter: %w", err)
	}
	return nil
}

func clearDerived(ctx context.Context, tx *sql.Tx, meterID string) error {
	for _, q := range []string{
		"DELETE FROM rollups WHERE meter_id = ?",
		"DELETE FROM unique_values WHERE meter_id = ?",
		"DELETE FROM event_errors WHERE meter_id = ?",
	} {
		if _, err := tx.ExecContext(ctx, q, meterID); err != nil {
			return err
		}
	}
	return nil
}
