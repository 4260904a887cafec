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

type apiChangedInvoiceLine struct {
	Kind         string     `json:"kind"`
	Key          string     `json:"key"`
	Quantity     string     `json:"quantity"`
	Billable     string     `json:"billable"`
	Amount       string     `json:"amount"`
	PlanKey      string     `json:"planKey"`
	PlanVersion  int        `json:"planVersion"`
	SegmentStart *time.Time `json:"segmentStart"`
	SegmentEnd   *time.Time `json:"segmentEnd"`
}

type apiChangedInvoice struct {
	Status      string                  `json:"status"`
	PlanKey     string                  `json:"planKey"`
	PeriodStart time.Time               `json:"periodStart"`
	PeriodEnd   time.Time               `json:"periodEnd"`
	Lines       []apiChangedInvoiceLine `json:"lines"`
	Total       string                  `json:"total"`
}

type apiPlanPhase struct {
	PlanKey     string    `json:"planKey"`
	PlanVersion int       `json:"planVersion"`
	From        time.Time `json:"from"`
}

type apiChangedSubscription struct {
	ID          string         `json:"id"`
	PlanKey     string         `json:"planKey"`
	Phases      []apiPlanPhase `json:"phases"`
	CurrentPlan apiPlanPhase   `json:"currentPlan"`
}

// mailTeamBody is a second EUR monthly plan: a higher base fee, more
// included e-mails and a per-unit price.
const mailTeamBody = `{"key":"mail-team","name":"Mail Team","currency":"EUR","cadence":"P1M","baseFee":"40.00",
  "charges":[{"key":"emails","meter":"emails","included":"5000","pricing":{"model":"per_unit","unitPrice":"0.01"}}]}`

func newChangeHarness(t *testing.T) *apiHarness {
	h := newAPIHarness(t, harnessOptions{token: "secret"})
	h.createMeter(`{"slug":"emails","eventType":"email.sent","aggregation":"SUM","valueProperty":"$.count"}`)
	h.json("POST", "/api/v1/customers", contosoBody, http.StatusCreated, nil)
	h.json("POST", "/api/v1/plans", mailProBody, http.StatusCreated, nil)
	h.json("POST", "/api/v1/plans/mail-pro/publish", "", http.StatusOK, nil)
	h.json("POST", "/api/v1/plans", mailTeamBody, http.StatusCreated, nil)
	h.json("POST", "/api/v1/plans/mail-team/publish", "", http.StatusOK, nil)
	return h
}

func (h *apiHarness) invoicesOf(sub string) []apiChangedInvoice {
	h.t.Helper()
	var out struct{ Items []apiChangedInvoice }
	h.json("GET", "/api/v1/invoices?subscription="+sub, "", http.StatusOK, &out)
	return out.Items
}

func mailEvent(id, ts, n string) string {
	return ce(id, "email.sent", "contoso-mail", ts, `{"count":`+n+`}`)
}

func TestChangePlanAtPeriodEnd(t *testing.T) {
	h := newChangeHarness(t)
	h.clock.Advance(utc("2026-07-01T00:00:00Z").Sub(apiStart))
	var sub apiChangedSubscription
	h.json("POST", "/api/v1/subscriptions", `{"customer":"contoso","plan":"mail-pro","start":"2026-06-20T10:00:00Z"}`, http.StatusCreated, &sub)
	h.ingest(batchCT, jsonArray(mailEvent("m1", "2026-06-21T10:00:00Z", "1500")))

	var changed apiChangedSubscription
	h.json("POST", "/api/v1/subscriptions/"+sub.ID+"/change", `{"plan":"mail-team","at":"period_end"}`, http.StatusOK, &changed)
	next := utc("2026-07-20T10:00:00Z")
	if changed.PlanKey != "mail-pro" || changed.CurrentPlan.PlanKey != "mail-pro" || len(changed.Phases) != 1 ||
		changed.Phases[0].PlanKey != "mail-team" || changed.Phases[0].PlanVersion != 1 || !changed.Phases[0].From.Equal(next) {
		t.Fatalf("changed at period end: %+v", changed)
	}
	// This period is unchanged.
	items := h.invoicesOf(sub.ID)
	if len(items) != 1 || items[0].PlanKey != "mail-pro" || items[0].Total != "15.00" || len(items[0].Lines) != 2 || items[0].Lines[0].PlanKey != "" {
		t.Fatalf("current period after the change: %+v", items)
	}
	// The next period's draft is on the new plan.
	h.clock.Advance(utc("2026-07-21T10:00:00Z").Sub(h.clock.Now()))
	h.ingest(batchCT, jsonArray(mailEvent("m2", "2026-07-21T09:00:00Z", "6000")))
	items = h.invoicesOf(sub.ID)
	if len(items) != 2 || items[0].PlanKey != "mail-pro" || items[0].Total != "15.00" {
		t.Fatalf("invoices after the period end: %+v", items)
	}
	if d := items[1]; d.PlanKey != "mail-team" || !d.PeriodStart.Equal(next) || d.Total != "50.00" ||
		len(d.Lines) != 2 || d.Lines[0].Amount != "40.00" || d.Lines[1].Billable != "1000" || d.Lines[1].Amount != "10.00" {
		t.Errorf("next period's draft: %+v", d)
	}
	var got apiChangedSubscription
	h.json("GET", "/api/v1/subscriptions/"+sub.ID, "", http.StatusOK, &got)
	if got.CurrentPlan.PlanKey != "mail-team" {
		t.Errorf("current plan after the period end: %+v", got)
	}
	var view apiCustomerUsage
	h.json("GET", "/api/v1/customers/contoso/usage", "", http.StatusOK, &view)
	if s := view.Subscriptions[0]; s.PlanKey != "mail-team" || s.BaseFee != "40.00" || s.Total != "50.00" {
		t.Errorf("usage view after the period end: %+v", s)
	}
}

