package sqlite

import (
	"cmp"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/tally-metering/tally/internal/billing"
	"github.com/tally-metering/tally/internal/store"
)

var _ store.Invoices = (*DB)(nil)

// SaveInvoice implements store.Invoices.
func (db *DB) SaveInvoice(ctx context.Context, inv billing.Invoice) (billing.Invoice, bool, error) {
	out, err := db.saveInvoices(ctx, "save invoice", []billing.Invoice{inv})
	if err != nil {
		return inv, false, err
	}
	return out[0].Invoice, out[0].Created, nil
}

// SaveInvoices implements store.Invoices.
func (db *DB) SaveInvoices(ctx context.Context, invs []billing.Invoice) ([]store.SavedInvoice, error) {
	if len(invs) == 0 {
		return []store.SavedInvoice{}, nil
	}
	return db.saveInvoices(ctx, "save invoices", invs)
}

// saveInvoices stores invs in one transaction with statements prepared
// once: one insert per invoice that a uniqueness conflict (same id, or same
// subscription and period start) turns into a no-op, and a read of the
// stored invoice only for those.
func (db *DB) saveInvoices(ctx context.Context, what string, invs []billing.Invoice) ([]store.SavedInvoice, error) {
	defs := make([][]byte, len(invs))
	for i, inv := range invs {
		def, err := json.Marshal(inv)
		if err != nil {
			return nil, fmt.Errorf("%s: invoice %s: %w", what, inv.ID, err)
		}
		defs[i] = def
	}
	tx, err := db.w.BeginTx(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	defer tx.Rollback()
	prepare := func(q string) (*sql.Stmt, error) {
		st, err := tx.PrepareContext(ctx, q)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", what, err)
		}
		return st, nil
	}
	subExists, err := prepare(`SELECT COUNT(*) FROM subscriptions WHERE id = ?`)
	if err != nil {
		return nil, err
	}
	defer subExists.Close()
	insert, err := prepare(`INSERT INTO invoices (id, subscription_id, customer_id, period_start_us, def) VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING`)
	if err != nil {
		return nil, err
	}
	defer insert.Close()
	existing, err := prepare(`SELECT def FROM invoices WHERE id = ? OR (subscription_id = ? AND period_start_us = ?)`)
	if err != nil {
		return nil, err
	}
	defer existing.Close()

	known := make(map[string]bool)
	out := make([]store.SavedInvoice, len(invs))
	for i, inv := range invs {
		if !known[inv.SubscriptionID] {
			var n int
			if err := subExists.QueryRowContext(ctx, inv.SubscriptionID).Scan(&n); err != nil {
				return nil, fmt.Errorf("%s: %w", what, err)
			}
			if n == 0 {
				return nil, fmt.Errorf("subscription %q: %w", inv.SubscriptionID, store.ErrNotFound)
			}
			known[inv.SubscriptionID] = true
		}
		res, err := insert.ExecContext(ctx, inv.ID, inv.SubscriptionID, inv.CustomerID, inv.PeriodStart.UnixMicro(), string(defs[i]))
		if err != nil {
			return nil, fmt.Errorf("%s: invoice %s: %w", what, inv.ID, err)
		}
		n, err := res.RowsAffected()
		if err != nil {
			return nil, fmt.Errorf("%s: %w", what, err)
		}
		if n == 0 {
			stored, err := scanInvoice(existing.QueryRowContext(ctx, inv.ID, inv.SubscriptionID, inv.PeriodStart.UnixMicro()))
			if err != nil {
				return nil, fmt.Errorf("%s: invoice %s: %w", what, inv.ID, err)
			}
			out[i] = store.SavedInvoice{Invoice: stored}
			continue
		}
		// Return what a later read returns (times as decoded from JSON).
		var stored billing.Invoice
		if err := json.Unmarshal(defs[i], &stored); err != nil {
			return nil, fmt.Errorf("%s: invoice %s: %w", what, inv.ID, err)
		}
		out[i] = store.SavedInvoice{Invoice: stored, Created: true}
	}
	if err := tx.Commit(); err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	return out, nil
}

// InvoicedPeriods implements store.Invoices. It reads only the
// (subscription_id, period_start_us) index.
func (db *DB) InvoicedPeriods(ctx context.Context) (map[string][]time.Time, error) {
	rows, err := db.r.QueryContext(ctx, `SELECT subscription_id, period_start_us FROM invoices ORDER BY subscription_id, period_start_us`)
	if err != nil {
		return nil, fmt.Errorf("invoiced periods: %w", err)
	}
	defer rows.Close()
	out := make(map[string][]time.Time)
	for rows.Next() {
		var sub string
		var us int64
		if err := rows.Scan(&sub, &us); err != nil {
			return nil, fmt.Errorf("invoiced periods: %w", err)
		}
		out[sub] = append(out[sub], time.UnixMicro(us).UTC())
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("invoiced periods: %w", err)
	}
	return out, nil
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

// maxListIDs bounds the subscription ids bound into one query of
// ListInvoices (SQLite limits a statement's parameters).
const maxListIDs = 500

// ListInvoices implements store.Invoices.
func (db *DB) ListInvoices(ctx context.Context, f store.InvoiceFilter) ([]billing.Invoice, error) {
	if len(f.SubscriptionIDs) == 0 {
		return listDefs[billing.Invoice](ctx, db, "invoice", "invoices", "period_start_us, subscription_id",
			eq{"subscription_id", f.SubscriptionID}, eq{"customer_id", f.CustomerID})
	}
	ids := slices.Clone(f.SubscriptionIDs)
	slices.Sort(ids)
	ids = slices.Compact(ids)
	out := []billing.Invoice{}
	for len(ids) > 0 {
		part := ids[:min(len(ids), maxListIDs)]
		ids = ids[len(part):]
		where := []string{"subscription_id IN (" + placeholders(len(part)) + ")"}
		args := make([]any, 0, len(part)+2)
		for _, id := range part {
			args = append(args, id)
		}
		for _, c := range []eq{{"subscription_id", f.SubscriptionID}, {"customer_id", f.CustomerID}} {
			if c.value != "" {
				where = append(where, c.column+" = ?")
				args = append(args, c.value)
			}
		}
		rows, err := db.r.QueryContext(ctx, "SELECT def FROM invoices WHERE "+strings.Join(where, " AND "), args...)
		if err != nil {
			return nil, fmt.Errorf("list invoices: %w", err)
		}
		for rows.Next() {
			inv, err := scanInvoice(rows)
			if err != nil {
				rows.Close()
				return nil, fmt.Errorf("list invoices: %w", err)
			}
			out = append(out, inv)
		}
		err = rows.Err()
		rows.Close()
		if err != nil {
			return nil, fmt.Errorf("list invoices: %w", err)
		}
	}
	slices.SortFunc(out, func(a, b billing.Invoice) int {
		return cmp.Or(a.PeriodStart.Compare(b.PeriodStart), cmp.Compare(a.SubscriptionID, b.SubscriptionID))
	})
	return out, nil
}
