package azure

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/shopspring/decimal"

	"github.com/tally-metering/tally/internal/report"
	"github.com/tally-metering/tally/internal/report/azure/azuretest"
)

const (
	tenant   = "contoso.onmicrosoft.com"
	clientID = "11111111-2222-3333-4444-555555555555"
	secret   = "s3cr3t-Value~that-must-not-leak"

	saas1   = "aaaaaaaa-0000-0000-0000-000000000001"
	saas2   = "aaaaaaaa-0000-0000-0000-000000000002"
	managed = "/subscriptions/bbbb/resourceGroups/mrg-tally-1"
	idle    = "aaaaaaaa-0000-0000-0000-0000000000ff"
	foreign = "aaaaaaaa-0000-0000-0000-0000000000ee"
)

// start is the emulator's and the Sender's time at the beginning of each
// test: 10:20, so 09:00 is the last closed hour.
var start = time.Date(2026, 11, 22, 10, 20, 0, 0, time.UTC)

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

type fixture struct {
	clock *clock
	emu   *azuretest.Emulator
	srv   *httptest.Server
	s     *Sender
}

// setup serves an emulator knowing a few resources and returns a Sender
// for it; mutate adjusts the Sender's configuration.
func setup(t *testing.T, mutate func(*Config)) *fixture {
	t.Helper()
	c := &clock{t: start}
	emu := azuretest.New(c.Now)
	emu.AddClient(tenant, clientID, secret)
	dims := []string{"emails", "sms"}
	emu.AddResource(azuretest.Resource{ID: saas1, PlanID: "pro", Dimensions: dims})
	emu.AddResource(azuretest.Resource{ID: saas2, PlanID: "pro", Dimensions: dims})
	emu.AddResource(azuretest.Resource{ID: managed, PlanID: "managed", Dimensions: dims})
	emu.AddResource(azuretest.Resource{ID: idle, PlanID: "pro", Dimensions: dims, Inactive: true})
	emu.AddResource(azuretest.Resource{ID: foreign, PlanID: "pro", Dimensions: dims, Owner: "another-app"})
	srv := httptest.NewServer(emu)
	t.Cleanup(srv.Close)
	cfg := Config{
		BaseURL:      srv.URL,
		AuthorityURL: srv.URL,
		TenantID:     tenant,
		ClientID:     clientID,
		ClientSecret: secret,
		Timeout:      2 * time.Second,
	}
	if mutate != nil {
		mutate(&cfg)
	}
	s, err := New(cfg, srv.Client())
	if err != nil {
		t.Fatal(err)
	}
	s.now = c.Now
	return &fixture{clock: c, emu: emu, srv: srv, s: s}
}

func hour(h int) time.Time { return time.Date(2026, 11, 22, h, 0, 0, 0, time.UTC) }

func item(resource, dim string, h time.Time, qty string) report.Item {
	r := report.Resource{CustomerID: "cus_1", CustomerKey: "acme", SubscriptionID: "sub_1", AzurePlanID: "pro"}
	if strings.HasPrefix(resource, "/") {
		r.AzureResourceURI, r.AzurePlanID = resource, "managed"
	} else {
		r.AzureResourceID = resource
	}
	return report.Item{
		ID:        fmt.Sprintf("azure/%s/%s/%s", resource, dim, h.Format(time.RFC3339)),
		Resource:  r,
		Dimension: dim,
		Hour:      h,
		Quantity:  decimal.RequireFromString(qty),
		Attempt:   1,
	}
}

func key(resource, dim string, h time.Time) azuretest.Key {
	return azuretest.Key{Resource: resource, Dimension: dim, Hour: h}
}

func usage(kv ...any) map[azuretest.Key]decimal.Decimal {
	m := map[azuretest.Key]decimal.Decimal{}
	for i := 0; i < len(kv); i += 2 {
		m[kv[i].(azuretest.Key)] = decimal.RequireFromString(kv[i+1].(string))
	}
	return m
}

