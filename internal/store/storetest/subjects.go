package storetest

import (
	"errors"
	"strconv"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/tally-metering/tally/internal/store"
)

var subjectOpts = cmp.Options{cmpopts.EquateEmpty()}

func ptr(s string) *string { return &s }

func testSubjects(t *testing.T, b Backend) {
	e := newEnv(t, b)
	now1 := time.Date(2026, 3, 1, 10, 0, 0, 123000, time.UTC)
	now2 := now1.Add(time.Minute)
	now3 := now1.Add(time.Hour)

	alice1 := store.Subject{Key: "alice", DisplayName: ptr("Alice"), Metadata: map[string]string{"plan": "pro", "tier": "1"}, StripeCustomerID: ptr("cus_1")}
	carol := store.Subject{Key: "carol", DisplayName: ptr("Carol")}
	bob := store.Subject{Key: "bob"}
	alice2 := store.Subject{Key: "alice", DisplayName: ptr("Alice B."), Metadata: map[string]string{"plan": "team"}}
	stamped := func(s store.Subject, created, updated time.Time) store.Subject {
		s.CreatedAt, s.UpdatedAt = created, updated
		return s
	}

	steps := []struct {
		name   string
		upsert []store.Subject
		now    time.Time
		// returned is what UpsertSubjects returns; want is every subject
		// afterwards, sorted by key.
		returned, want []store.Subject
	}{
		{
			name: "create", upsert: []store.Subject{carol, alice1}, now: now1,
			returned: []store.Subject{stamped(carol, now1, now1), stamped(alice1, now1, now1)},
			want:     []store.Subject{stamped(alice1, now1, now1), stamped(carol, now1, now1)},
		},
		{
			name: "create without optional fields", upsert: []store.Subject{bob}, now: now2,
			returned: []store.Subject{stamped(bob, now2, now2)},
			want:     []store.Subject{stamped(alice1, now1, now1), stamped(bob, now2, now2), stamped(carol, now1, now1)},
		},
		{
			name: "update keeps CreatedAt and replaces fields", upsert: []store.Subject{alice2}, now: now3,
			returned: []store.Subject{stamped(alice2, now1, now3)},
			want:     []store.Subject{stamped(alice2, now1, now3), stamped(bob, now2, now2), stamped(carol, now1, now1)},
		},
		{
			name: "update and create at once", upsert: []store.Subject{{Key: "bob", StripeCustomerID: ptr("cus_9")}, {Key: "dave"}}, now: now3,
			returned: []store.Subject{stamped(store.Subject{Key: "bob", StripeCustomerID: ptr("cus_9")}, now2, now3), stamped(store.Subject{Key: "dave"}, now3, now3)},
			want: []store.Subject{
				stamped(alice2, now1, now3), stamped(store.Subject{Key: "bob", StripeCustomerID: ptr("cus_9")}, now2, now3),
				stamped(carol, now1, now1), stamped(store.Subject{Key: "dave"}, now3, now3),
			},
		},
	}
	var want []store.Subject
	check := func(t *testing.T) {
		t.Helper()
		got, err := e.s.ListSubjects(ctxOf(t))
		if err != nil {
			t.Fatalf("ListSubjects: %v", err)
		}
		if diff := cmp.Diff(want, got, subjectOpts); diff != "" {
			t.Errorf("ListSubjects (-want +got):\n%s", diff)
		}
		for _, s := range want {
			g, err := e.s.GetSubject(ctxOf(t), s.Key)
			if err != nil {
				t.Errorf("GetSubject(%q): %v", s.Key, err)
				continue
			}
			if diff := cmp.Diff(s, g, subjectOpts); diff != "" {
				t.Errorf("GetSubject(%q) (-want +got):\n%s", s.Key, diff)
			}
		}
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			got, err := e.s.UpsertSubjects(ctxOf(t), st.upsert, st.now)
			if err != nil {
				t.Fatalf("UpsertSubjects: %v", err)
			}
			if diff := cmp.Diff(st.returned, got, subjectOpts); diff != "" {
				t.Errorf("UpsertSubjects returned (-want +got):\n%s", diff)
			}
			want = st.want
			check(t)
		})
	}
	t.Run("get unknown", func(t *testing.T) {
		if s, err := e.s.GetSubject(ctxOf(t), "nobody"); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("GetSubject(nobody) = %+v, %v; want ErrNotFound", s, err)
		}
	})
	t.Run("delete", func(t *testing.T) {
		if err := e.s.DeleteSubject(ctxOf(t), "carol"); err != nil {
			t.Fatalf("DeleteSubject(carol): %v", err)
		}
		if s, err := e.s.GetSubject(ctxOf(t), "carol"); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("GetSubject(carol) after delete = %+v, %v; want ErrNotFound", s, err)
		}
		if err := e.s.DeleteSubject(ctxOf(t), "carol"); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("DeleteSubject(carol) again: %v, want ErrNotFound", err)
		}
		want = []store.Subject{want[0], want[1], want[3]}
		check(t)
	})
	e.stages(t, check)
}

func testSize(t *testing.T, b Backend) {
	e := newEnv(t, b)
	evs := make([]store.NewEvent, 0, 200)
	for i := range 200 {
		evs = append(evs, ev("size-"+strconv.Itoa(i), "alice", time.Duration(i)*time.Second, sum(mSum, "1")))
	}
	e.append(t, t0, evs...)
	e.stages(t, func(t *testing.T) {
		n, err := e.s.Size(ctxOf(t))
		if err != nil {
			t.Fatalf("Size: %v", err)
		}
		if n <= 0 {
			t.Errorf("Size = %d after storing 200 events, want > 0", n)
		}
	})
}
