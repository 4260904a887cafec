package invoicing_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/shopspring/decimal"

	"github.com/tally-metering/tally/internal/billing"
	"github.com/tally-metering/tally/internal/event"
	"github.com/tally-metering/tally/internal/ingest"
	"github.com/tally-metering/tally/internal/invoicing"
	"github.com/tally-metering/tally/internal/meter"
	"github.com/tally-metering/tally/internal/store/sqlite"
	"github.com/tally-metering/tally/internal/usage"
)

// periodStart is when every fixture subscription starts; its first
// (monthly, anniversary) period ends at periodEnd.
var (
	periodStart = time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC)
	periodEnd   = time.Date(2026, 7, 1, 0, 0, 0, 0, time.UTC)
)

// fixture is a SQLite store with an ingest pipeline, three meters on the
// "request" event type and one published plan ("pro") with a charge on
// each, plus the invoicing service over them.
type fixture struct {
	t    testing.TB
	st   *sqlite.DB
	pipe *ingest.Pipeline
	svc  *invoicing.Service
	plan billing.Plan
}

func newFixture(t testing.TB) *fixture {
	t.Helper()
	ctx := context.Background()
	st, err := sqlite.Open(ctx, t.TempDir(), sqlite.Options{})
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	t.Cleanup(func() {
		if err := st.Close(); err != nil {
			t.Errorf("close store: %v", err)
		}
	})
	created := periodStart.Add(-24 * time.Hour)
	meters := []meter.Meter{
		{ID: "m-calls", Slug: "calls", EventType: "request", Aggregation: meter.Count},
		{ID: "m-bytes", Slug: "bytes", EventType: "request", Aggregation: meter.Sum, ValueProperty: "$.bytes"},
		{ID: "m-peak", Slug: "peak", EventType: "request", Aggregation: meter.Max, ValueProperty: "$.bytes"},
	}
	for _, m := range meters {
		m.ManagedBy, m.CreatedAt, m.UpdatedAt = meter.ManagedByAPI, created, created
		if err := st.CreateMeter(ctx, m); err != nil {
			t.Fatalf("create meter %s: %v", m.Slug, err)
		}
	}
	pipe := ingest.New(st, time.Now, slog.New(slog.NewTextHandler(io.Discard, nil)), ingest.NewMetrics(prometheus.NewRegistry()), ingest.Config{})
	t.Cleanup(pipe.Close)
	if err := pipe.LoadMeters(ctx); err != nil {
		t.Fatalf("load meters: %v", err)
	}
	d := decimal.RequireFromString
	in := billing.PlanInput{
		Key: "pro", Name: "Pro", Currency: "EUR", Cadence: billing.CadenceMonthly, BaseFee: d("10.00"),
		Charges: []billing.PlanCharge{
			{Key: "calls", Meter: "calls", Included: billing.Included{Quantity: d("2")}, Pricing: billing.Pricing{Model: billing.ModelPerUnit, UnitPrice: d("0.01")}},
			{Key: "bytes", Meter: "bytes", Pricing: billing.Pricing{Model: billing.ModelPackage, UnitPrice: d("1.00"), PackageSize: d("1000")}},
			{Key: "peak", Meter: "peak", Pricing: billing.Pricing{Model: billing.ModelPerUnit, UnitPrice: d("0.001")}},
		},
	}
	if err := in.Validate(); err != nil {
		t.Fatalf("plan input: %v", err)
	}
	if err := st.CreatePlan(ctx, in.Plan("plan-pro", 1, created, created)); err != nil {
		t.Fatalf("create plan: %v", err)
	}
	plan, err := st.PublishPlan(ctx, "pro", 1, created)
	if err != nil {
		t.Fatalf("publish plan: %v", err)
	}
	svc := &invoicing.Service{Store: st, Usage: &usage.Service{Store: st}, Stable: pipe.MetersStable, Grace: invoicing.DefaultGrace, Late: st}
	return &fixture{t: t, st: st, pipe: pipe, svc: svc, plan: plan}
}

// addCustomers creates customers [from, to), each with one subject
// ("subj-<i>") and one subscription to the plan starting at start, and
// ingests eventsPer "request" events per customer during the first period
// (see addEvents).
func (f *fixture) addCustomers(from, to int, start time.Time, eventsPer int) {
	f.t.Helper()
	ctx := context.Background()
	for i := from; i < to; i++ {
		subject := fmt.Sprintf("subj-%d", i)
		in := billing.CustomerInput{Key: fmt.Sprintf("cust-%d", i), Name: fmt.Sprintf("Customer %d", i), Currency: "EUR", Subjects: []string{subject}}
		c := in.Customer(fmt.Sprintf("c-%d", i), start, start)
		if err := f.st.CreateCustomer(ctx, c); err != nil {
			f.t.Fatalf("create customer %d: %v", i, err)
		}
		sub := billing.SubscriptionInput{Customer: c.ID, Plan: f.plan.ID}.Subscription(fmt.Sprintf("s-%d", i), c, f.plan, start, start)
		if err := f.st.CreateSubscription(ctx, sub); err != nil {
			f.t.Fatalf("create subscription %d: %v", i, err)
		}
	}
	f.addEvents(from, to, start, eventsPer)
}

// addEvents ingests eventsPer "request" events for each of the subjects
// of customers [from, to) in the month from start, submitted in batches of
// about 1,000 events.
func (f *fixture) addEvents(from, to int, start time.Time, eventsPer int) {
	f.t.Helper()
	ctx := context.Background()
	var batch []event.Event
	flush := func() {
		if len(batch) == 0 {
			return
		}
		if err := f.pipe.Submit(ctx, batch); err != nil {
			f.t.Fatalf("submit events: %v", err)
		}
		batch = batch[:0]
	}
	for i := from; i < to; i++ {
		subject := fmt.Sprintf("subj-%d", i)
		for j := 0; j < eventsPer; j++ {
			ts := start.Add(time.Duration(j+1) * 37 * time.Hour)
			data := fmt.Sprintf(`{"bytes":%d}`, 100*(j+1)+i%7)
			id := fmt.Sprintf("e-%d-%d-%d", i, j, start.Unix())
			raw := fmt.Sprintf(`{"specversion":"1.0","id":%q,"source":"bench","type":"request","subject":%q,"time":%q,"data":%s}`,
				id, subject, ts.Format(time.RFC3339), data)
			batch = append(batch, event.Event{ID: id, Source: "bench", Type: "request", Subject: subject, Time: ts, TimeSet: true, Data: []byte(data), Raw: []byte(raw)})
		}
		if len(batch) >= 1000 {
			flush()
		}
	}
	flush()
}

// event ingests one "request" event of subject at ts with the given bytes.
func (f *fixture) event(id, subject string, ts time.Time, bytes int) {
	f.t.Helper()
	data := fmt.Sprintf(`{"bytes":%d}`, bytes)
	raw := fmt.Sprintf(`{"specversion":"1.0","id":%q,"source":"bench","type":"request","subject":%q,"time":%q,"data":%s}`,
		id, subject, ts.Format(time.RFC3339), data)
	ev := event.Event{ID: id, Source: "bench", Type: "request", Subject: subject, Time: ts, TimeSet: true, Data: []byte(data), Raw: []byte(raw)}
	if err := f.pipe.Submit(context.Background(), []event.Event{ev}); err != nil {
		f.t.Fatalf("submit event %s: %v", id, err)
	}
}