var cmpDecimal = cmp.Comparer(func(a, b decimal.Decimal) bool { return a.Equal(b) })

func outcomes(rs []report.Result) []string {
	var out []string
	for _, r := range rs {
		out = append(out, string(r.Outcome)+" "+r.Code)
	}
	return out
}

func TestSendAccepted(t *testing.T) {
	f := setup(t, nil)
	items := []report.Item{
		item(saas1, "emails", hour(9), "2.396"),
		item(managed, "sms", hour(9), "17"),
		item(saas1, "emails", hour(8), "0.000001"),
	}
	rs, err := f.s.Send(t.Context(), items)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"accepted Accepted", "accepted Accepted", "accepted Accepted"}
	if diff := cmp.Diff(want, outcomes(rs)); diff != "" {
		t.Errorf("outcomes (-want +got):\n%s", diff)
	}
	for i, r := range rs {
		var echo struct {
			UsageEventID string          `json:"usageEventId"`
			Dimension    string          `json:"dimension"`
			Quantity     json.RawMessage `json:"quantity"`
		}
		if err := json.Unmarshal(r.Response, &echo); err != nil {
			t.Fatalf("result %d: response %s: %v", i, r.Response, err)
		}
		if echo.UsageEventID == "" || echo.Dimension != items[i].Dimension || string(echo.Quantity) != items[i].Quantity.String() {
			t.Errorf("result %d: response %s does not echo the event", i, r.Response)
		}
	}
	wantUsage := usage(
		key(saas1, "emails", hour(9)), "2.396",
		key(managed, "sms", hour(9)), "17",
		key(saas1, "emails", hour(8)), "0.000001",
	)
	if diff := cmp.Diff(wantUsage, f.emu.Usage(), cmpDecimal); diff != "" {
		t.Errorf("usage (-want +got):\n%s", diff)
	}
	if got := f.emu.Calls(); got != 1 {
		t.Errorf("calls = %d, want 1", got)
	}
}

func TestSendItemStatuses(t *testing.T) {
	f := setup(t, nil)
	if _, err := f.s.Send(t.Context(), []report.Item{item(saas1, "emails", hour(9), "5")}); err != nil {
		t.Fatal(err)
	}
	wrongPlan := item(saas2, "emails", hour(9), "1")
	wrongPlan.Resource.AzurePlanID = "basic"
	tooPrecise := item(saas2, "sms", hour(9), "1.0000001")
	noResource := item(saas2, "sms", hour(8), "1")
	noResource.Resource.AzureResourceID = ""
	items := []report.Item{
		item(saas1, "emails", hour(9), "5"),                         // the same again
		item(saas1, "emails", hour(9), "6"),                         // the same hour, another quantity
		item(saas1, "sms", start.Add(-24*time.Hour-time.Hour), "1"), // 25 hours ago
		item(saas1, "sms", hour(11), "1"),                           // in the future
		item("aaaaaaaa-0000-0000-0000-00000000dead", "emails", hour(9), "1"),
		item(saas2, "calls", hour(9), "1"),
		item(idle, "emails", hour(9), "1"),
		item(foreign, "emails", hour(9), "1"),
		wrongPlan,
		item(saas2, "emails", hour(7), "0"),
		tooPrecise,
		noResource,
		item(saas2, "sms", hour(9), "3"),
	}
	rs, err := f.s.Send(t.Context(), items)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"duplicate Duplicate",
		"duplicate Duplicate",
		"expired Expired",
		"rejected BadArgument",
		"rejected ResourceNotFound",
		"rejected InvalidDimension",
		"rejected ResourceNotActive",
		"rejected ResourceNotAuthorized",
		"rejected BadArgument",
		"rejected InvalidItem",
		"rejected InvalidItem",
		"rejected InvalidItem",
		"accepted Accepted",
	}
	if diff := cmp.Diff(want, outcomes(rs)); diff != "" {
		t.Fatalf("outcomes (-want +got):\n%s", diff)
	}
	if strings.Contains(rs[0].Message, "already holds") {
		t.Errorf("duplicate of the same quantity: message %q claims another quantity", rs[0].Message)
	}
	if !strings.Contains(rs[1].Message, "already holds quantity 5") {
		t.Errorf("duplicate of another quantity: message %q does not say what Azure holds", rs[1].Message)
	}
	for i, r := range rs {
		if i >= 9 && i <= 11 {
			if r.Response != nil || r.Message == "" {
				t.Errorf("item %d rejected before sending: response %s, message %q", i, r.Response, r.Message)
			}
			continue
		}
		if !json.Valid(r.Response) {
			t.Errorf("item %d: response %q is not JSON", i, r.Response)
		}
		if r.Outcome == report.Rejected && r.Message == "" {
			t.Errorf("item %d: rejected without a message", i)
		}
	}
	wantUsage := usage(key(saas1, "emails", hour(9)), "5", key(saas2, "sms", hour(9)), "3")
	if diff := cmp.Diff(wantUsage, f.emu.Usage(), cmpDecimal); diff != "" {
		t.Errorf("usage (-want +got):\n%s", diff)
	}
}

