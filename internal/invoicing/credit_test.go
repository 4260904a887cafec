package invoicing_test

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tally-metering/tally/internal/billing"
	"github.com/tally-metering/tally/internal/ingest"
	"github.com/tally-metering/tally/internal/invoicing"
	"github.com/tally-metering/tally/internal/meter"
	"github.com/tally-metering/tally/internal/store"
)

// TestFinalizeDueCreditsOnce: usage of a finalized period that goes down
// is credited on a credit note, once, however many finalizers run (two
// processes, a restart), and never lowers an invoice.
func TestFinalizeDueCreditsOnce(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	f.addCustomers(0, 1, periodStart, 0)
	f.event("june", "subj-0", periodStart.Add(time.Hour), 2500)
	june := periodEnd.Add(invoicing.DefaultGrace)
	if n, err := f.svc.FinalizeDue(ctx, june); err != nil || n != 1 {
		t.Fatalf("FinalizeDue of June: %d, %v", n, err)
	}
	// 3 byte packages, peak 2.50.
	if got := totals(t, f.st, "s-0"); len(got) != 1 || got[0] != "15.50" {
		t.Fatalf("June %v, want 15.50", got)
	}
	// A late correction takes 2,000 bytes off June: 1 package instead of 3.
	f.event("fix", "subj-0", periodStart.Add(2*time.Hour), -2000)
	newService := func() *invoicing.Service {
		return &invoicing.Service{Store: f.st, Usage: f.svc.Usage, Stable: f.svc.Stable, Grace: invoicing.DefaultGrace, Late: f.st}
	}
	at := june.Add(time.Hour)
	var wg sync.WaitGroup
	for _, svc := range []*invoicing.Service{f.svc, newService(), newService()} {
		wg.Go(func() {
			if _, err := svc.FinalizeDue(ctx, at); err != nil {
				t.Errorf("FinalizeDue: %v", err)
			}
		})
	}
	wg.Wait()
	for _, svc := range []*invoicing.Service{f.svc, newService()} { // a later run, a restart
		if _, err := svc.FinalizeDue(ctx, at.Add(time.Minute)); err != nil {
			t.Fatal(err)
		}
	}
	cns, err := f.st.ListCreditNotes(ctx, store.CreditNoteFilter{SubscriptionID: "s-0"})
	if err != nil {
		t.Fatal(err)
	}
	if len(cns) != 1 || cns[0].Total.StringFixed(2) != "2.00" || len(cns[0].Lines) != 1 ||
		cns[0].Lines[0].Key != "bytes" || cns[0].Lines[0].Quantity.String() != "-2000" || cns[0].Number != "CN-000001" {
		t.Fatalf("credit notes %+v; want one CN-000001 of 2.00 for -2000 bytes", cns)
	}
	// The July draft shows no correction of June; June is unchanged.
	invs, err := f.svc.Invoices(ctx, mustSub(t, f, "s-0"), at)
	if err != nil {
		t.Fatal(err)
	}
	if len(invs) != 2 || invs[0].Total.StringFixed(2) != "15.50" || len(invs[1].Lines) != 4 || invs[1].Total.StringFixed(2) != "10.00" {
		t.Errorf("invoices after the credit: %+v", invs)
	}
	// Usage going back up is billed again, as an adjustment: one byte
	// package more than the credited 500 bytes, and a third call (one
	// over the two included).
	f.event("refix", "subj-0", periodStart.Add(3*time.Hour), 1000)
	if invs, err = f.svc.Invoices(ctx, mustSub(t, f, "s-0"), at); err != nil || invs[1].Total.StringFixed(2) != "11.01" {
		t.Errorf("July after usage back up: %v %v", invs, err)
	}
}

