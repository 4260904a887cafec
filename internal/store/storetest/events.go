package storetest

import (
	"errors"
	"fmt"
	"github.com/tally-metering/tally/internal/billing"
	"strconv"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/tally-metering/tally/internal/meter"
	"github.com/tally-metering/tally/internal/store"
)

// appendCall is one AppendEvents call and its expected result.
type appendCall struct {
	events []store.NewEvent
	want   store.AppendResult
}

// totals is what a meter's rollups add up to.
type totals struct {
	count int64
	sum   string // "" for COUNT and UNIQUE_COUNT meters
}

func testAppendEvents(t *testing.T, b Backend) {
	full := []store.NewEvent{
		ev("a", "alice", 1*time.Second, sum(mSum, "1.5"), uniq(mUnique, "x"), cnt(mCount, "")),
		ev("b", "bob", 2*time.Second, sum(mSum, "2.25"), uniq(mUnique, "y"), invalid(mCount, meter.Count, "meter count: bad")),
		ev("c", "alice", 61*time.Second, invalid(mSum, meter.Sum, "meter sum: $.value: not a number"), uniq(mUnique, "x")),
	}
	tests := []struct {
		name       string
		calls      []appendCall
		want       map[string]totals   // meter → totals of its rollups
		wantUnique []string            // distinct values of mUnique, all cells
		wantErrors map[string][]string // event id → validation errors (sorted)
	}{
		{
			name: "inserts new events",
			calls: []appendCall{{
				events: []store.NewEvent{
					ev("a", "alice", 0, sum(mSum, "1")),
					ev("b", "bob", time.Second, sum(mSum, "2")),
					ev("c", "alice", time.Minute, sum(mSum, "3")),
				},
				want: store.AppendResult{Inserted: 3},
			}},
			want: map[string]totals{mSum: {3, "6"}},
		},
		{
			name: "event without contributions is stored",
			calls: []appendCall{{
				events: []store.NewEvent{ev("a", "alice", 0)},
				want:   store.AppendResult{Inserted: 1},
			}},
		},
		{
			name:  "empty call",
			calls: []appendCall{{events: nil, want: store.AppendResult{}}},
		},
		{
			name: "duplicate within one call is skipped and not counted",
			calls: []appendCall{{
				events: []store.NewEvent{
					ev("a", "alice", 0, sum(mSum, "1")),
					ev("a", "alice", time.Second, sum(mSum, "100")),
					ev("b", "alice", 2*time.Second, sum(mSum, "2")),
					ev("b", "alice", 3*time.Second, sum(mSum, "1000")),
				},
				want: store.AppendResult{Inserted: 2, Duplicates: 2},
			}},
			want: map[string]totals{mSum: {2, "3"}},
		},
		{
			// Deduplication is per subject, so that no one can have
			// another subject's event skipped by sending its id first.
			name: "same source and id of another subject is another event",
			calls: []appendCall{
				{
					events: []store.NewEvent{ev("a", "alice", 0, sum(mSum, "1")), ev("a", "bob", 0, sum(mSum, "2"))},
					want:   store.AppendResult{Inserted: 2},
				},
				{
					events: []store.NewEvent{ev("a", "bob", 0, sum(mSum, "100")), ev("a", "carol", 0, sum(mSum, "4"))},
					want:   store.AppendResult{Inserted: 1, Duplicates: 1},
				},
			},
			want: map[string]totals{mSum: {3, "7"}},
		},
		{
			name: "duplicate across calls is skipped and not counted",
			calls: []appendCall{
				{
					events: []store.NewEvent{ev("a", "alice", 0, sum(mSum, "1"))},
					want:   store.AppendResult{Inserted: 1},
				},
				{
					events: []store.NewEvent{ev("a", "alice", 0, sum(mSum, "100")), ev("b", "alice", 0, sum(mSum, "2"))},
					want:   store.AppendResult{Inserted: 1, Duplicates: 1},
				},
			},
			want: map[string]totals{mSum: {2, "3"}},
		},
		{
			name: "same id from another source is another event",
			calls: []appendCall{{
				events: []store.NewEvent{
					evFull("src-1", "a", "api.request", "alice", t0, sum(mSum, "1")),
					evFull("src-2", "a", "api.request", "alice", t0, sum(mSum, "2")),
				},
				want: store.AppendResult{Inserted: 2},
			}},
			want: map[string]totals{mSum: {2, "3"}},
		},
		{
			name: "appending the same batch again changes nothing",
			calls: []appendCall{
				{events: full, want: store.AppendResult{Inserted: 3, InvalidByMeter: map[string]int{mSum: 1, mCount: 1}}},
				{events: full, want: store.AppendResult{Duplicates: 3}},
				{events: full[1:], want: store.AppendResult{Duplicates: 2}},
			},
			want:       map[string]totals{mSum: {2, "3.75"}, mCount: {1, ""}, mUnique: {3, ""}},
			wantUnique: []string{"x", "x", "y"}, // x in two minutes
			wantErrors: map[string][]string{"b": {"meter count: bad"}, "c": {"meter sum: $.value: not a number"}},
		},
		{
			name: "duplicates add no distinct values",
			calls: []appendCall{
				{
					events: []store.NewEvent{ev("a", "alice", 0, uniq(mUnique, "x")), ev("a", "alice", 0, uniq(mUnique, "y"))},
					want:   store.AppendResult{Inserted: 1, Duplicates: 1},
				},
				{
					events: []store.NewEvent{ev("a", "alice", 0, uniq(mUnique, "z"))},
					want:   store.AppendResult{Duplicates: 1},
				},
			},
			want:       map[string]totals{mUnique: {1, ""}},
			wantUnique: []string{"x"},
		},
		{
			name: "invalid contribution is recorded and not counted",
			calls: []appendCall{{
				events: []store.NewEvent{
					ev("a", "alice", 0, invalid(mSum, meter.Sum, "meter sum: $.value: missing"), cnt(mCount, ""),
						invalid(mUnique, meter.UniqueCount, "meter unique: $.user: missing")),
					ev("b", "alice", time.Second, sum(mSum, "5"), cnt(mCount, "")),
				},
				want: store.AppendResult{Inserted: 2, InvalidByMeter: map[string]int{mSum: 1, mUnique: 1}},
			}},
			want:       map[string]totals{mSum: {1, "5"}, mCount: {2, ""}, mUnique: {0, ""}},
			wantErrors: map[string][]string{"a": {"meter sum: $.value: missing", "meter unique: $.user: missing"}},
		},
		{
			name: "event invalid for several meters",
			calls: []appendCall{{
				events: []store.NewEvent{
					ev("a", "alice", 0, invalid(mSum, meter.Sum, "sum: no value"), invalid(mMax, meter.Max, "max: no value"), uniq(mUnique, "u")),
					ev("b", "alice", 0, invalid(mSum, meter.Sum, "sum: no value")),
				},
				want: store.AppendResult{Inserted: 2, InvalidByMeter: map[string]int{mSum: 2, mMax: 1}},
			}},
			want:       map[string]totals{mSum: {0, ""}, mMax: {0, ""}, mUnique: {1, ""}},
			wantUnique: []string{"u"},
			wantErrors: map[string][]string{"a": {"max: no value", "sum: no value"}, "b": {"sum: no value"}},
		},
		{
			name: "invalid duplicate is neither counted nor recorded",
			calls: []appendCall{
				{
					events: []store.NewEvent{ev("a", "alice", 0, sum(mSum, "1"))},
					want:   store.AppendResult{Inserted: 1},
				},
				{
					events: []store.NewEvent{ev("a", "alice", 0, invalid(mSum, meter.Sum, "late error"))},
					want:   store.AppendResult{Duplicates: 1},
				},
			},
			want: map[string]totals{mSum: {1, "1"}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, b)
			for i, c := range tt.calls {
				got := e.append(t, t0.Add(time.Hour), c.events...)
				if diff := cmp.Diff(c.want, got, cmpopts.EquateEmpty()); diff != "" {
					t.Errorf("call %d: AppendEvents(%s) (-want +got):\n%s", i, joinIDs(c.events), diff)
				}
			}
			e.stages(t, func(t *testing.T) {
				for id, want := range tt.want {
					got := e.total(t, id)
					if got.Count != want.count || (want.sum != "" && !got.Sum.Equal(dec(want.sum))) {
						t.Errorf("meter %s: rollups add up to %s, want count=%d sum=%s", id, describe(got), want.count, want.sum)
					}
				}
				var uniques []string
				for _, u := range e.uniques(t, store.RollupQuery{MeterID: mUnique, From: openFrom, To: openTo}) {
					uniques = append(uniques, u.Value)
				}
				if diff := cmp.Diff(tt.wantUnique, uniques, cmpopts.EquateEmpty(), cmpopts.SortSlices(func(a, b string) bool { return a < b })); diff != "" {
					t.Errorf("distinct values of %s (-want +got):\n%s", mUnique, diff)
				}
				gotErrs := make(map[string][]string)
				for _, se := range e.listEvents(t, store.EventFilter{}) {
					if len(se.ValidationErrors) > 0 {
						gotErrs[se.ID] = se.ValidationErrors
					}
				}
				if diff := cmp.Diff(tt.wantErrors, gotErrs, cmpopts.EquateEmpty()); diff != "" {
					t.Errorf("validation errors by event (-want +got):\n%s", diff)
				}
				e.checkModel(t)
			})
		})
	}
}