func TestSendOnlyInvalidItemsCallsNothing(t *testing.T) {
	f := setup(t, nil)
	rs, err := f.s.Send(t.Context(), []report.Item{item(saas1, "emails", hour(9), "-1")})
	if err != nil {
		t.Fatal(err)
	}
	if rs[0].Outcome != report.Rejected || f.emu.Calls() != 0 || f.emu.TokenCalls() != 0 {
		t.Errorf("outcome %s, %d calls, %d token calls; want rejected without calls", rs[0].Outcome, f.emu.Calls(), f.emu.TokenCalls())
	}
}

func TestSendSplitsBatches(t *testing.T) {
	f := setup(t, nil)
	var items []report.Item
	for h := range 24 {
		for _, r := range []string{saas1, saas2} {
			items = append(items, item(r, "emails", start.Truncate(time.Hour).Add(-time.Duration(h)*time.Hour), "1"))
		}
	}
	rs, err := f.s.Send(t.Context(), items)
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range rs {
		if r.Outcome != report.Accepted {
			t.Errorf("item %d: %s %s %s", i, r.Outcome, r.Code, r.Message)
		}
	}
	if got := f.emu.Calls(); got != 2 {
		t.Errorf("calls = %d, want 2 for 48 items", got)
	}
	if got := len(f.emu.Usage()); got != 48 {
		t.Errorf("emulator holds %d hours, want 48", got)
	}
}

// TestSendMatchesResultsByEvent checks that results are paired with their
// events by resource, dimension and hour, not only by position.
func TestSendMatchesResultsByEvent(t *testing.T) {
	items := []report.Item{
		item(saas1, "emails", hour(9), "1"),
		item(saas2, "emails", hour(9), "2"),
		item(saas2, "sms", hour(8), "3"),
	}
	answer := `{"count":2,"result":[
		{"status":"Expired","resourceId":"` + strings.ToUpper(saas2) + `","dimension":"emails","effectiveStartTime":"2026-11-22T09:00:00","quantity":2.0},
		{"status":"Accepted","usageEventId":"e1","resourceId":"` + saas1 + `","dimension":"emails","effectiveStartTime":"2026-11-22T09:00:00.0000000Z","quantity":1.0}]}`
	results := make([]report.Result, len(items))
	if err := (&Sender{}).readResults(items, []int{0, 1, 2}, []byte(answer), results); err != nil {
		t.Fatal(err)
	}
	want := []string{"accepted Accepted", "expired Expired", "retry NoResult"}
	if diff := cmp.Diff(want, outcomes(results)); diff != "" {
		t.Errorf("outcomes (-want +got):\n%s", diff)
	}
	if !strings.Contains(string(results[0].Response), `"usageEventId":"e1"`) {
		t.Errorf("response of item 0 = %s", results[0].Response)
	}
}

