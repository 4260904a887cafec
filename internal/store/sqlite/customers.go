package sqlite

import (
	"cmp"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/tally-metering/tally/internal/billing"
	"github.com/tally-metering/tally/internal/store"
)

var _ store.Customers = (*DB)(nil)

// CreateCustomer implements store.Customers.
func (db *DB) CreateCustomer(ctx context.Context, c billing.Customer) error {
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
	if err := claimSubjects(ctx, tx, c.ID, c.Subjects); err != nil {
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("create customer: %w", err)
	}
	return nil
}

// claimSubjects makes subjects (and only those) the customer's.
func claimSubjects(ctx context.Context, tx *sql.Tx, customerID string, subjects []string) error {
	if _, err := tx.ExecContext(ctx, `DELETE FROM customer_subjects WHERE customer_id = ?`, customerID); err != nil {
		return fmt.Errorf("customer subjects: %w", err)
	}
	for _, s := range subjects {
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
	c.CreatedAt = old.CreatedAt
	c.DeletedAt = nil
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
	if err := claimSubjects(ctx, tx, c.ID, c.Subjects); err != nil {
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("update customer: %w", err)
	}
	return nil
}

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
	return c, nil
}

// GetCustomer implements store.Customers.
func (db *DB) GetCustomer(ctx context.Context, idOrKey string) (billing.Customer, error) {
	c, err := scanCustomer(db.r.QueryRowContext(ctx, `SELECT def FROM customers WHERE id = ? OR key = ?
ORDER BY id = ? DESC, deleted_us IS NULL DESC, deleted_us DESC LIMIT 1`, idOrKey, idOrKey, idOrKey))
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
	q := `SELECT def FROM customers WHERE deleted_us IS NULL ORDER BY key, id`
	if includeDeleted {
		q = `SELECT def FROM customers ORDER BY key, id`
	}
	rows, err := db.r.QueryContext(ctx, q)
	if err != nil {
		return nil, fmt.Errorf("list customers: %w", err)
	}
	defer rows.Close()
	out := []billing.Customer{}
	for rows.Next() {
		c, err := scanCustomer(rows)
		if err != nil {
			return nil, fmt.Errorf("list customers: %w", err)
		}
		out = append(out, c)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list customers: %w", err)
	}
	return out, nil
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
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("delete customer: %w", err)
	}
	return nil
}

// CustomerBySubject implements store.Customers.
func (db *DB) CustomerBySubject(ctx context.Context, subject string) (billing.Customer, error) {
	c, err := scanCustomer(db.r.QueryRowContext(ctx, `SELECT c.def FROM customer_subjects s JOIN customers c ON c.id = s.customer_id WHERE s.subject = ?`, subject))
	if errors.Is(err, sql.ErrNoRows) {
		return c, fmt.Errorf("customer of subject %q: %w", subject, store.ErrNotFound)
	}
	if err != nil {
		return c, fmt.Errorf("customer by subject: %w", err)
	}
	return c, nil
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