func testIngestedAt(t *testing.T, b Backend) {
	e := newEnv(t, b)
	first := time.Date(2026, 3, 14, 16, 0, 0, 123456000, time.UTC)
	second := first.Add(90 * time.Second)
	e.append(t, first, ev("a", "alice", 0, sum(mSum, "1")))
	// Appending a again later must not move its ingestion time.
	e.append(t, second, ev("b", "alice", 0, sum(mSum, "2")), ev("a", "alice", 0, sum(mSum, "1")))
	e.stages(t, func(t *testing.T) {
		got := make(map[string]time.Time)
		for _, se := range e.listEvents(t, store.EventFilter{}) {
			got[se.ID] = se.IngestedAt
		}
		want := map[string]time.Time{"a": first, "b": second}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("IngestedAt by event (-want +got):\n%s", diff)
		}
		e.checkModel(t)
	})
}

func testListEvents(t *testing.T, b Backend) {
	e := newEnv(t, b)
	// Ingestion order differs from event time order, so that "newest
	// first" can only mean by ingestion.
	e.append(t, t0, evFull(testSource, "e1", "api.request", "alice", t0.Add(5*time.Minute), sum(mSum, "1")))
	e.append(t, t0,
		evFull(testSource, "e2", "api.request", "bob", t0.Add(1*time.Minute)),
		evFull(testSource, "e3", "job.run", "alice", t0.Add(3*time.Minute), invalid(mSum, meter.Sum, "bad")),
	)
	e.append(t, t0,
		evFull(testSource, "e4", "job.run", "carol", t0.Add(2*time.Minute)),
		evFull("other-source", "e1", "api.request", "bob", t0.Add(4*time.Minute)),
		evFull(testSource, "e5", "api.request", "alice", t0),
	)
	// Ingestion order: e1, e2, e3, e4, e1 (other source), e5.
	tests := []struct {
		name string
		f    store.EventFilter
		want []string
	}{
		{"no filter, newest first", store.EventFilter{}, []string{"e5", "e1", "e4", "e3", "e2", "e1"}},
		{"from is inclusive", store.EventFilter{From: t0.Add(3 * time.Minute)}, []string{"e1", "e3", "e1"}},
		{"to is exclusive", store.EventFilter{To: t0.Add(2 * time.Minute)}, []string{"e5", "e2"}},
		{"from and to", store.EventFilter{From: t0.Add(time.Minute), To: t0.Add(4 * time.Minute)}, []string{"e4", "e3", "e2"}},
		{"from and to within a microsecond", store.EventFilter{From: t0.Add(2 * time.Minute), To: t0.Add(2*time.Minute + time.Microsecond)}, []string{"e4"}},
		{"empty range", store.EventFilter{From: t0.Add(2 * time.Minute), To: t0.Add(2 * time.Minute)}, nil},
		{"subject", store.EventFilter{Subject: "alice"}, []string{"e5", "e3", "e1"}},
		{"subjects", store.EventFilter{Subjects: []string{"alice", "carol"}, Limit: 3}, []string{"e5", "e4", "e3"}},
		{"subject and subjects", store.EventFilter{Subject: "bob", Subjects: []string{"alice", "carol"}}, nil},
		{"type", store.EventFilter{Type: "job.run"}, []string{"e4", "e3"}},
		{"id of two sources", store.EventFilter{ID: "e1"}, []string{"e1", "e1"}},
		{"id", store.EventFilter{ID: "e3"}, []string{"e3"}},
		{"limit keeps the newest", store.EventFilter{Limit: 2}, []string{"e5", "e1"}},
		{"limit above count", store.EventFilter{Limit: 100}, []string{"e5", "e1", "e4", "e3", "e2", "e1"}},
		{"subject, type and limit", store.EventFilter{Subject: "alice", Type: "api.request", Limit: 1}, []string{"e5"}},
		{"subject and time", store.EventFilter{Subject: "bob", From: t0.Add(2 * time.Minute)}, []string{"e1"}},
		{"no match", store.EventFilter{Subject: "nobody"}, nil},
		// alice's events at t0, +3m, +5m; bob's at +1m, +4m; carol's at +2m.
		{"within narrows a subject to its spans", store.EventFilter{Subjects: []string{"alice", "bob"}, Within: map[string][]billing.Span{
			"alice": {{From: t0.Add(time.Minute), To: t0.Add(4 * time.Minute)}, {From: t0.Add(5 * time.Minute), To: t0.Add(6 * time.Minute)}},
		}}, []string{"e1", "e3", "e2", "e1"}},
		{"within: span ends are exclusive", store.EventFilter{Subjects: []string{"alice", "bob"}, Within: map[string][]billing.Span{
			"alice": {{From: t0.Add(time.Minute), To: t0.Add(3 * time.Minute)}},
			"bob":   {{From: t0.Add(4 * time.Minute), To: t0.Add(5 * time.Minute)}},
		}}, []string{"e1"}},
		{"within with no span matches none of the subject", store.EventFilter{Within: map[string][]billing.Span{"alice": {}}}, []string{"e1", "e4", "e2"}},
	}
	e.stages(t, func(t *testing.T) {
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				got := e.listEvents(t, tt.f)
				if diff := cmp.Diff(tt.want, ids(got), cmpopts.EquateEmpty()); diff != "" {
					t.Errorf("ListEvents(%+v) ids (-want +got):\n%s", tt.f, diff)
				}
				for i := 1; i < len(got); i++ {
					if got[i].Seq >= got[i-1].Seq {
						t.Errorf("ListEvents(%+v): seq %d listed after seq %d, want newest (highest seq) first", tt.f, got[i].Seq, got[i-1].Seq)
					}
				}
			})
		}
		e.checkModel(t)
	})
}

