package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/tally-metering/tally/internal/billing"
	"github.com/tally-metering/tally/internal/store"
)

var _ store.Plans = (*DB)(nil)

// CreatePlan implements store.Plans.
func (db *DB) CreatePlan(ctx context.Context, p billing.Plan) error {
	def, err := json.Marshal(p)
	if err != nil {
		return fmt.Errorf("create plan: %w", err)
	}
	tx, err := db.w.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("create plan: %w", err)
	}
	defer tx.Rollback()
	var n int
	if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM plans WHERE id = ? OR key = ?`, p.ID, p.Key).Scan(&n); err != nil {
		return fmt.Errorf("create plan: %w", err)
	}
	if n > 0 {
		return fmt.Errorf("plan %q: %w", p.Key, store.ErrConflict)
	}
	_, err = tx.ExecContext(ctx, `INSERT INTO plans (id, key, version, status, def) VALUES (?, ?, ?, ?, ?)`,
		p.ID, p.Key, p.Version, string(p.Status), string(def))
	if isUniqueViolation(err) {
		return fmt.Errorf("plan %q: %w", p.Key, store.ErrConflict)
	}
	if err != nil {
		return fmt.Errorf("create plan: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("create plan: %w", err)
	}
	return nil
}

func scanPlan(r rowScanner) (billing.Plan, error) {
	var def string
	var p billing.Plan
	if err := r.Scan(&def); err != nil {
		return p, err
	}
	if err := json.Unmarshal([]byte(def), &p); err != nil {
		return p, fmt.Errorf("decode plan: %w", err)
	}
	if p.Charges == nil {
		p.Charges = []billing.PlanCharge{}
	}
	return p, nil
}

// planID resolves an id or key to the plan's id.
func planID(ctx context.Context, q queryer, idOrKey string) (string, error) {
	var id string
	err := q.QueryRowContext(ctx, `SELECT id FROM plans WHERE id = ? OR key = ? ORDER BY id = ? DESC LIMIT 1`, idOrKey, idOrKey, idOrKey).Scan(&id)
	if errors.Is(err, sql.ErrNoRows) {
		return "", fmt.Errorf("plan %q: %w", idOrKey, store.ErrNotFound)
	}
	return id, err
}

func getPlan(ctx context.Context, q queryer, idOrKey string, version int) (billing.Plan, error) {
	id, err := planID(ctx, q, idOrKey)
	if err != nil {
		return billing.Plan{}, err
	}
	var row *sql.Row
	if version == 0 {
		row = q.QueryRowContext(ctx, `SELECT def FROM plans WHERE id = ? ORDER BY version DESC LIMIT 1`, id)
	} else {
		row = q.QueryRowContext(ctx, `SELECT def FROM plans WHERE id = ? AND version = ?`, id, version)
	}
	p, err := scanPlan(row)
	if errors.Is(err, sql.ErrNoRows) {
		return p, fmt.Errorf("plan %q version %d: %w", idOrKey, version, store.ErrNotFound)
	}
	return p, err
}

// GetPlan implements store.Plans.
func (db *DB) GetPlan(ctx context.Context, idOrKey string, version int) (billing.Plan, error) {
	p, err := getPlan(ctx, db.r, idOrKey, version)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return p, fmt.Errorf("get plan: %w", err)
	}
	return p, err
}

// ListPlans implements store.Plans.
func (db *DB) ListPlans(ctx context.Context) ([]billing.Plan, error) {
	return db.listPlans(ctx, "list plans", `SELECT p.def FROM plans p
