package invoicing_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/shopspring/decimal"

	"github.com/tally-metering/tally/internal/billing"
	"github.com/tally-metering/tally/internal/event"
	"github.com/tally-metering/tally/internal/ingest"
	"github.com/tally-metering/tally/internal/invoicing"
	"github.com/tally-metering/tally/internal/store"
)

func TestFinalizeDueWaitsForGrace(t *testing.T) {
	f := newFixture(t)
	f.addCustomers(0, 3, periodStart, 3)
	ctx := context.Background()
	for _, now := range []time.Time{periodStart, periodEnd.Add(-time.Minute), periodEnd, periodEnd.Add(invoicing.DefaultGrace - time.Second)} {
		if n, err := f.svc.FinalizeDue(ctx, now); err != nil || n != 0 {
			t.Fatalf("FinalizeDue at %s (before end + grace): %d, %v", now, n, err)
		}
	}
	if invs, err := f.st.ListInvoices(ctx, store.InvoiceFilter{}); err != nil || len(invs) != 0 {
		t.Fatalf("stored invoices before end + grace: %d, %v", len(invs), err)
	}
}

func TestFinalizeDueIdempotent(t *testing.T) {
	f := newFixture(t)
	f.addCustomers(0, 3, periodStart, 3)
	ctx := context.Background()
	due := periodEnd.Add(invoicing.DefaultGrace)
	if n, err := f.svc.FinalizeDue(ctx, due); err != nil || n != 3 {
		t.Fatalf("FinalizeDue at end + grace: %d, %v; want 3", n, err)
	}
	first, err := f.st.ListInvoices(ctx, store.InvoiceFilter{SubscriptionID: "s-0"})
	if err != nil || len(first) != 1 {
		t.Fatalf("invoices of s-0: %+v, %v", first, err)
	}
	inv := first[0]
	// 3 calls (2 included) at 0.01, 600 bytes = 1 package of 1000 at 1.00,
	// peak 300 at 0.001, base fee 10.00.
	if inv.Status != billing.InvoiceFinalized || !inv.PeriodStart.Equal(periodStart) || !inv.PeriodEnd.Equal(periodEnd) ||
		inv.Total.StringFixed(2) != "11.31" || inv.FinalizedAt == nil || !inv.FinalizedAt.Equal(due) {
		t.Fatalf("finalized invoice of s-0: %+v", inv)
	}
	for _, now := range []time.Time{due, due.Add(time.Hour)} {
		if n, err := f.svc.FinalizeDue(ctx, now); err != nil || n != 0 {
			t.Fatalf("FinalizeDue again at %s: %d, %v; want 0", now, n, err)
		}
	}
	again, err := f.st.ListInvoices(ctx, store.InvoiceFilter{SubscriptionID: "s-0"})
	if err != nil || len(again) != 1 || !again[0].Total.Equal(inv.Total) || !again[0].FinalizedAt.Equal(*inv.FinalizedAt) {
		t.Fatalf("invoices of s-0 after finalizing again: %+v, %v", again, err)
	}
	if all, err := f.st.ListInvoices(ctx, store.InvoiceFilter{}); err != nil || len(all) != 3 {
		t.Fatalf("stored invoices: %d, %v; want 3", len(all), err)
	}
}

func TestFinalizeDueResumes(t *testing.T) {
	f := newFixture(t)
	f.addCustomers(0, 2, periodStart, 2)
	ctx := context.Background()
	due := periodEnd.Add(invoicing.DefaultGrace)
	if n, err := f.svc.FinalizeDue(ctx, due); err != nil || n != 2 {
		t.Fatalf("first FinalizeDue: %d, %v; want 2", n, err)
	}
	// A subscription created afterwards whose first period is due too:
	// the next call finalizes it and only it.
	f.addCustomers(2, 3, periodStart.Add(-time.Hour), 2)
	if n, err := f.svc.FinalizeDue(ctx, due); err != nil || n != 1 {
		t.Fatalf("second FinalizeDue: %d, %v; want 1", n, err)
	}
	all, err := f.st.ListInvoices(ctx, store.InvoiceFilter{})
	if err != nil || len(all) != 3 {
		t.Fatalf("stored invoices: %d, %v; want 3", len(all), err)
	}
	got, err := f.st.ListInvoices(ctx, store.InvoiceFilter{SubscriptionID: "s-2"})
	if err != nil || len(got) != 1 || !got[0].PeriodStart.Equal(periodStart.Add(-time.Hour)) {
		t.Fatalf("invoices of the new subscription: %+v, %v", got, err)
	}
	if n, err := f.svc.FinalizeDue(ctx, due); err != nil || n != 0 {
		t.Fatalf("third FinalizeDue: %d, %v; want 0", n, err)
	}
}

