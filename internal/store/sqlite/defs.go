package sqlite

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
)

// eq is one "column = value" condition of listDefs; an empty value is no
// condition.
type eq struct {
	column, value string
}

// scanDef reads a row's JSON def column into a T.
func scanDef[T any](r rowScanner, what string) (T, error) {
	var def string
	var v T
	if err := r.Scan(&def); err != nil {
		return v, err
	}
	if err := json.Unmarshal([]byte(def), &v); err != nil {
		return v, fmt.Errorf("decode %s: %w", what, err)
	}
	return v, nil
}

// listDefs reads the JSON def column of table's rows that match every
// non-empty condition, in the given order.
func listDefs[T any](ctx context.Context, db *DB, what, table, order string, conds ...eq) ([]T, error) {
	var where []string
	var args []any
	for _, c := range conds {
		if c.value != "" {
			where = append(where, c.column+" = ?")
			args = append(args, c.value)
		}
	}
	q := "SELECT def FROM " + table
	if len(where) > 0 {
		q += " WHERE " + strings.Join(where, " AND ")
	}
	q += " ORDER BY " + order
	return queryList(ctx, db, what, q, args, func(r rowScanner) (T, error) { return scanDef[T](r, what) })
}

// queryList runs q and reads every row with scan; errors say "list
// <what>s".
func queryList[T any](ctx context.Context, db *DB, what, q string, args []any, scan func(rowScanner) (T, error)) ([]T, error) {
	rows, err := db.r.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("list %ss: %w", what, err)
	}
	defer rows.Close()
	out := []T{}
	for rows.Next() {
		v, err := scan(rows)
		if err != nil {
			return nil, fmt.Errorf("list %ss: %w", what, err)
		}
		out = append(out, v)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list %ss: %w", what, err)
	}
	return out, nil
}
