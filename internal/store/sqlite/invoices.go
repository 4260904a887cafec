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

var _ store.Invoices = (*DB)(nil)

// SaveInvoice implements store.Invoices.
func (db *DB) SaveInvoice(ctx context.Context, inv billing.Invoice) (billing.Invoice, bool, error) {
	def, err := json.Marshal(inv)
	if err != nil {
		return inv, false, fmt.Errorf("save invoice: %w", err)
	}
	tx, err := db.w.BeginTx(ctx, nil)
	if err != nil {
		return inv, false, fmt.Errorf("save invoice: %w", err)
	}
	defer tx.Rollback()
	var n int
	if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM subscriptions WHERE id = ?`, inv.SubscriptionID).Scan(&n); err != nil {
		return inv, false, fmt.Errorf("save invoice: %w", err)
	}
	if n == 0 {
		return inv, false, fmt.Errorf("subscription %q: %w", inv.SubscriptionID, store.ErrNotFound)
	}
	existing, err := scanInvoice(tx.QueryRowContext(ctx, `SELECT def FROM invoices WHERE id = ? OR (subscription_id = ? AND period_start_us = ?)`,
		inv.ID, inv.SubscriptionID, inv.PeriodStart.UnixMicro()))
	switch {
	case err == nil:
		return existing, false, nil
	case !errors.Is(err, sql.ErrNoRows):
		return inv, false, fmt.Errorf("save invoice: %w", err)
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO invoices (id, subscription_id, customer_id, period_start_us, def) VALUES (?, ?, ?, ?, ?)`,
		inv.ID, inv.SubscriptionID, inv.CustomerID, inv.PeriodStart.UnixMicro(), string(def)); err != nil {
		return inv, false, fmt.Errorf("save invoice: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return inv, false, fmt.Errorf("save invoice: %w", err)
	}
	// Return what a later read returns (times as decoded from JSON).
	var out billing.Invoice
	if err := json.Unmarshal(def, &out); err != nil {
		return inv, false, fmt.Errorf("save invoice: %w", err)
	}
	return out, true, nil
}

func scanInvoice(r rowScanner) (billing.Invoice, error) {
	return scanDef[billing.Invoice](r, "invoice")
}

// GetInvoice implements store.Invoices.
func (db *DB) GetInvoice(ctx context.Context, id string) (billing.Invoice, error) {
	inv, err := scanInvoice(db.r.QueryRowContext(ctx, `SELECT def FROM invoices WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return inv, fmt.Errorf("invoice %q: %w", id, store.ErrNotFound)
	}
	if err != nil {
		return inv, fmt.Errorf("get invoice: %w", err)
	}
	return inv, nil
}

// ListInvoices implements store.Invoices.
func (db *DB) ListInvoices(ctx context.Context, f store.InvoiceFilter) ([]billing.Invoice, error) {
	return listDefs[billing.Invoice](ctx, db, "invoice", "invoices", "period_start_us, subscription_id",
		eq{"subscription_id", f.SubscriptionID}, eq{"customer_id", f.CustomerID})
}