func TestSendFaults(t *testing.T) {
	it := item(saas1, "emails", hour(9), "4")
	tests := []struct {
		name       string
		fault      azuretest.Fault
		retryAfter time.Duration // 0: no RetryAfterError
		accepted   bool          // the emulator holds the event after the failed call
	}{
		{name: "500", fault: azuretest.Fault{Status: 500}},
		{name: "503 with Retry-After", fault: azuretest.Fault{Status: 503, RetryAfter: 7 * time.Second}, retryAfter: 7 * time.Second},
		{name: "429 with Retry-After", fault: azuretest.Fault{Status: 429, RetryAfter: 30 * time.Second}, retryAfter: 30 * time.Second},
		{name: "429 without Retry-After", fault: azuretest.Fault{Status: 429}},
		{name: "404", fault: azuretest.Fault{Status: 404}},
		{name: "timeout before processing", fault: azuretest.Fault{Delay: 10 * time.Second}},
		{name: "timeout after accepting", fault: azuretest.Fault{DelayAfterAccept: 10 * time.Second}, accepted: true},
		{name: "connection dropped after accepting", fault: azuretest.Fault{Drop: true}, accepted: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := setup(t, func(c *Config) { c.Timeout = 300 * time.Millisecond })
			f.emu.Inject(tt.fault)
			rs, err := f.s.Send(t.Context(), []report.Item{it})
			if err == nil {
				t.Fatalf("Send = %v, want an error", outcomes(rs))
			}
			if !strings.HasPrefix(err.Error(), "azure batch usage: ") {
				t.Errorf("error %q is not wrapped once with the operation", err)
			}
			d, ok := report.RetryAfter(err)
			if tt.retryAfter == 0 && ok || d != tt.retryAfter {
				t.Errorf("RetryAfter = %s, %t; want %s", d, ok, tt.retryAfter)
			}
			if got := len(f.emu.Usage()) == 1; got != tt.accepted {
				t.Errorf("emulator holds the event: %t, want %t", got, tt.accepted)
			}
			// Sending again settles it either way.
			rs, err = f.s.Send(t.Context(), []report.Item{it})
			if err != nil {
				t.Fatal(err)
			}
			want := report.Accepted
			if tt.accepted {
				want = report.Duplicate
			}
			if rs[0].Outcome != want {
				t.Errorf("second send: %s %s, want %s", rs[0].Outcome, rs[0].Code, want)
			}
			if diff := cmp.Diff(usage(key(saas1, "emails", hour(9)), "4"), f.emu.Usage(), cmpDecimal); diff != "" {
				t.Errorf("usage (-want +got):\n%s", diff)
			}
		})
	}
}

func TestSendWholeBatchRejected(t *testing.T) {
	f := setup(t, nil)
	f.emu.Inject(azuretest.Fault{Status: 400})
	items := []report.Item{item(saas1, "emails", hour(9), "1"), item(saas2, "emails", hour(9), "1")}
	rs, err := f.s.Send(t.Context(), items)
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range rs {
		if r.Outcome != report.Rejected || r.Code != "BadArgument" || !json.Valid(r.Response) || r.Message != "injected fault" {
			t.Errorf("item %d: %+v", i, r)
		}
	}
}

func TestSendRefreshesRefusedToken(t *testing.T) {
	f := setup(t, nil)
	send := func(h int) error {
		_, err := f.s.Send(t.Context(), []report.Item{item(saas1, "emails", hour(h), "1")})
		return err
	}
	if err := send(9); err != nil {
		t.Fatal(err)
	}
	f.emu.RevokeTokens()
	if err := send(8); err != nil {
		t.Fatalf("after revoking tokens: %v", err)
	}
	if calls, tokens := f.emu.Calls(), f.emu.TokenCalls(); calls != 3 || tokens != 2 {
		t.Errorf("%d calls, %d token calls; want 3 and 2 (one refused call, one refresh)", calls, tokens)
	}

	// Refused again with a fresh token: an error, after exactly one
	// refresh.
	f.emu.Inject(azuretest.Fault{Status: 403}, azuretest.Fault{Status: 401})
	err := send(7)
	if err == nil || !strings.Contains(err.Error(), "credentials refused") {
		t.Fatalf("Send = %v, want credentials refused", err)
	}
	if _, ok := report.RetryAfter(err); ok {
		t.Errorf("refused credentials ask for a delay: %v", err)
	}
	if calls, tokens := f.emu.Calls(), f.emu.TokenCalls(); calls != 5 || tokens != 3 {
		t.Errorf("%d calls, %d token calls; want 5 and 3", calls, tokens)
	}
}

