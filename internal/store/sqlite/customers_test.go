package sqlite

import (
	"context"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/tally-metering/tally/internal/billing"
)

// TestMigrateSubjectOwners: migration 0014 rebuilds subject ownership from
// what was known before it: live customers own their subjects now, deleted
// ones owned the subjects they listed until deleted, chained per subject,
// the first owner since the beginning of time.
func TestMigrateSubjectOwners(t *testing.T) {
	ctx := context.Background()
	db := openDB(t, t.TempDir(), Options{})
	// Back to the schema before 0014, with customers written then.
	for _, q := range []string{
		`DROP TABLE subject_owners`,
		`DELETE FROM schema_migrations WHERE version = 14`,
	} {
		if _, err := db.w.ExecContext(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	us := func(t time.Time) int64 { return t.UnixMicro() }
	t1 := time.Date(2026, 3, 1, 10, 0, 30, 0, time.UTC)
	t2 := t1.Add(48 * time.Hour)
	for _, c := range []struct {
		id, def string
		deleted *time.Time
		live    []string
	}{
		{"d1", `{"id":"d1","key":"x","subjects":["s1","s2"]}`, &t1, nil},
		{"d2", `{"id":"d2","key":"x","subjects":["s1"]}`, &t2, nil},
		{"l1", `{"id":"l1","key":"x","subjects":["s1","s3"]}`, nil, []string{"s1", "s3"}},
		{"d3", `{"id":"d3","key":"y","subjects":null}`, &t1, nil},
	} {
		var del any
		if c.deleted != nil {
			del = us(*c.deleted)
		}
		if _, err := db.w.ExecContext(ctx, `INSERT INTO customers (id, key, created_us, deleted_us, def) VALUES (?, ?, 0, ?, ?)`, c.id, c.id, del, c.def); err != nil {
			t.Fatal(err)
		}
		for _, s := range c.live {
			if _, err := db.w.ExecContext(ctx, `INSERT INTO customer_subjects (subject, customer_id) VALUES (?, ?)`, s, c.id); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := db.migrate(ctx); err != nil {
		t.Fatalf("migrate: %v", err)
	}
	// Ownership is kept in whole minutes: to the end of the deletion's.
	ct1, ct2 := t1.Truncate(time.Minute).Add(time.Minute), t2.Truncate(time.Minute).Add(time.Minute)
	for id, want := range map[string][]billing.Ownership{
		"d1": {{Subject: "s1", To: &ct1}, {Subject: "s2", To: &ct1}},
		"d2": {{Subject: "s1", From: &ct1, To: &ct2}},
		"l1": {{Subject: "s3"}, {Subject: "s1", From: &ct2}},
		"d3": nil,
	} {
		c, err := db.GetCustomer(ctx, id)
		if err != nil {
			t.Fatalf("GetCustomer(%s): %v", id, err)
		}
		if diff := cmp.Diff(want, c.SubjectHistory, cmpopts.EquateEmpty()); diff != "" {
			t.Errorf("SubjectHistory of %s (-want +got):\n%s", id, diff)
		}
	}
}
