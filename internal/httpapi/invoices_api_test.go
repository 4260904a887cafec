package httpapi_test

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/tally-metering/tally/internal/invoicing"
	"github.com/tally-metering/tally/internal/usage"
)

type apiInvoiceLine struct {
	Kind               string     `json:"kind"`
	Key                string     `json:"key"`
	Quantity           string     `json:"quantity"`
	Included           string     `json:"included"`
	Billable           string     `json:"billable"`
	Packages           string     `json:"packages"`
	UnitPrice          string     `json:"unitPrice"`
	Amount             string     `json:"amount"`
	AdjustsInvoice     string     `json:"adjustsInvoice"`
	AdjustsPeriodStart *time.Time `json:"adjustsPeriodStart"`
}

type apiInvoice struct {
	ID           string           `json:"id"`
	Status       string           `json:"status"`
	Subscription string           `json:"subscription"`
	Currency     string           `json:"currency"`
	PeriodStart  time.Time        `json:"periodStart"`
	PeriodEnd    time.Time        `json:"periodEnd"`
	Lines        []apiInvoiceLine `json:"lines"`
	Total        string           `json:"total"`
	FinalizedAt  *time.Time       `json:"finalizedAt"`
}

func TestInvoicesAPI(t *testing.T) {
	h := newAPIHarness(t, harnessOptions{token: "secret"})
	fin := &invoicing.Service{Store: h.st, Usage: &usage.Service{Store: h.st}, Stable: h.pipe.MetersStable, Grace: invoicing.DefaultGrace}
	ctx := context.Background()
	h.createMeter(`{"slug":"emails","eventType":"email.sent","aggregation":"SUM","valueProperty":"$.count"}`)
	h.json("POST", "/api/v1/customers", `{"key":"contoso","name":"Contoso","currency":"EUR","subjects":["contoso-mail"]}`, http.StatusCreated, nil)
	h.json("POST", "/api/v1/plans", `{"key":"mail-pro","name":"Mail Pro","currency":"EUR","cadence":"P1M","baseFee":"10.00",
	  "charges":[{"key":"emails","meter":"emails","included":"1000","pricing":{"model":"package","packageSize":"1000","unitPrice":"5.00"}}]}`,
		http.StatusCreated, nil)
	h.json("POST", "/api/v1/plans/mail-pro/publish", "", http.StatusOK, nil)
	h.clock.Advance(utc("2026-07-05T10:00:00Z").Sub(apiStart))
	var sub apiSubscription
	h.json("POST", "/api/v1/subscriptions", `{"customer":"contoso","plan":"mail-pro","start":"2026-06-20T10:00:00Z"}`, http.StatusCreated, &sub)
	mail := func(id, ts, n string) string { return ce(id, "email.sent", "contoso-mail", ts, `{"count":`+n+`}`) }
	h.ingest(batchCT, jsonArray(mail("m1", "2026-06-20T10:00:00Z", "935")))

	list := func() []apiInvoice {
		t.Helper()
		var out struct{ Items []apiInvoice }
		h.json("GET", "/api/v1/invoices?subscription="+sub.ID, "", http.StatusOK, &out)
		return out.Items
	}
	var view apiCustomerUsage
	h.json("GET", "/api/v1/customers/contoso/usage", "", http.StatusOK, &view)
	items := list()
	if len(items) != 1 || items[0].Status != "draft" || items[0].Total != "10.00" || items[0].Total != view.Subscriptions[0].Total ||
		!items[0].PeriodStart.Equal(utc("2026-06-20T10:00:00Z")) || !items[0].PeriodEnd.Equal(utc("2026-07-20T10:00:00Z")) || items[0].Currency != "EUR" {
		t.Fatalf("draft with 935 e-mails: %+v (view %+v)", items, view)
	}

	h.ingest(batchCT, jsonArray(mail("m2", "2026-07-03T12:00:00Z", "11410")))
	h.json("GET", "/api/v1/customers/contoso/usage", "", http.StatusOK, &view)
	draft := list()[0]
	if draft.Total != "70.00" || draft.Total != view.Subscriptions[0].Total || draft.Lines[1].Amount != view.Subscriptions[0].Charges[0].Amount {
		t.Fatalf("draft with 12,345 e-mails: %+v (view %+v)", draft, view.Subscriptions[0])
	}
	var byID apiInvoice
	h.json("GET", "/api/v1/invoices/"+draft.ID, "", http.StatusOK, &byID)
	if byID.ID != draft.ID || byID.Status != "draft" || byID.Total != "70.00" {
		t.Errorf("draft by id: %+v", byID)
	}

	// Within the grace period nothing is finalized.
	h.clock.Advance(utc("2026-07-21T09:59:00Z").Sub(h.clock.Now()))
	if n, err := fin.FinalizeDue(ctx, h.clock.Now()); err != nil || n != 0 {
		t.Fatalf("FinalizeDue within the grace period: %d, %v", n, err)
	}
	// After end + 24 h it is, with the worked example's total.
	h.clock.Advance(2 * time.Minute)
	if n, err := fin.FinalizeDue(ctx, h.clock.Now()); err != nil || n != 1 {
		t.Fatalf("FinalizeDue: %d, %v", n, err)
	}
	items = list()
	if len(items) != 2 || items[0].Status != "finalized" || items[0].ID != draft.ID || items[0].Total != "70.00" || items[0].FinalizedAt == nil ||
		items[1].Status != "draft" || !items[1].PeriodStart.Equal(utc("2026-07-20T10:00:00Z")) {
		t.Fatalf("after finalizing: %+v", items)
	}
	l := items[0].Lines[1]
	if l.Kind != "usage" || l.Quantity != "12345" || l.Included != "1000" || l.Billable != "11345" || l.Packages != "12" || l.UnitPrice != "5" || l.Amount != "60.00" {
		t.Errorf("finalized usage line %+v", l)
	}
	// Again: nothing changes.
	if n, err := fin.FinalizeDue(ctx, h.clock.Now()); err != nil || n != 0 {
		t.Fatalf("FinalizeDue again: %d, %v", n, err)
	}
	again := list()
	if len(again) != 2 || again[0].Total != "70.00" || !again[0].FinalizedAt.Equal(*items[0].FinalizedAt) {
		t.Errorf("after finalizing again: %+v", again)
	}

	// A late event for the finalized period: the finalized invoice stays,
	// the next open invoice gets an adjustment line pointing to it.
	h.ingest(batchCT, jsonArray(mail("late", "2026-07-10T00:00:00Z", "700")))
	items = list()
	if items[0].Total != "70.00" || items[0].Lines[1].Quantity != "12345" {
		t.Errorf("finalized invoice changed: %+v", items[0])
	}
	next := items[1]
	if len(next.Lines) != 3 || next.Total != "15.00" {
		t.Fatalf("next draft with adjustment: %+v", next)
	}
	adj := next.Lines[2]
	if adj.Kind != "adjustment" || adj.Key != "emails" || adj.Quantity != "700" || adj.Amount != "5.00" ||
		adj.AdjustsInvoice != draft.ID || adj.AdjustsPeriodStart == nil || !adj.AdjustsPeriodStart.Equal(utc("2026-06-20T10:00:00Z")) {
		t.Errorf("adjustment line %+v", adj)
	}
	// Finalizing the next period bills the adjustment once; later drafts
	// no longer carry it.
	h.clock.Advance(utc("2026-08-21T11:00:00Z").Sub(h.clock.Now()))
	if n, err := fin.FinalizeDue(ctx, h.clock.Now()); err != nil || n != 1 {
		t.Fatalf("FinalizeDue second period: %d, %v", n, err)
	}
	items = list()
	if len(items) != 3 || items[1].Status != "finalized" || items[1].Total != "15.00" || items[2].Status != "draft" || len(items[2].Lines) != 2 || items[2].Total != "10.00" {
		t.Errorf("after the second period: %+v", items)
	}

	// HTML; by customer; unknown ids.
	r := h.do("GET", "/api/v1/invoices/"+draft.ID, "", "", "Accept", "text/html")
	h.expect(r, http.StatusOK, "invoice as HTML")
	if body := string(r.Body); !strings.Contains(body, "<table>") || !strings.Contains(body, "70.00") || !strings.Contains(body, "finalized") {
		t.Errorf("HTML invoice: %s", body)
	}
	if csp := r.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'none'") {
		t.Errorf("HTML invoice Content-Security-Policy %q, want one that loads nothing from elsewhere", csp)
	}
	var byCustomer struct{ Items []apiInvoice }
	h.json("GET", "/api/v1/invoices?customer=contoso", "", http.StatusOK, &byCustomer)
	if len(byCustomer.Items) != 3 {
		t.Errorf("by customer: %+v", byCustomer)
	}
	problemOf(t, h.do("GET", "/api/v1/invoices/inv_nope_1", "", ""), http.StatusNotFound)
	problemOf(t, h.do("GET", "/api/v1/invoices/"+sub.ID, "", ""), http.StatusNotFound)
	problemOf(t, h.do("GET", "/api/v1/invoices?customer=nobody", "", ""), http.StatusNotFound)
	h.expect(h.do("GET", "/api/v1/invoices", "", "", "Authorization", ""), http.StatusUnauthorized, "no token")
}

