package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/tally-metering/tally/internal/store"
)

var _ store.PortalTokens = (*DB)(nil)

const portalTokenColumns = `id, customer_id, subject, meters, created_by, created_us, expires_us, revoked_us`

// CreatePortalToken implements store.PortalTokens.
func (db *DB) CreatePortalToken(ctx context.Context, t store.PortalToken) error {
	var meters any
	if t.Meters != nil {
		b, err := json.Marshal(t.Meters)
		if err != nil {
			return fmt.Errorf("create portal token: %w", err)
		}
		meters = string(b)
	}
	_, err := db.w.ExecContext(ctx, `INSERT INTO portal_tokens (`+portalTokenColumns+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
		t.ID, t.CustomerID, t.Subject, meters, t.CreatedBy, t.CreatedAt.UnixMicro(), t.ExpiresAt.UnixMicro(), apiKeyMicros(t.RevokedAt))
	if isUniqueViolation(err) {
		return fmt.Errorf("portal token %q: %w", t.ID, store.ErrConflict)
	}
	if err != nil {
		return fmt.Errorf("create portal token: %w", err)
	}
	return nil
}

// GetPortalToken implements store.PortalTokens.
func (db *DB) GetPortalToken(ctx context.Context, id string) (store.PortalToken, error) {
	return db.getPortalToken(ctx, db.r, id)
}

func (db *DB) getPortalToken(ctx context.Context, q interface {
	QueryRowContext(context.Context, string, ...any) *sql.Row
}, id string) (store.PortalToken, error) {
	t, err := scanPortalToken(q.QueryRowContext(ctx, `SELECT `+portalTokenColumns+` FROM portal_tokens WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return t, fmt.Errorf("portal token %q: %w", id, store.ErrNotFound)
	}
	if err != nil {
		return t, fmt.Errorf("get portal token: %w", err)
	}
	return t, nil
}

// ListPortalTokens implements store.PortalTokens.
func (db *DB) ListPortalTokens(ctx context.Context, f store.PortalTokenFilter) ([]store.PortalToken, error) {
	var where []string
	var args []any
	if f.CustomerID != "" {
		where, args = append(where, "customer_id = ?"), append(args, f.CustomerID)
	}
	if !f.ExpiresAfter.IsZero() {
		where, args = append(where, "expires_us > ?"), append(args, f.ExpiresAfter.UnixMicro())
	}
	if f.Revoked {
		where = append(where, "revoked_us IS NOT NULL")
	}
	q := `SELECT ` + portalTokenColumns + ` FROM portal_tokens`
	if len(where) > 0 {
		q += ` WHERE ` + strings.Join(where, " AND ")
	}
	return db.queryPortalTokens(ctx, db.r, q+` ORDER BY created_us, id`, args...)
}

func (db *DB) queryPortalTokens(ctx context.Context, q interface {
	QueryContext(context.Context, string, ...any) (*sql.Rows, error)
}, query string, args ...any) ([]store.PortalToken, error) {
	rows, err := q.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("list portal tokens: %w", err)
	}
	defer rows.Close()
	out := []store.PortalToken{}
	for rows.Next() {
		t, err := scanPortalToken(rows)
		if err != nil {
			return nil, fmt.Errorf("list portal tokens: %w", err)
		}
		out = append(out, t)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list portal tokens: %w", err)
	}
	return out, nil
}

// RevokePortalToken implements store.PortalTokens.
func (db *DB) RevokePortalToken(ctx context.Context, id string, at time.Time) (store.PortalToken, error) {
	res, err := db.w.ExecContext(ctx, `UPDATE portal_tokens SET revoked_us = COALESCE(revoked_us, ?) WHERE id = ?`, at.UnixMicro(), id)
	if err != nil {
		return store.PortalToken{}, fmt.Errorf("revoke portal token: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return store.PortalToken{}, fmt.Errorf("portal token %q: %w", id, store.ErrNotFound)
	}
	return db.getPortalToken(ctx, db.w, id)
}

// RevokeCustomerPortalTokens implements store.PortalTokens.
func (db *DB) RevokeCustomerPortalTokens(ctx context.Context, customerID string, at time.Time) ([]store.PortalToken, error) {
	tx, err := db.w.BeginTx(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("revoke portal tokens: %w", err)
	}
	defer tx.Rollback()
	us := at.UnixMicro()
	ts, err := db.queryPortalTokens(ctx, tx, `SELECT `+portalTokenColumns+` FROM portal_tokens
		WHERE customer_id = ? AND expires_us > ? AND revoked_us IS NULL ORDER BY created_us, id`, customerID, us)
	if err != nil {
		return nil, fmt.Errorf("revoke portal tokens: %w", err)
	}
	if _, err := tx.ExecContext(ctx, `UPDATE portal_tokens SET revoked_us = ?
		WHERE customer_id = ? AND expires_us > ? AND revoked_us IS NULL`, us, customerID, us); err != nil {
		return nil, fmt.Errorf("revoke portal tokens: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return nil, fmt.Errorf("revoke portal tokens: %w", err)
	}
	for i := range ts {
		t := at.UTC()
		ts[i].RevokedAt = &t
	}
	return ts, nil
}

// DeleteExpiredPortalTokens implements store.PortalTokens.
func (db *DB) DeleteExpiredPortalTokens(ctx context.Context, t time.Time) (int, error) {
	res, err := db.w.ExecContext(ctx, `DELETE FROM portal_tokens WHERE expires_us <= ?`, t.UnixMicro())
	if err != nil {
		return 0, fmt.Errorf("delete expired portal tokens: %w", err)
	}
	n, _ := res.RowsAffected()
	return int(n), nil
}

func scanPortalToken(r rowScanner) (store.PortalToken, error) {
	var t store.PortalToken
	var meters sql.NullString
	var created, expires int64
	var revoked sql.NullInt64
	if err := r.Scan(&t.ID, &t.CustomerID, &t.Subject, &meters, &t.CreatedBy, &created, &expires, &revoked); err != nil {
		return t, err
	}
	if meters.Valid {
		if err := json.Unmarshal([]byte(meters.String), &t.Meters); err != nil {
			return t, fmt.Errorf("portal token %q: meters: %w", t.ID, err)
		}
	}
	t.CreatedAt, t.ExpiresAt = time.UnixMicro(created).UTC(), time.UnixMicro(expires).UTC()
	t.RevokedAt = apiKeyTime(revoked)
	return t, nil
}
