package httpapi_test

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tally-metering/tally/internal/report"
)

// refusingTarget accepts every report except those for one resource,
// which it rejects as unknown until told otherwise.
type refusingTarget struct {
	mu     sync.Mutex
	refuse string
	got    map[string]string // report id → quantity
}

func (f *refusingTarget) Capabilities() report.Capabilities {
	return report.Capabilities{MaxBatch: 25, Decimals: -1, Window: 24 * time.Hour}
}

func (f *refusingTarget) Send(_ context.Context, items []report.Item) ([]report.Result, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([]report.Result, len(items))
	for i, it := range items {
		if it.Resource.AzureResourceID == f.refuse {
			out[i] = report.Result{Outcome: report.Rejected, Code: "ResourceNotFound", Message: "no such resource"}
			continue
		}
		f.got[it.ID] = it.Quantity.String()
		out[i] = report.Result{Outcome: report.Accepted, Code: "Accepted"}
	}
	return out, nil
}

type apiReport struct {
	ID         string `json:"id"`
	Target     string `json:"target"`
	CustomerID string `json:"customerId"`
	Dimension  string `json:"dimension"`
	Hour       time.Time
	Quantity   string `json:"quantity"`
	State      string `json:"state"`
	LastError  string `json:"lastError"`
	Resource   struct {
		AzureResourceID string `json:"azureResourceId"`
	} `json:"resource"`
	AttemptLog []struct {
		Attempt int    `json:"attempt"`
		Outcome string `json:"outcome"`
		Code    string `json:"code"`
	} `json:"attemptLog"`
}

func TestReportsAPI(t *testing.T) {
	target := &refusingTarget{refuse: "res-bad", got: map[string]string{}}
	h := newAPIHarness(t, harnessOptions{token: "secret", targets: []report.Target{{Name: "azure", Type: report.TypeAzure, Sender: target}}})
	h.createMeter(`{"slug":"emails","eventType":"email.sent","aggregation":"SUM","valueProperty":"$.count"}`)
	h.json("POST", "/api/v1/customers", `{"key":"contoso","name":"Contoso","currency":"EUR","subjects":["contoso-mail"],"external":{"azure":{"resourceId":"res-contoso","planId":"pro"}}}`, http.StatusCreated, nil)
	h.json("POST", "/api/v1/customers", `{"key":"fabrikam","name":"Fabrikam","currency":"EUR","subjects":["fabrikam-mail"],"external":{"azure":{"resourceId":"res-bad","planId":"pro"}}}`, http.StatusCreated, nil)
	h.json("POST", "/api/v1/plans", `{"key":"mail","name":"Mail","currency":"EUR","cadence":"P1M","baseFee":"10.00",
		"charges":[{"key":"emails","meter":"emails","included":"1000","pricing":{"model":"per_unit","unitPrice":"0.001"},
		"reporting":[{"target":"azure","dimension":"extra_emails","unitSize":"1000"}]}]}`, http.StatusCreated, nil)
	h.json("POST", "/api/v1/plans/mail/publish", ``, http.StatusOK, nil)
	start := apiStart.Format(time.RFC3339)
	h.json("POST", "/api/v1/subscriptions", `{"customer":"contoso","plan":"mail","start":"`+start+`"}`, http.StatusCreated, nil)
	h.json("POST", "/api/v1/subscriptions", `{"customer":"fabrikam","plan":"mail","start":"`+start+`"}`, http.StatusCreated, nil)
	at := apiStart.Add(10 * time.Minute).Format(time.RFC3339)
	h.ingest("application/json", jsonArray(
		ce("1", "email.sent", "contoso-mail", at, `{"count":3396}`),
		ce("2", "email.sent", "fabrikam-mail", at, `{"count":1500}`),
	))
	h.clock.Advance(65 * time.Minute)
	ctx := context.Background()
	if _, err := h.reporter.Plan(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := h.reporter.Send(ctx); err != nil {
		t.Fatal(err)
	}

	var page struct {
		Items     []apiReport `json:"items"`
		NextAfter string      `json:"nextAfter"`
	}
	h.json("GET", "/api/v1/reports?customer=contoso", ``, http.StatusOK, &page)
	if len(page.Items) != 1 || page.Items[0].Quantity != "2.396" || page.Items[0].State != "accepted" || !page.Items[0].Hour.Equal(apiStart) {
		t.Fatalf("contoso's reports: %+v", page.Items)
	}
	h.json("GET", "/api/v1/reports?state=failed", ``, http.StatusOK, &page)
	if len(page.Items) != 1 || page.Items[0].Quantity != "0.5" || page.Items[0].LastError != "ResourceNotFound: no such resource" {
		t.Fatalf("failed reports: %+v", page.Items)
	}
	failed := page.Items[0].ID
	h.json("GET", "/api/v1/reports?limit=1", ``, http.StatusOK, &page)
	if len(page.Items) != 1 || page.NextAfter == "" {
		t.Fatalf("first page: %+v next %q", page.Items, page.NextAfter)
	}
	h.json("GET", "/api/v1/reports?limit=1&after="+url.QueryEscape(page.NextAfter), ``, http.StatusOK, &page)
	if len(page.Items) != 1 {
		t.Fatalf("second page: %+v", page.Items)
	}

	// Bad filters are refused with the parameter named.
	for _, q := range []string{"state=done", "from=yesterday", "limit=0", "limit=5000"} {
		r := h.do("GET", "/api/v1/reports?"+q, "", "")
		p := problemOf(t, r, http.StatusBadRequest)
		name, _, _ := strings.Cut(q, "=")
		if !strings.Contains(p.Detail+strings.Join(p.Errors, " "), name) {
			t.Errorf("%s: problem %+v does not name %s", q, p, name)
		}
	}
	problemOf(t, h.do("GET", "/api/v1/reports/rpt_nope", "", ""), http.StatusNotFound)

	// One report's whole history; a retry of an accepted one is refused.
	var detail apiReport
	h.json("GET", "/api/v1/reports/"+failed, ``, http.StatusOK, &detail)
	if len(detail.AttemptLog) != 1 || detail.AttemptLog[0].Outcome != "rejected" || detail.AttemptLog[0].Code != "ResourceNotFound" {
		t.Fatalf("attempts: %+v", detail.AttemptLog)
	}
	h.json("GET", "/api/v1/reports?customer=contoso", ``, http.StatusOK, &page)
	problemOf(t, h.do("POST", "/api/v1/reports/"+page.Items[0].ID+"/retry", "", ""), http.StatusConflict)

	// The vendor fixes fabrikam's resource id and retries: sent with the new one.
	h.json("PUT", "/api/v1/customers/fabrikam", `{"key":"fabrikam","name":"Fabrikam","currency":"EUR","subjects":["fabrikam-mail"],"external":{"azure":{"resourceId":"res-fabrikam","planId":"pro"}}}`, http.StatusOK, nil)
	h.json("POST", "/api/v1/reports/"+failed+"/retry", ``, http.StatusOK, &detail)
	if detail.State != "pending" || detail.Resource.AzureResourceID != "res-fabrikam" {
		t.Fatalf("after retry: %+v", detail)
	}
	if _, err := h.reporter.Send(ctx); err != nil {
		t.Fatal(err)
	}
	h.json("GET", "/api/v1/reports/"+failed, ``, http.StatusOK, &detail)
	if detail.State != "accepted" || len(detail.AttemptLog) != 2 || target.got[failed] != "0.5" {
		t.Fatalf("after resend: %+v, target holds %q", detail, target.got[failed])
	}
}
