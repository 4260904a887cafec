package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/tally-metering/tally/internal/billing"
	"github.com/tally-metering/tally/internal/store"
)

var _ store.CreditNotes = (*DB)(nil)

// IssueCreditNote implements store.CreditNotes: one transaction reads the
// next number, inserts the note and its invoice index, or finds the note
// stored already under its id.
func (db *DB) IssueCreditNote(ctx context.Context, cn billing.CreditNote) (billing.CreditNote, bool, error) {
	tx, err := db.w.BeginTx(ctx, nil)
	if err != nil {
		return cn, false, fmt.Errorf("issue credit note: %w", err)
	}
	defer tx.Rollback()
	stored, err := scanCreditNote(tx.QueryRowContext(ctx, `SELECT def FROM credit_notes WHERE id = ?`, cn.ID))
	if err == nil {
		return stored, false, nil
	}
	if !errors.Is(err, sql.ErrNoRows) {
		return cn, false, fmt.Errorf("issue credit note %s: %w", cn.ID, err)
	}
	var n int
	if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM subscriptions WHERE id = ?`, cn.SubscriptionID).Scan(&n); err != nil {
		return cn, false, fmt.Errorf("issue credit note: %w", err)
	}
	if n == 0 {
		return cn, false, fmt.Errorf("subscription %q: %w", cn.SubscriptionID, store.ErrNotFound)
	}
	var number int64
	if err := tx.QueryRowContext(ctx, `SELECT COALESCE(MAX(number), 0) + 1 FROM credit_notes`).Scan(&number); err != nil {
		return cn, false, fmt.Errorf("issue credit note: %w", err)
	}
	cn.Number = billing.CreditNoteNumber(number)
	def, err := json.Marshal(cn)
	if err != nil {
		return cn, false, fmt.Errorf("issue credit note %s: %w", cn.ID, err)
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO credit_notes (id, number, subscription_id, customer_id, def) VALUES (?, ?, ?, ?, ?)`,
		cn.ID, number, cn.SubscriptionID, cn.CustomerID, string(def)); err != nil {
		return cn, false, fmt.Errorf("issue credit note %s: %w", cn.ID, err)
	}
	for _, l := range cn.Lines {
		if _, err := tx.ExecContext(ctx, `INSERT INTO credit_note_invoices (credit_note_id, invoice_id) VALUES (?, ?) ON CONFLICT DO NOTHING`, cn.ID, l.Invoice); err != nil {
			return cn, false, fmt.Errorf("issue credit note %s: %w", cn.ID, err)
		}
	}
	if err := tx.Commit(); err != nil {
		return cn, false, fmt.Errorf("issue credit note %s: %w", cn.ID, err)
	}
	// Return what a later read returns (times as decoded from JSON).
	var out billing.CreditNote
	if err := json.Unmarshal(def, &out); err != nil {
		return cn, false, fmt.Errorf("issue credit note %s: %w", cn.ID, err)
	}
	return out, true, nil
}

func scanCreditNote(r rowScanner) (billing.CreditNote, error) {
	return scanDef[billing.CreditNote](r, "credit note")
}

// GetCreditNote implements store.CreditNotes.
func (db *DB) GetCreditNote(ctx context.Context, idOrNumber string) (billing.CreditNote, error) {
	number := int64(-1)
	if rest, ok := strings.CutPrefix(idOrNumber, "CN-"); ok {
		if n, err := strconv.ParseInt(rest, 10, 64); err == nil && billing.CreditNoteNumber(n) == idOrNumber {
			number = n
		}
	}
	cn, err := scanCreditNote(db.r.QueryRowContext(ctx, `SELECT def FROM credit_notes WHERE id = ? OR number = ?`, idOrNumber, number))
	if errors.Is(err, sql.ErrNoRows) {
		return cn, fmt.Errorf("credit note %q: %w", idOrNumber, store.ErrNotFound)
	}
	if err != nil {
		return cn, fmt.Errorf("get credit note: %w", err)
	}
	return cn, nil
}

// ListCreditNotes implements store.CreditNotes.
func (db *DB) ListCreditNotes(ctx context.Context, f store.CreditNoteFilter) ([]billing.CreditNote, error) {
	var where []string
	var args []any
	for _, c := range []eq{{"subscription_id", f.SubscriptionID}, {"customer_id", f.CustomerID}} {
		if c.value != "" {
			where = append(where, c.column+" = ?")
			args = append(args, c.value)
		}
	}
	if f.InvoiceID != "" {
		where = append(where, "id IN (SELECT credit_note_id FROM credit_note_invoices WHERE invoice_id = ?)")
		args = append(args, f.InvoiceID)
	}
	if f.SubscriptionIDs != nil {
		ids := slices.Clone(f.SubscriptionIDs)
		slices.Sort(ids)
		ids = slices.Compact(ids)
		if len(ids) == 0 {
			return []billing.CreditNote{}, nil
		}
		// json_each takes the ids as one parameter, however many there are.
		b, err := json.Marshal(ids)
		if err != nil {
			return nil, fmt.Errorf("list credit notes: %w", err)
		}
		where = append(where, "subscription_id IN (SELECT value FROM json_each(?))")
		args = append(args, string(b))
	}
	q := "SELECT def FROM credit_notes"
	if len(where) > 0 {
		q += " WHERE " + strings.Join(where, " AND ")
	}
	return queryList(ctx, db, "credit note", q+" ORDER BY number", args, scanCreditNote)
}
