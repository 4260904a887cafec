package httpapi_test

import (
	"bytes"
	"crypto/rsa"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/tally-metering/tally/internal/store/sqlite"
)

type apiProblemBody struct {
	Status   int    `json:"status"`
	Detail   string `json:"detail"`
	Problems []struct {
		Index   int    `json:"index"`
		Field   string `json:"field"`
		Message string `json:"message"`
	} `json:"problems"`
}

func TestBoundIngestRefusesOtherSubjectsWhole(t *testing.T) {
	w := setupWorld(t)
	h := w.h
	body := `[{"specversion":"1.0","id":"x1","source":"s","type":"email","subject":"contoso-eu-1"},
	          {"specversion":"1.0","id":"x2","source":"s","type":"email","subject":"fab-1"},
	          {"specversion":"1.0","id":"x3","source":"s","type":"email","subject":"contoso-us-1"}]`
	r := h.call(w.creds["ingestA"], "POST", "/api/v1/events", body)
	if r.status != http.StatusForbidden {
		t.Fatalf("mixed batch: got %s, want 403", r)
	}
	var p apiProblemBody
	if err := json.Unmarshal([]byte(r.body), &p); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(p.Detail, "event 1") || !strings.Contains(p.Detail, `"fab-1"`) || len(p.Problems) != 1 || p.Problems[0].Index != 1 || p.Problems[0].Field != "subject" {
		t.Errorf("the refusal must name event 1 and subject fab-1: %s", r)
	}
	// The deployment key may send only its own subject.
	r = h.call(w.creds["deployA"], "POST", "/api/v1/events", strings.ReplaceAll(body, "fab-1", "contoso-eu-1"))
	if r.status != http.StatusForbidden || !strings.Contains(r.body, "contoso-us-1") || !strings.Contains(r.body, "event 2") {
		t.Errorf("deployment key sending another deployment's subject: got %s, want 403 naming event 2 and contoso-us-1", r)
	}
	var evs []struct {
		Event struct{ ID string } `json:"event"`
	}
	h.must("GET", "/api/v1/events?limit=1000", "", http.StatusOK, &evs)
	for _, e := range evs {
		if strings.HasPrefix(e.Event.ID, "x") {
			t.Errorf("event %s of a refused request was stored", e.Event.ID)
		}
	}
	// The whole customer's batch goes through.
	ok := strings.ReplaceAll(body, "fab-1", "contoso-us-1")
	if r := h.call(w.creds["ingestA"], "POST", "/api/v1/events", ok); r.status != http.StatusNoContent {
		t.Errorf("A's own subjects: got %s, want 204", r)
	}
}

func TestBoundReadersSeeOnlyTheirCustomer(t *testing.T) {
	w := setupWorld(t)
	h := w.h
	var evs []struct {
		Event struct{ Subject string } `json:"event"`
	}
	r := h.call(w.creds["readA"], "GET", "/api/v1/events", "")
	if err := json.Unmarshal([]byte(r.body), &evs); err != nil {
		t.Fatalf("%s: %v", r, err)
	}
	var subjects []string
	for _, e := range evs {
		subjects = append(subjects, e.Event.Subject)
	}
	if fmt.Sprint(subjects) != "[contoso-us-1 contoso-eu-1]" {
		t.Errorf("A's events = %v, want both of A's subjects newest first and nothing of B", subjects)
	}
	var q struct {
		Data []struct {
			Value   json.Number
			Subject *string
		}
	}
	r = h.call(w.creds["readA"], "GET", "/api/v1/meters/emails/query", "")
	if err := json.Unmarshal([]byte(r.body), &q); err != nil || len(q.Data) != 1 || q.Data[0].Value.String() != "2" {
		t.Errorf("A's total without a subject filter = %s, want 2 (A's two events, not B's)", r)
	}
	r = h.call(w.creds["portalA"], "GET", "/api/v1/portal/meters/emails/query?subject=contoso-eu-1", "")
	if err := json.Unmarshal([]byte(r.body), &q); err != nil || len(q.Data) != 1 || q.Data[0].Value.String() != "1" {
		t.Errorf("portal query of one of A's subjects = %s, want 1", r)
	}
	var cs struct{ Items []struct{ Key string } }
	r = h.call(w.creds["oidcA"], "GET", "/api/v1/customers", "")
	if err := json.Unmarshal([]byte(r.body), &cs); err != nil || len(cs.Items) != 1 || cs.Items[0].Key != "contoso" {
		t.Errorf("customers as A's OIDC user = %s, want only contoso", r)
	}
}

