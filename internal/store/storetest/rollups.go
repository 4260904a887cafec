package storetest

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/shopspring/decimal"

	"github.com/tally-metering/tally/internal/meter"
	"github.com/tally-metering/tally/internal/store"
)

// valueEvent is an event with one value, at t0+at, for the aggregation
// tests.
type valueEvent struct {
	id string
	at time.Duration
	v  string
}

// wantState is an expected rollup state; latestID names the event whose
// value is Latest (its time and sequence number must be LatestTime and
// LatestSeq).
type wantState struct {
	count                   int64
	sum, min, max, latest   string
	latestID                string
	avg                     string // State.Value(meter.Avg), if set
	uniques                 []string
	countOnly, uniqueValues bool
}

func testAggregation(t *testing.T, b Backend) {
	tests := []struct {
		name   string
		agg    meter.Aggregation
		events []valueEvent
		want   wantState
	}{
		{
			name:   "decimal sum is exact",
			agg:    meter.Sum,
			events: []valueEvent{{"a", 1 * time.Second, "0.1"}, {"b", 2 * time.Second, "0.2"}},
			want:   wantState{count: 2, sum: "0.3", min: "0.1", max: "0.2", latest: "0.2", latestID: "b"},
		},
		{
			name: "large, tiny and negative values",
			agg:  meter.Sum,
			events: []valueEvent{
				{"a", 1 * time.Second, "12345678901234567890.123456789"},
				{"b", 2 * time.Second, "-0.000000000000000001"},
				{"c", 3 * time.Second, "0.000000000000000000000000000001"},
			},
			want: wantState{count: 3, sum: "12345678901234567890.123456788999999999000000000001",
				min: "-0.000000000000000001", max: "12345678901234567890.123456789", latest: "0.000000000000000000000000000001", latestID: "c"},
		},
		{
			name: "min and max",
			agg:  meter.Max,
			events: []valueEvent{
				{"a", 1 * time.Second, "3"}, {"b", 2 * time.Second, "-7.5"}, {"c", 3 * time.Second, "2.25"},
				{"d", 4 * time.Second, "-7.50"}, {"e", 5 * time.Second, "2.9999999999999999999"},
			},
			want: wantState{count: 5, sum: "-6.7500000000000000001", min: "-7.5", max: "3", latest: "2.9999999999999999999", latestID: "e"},
		},
		{
			name:   "trailing zeros are the same number",
			agg:    meter.Min,
			events: []valueEvent{{"a", 1 * time.Second, "1.50"}, {"b", 2 * time.Second, "1.5"}, {"c", 3 * time.Second, "1.500"}},
			want:   wantState{count: 3, sum: "4.5", min: "1.5", max: "1.5", latest: "1.5", latestID: "c"},
		},
		{
			name: "latest is by event time, not ingestion order",
			agg:  meter.Latest,
			events: []valueEvent{
				{"a", 30 * time.Second, "1"}, {"b", 10 * time.Second, "2"}, {"c", 20 * time.Second, "3"},
			},
			want: wantState{count: 3, sum: "6", min: "1", max: "3", latest: "1", latestID: "a"},
		},
		{
			name: "latest at the same time is the last ingested",
			agg:  meter.Latest,
			events: []valueEvent{
				{"a", 5 * time.Second, "1"}, {"b", 5 * time.Second, "2"}, {"c", 4 * time.Second, "9"}, {"d", 5 * time.Second, "3"},
			},
			want: wantState{count: 4, sum: "15", min: "1", max: "9", latest: "3", latestID: "d"},
		},
		{
			name: "latest to the microsecond",
			agg:  meter.Latest,
			events: []valueEvent{
				{"a", 5*time.Second + 2*time.Microsecond, "1"}, {"b", 5*time.Second + time.Microsecond, "2"},
			},
			want: wantState{count: 2, sum: "3", min: "1", max: "2", latest: "1", latestID: "a"},
		},
		{
			name:   "avg",
			agg:    meter.Avg,
			events: []valueEvent{{"a", 1 * time.Second, "0"}, {"b", 2 * time.Second, "0"}, {"c", 3 * time.Second, "1"}},
			want:   wantState{count: 3, sum: "1", min: "0", max: "1", latest: "1", latestID: "c", avg: "0.33333333333333333333"},
		},
		{
			name:   "count",
			agg:    meter.Count,
			events: []valueEvent{{"a", 1 * time.Second, ""}, {"b", 2 * time.Second, ""}, {"c", 59 * time.Second, ""}},
			want:   wantState{count: 3, countOnly: true},
		},
		{
			name: "unique count keeps distinct values",
			agg:  meter.UniqueCount,
			events: []valueEvent{
				{"a", 1 * time.Second, "x"}, {"b", 2 * time.Second, "y"}, {"c", 3 * time.Second, "x"}, {"d", 4 * time.Second, ""},
			},
			want: wantState{count: 4, countOnly: true, uniqueValues: true, uniques: []string{"", "x", "y"}},
		},
	}
	// The same events, appended in different ways, must give the same
	// state: what the store merges in memory, in its tables and across the
	// two must agree.
	modes := []struct {
		name string
		// group splits events into AppendEvents calls
		group func([]store.NewEvent) [][]store.NewEvent
		// flush between calls (stores that write behind only)
		flush bool
	}{
		{"one call", func(evs []store.NewEvent) [][]store.NewEvent { return [][]store.NewEvent{evs} }, false},
		{"call per event", perEvent, false},
		{"flush between calls", perEvent, true},
	}
	const meterID = "m-agg"
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var evs []store.NewEvent
			for _, ve := range tt.events {
				var c store.Contribution
				switch tt.agg {
				case meter.Count:
					c = cnt(meterID, "")
				case meter.UniqueCount:
					c = uniq(meterID, ve.v)
				default:
					c = val(meterID, tt.agg, ve.v)
				}
				evs = append(evs, ev(ve.id, "alice", ve.at, c))
			}
			for _, mode := range modes {
				t.Run(mode.name, func(t *testing.T) {
					e := newEnv(t, b)
					if _, ok := e.s.(Flusher); mode.flush && !ok {
						t.Skip("the store does not write behind")
					}
					for i, call := range mode.group(evs) {
						if mode.flush && i > 0 {
							e.flush(t)
						}
						e.append(t, t0, call...)
					}
					e.stages(t, func(t *testing.T) {
						checkState(t, e, meterID, tt.agg, tt.want)
						e.checkModel(t)
					})
				})
			}
		})
	}
}

