package ingest_test

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tally-metering/tally/internal/event"
	"github.com/tally-metering/tally/internal/ingest"
	"github.com/tally-metering/tally/internal/meter"
	"github.com/tally-metering/tally/internal/store"
)

// TestRuleScale times applying and deleting a cancellation rule that
// matches TALLY_BENCH_RULE events (1,000,000 for docs/benchmarks.md) while
// ingest goes on, and reports the longest an ingest call waited. It is
// skipped unless TALLY_BENCH_RULE is set:
//
//	TALLY_BENCH_RULE=1000000 go test ./internal/ingest -run TestRuleScale -v -count=1 -timeout 60m
func TestRuleScale(t *testing.T) {
	v := os.Getenv("TALLY_BENCH_RULE")
	if v == "" {
		t.Skip("set TALLY_BENCH_RULE=N to run")
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 {
		t.Fatalf("TALLY_BENCH_RULE=%q: want a positive number", v)
	}
	ctx := context.Background()
	p, st := newPipeline(t, t.TempDir())
	defer st.Close()
	defer p.Close()
	for _, m := range []meter.Meter{
		{Slug: "value_sum", EventType: "request", Aggregation: meter.Sum, ValueProperty: "$.value"},
		{Slug: "value_max", EventType: "request", Aggregation: meter.Max, ValueProperty: "$.value"},
	} {
		if _, err := p.CreateMeter(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	// n events for 1,000 subjects over one day (timed in the past) to be
	// cancelled, then ingest for other subjects goes on while the rule is
	// applied.
	const subjects, batch = 1000, 20000
	day := time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC)
	load := time.Now()
	for start := 0; start < n; start += batch {
		evs := make([]event.Event, 0, batch)
		for i := start; i < min(start+batch, n); i++ {
			data := []byte(fmt.Sprintf(`{"value":%d}`, i%100))
			evs = append(evs, event.Event{ID: "e" + strconv.Itoa(i), Source: "bench", Type: "request",
				Subject: "s" + strconv.Itoa(i%subjects), Time: day.Add(time.Duration(int64(i)*86400/int64(n)) * time.Second),
				Data: data, Raw: []byte(`{"specversion":"1.0","id":"e` + strconv.Itoa(i) + `","source":"bench","type":"request","subject":"s` + strconv.Itoa(i%subjects) + `","data":` + string(data) + `}`)})
		}
		if err := p.Submit(ctx, evs); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("loaded %d events in %s", n, time.Since(load).Round(time.Millisecond))
	if err := st.Flush(ctx); err != nil {
		t.Fatal(err)
	}

	var stop atomic.Bool
	var wg sync.WaitGroup
	var maxWait atomic.Int64
	var calls atomic.Int64
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; !stop.Load(); i++ {
			evs := make([]event.Event, 100)
			for j := range evs {
				id := fmt.Sprintf("live-%d-%d", i, j)
				evs[j] = event.Event{ID: id, Source: "bench", Type: "request", Subject: "live", Time: t0,
					Data: []byte(`{"value":1}`), Raw: []byte(`{"specversion":"1.0","id":"` + id + `","source":"bench","type":"request","subject":"live","data":{"value":1}}`)}
			}
			s := time.Now()
			if err := p.Submit(ctx, evs); err != nil {
				t.Error(err)
				return
			}
			if d := time.Since(s).Nanoseconds(); d > maxWait.Load() {
				maxWait.Store(d)
			}
			calls.Add(1)
			time.Sleep(5 * time.Millisecond)
		}
	}()
	from, to := day, day.Add(24*time.Hour)
	start := time.Now()
	r, err := p.CreateRule(ctx, ingest.RuleInput{EventFrom: &from, EventTo: &to, Reason: "bench", Actor: "bench"})
	if err != nil {
		t.Fatal(err)
	}
	applied := time.Since(start)
	applyWait := time.Duration(maxWait.Swap(0))
	start = time.Now()
	if _, err := p.DeleteRule(ctx, r.ID, "bench"); err != nil {
		t.Fatal(err)
	}
	removed := time.Since(start)
	stop.Store(true)
	wg.Wait()
	if r.EventsMatched != int64(n) {
		t.Errorf("rule matched %d events, want %d", r.EventsMatched, n)
	}
	t.Logf("rule matching %d events (2 meters): applied in %s, deleted (usage restored) in %s; %d ingest calls meanwhile, longest wait %s while applying, %s while deleting",
		r.EventsMatched, applied.Round(time.Millisecond), removed.Round(time.Millisecond), calls.Load(),
		applyWait.Round(time.Millisecond), time.Duration(maxWait.Load()).Round(time.Millisecond))
	rep, err := ingest.Verify(ctx, st)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Differences) > 0 {
		t.Fatalf("verify: %d differences, first %s", len(rep.Differences), rep.Differences[0])
	}
	if got, err := st.GetRule(ctx, r.ID); err != nil || got.State != store.RuleDeleted {
		t.Errorf("rule after delete: %+v, %v", got, err)
	}
}
