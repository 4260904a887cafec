package report_test

import (
	"context"
	"database/sql"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tally-metering/tally/internal/store/sqlite"
)

// TestOutboxQueriesUseIndexes checks that the SQLite outbox finds due and
// unsettled reports through an index in the order asked for: sorting every
// pending report of a target on each round of 800 makes sending one hour of
// 100,000 reports quadratic.
func TestOutboxQueriesUseIndexes(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	st, err := sqlite.Open(ctx, dir, sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	db, err := sql.Open("sqlite3", "file:"+filepath.Join(dir, sqlite.FileName)+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	// The queries of internal/store/sqlite/reports.go.
	for name, q := range map[string]string{
		"DueReports": `SELECT def, state, next_attempt_us FROM reports
		WHERE target = ? AND state IN ('pending', 'sending') AND next_attempt_us <= ?
		ORDER BY next_attempt_us, hour_us, id LIMIT ?`,
		"Unsettled": `SELECT def, state, next_attempt_us FROM reports
		WHERE target = ? AND state IN ('pending', 'sending') AND hour_us < ?
		ORDER BY hour_us, id LIMIT ?`,
	} {
		rows, err := db.QueryContext(ctx, "EXPLAIN QUERY PLAN "+q, "azure", 1, 800)
		if err != nil {
			t.Fatal(err)
		}
		var plan []string
		for rows.Next() {
			var id, parent, unused int
			var detail string
			if err := rows.Scan(&id, &parent, &unused, &detail); err != nil {
				t.Fatal(err)
			}
			plan = append(plan, detail)
		}
		rows.Close()
		p := strings.Join(plan, "; ")
		if !strings.Contains(p, "USING INDEX") || strings.Contains(p, "TEMP B-TREE") {
			t.Errorf("%s: query plan %q: want an index that gives the order", name, p)
		}
	}
}