func testScanEvents(t *testing.T, b Backend) {
	e := newEnv(t, b)
	e.append(t, t0,
		evFull(testSource, "s1", "api.request", "alice", t0.Add(9*time.Minute)),
		evFull(testSource, "s2", "job.run", "alice", t0),
		evFull(testSource, "s3", "api.request", "bob", t0.Add(time.Minute)),
	)
	e.append(t, t0,
		evFull(testSource, "s2", "job.run", "alice", t0), // duplicate
		evFull(testSource, "s4", "api.request", "carol", t0.Add(-time.Hour)),
		evFull(testSource, "s5", "job.run", "carol", t0.Add(time.Hour)),
	)
	scan := func(t *testing.T, typ string) []store.StoredEvent {
		t.Helper()
		var got []store.StoredEvent
		err := e.s.ScanEvents(ctxOf(t), typ, func(se store.StoredEvent) error {
			got = append(got, se)
			return nil
		})
		if err != nil {
			t.Fatalf("ScanEvents(%q): %v", typ, err)
		}
		return got
	}
	tests := []struct {
		name, typ string
		want      []string
	}{
		{"all types in ingestion order", "", []string{"s1", "s2", "s3", "s4", "s5"}},
		{"one type in ingestion order", "api.request", []string{"s1", "s3", "s4"}},
		{"other type", "job.run", []string{"s2", "s5"}},
		{"unknown type", "nothing.here", nil},
	}
	e.stages(t, func(t *testing.T) {
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				got := scan(t, tt.typ)
				if diff := cmp.Diff(tt.want, ids(got), cmpopts.EquateEmpty()); diff != "" {
					t.Errorf("ScanEvents(%q) ids (-want +got):\n%s", tt.typ, diff)
				}
				for i := 1; i < len(got); i++ {
					if got[i].Seq <= got[i-1].Seq {
						t.Errorf("ScanEvents(%q): seq %d after seq %d, want ingestion order", tt.typ, got[i].Seq, got[i-1].Seq)
					}
				}
			})
		}
		t.Run("same events as ListEvents", func(t *testing.T) {
			listed := e.listEvents(t, store.EventFilter{})
			scanned := scan(t, "")
			for i, j := 0, len(scanned)-1; i < j; i, j = i+1, j-1 {
				scanned[i], scanned[j] = scanned[j], scanned[i]
			}
			for i := range scanned {
				scanned[i].ValidationErrors = nil
			}
			for i := range listed {
				listed[i].ValidationErrors = nil
			}
			if diff := cmp.Diff(listed, scanned, eventOpts); diff != "" {
				t.Errorf("ScanEvents reversed vs ListEvents (-list +scan):\n%s", diff)
			}
		})
		t.Run("stops at the first error", func(t *testing.T) {
			stop := errors.New("stop here")
			calls := 0
			err := e.s.ScanEvents(ctxOf(t), "", func(store.StoredEvent) error {
				calls++
				if calls == 2 {
					return stop
				}
				return nil
			})
			if !errors.Is(err, stop) {
				t.Errorf("ScanEvents returned %v, want the callback's error", err)
			}
			if calls != 2 {
				t.Errorf("callback called %d times, want 2 (it failed on the 2nd)", calls)
			}
		})
		e.checkModel(t)
	})
}