func perEvent(evs []store.NewEvent) [][]store.NewEvent {
	out := make([][]store.NewEvent, len(evs))
	for i := range evs {
		out[i] = evs[i : i+1]
	}
	return out
}

// checkState checks that meterID has one rollup, for alice at minute m0,
// in the wanted state.
func checkState(t *testing.T, e *env, meterID string, agg meter.Aggregation, want wantState) {
	t.Helper()
	q := store.RollupQuery{MeterID: meterID, From: openFrom, To: openTo}
	rs := e.rollups(t, q)
	if len(rs) != 1 {
		t.Fatalf("QueryRollups: %d rollups, want 1: %+v", len(rs), rs)
	}
	r := rs[0]
	if r.MeterID != meterID || r.Subject != "alice" || r.GroupKey != "" || r.Minute != m0 {
		t.Errorf("rollup is for meter %q subject %q group %q minute %d, want %q alice \"\" %d", r.MeterID, r.Subject, r.GroupKey, r.Minute, meterID, m0)
	}
	got := r.State
	if got.Count != want.count {
		t.Errorf("Count = %d, want %d", got.Count, want.count)
	}
	if !want.countOnly {
		// A store keeps only the fields the aggregation reads.
		type field struct {
			name      string
			got, want string
		}
		var fields []field
		switch agg {
		case meter.Sum, meter.Avg:
			fields = append(fields, field{"Sum", got.Sum.String(), want.sum})
		case meter.Min:
			fields = append(fields, field{"Min", got.Min.String(), want.min})
		case meter.Max:
			fields = append(fields, field{"Max", got.Max.String(), want.max})
		case meter.Latest:
			fields = append(fields, field{"Latest", got.Latest.String(), want.latest})
		}
		for _, f := range fields {
			if !dec(f.got).Equal(dec(f.want)) {
				t.Errorf("%s = %s, want %s", f.name, f.got, f.want)
			}
		}
		if want.latestID != "" && agg == meter.Latest {
			var latest store.StoredEvent
			for _, se := range e.listEvents(t, store.EventFilter{ID: want.latestID}) {
				latest = se
			}
			if got.LatestTime != latest.Time.UnixMicro() || got.LatestSeq != latest.Seq {
				t.Errorf("Latest is at (%d µs, seq %d), want event %s's (%d µs, seq %d)",
					got.LatestTime, got.LatestSeq, want.latestID, latest.Time.UnixMicro(), latest.Seq)
			}
		}
		if want.avg != "" {
			if v := got.Value(meter.Avg); !v.Equal(dec(want.avg)) {
				t.Errorf("Value(AVG) = %s, want %s", v, want.avg)
			}
		}
	}
	if v := got.Value(agg); agg == meter.Count && !v.Equal(decimal.NewFromInt(want.count)) {
		t.Errorf("Value(COUNT) = %s, want %d", v, want.count)
	}
	if want.uniqueValues {
		var vals []string
		for _, u := range e.uniques(t, q) {
			vals = append(vals, u.Value)
			if u.MeterID != meterID || u.Subject != "alice" || u.GroupKey != "" || u.Minute != m0 {
				t.Errorf("distinct value %+v is not for meter %q, alice, group \"\", minute %d", u, meterID, m0)
			}
		}
		if diff := cmp.Diff(want.uniques, vals, cmpopts.EquateEmpty()); diff != "" {
			t.Errorf("distinct values (-want +got):\n%s", diff)
		}
	}
}

