package httpapi_test

import (
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"
)

type apiChargeUsage struct {
	Key             string            `json:"key"`
	Meter           string            `json:"meter"`
	FilterGroupBy   map[string]string `json:"filterGroupBy"`
	Usage           string            `json:"usage"`
	Included        string            `json:"included"`
	Remaining       string            `json:"remaining"`
	Overage         string            `json:"overage"`
	Amount          string            `json:"amount"`
	Projected       string            `json:"projected"`
	ProjectedAmount string            `json:"projectedAmount"`
}

type apiSubscriptionUsage struct {
	Subscription   string           `json:"subscription"`
	PlanKey        string           `json:"planKey"`
	PlanVersion    int              `json:"planVersion"`
	Status         string           `json:"status"`
	Currency       string           `json:"currency"`
	PeriodStart    time.Time        `json:"periodStart"`
	PeriodEnd      time.Time        `json:"periodEnd"`
	Elapsed        string           `json:"elapsed"`
	BaseFee        string           `json:"baseFee"`
	Charges        []apiChargeUsage `json:"charges"`
	Total          string           `json:"total"`
	ProjectedTotal string           `json:"projectedTotal"`
}

type apiCustomerUsage struct {
	Customer      string                 `json:"customer"`
	CustomerKey   string                 `json:"customerKey"`
	AsOf          time.Time              `json:"asOf"`
	Subscriptions []apiSubscriptionUsage `json:"subscriptions"`
}

