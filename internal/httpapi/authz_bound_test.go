package httpapi_test

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// TestDeletedCustomerCredentialsSeeNothing: once customer A is deleted its
// subjects may go to another customer; A's credentials (keys and portal
// tokens are not revoked with it) must then reach nothing, or A's still
// active subscription would show the new owner's usage.
func TestDeletedCustomerCredentialsSeeNothing(t *testing.T) {
	w := setupWorld(t)
	h := w.h
	_, subjRead := h.createKey(`{"scope":"read","subject":"contoso-eu-1"}`)
	h.must("DELETE", "/api/v1/customers/contoso", "", http.StatusNoContent, nil)
	h.must("POST", "/api/v1/customers", `{"key":"acme","name":"Acme","currency":"EUR","subjects":["contoso-eu-1","contoso-us-1"]}`, http.StatusCreated, nil)
	for i := range 7 {
		body := strings.Replace(eventBody(fmt.Sprintf("acme-%d", i), "contoso-eu-1"), "T11:00:00Z", "T12:01:00Z", 1)
		h.must("POST", "/api/v1/events", body, http.StatusNoContent, nil)
	}
	paths := []string{
		"/api/v1/customers/" + w.aID,
		"/api/v1/customers/" + w.aID + "/users",
		"/api/v1/customers/" + w.aID + "/usage",
		"/api/v1/customers",
		"/api/v1/subscriptions",
		"/api/v1/subscriptions/" + w.aSub,
		"/api/v1/invoices",
		"/api/v1/invoices/" + w.aInvoice,
		"/api/v1/reports",
		"/api/v1/reports/" + w.aReport,
		"/api/v1/portal/usage",
	}
	for _, cred := range []string{"readA", "portalA", "oidcA", "subjRead"} {
		tok := w.creds[cred]
		if cred == "subjRead" {
			tok = subjRead
		}
		for _, p := range paths {
			r := h.call(tok, "GET", p, "")
			if r.status != http.StatusForbidden && r.status != http.StatusUnauthorized {
				t.Errorf("GET %s as %s of deleted customer A: got %s, want 403", p, cred, r)
			}
		}
	}
}

// TestMovedSubjectKeySeesItsMinutesOnly: a key bound to one subject of A
// keeps seeing, once that subject belongs to B, the subject's usage of the
// minutes A owned it and nothing of B's; the customer-wide views it never
// saw.
func TestMovedSubjectKeySeesItsMinutesOnly(t *testing.T) {
	w := setupWorld(t)
	h := w.h
	_, key := h.createKey(`{"scope":"read","subject":"contoso-eu-1"}`)
	h.must("POST", "/api/v1/events", evAt("a-era", "contoso-eu-1", apiStart.Add(time.Minute)), http.StatusNoContent, nil)
	h.must("PUT", "/api/v1/customers/contoso", `{"key":"contoso","name":"Contoso","currency":"EUR","subjects":["contoso-us-1"]}`, http.StatusOK, nil)
	h.must("PUT", "/api/v1/customers/fabrikam", `{"key":"fabrikam","name":"Fabrikam","currency":"EUR","subjects":["fab-1","contoso-eu-1"]}`, http.StatusOK, nil)
	h.clock.Advance(5 * time.Minute)
	for i := range 3 {
		h.must("POST", "/api/v1/events", evAt(fmt.Sprintf("b-era-%d", i), "contoso-eu-1", apiStart.Add(4*time.Minute)), http.StatusNoContent, nil)
	}
	for _, p := range []string{"/api/v1/subscriptions", "/api/v1/invoices", "/api/v1/reports", "/api/v1/customers/" + w.aID} {
		if r := h.call(key, "GET", p, ""); r.status != http.StatusForbidden {
			t.Errorf("GET %s with a key of a subject moved to B: got %s, want 403", p, r)
		}
	}
	for _, p := range []string{"/api/v1/customers/" + w.aID + "/usage", "/api/v1/portal/usage"} {
		r := h.call(key, "GET", p, "")
		if r.status != http.StatusOK || !strings.Contains(r.body, `"usage":"1"`) {
			t.Errorf("GET %s with a key of a subject moved to B: got %s, want A's one email of the subject", p, r)
		}
	}
	if r := h.call(key, "GET", "/api/v1/events?subject=contoso-eu-1", ""); r.status != http.StatusOK || strings.Contains(r.body, "b-era") || !strings.Contains(r.body, "a-era") {
		t.Errorf("events of the moved subject: %s, want A's only", r)
	}
}

// TestOIDCCustomerClaimNotAString: a token whose customer claim is there
// but is not a customer reference (an array, a number, an empty string:
// an issuer mapping an attribute differently) must not pass as unbound,
// which would read every customer.
func TestOIDCCustomerClaimNotAString(t *testing.T) {
	w := setupWorld(t)
	h := w.h
	now := h.clock.Now()
	for name, v := range map[string]any{"array": []string{"contoso"}, "number": 42, "empty": "", "object": map[string]string{"id": "contoso"}, "null": nil} {
		tok := signJWT(t, rsaKeys()[0], "k1", jwt.MapClaims{"iss": testIssuer, "aud": testAudience, "sub": "user-x",
			"exp": now.Add(time.Hour).Unix(), "scope": "tally:read", "tally_customer": v})
		if r := h.call(tok, "GET", "/api/v1/customers", ""); r.status != http.StatusForbidden {
			t.Errorf("customer claim %s: got %s, want 403", name, r)
		}
	}
}

// TestBoundIngestCannotSuppressAnotherCustomersEvents: events are
// deduplicated by source and id; were that global, customer A's ingest
// key could send, first, an event with the source and id B's agent will
// use (on A's own subject, of a type no meter counts) and B's real event
// would be skipped as a duplicate: B's usage gone unbilled, and A able to
// probe which ids B sent.
func TestBoundIngestCannotSuppressAnotherCustomersEvents(t *testing.T) {
	w := setupWorld(t)
	h := w.h
	ev := func(subject string) string {
		return strings.NewReplacer(`"authz-test"`, `"fabrikam-agent"`, `"email"`, `"noop"`).Replace(eventBody("fab-next-1", subject))
	}
	if r := h.call(w.creds["ingestA"], "POST", "/api/v1/events", ev("contoso-eu-1")); r.status != http.StatusNoContent {
		t.Fatalf("A's event: %s", r)
	}
	_, keyB := h.createKey(`{"scope":"ingest","customer":"fabrikam"}`)
	if r := h.call(keyB, "POST", "/api/v1/events", strings.Replace(ev("fab-1"), `"noop"`, `"email"`, 1)); r.status != http.StatusNoContent {
		t.Fatalf("B's event: %s", r)
	}
	var evs []struct {
		Event struct{ ID, Type string } `json:"event"`
	}
	h.must("GET", "/api/v1/events?subject=fab-1&id=fab-next-1", "", http.StatusOK, &evs)
	if len(evs) != 1 || evs[0].Event.Type != "email" {
		t.Errorf("B's event with the source and id A sent first: stored %+v, want B's email event", evs)
	}
	// A retry of the same event is still skipped.
	h.call(w.creds["ingestA"], "POST", "/api/v1/events", ev("contoso-eu-1"))
	h.must("GET", "/api/v1/events?id=fab-next-1", "", http.StatusOK, &evs)
	if len(evs) != 2 {
		t.Errorf("events with id fab-next-1 after A's retry: %d, want 2 (A's once, B's once)", len(evs))
	}
}