func testReadYourWrites(t *testing.T, b Backend) {
	e := newEnv(t, b)
	_, flusher := e.s.(Flusher)
	check := func(t *testing.T, step string, want map[cell]int64) {
		t.Helper()
		got := make(map[cell]int64)
		for _, r := range e.rollups(t, store.RollupQuery{MeterID: mCount, From: openFrom, To: openTo}) {
			got[cell{r.MeterID, r.Subject, r.GroupKey, r.Minute}] = r.State.Count
		}
		if diff := cmp.Diff(want, got, cmp.AllowUnexported(cell{})); diff != "" {
			t.Errorf("%s: counts by cell (-want +got):\n%s", step, diff)
		}
		e.checkModel(t)
	}
	alice := cell{mCount, "alice", "", m0}
	aliceG := cell{mCount, "alice", `{"region":"eu"}`, m0}
	bob := cell{mCount, "bob", "", m0 + 60}

	e.append(t, t0, ev("a", "alice", 0, cnt(mCount, "")))
	check(t, "after the first append", map[cell]int64{alice: 1})
	e.append(t, t0, ev("b", "alice", time.Second, cnt(mCount, "")), ev("c", "bob", time.Minute, cnt(mCount, "")))
	check(t, "after the second append", map[cell]int64{alice: 2, bob: 1})
	if flusher {
		e.flush(t)
		check(t, "after a flush", map[cell]int64{alice: 2, bob: 1})
	}
	// Into cells that are (after the flush) stored, and a new one.
	e.append(t, t0, ev("d", "alice", 2*time.Second, cnt(mCount, "")), ev("e", "alice", 3*time.Second, cnt(mCount, `{"region":"eu"}`)))
	check(t, "after appending to flushed cells", map[cell]int64{alice: 3, aliceG: 1, bob: 1})
	e.append(t, t0, ev("f", "bob", time.Minute+time.Second, cnt(mCount, "")))
	check(t, "after another append", map[cell]int64{alice: 3, aliceG: 1, bob: 2})
	if flusher {
		e.flush(t)
		check(t, "after a second flush", map[cell]int64{alice: 3, aliceG: 1, bob: 2})
	}
	if b.Reopen != nil {
		e.append(t, t0, ev("g", "bob", time.Minute+time.Second, cnt(mCount, "")))
		e.reopen(t)
		check(t, "after a restart", map[cell]int64{alice: 3, aliceG: 1, bob: 3})
		e.append(t, t0, ev("h", "bob", time.Minute+time.Second, cnt(mCount, "")))
		check(t, "after appending once restarted", map[cell]int64{alice: 3, aliceG: 1, bob: 4})
	}
}