func TestTokenCachedUntilShortlyBeforeExpiry(t *testing.T) {
	f := setup(t, nil)
	send := func() {
		t.Helper()
		if _, err := f.s.Send(t.Context(), []report.Item{item(saas1, "emails", f.clock.Now().Truncate(time.Hour), "1")}); err != nil {
			t.Fatal(err)
		}
	}
	send()
	f.clock.Add(54 * time.Minute) // the token lives an hour; 6 minutes left
	send()
	if got := f.emu.TokenCalls(); got != 1 {
		t.Fatalf("token calls = %d, want 1 (cached)", got)
	}
	f.clock.Add(2 * time.Minute) // 4 minutes left: within the margin
	send()
	if got := f.emu.TokenCalls(); got != 2 {
		t.Fatalf("token calls = %d, want 2 (renewed before expiry)", got)
	}
	if calls := f.emu.Calls(); calls != 3 {
		t.Errorf("calls = %d, want 3: no call was refused", calls)
	}
}

func TestTokenErrors(t *testing.T) {
	t.Run("wrong secret", func(t *testing.T) {
		f := setup(t, func(c *Config) { c.ClientSecret = "not-the-" + secret })
		_, err := f.s.Send(t.Context(), []report.Item{item(saas1, "emails", hour(9), "1")})
		if err == nil || !strings.Contains(err.Error(), "invalid_client") {
			t.Fatalf("Send = %v, want invalid_client", err)
		}
		if strings.Contains(err.Error(), secret) {
			t.Errorf("error %q holds the secret", err)
		}
		if f.emu.Calls() != 0 {
			t.Errorf("a batch was sent without a token")
		}
	})
	t.Run("token endpoint unavailable", func(t *testing.T) {
		f := setup(t, nil)
		f.emu.InjectToken(azuretest.Fault{Status: 503, RetryAfter: 5 * time.Second})
		_, err := f.s.Send(t.Context(), []report.Item{item(saas1, "emails", hour(9), "1")})
		if d, ok := report.RetryAfter(err); !ok || d != 5*time.Second {
			t.Fatalf("Send = %v, want a retry after 5s", err)
		}
		if _, err := f.s.Send(t.Context(), []report.Item{item(saas1, "emails", hour(9), "1")}); err != nil {
			t.Fatalf("once the token endpoint is back: %v", err)
		}
	})
}

func TestManagedIdentity(t *testing.T) {
	for _, id := range []string{"", "mi-client"} {
		t.Run("clientId="+id, func(t *testing.T) {
			f := setup(t, func(c *Config) {
				*c = Config{BaseURL: c.BaseURL, ManagedIdentity: true, ClientID: id, ManagedIdentityURL: c.BaseURL + azuretest.ManagedIdentityPath}
			})
			f.emu.EnableManagedIdentity("mi-client")
			rs, err := f.s.Send(t.Context(), []report.Item{item(saas1, "emails", hour(9), "1")})
			if err != nil {
				t.Fatal(err)
			}
			if rs[0].Outcome != report.Accepted || f.emu.TokenCalls() != 1 {
				t.Errorf("%s after %d token calls", rs[0].Outcome, f.emu.TokenCalls())
			}
		})
	}
	t.Run("other identity", func(t *testing.T) {
		f := setup(t, func(c *Config) {
			*c = Config{BaseURL: c.BaseURL, ManagedIdentity: true, ClientID: "someone-else", ManagedIdentityURL: c.BaseURL + azuretest.ManagedIdentityPath}
		})
		f.emu.EnableManagedIdentity("mi-client")
		if _, err := f.s.Send(t.Context(), []report.Item{item(saas1, "emails", hour(9), "1")}); err == nil || !strings.Contains(err.Error(), "managed identity token") {
			t.Fatalf("Send = %v, want a managed identity token error", err)
		}
	})
}

