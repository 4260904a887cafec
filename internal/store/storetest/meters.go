package storetest

import (
	"errors"
	"sort"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/tally-metering/tally/internal/meter"
	"github.com/tally-metering/tally/internal/store"
)

var meterOpts = cmp.Options{cmpopts.EquateEmpty()}

func newMeter(id, slug string, agg meter.Aggregation) meter.Meter {
	m := meter.Meter{
		ID: id, Slug: slug, Name: "Meter " + slug, EventType: "api.request", Aggregation: agg,
		ManagedBy: meter.ManagedByAPI,
		CreatedAt: time.Date(2026, 1, 2, 3, 4, 5, 6000, time.UTC),
		UpdatedAt: time.Date(2026, 1, 2, 3, 4, 5, 6000, time.UTC),
	}
	if agg.NeedsValue() {
		m.ValueProperty = "$.value"
	}
	return m
}

func (e *env) createMeters(t *testing.T, ms ...meter.Meter) {
	t.Helper()
	for _, m := range ms {
		if err := e.s.CreateMeter(ctxOf(t), m); err != nil {
			t.Fatalf("CreateMeter(%s): %v", m.Slug, err)
		}
	}
}

// checkMeterDefs checks ListMeters and GetMeter (by id and by slug)
// against want.
func (e *env) checkMeterDefs(t *testing.T, want ...meter.Meter) {
	t.Helper()
	got, err := e.s.ListMeters(ctxOf(t))
	if err != nil {
		t.Fatalf("ListMeters: %v", err)
	}
	byID := func(ms []meter.Meter) { sort.Slice(ms, func(i, j int) bool { return ms[i].ID < ms[j].ID }) }
	want = append([]meter.Meter(nil), want...)
	byID(want)
	byID(got)
	if diff := cmp.Diff(want, got, meterOpts); diff != "" {
		t.Errorf("ListMeters (-want +got):\n%s", diff)
	}
	for _, m := range want {
		for _, key := range []string{m.ID, m.Slug} {
			g, err := e.s.GetMeter(ctxOf(t), key)
			if err != nil {
				t.Errorf("GetMeter(%q): %v", key, err)
				continue
			}
			if diff := cmp.Diff(m, g, meterOpts); diff != "" {
				t.Errorf("GetMeter(%q) (-want +got):\n%s", key, diff)
			}
		}
	}
}

func (e *env) wantNoMeter(t *testing.T, keys ...string) {
	t.Helper()
	for _, key := range keys {
		if m, err := e.s.GetMeter(ctxOf(t), key); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("GetMeter(%q) = %+v, %v; want ErrNotFound", key, m, err)
		}
	}
}

