package httpapi_test

// Access control end to end: every route against every kind of caller, on
// a real store with two customers, A (contoso) and B (fabrikam).

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/shopspring/decimal"

	"github.com/tally-metering/tally/api"
	"github.com/tally-metering/tally/internal/auth"
	"github.com/tally-metering/tally/internal/billing"
	"github.com/tally-metering/tally/internal/httpapi"
	"github.com/tally-metering/tally/internal/ingest"
	"github.com/tally-metering/tally/internal/report"
	"github.com/tally-metering/tally/internal/store/sqlite"
	"github.com/tally-metering/tally/internal/usage"
)

const (
	testAdminToken = "admin-s3cret-token"
	testIssuer     = "https://issuer.test"
	testAudience   = "tally-api"
)

// jwksServer is an OIDC issuer's key endpoint whose keys a test can
// rotate.
type jwksServer struct {
	mu      sync.Mutex
	keys    map[string]*rsa.PrivateKey
	fetches int
	srv     *httptest.Server
}

func newJWKSServer(t *testing.T) *jwksServer {
	t.Helper()
	j := &jwksServer{keys: map[string]*rsa.PrivateKey{}}
	j.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		j.mu.Lock()
		defer j.mu.Unlock()
		j.fetches++
		var keys []map[string]string
		for kid, k := range j.keys {
			keys = append(keys, map[string]string{
				"kty": "RSA", "kid": kid, "use": "sig", "alg": "RS256",
				"n": base64.RawURLEncoding.EncodeToString(k.N.Bytes()),
				"e": base64.RawURLEncoding.EncodeToString(big.NewInt(int64(k.E)).Bytes()),
			})
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"keys": keys})
	}))
	t.Cleanup(j.srv.Close)
	return j
}

// rsaKeys are made once: generating them is slow under the race detector.
var rsaKeys = sync.OnceValue(func() []*rsa.PrivateKey {
	var out []*rsa.PrivateKey
	for range 3 {
		k, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			panic(err)
		}
		out = append(out, k)
	}
	return out
})

// setKeys replaces the published keys.
func (j *jwksServer) setKeys(keys map[string]*rsa.PrivateKey) {
	j.mu.Lock()
	j.keys = keys
	j.mu.Unlock()
}

func (j *jwksServer) fetchCount() int {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.fetches
}

// signJWT signs claims with RS256 under kid.
func signJWT(t *testing.T, key *rsa.PrivateKey, kid string, claims jwt.MapClaims) string {
	t.Helper()
	tok := jwt.NewWithClaims(jwt.SigningMethodRS256, claims)
	tok.Header["kid"] = kid
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatalf("sign jwt: %v", err)
	}
	return s
}

// authHarness is a server with every kind of credential enabled.
type authHarness struct {
	t     *testing.T
	srv   *httptest.Server
	st    *sqlite.DB
	dir   string
	clock *apiClock
	chain *auth.Chain
	jwks  *jwksServer
	api   *httpapi.Server
	// closed is set by a test that closed st itself.
	closed bool
}

type authOptions struct {
	open      bool
	rateLimit float64
	rateBurst int
	// authFailureLimit and authFailureWindow limit failed
	// authentications per address (0: no limit, as the access tests
	// fail many on purpose).
	authFailureLimit  int
	authFailureWindow time.Duration
	trustedProxies    []netip.Prefix
	// configure, when set, changes the server's config.
	configure func(*httpapi.Config)
}

