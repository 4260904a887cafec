package httpapi_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/tally-metering/tally/internal/store"
)

// TestAPIAuditKeepsNoSecret: the configured secrets and values shaped like
// well-known secrets, sent under innocent member names, are not in the
// audit trail; look-alikes that are no secret are kept. (A caller using
// another credential than the admin token: cmd/tally's
// TestAuditNeverStoresAdminToken.)
func TestAPIAuditKeepsNoSecret(t *testing.T) {
	const adminTok = "the-configured-admin-token-0123456789"
	const signingKey = "c2lnbmluZy1rZXktb2YtdGhlLXBvcnRhbC10b2tlbnM="
	h := newAPIHarness(t, harnessOptions{token: adminTok, secrets: []string{adminTok, signingKey}})
	secrets := map[string]string{
		"admin token":           "rotate " + adminTok + " on Monday",
		"portal signing key":    signingKey,
		"stripe secret key":     "token sk_live_abc in a description",
		"stripe test key":       "sk_test_4eC39HqLyjWDarjtT1zdp7dc",
		"stripe restricted key": "rk_live_51H8abcdefghijkl",
		"stripe webhook secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
		"aws secret key":        "aws wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY ok",
		"aws secret key alnum":  "k=Je7MtGbClwBF2Zp9Utk3XFotMuj6tFJa8ZbVnt5N",
		"aws access key id":     "AKIAIOSFODNN7EXAMPLE",
		"private key":           "-----BEGIN RSA PRIVATE KEY-----\nMIIEow…",
		"azure client secret":   "Xy48Q~aBcDeFgHiJkLmNoPqRsTuVwXyZ0123456.",
	}
	kept := map[string]string{
		"git commit":          "0123456789abcdef0123456789abcdef01234567",
		"stripe publishable":  "pk_live_51H8abcdefghijkl",
		"prefix named only":   "Stripe keys start with sk_live_",
		"forty letters":       strings.Repeat("Ab", 20),
		"long base64 is kept": "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo0MTIzNDU2Nzg5",
	}
	i := 0
	for what, v := range secrets {
		i++
		b, _ := json.Marshal(map[string]any{"slug": fmt.Sprintf("s%d", i), "eventType": "e", "aggregation": "COUNT", "description": v, "name": what})
		h.expect(h.do("POST", "/api/v1/meters", "application/json", string(b)), http.StatusCreated, what)
	}
	for what, v := range kept {
		i++
		b, _ := json.Marshal(map[string]any{"slug": fmt.Sprintf("k%d", i), "eventType": "e", "aggregation": "COUNT", "description": v, "name": what})
		h.expect(h.do("POST", "/api/v1/meters", "application/json", string(b)), http.StatusCreated, what)
	}
	// Nested, as a member name, and in a customer's metadata.
	b, _ := json.Marshal(map[string]any{"key": "acme", "name": "Acme", "currency": "EUR", "metadata": map[string]string{
		"note": "old admin token was " + adminTok, secrets["stripe test key"]: "x", "aws": secrets["aws secret key alnum"],
	}})
	h.expect(h.do("POST", "/api/v1/customers", "application/json", string(b)), http.StatusCreated, "create customer")

	r := h.do("GET", "/api/v1/audit?limit=1000", "", "")
	h.expect(r, http.StatusOK, "audit")
	stored, err := h.st.ListAudit(context.Background(), store.AuditFilter{Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := json.Marshal(stored)
	for what, v := range secrets {
		for _, part := range []string{strings.Fields(v)[len(strings.Fields(v))/2], v} {
			if len(part) < 12 {
				continue
			}
			if strings.Contains(string(r.Body), part) || strings.Contains(string(raw), part) {
				t.Errorf("the audit trail keeps the %s %q", what, part)
			}
		}
	}
	var page struct {
		Items []struct {
			Route string
			Body  map[string]any
		}
	}
	decodeInto(t, r, &page)
	descriptions := map[string]any{}
	for _, e := range page.Items {
		if e.Route == "/api/v1/meters" {
			descriptions[fmt.Sprint(e.Body["name"])] = e.Body["description"]
		}
		if e.Route == "/api/v1/customers" {
			want := map[string]any{"note": "[redacted]", "[redacted]": "[redacted]", "aws": "[redacted]"}
			if got := e.Body["metadata"]; fmt.Sprint(got) != fmt.Sprint(want) {
				t.Errorf("customer metadata in the audit trail: %v, want %v", got, want)
			}
		}
	}
	for what := range secrets {
		if descriptions[what] != "[redacted]" {
			t.Errorf("%s: audit keeps description %q, want [redacted]", what, descriptions[what])
		}
	}
	for what, v := range kept {
		if descriptions[what] != v {
			t.Errorf("%s: audit keeps description %q, want %q (not a secret)", what, descriptions[what], v)
		}
	}
}
