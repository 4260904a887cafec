package httpapi_test

// One tenant can't starve the others: the caps on requests in flight per
// credential and per client address, the share kept for admin
// credentials, and the minimum body data rate, over real TCP connections
// whose bodies really arrive slowly.

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/tally-metering/tally/internal/httpapi"
)

// slowRequest is a request whose headers declare a body of 1000 bytes of
// which one was sent; the rest never comes.
type slowRequest struct {
	conn net.Conn
	sent time.Time
}

// openSlow sends such a request with the bearer credential cred ("" none).
func openSlow(t *testing.T, h *authHarness, cred, method, path, contentType string) *slowRequest {
	t.Helper()
	u, err := url.Parse(h.srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	c, err := net.Dial("tcp", u.Host)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	var hdr strings.Builder
	fmt.Fprintf(&hdr, "%s %s HTTP/1.1\r\nHost: %s\r\nContent-Type: %s\r\nContent-Length: 1000\r\n", method, path, u.Host, contentType)
	if cred != "" {
		fmt.Fprintf(&hdr, "Authorization: Bearer %s\r\n", cred)
	}
	hdr.WriteString("\r\n[")
	if _, err := io.WriteString(c, hdr.String()); err != nil {
		t.Fatal(err)
	}
	return &slowRequest{conn: c, sent: time.Now()}
}

// answer reads the response the server sent on the connection.
func (s *slowRequest) answer(t *testing.T, within time.Duration) (*http.Response, string) {
	t.Helper()
	_ = s.conn.SetReadDeadline(time.Now().Add(within))
	br := bufio.NewReader(s.conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("no response to the slow request within %v: %v", within, err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if _, err := br.ReadByte(); err != io.EOF {
		t.Errorf("after the answer the connection was not closed: read error %v, want EOF", err)
	}
	return resp, string(b)
}

// waitInFlight waits until the server counts what ok wants in flight.
func waitInFlight(t *testing.T, h *authHarness, what string, ok func(byCred, byAddr map[string]int, tenants int) bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		byCred, byAddr, tenants := h.api.InFlight()
		if ok(byCred, byAddr, tenants) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("waiting for %s: in flight per credential %v, per address %v, client requests %d", what, byCred, byAddr, tenants)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// callWithin sends a request as h.call does, failing the test unless it is
// answered within d.
func callWithin(t *testing.T, h *authHarness, d time.Duration, cred, method, path, body string, hdr ...string) authResp {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, h.srv.URL+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/cloudevents-batch+json")
	}
	if cred != "" {
		req.Header.Set("Authorization", "Bearer "+cred)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	client := &http.Client{Timeout: d, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: no answer within %v: %v", method, path, d, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return authResp{status: resp.StatusCode, header: resp.Header, body: string(b)}
}

// twoCustomers creates the emails meter and customers contoso (subject
// contoso-eu-1) and fabrikam (fab-1).
func twoCustomers(h *authHarness) {
	h.must("POST", "/api/v1/meters", `{"slug":"emails","eventType":"email","aggregation":"COUNT"}`, http.StatusCreated, nil)
	h.must("POST", "/api/v1/customers", `{"key":"contoso","name":"Contoso","currency":"EUR","subjects":["contoso-eu-1"]}`, http.StatusCreated, nil)
	h.must("POST", "/api/v1/customers", `{"key":"fabrikam","name":"Fabrikam","currency":"EUR","subjects":["fab-1"]}`, http.StatusCreated, nil)
}

const cloudEvents = "application/cloudevents-batch+json"

// While tenant A holds as many slow requests as its credential may,
// tenant B's ingest and an admin read are answered at once; A's next
// request gets 429; and A's slow requests are cut off with 408 once
// their body is overdue, long before any read timeout.
func TestSlowTenantDoesNotStarveOthers(t *testing.T) {
	const perCred = 4
	const grace = 2 * time.Second
	h := newAuthHarness(t, authOptions{configure: func(c *httpapi.Config) {
		c.MaxConcurrentPerCredential = perCred
		c.MaxConcurrentPerAddress = 16
		c.MinBodyRate = 1024
		c.MinBodyRateGrace = grace
	}})
	twoCustomers(h)
	idA, keyA := h.createKey(`{"scope":"ingest","customer":"contoso"}`)
	_, keyB := h.createKey(`{"scope":"ingest","customer":"fabrikam"}`)

	var slow []*slowRequest
	for range perCred {
		slow = append(slow, openSlow(t, h, keyA, "POST", "/api/v1/events", cloudEvents))
	}
	waitInFlight(t, h, "A's slow requests", func(byCred, _ map[string]int, _ int) bool { return byCred[idA] == perCred })

	r := callWithin(t, h, time.Second, keyA, "POST", "/api/v1/events", eventBody("a-1", "contoso-eu-1"))
	if r.status != http.StatusTooManyRequests || r.header.Get("Retry-After") != "1" ||
		!strings.Contains(r.body, fmt.Sprintf("this credential has %d requests in flight", perCred)) || !strings.Contains(r.body, "--max-concurrent-per-credential") {
		t.Errorf("A's request beyond its cap: got %s (Retry-After %q), want 429 naming the credential cap of %d with Retry-After 1", r, r.header.Get("Retry-After"), perCred)
	}
	if r := callWithin(t, h, time.Second, keyB, "POST", "/api/v1/events", eventBody("b-1", "fab-1")); r.status != http.StatusNoContent {
		t.Errorf("B's ingest while A holds its cap: got %s, want 204", r)
	}
	if r := callWithin(t, h, time.Second, testAdminToken, "GET", "/api/v1/customers", ""); r.status != http.StatusOK {
		t.Errorf("admin read while A holds its cap: got %s, want 200", r)
	}
	if byCred, _, _ := h.api.InFlight(); byCred[idA] != perCred {
		t.Fatalf("A's slow requests were done (%d in flight) before the others were answered; the grace of %v is too short for this machine", byCred[idA], grace)
	}

	for i, s := range slow {
		resp, body := s.answer(t, 10*time.Second)
		took := time.Since(s.sent)
		if resp.StatusCode != http.StatusRequestTimeout || !resp.Close || !strings.Contains(body, "slower than 1024 bytes per second") {
			t.Errorf("slow request %d: got %d (close %v) %s, want 408 naming the minimum rate, and the connection closed", i, resp.StatusCode, resp.Close, body)
		}
		if took < grace {
			t.Errorf("slow request %d was cut off after %v, before the grace of %v", i, took, grace)
		}
	}
	waitInFlight(t, h, "A's slots back", func(byCred, _ map[string]int, _ int) bool { return byCred[idA] == 0 })
	if r := callWithin(t, h, time.Second, keyA, "POST", "/api/v1/events", eventBody("a-2", "contoso-eu-1")); r.status != http.StatusNoContent {
		t.Errorf("A's ingest once its slow requests were cut off: got %s, want 204", r)
	}
}

// The cap per client address applies before authentication: once an
// address holds its cap, with requests of any credentials, its next
// request gets 429 whatever its credential, none included. Other
// addresses are served.
func TestAddressCapAppliesBeforeAuthentication(t *testing.T) {
	const perAddr = 3
	h := newAuthHarness(t, authOptions{
		trustedProxies: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")},
		configure: func(c *httpapi.Config) {
			c.MaxConcurrentPerAddress = perAddr
			c.MinBodyRate = -1 // the slow requests stay until closed
		},
	})
	twoCustomers(h)
	_, keyA := h.createKey(`{"scope":"ingest","customer":"contoso"}`)
	_, keyB := h.createKey(`{"scope":"ingest","customer":"fabrikam"}`)
	slow := []*slowRequest{
		openSlow(t, h, keyA, "POST", "/api/v1/events", cloudEvents),
		openSlow(t, h, keyB, "POST", "/api/v1/events", cloudEvents),
		openSlow(t, h, testAdminToken, "POST", "/api/v1/customers", "application/json"),
	}
	waitInFlight(t, h, "the address's slow requests", func(_, byAddr map[string]int, _ int) bool { return byAddr["127.0.0.1/32"] == perAddr })

	for _, c := range []struct{ who, cred string }{{"no credential", ""}, {"a wrong credential", "tly_" + strings.Repeat("a", 52)}, {"the admin token", testAdminToken}} {
		r := callWithin(t, h, time.Second, c.cred, "GET", "/api/v1/customers", "")
		if r.status != http.StatusTooManyRequests || r.header.Get("Retry-After") != "1" ||
			!strings.Contains(r.body, fmt.Sprintf("this client address has %d requests in flight", perAddr)) || !strings.Contains(r.body, "--max-concurrent-per-address") {
			t.Errorf("%s from the full address: got %s, want 429 naming the address cap of %d", c.who, r, perAddr)
		}
	}
	if r := callWithin(t, h, time.Second, keyB, "POST", "/api/v1/events", eventBody("b-1", "fab-1"), "X-Forwarded-For", "192.0.2.7"); r.status != http.StatusNoContent {
		t.Errorf("B's ingest from another address: got %s, want 204", r)
	}

	slow[0].conn.Close()
	waitInFlight(t, h, "a slot back", func(_, byAddr map[string]int, _ int) bool { return byAddr["127.0.0.1/32"] == perAddr-1 })
	if r := callWithin(t, h, time.Second, testAdminToken, "GET", "/api/v1/customers", ""); r.status != http.StatusOK {
		t.Errorf("admin read once a slot of its address is back: got %s, want 200", r)
	}
}

// When clients' slow requests fill all of the concurrency cap they may
// use, other clients get 503 and the admin is still served from the share
// kept for it.
func TestAdminServedWhenClientsFillTheServer(t *testing.T) {
	h := newAuthHarness(t, authOptions{configure: func(c *httpapi.Config) {
		c.MaxConcurrent = 8 // 7 for clients, 1 kept for admins
		c.MaxConcurrentPerCredential = 4
		c.MaxConcurrentPerAddress = -1
		c.MinBodyRate = -1
	}})
	twoCustomers(h)
	_, keyA := h.createKey(`{"scope":"ingest","customer":"contoso"}`)
	_, keyB := h.createKey(`{"scope":"ingest","customer":"fabrikam"}`)
	_, readB := h.createKey(`{"scope":"read","customer":"fabrikam"}`)
	for range 4 {
		openSlow(t, h, keyA, "POST", "/api/v1/events", cloudEvents)
	}
	for range 3 {
		openSlow(t, h, keyB, "POST", "/api/v1/events", cloudEvents)
	}
	waitInFlight(t, h, "7 client requests", func(_, _ map[string]int, tenants int) bool { return tenants == 7 })

	if r := callWithin(t, h, time.Second, readB, "GET", "/api/v1/customers/fabrikam", ""); r.status != http.StatusServiceUnavailable ||
		r.header.Get("Retry-After") != "1" || !strings.Contains(r.body, "client requests") {
		t.Errorf("a client's read with the clients' share full: got %s, want 503", r)
	}
	if r := callWithin(t, h, time.Second, testAdminToken, "GET", "/api/v1/customers", ""); r.status != http.StatusOK {
		t.Errorf("admin read with the clients' share full: got %s, want 200", r)
	}
}
