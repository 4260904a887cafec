package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/tally-metering/tally/internal/billing"
	"github.com/tally-metering/tally/internal/store"
)

var _ store.Subscriptions = (*DB)(nil)

// CreateSubscription implements store.Subscriptions.
func (db *DB) CreateSubscription(ctx context.Context, s billing.Subscription) error {
	def, err := json.Marshal(s)
	if err != nil {
		return fmt.Errorf("create subscription: %w", err)
	}
	tx, err := db.w.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("create subscription: %w", err)
	}
	defer tx.Rollback()
	exists := func(q string, args ...any) (bool, error) {
		var n int
		if err := tx.QueryRowContext(ctx, q, args...).Scan(&n); err != nil {
			return false, fmt.Errorf("create subscription: %w", err)
		}
		return n > 0, nil
	}
	if ok, err := exists(`SELECT COUNT(*) FROM subscriptions WHERE id = ?`, s.ID); err != nil {
		return err
	} else if ok {
		return fmt.Errorf("subscription %q: %w", s.ID, store.ErrConflict)
	}
	if ok, err := exists(`SELECT COUNT(*) FROM customers WHERE id = ?`, s.CustomerID); err != nil {
		return err
	} else if !ok {
		return fmt.Errorf("customer %q: %w", s.CustomerID, store.ErrNotFound)
	}
	if ok, err := exists(`SELECT COUNT(*) FROM plans WHERE id = ? AND version = ?`, s.PlanID, s.PlanVersion); err != nil {
		return err
	} else if !ok {
		return fmt.Errorf("plan %q version %d: %w", s.PlanID, s.PlanVersion, store.ErrNotFound)
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

func scanSubscription(r rowScanner) (billing.Subscription, error) {
	return scanDef[billing.Subscription](r, "subscription")
}

func getSubscription(ctx context.Context, q queryer, id string) (billing.Subscription, error) {
	s, err := scanSubscription(q.QueryRowContext(ctx, `SELECT def FROM subscriptions WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return s, fmt.Errorf("subscription %q: %w", id, store.ErrNotFound)
	}
	return s, err
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
	return listDefs[billing.Subscription](ctx, db, "subscription", "subscriptions", "start_us, id",
		eq{"customer_id", f.CustomerID}, eq{"plan_id", f.PlanID})
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
	if old.CustomerID != s.CustomerID || old.PlanID != s.PlanID || old.PlanKey != s.PlanKey || old.PlanVersion != s.PlanVersion ||
		old.Cadence != s.Cadence || !old.Start.Equal(s.Start) || old.BillingAnchor != s.BillingAnchor || old.TimeZone != s.TimeZone {
		return fmt.Errorf("subscription %q: only its status, cancellation and plan changes (phases) can change: %w", s.ID, store.ErrConflict)
	}
	s.CreatedAt = old.CreatedAt
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
