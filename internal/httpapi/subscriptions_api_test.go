package httpapi_test

import (
	"net/http"
	"strings"
	"testing"
	"time"
)

type apiPeriod struct {
	Start   time.Time `json:"start"`
	End     time.Time `json:"end"`
	Partial bool      `json:"partial"`
}

type apiSubscription struct {
	ID            string     `json:"id"`
	CustomerID    string     `json:"customerId"`
	PlanID        string     `json:"planId"`
	PlanKey       string     `json:"planKey"`
	PlanVersion   int        `json:"planVersion"`
	Cadence       string     `json:"cadence"`
	Start         time.Time  `json:"start"`
	BillingAnchor string     `json:"billingAnchor"`
	TimeZone      string     `json:"timeZone"`
	Status        string     `json:"status"`
	CancelAt      *time.Time `json:"cancelAt"`
	CanceledAt    *time.Time `json:"canceledAt"`
	CreatedAt     time.Time  `json:"createdAt"`
	CurrentPeriod *apiPeriod `json:"currentPeriod"`
}

func utc(s string) time.Time {
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		panic(err)
	}
	return t
}

func TestSubscriptionsAPI(t *testing.T) {
	h := newAPIHarness(t, harnessOptions{token: "secret"})
	h.createMeter(`{"slug":"emails","eventType":"email.sent","aggregation":"COUNT"}`)
	var contoso apiCustomer
	h.json("POST", "/api/v1/customers", contosoBody, http.StatusCreated, &contoso)
	h.json("POST", "/api/v1/customers", `{"key":"fabrikam","name":"Fabrikam","currency":"USD"}`, http.StatusCreated, nil)
	h.json("POST", "/api/v1/customers", `{"key":"gone","name":"Gone","currency":"EUR"}`, http.StatusCreated, nil)
	var northwind apiCustomer
	h.json("POST", "/api/v1/customers", `{"key":"northwind","name":"Northwind","currency":"EUR"}`, http.StatusCreated, &northwind)
	h.expect(h.do("DELETE", "/api/v1/customers/gone", "", ""), http.StatusNoContent, "delete gone")
	var plan apiPlan
	h.json("POST", "/api/v1/plans", mailProBody, http.StatusCreated, &plan)

	// The draft can't be subscribed to.
	const example = `{"customer":"contoso","plan":"mail-pro","start":"2026-06-20T10:00:00Z","billingAnchor":"anniversary","timeZone":"UTC"}`
	p := problemOf(t, h.do("POST", "/api/v1/subscriptions", "application/json", example), http.StatusConflict)
	if !strings.Contains(p.Detail, `plan "mail-pro" has no published version`) {
		t.Errorf("draft plan: detail %q", p.Detail)
	}
	p = problemOf(t, h.do("POST", "/api/v1/subscriptions", "application/json", `{"customer":"contoso","plan":"mail-pro","planVersion":1}`), http.StatusConflict)
	if !strings.Contains(p.Detail, `plan "mail-pro" version 1 is a draft`) {
		t.Errorf("draft plan version: detail %q", p.Detail)
	}
	h.json("POST", "/api/v1/plans/mail-pro/publish", "", http.StatusOK, nil)
	// A new draft version 2 does not hide the published version 1.
	h.json("PUT", "/api/v1/plans/mail-pro", strings.Replace(mailProBody, `"10.00"`, `"12.00"`, 1), http.StatusCreated, nil)
	h.json("POST", "/api/v1/plans", strings.Replace(mailProBody, `"mail-pro"`, `"mail-lite"`, 1), http.StatusCreated, nil)
	h.json("POST", "/api/v1/plans/mail-lite/publish", "", http.StatusOK, nil)

	// The worked example, read on 2026-07-01.
	h.clock.Advance(utc("2026-07-01T00:00:00Z").Sub(apiStart))
	var sub apiSubscription
	h.json("POST", "/api/v1/subscriptions", example, http.StatusCreated, &sub)
	wantPeriod := apiPeriod{Start: utc("2026-06-20T10:00:00Z"), End: utc("2026-07-20T10:00:00Z")}
	if sub.ID == "" || sub.CustomerID != contoso.ID || sub.PlanID != plan.ID || sub.PlanKey != "mail-pro" || sub.PlanVersion != 1 ||
		sub.Cadence != "P1M" || !sub.Start.Equal(wantPeriod.Start) || sub.BillingAnchor != "anniversary" || sub.TimeZone != "UTC" ||
		sub.Status != "active" || sub.CancelAt != nil || sub.CurrentPeriod == nil ||
		!sub.CurrentPeriod.Start.Equal(wantPeriod.Start) || !sub.CurrentPeriod.End.Equal(wantPeriod.End) {
		t.Fatalf("created subscription: %+v (period %+v)", sub, sub.CurrentPeriod)
	}
	var got apiSubscription
	h.json("GET", "/api/v1/subscriptions/"+sub.ID, "", http.StatusOK, &got)
	if got.ID != sub.ID || *got.CurrentPeriod != wantPeriod {
		t.Errorf("GET subscription: %+v (period %+v)", got, got.CurrentPeriod)
	}
	// The current period follows the server clock.
	h.clock.Advance(utc("2026-07-25T00:00:00Z").Sub(utc("2026-07-01T00:00:00Z")))
	h.json("GET", "/api/v1/subscriptions/"+sub.ID, "", http.StatusOK, &got)
	if want := (apiPeriod{Start: utc("2026-07-20T10:00:00Z"), End: utc("2026-08-20T10:00:00Z")}); *got.CurrentPeriod != want {
		t.Errorf("period on 2026-07-25: %+v, want %+v", got.CurrentPeriod, want)
	}

	// Defaults: the latest published version, anniversary, UTC, start now.
	var def apiSubscription
	h.json("POST", "/api/v1/subscriptions", `{"customer":"`+northwind.ID+`","plan":"`+plan.ID+`"}`, http.StatusCreated, &def)
	now := utc("2026-07-25T00:00:00Z")
	if def.PlanVersion != 1 || def.BillingAnchor != "anniversary" || def.TimeZone != "UTC" || !def.Start.Equal(now) ||
		!def.CurrentPeriod.Start.Equal(now) || !def.CurrentPeriod.End.Equal(utc("2026-08-25T00:00:00Z")) {
		t.Errorf("defaulted subscription: %+v (period %+v)", def, def.CurrentPeriod)
	}
	// Calendar anchor in Berlin: a partial first period to the 1st of the
	// next month, at the start's local time of day (10:00 CEST).
	var cal apiSubscription
	h.json("POST", "/api/v1/subscriptions", `{"customer":"contoso","plan":"mail-lite","start":"2026-07-10T08:00:00Z","billingAnchor":"calendar","timeZone":"Europe/Berlin"}`, http.StatusCreated, &cal)
	if want := (apiPeriod{Start: utc("2026-07-10T08:00:00Z"), End: utc("2026-08-01T08:00:00Z"), Partial: true}); *cal.CurrentPeriod != want {
		t.Errorf("calendar period: %+v, want %+v", cal.CurrentPeriod, want)
	}

	// A customer is on a plan at most once at a time: a second
	// subscription to mail-pro (any version, any start: the first one is
	// open-ended) or a plan change onto it is refused, naming the plan.
	for _, body := range []string{
		`{"customer":"contoso","plan":"mail-pro"}`,
		`{"customer":"contoso","plan":"mail-pro","start":"2026-05-01T00:00:00Z","billingAnchor":"calendar"}`,
	} {
		p := problemOf(t, h.do("POST", "/api/v1/subscriptions", "application/json", body), http.StatusConflict)
		// It names the other subscription and its start, not the time
		// of the request.
		if want := `plan: customer "contoso" is already on plan "mail-pro": subscription ` + sub.ID + ` is on it from 2026-06-20T10:00:00Z with no end`; !strings.HasPrefix(p.Detail, want) {
			t.Errorf("second subscription to mail-pro %s: detail %q, want it to start %q", body, p.Detail, want)
		}
	}
	p = problemOf(t, h.do("POST", "/api/v1/subscriptions/"+cal.ID+"/change", "application/json", `{"plan":"mail-pro","at":"period_end"}`), http.StatusConflict)
	if !strings.HasPrefix(p.Detail, `plan: customer "contoso" is already on plan "mail-pro"`) {
		t.Errorf("plan change onto mail-pro: detail %q", p.Detail)
	}

	tests := []struct {
		name, body string
		status     int
		want       []string
	}{
		{"every field wrong", `{"customer":"","plan":"","planVersion":-1,"start":"1900-01-01T00:00:00Z","billingAnchor":"weekly","timeZone":"Mars/Olympus"}`,
			http.StatusBadRequest, []string{"customer: is required", "plan: is required", "planVersion: -1", "start: ", `billingAnchor: "weekly"`, `timeZone: "Mars/Olympus"`}},
		{"currency mismatch", `{"customer":"fabrikam","plan":"mail-pro"}`, http.StatusBadRequest,
			[]string{`plan: plan "mail-pro" version 1 is priced in EUR, but customer "fabrikam" is billed in USD`}},
		{"unknown customer", `{"customer":"nobody","plan":"mail-pro"}`, http.StatusNotFound, nil},
		{"unknown plan", `{"customer":"contoso","plan":"nope"}`, http.StatusNotFound, nil},
		{"unknown plan version", `{"customer":"contoso","plan":"mail-pro","planVersion":7}`, http.StatusNotFound, nil},
		{"deleted customer", `{"customer":"gone","plan":"mail-pro"}`, http.StatusConflict, nil},
		{"start before the customer exists", `{"customer":"contoso","plan":"mail-pro","start":"2026-04-01T11:59:59Z"}`, http.StatusBadRequest,
			[]string{`start: 2026-04-01T11:59:59Z is before customer "contoso" was created (2026-04-01T12:00:00Z)`}},
		{"unknown field", `{"customer":"contoso","plan":"mail-pro","trial":true}`, http.StatusBadRequest, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := problemOf(t, h.do("POST", "/api/v1/subscriptions", "application/json", tc.body), tc.status)
			if len(tc.want) > 0 && len(p.Errors) != len(tc.want) {
				t.Fatalf("errors %q, want %d like %q", p.Errors, len(tc.want), tc.want)
			}
			for i, w := range tc.want {
				if !strings.HasPrefix(p.Errors[i], w) {
					t.Errorf("errors[%d] = %q, want prefix %q", i, p.Errors[i], w)
				}
			}
		})
	}

	// List, all and by customer (id or key).
	var fab apiSubscription
	h.json("PUT", "/api/v1/customers/fabrikam", `{"name":"Fabrikam","currency":"EUR"}`, http.StatusOK, nil)
	h.json("POST", "/api/v1/subscriptions", `{"customer":"fabrikam","plan":"mail-pro","start":"2026-05-01T00:00:00Z"}`, http.StatusCreated, &fab)
	var list struct{ Items []apiSubscription }
	ids := func() []string {
		var out []string
		for _, s := range list.Items {
			out = append(out, s.ID)
		}
		return out
	}
	h.json("GET", "/api/v1/subscriptions", "", http.StatusOK, &list)
	if got, want := strings.Join(ids(), ","), strings.Join([]string{fab.ID, sub.ID, cal.ID, def.ID}, ","); got != want {
		t.Errorf("all subscriptions %s, want %s (by start)", got, want)
	}
	h.json("GET", "/api/v1/subscriptions?customer=contoso", "", http.StatusOK, &list)
	if len(list.Items) != 2 || list.Items[0].ID != sub.ID || list.Items[0].CurrentPeriod == nil {
		t.Errorf("contoso's subscriptions: %+v", list.Items)
	}
	h.json("GET", "/api/v1/subscriptions?customer="+contoso.ID, "", http.StatusOK, &list)
	if len(list.Items) != 2 {
		t.Errorf("contoso's subscriptions by id: %+v", list.Items)
	}
	problemOf(t, h.do("GET", "/api/v1/subscriptions?customer=nobody", "", ""), http.StatusNotFound)
	problemOf(t, h.do("GET", "/api/v1/subscriptions/nope", "", ""), http.StatusNotFound)

	// Cancel at period end: in force until the period ends, then canceled.
	var sc apiSubscription
	h.json("POST", "/api/v1/subscriptions/"+sub.ID+"/cancel", `{"at":"period_end"}`, http.StatusOK, &sc)
	periodEnd := utc("2026-08-20T10:00:00Z")
	if sc.Status != "scheduled_cancel" || sc.CancelAt == nil || !sc.CancelAt.Equal(periodEnd) || sc.CanceledAt == nil || !sc.CanceledAt.Equal(now) || sc.CurrentPeriod == nil {
		t.Errorf("cancel at period end: %+v", sc)
	}
	h.json("POST", "/api/v1/subscriptions/"+sub.ID+"/cancel", `{"at":"period_end"}`, http.StatusOK, &sc) // again: no change
	if sc.Status != "scheduled_cancel" || !sc.CanceledAt.Equal(now) {
		t.Errorf("cancelling at period end twice: %+v", sc)
	}
	// Cancel now.
	var cn apiSubscription
	h.json("POST", "/api/v1/subscriptions/"+def.ID+"/cancel", `{"at":"now"}`, http.StatusOK, &cn)
	if cn.Status != "canceled" || cn.CancelAt == nil || !cn.CancelAt.Equal(now) || cn.CurrentPeriod != nil {
		t.Errorf("cancel now: %+v", cn)
	}
	p = problemOf(t, h.do("POST", "/api/v1/subscriptions/"+def.ID+"/cancel", "application/json", `{"at":"now"}`), http.StatusConflict)
	if !strings.Contains(p.Detail, "already canceled") {
		t.Errorf("cancelling twice: %q", p.Detail)
	}
	p = problemOf(t, h.do("POST", "/api/v1/subscriptions/"+cal.ID+"/cancel", "application/json", `{"at":"tomorrow"}`), http.StatusBadRequest)
	if len(p.Errors) != 1 || !strings.HasPrefix(p.Errors[0], "at: ") {
		t.Errorf("bad at: %q", p.Errors)
	}
	problemOf(t, h.do("POST", "/api/v1/subscriptions/"+cal.ID+"/cancel", "application/json", `{}`), http.StatusBadRequest)
	problemOf(t, h.do("POST", "/api/v1/subscriptions/nope/cancel", "application/json", `{"at":"now"}`), http.StatusNotFound)
	// Once cancelled, the plan is free again from the cancellation on.
	p = problemOf(t, h.do("POST", "/api/v1/subscriptions", "application/json", `{"customer":"contoso","plan":"mail-pro","start":"2026-08-20T09:59:59Z"}`), http.StatusConflict)
	if want := `plan: customer "contoso" is already on plan "mail-pro": subscription ` + sub.ID + ` is on it from 2026-06-20T10:00:00Z until 2026-08-20T10:00:00Z, so the usage from 2026-08-20T09:59:59Z would be billed twice. Cancel or change that subscription first, or start this one at 2026-08-20T10:00:00Z or later`; p.Detail != want {
		t.Errorf("subscription before the cancellation: detail %q", p.Detail)
	}
	var next apiSubscription
	h.json("POST", "/api/v1/subscriptions", `{"customer":"contoso","plan":"mail-pro","start":"2026-08-20T10:00:00Z"}`, http.StatusCreated, &next)
	var again apiSubscription // def was cancelled at its start: on mail-pro for no time at all
	h.json("POST", "/api/v1/subscriptions", `{"customer":"northwind","plan":"mail-pro","start":"2026-07-01T00:00:00Z"}`, http.StatusCreated, &again)

	// After the period end the scheduled cancellation has taken effect;
	// both cancelled subscriptions are kept.
	h.clock.Advance(periodEnd.Sub(now))
	got = apiSubscription{}
	h.json("GET", "/api/v1/subscriptions/"+sub.ID, "", http.StatusOK, &got)
	if got.Status != "canceled" || got.CurrentPeriod != nil || !got.CancelAt.Equal(periodEnd) {
		t.Errorf("after the period end: %+v", got)
	}
	list.Items = nil
	h.json("GET", "/api/v1/subscriptions?customer=contoso", "", http.StatusOK, &list)
	if len(list.Items) != 3 || list.Items[0].Status != "canceled" || list.Items[1].Status != "active" || list.Items[2].ID != next.ID || list.Items[2].Status != "active" {
		t.Errorf("contoso's subscriptions after cancelling: %+v", list.Items)
	}
	h.json("GET", "/api/v1/subscriptions?customer=northwind", "", http.StatusOK, &list)
	if len(list.Items) != 2 || list.Items[0].ID != again.ID || list.Items[0].Status != "active" || list.Items[1].ID != def.ID || list.Items[1].Status != "canceled" {
		t.Errorf("northwind's subscriptions after cancelling: %+v", list.Items)
	}
}
