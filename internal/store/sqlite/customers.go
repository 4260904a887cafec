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

var _ store.Customers = (*DB)(nil)

// CreateCustomer implements store.Customers.
func (db *DB) CreateCustomer(ctx context.Context, c billing.Customer) error {
	c.SubjectHistory = nil // kept in subject_owners
	c.Version = 1
	def, err := json.Marshal(c)
	if err != nil {
		return fmt.Errorf("create customer: %w", err)
	}
	tx, err := db.w.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("create customer: %w", err)
	}
	defer tx.Rollback()
	_, err = tx.ExecContext(ctx, `INSERT INTO customers (id, key, created_us, deleted_us, def) VALUES (?, ?, ?, NULL, ?)`,
		c.ID, c.Key, c.CreatedAt.UnixMicro(), string(def))
	if isUniqueViolation(err) {
		return fmt.Errorf("customer %q: %w", c.Key, store.ErrConflict)
	}
	if err != nil {
		return fmt.Errorf("create customer: %w", err)
	}
	if err := claimSubjects(ctx, tx, c.ID, c.Subjects, c.CreatedAt); err != nil {
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("create customer: %w", err)
	}
	return nil
}

// claimSubjects makes subjects (and only those) the customer's at at: the
// ones it had and keeps stay as they are, the ones it drops are owned
// until at's minute ends, the new ones from at's minute (see
// store.Customers).
func claimSubjects(ctx context.Context, tx *sql.Tx, customerID string, subjects []string, at time.Time) error {
	had := map[string]bool{}
	rows, err := tx.QueryContext(ctx, `SELECT subject FROM customer_subjects WHERE customer_id = ?`, customerID)
	if err != nil {
		return fmt.Errorf("customer subjects: %w", err)
	}
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			rows.Close()
			return fmt.Errorf("customer subjects: %w", err)
		}
		had[s] = true
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return fmt.Errorf("customer subjects: %w", err)
	}
	keep := make(map[string]bool, len(subjects))
	for _, s := range subjects {
		keep[s] = true
	}
	for s := range had {
		if keep[s] {
			continue
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM customer_subjects WHERE subject = ? AND customer_id = ?`, s, customerID); err != nil {
			return fmt.Errorf("customer subjects: %w", err)
		}
		if err := releaseSubjects(ctx, tx, customerID, s, at); err != nil {
			return err
		}
	}
	for _, s := range subjects {
		if had[s] {
			continue
		}
		var owner string
		err := tx.QueryRowContext(ctx, `SELECT c.key FROM customer_subjects s JOIN customers c ON c.id = s.customer_id WHERE s.subject = ?`, s).Scan(&owner)
		switch {
		case err == nil:
			return &store.SubjectTakenError{Subject: s, Owner: owner}
		case !errors.Is(err, sql.ErrNoRows):
			return fmt.Errorf("customer subjects: %w", err)
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO customer_subjects (subject, customer_id) VALUES (?, ?)`, s, customerID); err != nil {
			return fmt.Errorf("customer subjects: %w", err)
		}
		// A subject nobody owned before is owned since the beginning of
		// time; else from at's minute, or, when that minute is still its
		// last owner's, the minute after (see billing.Ownership).
		from := at.Truncate(time.Minute).UnixMicro()
		if _, err := tx.ExecContext(ctx, `INSERT INTO subject_owners (subject, customer_id, from_us, to_us)
SELECT ?, ?, CASE WHEN COUNT(*) = 0 THEN NULL ELSE MAX(?, COALESCE(MAX(to_us), ?)) END, NULL
FROM subject_owners WHERE subject = ?`, s, customerID, from, from, s); err != nil {
			return fmt.Errorf("customer subjects: %w", err)
		}
	}
	return nil
}

