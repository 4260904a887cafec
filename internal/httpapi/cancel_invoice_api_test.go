package httpapi_test

import (
	"context"
	"net/http"
	"testing"

	"github.com/tally-metering/tally/internal/invoicing"
	"github.com/tally-metering/tally/internal/usage"
)

// A cancellation "now" cuts the current period: its invoice ends at the
// cut, bills the base fee prorated by time and only the usage before the
// cut.
func TestCancelNowProratesLastInvoice(t *testing.T) {
	h := newAPIHarness(t, harnessOptions{token: "secret"})
	fin := &invoicing.Service{Store: h.st, Usage: &usage.Service{Store: h.st}, Stable: h.pipe.MetersStable, Grace: invoicing.DefaultGrace}
	h.createMeter(`{"slug":"emails","eventType":"email.sent","aggregation":"SUM","valueProperty":"$.count"}`)
	h.json("POST", "/api/v1/customers", contosoBody, http.StatusCreated, nil)
	h.json("POST", "/api/v1/plans", mailProBody, http.StatusCreated, nil)
	h.json("POST", "/api/v1/plans/mail-pro/publish", "", http.StatusOK, nil)
	// The period is 2026-06-20T10:00Z – 2026-07-20T10:00Z, 30 days; the
	// cancellation comes 6 days in, a fifth of it.
	h.clock.Advance(utc("2026-06-26T10:00:00Z").Sub(apiStart))
	var sub apiSubscription
	h.json("POST", "/api/v1/subscriptions", `{"customer":"contoso","plan":"mail-pro","start":"2026-06-20T10:00:00Z"}`, http.StatusCreated, &sub)
	mail := func(id, ts, n string) string { return ce(id, "email.sent", "contoso-mail", ts, `{"count":`+n+`}`) }
	h.ingest(batchCT, jsonArray(mail("m1", "2026-06-21T10:00:00Z", "1500")))
	h.json("POST", "/api/v1/subscriptions/"+sub.ID+"/cancel", `{"at":"now"}`, http.StatusOK, nil)
	// Usage after the cut is not billed.
	h.clock.Advance(utc("2026-06-28T10:00:00Z").Sub(h.clock.Now()))
	h.ingest(batchCT, jsonArray(mail("m2", "2026-06-27T10:00:00Z", "5000")))

	list := func() []apiInvoice {
		t.Helper()
		var out struct{ Items []apiInvoice }
		h.json("GET", "/api/v1/invoices?subscription="+sub.ID, "", http.StatusOK, &out)
		return out.Items
	}
	check := func(what string, items []apiInvoice, status string) {
		t.Helper()
		if len(items) != 1 {
			t.Fatalf("%s: %d invoices, want 1: %+v", what, len(items), items)
		}
		inv := items[0]
		if inv.Status != status || !inv.PeriodStart.Equal(utc("2026-06-20T10:00:00Z")) || !inv.PeriodEnd.Equal(utc("2026-06-26T10:00:00Z")) ||
			len(inv.Lines) != 2 || inv.Total != "7.00" {
			t.Fatalf("%s: %+v", what, inv)
		}
		if l := inv.Lines[0]; l.Kind != "base_fee" || l.Quantity != "0.2" || l.Amount != "2.00" {
			t.Errorf("%s: base fee line %+v, want a fifth of 10.00", what, l)
		}
		if l := inv.Lines[1]; l.Kind != "usage" || l.Quantity != "1500" || l.Billable != "500" || l.Amount != "5.00" {
			t.Errorf("%s: usage line %+v, want only the usage before the cut", what, l)
		}
	}
	check("draft", list(), "draft")

	// Finalized once the cut plus the grace period has passed, with the
	// same amounts; no later period is billed.
	if n, err := fin.FinalizeDue(context.Background(), h.clock.Now()); err != nil || n != 1 {
		t.Fatalf("FinalizeDue: %d, %v", n, err)
	}
	check("finalized", list(), "finalized")
}