// totals returns the totals of sub's stored invoices, oldest first.
func totals(t *testing.T, st store.Invoices, sub string) []string {
	t.Helper()
	invs, err := st.ListInvoices(context.Background(), store.InvoiceFilter{SubscriptionID: sub})
	if err != nil {
		t.Fatalf("invoices of %s: %v", sub, err)
	}
	out := []string{}
	for _, inv := range invs {
		out = append(out, inv.Total.StringFixed(2))
	}
	return out
}

func TestFinalizeDueCatchesUp(t *testing.T) {
	f := newFixture(t)
	// Three periods have ended (June, July, August) when FinalizeDue first
	// runs: all are finalized, in order, each with its own usage.
	f.addCustomers(0, 2, periodStart, 0)
	f.event("june", "subj-0", periodStart.Add(time.Hour), 100)
	f.event("august", "subj-0", periodStart.AddDate(0, 2, 3), 2500)
	ctx := context.Background()
	due := periodStart.AddDate(0, 3, 0).Add(invoicing.DefaultGrace)
	if n, err := f.svc.FinalizeDue(ctx, due); err != nil || n != 6 {
		t.Fatalf("FinalizeDue: %d, %v; want 6", n, err)
	}
	// 1 call (included), 100 bytes = 1 package, peak 100 at 0.001; then
	// nothing; then 2,500 bytes = 3 packages and peak 2.50.
	if diff := cmp.Diff([]string{"11.10", "10.00", "15.50"}, totals(t, f.st, "s-0")); diff != "" {
		t.Errorf("totals of s-0 (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"10.00", "10.00", "10.00"}, totals(t, f.st, "s-1")); diff != "" {
		t.Errorf("totals of s-1 (-want +got):\n%s", diff)
	}
	if n, err := f.svc.FinalizeDue(ctx, due); err != nil || n != 0 {
		t.Fatalf("FinalizeDue again: %d, %v; want 0", n, err)
	}
}

// TestFinalizeDueLateUsage finalizes more subscriptions than one chunk
// (and than the customer-list threshold), then bills late usage of the
// finalized period on the next invoice, once.
func TestFinalizeDueLateUsage(t *testing.T) {
	t.Parallel() // its own store, and one of the slowest tests here
	f := newFixture(t)
	const n = 520
	f.addCustomers(0, n, periodStart, 1)
	ctx := context.Background()
	due := periodEnd.Add(invoicing.DefaultGrace)
	if got, err := f.svc.FinalizeDue(ctx, due); err != nil || got != n {
		t.Fatalf("FinalizeDue of June: %d, %v; want %d", got, err, n)
	}
	// Late June usage for a subscription in the first chunk and one in the
	// second: one more call (still included, an adjustment of 0.00), 2,000
	// more bytes (2 more packages) and a peak of 2,000 (2.00 instead of
	// 0.10).
	for _, i := range []int{0, 511} {
		f.event(fmt.Sprintf("late-%d", i), fmt.Sprintf("subj-%d", i), periodEnd.Add(-time.Hour), 2000)
	}
	july := periodEnd.AddDate(0, 1, 0).Add(invoicing.DefaultGrace)
	if got, err := f.svc.FinalizeDue(ctx, july); err != nil || got != n {
		t.Fatalf("FinalizeDue of July: %d, %v; want %d", got, err, n)
	}
	for sub, want := range map[string][]string{
		"s-0":   {"11.10", "13.90"}, // 10 + 2 packages + (2.00 - 0.10)
		"s-511": {"11.10", "13.90"}, // 511 % 7 == 0: same bytes as s-0
		"s-1":   {"11.10", "10.00"}, // peak 101: 0.101 rounds to 0.10
		"s-5":   {"11.10", "10.00"}, // peak 105: 0.105 rounds half-even to 0.10
		"s-6":   {"11.11", "10.00"}, // peak 106: 0.106 rounds to 0.11
	} {
		got := totals(t, f.st, sub)
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("totals of %s (-want +got):\n%s", sub, diff)
		}
	}
	invs, err := f.st.ListInvoices(ctx, store.InvoiceFilter{SubscriptionID: "s-511"})
	if err != nil || len(invs) != 2 {
		t.Fatalf("invoices of s-511: %d, %v", len(invs), err)
	}
	var adjusts []string
	for _, l := range invs[1].Lines {
		if l.Kind == billing.LineAdjustment {
			adjusts = append(adjusts, l.Key+" "+l.Amount.StringFixed(2)+" "+l.AdjustsInvoice)
		}
	}
	// The late call is within the included calls: it costs nothing, so
	// it makes no line.
	if diff := cmp.Diff([]string{"bytes 2.00 " + invs[0].ID, "peak 1.90 " + invs[0].ID}, adjusts); diff != "" {
		t.Errorf("adjustment lines of s-511's July invoice (-want +got):\n%s", diff)
	}
	// August bills no adjustment again.
	aug := periodEnd.AddDate(0, 2, 0).Add(invoicing.DefaultGrace)
	if got, err := f.svc.FinalizeDue(ctx, aug); err != nil || got != n {
		t.Fatalf("FinalizeDue of August: %d, %v; want %d", got, err, n)
	}
	if diff := cmp.Diff([]string{"11.10", "13.90", "10.00"}, totals(t, f.st, "s-0")); diff != "" {
		t.Errorf("totals of s-0 (-want +got):\n%s", diff)
	}
}

