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
