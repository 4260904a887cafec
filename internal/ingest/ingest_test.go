package ingest_test

import (
	"context"
	"database/sql"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tally-metering/tally/internal/event"
	"github.com/tally-metering/tally/internal/ingest"
	"github.com/tally-metering/tally/internal/meter"
	"github.com/tally-metering/tally/internal/store"
	"github.com/tally-metering/tally/internal/store/sqlite"
)

var t0 = time.Date(2026, 6, 20, 10, 0, 0, 0, time.UTC)

func newPipeline(t *testing.T, dir string) (*ingest.Pipeline, *sqlite.DB) {
	t.Helper()
	st, err := sqlite.Open(context.Background(), dir, sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	p := ingest.New(st, func() time.Time { return t0 }, slog.New(slog.NewTextHandler(io.Discard, nil)),
		ingest.NewMetrics(prometheus.NewRegistry()), ingest.Config{})
	if err := p.LoadMeters(context.Background()); err != nil {
		t.Fatal(err)
	}
	return p, st
}

func events(t *testing.T, from, n int, subject string, value string) []event.Event {
	t.Helper()
	var b strings.Builder
	b.WriteByte('[')
	for i := from; i < from+n; i++ {
		if i > from {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"specversion":"1.0","id":"e%d","source":"test","type":"request","subject":%q,"time":%q,"data":{"value":%s}}`,
			i, subject, t0.Add(time.Duration(i)*time.Second).Format(time.RFC3339), value)
	}
	b.WriteByte(']')
	evs, err := event.Decode(event.MediaTypeCloudEventBatch, []byte(b.String()), t0, event.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	return evs
}

func total(t *testing.T, st store.Store, meterID string) meter.State {
	t.Helper()
	rs, err := st.QueryRollups(context.Background(), store.RollupQuery{MeterID: meterID, From: -1 << 62, To: 1 << 62})
	if err != nil {
		t.Fatal(err)
	}
	var s meter.State
	for _, r := range rs {
		s.Merge(r.State)
	}
	return s
}

// TestVerifyFindsTamperedRollup checks that Verify passes on a consistent
// store and names the meter, subject and minute of a rollup changed behind
// tally's back.
func TestVerifyFindsTamperedRollup(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	p, st := newPipeline(t, dir)
	m, err := p.CreateMeter(ctx, meter.Meter{Slug: "value", EventType: "request", Aggregation: meter.Sum, ValueProperty: "$.value"})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Submit(ctx, events(t, 0, 50, "alice", "1.5")); err != nil {
		t.Fatal(err)
	}
	rep, err := ingest.Verify(ctx, st)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Differences) != 0 || rep.Meters != 1 {
		t.Fatalf("Verify on a consistent store = %+v", rep)
	}
	p.Close()
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}

	raw, err := sql.Open("sqlite3", "file:"+filepath.Join(dir, sqlite.FileName))
	if err != nil {
		t.Fatal(err)
	}
	minute := t0.Unix()
	r, err := raw.Exec("UPDATE rollups SET sum = '999' WHERE meter_id = ? AND subject = 'alice' AND minute = ?", m.ID, minute)
	if err != nil {
		t.Fatal(err)
	}
	if n, _ := r.RowsAffected(); n != 1 {
		t.Fatalf("tampered %d rows, want 1", n)
	}
	raw.Close()

	st2, err := sqlite.Open(ctx, dir, sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st2.Close()
	rep, err = ingest.Verify(ctx, st2)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Differences) != 1 {
		t.Fatalf("Verify found %d differences, want 1: %v", len(rep.Differences), rep.Differences)
	}
	d := rep.Differences[0]
	if d.Meter != "value" || d.Subject != "alice" || !d.Minute.Equal(time.Unix(minute, 0)) {
		t.Fatalf("difference = %+v, want meter value, subject alice, minute %d", d, minute)
	}
	if !strings.Contains(d.String(), "sum=999") || !strings.Contains(d.String(), "sum=75") {
		t.Fatalf("difference text %q should show the stored and the recomputed sums", d)
	}
}

// TestConcurrentSubmitsAndMeterChanges sends events from several goroutines
// while a meter is created and changed, and checks every event is counted
// exactly once by the final definition.
func TestConcurrentSubmitsAndMeterChanges(t *testing.T) {
	ctx := context.Background()
	p, st := newPipeline(t, t.TempDir())
	defer st.Close()
	defer p.Close()
	var wg sync.WaitGroup
	const workers, batches, size = 4, 20, 25
	errs := make(chan error, workers*batches)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for b := 0; b < batches; b++ {
				from := (w*batches + b) * size
				errs <- p.Submit(ctx, events(t, from, size, fmt.Sprintf("s%d", w), "2"))
			}
		}()
	}
	m, err := p.CreateMeter(ctx, meter.Meter{Slug: "value", EventType: "request", Aggregation: meter.Sum, ValueProperty: "$.value"})
	if err != nil {
		t.Fatal(err)
	}
	m.Aggregation = meter.Count
	m.ValueProperty = ""
	if _, err := p.UpdateMeter(ctx, "value", m); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	// Resending everything changes nothing.
	for i := 0; i < workers*batches; i++ {
		if err := p.Submit(ctx, events(t, i*size, size, fmt.Sprintf("s%d", i/batches), "2")); err != nil {
			t.Fatal(err)
		}
	}
	if got, want := total(t, st, m.ID).Count, int64(workers*batches*size); got != want {
		t.Fatalf("COUNT = %d, want %d", got, want)
	}
	rep, err := ingest.Verify(ctx, st)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Differences) != 0 {
		t.Fatalf("Verify: %v", rep.Differences)
	}
}

// TestCloseCommitsQueuedEvents checks that Close waits for submitted events
// and that Submit after Close fails without storing anything.
func TestCloseCommitsQueuedEvents(t *testing.T) {
	ctx := context.Background()
	p, st := newPipeline(t, t.TempDir())
	defer st.Close()
	m, err := p.CreateMeter(ctx, meter.Meter{Slug: "n", EventType: "request", Aggregation: meter.Count})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	acked := 0
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := p.Submit(ctx, events(t, i*100, 100, "s", "1")); err == nil {
				mu.Lock()
				acked += 100
				mu.Unlock()
			}
		}()
	}
	p.Close()
	wg.Wait()
	if err := p.Submit(ctx, events(t, 10000, 1, "s", "1")); err == nil {
		t.Fatal("Submit after Close succeeded")
	}
	if got := total(t, st, m.ID).Count; got != int64(acked) {
		t.Fatalf("COUNT = %d, want the %d acknowledged events", got, acked)
	}
}