// TestCorrectionWindow: with a correction window, late usage of a period
// that ended longer ago than the window is neither billed nor credited.
func TestCorrectionWindow(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	f.addCustomers(0, 1, periodStart, 0)
	f.event("june", "subj-0", periodStart.Add(time.Hour), 2500)
	svc := &invoicing.Service{Store: f.st, Usage: f.svc.Usage, Stable: f.svc.Stable, Grace: invoicing.DefaultGrace, Late: f.st,
		Corrections: invoicing.Corrections{Window: 48 * time.Hour}}
	if n, err := svc.FinalizeDue(ctx, periodEnd.Add(invoicing.DefaultGrace)); err != nil || n != 1 {
		t.Fatalf("FinalizeDue of June: %d, %v", n, err)
	}
	f.event("more", "subj-0", periodStart.Add(2*time.Hour), 1000)
	f.event("less", "subj-0", periodStart.Add(3*time.Hour), -3000)
	within, after := periodEnd.Add(47*time.Hour), periodEnd.Add(49*time.Hour)
	// Within the window, the net -2,000 bytes are owed back (a credit
	// note, not on the draft), the third call is billed...
	invs, err := svc.Invoices(ctx, mustSub(t, f, "s-0"), within)
	if err != nil || len(invs) != 2 || invs[1].Total.StringFixed(2) != "10.01" {
		t.Fatalf("invoices within the window: %v %v", invs, err)
	}
	// ...but the finalizer runs after it: June is closed.
	if _, err := svc.FinalizeDue(ctx, after); err != nil {
		t.Fatal(err)
	}
	if cns, err := f.st.ListCreditNotes(ctx, store.CreditNoteFilter{}); err != nil || len(cns) != 0 {
		t.Errorf("credit notes after the window: %+v, %v; want none", cns, err)
	}
	f.event("late", "subj-0", periodStart.Add(4*time.Hour), 9000)
	if invs, err = svc.Invoices(ctx, mustSub(t, f, "s-0"), after); err != nil || invs[1].Total.StringFixed(2) != "10.00" {
		t.Errorf("July after the window: %v %v; want no adjustment", invs, err)
	}
	// Without a window the same late usage is billed.
	if invs, err = f.svc.Invoices(ctx, mustSub(t, f, "s-0"), after); err != nil || invs[1].Total.StringFixed(2) != "23.52" {
		t.Errorf("July without a window: %v %v; want 23.52 (+2 calls, +7 packages, peak 9.00 instead of 2.50)", invs, err)
	}
}

func mustSub(t *testing.T, f *fixture, id string) billing.Subscription {
	t.Helper()
	sub, err := f.st.GetSubscription(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	return sub
}

// TestMeterChangeCorrections: a changed meter corrects finalized periods
// (here: a credit) unless Corrections.KeepOnMeterChange leaves them as
// billed.
func TestMeterChangeCorrections(t *testing.T) {
	for _, keep := range []bool{false, true} {
		t.Run(fmt.Sprintf("keep=%v", keep), func(t *testing.T) {
			f := newFixture(t)
			ctx := context.Background()
			f.addCustomers(0, 1, periodStart, 0)
			f.event("a", "subj-0", periodStart.Add(time.Hour), 2500)
			f.event("b", "subj-0", periodStart.Add(2*time.Hour), 500)
			svc := &invoicing.Service{Store: f.st, Usage: f.svc.Usage, Stable: f.svc.Stable, Grace: invoicing.DefaultGrace, Late: f.st,
				Corrections: invoicing.Corrections{KeepOnMeterChange: keep}}
			june := periodEnd.Add(invoicing.DefaultGrace)
			if n, err := svc.FinalizeDue(ctx, june); err != nil || n != 1 {
				t.Fatalf("FinalizeDue of June: %d, %v", n, err)
			}
			// 3,000 bytes: 3 packages. Counting events instead makes 2
			// bytes: 1 package, 2.00 less.
			changed := june.Add(time.Hour)
			pipe := ingest.New(f.st, func() time.Time { return changed }, slog.New(slog.DiscardHandler), ingest.NewMetrics(prometheus.NewRegistry()), ingest.Config{})
			t.Cleanup(pipe.Close)
			if err := pipe.LoadMeters(ctx); err != nil {
				t.Fatal(err)
			}
			if _, err := pipe.UpdateMeter(ctx, "bytes", meter.Meter{Slug: "bytes", EventType: "request", Aggregation: meter.Count}); err != nil {
				t.Fatal(err)
			}
			if _, err := svc.FinalizeDue(ctx, changed.Add(time.Minute)); err != nil {
				t.Fatal(err)
			}
			cns, err := f.st.ListCreditNotes(ctx, store.CreditNoteFilter{})
			if err != nil {
				t.Fatal(err)
			}
			switch {
			case keep && len(cns) != 0:
				t.Errorf("credit notes %+v; want none, June stays as billed", cns)
			case !keep && (len(cns) != 1 || cns[0].Total.StringFixed(2) != "2.00"):
				t.Errorf("credit notes %+v; want one of 2.00", cns)
			}
		})
	}
}