// releaseSubjects ends the customer's current ownership of subject (of
// every subject it owns when subject is "") at the end of at's minute
// (see billing.Ownership), never before it began.
func releaseSubjects(ctx context.Context, tx *sql.Tx, customerID, subject string, at time.Time) error {
	to := at.Truncate(time.Minute)
	if to.Before(at) {
		to = to.Add(time.Minute)
	}
	q := `UPDATE subject_owners SET to_us = MAX(?, COALESCE(from_us, ?)) WHERE customer_id = ? AND to_us IS NULL`
	args := []any{to.UnixMicro(), to.UnixMicro(), customerID}
	if subject != "" {
		q += ` AND subject = ?`
		args = append(args, subject)
	}
	if _, err := tx.ExecContext(ctx, q, args...); err != nil {
		return fmt.Errorf("customer subjects: %w", err)
	}
	return nil
}

// UpdateCustomer implements store.Customers.
func (db *DB) UpdateCustomer(ctx context.Context, c billing.Customer) error {
	tx, err := db.w.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("update customer: %w", err)
	}
	defer tx.Rollback()
	old, err := scanCustomer(tx.QueryRowContext(ctx, `SELECT def FROM customers WHERE id = ? AND deleted_us IS NULL`, c.ID))
	if errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("customer %q: %w", c.ID, store.ErrNotFound)
	}
	if err != nil {
		return fmt.Errorf("update customer: %w", err)
	}
	if c.Version > 0 && c.Version != old.Version {
		return &store.StaleError{What: "customer", ID: c.ID, Read: c.Version, Stored: old.Version}
	}
	c.Version = old.Version + 1
	c.CreatedAt = old.CreatedAt
	c.DeletedAt = nil
	c.SubjectHistory = nil // kept in subject_owners
	def, err := json.Marshal(c)
	if err != nil {
		return fmt.Errorf("update customer: %w", err)
	}
	_, err = tx.ExecContext(ctx, `UPDATE customers SET key = ?, def = ? WHERE id = ?`, c.Key, string(def), c.ID)
	if isUniqueViolation(err) {
		return fmt.Errorf("customer %q: %w", c.Key, store.ErrConflict)
	}
	if err != nil {
		return fmt.Errorf("update customer: %w", err)
	}
	if err := claimSubjects(ctx, tx, c.ID, c.Subjects, c.UpdatedAt); err != nil {
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("update customer: %w", err)
	}
	return nil
}

// scanCustomer reads a customer from its def alone, without its subject
// history.
func scanCustomer(r rowScanner) (billing.Customer, error) {
	var def string
	var c billing.Customer
	if err := r.Scan(&def); err != nil {
		return c, err
	}
	if err := json.Unmarshal([]byte(def), &c); err != nil {
		return c, fmt.Errorf("decode customer: %w", err)
	}
	if c.Subjects == nil {
		c.Subjects = []string{}
	}
	if c.Version == 0 { // stored before versions were counted
		c.Version = 1
	}
	c.SubjectHistory = []billing.Ownership{}
	return c, nil
}

// customerCols are the columns scanCustomerFull reads, from customers c: its
// def and its subject history as a JSON array of [subject, from_us, to_us].
const customerCols = `c.def, (SELECT json_group_array(json_array(o.subject, o.from_us, o.to_us)) FROM subject_owners o WHERE o.customer_id = c.id)`