// TestFinalizeDueOneBadSubscription: a subscription whose plan can't be
// rated (its meter is gone) is reported, and the others are finalized.
func TestFinalizeDueOneBadSubscription(t *testing.T) {
	f := newFixture(t)
	f.addCustomers(0, 3, periodStart, 1)
	ctx := context.Background()
	in := billing.PlanInput{Key: "broken", Name: "Broken", Currency: "EUR", Cadence: billing.CadenceMonthly, BaseFee: decimal.RequireFromString("1"),
		Charges: []billing.PlanCharge{{Key: "gone", Meter: "gone", Pricing: billing.Pricing{Model: billing.ModelPerUnit, UnitPrice: decimal.RequireFromString("1")}}}}
	created := periodStart.Add(-time.Hour)
	if err := f.st.CreatePlan(ctx, in.Plan("plan-broken", 1, created, created)); err != nil {
		t.Fatalf("create plan: %v", err)
	}
	plan, err := f.st.PublishPlan(ctx, "broken", 1, created)
	if err != nil {
		t.Fatalf("publish plan: %v", err)
	}
	c, err := f.st.GetCustomer(ctx, "c-1")
	if err != nil {
		t.Fatalf("get customer: %v", err)
	}
	bad := billing.SubscriptionInput{Customer: c.ID, Plan: plan.ID}.Subscription("s-bad", c, plan, periodStart, periodStart)
	if err := f.st.CreateSubscription(ctx, bad); err != nil {
		t.Fatalf("create subscription: %v", err)
	}
	due := periodEnd.Add(invoicing.DefaultGrace)
	got, err := f.svc.FinalizeDue(ctx, due)
	if got != 3 || err == nil || !strings.Contains(err.Error(), "s-bad") {
		t.Fatalf("FinalizeDue = %d, %v; want 3 and an error naming s-bad", got, err)
	}
	if diff := cmp.Diff([]string{}, totals(t, f.st, "s-bad")); diff != "" {
		t.Errorf("invoices of s-bad (-want +got):\n%s", diff)
	}
}

// failingSaves is a store whose SaveInvoices fails from the given call on,
// as a crash or a full disk would: nothing of a failed call is stored.
type failingSaves struct {
	store.Store
	calls, failFrom int
}

func (s *failingSaves) SaveInvoices(ctx context.Context, invs []billing.Invoice) ([]store.SavedInvoice, error) {
	s.calls++
	if s.calls >= s.failFrom {
		return nil, errors.New("disk full")
	}
	return s.Store.SaveInvoices(ctx, invs)
}

