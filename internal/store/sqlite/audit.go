package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/tally-metering/tally/internal/store"
)

var _ store.Audit = (*DB)(nil)

// AppendAudit implements store.Audit.
func (db *DB) AppendAudit(ctx context.Context, e store.AuditEntry) (int64, error) {
	var body any
	if len(e.Body) > 0 {
		body = string(e.Body)
	}
	res, err := db.w.ExecContext(ctx, `INSERT INTO audit_log (at_us, actor, method, route, path, target, status, body) VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
		e.At.UnixMicro(), e.Actor, e.Method, e.Route, e.Path, e.Target, e.Status, body)
	if err != nil {
		return 0, fmt.Errorf("append audit entry: %w", err)
	}
	seq, err := res.LastInsertId()
	if err != nil {
		return 0, fmt.Errorf("append audit entry: %w", err)
	}
	return seq, nil
}

// ListAudit implements store.Audit.
func (db *DB) ListAudit(ctx context.Context, f store.AuditFilter) ([]store.AuditEntry, error) {
	var where []string
	var args []any
	if !f.From.IsZero() {
		where, args = append(where, "at_us >= ?"), append(args, f.From.UnixMicro())
	}
	if !f.To.IsZero() {
		where, args = append(where, "at_us < ?"), append(args, f.To.UnixMicro())
	}
	if f.Actor != "" {
		where, args = append(where, "actor = ?"), append(args, f.Actor)
	}
	if f.Target != "" {
		where, args = append(where, "target = ?"), append(args, f.Target)
	}
	if f.Before > 0 {
		where, args = append(where, "seq < ?"), append(args, f.Before)
	}
	q := `SELECT seq, at_us, actor, method, route, path, target, status, body FROM audit_log`
	if len(where) > 0 {
		q += " WHERE " + strings.Join(where, " AND ")
	}
	q += " ORDER BY seq DESC"
	if f.Limit > 0 {
		q += fmt.Sprintf(" LIMIT %d", f.Limit)
	}
	rows, err := db.r.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("list audit entries: %w", err)
	}
	defer rows.Close()
	out := []store.AuditEntry{}
	for rows.Next() {
		var e store.AuditEntry
		var at int64
		var body sql.NullString
		if err := rows.Scan(&e.Seq, &at, &e.Actor, &e.Method, &e.Route, &e.Path, &e.Target, &e.Status, &body); err != nil {
			return nil, fmt.Errorf("list audit entries: %w", err)
		}
		e.At = time.UnixMicro(at).UTC()
		if body.Valid {
			e.Body = json.RawMessage(body.String)
		}
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list audit entries: %w", err)
	}
	return out, nil
}
