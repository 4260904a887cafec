package invoicing_test

import (
	"context"
	"testing"
	"time"

	"github.com/tally-metering/tally/internal/billing"
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