func testMeters(t *testing.T, b Backend) {
	from := time.Date(2026, 2, 1, 0, 0, 0, 0, time.UTC)
	calls := newMeter("mtr-1", "api_calls", meter.Count)
	calls.GroupBy = map[string]string{"region": "$.region", "route": "$.http.route"}
	tokens := newMeter("mtr-2", "tokens", meter.Sum)
	tokens.EventFrom = &from
	tokens.ManagedBy = meter.ManagedByConfig
	renamed := calls
	renamed.Slug = "api_requests"
	renamed.Name = "API requests"
	renamed.GroupBy = nil
	renamed.UpdatedAt = calls.UpdatedAt.Add(time.Hour)
	retuned := renamed
	retuned.Aggregation = meter.UniqueCount
	retuned.ValueProperty = "$.user"

	e := newEnv(t, b)
	e.wantNoMeter(t, "mtr-1", "api_calls")
	e.checkMeterDefs(t)
	steps := []struct {
		name    string
		do      func() error
		wantErr error
		// want is every meter after the step
		want []meter.Meter
		// gone are ids and slugs GetMeter must not find after the step
		gone []string
	}{
		{
			name: "create", do: func() error { return e.s.CreateMeter(ctxOf(t), calls) },
			want: []meter.Meter{calls},
		},
		{
			name: "create another", do: func() error { return e.s.CreateMeter(ctxOf(t), tokens) },
			want: []meter.Meter{calls, tokens},
		},
		{
			name: "create with a taken slug", do: func() error { return e.s.CreateMeter(ctxOf(t), newMeter("mtr-3", "api_calls", meter.Sum)) },
			wantErr: store.ErrConflict, want: []meter.Meter{calls, tokens}, gone: []string{"mtr-3"},
		},
		{
			name: "create with a taken id", do: func() error { return e.s.CreateMeter(ctxOf(t), newMeter("mtr-1", "fresh", meter.Sum)) },
			wantErr: store.ErrConflict, want: []meter.Meter{calls, tokens}, gone: []string{"fresh"},
		},
		{
			name: "update, changing the slug", do: func() error { return e.s.UpdateMeter(ctxOf(t), renamed) },
			want: []meter.Meter{renamed, tokens}, gone: []string{"api_calls"},
		},
		{
			name: "update keeping the slug", do: func() error { return e.s.UpdateMeter(ctxOf(t), retuned) },
			want: []meter.Meter{retuned, tokens},
		},
		{
			name: "update to a taken slug",
			do: func() error {
				m := retuned
				m.Slug = "tokens"
				return e.s.UpdateMeter(ctxOf(t), m)
			},
			wantErr: store.ErrConflict, want: []meter.Meter{retuned, tokens},
		},
		{
			name: "update an unknown meter", do: func() error { return e.s.UpdateMeter(ctxOf(t), newMeter("mtr-9", "ghost", meter.Sum)) },
			wantErr: store.ErrNotFound, want: []meter.Meter{retuned, tokens}, gone: []string{"mtr-9", "ghost"},
		},
		{
			name: "delete", do: func() error { return e.s.DeleteMeter(ctxOf(t), "mtr-2") },
			want: []meter.Meter{retuned}, gone: []string{"mtr-2", "tokens"},
		},
		{
			name: "delete again", do: func() error { return e.s.DeleteMeter(ctxOf(t), "mtr-2") },
			wantErr: store.ErrNotFound, want: []meter.Meter{retuned}, gone: []string{"mtr-2", "tokens"},
		},
		{
			name: "slug of a deleted meter is free", do: func() error { return e.s.CreateMeter(ctxOf(t), newMeter("mtr-4", "tokens", meter.Max)) },
			want: []meter.Meter{retuned, newMeter("mtr-4", "tokens", meter.Max)}, gone: []string{"mtr-2"},
		},
	}
	var last []meter.Meter
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			err := st.do()
			switch {
			case st.wantErr == nil && err != nil:
				t.Fatalf("error %v", err)
			case st.wantErr != nil && !errors.Is(err, st.wantErr):
				t.Fatalf("error %v, want %v", err, st.wantErr)
			}
			e.checkMeterDefs(t, st.want...)
			e.wantNoMeter(t, st.gone...)
		})
		last = st.want
	}
	e.stages(t, func(t *testing.T) { e.checkMeterDefs(t, last...) })
}

func testDeleteMeter(t *testing.T, b Backend) {
	e := newEnv(t, b)
	e.createMeters(t,
		newMeter(mSum, "sum", meter.Sum),
		newMeter(mUnique, "unique", meter.UniqueCount),
		newMeter(mCount, "count", meter.Count))
	e.append(t, t0,
		ev("a", "alice", 0, sum(mSum, "1"), uniq(mUnique, "x"), cnt(mCount, "")),
		ev("b", "bob", time.Minute, invalid(mSum, meter.Sum, "sum: bad"), uniq(mUnique, "y"), cnt(mCount, "")),
	)
	e.flush(t)
	// These deltas may still be pending when the meters are deleted.
	e.append(t, t0,
		ev("c", "alice", time.Second, sum(mSum, "2"), uniq(mUnique, "z"), cnt(mCount, "")),
		ev("d", "carol", 2*time.Minute, sum(mSum, "4"), cnt(mCount, "")),
	)
	for _, id := range []string{mSum, mUnique} {
		if err := e.s.DeleteMeter(ctxOf(t), id); err != nil {
			t.Fatalf("DeleteMeter(%s): %v", id, err)
		}
	}
	for _, id := range []string{mSum, mUnique, "no-such-meter"} {
		if err := e.s.DeleteMeter(ctxOf(t), id); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("DeleteMeter(%s) of a missing meter: %v, want ErrNotFound", id, err)
		}
	}
	e.stages(t, func(t *testing.T) {
		e.wantNoMeter(t, mSum, "sum", mUnique, "unique")
		e.checkMeterDefs(t, newMeter(mCount, "count", meter.Count))
		for _, id := range []string{mSum, mUnique} {
			q := store.RollupQuery{MeterID: id, From: openFrom, To: openTo}
			if rs := e.rollups(t, q); len(rs) > 0 {
				t.Errorf("deleted meter %s still has rollups: %+v", id, rs)
			}
			if us := e.uniques(t, q); len(us) > 0 {
				t.Errorf("deleted meter %s still has distinct values: %+v", id, us)
			}
		}
		e.checkMeters(t, nil, mCount)
		if got := e.listEvents(t, store.EventFilter{}); len(got) != 4 {
			t.Errorf("%d events after deleting meters, want all 4 kept", len(got))
		}
	})
}

