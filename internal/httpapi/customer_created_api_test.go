package httpapi_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// TestCustomerCreatedInThePast: a customer imported with its history is
// created with a createdAt in the past; its subscriptions may then start
// from that instant (not before), the subjects it is created with are its
// own from then (or since the beginning of time, for a subject nobody
// owned), and its createdAt never changes. A createdAt in the future is a
// 400 naming the field.
func TestCustomerCreatedInThePast(t *testing.T) {
	h := newAPIHarness(t, harnessOptions{token: "secret"})
	h.clock.Advance(utc("2026-07-25T09:00:00Z").Sub(apiStart))
	type ownership struct {
		Subject string     `json:"subject"`
		From    *time.Time `json:"from"`
		To      *time.Time `json:"to"`
	}
	type customer struct {
		Key            string      `json:"key"`
		CreatedAt      time.Time   `json:"createdAt"`
		UpdatedAt      time.Time   `json:"updatedAt"`
		SubjectHistory []ownership `json:"subjectHistory"`
	}
	at := func(s string) *time.Time { v := utc(s); return &v }

	// A subject that a deleted customer owned until 2026-06-10 becomes the
	// imported customer's from then, not from its createdAt: every minute
	// of a subject's usage is one customer's.
	h.json("POST", "/api/v1/customers", `{"key":"old","name":"Old","currency":"EUR","subjects":["shared"]}`, http.StatusCreated, nil)
	h.clock.Advance(30 * time.Second)
	h.json("DELETE", "/api/v1/customers/old", "", http.StatusNoContent, nil)

	var c customer
	h.json("POST", "/api/v1/customers", `{"key":"contoso","name":"Contoso","currency":"EUR","subjects":["contoso-mail","shared"],
	  "createdAt":"2026-06-01T02:00:00+02:00"}`, http.StatusCreated, &c)
	want := customer{Key: "contoso", CreatedAt: utc("2026-06-01T00:00:00Z"), UpdatedAt: utc("2026-07-25T09:00:30Z"),
		SubjectHistory: []ownership{{Subject: "contoso-mail"}, {Subject: "shared", From: at("2026-07-25T09:01:00Z")}}}
	if diff := cmp.Diff(want, c); diff != "" {
		t.Errorf("created customer (-want +got):\n%s", diff)
	}

	// Its subscription may start when it really started, not before the
	// customer existed.
	h.createMeter(`{"slug":"emails","eventType":"email.sent","aggregation":"SUM","valueProperty":"$.count"}`)
	h.json("POST", "/api/v1/plans", mailProBody, http.StatusCreated, nil)
	h.json("POST", "/api/v1/plans/mail-pro/publish", "", http.StatusOK, nil)
	r := h.do("POST", "/api/v1/subscriptions", "application/json", `{"customer":"contoso","plan":"mail-pro","start":"2026-05-31T23:59:59Z"}`)
	if r.Status != http.StatusBadRequest || !strings.Contains(string(r.Body), "start:") {
		t.Errorf("subscription starting before the customer's createdAt: got %s, want 400 naming start", r)
	}
	h.json("POST", "/api/v1/subscriptions", `{"customer":"contoso","plan":"mail-pro","start":"2026-06-20T10:00:00Z"}`, http.StatusCreated, nil)

	// A customer created now can't have a subscription from June.
	h.json("POST", "/api/v1/customers", `{"key":"fabrikam","name":"Fabrikam","currency":"EUR"}`, http.StatusCreated, nil)
	if r := h.do("POST", "/api/v1/subscriptions", "application/json", `{"customer":"fabrikam","plan":"mail-pro","start":"2026-06-20T10:00:00Z"}`); r.Status != http.StatusBadRequest {
		t.Errorf("subscription from June of a customer created in July: got %s, want 400", r)
	}

	// Not in the future, nor out of range; the problem names the field,
	// and nothing is created.
	for _, tc := range []struct {
		createdAt string
		named     bool // whether the problem can name the field
	}{
		{"2026-07-25T09:00:31Z", true},
		{"2026-07-25T11:00:31+02:00", true},
		{"1969-07-20T20:17:40Z", true},
		// encoding/json's own time errors don't say where they are.
		{"10000-01-01T00:00:00Z", false},
		{"2026-06-01", false},
	} {
		body := `{"key":"later","name":"Later","currency":"EUR","createdAt":"` + tc.createdAt + `"}`
		r := h.do("POST", "/api/v1/customers", "application/json", body)
		if r.Status != http.StatusBadRequest || tc.named && !strings.Contains(string(r.Body), "createdAt:") {
			t.Errorf("POST %s: got %s, want 400 naming createdAt", body, r)
		}
	}
	h.json("GET", "/api/v1/customers/later", "", http.StatusNotFound, nil)

	// createdAt may be sent back unchanged (in any offset), not changed.
	h.json("PUT", "/api/v1/customers/contoso", `{"name":"Contoso Ltd","currency":"EUR","subjects":["contoso-mail","shared"],"createdAt":"2026-06-01T01:00:00+01:00"}`, http.StatusOK, &c)
	if !c.CreatedAt.Equal(utc("2026-06-01T00:00:00Z")) {
		t.Errorf("createdAt after an update: %s", c.CreatedAt)
	}
	r = h.do("PUT", "/api/v1/customers/contoso", "application/json", `{"name":"Contoso","currency":"EUR","subjects":["contoso-mail","shared"],"createdAt":"2026-05-01T00:00:00Z"}`)
	if r.Status != http.StatusBadRequest || !strings.Contains(string(r.Body), "createdAt") {
		t.Errorf("PUT changing createdAt: got %s, want 400 naming createdAt", r)
	}
	h.json("GET", "/api/v1/customers/contoso", "", http.StatusOK, &c)
	if !c.CreatedAt.Equal(utc("2026-06-01T00:00:00Z")) || c.SubjectHistory[0].From != nil {
		t.Errorf("customer after a refused createdAt change: %+v", c)
	}
}
