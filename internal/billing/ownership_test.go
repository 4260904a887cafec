package billing

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

func TestUsageSubjects(t *testing.T) {
	at := func(s string) *time.Time {
		v, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			t.Fatal(err)
		}
		return &v
	}
	from, to := *at("2026-07-01T00:00:00Z"), *at("2026-08-01T00:00:00Z")
	span := func(f, t string) Span { return Span{From: *at(f), To: *at(t)} }
	tests := []struct {
		name    string
		c       Customer
		subs    []string
		partial map[string][]Span
	}{
		{"no history: the current subjects for ever",
			Customer{Subjects: []string{"a", "b"}}, []string{"a", "b"}, nil},
		{"never moved",
			Customer{Subjects: []string{"b", "a"}, SubjectHistory: []Ownership{{Subject: "b"}, {Subject: "a"}}}, []string{"a", "b"}, nil},
		{"taken during the range",
			Customer{SubjectHistory: []Ownership{{Subject: "a"}, {Subject: "s", From: at("2026-07-15T10:30:00Z")}}},
			[]string{"a", "s"}, map[string][]Span{"s": {span("2026-07-15T10:30:00Z", "2026-08-01T00:00:00Z")}}},
		{"given up during the range",
			Customer{SubjectHistory: []Ownership{{Subject: "s", To: at("2026-07-15T10:31:00Z")}}},
			[]string{"s"}, map[string][]Span{"s": {span("2026-07-01T00:00:00Z", "2026-07-15T10:31:00Z")}}},
		{"given up and taken back in the next minute: throughout",
			Customer{SubjectHistory: []Ownership{{Subject: "s", To: at("2026-07-15T10:31:00Z")}, {Subject: "s", From: at("2026-07-15T10:31:00Z")}}},
			[]string{"s"}, nil},
		{"owned before the range only, for no minute, after it",
			Customer{SubjectHistory: []Ownership{
				{Subject: "x", To: at("2026-07-01T00:00:00Z")},
				{Subject: "y", From: at("2026-07-02T00:01:00Z"), To: at("2026-07-02T00:01:00Z")},
				{Subject: "z", From: at("2026-08-01T00:00:00Z")},
			}}, nil, nil},
		{"two stretches",
			Customer{SubjectHistory: []Ownership{{Subject: "s", To: at("2026-07-10T00:00:00Z")}, {Subject: "s", From: at("2026-07-20T00:00:00Z")}}},
			[]string{"s"}, map[string][]Span{"s": {span("2026-07-01T00:00:00Z", "2026-07-10T00:00:00Z"), span("2026-07-20T00:00:00Z", "2026-08-01T00:00:00Z")}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			subs, partial := tc.c.UsageSubjects(from, to)
			if diff := cmp.Diff(tc.subs, subs, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("subjects (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.partial, partial, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("partial (-want +got):\n%s", diff)
			}
		})
	}

}

// TestOwnedAgreesWithUsageSubjects: Owns, which authorization asks for
// each event of a batch, answers for every minute exactly what
// UsageSubjects, which billing asks, says of that minute.
func TestOwnedAgreesWithUsageSubjects(t *testing.T) {
	m := func(s string) *time.Time {
		v, err := time.Parse(time.RFC3339, s)
		if err != nil {
			t.Fatal(err)
		}
		return &v
	}
	c := Customer{Subjects: []string{"a", "s"}, SubjectHistory: []Ownership{
		{Subject: "a"},
		{Subject: "s", To: m("2026-07-01T10:05:00Z")},
		{Subject: "s", From: m("2026-07-01T10:20:00Z")},
		{Subject: "gone", From: m("2026-07-01T10:02:00Z"), To: m("2026-07-01T10:04:00Z")},
	}}
	from, to := *m("2026-07-01T09:58:00Z"), *m("2026-07-01T10:30:00Z")
	for _, cust := range []Customer{c, c.Narrow("s"), c.Narrow("gone"), c.Narrow("never")} {
		owned := cust.OwnedBetween(from, to)
		for min := from; min.Before(to); min = min.Add(time.Minute) {
			subs, partial := cust.UsageSubjects(min, min.Add(time.Minute))
			for _, sub := range []string{"a", "s", "gone", "never"} {
				want := false
				for _, x := range subs {
					want = want || x == sub
				}
				if _, ok := partial[sub]; ok {
					t.Fatalf("a one-minute range can't be partial: %v", partial)
				}
				// Any instant of the minute answers for the minute.
				for _, at := range []time.Time{min, min.Add(59*time.Second + 999*time.Millisecond)} {
					if got := owned.Owns(sub, at); got != want {
						t.Errorf("narrowed to %v: Owns(%s, %s) = %v, UsageSubjects says %v", cust.Subjects, sub, at.Format(time.RFC3339Nano), got, want)
					}
				}
			}
		}
		// Outside the range it was read for, nothing is owned.
		if owned.Owns("a", to.Add(time.Minute)) || owned.Owns("a", from.Add(-time.Minute)) {
			t.Errorf("Owns answers outside the range it was read for")
		}
	}
	if n := c.Narrow("s"); len(n.Subjects) != 1 || len(n.SubjectHistory) != 2 {
		t.Errorf("Narrow(s) = %+v, want s's two stretches only", n)
	}
	if got := c.OwnershipOf("gone"); len(got) != 1 || got[0].To == nil {
		t.Errorf("OwnershipOf(gone) = %+v", got)
	}
}
