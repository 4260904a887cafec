package httpapi_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tally-metering/tally/internal/billing"
	"github.com/tally-metering/tally/internal/event"
	"github.com/tally-metering/tally/internal/store"
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

// TestCustomerUsageLatency measures GET /api/v1/customers/{key}/usage
// through the real handler and HTTP server on a loaded SQLite store. It is
// skipped unless TALLY_BENCH_USAGE=N (customers) is set; see
// docs/benchmarks.md ("Billing"):
//
//	TALLY_BENCH_USAGE=10000 go test ./internal/httpapi -run TestCustomerUsageLatency -v -count=1 -timeout 60m
//
// Each customer has one subject and one subscription (since 2026-04-01) to
// a monthly plan with 3 charges on 2 meters (gpt-4 tokens, other tokens
// by a group-by filter, and requests); TALLY_BENCH_USAGE_EVENTS (default
// 300) events per customer, in bursts of TALLY_BENCH_USAGE_BURST (default
// 5) events in the same second, are spread over
// 2026-04-01 – 2026-05-20 and ingested through the pipeline. At the clock
// 2026-05-20 the view reads the current period, 2026-05-01 – 2026-05-20.
// It then times TALLY_BENCH_USAGE_ROUNDS (default 3) rounds of 1,000
// requests for random customers, one at a time, and logs p50, p90, p99 and
// max of each round.
func TestCustomerUsageLatency(t *testing.T) {
	v := os.Getenv("TALLY_BENCH_USAGE")
	if v == "" {
		t.Skip("set TALLY_BENCH_USAGE=N to time the customer usage view over N customers")
	}
	envInt := func(name string, def int) int {
		t.Helper()
		s := os.Getenv(name)
		if s == "" {
			return def
		}
		n, err := strconv.Atoi(s)
		if err != nil || n <= 0 {
			t.Fatalf("%s=%q: want a positive number", name, s)
		}
		return n
	}
	n := envInt("TALLY_BENCH_USAGE", 0)
	eventsPer := envInt("TALLY_BENCH_USAGE_EVENTS", 300)
	rounds := envInt("TALLY_BENCH_USAGE_ROUNDS", 3)
	burst := envInt("TALLY_BENCH_USAGE_BURST", 5)

	h := newAPIHarness(t, harnessOptions{token: "secret"})
	ctx := context.Background()
	h.createMeter(`{"slug":"tokens","eventType":"prompt","aggregation":"SUM","valueProperty":"$.tokens","groupBy":{"model":"$.model"}}`)
	h.createMeter(`{"slug":"requests","eventType":"prompt","aggregation":"COUNT"}`)
	var plan apiPlan
	h.json("POST", "/api/v1/plans", `{"key":"ai-pro","name":"AI Pro","currency":"EUR","cadence":"P1M","baseFee":"49.00",
	  "charges":[{"key":"gpt4","meter":"tokens","filterGroupBy":{"model":"gpt-4"},"included":"100000",
	              "pricing":{"model":"graduated","tiers":[{"upTo":"1000000","unitPrice":"0.00003"},{"upTo":null,"unitPrice":"0.00002"}]}},
	             {"key":"gpt35","meter":"tokens","filterGroupBy":{"model":"gpt-3.5"},"included":"1000000",
	              "pricing":{"model":"package","packageSize":"1000","unitPrice":"0.002"}},
	             {"key":"requests","meter":"requests","included":"10000","pricing":{"model":"per_unit","unitPrice":"0.0001"}}]}`,
		http.StatusCreated, &plan)
	h.json("POST", "/api/v1/plans/ai-pro/publish", "", http.StatusOK, nil)
	published, err := h.st.GetPlan(ctx, "ai-pro", 1)
	if err != nil {
		t.Fatalf("get plan: %v", err)
	}

	setup := time.Now()
	created := h.clock.Now()
	for i := range n {
		in := billing.CustomerInput{Key: fmt.Sprintf("cust-%d", i), Name: fmt.Sprintf("Customer %d", i), Currency: "EUR", Subjects: []string{fmt.Sprintf("subj-%d", i)}}
		c := in.Customer(fmt.Sprintf("c-%d", i), created, created)
		if err := h.st.CreateCustomer(ctx, c); err != nil {
			t.Fatalf("create customer %d: %v", i, err)
		}
		sub := billing.SubscriptionInput{Customer: c.ID, Plan: published.ID}.Subscription(fmt.Sprintf("s-%d", i), c, published, created, created)
		if err := h.st.CreateSubscription(ctx, sub); err != nil {
			t.Fatalf("create subscription %d: %v", i, err)
		}
	}
	t.Logf("setup: %d customers and subscriptions in %s", n, time.Since(setup).Round(time.Millisecond))

	now := utc("2026-05-20T00:00:00Z")
	h.clock.Advance(now.Sub(h.clock.Now()))
	setup = time.Now()
	span := now.Sub(created)
	bursts := max(1, eventsPer/burst)
	models := []string{"gpt-4", "gpt-3.5", "gpt-3.5"}
	rng := rand.New(rand.NewPCG(1, 2))
	batch := make([]event.Event, 0, 10000)
	total := 0
	for i := range n {
		subject := fmt.Sprintf("subj-%d", i)
		for b := range bursts {
			at := created.Add(time.Duration(rng.Int64N(int64(span)))).Truncate(time.Second)
			for j := range burst {
				id := fmt.Sprintf("e-%d-%d-%d", i, b, j)
				data := fmt.Sprintf(`{"model":%q,"tokens":%d}`, models[rng.IntN(len(models))], 1+rng.IntN(4000))
				raw := fmt.Sprintf(`{"specversion":"1.0","id":%q,"source":"bench","type":"prompt","subject":%q,"time":%q,"data":%s}`,
					id, subject, at.Format(time.RFC3339), data)
				batch = append(batch, event.Event{ID: id, Source: "bench", Type: "prompt", Subject: subject, Time: at, TimeSet: true, Data: []byte(data), Raw: []byte(raw)})
			}
		}
		if len(batch) >= 5000 || i == n-1 {
			if err := h.pipe.Submit(ctx, batch); err != nil {
				t.Fatalf("submit events: %v", err)
			}
			total += len(batch)
			batch = batch[:0]
		}
	}
	if err := h.st.Flush(ctx); err != nil {
		t.Fatalf("flush rollups: %v", err)
	}
	el := time.Since(setup)
	t.Logf("setup: %d events ingested in %s (%.0f events/s)", total, el.Round(time.Millisecond), float64(total)/el.Seconds())
	var cells int
	for _, m := range []string{"tokens", "requests"} {
		mt, err := h.st.GetMeter(ctx, m)
		if err != nil {
			t.Fatalf("get meter: %v", err)
		}
		rs, err := h.st.QueryRollups(ctx, store.RollupQuery{MeterID: mt.ID, From: utc("2026-05-01T12:00:00Z").Unix(), To: now.Unix(), Subjects: []string{"subj-0"}})
		if err != nil {
			t.Fatalf("query rollups: %v", err)
		}
		cells += len(rs)
	}
	t.Logf("a request reads about %d per-minute rollups (those of cust-0 in its current period, both meters)", cells)

	get := func(key string) {
		t.Helper()
		r := h.do("GET", "/api/v1/customers/"+key+"/usage", "", "")
		if r.Status != http.StatusOK {
			t.Fatalf("GET usage of %s: %s", key, r)
		}
	}
	// Check one answer against the ingested data, then warm up.
	var view apiCustomerUsage
	h.json("GET", "/api/v1/customers/cust-0/usage", "", http.StatusOK, &view)
	if len(view.Subscriptions) != 1 || len(view.Subscriptions[0].Charges) != 3 || !view.Subscriptions[0].PeriodStart.Equal(utc("2026-05-01T12:00:00Z")) {
		t.Fatalf("usage of cust-0: %+v", view)
	}
	if c := view.Subscriptions[0].Charges[2]; c.Key != "requests" || c.Usage == "0" {
		t.Fatalf("usage of cust-0: no requests in the current period: %+v", c)
	}
	for range 200 {
		get(fmt.Sprintf("cust-%d", rng.IntN(n)))
	}
	for round := range rounds {
		lat := make([]time.Duration, 1000)
		for i := range lat {
			key := fmt.Sprintf("cust-%d", rng.IntN(n))
			start := time.Now()
			get(key)
			lat[i] = time.Since(start)
		}
		slices.Sort(lat)
		pct := func(p float64) float64 { return float64(lat[int(p*float64(len(lat)-1))].Microseconds()) / 1000 }
		t.Logf("round %d: %d requests: p50 %.2f ms, p90 %.2f ms, p99 %.2f ms, max %.2f ms", round+1, len(lat), pct(0.50), pct(0.90), pct(0.99), pct(1))
	}
}