func newAuthHarness(t *testing.T, o authOptions) *authHarness {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	st, err := sqlite.Open(ctx, dir, sqlite.Options{})
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	h := &authHarness{t: t, st: st, dir: dir}
	t.Cleanup(func() {
		if !h.closed {
			if err := st.Close(); err != nil {
				t.Errorf("close store: %v", err)
			}
		}
	})
	clock := &apiClock{t: apiStart}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	reg := prometheus.NewRegistry()
	pipe := ingest.New(st, clock.Now, log, ingest.NewMetrics(reg), ingest.Config{})
	t.Cleanup(pipe.Close)
	if err := pipe.LoadMeters(ctx); err != nil {
		t.Fatalf("load meters: %v", err)
	}
	jwks := newJWKSServer(t)
	jwks.setKeys(map[string]*rsa.PrivateKey{"k1": rsaKeys()[0]})
	octx, cancel := context.WithCancel(ctx)
	t.Cleanup(cancel)
	oidc, err := auth.NewOIDC(octx, auth.OIDCConfig{
		Issuer: testIssuer, Audience: testAudience, JWKSURL: jwks.srv.URL,
		CustomerClaim: "tally_customer", ScopesClaim: "scope", ScopePrefix: "tally:",
	})
	if err != nil {
		t.Fatalf("oidc: %v", err)
	}
	portal, err := auth.NewPortalKeys([]byte(strings.Repeat("p", 32)))
	if err != nil {
		t.Fatal(err)
	}
	chain := &auth.Chain{
		Keys: &auth.Keys{Store: st, Now: clock.Now}, Portal: portal, OIDC: oidc, Now: clock.Now,
		ResolveCustomer: func(ctx context.Context, ref string) (string, error) {
			c, err := st.GetCustomer(ctx, ref)
			return c.ID, err
		},
	}
	if !o.open {
		chain.Admin = auth.NewAdminToken(testAdminToken)
	}
	chain.SetOpen(o.open)
	rl := o.rateLimit
	if rl == 0 {
		rl = -1
	}
	afl := o.authFailureLimit
	if afl == 0 {
		afl = -1
	}
	cfg := httpapi.Config{
		Store: st, Pipeline: pipe, Usage: &usage.Service{Store: st}, Auth: chain, Portal: portal,
		Now: clock.Now, Log: log, Registry: reg, Gatherer: reg, OpenAPI: api.OpenAPI,
		RateLimit: rl, RateBurst: o.rateBurst, Outbox: st,
		AuthFailureLimit: afl, AuthFailureWindow: o.authFailureWindow, TrustedProxies: o.trustedProxies,
	}
	if o.configure != nil {
		o.configure(&cfg)
	}
	srv := httpapi.New(cfg)
	hs := httptest.NewServer(srv)
	t.Cleanup(hs.Close)
	h.srv, h.clock, h.chain, h.jwks, h.api = hs, clock, chain, jwks, srv
	return h
}

type authResp struct {
	status int
	header http.Header
	body   string
}

func (r authResp) String() string { return fmt.Sprintf("%d %s", r.status, r.body) }

// call sends a request with the bearer credential cred ("" none).
func (h *authHarness) call(cred, method, path, body string) authResp {
	h.t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, h.srv.URL+path, rd)
	if err != nil {
		h.t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
		if strings.HasPrefix(body, "{\"specversion\"") || strings.HasPrefix(body, "[") && strings.Contains(body, "specversion") {
			req.Header.Set("Content-Type", "application/cloudevents-batch+json")
		}
	}
	if cred != "" {
		req.Header.Set("Authorization", "Bearer "+cred)
	}
	resp, err := h.srv.Client().Do(req)
	if err != nil {
		h.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return authResp{status: resp.StatusCode, header: resp.Header, body: string(b)}
}

// must sends a request as the admin and requires status; it decodes the
// response into v when v is not nil.
func (h *authHarness) must(method, path, body string, status int, v any) {
	h.t.Helper()
	r := h.call(testAdminToken, method, path, body)
	if r.status != status {
		h.t.Fatalf("%s %s: got %s, want %d", method, path, r, status)
	}
	if v != nil {
		if err := json.Unmarshal([]byte(r.body), v); err != nil {
			h.t.Fatalf("%s %s: decode %s: %v", method, path, r.body, err)
		}
	}
}