func TestChangePlanNow(t *testing.T) {
	h := newChangeHarness(t)
	h.json("POST", "/api/v1/plans", strings.Replace(strings.Replace(mailTeamBody, `"EUR"`, `"USD"`, 1), `"mail-team"`, `"mail-usd"`, 1), http.StatusCreated, nil)
	h.json("POST", "/api/v1/plans/mail-usd/publish", "", http.StatusOK, nil)
	h.json("PUT", "/api/v1/plans/mail-team", strings.Replace(mailTeamBody, `"40.00"`, `"45.00"`, 1), http.StatusCreated, nil) // draft v2
	// The period is 2026-06-20T10:00Z – 2026-07-20T10:00Z, 30 days; the
	// change comes 6 days in, a fifth of it.
	h.clock.Advance(utc("2026-06-26T10:00:00Z").Sub(apiStart))
	var sub apiChangedSubscription
	h.json("POST", "/api/v1/subscriptions", `{"customer":"contoso","plan":"mail-pro","start":"2026-06-20T10:00:00Z"}`, http.StatusCreated, &sub)
	h.ingest(batchCT, jsonArray(mailEvent("m1", "2026-06-21T10:00:00Z", "1500")))

	for _, tc := range []struct{ name, body string }{
		{"draft version", `{"plan":"mail-team","planVersion":2,"at":"now"}`},
		{"other currency", `{"plan":"mail-usd","at":"now"}`},
		{"same plan", `{"plan":"mail-pro","at":"now"}`},
	} {
		p := problemOf(t, h.do("POST", "/api/v1/subscriptions/"+sub.ID+"/change", "application/json", tc.body), http.StatusBadRequest)
		if len(p.Errors) != 1 || !strings.HasPrefix(p.Errors[0], "plan: ") {
			t.Errorf("%s: errors %q", tc.name, p.Errors)
		}
	}
	p := problemOf(t, h.do("POST", "/api/v1/subscriptions/"+sub.ID+"/change", "application/json", `{"plan":"mail-team","at":"tomorrow"}`), http.StatusBadRequest)
	if len(p.Errors) != 1 || !strings.HasPrefix(p.Errors[0], "at: ") {
		t.Errorf("bad at: %q", p.Errors)
	}
	problemOf(t, h.do("POST", "/api/v1/subscriptions/nope/change", "application/json", `{"plan":"mail-team","at":"now"}`), http.StatusNotFound)

	var changed apiChangedSubscription
	h.json("POST", "/api/v1/subscriptions/"+sub.ID+"/change", `{"plan":"mail-team","at":"now"}`, http.StatusOK, &changed)
	cut := utc("2026-06-26T10:00:00Z")
	if changed.CurrentPlan.PlanKey != "mail-team" || len(changed.Phases) != 1 || !changed.Phases[0].From.Equal(cut) {
		t.Fatalf("changed now: %+v", changed)
	}
	problemOf(t, h.do("POST", "/api/v1/subscriptions/"+sub.ID+"/change", "application/json", `{"plan":"mail-pro","at":"now"}`), http.StatusConflict)

	h.clock.Advance(utc("2026-06-28T10:00:00Z").Sub(h.clock.Now()))
	h.ingest(batchCT, jsonArray(mailEvent("m2", "2026-06-27T10:00:00Z", "6000")))
	items := h.invoicesOf(sub.ID)
	if len(items) != 1 {
		t.Fatalf("invoices: %+v", items)
	}
	inv := items[0]
	// Old plan: a fifth of 10.00 plus 500 e-mails over 1000 included (one
	// package, 5.00); new plan: four fifths of 40.00 plus 1000 e-mails over
	// 5000 included at 0.01.
	want := []struct {
		kind, plan, qty, amount string
		from, to                time.Time
	}{
		{"base_fee", "mail-pro", "0.2", "2.00", utc("2026-06-20T10:00:00Z"), cut},
		{"usage", "mail-pro", "1500", "5.00", utc("2026-06-20T10:00:00Z"), cut},
		{"base_fee", "mail-team", "0.8", "32.00", cut, utc("2026-07-20T10:00:00Z")},
		{"usage", "mail-team", "6000", "10.00", cut, utc("2026-07-20T10:00:00Z")},
	}
	if inv.PlanKey != "mail-team" || !inv.PeriodStart.Equal(utc("2026-06-20T10:00:00Z")) || !inv.PeriodEnd.Equal(utc("2026-07-20T10:00:00Z")) ||
		len(inv.Lines) != len(want) || inv.Total != "49.00" {
		t.Fatalf("split invoice: %+v", inv)
	}
	for i, w := range want {
		l := inv.Lines[i]
		if l.Kind != w.kind || l.PlanKey != w.plan || l.PlanVersion != 1 || l.Quantity != w.qty || l.Amount != w.amount ||
			l.SegmentStart == nil || !l.SegmentStart.Equal(w.from) || l.SegmentEnd == nil || !l.SegmentEnd.Equal(w.to) {
			t.Errorf("line %d: %+v, want %+v", i, l, w)
		}
	}
	// The usage view shows the new plan's part of the period.
	var view apiCustomerUsage
	h.json("GET", "/api/v1/customers/contoso/usage", "", http.StatusOK, &view)
	if s := view.Subscriptions[0]; s.PlanKey != "mail-team" || !s.PeriodStart.Equal(cut) || s.BaseFee != "32.00" || s.Total != "42.00" ||
		len(s.Charges) != 1 || s.Charges[0].Usage != "6000" {
		t.Errorf("usage view after the change: %+v", s)
	}

	// Finalized after the period: the same lines. Late usage of the old
	// plan's part is adjusted on that plan, in the next invoice.
	fin := &invoicing.Service{Store: h.st, Usage: &usage.Service{Store: h.st}, Stable: h.pipe.MetersStable, Grace: invoicing.DefaultGrace}
	h.clock.Advance(utc("2026-07-21T11:00:00Z").Sub(h.clock.Now()))
	if n, err := fin.FinalizeDue(context.Background(), h.clock.Now()); err != nil || n != 1 {
		t.Fatalf("FinalizeDue: %d, %v", n, err)
	}
	h.ingest(batchCT, jsonArray(mailEvent("late", "2026-06-22T10:00:00Z", "1000")))
	items = h.invoicesOf(sub.ID)
	if len(items) != 2 || items[0].Status != "finalized" || items[0].Total != "49.00" || len(items[0].Lines) != 4 {
		t.Fatalf("after finalizing: %+v", items)
	}
	next := items[1]
	if next.PlanKey != "mail-team" || len(next.Lines) != 3 || next.Total != "45.00" {
		t.Fatalf("next draft: %+v", next)
	}
	if adj := next.Lines[2]; adj.Kind != "adjustment" || adj.PlanKey != "mail-pro" || adj.Quantity != "1000" || adj.Amount != "5.00" {
		t.Errorf("adjustment: %+v", adj)
	}
}

