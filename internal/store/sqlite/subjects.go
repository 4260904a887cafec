package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/tally-metering/tally/internal/store"
)

// UpsertSubjects implements store.Subjects.
func (db *DB) UpsertSubjects(ctx context.Context, subjects []store.Subject, now time.Time) ([]store.Subject, error) {
	tx, err := db.w.BeginTx(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("upsert subjects: %w", err)
	}
	defer tx.Rollback()
	nowUS := now.UnixMicro()
	for _, s := range subjects {
		var meta any
		if s.Metadata != nil {
			b, err := json.Marshal(s.Metadata)
			if err != nil {
				return nil, fmt.Errorf("upsert subjects: %w", err)
			}
			meta = string(b)
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO subjects (key, display_name, metadata, stripe_customer_id, created_us, updated_us)
VALUES (?, ?, ?, ?, ?, ?)
ON CONFLICT (key) DO UPDATE SET display_name = excluded.display_name, metadata = excluded.metadata,
 stripe_customer_id = excluded.stripe_customer_id, updated_us = excluded.updated_us`,
			s.Key, s.DisplayName, meta, s.StripeCustomerID, nowUS, nowUS); err != nil {
			return nil, fmt.Errorf("upsert subject %q: %w", s.Key, err)
		}
	}
	out := make([]store.Subject, 0, len(subjects))
	for _, s := range subjects {
		got, err := getSubject(ctx, tx, s.Key)
		if err != nil {
			return nil, fmt.Errorf("upsert subjects: %w", err)
		}
		out = append(out, got)
	}
	if err := tx.Commit(); err != nil {
		return nil, fmt.Errorf("upsert subjects: %w", err)
	}
	return out, nil
}

type queryer interface {
	QueryRowContext(ctx context.Context, q string, args ...any) *sql.Row
}

const subjectCols = "key, display_name, metadata, stripe_customer_id, created_us, updated_us"

type rowScanner interface{ Scan(dest ...any) error }

func scanSubject(r rowScanner) (store.Subject, error) {
	var s store.Subject
	var name, meta, stripe sql.NullString
	var created, updated int64
	if err := r.Scan(&s.Key, &name, &meta, &stripe, &created, &updated); err != nil {
		return s, err
	}
	if name.Valid {
		s.DisplayName = &name.String
	}
	if stripe.Valid {
		s.StripeCustomerID = &stripe.String
	}
	if meta.Valid {
		if err := json.Unmarshal([]byte(meta.String), &s.Metadata); err != nil {
			return s, fmt.Errorf("decode metadata of subject %q: %w", s.Key, err)
		}
	}
	s.CreatedAt = time.UnixMicro(created).UTC()
	s.UpdatedAt = time.UnixMicro(updated).UTC()
	return s, nil
}

func getSubject(ctx context.Context, q queryer, key string) (store.Subject, error) {
	s, err := scanSubject(q.QueryRowContext(ctx, "SELECT "+subjectCols+" FROM subjects WHERE key = ?", key))
	if errors.Is(err, sql.ErrNoRows) {
		return s, fmt.Errorf("subject %q: %w", key, store.ErrNotFound)
	}
	return s, err
}

// ListSubjects implements store.Subjects.
func (db *DB) ListSubjects(ctx context.Context) ([]store.Subject, error) {
	rows, err := db.r.QueryContext(ctx, "SELECT "+subjectCols+" FROM subjects ORDER BY key")
	if err != nil {
		return nil, fmt.Errorf("list subjects: %w", err)
	}
	defer rows.Close()
	var out []store.Subject
	for rows.Next() {
		s, err := scanSubject(rows)
		if err != nil {
			return nil, fmt.Errorf("list subjects: %w", err)
		}
		out = append(out, s)
	}
	return out, rows.Err()
}

// GetSubject implements store.Subjects.
func (db *DB) GetSubject(ctx context.Context, key string) (store.Subject, error) {
	s, err := getSubject(ctx, db.r, key)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return s, fmt.Errorf("get subject: %w", err)
	}
	return s, err
}

// DeleteSubject implements store.Subjects. Events and usage of the subject
// are kept: they are the record of what happened.
func (db *DB) DeleteSubject(ctx context.Context, key string) error {
	r, err := db.w.ExecContext(ctx, "DELETE FROM subjects WHERE key = ?", key)
	if err != nil {
		return fmt.Errorf("delete subject: %w", err)
	}
	if n, _ := r.RowsAffected(); n == 0 {
		return fmt.Errorf("subject %q: %w", key, store.ErrNotFound)
	}
	return nil
}