// createKey creates an API key as the admin and returns its id and secret.
func (h *authHarness) createKey(body string) (id, key string) {
	h.t.Helper()
	var k struct{ ID, Key string }
	h.must("POST", "/api/v1/keys", body, http.StatusCreated, &k)
	if k.ID == "" || !strings.HasPrefix(k.Key, auth.KeyPrefix) {
		h.t.Fatalf("created key = %+v", k)
	}
	return k.ID, k.Key
}

// oidcToken is a token of the test issuer for a customer ("" unbound)
// with the given scope.
func (h *authHarness) oidcToken(customer, scope string) string {
	now := h.clock.Now()
	claims := jwt.MapClaims{"iss": testIssuer, "aud": testAudience, "sub": "user-" + customer,
		"exp": now.Add(time.Hour).Unix(), "iat": now.Unix(), "scope": "openid tally:" + scope}
	if customer != "" {
		claims["tally_customer"] = customer
	}
	return signJWT(h.t, rsaKeys()[0], "k1", claims)
}

func eventBody(id, subject string) string {
	return fmt.Sprintf(`[{"specversion":"1.0","id":%q,"source":"authz-test","type":"email","subject":%q,"time":"2026-04-01T11:00:00Z"}]`, id, subject)
}

// world is the data of the access tests: customer A (contoso, subjects
// contoso-eu-1 and contoso-us-1) and B (fabrikam, subject fab-1), each
// subscribed to a plan, with events; and a credential of every kind.
type world struct {
	h                  *authHarness
	aID, bID           string
	aSub, bSub         string
	aInvoice, bInvoice string
	aReport, bReport   string
	aCredit, bCredit   string
	creds              map[string]string
}

// callers, in the order of the expectation strings below.
var callers = []string{"none", "wrong", "expired", "revoked", "ingestA", "readA", "deployA", "portalA", "oidcA", "admin"}