// rangeEvents are spread over minutes, subjects and two meters, with an
// event before 1970 (a negative minute).
func rangeEvents() []store.NewEvent {
	return []store.NewEvent{
		ev("r1", "alice", 0, sum(mSum, "1"), uniq(mUnique, "u1")),
		ev("r2", "alice", 59*time.Second+999999*time.Microsecond, sum(mSum, "2"), uniq(mUnique, "u2")),
		ev("r3", "alice", 60*time.Second, sum(mSum, "4"), uniq(mUnique, "u1")),
		ev("r4", "bob", 90*time.Second, sum(mSum, "8"), uniq(mUnique, "u3")),
		ev("r5", "carol", 150*time.Second, sum(mSum, "16"), uniq(mUnique, "u4")),
		ev("r6", "bob", 150*time.Second, sum(mMax, "32"), uniq("m-unique-2", "u5")),
		evFull(testSource, "r7", "api.request", "alice", time.Unix(-30, 0).UTC(), sum(mSum, "64"), uniq(mUnique, "old")),
	}
}

type rangeQuery struct {
	name string
	q    store.RollupQuery
	// wantCells lists the selected (subject, minute) cells of the meter.
	wantCells []subjMinute
}

type subjMinute struct {
	subject string
	minute  int64
}

func rangeQueries(meterID string) []rangeQuery {
	q := func(from, to int64, subjects ...string) store.RollupQuery {
		return store.RollupQuery{MeterID: meterID, From: from, To: to, Subjects: subjects}
	}
	return []rangeQuery{
		{"open bounds", q(openFrom, openTo), []subjMinute{{"alice", -60}, {"alice", m0}, {"alice", m0 + 60}, {"bob", m0 + 60}, {"carol", m0 + 120}}},
		{"from is inclusive", q(m0+60, openTo), []subjMinute{{"alice", m0 + 60}, {"bob", m0 + 60}, {"carol", m0 + 120}}},
		{"to is exclusive", q(openFrom, m0+60), []subjMinute{{"alice", -60}, {"alice", m0}}},
		{"one minute", q(m0+60, m0+120), []subjMinute{{"alice", m0 + 60}, {"bob", m0 + 60}}},
		{"from within a minute", q(m0+1, openTo), []subjMinute{{"alice", m0 + 60}, {"bob", m0 + 60}, {"carol", m0 + 120}}},
		{"empty range", q(m0+60, m0+60), nil},
		{"reversed range", q(m0+120, m0), nil},
		{"before any event", q(openFrom, -60), nil},
		{"after every event", q(m0+180, openTo), nil},
		{"negative minute", q(-60, 0), []subjMinute{{"alice", -60}}},
		{"one subject", q(openFrom, openTo, "bob"), []subjMinute{{"bob", m0 + 60}}},
		{"two subjects", q(openFrom, openTo, "carol", "alice"), []subjMinute{{"alice", -60}, {"alice", m0}, {"alice", m0 + 60}, {"carol", m0 + 120}}},
		{"subject and range", q(m0, m0+60, "alice", "bob"), []subjMinute{{"alice", m0}}},
		{"unknown subject", q(openFrom, openTo, "nobody"), nil},
		{"other meter", store.RollupQuery{MeterID: "m-unknown", From: openFrom, To: openTo}, nil},
	}
}