func TestPortalTokenMeters(t *testing.T) {
	w := setupWorld(t)
	h := w.h
	h.must("POST", "/api/v1/meters", `{"slug":"secret_meter","eventType":"email","aggregation":"COUNT"}`, http.StatusCreated, nil)
	if r := h.call(w.creds["portalA"], "GET", "/api/v1/portal/meters/secret_meter/query", ""); r.status != http.StatusForbidden || !strings.Contains(r.body, "secret_meter") {
		t.Errorf("a meter the token does not list: got %s, want 403 naming it", r)
	}
	var u struct {
		Customer      string
		Subscriptions []struct{ Charges []struct{ Meter string } }
	}
	r := h.call(w.creds["portalA"], "GET", "/api/v1/portal/usage", "")
	if err := json.Unmarshal([]byte(r.body), &u); err != nil || u.Customer != w.aID || len(u.Subscriptions) != 1 {
		t.Fatalf("portal usage: %s (%v)", r, err)
	}
	// A token without meters sees every meter.
	var pt struct{ Token string }
	h.must("POST", "/api/v1/portal/tokens", `{"subject":"contoso-us-1"}`, http.StatusCreated, &pt)
	if r := h.call(pt.Token, "GET", "/api/v1/portal/meters/secret_meter/query", ""); r.status != http.StatusOK {
		t.Errorf("token without a meter list: got %s, want 200", r)
	}
	// A subject-bound token sees only its subject.
	if r := h.call(pt.Token, "GET", "/api/v1/portal/meters/emails/query?subject=contoso-eu-1", ""); r.status != http.StatusForbidden {
		t.Errorf("subject-bound token asking for a sibling subject: got %s, want 403", r)
	}
	// It expires.
	h.clock.Advance(3 * time.Hour)
	if r := h.call(w.creds["portalA"], "GET", "/api/v1/portal/usage", ""); r.status != http.StatusUnauthorized || !strings.Contains(r.body, "expired") {
		t.Errorf("expired portal token: got %s, want 401 saying it expired", r)
	}
	for _, body := range []string{`{"customer":"nobody"}`, `{"customer":"contoso","ttl":"48h"}`, `{"customer":"contoso","meters":["nope"]}`, `{"customer":"contoso","subject":"fab-1"}`} {
		if r := h.call(testAdminToken, "POST", "/api/v1/portal/tokens", body); r.status != http.StatusBadRequest {
			t.Errorf("POST portal token %s: got %s, want 400", body, r)
		}
	}
}

func TestKeyLifecycle(t *testing.T) {
	h := newAuthHarness(t, authOptions{})
	h.must("POST", "/api/v1/customers", `{"key":"contoso","name":"Contoso","currency":"EUR","subjects":["c-1"]}`, http.StatusCreated, nil)
	for _, body := range []string{
		`{"scope":"admin","customer":"contoso"}`,
		`{"scope":"root"}`,
		`{"scope":"read","customer":"nobody"}`,
		`{"scope":"read","subject":"orphan"}`,
		`{"scope":"read","expiresAt":"2020-01-01T00:00:00Z"}`,
	} {
		if r := h.call(testAdminToken, "POST", "/api/v1/keys", body); r.status != http.StatusBadRequest {
			t.Errorf("POST /api/v1/keys %s: got %s, want 400", body, r)
		}
	}
	id, key := h.createKey(`{"scope":"read","name":"dashboard"}`)
	if r := h.call(key, "GET", "/api/v1/meters", ""); r.status != http.StatusOK {
		t.Fatalf("new read key: %s", r)
	}
	var k struct {
		Key        string
		Prefix     string
		Status     string
		LastUsedAt *time.Time
	}
	h.must("GET", "/api/v1/keys/"+id, "", http.StatusOK, &k)
	if k.Key != "" || k.Status != "active" || k.LastUsedAt == nil || !k.LastUsedAt.Equal(h.clock.Now()) || !strings.HasPrefix(key, k.Prefix) {
		t.Errorf("GET key = %+v; want no secret, active, last used now, a prefix of the key", k)
	}
	var list struct{ Items []map[string]any }
	h.must("GET", "/api/v1/keys", "", http.StatusOK, &list)
	if len(list.Items) != 1 || list.Items[0]["key"] != nil || list.Items[0]["hash"] != nil {
		t.Errorf("key list shows a secret or hash: %+v", list.Items)
	}
	h.must("DELETE", "/api/v1/keys/"+id, "", http.StatusOK, &k)
	if k.Status != "revoked" {
		t.Errorf("revoked key status %q", k.Status)
	}
	if r := h.call(key, "GET", "/api/v1/meters", ""); r.status != http.StatusUnauthorized || !strings.Contains(r.body, "revoked") {
		t.Errorf("revoked key: got %s, want 401 saying it was revoked", r)
	}
}