func setupWorld(t *testing.T) *world {
	h := newAuthHarness(t, authOptions{})
	w := &world{h: h, creds: map[string]string{}}
	h.must("POST", "/api/v1/meters", `{"slug":"emails","eventType":"email","aggregation":"COUNT"}`, http.StatusCreated, nil)
	var a, b struct{ ID string }
	h.must("POST", "/api/v1/customers", `{"key":"contoso","name":"Contoso","currency":"EUR","subjects":["contoso-eu-1","contoso-us-1"]}`, http.StatusCreated, &a)
	h.must("POST", "/api/v1/customers", `{"key":"fabrikam","name":"Fabrikam","currency":"EUR","subjects":["fab-1"]}`, http.StatusCreated, &b)
	w.aID, w.bID = a.ID, b.ID
	h.must("POST", "/api/v1/plans", `{"key":"mail-pro","name":"Mail Pro","currency":"EUR","cadence":"P1M","baseFee":"10.00",
  "charges":[{"key":"emails","meter":"emails","included":"1000","pricing":{"model":"package","packageSize":"1000","unitPrice":"5.00"}}]}`, http.StatusCreated, nil)
	h.must("POST", "/api/v1/plans/mail-pro/publish", "", http.StatusOK, nil)
	var sa, sb struct{ ID string }
	h.must("POST", "/api/v1/subscriptions", `{"customer":"contoso","plan":"mail-pro"}`, http.StatusCreated, &sa)
	h.must("POST", "/api/v1/subscriptions", `{"customer":"fabrikam","plan":"mail-pro"}`, http.StatusCreated, &sb)
	w.aSub, w.bSub = sa.ID, sb.ID
	for i, sub := range []string{"contoso-eu-1", "contoso-us-1", "fab-1"} {
		h.must("POST", "/api/v1/events", eventBody(fmt.Sprintf("seed-%d", i), sub), http.StatusNoContent, nil)
	}
	for _, c := range []struct {
		key string
		dst *string
	}{{"contoso", &w.aInvoice}, {"fabrikam", &w.bInvoice}} {
		var invs struct{ Items []struct{ ID string } }
		h.must("GET", "/api/v1/invoices?customer="+c.key, "", http.StatusOK, &invs)
		if len(invs.Items) == 0 {
			t.Fatalf("no draft invoice for %s", c.key)
		}
		*c.dst = invs.Items[0].ID
	}

	// One usage report each, as the reporter would have planned them.
	var reps []report.Report
	for _, c := range []struct {
		customer, sub string
		dst           *string
	}{{w.aID, w.aSub, &w.aReport}, {w.bID, w.bSub, &w.bReport}} {
		id := report.ReportID("azure", c.sub, "", "emails", apiStart)
		*c.dst = id
		reps = append(reps, report.Report{ID: id, StreamID: "s-" + c.sub, Target: "azure", SubscriptionID: c.sub, CustomerID: c.customer,
			Dimension: "emails", Hour: apiStart, Quantity: decimal.NewFromInt(1), State: report.StateAccepted})
	}
	if err := h.st.CommitPlan(context.Background(), nil, reps, 0); err != nil {
		t.Fatal(err)
	}

	// One credit note each, as the invoicing job would have issued them.
	for _, c := range []struct {
		customer, sub, invoice string
		dst                    *string
	}{{w.aID, w.aSub, w.aInvoice, &w.aCredit}, {w.bID, w.bSub, w.bInvoice, &w.bCredit}} {
		cn, _, err := billing.BuildCreditNote(billing.Subscription{ID: c.sub, CustomerID: c.customer}, "EUR", 1, apiStart,
			[]billing.Adjustment{{Invoice: c.invoice, PeriodStart: apiStart, PeriodEnd: apiStart.AddDate(0, 1, 0), ChargeKey: "emails", Meter: "emails",
				Quantity: decimal.NewFromInt(-1000), Amount: decimal.NewFromInt(-5)}})
		if err != nil {
			t.Fatal(err)
		}
		if _, _, err := h.st.IssueCreditNote(context.Background(), cn); err != nil {
			t.Fatal(err)
		}
		*c.dst = cn.ID
	}

	_, w.creds["ingestA"] = h.createKey(`{"scope":"ingest","customer":"contoso"}`)
	_, w.creds["readA"] = h.createKey(`{"scope":"read","customer":"contoso"}`)
	_, w.creds["deployA"] = h.createKey(`{"scope":"ingest","subject":"contoso-eu-1"}`)
	_, w.creds["expired"] = h.createKey(fmt.Sprintf(`{"scope":"admin","expiresAt":%q}`, apiStart.Add(time.Minute).Format(time.RFC3339)))
	revokedID, revoked := h.createKey(`{"scope":"admin"}`)
	h.must("DELETE", "/api/v1/keys/"+revokedID, "", http.StatusOK, nil)
	w.creds["revoked"] = revoked
	var pt struct{ Token string }
	h.must("POST", "/api/v1/portal/tokens", `{"customer":"contoso","meters":["emails"],"ttl":"2h"}`, http.StatusCreated, &pt)
	w.creds["portalA"] = pt.Token
	// The expired key expires.
	h.clock.Advance(2 * time.Minute)
	w.creds["oidcA"] = h.oidcToken("contoso", "read")
	w.creds["wrong"] = "tly_" + strings.Repeat("a", 52)
	w.creds["admin"] = testAdminToken
	return w
}

