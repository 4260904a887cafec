package usage

import (
	"context"
	"errors"
	"math"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/tally-metering/tally/internal/meter"
	"github.com/tally-metering/tally/internal/store"
)

// fakeRollups is an in-memory store of rollups that records its calls.
type fakeRollups struct {
	mu      sync.Mutex
	rollups []store.Rollup
	uniques []store.UniqueValue
	err     error
	calls   []string
	queries []store.RollupQuery
}

func (f *fakeRollups) match(q store.RollupQuery, meterID, subject string, minute int64) bool {
	return meterID == q.MeterID && minute >= q.From && minute < q.To &&
		(len(q.Subjects) == 0 || slices.Contains(q.Subjects, subject))
}

func (f *fakeRollups) QueryRollups(_ context.Context, q store.RollupQuery) ([]store.Rollup, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, "QueryRollups")
	f.queries = append(f.queries, q)
	if f.err != nil {
		return nil, f.err
	}
	var out []store.Rollup
	for _, r := range f.rollups {
		if f.match(q, r.MeterID, r.Subject, r.Minute) {
			out = append(out, r)
		}
	}
	return out, nil
}

func (f *fakeRollups) QueryUniqueValues(_ context.Context, q store.RollupQuery) ([]store.UniqueValue, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, "QueryUniqueValues")
	f.queries = append(f.queries, q)
	if f.err != nil {
		return nil, f.err
	}
	var out []store.UniqueValue
	for _, u := range f.uniques {
		if f.match(q, u.MeterID, u.Subject, u.Minute) {
			out = append(out, u)
		}
	}
	return out, nil
}

var _ RollupReader = (*fakeRollups)(nil)

func TestServiceQuery(t *testing.T) {
	events := []ev{
		{subject: "s1", at: "2026-01-15T10:00:00Z", value: "a"},
		{subject: "s1", at: "2026-01-15T10:30:00Z", value: "b"},
		{subject: "s2", at: "2026-01-15T11:00:00Z", value: "a"},
		{subject: "s2", at: "2026-01-16T11:00:00Z", value: "a"},
	}
	tests := []struct {
		name      string
		agg       meter.Aggregation
		q         Query // Meter is filled in
		wantCall  string
		wantQuery store.RollupQuery
		want      []want
	}{
		{
			name:      "count with range and subjects",
			agg:       meter.Count,
			q:         Query{From: tp(t, "2026-01-15T00:00:00Z"), To: tp(t, "2026-01-16T00:00:00Z"), Subjects: []string{"s1", "s2"}, WindowSize: WindowSizeHour},
			wantCall:  "QueryRollups",
			wantQuery: store.RollupQuery{MeterID: testMeterID, From: ts(t, "2026-01-15T00:00:00Z").Unix(), To: ts(t, "2026-01-16T00:00:00Z").Unix(), Subjects: []string{"s1", "s2"}},
			want: []want{
				{v: "2", start: "2026-01-15T10:00:00Z", end: "2026-01-15T11:00:00Z"},
				{v: "1", start: "2026-01-15T11:00:00Z", end: "2026-01-15T12:00:00Z"},
			},
		},
		{
			name:      "count without range",
			agg:       meter.Count,
			q:         Query{GroupBy: []string{"subject"}},
			wantCall:  "QueryRollups",
			wantQuery: store.RollupQuery{MeterID: testMeterID, From: math.MinInt64, To: math.MaxInt64},
			want: []want{
				{v: "2", start: "2026-01-15T10:00:00Z", end: "2026-01-15T10:31:00Z", subject: ptr("s1")},
				{v: "2", start: "2026-01-15T11:00:00Z", end: "2026-01-16T11:01:00Z", subject: ptr("s2")},
			},
		},
		{
			name:      "unique count reads distinct values",
			agg:       meter.UniqueCount,
			q:         Query{WindowSize: WindowSizeDay, From: tp(t, "2026-01-15T00:00:00Z")},
			wantCall:  "QueryUniqueValues",
			wantQuery: store.RollupQuery{MeterID: testMeterID, From: ts(t, "2026-01-15T00:00:00Z").Unix(), To: math.MaxInt64},
			want: []want{
				{v: "2", start: "2026-01-15T00:00:00Z", end: "2026-01-16T00:00:00Z"},
				{v: "1", start: "2026-01-16T00:00:00Z", end: "2026-01-17T00:00:00Z"},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fake := &fakeRollups{}
			rollups, uniques := rollupsOf(t, tt.agg, events)
			// Usage of another meter must not leak in.
			other := slices.Clone(rollups)
			for i := range other {
				other[i].MeterID = "m2"
			}
			fake.rollups = append(rollups, other...)
			fake.uniques = uniques
			svc := &Service{Store: fake}
			q := tt.q
			q.Meter = testMeter(tt.agg)
			got, err := svc.Query(context.Background(), q)
			if err != nil {
				t.Fatalf("Query() error = %v", err)
			}
			if diff := cmp.Diff([]string{tt.wantCall}, fake.calls); diff != "" {
				t.Errorf("store calls (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff([]store.RollupQuery{tt.wantQuery}, fake.queries); diff != "" {
				t.Errorf("store queries (-want +got):\n%s", diff)
			}
			wantRes := Result{From: tt.q.From, To: tt.q.To, WindowSize: tt.q.WindowSize, Rows: wantRows(t, tt.want)}
			if diff := cmp.Diff(wantRes, got); diff != "" {
				t.Errorf("Query() (-want +got):\n%s", diff)
			}
		})
	}
}

func TestServiceQueryErrors(t *testing.T) {
	t.Run("invalid query does not reach the store", func(t *testing.T) {
		fake := &fakeRollups{}
		svc := &Service{Store: fake}
		_, err := svc.Query(context.Background(), Query{Meter: testMeter(meter.Sum), GroupBy: []string{"color"}})
		if err == nil || !strings.Contains(err.Error(), `groupBy: unknown key "color"`) {
			t.Fatalf("Query() error = %v, want the groupBy error", err)
		}
		if len(fake.calls) != 0 {
			t.Errorf("store calls = %v, want none", fake.calls)
		}
	})
	t.Run("store error is wrapped", func(t *testing.T) {
		boom := errors.New("disk on fire")
		svc := &Service{Store: &fakeRollups{err: boom}}
		_, err := svc.Query(context.Background(), Query{Meter: testMeter(meter.Sum)})
		if !errors.Is(err, boom) || !strings.Contains(err.Error(), "api_calls") {
			t.Fatalf("Query() error = %v, want wrapping %v and naming the meter", err, boom)
		}
	})
}
