package invoicing_test

import (
	"context"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/tally-metering/tally/internal/invoicing"
	"github.com/tally-metering/tally/internal/store"
)

// TestFinalizeDueScale times one FinalizeDue over N subscriptions whose
// first period (3 charges) has ended and whose grace period has passed,
// then one for their second period (which also reads the first period's
// usage again, for late events).
// It is skipped unless TALLY_BENCH_FINALIZE=N is set; see
// docs/benchmarks.md ("Billing"):
//
//	TALLY_BENCH_FINALIZE=10000 go test ./internal/invoicing -run TestFinalizeDueScale -v -count=1 -timeout 30m
func TestFinalizeDueScale(t *testing.T) {
	v := os.Getenv("TALLY_BENCH_FINALIZE")
	if v == "" {
		t.Skip("set TALLY_BENCH_FINALIZE=N to time FinalizeDue over N subscriptions")
	}
	n, err := strconv.Atoi(v)
	if err != nil || n <= 0 {
		t.Fatalf("TALLY_BENCH_FINALIZE=%q: want a positive number of subscriptions", v)
	}
	eventsPer := 3
	if v := os.Getenv("TALLY_BENCH_EVENTS"); v != "" {
		if eventsPer, err = strconv.Atoi(v); err != nil || eventsPer < 0 {
			t.Fatalf("TALLY_BENCH_EVENTS=%q: want a number of events per customer", v)
		}
	}
	f := newFixture(t)
	setup := time.Now()
	f.addCustomers(0, n, periodStart, eventsPer)
	t.Logf("setup: %d customers, subscriptions and %d events in %s", n, n*eventsPer, time.Since(setup).Round(time.Millisecond))

	ctx := context.Background()
	due := periodEnd.Add(invoicing.DefaultGrace)
	start := time.Now()
	got, err := f.svc.FinalizeDue(ctx, due)
	elapsed := time.Since(start)
	if err != nil {
		t.Fatalf("FinalizeDue: %v", err)
	}
	if got != n {
		t.Fatalf("FinalizeDue finalized %d periods, want %d", got, n)
	}
	t.Logf("FinalizeDue: %d periods (3 charges each) finalized in %.2f s = %.0f periods/s", got, elapsed.Seconds(), float64(got)/elapsed.Seconds())

	// Check the invoices are there, and that a second call has nothing to do.
	if invs, err := f.st.ListInvoices(ctx, store.InvoiceFilter{}); err != nil || len(invs) != n {
		t.Fatalf("stored invoices: %d, %v; want %d", len(invs), err, n)
	}
	start = time.Now()
	again, err := f.svc.FinalizeDue(ctx, due)
	if err != nil || again != 0 {
		t.Fatalf("FinalizeDue again: %d, %v; want 0", again, err)
	}
	t.Logf("FinalizeDue again (nothing due): %.2f s", time.Since(start).Seconds())

	// The next month: every subscription now has a finalized invoice,
	// whose period FinalizeDue reads again for late usage.
	july := periodEnd.AddDate(0, 1, 0)
	setup = time.Now()
	f.addEvents(0, n, periodEnd, eventsPer)
	t.Logf("setup: %d more events in %s", n*eventsPer, time.Since(setup).Round(time.Millisecond))
	start = time.Now()
	got, err = f.svc.FinalizeDue(ctx, july.Add(invoicing.DefaultGrace))
	elapsed = time.Since(start)
	if err != nil || got != n {
		t.Fatalf("FinalizeDue of the second period: %d, %v; want %d", got, err, n)
	}
	t.Logf("FinalizeDue, second period: %d periods finalized in %.2f s = %.0f periods/s", got, elapsed.Seconds(), float64(got)/elapsed.Seconds())
}