// TestDraftInvoiceByIDSubSecondStart: a subscription started "now" (no
// start given) starts at the server clock, fractions of a second included;
// its draft invoices are still found by id, which counts whole seconds.
func TestDraftInvoiceByIDSubSecondStart(t *testing.T) {
	h := newAPIHarness(t, harnessOptions{token: "secret"})
	h.createMeter(`{"slug":"emails","eventType":"email.sent","aggregation":"SUM","valueProperty":"$.count"}`)
	h.json("POST", "/api/v1/customers", `{"key":"contoso","name":"Contoso","currency":"EUR","subjects":["contoso-mail"]}`, http.StatusCreated, nil)
	h.json("POST", "/api/v1/plans", `{"key":"mail-pro","name":"Mail Pro","currency":"EUR","cadence":"P1M","baseFee":"10.00",
	  "charges":[{"key":"emails","meter":"emails","included":"1000","pricing":{"model":"package","packageSize":"1000","unitPrice":"5.00"}}]}`,
		http.StatusCreated, nil)
	h.json("POST", "/api/v1/plans/mail-pro/publish", "", http.StatusOK, nil)
	h.clock.Advance(24*time.Hour + 250*time.Millisecond)
	var sub apiSubscription
	h.json("POST", "/api/v1/subscriptions", `{"customer":"contoso","plan":"mail-pro"}`, http.StatusCreated, &sub)
	var out struct{ Items []apiInvoice }
	h.json("GET", "/api/v1/invoices?subscription="+sub.ID, "", http.StatusOK, &out)
	if len(out.Items) != 1 || out.Items[0].PeriodStart.Nanosecond() == 0 {
		t.Fatalf("invoices: %+v", out.Items)
	}
	var byID apiInvoice
	h.json("GET", "/api/v1/invoices/"+out.Items[0].ID, "", http.StatusOK, &byID)
	if byID.ID != out.Items[0].ID || byID.Status != "draft" || byID.Total != "10.00" {
		t.Errorf("draft by id: %+v", byID)
	}
}