WHERE p.version = (SELECT MAX(version) FROM plans WHERE id = p.id) ORDER BY p.key, p.id`)
}

// ListPlanVersions implements store.Plans.
func (db *DB) ListPlanVersions(ctx context.Context, idOrKey string) ([]billing.Plan, error) {
	id, err := planID(ctx, db.r, idOrKey)
	if err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return nil, err
		}
		return nil, fmt.Errorf("list plan versions: %w", err)
	}
	return db.listPlans(ctx, "list plan versions", `SELECT def FROM plans WHERE id = ? ORDER BY version`, id)
}

func (db *DB) listPlans(ctx context.Context, what, q string, args ...any) ([]billing.Plan, error) {
	rows, err := db.r.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	defer rows.Close()
	out := []billing.Plan{}
	for rows.Next() {
		p, err := scanPlan(rows)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", what, err)
		}
		out = append(out, p)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	return out, nil
}

// SavePlanDraft implements store.Plans.
func (db *DB) SavePlanDraft(ctx context.Context, p billing.Plan) error {
	return db.SavePlanDraftIf(ctx, p, nil)
}

// SavePlanDraftIf implements store.Plans.
func (db *DB) SavePlanDraftIf(ctx context.Context, p billing.Plan, check func(latest billing.Plan) error) error {
	p.Status = billing.PlanDraft
	p.PublishedAt = nil
	def, err := json.Marshal(p)
	if err != nil {
		return fmt.Errorf("save plan draft: %w", err)
	}
	tx, err := db.w.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("save plan draft: %w", err)
	}
	defer tx.Rollback()
	latest, err := getPlan(ctx, tx, p.ID, 0)
	if err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return err
		}
		return fmt.Errorf("save plan draft: %w", err)
	}
	if check != nil {
		if err := check(latest); err != nil {
			return err
		}
	}
	switch {
	case latest.Key != p.Key:
		return fmt.Errorf("plan %q: the key can't change (it is %q): %w", p.Key, latest.Key, store.ErrConflict)
	case p.Version == latest.Version && !latest.Published():
		_, err = tx.ExecContext(ctx, `UPDATE plans SET def = ? WHERE id = ? AND version = ?`, string(def), p.ID, p.Version)
	case p.Version == latest.Version+1 && latest.Published():
		_, err = tx.ExecContext(ctx, `INSERT INTO plans (id, key, version, status, def) VALUES (?, ?, ?, ?, ?)`,
			p.ID, p.Key, p.Version, string(p.Status), string(def))
	case p.Version <= latest.Version && latest.Published() || p.Version < latest.Version:
		return fmt.Errorf("plan %q version %d is published and can't change; edit version %d: %w", p.Key, p.Version, latest.Version+1, store.ErrConflict)
	default:
		return fmt.Errorf("plan %q: version %d does not follow the latest version %d (%s): %w", p.Key, p.Version, latest.Version, latest.Status, store.ErrConflict)
	}
	if isUniqueViolation(err) {
		return fmt.Errorf("plan %q version %d: %w", p.Key, p.Version, store.ErrConflict)
	}
	if err != nil {
		return fmt.Errorf("save plan draft: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("save plan draft: %w", err)
	}
	return nil
}

// PublishPlan implements store.Plans.
func (db *DB) PublishPlan(ctx context.Context, idOrKey string, version int, at time.Time) (billing.Plan, error) {
	tx, err := db.w.BeginTx(ctx, nil)
	if err != nil {
		return billing.Plan{}, fmt.Errorf("publish plan: %w", err)
	}
	defer tx.Rollback()
	p, err := getPlan(ctx, tx, idOrKey, version)
	if err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return p, err
		}
		return p, fmt.Errorf("publish plan: %w", err)
	}
	if p.Published() {
		return p, nil
	}
	at = at.UTC()
	p.Status = billing.PlanPublished
	p.PublishedAt = &at
	p.UpdatedAt = at
	def, err := json.Marshal(p)
	if err != nil {
		return p, fmt.Errorf("publish plan: %w", err)
	}
	if _, err := tx.ExecContext(ctx, `UPDATE plans SET status = ?, def = ? WHERE id = ? AND version = ?`, string(p.Status), string(def), p.ID, p.Version); err != nil {
		return p, fmt.Errorf("publish plan: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return p, fmt.Errorf("publish plan: %w", err)
	}
	return p, nil
}