// scanCustomerFull reads a customer and its subject history (customerCols).
func scanCustomerFull(r rowScanner) (billing.Customer, error) {
	var def, hist string
	var c billing.Customer
	if err := r.Scan(&def, &hist); err != nil {
		return c, err
	}
	if err := json.Unmarshal([]byte(def), &c); err != nil {
		return c, fmt.Errorf("decode customer: %w", err)
	}
	if c.Subjects == nil {
		c.Subjects = []string{}
	}
	if c.Version == 0 { // stored before versions were counted
		c.Version = 1
	}
	var rows [][3]json.RawMessage
	if err := json.Unmarshal([]byte(hist), &rows); err != nil {
		return c, fmt.Errorf("decode customer %s subject history: %w", c.ID, err)
	}
	c.SubjectHistory = make([]billing.Ownership, 0, len(rows))
	for _, row := range rows {
		var o billing.Ownership
		var from, to *int64
		if err := errors.Join(json.Unmarshal(row[0], &o.Subject), json.Unmarshal(row[1], &from), json.Unmarshal(row[2], &to)); err != nil {
			return c, fmt.Errorf("decode customer %s subject history: %w", c.ID, err)
		}
		if from != nil {
			t := time.UnixMicro(*from).UTC()
			o.From = &t
		}
		if to != nil {
			t := time.UnixMicro(*to).UTC()
			o.To = &t
		}
		c.SubjectHistory = append(c.SubjectHistory, o)
	}
	slices.SortFunc(c.SubjectHistory, func(a, b billing.Ownership) int {
		switch {
		case a.From == nil && b.From != nil:
			return -1
		case a.From != nil && b.From == nil:
			return 1
		case a.From != nil && !a.From.Equal(*b.From):
			return a.From.Compare(*b.From)
		}
		return strings.Compare(a.Subject, b.Subject)
	})
	return c, nil
}

// GetCustomer implements store.Customers.
func (db *DB) GetCustomer(ctx context.Context, idOrKey string) (billing.Customer, error) {
	c, err := scanCustomerFull(db.r.QueryRowContext(ctx, `SELECT `+customerCols+` FROM customers c WHERE c.id = ? OR c.key = ?
ORDER BY c.id = ? DESC, c.deleted_us IS NULL DESC, c.deleted_us DESC LIMIT 1`, idOrKey, idOrKey, idOrKey))
	if errors.Is(err, sql.ErrNoRows) {
		return c, fmt.Errorf("customer %q: %w", idOrKey, store.ErrNotFound)
	}
	if err != nil {
		return c, fmt.Errorf("get customer: %w", err)
	}
	return c, nil
}

// ListCustomers implements store.Customers.
func (db *DB) ListCustomers(ctx context.Context, includeDeleted bool) ([]billing.Customer, error) {
	return db.ListCustomerPage(ctx, store.CustomerPage{IncludeDeleted: includeDeleted})
}

// ListCustomerPage implements store.Customers.
func (db *DB) ListCustomerPage(ctx context.Context, p store.CustomerPage) ([]billing.Customer, error) {
	var where []string
	var args []any
	if !p.IncludeDeleted {
		where = append(where, `c.deleted_us IS NULL`)
	}
	if p.AfterID != "" {
		where = append(where, `(c.key, c.id) > (?, ?)`)
		args = append(args, p.AfterKey, p.AfterID)
	}
	q := `SELECT ` + customerCols + ` FROM customers c`
	if len(where) > 0 {
		q += ` WHERE ` + strings.Join(where, ` AND `)
	}
	q += ` ORDER BY c.key, c.id`
	if p.Limit > 0 {
		q += ` LIMIT ?`
		args = append(args, p.Limit)
	}
	return queryList(ctx, db, "customer", q, args, scanCustomerFull)
}