// TestAccessMatrix runs every route against every kind of caller. Each
// expectation string has one letter per caller (see callers): u = 401,
// f = 403, a = allowed (anything but 401, 403, 429 and 5xx). Allowed
// answers to credentials of A must show nothing of B.
func TestAccessMatrix(t *testing.T) {
	w := setupWorld(t)
	h := w.h
	type row struct {
		method, pattern, path, body, want string
	}
	A, B := "contoso", "fabrikam"
	// ingest rows get a fresh event id per caller, filled in below.
	rows := []row{
		{"GET", "/metrics", "/metrics", "", "uuuufffffa"},
		{"GET", "/api/v1/openapi.yaml", "/api/v1/openapi.yaml", "", "uuuufaffaa"},
		{"POST", "/api/v1/events", "/api/v1/events", "contoso-eu-1", "uuuuafaffa"},
		{"POST", "/api/v1/events", "/api/v1/events", "contoso-us-1", "uuuuaffffa"},
		{"POST", "/api/v1/events", "/api/v1/events", "fab-1", "uuuufffffa"},
		{"GET", "/api/v1/events", "/api/v1/events", "", "uuuufaffaa"},
		{"GET", "/api/v1/events", "/api/v1/events?subject=contoso-us-1", "", "uuuufaffaa"},
		{"GET", "/api/v1/events", "/api/v1/events?subject=fab-1", "", "uuuufffffa"},
		{"POST", "/api/v1/events/void", "/api/v1/events/void", `{}`, "uuuufffffa"},
		{"POST", "/api/v1/events/amend", "/api/v1/events/amend", `{}`, "uuuufffffa"},
		{"GET", "/api/v1/cancellation-rules", "/api/v1/cancellation-rules", "", "uuuufffffa"},
		{"POST", "/api/v1/cancellation-rules", "/api/v1/cancellation-rules", `{}`, "uuuufffffa"},
		{"GET", "/api/v1/cancellation-rules/{id}", "/api/v1/cancellation-rules/nothing", "", "uuuufffffa"},
		{"DELETE", "/api/v1/cancellation-rules/{id}", "/api/v1/cancellation-rules/nothing", "", "uuuufffffa"},
		{"GET", "/api/v1/meters", "/api/v1/meters", "", "uuuufaffaa"},
		{"POST", "/api/v1/meters", "/api/v1/meters", `{"slug":""}`, "uuuufffffa"},
		{"GET", "/api/v1/meters/{idOrSlug}", "/api/v1/meters/emails", "", "uuuufaffaa"},
		{"PUT", "/api/v1/meters/{idOrSlug}", "/api/v1/meters/emails", `{"slug":""}`, "uuuufffffa"},
		{"DELETE", "/api/v1/meters/{idOrSlug}", "/api/v1/meters/nothing", "", "uuuufffffa"},
		{"GET", "/api/v1/meters/{idOrSlug}/query", "/api/v1/meters/emails/query?groupBy=subject", "", "uuuufaffaa"},
		{"GET", "/api/v1/meters/{idOrSlug}/query", "/api/v1/meters/emails/query?subject=fab-1", "", "uuuufffffa"},
		{"POST", "/api/v1/meters/{idOrSlug}/query", "/api/v1/meters/emails/query", `{"groupBy":["subject"]}`, "uuuufaffaa"},
		{"POST", "/api/v1/meters/{idOrSlug}/query", "/api/v1/meters/emails/query", `{"subject":["contoso-eu-1","fab-1"]}`, "uuuufffffa"},
		{"GET", "/api/v1/subjects", "/api/v1/subjects", "", "uuuufaffaa"},
		{"POST", "/api/v1/subjects", "/api/v1/subjects", `[{"key":""}]`, "uuuufffffa"},
		{"GET", "/api/v1/subjects/{key}", "/api/v1/subjects/contoso-eu-1", "", "uuuufaffaa"},
		{"GET", "/api/v1/subjects/{key}", "/api/v1/subjects/fab-1", "", "uuuufffffa"},
		{"DELETE", "/api/v1/subjects/{key}", "/api/v1/subjects/nothing", "", "uuuufffffa"},
		{"GET", "/api/v1/customers", "/api/v1/customers", "", "uuuufaffaa"},
		{"POST", "/api/v1/customers", "/api/v1/customers", `{}`, "uuuufffffa"},
		{"GET", "/api/v1/customers/{idOrKey}", "/api/v1/customers/" + A, "", "uuuufaffaa"},
		{"GET", "/api/v1/customers/{idOrKey}", "/api/v1/customers/" + w.aID, "", "uuuufaffaa"},
		{"GET", "/api/v1/customers/{idOrKey}", "/api/v1/customers/" + B, "", "uuuufffffa"},
		{"GET", "/api/v1/customers/{idOrKey}", "/api/v1/customers/" + w.bID, "", "uuuufffffa"},
		{"PUT", "/api/v1/customers/{idOrKey}", "/api/v1/customers/" + A, `{}`, "uuuufffffa"},
		{"PATCH", "/api/v1/customers/{idOrKey}", "/api/v1/customers/" + A, `{"currency":"eur"}`, "uuuufffffa"},
		{"DELETE", "/api/v1/customers/{idOrKey}", "/api/v1/customers/nobody", "", "uuuufffffa"},
		{"GET", "/api/v1/customers/{idOrKey}/users", "/api/v1/customers/" + A + "/users", "", "uuuufaffaa"},
		{"GET", "/api/v1/customers/{idOrKey}/users", "/api/v1/customers/" + B + "/users", "", "uuuufffffa"},
		{"POST", "/api/v1/customers/{idOrKey}/users", "/api/v1/customers/" + A + "/users", `{}`, "uuuufffffa"},
		{"GET", "/api/v1/customers/{idOrKey}/usage", "/api/v1/customers/" + A + "/usage", "", "uuuufaffaa"},
		{"GET", "/api/v1/customers/{idOrKey}/usage", "/api/v1/customers/" + B + "/usage", "", "uuuufffffa"},
		{"GET", "/api/v1/plans", "/api/v1/plans", "", "uuuufffffa"},
		{"POST", "/api/v1/plans", "/api/v1/plans", `{}`, "uuuufffffa"},
		{"GET", "/api/v1/plans/{idOrKey}", "/api/v1/plans/mail-pro", "", "uuuufffffa"},
		{"PUT", "/api/v1/plans/{idOrKey}", "/api/v1/plans/mail-pro", `{}`, "uuuufffffa"},
		{"PATCH", "/api/v1/plans/{idOrKey}", "/api/v1/plans/mail-pro", `{"currency":"eur"}`, "uuuufffffa"},
		{"POST", "/api/v1/plans/{idOrKey}/publish", "/api/v1/plans/nothing/publish", "", "uuuufffffa"},
		{"GET", "/api/v1/subscriptions", "/api/v1/subscriptions", "", "uuuufaffaa"},
		{"GET", "/api/v1/subscriptions", "/api/v1/subscriptions?customer=" + A, "", "uuuufaffaa"},
		{"GET", "/api/v1/subscriptions", "/api/v1/subscriptions?customer=" + B, "", "uuuufffffa"},
		{"POST", "/api/v1/subscriptions", "/api/v1/subscriptions", `{}`, "uuuufffffa"},
		{"GET", "/api/v1/subscriptions/{id}", "/api/v1/subscriptions/" + w.aSub, "", "uuuufaffaa"},
		{"GET", "/api/v1/subscriptions/{id}", "/api/v1/subscriptions/" + w.bSub, "", "uuuufffffa"},
		{"POST", "/api/v1/subscriptions/{id}/cancel", "/api/v1/subscriptions/nothing/cancel", `{}`, "uuuufffffa"},
		{"POST", "/api/v1/subscriptions/{id}/change", "/api/v1/subscriptions/nothing/change", `{}`, "uuuufffffa"},
		{"GET", "/api/v1/invoices", "/api/v1/invoices", "", "uuuufaffaa"},
		{"GET", "/api/v1/invoices", "/api/v1/invoices?customer=" + B, "", "uuuufffffa"},
		{"GET", "/api/v1/invoices", "/api/v1/invoices?subscription=" + w.bSub, "", "uuuufffffa"},
		{"GET", "/api/v1/invoices/{id}", "/api/v1/invoices/" + w.aInvoice, "", "uuuufaffaa"},
		{"GET", "/api/v1/invoices/{id}", "/api/v1/invoices/" + w.bInvoice, "", "uuuufffffa"},
		{"GET", "/api/v1/credit-notes", "/api/v1/credit-notes", "", "uuuufaffaa"},
		{"GET", "/api/v1/credit-notes", "/api/v1/credit-notes?customer=" + B, "", "uuuufffffa"},
		{"GET", "/api/v1/credit-notes", "/api/v1/credit-notes?subscription=" + w.bSub, "", "uuuufffffa"},
		{"GET", "/api/v1/credit-notes", "/api/v1/credit-notes?invoice=" + w.bInvoice, "", "uuuufaffaa"},
		{"GET", "/api/v1/credit-notes/{id}", "/api/v1/credit-notes/" + w.aCredit, "", "uuuufaffaa"},
		{"GET", "/api/v1/credit-notes/{id}", "/api/v1/credit-notes/" + w.bCredit, "", "uuuufffffa"},
		{"GET", "/api/v1/credit-notes/{id}", "/api/v1/credit-notes/CN-000002", "", "uuuufffffa"},
		{"GET", "/api/v1/keys", "/api/v1/keys", "", "uuuufffffa"},
		{"POST", "/api/v1/keys", "/api/v1/keys", `{"scope":"nope"}`, "uuuufffffa"},
		{"GET", "/api/v1/keys/{id}", "/api/v1/keys/key_nothing", "", "uuuufffffa"},
		{"DELETE", "/api/v1/keys/{id}", "/api/v1/keys/key_nothing", "", "uuuufffffa"},
		{"POST", "/api/v1/portal/tokens", "/api/v1/portal/tokens", `{"customer":"` + B + `","ttl":"forever"}`, "uuuufffffa"},
		{"GET", "/api/v1/portal/tokens", "/api/v1/portal/tokens", "", "uuuufffffa"},
		{"GET", "/api/v1/portal/tokens", "/api/v1/portal/tokens?customer=" + A, "", "uuuufffffa"},
		{"DELETE", "/api/v1/portal/tokens", "/api/v1/portal/tokens?customer=nobody", "", "uuuufffffa"},
		{"DELETE", "/api/v1/portal/tokens/{id}", "/api/v1/portal/tokens/ptk_nothing", "", "uuuufffffa"},
		{"GET", "/api/v1/portal/usage", "/api/v1/portal/usage", "", "uuuufafaaf"},
		{"GET", "/api/v1/portal/meters/{slug}/query", "/api/v1/portal/meters/emails/query?groupBy=subject", "", "uuuufafaaf"},
		{"GET", "/api/v1/portal/meters/{slug}/query", "/api/v1/portal/meters/emails/query?subject=fab-1", "", "uuuuffffff"},
		{"GET", "/api/v1/audit", "/api/v1/audit", "", "uuuufffffa"},
		{"GET", "/api/v1/reports", "/api/v1/reports", "", "uuuufaffaa"},
		{"GET", "/api/v1/reports", "/api/v1/reports?customer=" + A, "", "uuuufaffaa"},
		{"GET", "/api/v1/reports", "/api/v1/reports?customer=" + B, "", "uuuufffffa"},
		{"GET", "/api/v1/reports", "/api/v1/reports?subscription=" + w.bSub, "", "uuuufffffa"},
		{"GET", "/api/v1/reports/{id}", "/api/v1/reports/" + w.aReport, "", "uuuufaffaa"},
		{"GET", "/api/v1/reports/{id}", "/api/v1/reports/" + w.bReport, "", "uuuufffffa"},
		{"POST", "/api/v1/reports/{id}/retry", "/api/v1/reports/" + w.aReport + "/retry", "", "uuuufffffa"},
	}
	bMarkers := []string{"fabrikam", "fab-1", w.bID, w.bSub, w.bInvoice, w.bReport, w.bCredit}
	covered := map[string]bool{}
	var deniedEvents []string
	for i, rw := range rows {
		if len(rw.want) != len(callers) {
			t.Fatalf("row %d (%s %s): %d expectations for %d callers", i, rw.method, rw.path, len(rw.want), len(callers))
		}
		covered[rw.method+" "+rw.pattern] = true
		for j, caller := range callers {
			body := rw.body
			if rw.method == "POST" && rw.pattern == "/api/v1/events" {
				id := fmt.Sprintf("ev-%d-%s", i, caller)
				body = eventBody(id, rw.body)
				if rw.want[j] != 'a' {
					deniedEvents = append(deniedEvents, id)
				}
			}
			r := h.call(w.creds[caller], rw.method, rw.path, body)
			name := fmt.Sprintf("%s %s as %s", rw.method, rw.path, caller)
			switch rw.want[j] {
			case 'u':
				if r.status != http.StatusUnauthorized {
					t.Errorf("%s: got %s, want 401", name, r)
				} else if r.header.Get("WWW-Authenticate") == "" {
					t.Errorf("%s: 401 without WWW-Authenticate", name)
				}
			case 'f':
				if r.status != http.StatusForbidden {
					t.Errorf("%s: got %s, want 403", name, r)
				} else if r.header.Get("Content-Type") != "application/problem+json" {
					t.Errorf("%s: 403 is not problem+json: %s", name, r.header.Get("Content-Type"))
				}
			case 'a':
				if r.status == 401 || r.status == 403 || r.status == 429 || r.status >= 500 {
					t.Errorf("%s: got %s, want it allowed", name, r)
					continue
				}
				if strings.HasSuffix(caller, "A") {
					for _, m := range bMarkers {
						if strings.Contains(r.body, m) {
							t.Errorf("%s: the answer shows %q, which is customer B's: %s", name, m, r)
						}
					}
				}
			}
		}
	}
	for _, rt := range httpapi.New(httpapi.Config{Log: slog.New(slog.DiscardHandler), Registry: prometheus.NewRegistry()}).Routes() {
		if strings.HasPrefix(rt.Pattern, "/api/") && !covered[rt.Method+" "+rt.Pattern] {
			t.Errorf("route %s %s is not in the access matrix; add rows for it", rt.Method, rt.Pattern)
		}
	}
	// Nothing of a refused ingest request was stored.
	var evs []struct {
		Event struct{ ID, Subject string } `json:"event"`
	}
	h.must("GET", "/api/v1/events?limit=1000", "", http.StatusOK, &evs)
	for _, e := range evs {
		if slices.Contains(deniedEvents, e.Event.ID) {
			t.Errorf("event %s (subject %s) was stored although its request was refused", e.Event.ID, e.Event.Subject)
		}
	}
}