func TestSendHonoursCallerCancellation(t *testing.T) {
	f := setup(t, nil)
	f.emu.Inject(azuretest.Fault{Delay: 10 * time.Second})
	ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
	defer cancel()
	began := time.Now()
	if _, err := f.s.Send(ctx, []report.Item{item(saas1, "emails", hour(9), "1")}); err == nil {
		t.Fatal("Send succeeded past the caller's deadline")
	}
	if time.Since(began) > 5*time.Second {
		t.Errorf("Send ignored the caller's deadline")
	}
}

// TestExactlyOnceUnderFaults sends twenty hours of three resources through every
// fault with a plain retry loop, as the runner would, and checks that
// the emulator ends up holding exactly the expected quantity for every
// hour, each once.
func TestExactlyOnceUnderFaults(t *testing.T) {
	f := setup(t, func(c *Config) { c.Timeout = 300 * time.Millisecond })
	f.clock.Add(-10 * time.Hour) // 00:20, so the hours reported span midnight
	want := map[azuretest.Key]decimal.Decimal{}
	var pending []report.Item
	for h := range 20 {
		at := f.clock.Now().Truncate(time.Hour).Add(-time.Duration(h+1) * time.Hour)
		for i, r := range []string{saas1, saas2, managed} {
			for j, dim := range []string{"emails", "sms"} {
				q := decimal.New(int64(1000*h+10*i+j+1), -3) // distinct per hour
				it := item(r, dim, at, q.String())
				pending = append(pending, it)
				want[key(r, dim, at)] = q
			}
		}
	}
	f.emu.Inject(
		azuretest.Fault{Status: 500},
		azuretest.Fault{Drop: true},
		azuretest.Fault{Status: 429, RetryAfter: time.Second},
		azuretest.Fault{DelayAfterAccept: 5 * time.Second},
		azuretest.Fault{},
		azuretest.Fault{Delay: 5 * time.Second},
		azuretest.Fault{Status: 503},
		azuretest.Fault{Drop: true},
		azuretest.Fault{Status: 403},
		azuretest.Fault{DelayAfterAccept: 5 * time.Second},
	)
	f.emu.InjectToken(azuretest.Fault{Status: 500})
	var failures, duplicates int
	for round := 0; len(pending) > 0; round++ {
		if round == 60 {
			t.Fatalf("%d items still pending after %d rounds", len(pending), round)
		}
		f.clock.Add(time.Minute)
		batch := pending[:min(MaxBatch, len(pending))]
		rs, err := f.s.Send(t.Context(), batch)
		if err != nil {
			failures++
			continue // the same items again
		}
		var again []report.Item
		for i, r := range rs {
			switch r.Outcome {
			case report.Accepted:
			case report.Duplicate:
				duplicates++
				if strings.Contains(r.Message, "already holds") {
					t.Errorf("item %s: %s", batch[i].ID, r.Message)
				}
			case report.Retry:
				again = append(again, batch[i])
			default:
				t.Fatalf("item %s: %s %s %s", batch[i].ID, r.Outcome, r.Code, r.Message)
			}
		}
		pending = append(again, pending[len(batch):]...)
	}
	if diff := cmp.Diff(want, f.emu.Usage(), cmpDecimal); diff != "" {
		t.Errorf("usage (-want +got):\n%s", diff)
	}
	if got := len(f.emu.Events()); got != len(want) {
		t.Errorf("emulator accepted %d events for %d hours", got, len(want))
	}
	if failures < 9 || duplicates == 0 {
		t.Errorf("%d failed calls and %d duplicates: the faults were not exercised", failures, duplicates)
	}
}