// DeleteCustomer implements store.Customers.
func (db *DB) DeleteCustomer(ctx context.Context, id string, at time.Time) error {
	tx, err := db.w.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("delete customer: %w", err)
	}
	defer tx.Rollback()
	c, err := scanCustomer(tx.QueryRowContext(ctx, `SELECT def FROM customers WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("customer %q: %w", id, store.ErrNotFound)
	}
	if err != nil {
		return fmt.Errorf("delete customer: %w", err)
	}
	if c.DeletedAt != nil {
		return nil
	}
	at = at.UTC()
	c.DeletedAt = &at
	c.UpdatedAt = at
	c.Version++
	c.SubjectHistory = nil
	def, err := json.Marshal(c)
	if err != nil {
		return fmt.Errorf("delete customer: %w", err)
	}
	if _, err := tx.ExecContext(ctx, `UPDATE customers SET deleted_us = ?, def = ? WHERE id = ?`, at.UnixMicro(), string(def), id); err != nil {
		return fmt.Errorf("delete customer: %w", err)
	}
	if _, err := tx.ExecContext(ctx, `DELETE FROM customer_subjects WHERE customer_id = ?`, id); err != nil {
		return fmt.Errorf("delete customer: %w", err)
	}
	if err := releaseSubjects(ctx, tx, id, "", at); err != nil {
		return fmt.Errorf("delete customer: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("delete customer: %w", err)
	}
	return nil
}

// CustomerBySubject implements store.Customers.
func (db *DB) CustomerBySubject(ctx context.Context, subject string) (billing.Customer, error) {
	c, err := scanCustomerFull(db.r.QueryRowContext(ctx, `SELECT `+customerCols+` FROM customer_subjects s JOIN customers c ON c.id = s.customer_id WHERE s.subject = ?`, subject))
	if errors.Is(err, sql.ErrNoRows) {
		return c, fmt.Errorf("customer of subject %q: %w", subject, store.ErrNotFound)
	}
	if err != nil {
		return c, fmt.Errorf("customer by subject: %w", err)
	}
	return c, nil
}

// CustomersOfSubject implements store.Customers.
func (db *DB) CustomersOfSubject(ctx context.Context, subject string) ([]string, error) {
	rows, err := db.r.QueryContext(ctx, `SELECT DISTINCT customer_id FROM subject_owners WHERE subject = ? ORDER BY customer_id`, subject)
	if err != nil {
		return nil, fmt.Errorf("customers of subject: %w", err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, fmt.Errorf("customers of subject: %w", err)
		}
		out = append(out, id)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("customers of subject: %w", err)
	}
	return out, nil
}

// CreateUser implements store.Customers.
func (db *DB) CreateUser(ctx context.Context, u billing.User) error {
	def, err := json.Marshal(u)
	if err != nil {
		return fmt.Errorf("create user: %w", err)
	}
	tx, err := db.w.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("create user: %w", err)
	}
	defer tx.Rollback()
	var n int
	if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM customers WHERE id = ? AND deleted_us IS NULL`, u.CustomerID).Scan(&n); err != nil {
		return fmt.Errorf("create user: %w", err)
	}
	if n == 0 {
		return fmt.Errorf("customer %q: %w", u.CustomerID, store.ErrNotFound)
	}
	_, err = tx.ExecContext(ctx, `INSERT INTO customer_users (id, customer_id, key, email, created_us, def) VALUES (?, ?, ?, ?, ?, ?)`,
		u.ID, u.CustomerID, u.Key, u.Email, u.CreatedAt.UnixMicro(), string(def))
	if isUniqueViolation(err) {
		return fmt.Errorf("user %q of customer %q: %w", cmp.Or(u.Key, u.Email), u.CustomerID, store.ErrConflict)
	}
	if err != nil {
		return fmt.Errorf("create user: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("create user: %w", err)
	}
	return nil
}

// ListUsers implements store.Customers.
func (db *DB) ListUsers(ctx context.Context, customerID string) ([]billing.User, error) {
	rows, err := db.r.QueryContext(ctx, `SELECT def FROM customer_users WHERE customer_id = ? ORDER BY created_us, id`, customerID)
	if err != nil {
		return nil, fmt.Errorf("list users: %w", err)
	}
	defer rows.Close()
	out := []billing.User{}
	for rows.Next() {
		var def string
		if err := rows.Scan(&def); err != nil {
			return nil, fmt.Errorf("list users: %w", err)
		}
		var u billing.User
		if err := json.Unmarshal([]byte(def), &u); err != nil {
			return nil, fmt.Errorf("list users: decode: %w", err)
		}
		out = append(out, u)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list users: %w", err)
	}
	return out, nil
}