// A target's answers as received (a batch answer can name other
// customers) are the vendor's: a customer's credential sees its reports'
// attempts without them.
func TestReportAttemptAnswersAreTheVendors(t *testing.T) {
	w := setupWorld(t)
	h := w.h
	answer := json.RawMessage(`{"result":[{"resourceId":"res-of-another-customer","status":"Accepted"}]}`)
	if err := h.st.RecordDeliveries(context.Background(), []report.Delivery{{ReportID: w.aReport, State: report.StateAccepted,
		Attempt: report.Attempt{Attempt: 1, At: apiStart, Outcome: "accepted", Code: "Accepted", Response: answer}}}, apiStart); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		caller string
		shown  bool
	}{{"readA", false}, {"oidcA", false}, {"admin", true}} {
		r := h.call(w.creds[tc.caller], "GET", "/api/v1/reports/"+w.aReport, "")
		if r.status != http.StatusOK {
			t.Fatalf("%s: %s", tc.caller, r)
		}
		if got := strings.Contains(r.body, "res-of-another-customer"); got != tc.shown {
			t.Errorf("%s: answer shown %v, want %v: %s", tc.caller, got, tc.shown, r.body)
		}
		if !strings.Contains(r.body, `"code":"Accepted"`) {
			t.Errorf("%s: the attempt's outcome is missing: %s", tc.caller, r.body)
		}
	}
}