func TestCustomerUsageAPI(t *testing.T) {
	h := newAPIHarness(t, harnessOptions{token: "secret"})
	h.createMeter(`{"slug":"emails","eventType":"email.sent","aggregation":"SUM","valueProperty":"$.count"}`)
	h.createMeter(`{"slug":"tokens","eventType":"prompt","aggregation":"SUM","valueProperty":"$.tokens","groupBy":{"model":"$.model"}}`)
	var contoso apiCustomer
	h.json("POST", "/api/v1/customers", `{"key":"contoso","name":"Contoso","currency":"EUR","subjects":["contoso-mail","contoso-api"]}`, http.StatusCreated, &contoso)
	h.json("POST", "/api/v1/customers", `{"key":"fabrikam","name":"Fabrikam","currency":"EUR","subjects":["fab-mail"]}`, http.StatusCreated, nil)
	h.json("POST", "/api/v1/customers", `{"key":"idle","name":"Idle","currency":"EUR","subjects":["idle-1"]}`, http.StatusCreated, nil)
	// The worked example plus a per-unit charge on gpt-4 tokens only.
	h.json("POST", "/api/v1/plans", `{"key":"mail-pro","name":"Mail Pro","currency":"EUR","cadence":"P1M","baseFee":"10.00",
	  "charges":[{"key":"emails","meter":"emails","included":"1000","pricing":{"model":"package","packageSize":"1000","unitPrice":"5.00"}},
	             {"key":"gpt4","meter":"tokens","filterGroupBy":{"model":"gpt-4"},"included":"100","pricing":{"model":"per_unit","unitPrice":"0.01"}}]}`,
		http.StatusCreated, nil)
	h.json("POST", "/api/v1/plans/mail-pro/publish", "", http.StatusOK, nil)

	// Half-way through the first period, 2026-06-20T10:00Z – 2026-07-20T10:00Z.
	h.clock.Advance(utc("2026-07-05T10:00:00Z").Sub(apiStart))
	var sub apiSubscription
	h.json("POST", "/api/v1/subscriptions", `{"customer":"contoso","plan":"mail-pro","start":"2026-06-20T10:00:00Z"}`, http.StatusCreated, &sub)
	var fab apiSubscription
	h.json("POST", "/api/v1/subscriptions", `{"customer":"fabrikam","plan":"mail-pro","start":"2026-06-20T10:00:00Z"}`, http.StatusCreated, &fab)
	h.json("POST", "/api/v1/subscriptions/"+fab.ID+"/cancel", `{"at":"now"}`, http.StatusOK, nil)

	mail := func(id, subject, ts, n string) string {
		return ce(id, "email.sent", subject, ts, `{"count":`+n+`}`)
	}
	prompt := func(id, subject, ts, model, n string) string {
		return ce(id, "prompt", subject, ts, `{"model":"`+model+`","tokens":`+n+`}`)
	}
	h.ingest(batchCT, jsonArray(
		mail("m1", "contoso-mail", "2026-06-20T10:00:00Z", "900"), // the period's first instant counts
		mail("m2", "contoso-api", "2026-07-01T08:30:00Z", "35"),
		mail("m0", "contoso-mail", "2026-06-20T09:59:59Z", "500"), // the period before
		mail("f1", "fab-mail", "2026-06-25T00:00:00Z", "999"),     // another customer's subject
		mail("x1", "stranger", "2026-06-25T00:00:00Z", "777"),     // nobody's subject
	))

	get := func() apiCustomerUsage {
		t.Helper()
		var out apiCustomerUsage
		h.json("GET", "/api/v1/customers/contoso/usage", "", http.StatusOK, &out)
		if out.Customer != contoso.ID || out.CustomerKey != "contoso" || !out.AsOf.Equal(utc("2026-07-05T10:00:00Z")) || len(out.Subscriptions) != 1 {
			t.Fatalf("usage view %+v", out)
		}
		s := out.Subscriptions[0]
		if s.Subscription != sub.ID || s.PlanKey != "mail-pro" || s.PlanVersion != 1 || s.Status != "active" || s.Currency != "EUR" ||
			!s.PeriodStart.Equal(utc("2026-06-20T10:00:00Z")) || !s.PeriodEnd.Equal(utc("2026-07-20T10:00:00Z")) ||
			s.Elapsed != "0.5" || s.BaseFee != "10.00" || len(s.Charges) != 2 {
			t.Fatalf("subscription usage %+v", s)
		}
		return out
	}
	check := func(what string, got apiChargeUsage, want apiChargeUsage) {
		t.Helper()
		want.Key, want.Meter = got.Key, got.Meter
		got.FilterGroupBy = nil
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s:\n got %+v\nwant %+v", what, got, want)
		}
	}

	// 935 e-mails: 65 of the 1,000 left, nothing to pay beyond the base fee.
	v := get().Subscriptions[0]
	check("935 e-mails", v.Charges[0], apiChargeUsage{Usage: "935", Included: "1000", Remaining: "65", Overage: "0", Amount: "0.00", Projected: "1870", ProjectedAmount: "5.00"})
	check("no tokens", v.Charges[1], apiChargeUsage{Usage: "0", Included: "100", Remaining: "100", Overage: "0", Amount: "0.00", Projected: "0", ProjectedAmount: "0.00"})
	if v.Charges[0].Key != "emails" || v.Charges[1].Key != "gpt4" || v.Charges[1].Meter != "tokens" || v.Charges[1].FilterGroupBy["model"] != "gpt-4" {
		t.Errorf("charge identities %+v", v.Charges)
	}
	if v.Total != "10.00" || v.ProjectedTotal != "15.00" {
		t.Errorf("935 e-mails: total %s projected %s, want 10.00 and 15.00", v.Total, v.ProjectedTotal)
	}

	// 12,345 e-mails: 11,345 over, 12 packages, 60.00; 300 gpt-4 tokens.
	h.ingest(batchCT, jsonArray(
		mail("m3", "contoso-mail", "2026-07-03T12:00:00Z", "11000"),
		mail("m4", "contoso-api", "2026-07-05T09:59:00Z", "410"),
		prompt("p1", "contoso-api", "2026-07-02T00:00:00Z", "gpt-4", "300"),
		prompt("p2", "contoso-api", "2026-07-02T00:00:00Z", "gpt-3.5", "1000"), // filtered out
		prompt("p3", "fab-mail", "2026-07-02T00:00:00Z", "gpt-4", "5000"),      // another customer
	))
	v = get().Subscriptions[0]
	check("12,345 e-mails", v.Charges[0], apiChargeUsage{Usage: "12345", Included: "1000", Remaining: "0", Overage: "11345", Amount: "60.00", Projected: "24690", ProjectedAmount: "120.00"})
	check("300 tokens", v.Charges[1], apiChargeUsage{Usage: "300", Included: "100", Remaining: "0", Overage: "200", Amount: "2.00", Projected: "600", ProjectedAmount: "5.00"})
	if v.Total != "72.00" || v.ProjectedTotal != "135.00" {
		t.Errorf("12,345 e-mails: total %s projected %s, want 72.00 and 135.00", v.Total, v.ProjectedTotal)
	}

	// By id too; a scheduled cancellation still shows its period.
	h.json("POST", "/api/v1/subscriptions/"+sub.ID+"/cancel", `{"at":"period_end"}`, http.StatusOK, nil)
	var byID apiCustomerUsage
	h.json("GET", "/api/v1/customers/"+contoso.ID+"/usage", "", http.StatusOK, &byID)
	if len(byID.Subscriptions) != 1 || byID.Subscriptions[0].Status != "scheduled_cancel" || byID.Subscriptions[0].Total != "72.00" {
		t.Errorf("by id after cancel at period end: %+v", byID)
	}

	// A customer whose only subscription is canceled, and one without any:
	// empty lists. An unknown customer: 404.
	for _, key := range []string{"fabrikam", "idle"} {
		var empty apiCustomerUsage
		r := h.do("GET", "/api/v1/customers/"+key+"/usage", "", "")
		h.expect(r, http.StatusOK, key+" usage")
		if !strings.Contains(string(r.Body), `"subscriptions":[]`) {
			t.Errorf("%s: body %s, want an empty subscriptions list", key, r.Body)
		}
		decodeInto(t, r, &empty)
		if empty.CustomerKey != key || len(empty.Subscriptions) != 0 {
			t.Errorf("%s usage %+v", key, empty)
		}
	}
	problemOf(t, h.do("GET", "/api/v1/customers/nobody/usage", "", ""), http.StatusNotFound)
	// Reading needs a token.
	h.expect(h.do("GET", "/api/v1/customers/contoso/usage", "", "", "Authorization", ""), http.StatusUnauthorized, "no token")
}