func TestRateLimitPerKey(t *testing.T) {
	h := newAuthHarness(t, authOptions{rateLimit: 0.001, rateBurst: 2})
	_, k1 := h.createKey(`{"scope":"read"}`)
	_, k2 := h.createKey(`{"scope":"read"}`)
	for i := range 2 {
		if r := h.call(k1, "GET", "/api/v1/meters", ""); r.status != http.StatusOK {
			t.Fatalf("request %d within the burst: %s", i, r)
		}
	}
	r := h.call(k1, "GET", "/api/v1/meters", "")
	if r.status != http.StatusTooManyRequests || r.header.Get("Retry-After") == "" {
		t.Fatalf("over the limit: got %s (Retry-After %q), want 429 with Retry-After", r, r.header.Get("Retry-After"))
	}
	if r := h.call(k2, "GET", "/api/v1/meters", ""); r.status != http.StatusOK {
		t.Errorf("another key is limited separately: got %s", r)
	}
	if r := h.call(testAdminToken, "GET", "/api/v1/meters", ""); r.status != http.StatusOK {
		t.Errorf("the admin token is not limited: got %s", r)
	}
}

func TestAuditTrail(t *testing.T) {
	h := newAuthHarness(t, authOptions{})
	var c struct{ ID string }
	h.must("POST", "/api/v1/customers", `{"key":"contoso","name":"Contoso","currency":"EUR","subjects":["c-1"]}`, http.StatusCreated, &c)
	id, key := h.createKey(`{"scope":"admin","name":"ops"}`)
	if r := h.call(key, "PUT", "/api/v1/customers/contoso", `{"name":"Contoso Ltd","currency":"EUR","subjects":["c-1"],"metadata":{"apiToken":"`+key+`"}}`); r.status != http.StatusOK {
		t.Fatalf("update as the admin key: %s", r)
	}
	var pt struct{ ID, Token string }
	h.must("POST", "/api/v1/portal/tokens", `{"customer":"contoso"}`, http.StatusCreated, &pt)
	// Refused and failed changes and reads are not changes.
	h.call(key, "POST", "/api/v1/customers", `{}`)
	h.call("", "DELETE", "/api/v1/customers/contoso", "")
	h.call(key, "GET", "/api/v1/customers", "")

	r := h.call(testAdminToken, "GET", "/api/v1/audit", "")
	if strings.Contains(r.body, key) || strings.Contains(r.body, pt.Token) || strings.Contains(r.body, testAdminToken) {
		t.Fatalf("the audit trail shows a secret: %s", r)
	}
	var a struct {
		Items []struct {
			Actor, Method, Route, Target string
			Status                       int
			Body                         json.RawMessage
		}
	}
	if err := json.Unmarshal([]byte(r.body), &a); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range a.Items {
		got = append(got, fmt.Sprintf("%s %s %s %s %d", e.Actor, e.Method, e.Route, e.Target, e.Status))
	}
	want := []string{
		"admin-token POST /api/v1/portal/tokens " + pt.ID + " 201",
		id + " PUT /api/v1/customers/{idOrKey} contoso 200",
		"admin-token POST /api/v1/keys " + id + " 201",
		"admin-token POST /api/v1/customers " + c.ID + " 201",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("audit trail:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if len(a.Items) == 4 && !bytes.Contains(a.Items[1].Body, []byte(`"apiToken":"[redacted]"`)) {
		t.Errorf("the update's body is not kept with its secret redacted: %s", a.Items[1].Body)
	}
	var byActor struct{ Items []json.RawMessage }
	h.must("GET", "/api/v1/audit?actor="+id, "", http.StatusOK, &byActor)
	if len(byActor.Items) != 1 {
		t.Errorf("audit by actor %s: %d entries, want 1", id, len(byActor.Items))
	}
}

// TestNoSecretInDatabase reads the database files and finds neither a key
// nor a portal token in them: only hashes are kept.
func TestNoSecretInDatabase(t *testing.T) {
	h := newAuthHarness(t, authOptions{})
	h.must("POST", "/api/v1/customers", `{"key":"contoso","name":"Contoso","currency":"EUR","subjects":["c-1"]}`, http.StatusCreated, nil)
	var secrets []string
	for _, body := range []string{`{"scope":"admin"}`, `{"scope":"ingest","subject":"c-1"}`, `{"scope":"read","customer":"contoso"}`} {
		_, key := h.createKey(body)
		if r := h.call(key, "GET", "/api/v1/openapi.yaml", ""); r.status != http.StatusOK && r.status != http.StatusForbidden {
			t.Fatalf("use key: %s", r)
		}
		secrets = append(secrets, key, strings.TrimPrefix(key, "tly_"))
	}
	var pt struct{ Token string }
	h.must("POST", "/api/v1/portal/tokens", `{"customer":"contoso"}`, http.StatusCreated, &pt)
	secrets = append(secrets, pt.Token, testAdminToken)
	check := func(when string) {
		files, _ := filepath.Glob(filepath.Join(h.dir, sqlite.FileName+"*"))
		if len(files) == 0 {
			t.Fatalf("%s: no database files in %s", when, h.dir)
		}
		for _, f := range files {
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			for _, s := range secrets {
				if bytes.Contains(b, []byte(s)) {
					t.Errorf("%s: %s contains a secret (%.12s…)", when, filepath.Base(f), s)
				}
			}
		}
	}
	check("open")
	if err := h.st.Close(); err != nil {
		t.Fatal(err)
	}
	h.closed = true
	check("closed")
}

func TestOpenModeEndsWithTheFirstAdminKey(t *testing.T) {
	h := newAuthHarness(t, authOptions{open: true})
	if r := h.call("", "GET", "/api/v1/meters", ""); r.status != http.StatusOK {
		t.Fatalf("open mode without credentials: %s", r)
	}
	if r := h.call("tly_wrong", "GET", "/api/v1/meters", ""); r.status != http.StatusUnauthorized {
		t.Errorf("open mode still checks a credential that is sent: %s", r)
	}
	var ing struct{ Key string }
	if r := h.call("", "POST", "/api/v1/keys", `{"scope":"ingest"}`); r.status != http.StatusCreated {
		t.Fatal(r)
	} else {
		_ = json.Unmarshal([]byte(r.body), &ing)
	}
	if r := h.call(ing.Key, "GET", "/api/v1/meters", ""); r.status != http.StatusForbidden {
		t.Errorf("an ingest key reading in open mode: got %s, want 403 (a sent credential is scoped)", r)
	}
	if r := h.call("", "GET", "/api/v1/meters", ""); r.status != http.StatusOK {
		t.Errorf("an ingest key does not end open mode: %s", r)
	}
	var adm struct{ Key string }
	r := h.call("", "POST", "/api/v1/keys", `{"scope":"admin"}`)
	if err := json.Unmarshal([]byte(r.body), &adm); err != nil || r.status != http.StatusCreated {
		t.Fatal(r)
	}
	if r := h.call("", "GET", "/api/v1/meters", ""); r.status != http.StatusUnauthorized {
		t.Errorf("after the first admin key: got %s, want 401", r)
	}
	if r := h.call(adm.Key, "GET", "/api/v1/meters", ""); r.status != http.StatusOK {
		t.Errorf("the new admin key: %s", r)
	}
}

// TestOIDC covers the issuer checks and key rotation against the local
// key server.
func TestOIDC(t *testing.T) {
	h := newAuthHarness(t, authOptions{})
	h.must("POST", "/api/v1/customers", `{"key":"contoso","name":"Contoso","currency":"EUR","subjects":["c-1"]}`, http.StatusCreated, nil)
	keys := rsaKeys()
	now := h.clock.Now()
	claims := func(mod func(jwt.MapClaims)) jwt.MapClaims {
		c := jwt.MapClaims{"iss": testIssuer, "aud": testAudience, "sub": "alice", "exp": now.Add(time.Hour).Unix(), "scope": "tally:read"}
		if mod != nil {
			mod(c)
		}
		return c
	}
	call := func(tok string) int { return h.call(tok, "GET", "/api/v1/meters", "").status }
	for _, tc := range []struct {
		name string
		tok  string
		want int
	}{
		{"valid", signJWT(t, keys[0], "k1", claims(nil)), 200},
		{"scopes as an array", signJWT(t, keys[0], "k1", claims(func(c jwt.MapClaims) { c["scope"] = []string{"tally:admin"} })), 200},
		{"wrong issuer", signJWT(t, keys[0], "k1", claims(func(c jwt.MapClaims) { c["iss"] = "https://evil.test" })), 401},
		{"wrong audience", signJWT(t, keys[0], "k1", claims(func(c jwt.MapClaims) { c["aud"] = "other-app" })), 401},
		{"expired", signJWT(t, keys[0], "k1", claims(func(c jwt.MapClaims) { c["exp"] = now.Add(-time.Hour).Unix() })), 401},
		{"no expiry", signJWT(t, keys[0], "k1", claims(func(c jwt.MapClaims) { delete(c, "exp") })), 401},
		{"signed by an unknown key", signJWT(t, keys[2], "k1", claims(nil)), 401},
		{"no tally scope", signJWT(t, keys[0], "k1", claims(func(c jwt.MapClaims) { c["scope"] = "openid read" })), 403},
		{"unknown customer", signJWT(t, keys[0], "k1", claims(func(c jwt.MapClaims) { c["tally_customer"] = "nobody" })), 403},
		{"HS256 with the public key as secret", hs256WithPublicKey(t, &keys[0].PublicKey, claims(nil)), 401},
		{"alg none", noneToken(t, claims(nil)), 401},
	} {
		if got := call(tc.tok); got != tc.want {
			t.Errorf("%s: got %d, want %d", tc.name, got, tc.want)
		}
	}
	// The issuer rotates: k2 replaces k1. A token of k2 is unknown until
	// the set is fetched again, which an unknown kid does at once.
	fetches := h.jwks.fetchCount()
	h.jwks.setKeys(map[string]*rsa.PrivateKey{"k2": keys[1]})
	if got := call(signJWT(t, keys[1], "k2", claims(nil))); got != 200 {
		t.Fatalf("token of the rotated-in key: got %d, want 200", got)
	}
	if h.jwks.fetchCount() <= fetches {
		t.Errorf("the key set was not fetched again for an unknown kid")
	}
	if got := call(signJWT(t, keys[0], "k1", claims(nil))); got != 401 {
		t.Errorf("token of the rotated-out key: got %d, want 401", got)
	}
}

func hs256WithPublicKey(t *testing.T, pub *rsa.PublicKey, c jwt.MapClaims) string {
	t.Helper()
	tok := jwt.NewWithClaims(jwt.SigningMethodHS256, c)
	tok.Header["kid"] = "k1"
	s, err := tok.SignedString(pub.N.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func noneToken(t *testing.T, c jwt.MapClaims) string {
	t.Helper()
	tok := jwt.NewWithClaims(jwt.SigningMethodNone, c)
	tok.Header["kid"] = "k1"
	s, err := tok.SignedString(jwt.UnsafeAllowNoneSignatureType)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestBoundToCustomerWithoutSubjectsOrDeleted(t *testing.T) {
	w := setupWorld(t)
	h := w.h
	h.must("POST", "/api/v1/customers", `{"key":"empty","name":"Empty","currency":"EUR"}`, http.StatusCreated, nil)
	_, key := h.createKey(`{"scope":"read","customer":"empty"}`)
	var q struct{ Data []json.RawMessage }
	r := h.call(key, "GET", "/api/v1/meters/emails/query?groupBy=subject", "")
	if err := json.Unmarshal([]byte(r.body), &q); err != nil || r.status != http.StatusOK || len(q.Data) != 0 {
		t.Errorf("query by a customer without subjects: %s; want 200 and no rows (not everyone's)", r)
	}
	var evs []json.RawMessage
	r = h.call(key, "GET", "/api/v1/events", "")
	if err := json.Unmarshal([]byte(r.body), &evs); err != nil || len(evs) != 0 {
		t.Errorf("events of a customer without subjects: %s; want none", r)
	}
	// A deleted customer's credentials stop working for its data.
	h.must("DELETE", "/api/v1/customers/contoso", "", http.StatusNoContent, nil)
	if r := h.call(w.creds["ingestA"], "POST", "/api/v1/events", eventBody("after-delete", "contoso-eu-1")); r.status != http.StatusForbidden || !strings.Contains(r.body, "deleted") {
		t.Errorf("ingest for a deleted customer: got %s, want 403 saying it was deleted", r)
	}
}