func TestConfigValidate(t *testing.T) {
	valid := Config{TenantID: tenant, ClientID: clientID, ClientSecret: secret}
	tests := []struct {
		name   string
		mutate func(*Config)
		want   []string // fields named in the error; none: valid
	}{
		{name: "client credentials", mutate: func(*Config) {}},
		{name: "managed identity", mutate: func(c *Config) { *c = Config{ManagedIdentity: true} }},
		{name: "user-assigned identity", mutate: func(c *Config) {
			*c = Config{ManagedIdentity: true, ClientID: "x", ManagedIdentityURL: "http://localhost:1/token"}
		}},
		{name: "empty", mutate: func(c *Config) { *c = Config{} }, want: []string{"tenantId", "clientId", "clientSecret"}},
		{name: "bad URLs", mutate: func(c *Config) {
			c.BaseURL, c.AuthorityURL = "marketplaceapi.microsoft.com", "https://user:pw@login.microsoftonline.com"
		}, want: []string{"baseURL", "authorityURL"}},
		{name: "negative timeout", mutate: func(c *Config) { c.Timeout = -time.Second }, want: []string{"timeout"}},
		{name: "tenant with a slash", mutate: func(c *Config) { c.TenantID = "a/b" }, want: []string{"tenantId"}},
		{name: "secret with managed identity", mutate: func(c *Config) { c.ManagedIdentity = true }, want: []string{"tenantId", "clientSecret"}},
		{name: "identity URL without managed identity", mutate: func(c *Config) { c.ManagedIdentityURL = "http://localhost/x" }, want: []string{"managedIdentityURL"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := valid
			tt.mutate(&c)
			err := c.Validate()
			if len(tt.want) == 0 {
				if err != nil {
					t.Fatalf("Validate = %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate = nil, want errors for %v", tt.want)
			}
			for _, field := range tt.want {
				if !strings.Contains(err.Error(), field+":") {
					t.Errorf("error %q does not name %s", err, field)
				}
			}
			if strings.Contains(err.Error(), secret) {
				t.Errorf("error %q holds the secret", err)
			}
			if _, nerr := New(c, nil); nerr == nil {
				t.Errorf("New accepted an invalid config")
			}
		})
	}
}

func TestSecretsNeverShown(t *testing.T) {
	f := setup(t, nil)
	cfg := f.s.cfg
	var logged bytes.Buffer
	slog.New(slog.NewJSONHandler(&logged, nil)).Info("target", "config", cfg, "sender", f.s)
	shown := map[string]string{
		"%v":   fmt.Sprintf("%v", cfg),
		"%+v":  fmt.Sprintf("%+v", cfg),
		"%#v":  fmt.Sprintf("%#v", cfg),
		"*%v":  fmt.Sprintf("%v", &cfg),
		"s%v":  fmt.Sprintf("%v", f.s),
		"s%+v": fmt.Sprintf("%+v", f.s),
		"slog": logged.String(),
	}
	for how, s := range shown {
		if strings.Contains(s, secret) {
			t.Errorf("%s shows the secret: %s", how, s)
		}
	}
	if !strings.Contains(shown["%v"], "[redacted]") || !strings.Contains(shown["slog"], "[redacted]") {
		t.Errorf("the secret is not marked as redacted: %s / %s", shown["%v"], shown["slog"])
	}
	rs, err := f.s.Send(t.Context(), []report.Item{item(saas1, "emails", hour(9), "1"), item(saas1, "emails", hour(9), "1")})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rs {
		if bytes.Contains(r.Response, []byte(secret)) || bytes.Contains(r.Response, []byte("Bearer")) {
			t.Errorf("response holds credentials: %s", r.Response)
		}
	}
}

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)
	tests := []struct {
		in   string
		want time.Duration
		ok   bool
	}{
		{"", 0, false},
		{"120", 2 * time.Minute, true},
		{"-3", 0, true},
		{"Sun, 22 Nov 2026 10:00:30 GMT", 30 * time.Second, true},
		{"Sun, 22 Nov 2026 09:00:00 GMT", 0, true},
		{"soon", 0, false},
	}
	for _, tt := range tests {
		got, ok := report.ParseRetryAfter(tt.in, now)
		if got != tt.want || ok != tt.ok {
			t.Errorf("ParseRetryAfter(%q) = %s, %t; want %s, %t", tt.in, got, ok, tt.want, tt.ok)
		}
	}
}