// A customer whose currency was changed while it has a subscription can't
// move that subscription onto a plan in the new currency: one invoice would
// add up amounts in two currencies (the period split by the change, and
// adjustments of earlier periods on later invoices).
func TestChangePlanKeepsTheSubscriptionsCurrency(t *testing.T) {
	h := newChangeHarness(t)
	h.json("POST", "/api/v1/plans", strings.Replace(strings.Replace(mailTeamBody, `"EUR"`, `"USD"`, 1), `"mail-team"`, `"mail-usd"`, 1), http.StatusCreated, nil)
	h.json("POST", "/api/v1/plans/mail-usd/publish", "", http.StatusOK, nil)
	h.clock.Advance(utc("2026-06-26T10:00:00Z").Sub(apiStart))
	var sub apiChangedSubscription
	h.json("POST", "/api/v1/subscriptions", `{"customer":"contoso","plan":"mail-pro","start":"2026-06-20T10:00:00Z"}`, http.StatusCreated, &sub)
	h.json("PUT", "/api/v1/customers/contoso", strings.Replace(contosoBody, `"EUR"`, `"USD"`, 1), http.StatusOK, nil)
	p := problemOf(t, h.do("POST", "/api/v1/subscriptions/"+sub.ID+"/change", "application/json", `{"plan":"mail-usd","at":"now"}`), http.StatusBadRequest)
	if len(p.Errors) != 1 || !strings.HasPrefix(p.Errors[0], "plan: ") {
		t.Errorf("errors %q", p.Errors)
	}
	for _, inv := range h.invoicesOf(sub.ID) {
		for _, l := range inv.Lines {
			if l.PlanKey == "mail-usd" {
				t.Errorf("an EUR subscription's invoice bills the USD plan: %+v", inv)
			}
		}
	}
}