// TestFinalizeDueResumesAfterAFailedChunk: when storing a chunk fails,
// FinalizeDue stops and reports it, keeps the chunks already stored, and a
// later call finalizes exactly the rest.
func TestFinalizeDueResumesAfterAFailedChunk(t *testing.T) {
	t.Parallel() // its own store, and one of the slowest tests here
	f := newFixture(t)
	const n = 600 // two chunks
	f.addCustomers(0, n, periodStart, 1)
	ctx := context.Background()
	due := periodEnd.Add(invoicing.DefaultGrace)
	failing := &failingSaves{Store: f.st, failFrom: 2}
	svc := &invoicing.Service{Store: failing, Usage: f.svc.Usage, Stable: f.svc.Stable, Grace: f.svc.Grace}
	got, err := svc.FinalizeDue(ctx, due)
	if err == nil || !strings.Contains(err.Error(), "disk full") || got != 500 {
		t.Fatalf("FinalizeDue with the second chunk failing = %d, %v; want 500 and the error", got, err)
	}
	if periods, err := f.st.InvoicedPeriods(ctx); err != nil || len(periods) != 500 {
		t.Fatalf("invoiced subscriptions after the failure: %d, %v; want 500", len(periods), err)
	}
	if got, err := f.svc.FinalizeDue(ctx, due); err != nil || got != n-500 {
		t.Fatalf("FinalizeDue after the failure = %d, %v; want %d", got, err, n-500)
	}
	all, err := f.st.ListInvoices(ctx, store.InvoiceFilter{})
	if err != nil || len(all) != n {
		t.Fatalf("stored invoices: %d, %v; want %d", len(all), err, n)
	}
	seen := map[string]bool{}
	for _, inv := range all {
		if seen[inv.SubscriptionID] || !inv.PeriodStart.Equal(periodStart) {
			t.Fatalf("invoice %s: a second one for its subscription, or the wrong period", inv.ID)
		}
		seen[inv.SubscriptionID] = true
	}
}

// A subscription that ended and has every period finalized gets its late
// usage on an adjustment invoice; a restarted service (its memory of late
// events gone) finds it again and finalizes it once.
func TestFinalizeDueAdjustmentInvoiceAfterCancellation(t *testing.T) {
	t.Parallel() // its own store, and one of the slowest tests here
	f := newFixture(t)
	f.addCustomers(0, 2, periodStart, 1)
	ctx := context.Background()
	sub, err := f.st.GetSubscription(ctx, "s-0")
	if err != nil {
		t.Fatal(err)
	}
	cancelAt := periodStart.Add(10 * 24 * time.Hour)
	if sub, err = sub.Cancel(billing.CancelNow, cancelAt); err != nil {
		t.Fatal(err)
	}
	if err := f.st.UpdateSubscription(ctx, sub); err != nil {
		t.Fatal(err)
	}
	restarted := func() *invoicing.Service {
		return &invoicing.Service{Store: f.st, Usage: f.svc.Usage, Stable: f.svc.Stable, Grace: invoicing.DefaultGrace, Late: f.st}
	}
	t1 := cancelAt.Add(invoicing.DefaultGrace)
	if n, err := restarted().FinalizeDue(ctx, t1); err != nil || n != 1 {
		t.Fatalf("FinalizeDue at the cancellation + grace = %d, %v; want 1 (the cut period)", n, err)
	}
	// 1,000 calls (1 byte each) of the cancelled period arrive late: one
	// call was included still (2 included, 1 used), 999 are billed at
	// 0.01; the 1,000 bytes start one more package of 1.00.
	for i := range 1000 {
		f.event(fmt.Sprintf("late-%d", i), "subj-0", periodStart.Add(5*24*time.Hour), 1)
	}
	if n, err := restarted().FinalizeDue(ctx, t1.Add(time.Hour)); err != nil || n != 1 {
		t.Fatalf("FinalizeDue after the late events = %d, %v; want 1 (the adjustment invoice)", n, err)
	}
	invs, err := f.st.ListInvoices(ctx, store.InvoiceFilter{SubscriptionID: "s-0"})
	if err != nil || len(invs) != 2 {
		t.Fatalf("invoices of s-0: %d, %v; want 2", len(invs), err)
	}
	adj := invs[1]
	if adj.Kind != billing.InvoiceKindAdjustment || !adj.PeriodStart.Equal(cancelAt) || len(adj.Lines) != 2 ||
		adj.Lines[0].Key != "calls" || !adj.Lines[0].Quantity.Equal(decimal.NewFromInt(1000)) || adj.Lines[0].Amount.String() != "9.99" ||
		adj.Lines[1].Key != "bytes" || adj.Lines[1].Amount.String() != "1" || adj.Total.String() != "10.99" {
		t.Fatalf("adjustment invoice: %+v", adj)
	}
	// Nothing is billed twice, by this process or the next.
	for range 2 {
		if n, err := restarted().FinalizeDue(ctx, t1.Add(48*time.Hour)); err != nil || n != 0 {
			t.Fatalf("FinalizeDue again = %d, %v; want 0", n, err)
		}
	}
}