func TestConcurrentSendsShareOneToken(t *testing.T) {
	f := setup(t, nil)
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for i := range 8 {
		wg.Go(func() {
			_, err := f.s.Send(t.Context(), []report.Item{item(saas1, "emails", hour(i), "1")})
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if got := f.emu.TokenCalls(); got != 1 {
		t.Errorf("token calls = %d, want 1", got)
	}
	if got := len(f.emu.Usage()); got != 8 {
		t.Errorf("emulator holds %d hours, want 8", got)
	}
}

// FuzzReadResults feeds arbitrary batch answers to the decoder: it never
// panics, and when it takes an answer every item gets an outcome, with
// Azure's own JSON as the response of every item it answered.
func FuzzReadResults(f *testing.F) {
	f.Add([]byte(`{"count":1,"result":[{"status":"Accepted","resourceId":"` + saas1 + `","dimension":"emails","effectiveStartTime":"2026-11-22T09:00:00Z","quantity":1}]}`))
	f.Add([]byte(`{"count":2,"result":[{"status":"Duplicate","error":{"code":"Conflict","additionalInfo":{"acceptedMessage":{"quantity":"x"}}}},{"status":"Weird"}]}`))
	f.Add([]byte(`{"result":null}`))
	f.Add([]byte(`[]`))
	items := []report.Item{item(saas1, "emails", hour(9), "1"), item(managed, "sms", hour(8), "2.5")}
	f.Fuzz(func(t *testing.T, answer []byte) {
		results := make([]report.Result, len(items))
		if err := (&Sender{}).readResults(items, []int{0, 1}, answer, results); err != nil {
			return
		}
		for i, r := range results {
			switch r.Outcome {
			case report.Accepted, report.Duplicate, report.Expired, report.Rejected:
				if !json.Valid(r.Response) {
					t.Errorf("item %d: %s with response %q", i, r.Outcome, r.Response)
				}
			case report.Retry:
			default:
				t.Errorf("item %d: outcome %q", i, r.Outcome)
			}
		}
	})
}

// BenchmarkSendBatch sends full batches of new hours to the emulator: one
// op is one batchUsageEvent call of MaxBatch events.
func BenchmarkSendBatch(b *testing.B) {
	c := &clock{t: start}
	emu := azuretest.New(c.Now)
	emu.AddClient(tenant, clientID, secret)
	const resources = 4000
	for i := range resources {
		emu.AddResource(azuretest.Resource{ID: fmt.Sprintf("r-%d", i), PlanID: "pro", Dimensions: []string{"emails"}})
	}
	srv := httptest.NewServer(emu)
	defer srv.Close()
	s, err := New(Config{BaseURL: srv.URL, AuthorityURL: srv.URL, TenantID: tenant, ClientID: clientID, ClientSecret: secret}, srv.Client())
	if err != nil {
		b.Fatal(err)
	}
	s.now = c.Now
	n := 0
	b.ResetTimer()
	for b.Loop() {
		items := make([]report.Item, MaxBatch)
		for j := range items {
			h := start.Truncate(time.Hour).Add(-time.Duration(1+n/resources%23) * time.Hour)
			items[j] = item(fmt.Sprintf("r-%d", n%resources), "emails", h, "1.5")
			n++
		}
		rs, err := s.Send(b.Context(), items)
		if err != nil {
			b.Fatal(err)
		}
		if rs[0].Outcome != report.Accepted && rs[0].Outcome != report.Duplicate {
			b.Fatalf("%s %s %s", rs[0].Outcome, rs[0].Code, rs[0].Message)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(n), "µs/event")
}
