package httpapi_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"
)

type portalTokenResp struct {
	Token     string     `json:"token"`
	ID        string     `json:"id"`
	Customer  string     `json:"customer"`
	Status    string     `json:"status"`
	ExpiresAt time.Time  `json:"expiresAt"`
	RevokedAt *time.Time `json:"revokedAt"`
}

// portalToken creates a portal token as the admin.
func (h *authHarness) portalToken(body string) portalTokenResp {
	h.t.Helper()
	var pt portalTokenResp
	h.must("POST", "/api/v1/portal/tokens", body, http.StatusCreated, &pt)
	if pt.Token == "" || !strings.HasPrefix(pt.ID, "ptk_") {
		h.t.Fatalf("created portal token = %+v", pt)
	}
	return pt
}

// auditTargets lists the audit trail's entries of route as "METHOD target".
func (h *authHarness) auditOf(route string) []string {
	h.t.Helper()
	var a struct {
		Items []struct{ Method, Route, Target, Actor string }
	}
	h.must("GET", "/api/v1/audit", "", http.StatusOK, &a)
	var out []string
	for _, e := range a.Items {
		if e.Route == route {
			out = append(out, e.Method+" "+e.Target+" by "+e.Actor)
		}
	}
	return out
}

// TestPortalTokenRevoke: an admin lists the portal tokens in use and
// revokes one before it expires; it stops working at once, the others of
// the customer don't, and the revocation is in the audit trail.
func TestPortalTokenRevoke(t *testing.T) {
	w := setupWorld(t)
	h := w.h
	t1 := h.portalToken(`{"customer":"contoso","ttl":"1h"}`)
	t2 := h.portalToken(`{"customer":"contoso","ttl":"2h"}`)
	tb := h.portalToken(`{"customer":"fabrikam","ttl":"1h"}`)
	for _, tok := range []string{t1.Token, t2.Token, tb.Token} {
		if r := h.call(tok, "GET", "/api/v1/portal/usage", ""); r.status != http.StatusOK {
			t.Fatalf("portal usage before revocation: %s", r)
		}
	}

	var list struct{ Items []portalTokenResp }
	r := h.call(testAdminToken, "GET", "/api/v1/portal/tokens?customer=contoso", "")
	if r.status != http.StatusOK {
		t.Fatalf("list: %s", r)
	}
	if strings.Contains(r.body, t1.Token) || strings.Contains(r.body, `"token"`) {
		t.Errorf("the token list shows tokens: %s", r.body)
	}
	_ = json.Unmarshal([]byte(r.body), &list)
	ids := map[string]string{}
	for _, it := range list.Items {
		ids[it.ID] = it.Status
		if it.Customer != w.aID {
			t.Errorf("listing contoso's tokens shows %+v", it)
		}
	}
	// The world's portal token, t1 and t2.
	if len(list.Items) != 3 || ids[t1.ID] != "active" || ids[t2.ID] != "active" {
		t.Errorf("contoso's tokens = %+v; want the world's, t1 and t2, active", list.Items)
	}

	var rev portalTokenResp
	h.must("DELETE", "/api/v1/portal/tokens/"+t1.ID, "", http.StatusOK, &rev)
	if rev.Status != "revoked" || rev.RevokedAt == nil || !rev.RevokedAt.Equal(h.clock.Now()) {
		t.Errorf("revoke = %+v; want revoked now", rev)
	}
	r = h.call(t1.Token, "GET", "/api/v1/portal/usage", "")
	if r.status != http.StatusUnauthorized || !strings.Contains(r.body, "revoked") {
		t.Errorf("a revoked portal token: %s; want 401 saying it was revoked", r)
	}
	if r := h.call(t1.Token, "GET", "/api/v1/portal/meters/emails/query", ""); r.status != http.StatusUnauthorized {
		t.Errorf("a revoked portal token's query: %s; want 401", r)
	}
	for _, tok := range []string{t2.Token, tb.Token} {
		if r := h.call(tok, "GET", "/api/v1/portal/usage", ""); r.status != http.StatusOK {
			t.Errorf("another portal token after a revocation: %s", r)
		}
	}
	// Revoking again keeps the first revocation time.
	h.clock.Advance(time.Minute)
	var again portalTokenResp
	h.must("DELETE", "/api/v1/portal/tokens/"+t1.ID, "", http.StatusOK, &again)
	if again.RevokedAt == nil || !again.RevokedAt.Equal(*rev.RevokedAt) {
		t.Errorf("revoking again = %+v; want the first revocation time %v", again, rev.RevokedAt)
	}
	h.must("DELETE", "/api/v1/portal/tokens/ptk_nothing", "", http.StatusNotFound, nil)
	if got := h.auditOf("/api/v1/portal/tokens/{id}"); len(got) != 2 || got[0] != "DELETE "+t1.ID+" by admin-token" {
		t.Errorf("audit of revocations = %q; want both revocations of %s", got, t1.ID)
	}
}