// With a grace period under an hour, an ended subscription's last period
// is finalized while events of its last hour can still arrive on time
// (within their UTC hour, so not in the late-event index). Such usage is
// billed on an adjustment invoice all the same (only the charge whose
// amount changed: a correction that costs nothing is no line).
func TestFinalizeDueAdjustmentInvoiceShortGrace(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	cancelAt := periodStart.Add(10*24*time.Hour + 10*time.Hour + 20*time.Minute) // 10:20
	ingested := cancelAt.Add(20 * time.Minute)                                   // 10:40, the same hour
	pipe := ingest.New(f.st, func() time.Time { return ingested }, slog.New(slog.DiscardHandler), ingest.NewMetrics(prometheus.NewRegistry()), ingest.Config{})
	t.Cleanup(pipe.Close)
	if err := pipe.LoadMeters(ctx); err != nil {
		t.Fatal(err)
	}
	f.addCustomers(0, 1, periodStart, 0)
	sub, err := f.st.GetSubscription(ctx, "s-0")
	if err != nil {
		t.Fatal(err)
	}
	if sub, err = sub.Cancel(billing.CancelNow, cancelAt); err != nil {
		t.Fatal(err)
	}
	if err := f.st.UpdateSubscription(ctx, sub); err != nil {
		t.Fatal(err)
	}
	svc := &invoicing.Service{Store: f.st, Usage: f.svc.Usage, Stable: f.svc.Stable, Grace: 0, Late: f.st}
	if n, err := svc.FinalizeDue(ctx, cancelAt.Add(time.Minute)); err != nil || n != 1 {
		t.Fatalf("FinalizeDue after the cancellation = %d, %v; want 1 (the cut period)", n, err)
	}
	// 10:10, before the cancellation, arriving at 10:40: on time.
	ts := cancelAt.Add(-10 * time.Minute)
	raw := fmt.Sprintf(`{"specversion":"1.0","id":"e1","source":"t","type":"request","subject":"subj-0","time":%q,"data":{"bytes":5}}`, ts.Format(time.RFC3339))
	if err := pipe.Submit(ctx, []event.Event{{ID: "e1", Source: "t", Type: "request", Subject: "subj-0", Time: ts, TimeSet: true, Data: []byte(`{"bytes":5}`), Raw: []byte(raw)}}); err != nil {
		t.Fatal(err)
	}
	total := 0
	for _, at := range []time.Duration{21 * time.Minute, 45 * time.Minute, 2 * time.Hour, 3 * time.Hour} {
		n, err := svc.FinalizeDue(ctx, cancelAt.Add(at))
		if err != nil {
			t.Fatal(err)
		}
		total += n
	}
	invs, err := f.st.ListInvoices(ctx, store.InvoiceFilter{SubscriptionID: "s-0"})
	if err != nil {
		t.Fatal(err)
	}
	if total != 1 || len(invs) != 2 || invs[1].Kind != billing.InvoiceKindAdjustment || len(invs[1].Lines) != 1 || invs[1].Lines[0].Key != "bytes" {
		t.Fatalf("finalized %d; invoices %+v; want the adjustment invoice of the on-time event", total, invs)
	}
}

// A subscription cancelled within the first second of a period: the
// adjustment invoice for late usage of an earlier period is dated at the
// cancellation, which an invoice id (whole seconds) can't tell from that
// period's start; it gets an id of its own all the same.
func TestFinalizeDueAdjustmentInvoiceCancelledAtAPeriodStart(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	f.addCustomers(0, 1, periodStart, 0)
	sub, err := f.st.GetSubscription(ctx, "s-0")
	if err != nil {
		t.Fatal(err)
	}
	cancelAt := periodEnd.Add(300 * time.Millisecond)
	if sub, err = sub.Cancel(billing.CancelNow, cancelAt); err != nil {
		t.Fatal(err)
	}
	if err := f.st.UpdateSubscription(ctx, sub); err != nil {
		t.Fatal(err)
	}
	t1 := cancelAt.Add(invoicing.DefaultGrace)
	if n, err := f.svc.FinalizeDue(ctx, t1); err != nil || n != 2 {
		t.Fatalf("FinalizeDue = %d, %v; want 2 (June and the cut July)", n, err)
	}
	f.event("late", "subj-0", periodStart.Add(5*24*time.Hour), 1500)
	if n, err := f.svc.FinalizeDue(ctx, t1.Add(time.Hour)); err != nil || n != 1 {
		t.Fatalf("FinalizeDue after the late event = %d, %v; want 1 (the adjustment invoice)", n, err)
	}
	invs, err := f.st.ListInvoices(ctx, store.InvoiceFilter{SubscriptionID: "s-0"})
	if err != nil || len(invs) != 3 || invs[2].Kind != billing.InvoiceKindAdjustment || invs[2].ID == invs[1].ID {
		t.Fatalf("invoices %+v, %v; want June, July and an adjustment invoice", invs, err)
	}
}
