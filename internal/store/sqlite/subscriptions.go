package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/tally-metering/tally/internal/billing"
	"github.com/tally-metering/tally/internal/store"
)

var _ store.Subscriptions = (*DB)(nil)

// Subscription writes check what they write against the state they write
// over inside their transaction, reading through it: a write transaction
// holds the only writer connection and begins IMMEDIATE (the write lock is
// taken before the first read), so no other write can come in between the
// check and the write.

// CreateSubscription implements store.Subscriptions.
func (db *DB) CreateSubscription(ctx context.Context, s billing.Subscription) error {
	s.Version = 1
	def, err := json.Marshal(s)
	if err != nil {
		return fmt.Errorf("create subscription: %w", err)
	}
	tx, err := db.w.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("create subscription: %w", err)
	}
	defer tx.Rollback()
	var n int
	if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM subscriptions WHERE id = ?`, s.ID).Scan(&n); err != nil {
		return fmt.Errorf("create subscription: %w", err)
	} else if n > 0 {
		return fmt.Errorf("subscription %q: %w", s.ID, store.ErrConflict)
	}
	c, err := scanCustomer(tx.QueryRowContext(ctx, `SELECT def FROM customers WHERE id = ?`, s.CustomerID))
	if errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("customer %q: %w", s.CustomerID, store.ErrNotFound)
	} else if err != nil {
		return fmt.Errorf("create subscription: %w", err)
	}
	p, err := scanPlan(tx.QueryRowContext(ctx, `SELECT def FROM plans WHERE id = ? AND version = ?`, s.PlanID, s.PlanVersion))
	if errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("plan %q version %d: %w", s.PlanID, s.PlanVersion, store.ErrNotFound)
	} else if err != nil {
		return fmt.Errorf("create subscription: %w", err)
	}
	others, err := customerSubscriptions(ctx, tx, s.CustomerID)
	if err != nil {
		return fmt.Errorf("create subscription: %w", err)
	}
	if err := billing.CheckNewSubscription(c, p, s, others); err != nil {
		return err
	}
	_, err = tx.ExecContext(ctx, `INSERT INTO subscriptions (id, customer_id, plan_id, plan_version, start_us, status, def) VALUES (?, ?, ?, ?, ?, ?, ?)`,
		s.ID, s.CustomerID, s.PlanID, s.PlanVersion, s.Start.UnixMicro(), string(s.Status), string(def))
	if err != nil {
		return fmt.Errorf("create subscription: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("create subscription: %w", err)
	}
	return nil
}

// scanSubscription reads a subscription's def. One stored before versions
// were counted has none, and reads as version 1.
func scanSubscription(r rowScanner) (billing.Subscription, error) {
	s, err := scanDef[billing.Subscription](r, "subscription")
	if s.Version == 0 {
		s.Version = 1
	}
	return s, err
}

func getSubscription(ctx context.Context, q queryer, id string) (billing.Subscription, error) {
	s, err := scanSubscription(q.QueryRowContext(ctx, `SELECT def FROM subscriptions WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return s, fmt.Errorf("subscription %q: %w", id, store.ErrNotFound)
	}
	return s, err
}

// customerSubscriptions reads every subscription of a customer.
func customerSubscriptions(ctx context.Context, tx *sql.Tx, customerID string) ([]billing.Subscription, error) {
	rows, err := tx.QueryContext(ctx, `SELECT def FROM subscriptions WHERE customer_id = ? ORDER BY start_us, id`, customerID)
	if err != nil {
		return nil, fmt.Errorf("list subscriptions of customer %s: %w", customerID, err)
	}
	defer rows.Close()
	var out []billing.Subscription
	for rows.Next() {
		s, err := scanSubscription(rows)
		if err != nil {
			return nil, fmt.Errorf("list subscriptions of customer %s: %w", customerID, err)
		}
		out = append(out, s)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list subscriptions of customer %s: %w", customerID, err)
	}
	return out, nil
}

// GetSubscription implements store.Subscriptions.
func (db *DB) GetSubscription(ctx context.Context, id string) (billing.Subscription, error) {
	s, err := getSubscription(ctx, db.r, id)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return s, fmt.Errorf("get subscription: %w", err)
	}
	return s, err
}

// ListSubscriptions implements store.Subscriptions.
func (db *DB) ListSubscriptions(ctx context.Context, f store.SubscriptionFilter) ([]billing.Subscription, error) {
	var where []string
	var args []any
	for _, c := range []eq{{"customer_id", f.CustomerID}, {"plan_id", f.PlanID}} {
		if c.value != "" {
			where = append(where, c.column+" = ?")
			args = append(args, c.value)
		}
	}
	if f.AfterID != "" {
		where = append(where, "(start_us, id) > (?, ?)")
		args = append(args, f.AfterStart.UnixMicro(), f.AfterID)
	}
	q := "SELECT def FROM subscriptions"
	if len(where) > 0 {
		q += " WHERE " + strings.Join(where, " AND ")
	}
	q += " ORDER BY start_us, id"
	if f.Limit > 0 {
		q += " LIMIT ?"
		args = append(args, f.Limit)
	}
	rows, err := db.r.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("list subscriptions: %w", err)
	}
	defer rows.Close()
	subs := []billing.Subscription{}
	for rows.Next() {
		s, err := scanSubscription(rows)
		if err != nil {
			return nil, fmt.Errorf("list subscriptions: %w", err)
		}
		subs = append(subs, s)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list subscriptions: %w", err)
	}
	return subs, nil
}

// UpdateSubscription implements store.Subscriptions.
func (db *DB) UpdateSubscription(ctx context.Context, s billing.Subscription) error {
	tx, err := db.w.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("update subscription: %w", err)
	}
	defer tx.Rollback()
	old, err := getSubscription(ctx, tx, s.ID)
	if err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return err
		}
		return fmt.Errorf("update subscription: %w", err)
	}
	if old.Version != s.Version {
		return &store.StaleError{What: "subscription", ID: s.ID, Read: s.Version, Stored: old.Version}
	}
	if old.CustomerID != s.CustomerID || old.PlanID != s.PlanID || old.PlanKey != s.PlanKey || old.PlanVersion != s.PlanVersion ||
		old.Cadence != s.Cadence || !old.Start.Equal(s.Start) || old.BillingAnchor != s.BillingAnchor || old.TimeZone != s.TimeZone {
		return fmt.Errorf("subscription %q: only its status, cancellation and plan changes (phases) can change: %w", s.ID, store.ErrConflict)
	}
	c, err := scanCustomer(tx.QueryRowContext(ctx, `SELECT def FROM customers WHERE id = ?`, s.CustomerID))
	if err != nil {
		return fmt.Errorf("update subscription: customer %s: %w", s.CustomerID, err)
	}
	others, err := customerSubscriptions(ctx, tx, s.CustomerID)
	if err != nil {
		return fmt.Errorf("update subscription: %w", err)
	}
	if err := billing.CheckNoOverlap(c, &old, s, others); err != nil {
		return err
	}
	s.CreatedAt = old.CreatedAt
	s.Version = old.Version + 1
	def, err := json.Marshal(s)
	if err != nil {
		return fmt.Errorf("update subscription: %w", err)
	}
	if _, err := tx.ExecContext(ctx, `UPDATE subscriptions SET status = ?, def = ? WHERE id = ?`, string(s.Status), string(def), s.ID); err != nil {
		return fmt.Errorf("update subscription: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("update subscription: %w", err)
	}
	return nil
}