// TestPortalTokenRevokeCustomer revokes every token of one customer.
func TestPortalTokenRevokeCustomer(t *testing.T) {
	w := setupWorld(t)
	h := w.h
	t1 := h.portalToken(`{"customer":"contoso","ttl":"1h"}`)
	t2 := h.portalToken(`{"subject":"contoso-eu-1","ttl":"2h"}`)
	tb := h.portalToken(`{"customer":"fabrikam","ttl":"1h"}`)
	h.must("DELETE", "/api/v1/portal/tokens", "", http.StatusBadRequest, nil)
	h.must("DELETE", "/api/v1/portal/tokens?customer=nobody", "", http.StatusNotFound, nil)
	var revoked struct{ Items []portalTokenResp }
	h.must("DELETE", "/api/v1/portal/tokens?customer=contoso", "", http.StatusOK, &revoked)
	if len(revoked.Items) != 3 {
		t.Errorf("revoked %+v; want contoso's three tokens (the world's, t1, t2)", revoked.Items)
	}
	for _, tok := range []string{w.creds["portalA"], t1.Token, t2.Token} {
		if r := h.call(tok, "GET", "/api/v1/portal/usage", ""); r.status != http.StatusUnauthorized {
			t.Errorf("a token of the revoked customer: %s; want 401", r)
		}
	}
	if r := h.call(tb.Token, "GET", "/api/v1/portal/usage", ""); r.status != http.StatusOK {
		t.Errorf("another customer's token: %s", r)
	}
	// Nothing is left to revoke.
	h.must("DELETE", "/api/v1/portal/tokens?customer="+w.aID, "", http.StatusOK, &revoked)
	if len(revoked.Items) != 0 {
		t.Errorf("revoking again revoked %+v", revoked.Items)
	}
	if got := h.auditOf("/api/v1/portal/tokens"); len(got) < 2 || got[0] != "DELETE "+w.aID+" by admin-token" {
		t.Errorf("audit = %q; want the customer-wide revocations, targeting the customer", got)
	}
}

// TestPortalTokenOfDeletedCustomer: a deleted customer's portal tokens
// stop working with it, without being revoked.
func TestPortalTokenOfDeletedCustomer(t *testing.T) {
	w := setupWorld(t)
	h := w.h
	sub := h.portalToken(`{"subject":"contoso-eu-1","ttl":"1h"}`)
	h.must("DELETE", "/api/v1/customers/contoso", "", http.StatusNoContent, nil)
	for _, tok := range []string{w.creds["portalA"], sub.Token} {
		for _, path := range []string{"/api/v1/portal/usage", "/api/v1/portal/meters/emails/query"} {
			r := h.call(tok, "GET", path, "")
			if r.status != http.StatusForbidden || !strings.Contains(r.body, "deleted") {
				t.Errorf("%s with a deleted customer's token: %s; want 403 saying the customer was deleted", path, r)
			}
		}
	}
	// A new customer taking over the subjects (and even the key) does not
	// revive the old tokens: they are bound to the deleted customer's id.
	h.must("POST", "/api/v1/customers", `{"key":"contoso","name":"Contoso 2","currency":"EUR","subjects":["contoso-eu-1"]}`, http.StatusCreated, nil)
	if r := h.call(sub.Token, "GET", "/api/v1/portal/usage", ""); r.status != http.StatusForbidden {
		t.Errorf("the deleted customer's token once its key and subject have a new owner: %s; want 403", r)
	}
}

// callFrom is call from the client address xff names (the harness trusts
// loopback as a proxy).
func (h *authHarness) callFrom(xff, cred, method, path string) authResp {
	h.t.Helper()
	req, err := http.NewRequest(method, h.srv.URL+path, nil)
	if err != nil {
		h.t.Fatal(err)
	}
	req.Header.Set("X-Forwarded-For", xff)
	if cred != "" {
		req.Header.Set("Authorization", "Bearer "+cred)
	}
	resp, err := h.srv.Client().Do(req)
	if err != nil {
		h.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return authResp{status: resp.StatusCode, header: resp.Header, body: string(b)}
}

// TestFailedAuthenticationLimit: after the allowed failed authentications
// an address gets 429 with Retry-After, whatever it sends, until the
// allowance refills; other addresses are not affected, and successes
// don't count.
func TestFailedAuthenticationLimit(t *testing.T) {
	h := newAuthHarness(t, authOptions{authFailureLimit: 3, authFailureWindow: time.Minute,
		trustedProxies: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")}})
	attacker, other := "198.51.100.66", "198.51.100.7"
	wrong := "tly_" + strings.Repeat("b", 52)
	for range 5 {
		if r := h.callFrom(attacker, testAdminToken, "GET", "/api/v1/meters"); r.status != http.StatusOK {
			t.Fatalf("admin: %s", r)
		}
	}
	for i, cred := range []string{wrong, "", "not-a-token"} {
		if r := h.callFrom(attacker, cred, "GET", "/api/v1/meters"); r.status != http.StatusUnauthorized {
			t.Fatalf("failure %d: %s; want 401", i+1, r)
		}
	}
	for _, cred := range []string{wrong, testAdminToken} {
		r := h.callFrom(attacker, cred, "GET", "/api/v1/meters")
		if r.status != http.StatusTooManyRequests || r.header.Get("Retry-After") != "20" || r.header.Get("Content-Type") != "application/problem+json" {
			t.Errorf("after 3 failures: %s (Retry-After %q); want 429 problem+json with Retry-After 20", r, r.header.Get("Retry-After"))
		}
	}
	if r := h.callFrom(other, wrong, "GET", "/api/v1/meters"); r.status != http.StatusUnauthorized {
		t.Errorf("another address: %s; want 401, not limited by the first's failures", r)
	}
	if r := h.callFrom(other, testAdminToken, "GET", "/api/v1/meters"); r.status != http.StatusOK {
		t.Errorf("another address with the admin token: %s", r)
	}
	h.clock.Advance(20 * time.Second)
	if r := h.callFrom(attacker, testAdminToken, "GET", "/api/v1/meters"); r.status != http.StatusOK {
		t.Errorf("once a failure refilled: %s; want 200", r)
	}
}