// testManyEvents appends more events than backends typically read or
// insert at once (the SQLite store scans 5,000 at a time), so that paging
// (batched inserts, paged scans, replays) is exercised.
func testManyEvents(t *testing.T, b Backend) {
	const n = 6_001
	e := newEnv(t, b)
	evs := make([]store.NewEvent, 0, n+2)
	for i := range n {
		id := "many-" + strconv.Itoa(i)
		cs := []store.Contribution{cnt(mCount, "")}
		if i%1000 == 0 {
			cs = append(cs, sum(mSum, strconv.Itoa(i)))
		}
		evs = append(evs, ev(id, "subject-"+strconv.Itoa(i%7), time.Duration(i)*time.Second, cs...))
	}
	// Duplicates of the first and of the last event, after them.
	evs = append(evs, evs[0], evs[n-1])
	r := e.append(t, t0, evs...)
	if r.Inserted != n || r.Duplicates != 2 {
		t.Fatalf("AppendEvents: inserted %d, duplicates %d; want %d, 2", r.Inserted, r.Duplicates, n)
	}
	e.stages(t, func(t *testing.T) {
		i := 0
		seqs := make(map[evKey]int64, n)
		err := e.s.ScanEvents(ctxOf(t), "", func(se store.StoredEvent) error {
			if want := "many-" + strconv.Itoa(i); se.ID != want {
				return fmt.Errorf("event %d is %s, want %s", i, se.ID, want)
			}
			seqs[evKey{se.Source, se.ID, se.Subject}] = se.Seq
			i++
			return nil
		})
		if err != nil {
			t.Fatalf("ScanEvents: %v", err)
		}
		if i != n {
			t.Errorf("ScanEvents saw %d events, want %d", i, n)
		}
		const stopAt = 5001
		stop := errors.New("stop")
		calls := 0
		err = e.s.ScanEvents(ctxOf(t), "", func(store.StoredEvent) error {
			calls++
			if calls == stopAt {
				return stop
			}
			return nil
		})
		if !errors.Is(err, stop) || calls != stopAt {
			t.Errorf("ScanEvents stopping at event %d: returned %v after %d calls", stopAt, err, calls)
		}
		listed := e.listEvents(t, store.EventFilter{})
		if len(listed) != n {
			t.Fatalf("ListEvents: %d events, want %d", len(listed), n)
		}
		for i, se := range listed {
			if want := "many-" + strconv.Itoa(n-1-i); se.ID != want {
				t.Fatalf("ListEvents: event %d is %s, want %s", i, se.ID, want)
			}
		}
		if got := ids(e.listEvents(t, store.EventFilter{Limit: 2})); !cmp.Equal(got, []string{"many-6000", "many-5999"}) {
			t.Errorf("ListEvents(limit 2) = %v", got)
		}
		// Comparing every event field by field is slow for this many;
		// the rollups are compared in full.
		e.checkMeters(t, seqs, mCount, mSum)
	})
}