func testQueryRollups(t *testing.T, b Backend) {
	e := newEnv(t, b)
	evs := rangeEvents()
	e.append(t, t0, evs[:3]...)
	e.flush(t) // if any: some rollups stored, some pending
	e.append(t, t0, evs[3:]...)
	e.stages(t, func(t *testing.T) {
		seqs := e.seqs(t)
		for _, rq := range rangeQueries(mSum) {
			t.Run(rq.name, func(t *testing.T) {
				got := e.rollups(t, rq.q)
				var cells []subjMinute
				for _, r := range got {
					cells = append(cells, subjMinute{r.Subject, r.Minute})
					if r.MeterID != mSum {
						t.Errorf("rollup of meter %q in a query of %q", r.MeterID, mSum)
					}
				}
				if rq.q.MeterID == mSum {
					if diff := cmp.Diff(rq.wantCells, cells, cmp.AllowUnexported(subjMinute{}), cmpopts.EquateEmpty()); diff != "" {
						t.Errorf("QueryRollups(%+v) cells (-want +got):\n%s", rq.q, diff)
					}
				} else if len(got) > 0 {
					t.Errorf("QueryRollups(%+v) = %+v, want none", rq.q, got)
				}
				if diff := cmp.Diff(e.m.rollups(seqs, rq.q), got, rollupOpts); diff != "" {
					t.Errorf("QueryRollups(%+v) (-want +got):\n%s", rq.q, diff)
				}
			})
		}
		t.Run("meter isolation", func(t *testing.T) {
			got := e.rollups(t, store.RollupQuery{MeterID: mMax, From: openFrom, To: openTo})
			if len(got) != 1 || got[0].Subject != "bob" || !got[0].State.Sum.Equal(dec("32")) {
				t.Errorf("rollups of %s = %+v, want bob's 32 only", mMax, got)
			}
		})
	})
}

func testQueryUniqueValues(t *testing.T, b Backend) {
	e := newEnv(t, b)
	evs := rangeEvents()
	e.append(t, t0, evs[:3]...)
	e.flush(t)
	e.append(t, t0, evs[3:]...)
	e.stages(t, func(t *testing.T) {
		for _, rq := range rangeQueries(mUnique) {
			t.Run(rq.name, func(t *testing.T) {
				got := e.uniques(t, rq.q)
				cells := make(map[subjMinute]bool)
				for _, u := range got {
					cells[subjMinute{u.Subject, u.Minute}] = true
					if u.MeterID != mUnique {
						t.Errorf("distinct value of meter %q in a query of %q", u.MeterID, mUnique)
					}
				}
				if rq.q.MeterID == mUnique {
					want := make(map[subjMinute]bool)
					for _, c := range rq.wantCells {
						want[c] = true
					}
					if diff := cmp.Diff(want, cells, cmp.AllowUnexported(subjMinute{}), cmpopts.EquateEmpty()); diff != "" {
						t.Errorf("QueryUniqueValues(%+v) cells (-want +got):\n%s", rq.q, diff)
					}
				} else if len(got) > 0 {
					t.Errorf("QueryUniqueValues(%+v) = %+v, want none", rq.q, got)
				}
				if diff := cmp.Diff(e.m.uniques(rq.q), got, rollupOpts); diff != "" {
					t.Errorf("QueryUniqueValues(%+v) (-want +got):\n%s", rq.q, diff)
				}
			})
		}
		t.Run("values per minute", func(t *testing.T) {
			got := e.uniques(t, store.RollupQuery{MeterID: mUnique, From: m0, To: m0 + 60, Subjects: []string{"alice"}})
			var vals []string
			for _, u := range got {
				vals = append(vals, u.Value)
			}
			if diff := cmp.Diff([]string{"u1", "u2"}, vals); diff != "" {
				t.Errorf("alice's distinct values in minute m0 (-want +got):\n%s", diff)
			}
		})
		t.Run("meter isolation", func(t *testing.T) {
			got := e.uniques(t, store.RollupQuery{MeterID: "m-unique-2", From: openFrom, To: openTo})
			if len(got) != 1 || got[0].Value != "u5" {
				t.Errorf("distinct values of m-unique-2 = %+v, want u5 only", got)
			}
		})
	})
}