// putState is the state of events with values vs, the i-th at t0+i s with
// sequence number 1000+i.
// putState is the state of values vs for aggregation agg, as a backend
// keeps it (only the fields agg reads).
func putState(agg meter.Aggregation, vs ...string) meter.State {
	var s meter.State
	for i, v := range vs {
		s.Observe(agg, dec(v), t0.Add(time.Duration(i)*time.Second).UnixMicro(), int64(1000+i))
	}
	return s
}

// observed is the state of one value for aggregation agg.
func observed(agg meter.Aggregation, v string, timeUS, seq int64) meter.State {
	var s meter.State
	s.Observe(agg, dec(v), timeUS, seq)
	return s
}

func testPutMeter(t *testing.T, b Backend) {
	sumMeter := newMeter(mSum, "sum", meter.Sum)
	countMeter := newMeter(mCount, "count", meter.Count)
	setup := func(t *testing.T) (*env, map[string]int64) {
		e := newEnv(t, b)
		e.createMeters(t, sumMeter, countMeter)
		e.append(t, t0,
			ev("a", "alice", 0, sum(mSum, "1"), cnt(mCount, "")),
			ev("b", "bob", time.Minute, invalid(mSum, meter.Sum, "old sum error"), invalid(mCount, meter.Count, "count error")),
		)
		e.flush(t)
		// Pending when PutMeter runs, for stores that write behind.
		e.append(t, t0,
			ev("c", "alice", time.Second, sum(mSum, "2"), cnt(mCount, "")),
			ev("d", "carol", 2*time.Minute, sum(mSum, "4"), uniq(mUnique, "q"), cnt(mCount, "")),
		)
		seqByID := make(map[string]int64)
		for k, seq := range e.seqs(t) {
			seqByID[k.id] = seq
		}
		return e, seqByID
	}
	errorsByID := func(t *testing.T, e *env) map[string][]string {
		out := make(map[string][]string)
		for _, se := range e.listEvents(t, store.EventFilter{}) {
			if len(se.ValidationErrors) > 0 {
				out[se.ID] = se.ValidationErrors
			}
		}
		return out
	}
	all := func(id string) store.RollupQuery {
		return store.RollupQuery{MeterID: id, From: openFrom, To: openTo}
	}

	t.Run("replaces definition and projection", func(t *testing.T) {
		e, seq := setup(t)
		def := newMeter(mSum, "sum_v2", meter.UniqueCount)
		def.ValueProperty = "$.user"
		rollups := []store.Rollup{
			{MeterID: mSum, Subject: "alice", Minute: m0, State: meter.State{Count: 1}},
			{MeterID: mSum, Subject: "dave", GroupKey: `{"region":"eu"}`, Minute: m0 + 60, State: meter.State{Count: 2}},
		}
		uniques := []store.UniqueValue{
			{MeterID: mSum, Subject: "alice", Minute: m0, Value: "u1"},
			{MeterID: mSum, Subject: "dave", GroupKey: `{"region":"eu"}`, Minute: m0 + 60, Value: "u2"},
		}
		errs := []store.EventError{{Seq: seq["c"], MeterID: mSum, Message: "new sum error"}}
		if err := e.s.PutMeter(ctxOf(t), def, rollups, uniques, errs); err != nil {
			t.Fatalf("PutMeter: %v", err)
		}
		// Appending after PutMeter merges into the new projection.
		e.append(t, t0, ev("e", "alice", 30*time.Second, uniq(mSum, "u1"), cnt(mCount, "")))
		wantRollups := []store.Rollup{
			{MeterID: mSum, Subject: "alice", Minute: m0, State: meter.State{Count: 2}},
			rollups[1],
		}
		e.stages(t, func(t *testing.T) {
			e.checkMeterDefs(t, def, countMeter)
			e.wantNoMeter(t, "sum")
			if diff := cmp.Diff(wantRollups, e.rollups(t, all(mSum)), rollupOpts); diff != "" {
				t.Errorf("rollups of the replaced meter (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(uniques, e.uniques(t, all(mSum)), rollupOpts); diff != "" {
				t.Errorf("distinct values of the replaced meter (-want +got):\n%s", diff)
			}
			wantErrs := map[string][]string{"b": {"count error"}, "c": {"new sum error"}}
			if diff := cmp.Diff(wantErrs, errorsByID(t, e)); diff != "" {
				t.Errorf("validation errors by event (-want +got):\n%s", diff)
			}
			// The other meters' projections, pending or not, are untouched.
			e.checkMeters(t, nil, mCount, mUnique)
		})
	})

	t.Run("creates a meter", func(t *testing.T) {
		e, seq := setup(t)
		def := newMeter("m-new", "fresh", meter.Max)
		rollups := []store.Rollup{{MeterID: "m-new", Subject: "alice", Minute: m0, State: putState(meter.Max, "3", "9", "1")}}
		errs := []store.EventError{{Seq: seq["a"], MeterID: "m-new", Message: "fresh error"}}
		if err := e.s.PutMeter(ctxOf(t), def, rollups, nil, errs); err != nil {
			t.Fatalf("PutMeter: %v", err)
		}
		// Appending after PutMeter merges into the new projection.
		e.append(t, t0, ev("f", "alice", 59*time.Second, val("m-new", meter.Max, "4")))
		f := e.listEvents(t, store.EventFilter{ID: "f"})[0]
		want := []store.Rollup{rollups[0]}
		want[0].State.MergeFor(meter.Max, observed(meter.Max, "4", f.Time.UnixMicro(), f.Seq))
		e.stages(t, func(t *testing.T) {
			e.checkMeterDefs(t, sumMeter, countMeter, def)
			if diff := cmp.Diff(want, e.rollups(t, all("m-new")), rollupOpts); diff != "" {
				t.Errorf("rollups of the new meter (-want +got):\n%s", diff)
			}
			wantErrs := map[string][]string{"a": {"fresh error"}, "b": {"count error", "old sum error"}}
			if diff := cmp.Diff(wantErrs, errorsByID(t, e)); diff != "" {
				t.Errorf("validation errors by event (-want +got):\n%s", diff)
			}
			e.checkMeters(t, nil, mSum, mCount, mUnique)
		})
	})

	t.Run("empty projection clears the old one", func(t *testing.T) {
		e, _ := setup(t)
		if err := e.s.PutMeter(ctxOf(t), sumMeter, nil, nil, nil); err != nil {
			t.Fatalf("PutMeter: %v", err)
		}
		e.stages(t, func(t *testing.T) {
			e.checkMeterDefs(t, sumMeter, countMeter)
			if rs := e.rollups(t, all(mSum)); len(rs) > 0 {
				t.Errorf("rollups after PutMeter with none: %+v", rs)
			}
			wantErrs := map[string][]string{"b": {"count error"}}
			if diff := cmp.Diff(wantErrs, errorsByID(t, e)); diff != "" {
				t.Errorf("validation errors by event (-want +got):\n%s", diff)
			}
			e.checkMeters(t, nil, mCount, mUnique)
		})
	})

	t.Run("slug conflict changes nothing", func(t *testing.T) {
		e, seq := setup(t)
		rollups := []store.Rollup{{MeterID: mSum, Subject: "zed", Minute: m0, State: putState(meter.Sum, "100")}}
		errs := []store.EventError{{Seq: seq["a"], MeterID: mSum, Message: "must not be stored"}}
		taken := newMeter(mSum, "count", meter.Sum)
		if err := e.s.PutMeter(ctxOf(t), taken, rollups, nil, errs); !errors.Is(err, store.ErrConflict) {
			t.Errorf("PutMeter replacing with a taken slug: %v, want ErrConflict", err)
		}
		other := newMeter("m-other", "sum", meter.Sum)
		if err := e.s.PutMeter(ctxOf(t), other, rollups, nil, nil); !errors.Is(err, store.ErrConflict) {
			t.Errorf("PutMeter creating with a taken slug: %v, want ErrConflict", err)
		}
		e.stages(t, func(t *testing.T) {
			e.checkMeterDefs(t, sumMeter, countMeter)
			e.wantNoMeter(t, "m-other")
			if rs := e.rollups(t, all("m-other")); len(rs) > 0 {
				t.Errorf("rollups of a meter PutMeter refused: %+v", rs)
			}
			wantErrs := map[string][]string{"b": {"count error", "old sum error"}}
			if diff := cmp.Diff(wantErrs, errorsByID(t, e)); diff != "" {
				t.Errorf("validation errors by event (-want +got):\n%s", diff)
			}
			e.checkMeters(t, nil, mSum, mCount, mUnique)
		})
	})
}
