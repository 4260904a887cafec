package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/tally-metering/tally/internal/store"
)

var _ store.APIKeys = (*DB)(nil)

const apiKeyColumns = `id, hash, name, prefix, scope, customer_id, subject, created_by, created_us, expires_us, revoked_us, last_used_us`

// CreateAPIKey implements store.APIKeys.
func (db *DB) CreateAPIKey(ctx context.Context, k store.APIKey) error {
	_, err := db.w.ExecContext(ctx, `INSERT INTO api_keys (`+apiKeyColumns+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		k.ID, k.Hash, k.Name, k.Prefix, k.Scope, k.CustomerID, k.Subject, k.CreatedBy, k.CreatedAt.UnixMicro(),
		apiKeyMicros(k.ExpiresAt), apiKeyMicros(k.RevokedAt), apiKeyMicros(k.LastUsedAt))
	if isUniqueViolation(err) {
		return fmt.Errorf("api key %q: %w", k.ID, store.ErrConflict)
	}
	if err != nil {
		return fmt.Errorf("create api key: %w", err)
	}
	return nil
}

// GetAPIKey implements store.APIKeys.
func (db *DB) GetAPIKey(ctx context.Context, id string) (store.APIKey, error) {
	k, err := scanAPIKey(db.r.QueryRowContext(ctx, `SELECT `+apiKeyColumns+` FROM api_keys WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return k, fmt.Errorf("api key %q: %w", id, store.ErrNotFound)
	}
	if err != nil {
		return k, fmt.Errorf("get api key: %w", err)
	}
	return k, nil
}

// APIKeyByHash implements store.APIKeys.
func (db *DB) APIKeyByHash(ctx context.Context, hash string) (store.APIKey, error) {
	k, err := scanAPIKey(db.r.QueryRowContext(ctx, `SELECT `+apiKeyColumns+` FROM api_keys WHERE hash = ?`, hash))
	if errors.Is(err, sql.ErrNoRows) {
		return k, fmt.Errorf("api key: %w", store.ErrNotFound)
	}
	if err != nil {
		return k, fmt.Errorf("find api key: %w", err)
	}
	return k, nil
}

// ListAPIKeys implements store.APIKeys.
func (db *DB) ListAPIKeys(ctx context.Context) ([]store.APIKey, error) {
	rows, err := db.r.QueryContext(ctx, `SELECT `+apiKeyColumns+` FROM api_keys ORDER BY created_us, id`)
	if err != nil {
		return nil, fmt.Errorf("list api keys: %w", err)
	}
	defer rows.Close()
	out := []store.APIKey{}
	for rows.Next() {
		k, err := scanAPIKey(rows)
		if err != nil {
			return nil, fmt.Errorf("list api keys: %w", err)
		}
		out = append(out, k)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list api keys: %w", err)
	}
	return out, nil
}

// RevokeAPIKey implements store.APIKeys.
func (db *DB) RevokeAPIKey(ctx context.Context, id string, at time.Time) (store.APIKey, error) {
	res, err := db.w.ExecContext(ctx, `UPDATE api_keys SET revoked_us = COALESCE(revoked_us, ?) WHERE id = ?`, at.UnixMicro(), id)
	if err != nil {
		return store.APIKey{}, fmt.Errorf("revoke api key: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return store.APIKey{}, fmt.Errorf("api key %q: %w", id, store.ErrNotFound)
	}
	k, err := scanAPIKey(db.w.QueryRowContext(ctx, `SELECT `+apiKeyColumns+` FROM api_keys WHERE id = ?`, id))
	if err != nil {
		return k, fmt.Errorf("revoke api key: %w", err)
	}
	return k, nil
}

// TouchAPIKey implements store.APIKeys.
func (db *DB) TouchAPIKey(ctx context.Context, id string, at time.Time) error {
	res, err := db.w.ExecContext(ctx, `UPDATE api_keys SET last_used_us = MAX(COALESCE(last_used_us, ?), ?) WHERE id = ?`, at.UnixMicro(), at.UnixMicro(), id)
	if err != nil {
		return fmt.Errorf("touch api key: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("api key %q: %w", id, store.ErrNotFound)
	}
	return nil
}

func scanAPIKey(r rowScanner) (store.APIKey, error) {
	var k store.APIKey
	var created int64
	var expires, revoked, used sql.NullInt64
	if err := r.Scan(&k.ID, &k.Hash, &k.Name, &k.Prefix, &k.Scope, &k.CustomerID, &k.Subject, &k.CreatedBy, &created, &expires, &revoked, &used); err != nil {
		return k, err
	}
	k.CreatedAt = time.UnixMicro(created).UTC()
	k.ExpiresAt, k.RevokedAt, k.LastUsedAt = apiKeyTime(expires), apiKeyTime(revoked), apiKeyTime(used)
	return k, nil
}

func apiKeyMicros(t *time.Time) any {
	if t == nil {
		return nil
	}
	return t.UnixMicro()
}

func apiKeyTime(v sql.NullInt64) *time.Time {
	if !v.Valid {
		return nil
	}
	t := time.UnixMicro(v.Int64).UTC()
	return &t
}
