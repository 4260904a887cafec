package stripe_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/shopspring/decimal"
	"go.yaml.in/yaml/v3"

	"github.com/tally-metering/tally/internal/report"
	"github.com/tally-metering/tally/internal/report/stripe"
)

const apiKey = "sk_test_tallySecretKey4242"

var hour11 = time.Date(2026, 11, 22, 11, 0, 0, 0, time.UTC)

func item(id, customer, event string, q int64) report.Item {
	return report.Item{
		ID:        id,
		Resource:  report.Resource{CustomerID: "c-" + customer, StripeCustomerID: customer},
		Dimension: event,
		Hour:      hour11,
		Quantity:  decimal.NewFromInt(q),
		Attempt:   1,
	}
}

func newSender(t *testing.T, cfg stripe.Config) *stripe.Sender {
	t.Helper()
	if cfg.APIKey == "" {
		cfg.APIKey = apiKey
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = 2 * time.Second
	}
	s, err := stripe.New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func noKey(t *testing.T, key string, rs ...report.Result) {
	t.Helper()
	for _, r := range rs {
		if strings.Contains(r.Message, key) || bytes.Contains(r.Response, []byte(key)) {
			t.Errorf("result %+v holds the API key", r)
		}
		if len(r.Response) > 0 && !json.Valid(r.Response) {
			t.Errorf("response %q is not JSON", r.Response)
		}
	}
}

func TestCapabilities(t *testing.T) {
	s := newSender(t, stripe.Config{BaseURL: "http://127.0.0.1:1"})
	want := report.Capabilities{MaxBatch: 1, Decimals: 0, Window: 35 * 24 * time.Hour, DedupeWindow: 24 * time.Hour}
	if got := s.Capabilities(); got != want {
		t.Errorf("Capabilities() = %+v, want %+v", got, want)
	}
}

// TestStripeMock runs against the real stripe-mock server, which checks
// every request against Stripe's OpenAPI specification.
func TestStripeMock(t *testing.T) {
	base := stripeMock(t)
	s := newSender(t, stripe.Config{BaseURL: base})
	ctx := context.Background()

	t.Run("meter event", func(t *testing.T) {
		rs, err := s.Send(ctx, []report.Item{item("tally:stripe:sub_1:api_calls:2026-11-22T11", "cus_123", "api_calls", 25)})
		if err != nil {
			t.Fatal(err)
		}
		if len(rs) != 1 || rs[0].Outcome != report.Accepted || rs[0].Code != "200" {
			t.Fatalf("results = %+v", rs)
		}
		var ev struct {
			Object string `json:"object"`
		}
		if err := json.Unmarshal(rs[0].Response, &ev); err != nil || ev.Object != "billing.meter_event" {
			t.Errorf("response %s (%v), want a billing.meter_event", rs[0].Response, err)
		}
		noKey(t, apiKey, rs...)
	})
	t.Run("cancel", func(t *testing.T) {
		r, err := s.Cancel(ctx, item("tally:stripe:sub_1:api_calls:2026-11-22T11", "cus_123", "api_calls", 25))
		if err != nil {
			t.Fatal(err)
		}
		var adj struct {
			Object string `json:"object"`
			Type   string `json:"type"`
		}
		if err := json.Unmarshal(r.Response, &adj); err != nil || r.Outcome != report.Accepted || adj.Object != "billing.meter_event_adjustment" || adj.Type != "cancel" {
			t.Errorf("Cancel = %+v (%v)", r, err)
		}
	})
	t.Run("refused key", func(t *testing.T) {
		const live = "sk_live_tallyLiveSecret9999"
		s := newSender(t, stripe.Config{BaseURL: base, APIKey: live})
		rs, err := s.Send(ctx, []report.Item{item("r1", "cus_123", "api_calls", 1)})
		if err != nil {
			t.Fatal(err)
		}
		if rs[0].Outcome != report.Rejected || rs[0].Code != "401" {
			t.Errorf("result = %+v, want rejected 401", rs[0])
		}
		noKey(t, live, rs...)
	})
}

// fake is a Stripe stand-in for what stripe-mock does not do: it keeps
// meter events, refuses a second event with a known identifier as Stripe
// does, and injects faults.
type fake struct {
	t   *testing.T
	key string

	mu       sync.Mutex
	faults   []string
	events   map[string]url.Values // by identifier
	requests []*http.Request
	forms    []url.Values
}

func newFake(t *testing.T) (*fake, *httptest.Server) {
	f := &fake{t: t, key: apiKey, events: map[string]url.Values{}}
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	return f, srv
}

func (f *fake) inject(faults ...string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.faults = append(f.faults, faults...)
}

func (f *fake) calls() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.requests)
}

func stripeError(w http.ResponseWriter, status int, body map[string]string) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Request-Id", "req_fake")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]any{"error": body})
}

func (f *fake) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		f.t.Errorf("parse form: %v", err)
	}
	f.mu.Lock()
	f.requests = append(f.requests, r)
	f.forms = append(f.forms, r.PostForm)
	var fault string
	if len(f.faults) > 0 {
		fault, f.faults = f.faults[0], f.faults[1:]
	}
	f.mu.Unlock()

	if auth := r.Header.Get("Authorization"); auth != "Bearer "+f.key {
		stripeError(w, 401, map[string]string{"type": "invalid_request_error", "message": "Invalid API Key provided: " + strings.TrimPrefix(auth, "Bearer ")})
		return
	}
	switch fault {
	case "500":
		stripeError(w, 500, map[string]string{"type": "api_error", "message": "An unknown error occurred"})
		return
	case "429":
		w.Header().Set("Retry-After", "3")
		stripeError(w, 429, map[string]string{"type": "invalid_request_error", "code": "rate_limit", "message": "Too many requests hit the API too quickly."})
		return
	case "409":
		stripeError(w, 409, map[string]string{"type": "idempotency_error", "message": "There is currently another in-progress request using this Idempotent Key."})
		return
	case "400-customer":
		stripeError(w, 400, map[string]string{"type": "invalid_request_error", "code": "resource_missing", "param": "payload[stripe_customer_id]", "message": "No such customer: 'cus_x'"})
		return
	case "400-timestamp":
		stripeError(w, 400, map[string]string{"type": "invalid_request_error", "param": "timestamp", "message": "Timestamp must be within the past 35 calendar days."})
		return
	case "400-idempotency":
		stripeError(w, 400, map[string]string{"type": "idempotency_error", "message": "Keys for idempotent requests can only be used with the same parameters they were first used with."})
		return
	case "html-502":
		w.WriteHeader(502)
		fmt.Fprint(w, "<html>bad gateway</html>")
		return
	}

	if r.URL.Path != "/v1/billing/meter_events" {
		stripeError(w, 404, map[string]string{"type": "invalid_request_error", "message": "Unrecognized request URL"})
		return
	}
	id := r.PostForm.Get("identifier")
	f.mu.Lock()
	_, dup := f.events[id]
	if !dup {
		f.events[id] = r.PostForm
	}
	f.mu.Unlock()
	if dup {
		stripeError(w, 400, map[string]string{"type": "invalid_request_error", "message": "An event already exists with identifier " + id + "."})
		return
	}
	switch fault {
	case "drop-after":
		conn, _, err := w.(http.Hijacker).Hijack()
		if err == nil {
			conn.Close()
		}
		return
	case "slow-after":
		select {
		case <-time.After(2 * time.Second):
		case <-r.Context().Done():
			return
		}
	}
	ts, _ := strconv.ParseInt(r.PostForm.Get("timestamp"), 10, 64)
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{
		"object": "billing.meter_event", "event_name": r.PostForm.Get("event_name"), "identifier": id,
		"created": ts, "timestamp": ts, "livemode": false,
		"payload": map[string]string{"stripe_customer_id": r.PostForm.Get("payload[stripe_customer_id]"), "value": r.PostForm.Get("payload[value]")},
	})
}

func TestSendRequest(t *testing.T) {
	f, srv := newFake(t)
	f.key = apiKey
	s := newSender(t, stripe.Config{BaseURL: srv.URL})
	long := strings.Repeat("x", 120)
	items := []report.Item{item("tally:sub_1:api_calls:2026-11-22T11", "cus_A", "api_calls", 42), item(long, "cus_B", "api_calls", 7)}
	items[1].Attempt = 3
	for _, it := range items {
		rs, err := s.Send(context.Background(), []report.Item{it})
		if err != nil || rs[0].Outcome != report.Accepted {
			t.Fatalf("Send = %+v, %v", rs, err)
		}
	}
	want := []map[string]string{
		{"event_name": "api_calls", "identifier": "tally:sub_1:api_calls:2026-11-22T11", "payload[stripe_customer_id]": "cus_A", "payload[value]": "42", "timestamp": strconv.FormatInt(hour11.Unix(), 10)},
		{"event_name": "api_calls", "identifier": stripe.EventIdentifier(long), "payload[stripe_customer_id]": "cus_B", "payload[value]": "7", "timestamp": strconv.FormatInt(hour11.Unix(), 10)},
	}
	for i, w := range want {
		got := map[string]string{}
		for k := range w {
			got[k] = f.forms[i].Get(k)
		}
		if diff := cmp.Diff(w, got); diff != "" {
			t.Errorf("request %d (-want +got):\n%s", i, diff)
		}
	}
	if id := stripe.EventIdentifier(long); len(id) > 100 || id == stripe.EventIdentifier(long+"y") {
		t.Errorf("EventIdentifier(long) = %q: longer than 100 or not distinct", id)
	}
	if got, want := f.requests[1].Header.Get("Idempotency-Key"), "tally-"+stripe.EventIdentifier(long)+"-a3"; got != want {
		t.Errorf("Idempotency-Key = %q, want %q", got, want)
	}
	if got := f.requests[0].Header.Get("Stripe-Version"); got == "" {
		t.Error("no Stripe-Version header")
	}
}

func TestCustomPayloadKeys(t *testing.T) {
	f, srv := newFake(t)
	s := newSender(t, stripe.Config{BaseURL: srv.URL, CustomerPayloadKey: "customer", ValuePayloadKey: "emails"})
	if _, err := s.Send(context.Background(), []report.Item{item("r1", "cus_A", "emails_sent", 3)}); err != nil {
		t.Fatal(err)
	}
	if got := f.forms[0]; got.Get("payload[customer]") != "cus_A" || got.Get("payload[emails]") != "3" || got.Has("payload[value]") {
		t.Errorf("form = %v", got)
	}
}

func TestSendAnswers(t *testing.T) {
	for _, tc := range []struct {
		name       string
		fault      string
		before     bool // the same event was sent before
		want       report.Outcome
		code       string
		wantErr    bool
		retryAfter time.Duration
	}{
		{name: "accepted", want: report.Accepted, code: "200"},
		{name: "duplicate identifier", before: true, want: report.Duplicate, code: "400"},
		{name: "idempotency error", fault: "400-idempotency", want: report.Duplicate, code: "400"},
		{name: "timestamp too old", fault: "400-timestamp", want: report.Expired, code: "400"},
		{name: "unknown customer", fault: "400-customer", want: report.Rejected, code: "resource_missing"},
		{name: "rate limited", fault: "429", wantErr: true, retryAfter: 3 * time.Second},
		{name: "server error", fault: "500", wantErr: true},
		{name: "concurrent request", fault: "409", wantErr: true},
		{name: "bad gateway page", fault: "html-502", wantErr: true},
		{name: "dropped after accepting", fault: "drop-after", wantErr: true},
		{name: "timeout after accepting", fault: "slow-after", wantErr: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, srv := newFake(t)
			s := newSender(t, stripe.Config{BaseURL: srv.URL, Timeout: 300 * time.Millisecond})
			it := item("tally:sub_1:api_calls:2026-11-22T11", "cus_A", "api_calls", 5)
			if tc.before {
				if _, err := s.Send(context.Background(), []report.Item{it}); err != nil {
					t.Fatal(err)
				}
			}
			f.inject(tc.fault)
			rs, err := s.Send(context.Background(), []report.Item{it})
			if tc.wantErr {
				if err == nil {
					t.Fatalf("Send = %+v, want an error", rs)
				}
				if strings.Contains(err.Error(), apiKey) {
					t.Errorf("error holds the key: %v", err)
				}
				if d, ok := report.RetryAfter(err); tc.retryAfter != 0 && (!ok || d != tc.retryAfter) {
					t.Errorf("RetryAfter = %v %v, want %v", d, ok, tc.retryAfter)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if rs[0].Outcome != tc.want || rs[0].Code != tc.code {
				t.Errorf("result = %v %s %q, want %v %s", rs[0].Outcome, rs[0].Code, rs[0].Message, tc.want, tc.code)
			}
			if tc.want != report.Accepted && rs[0].Message == "" {
				t.Error("no message")
			}
			noKey(t, apiKey, rs...)
		})
	}
}

func TestSendRejectsLocally(t *testing.T) {
	f, srv := newFake(t)
	s := newSender(t, stripe.Config{BaseURL: srv.URL})
	noCustomer := item("r1", "", "api_calls", 1)
	fraction := item("r2", "cus_A", "api_calls", 1)
	fraction.Quantity = decimal.RequireFromString("2.5")
	for _, it := range []report.Item{noCustomer, fraction} {
		rs, err := s.Send(context.Background(), []report.Item{it})
		if err != nil || rs[0].Outcome != report.Rejected {
			t.Errorf("Send(%s) = %+v, %v; want rejected", it.ID, rs, err)
		}
	}
	if n := f.calls(); n != 0 {
		t.Errorf("calls = %d, want 0", n)
	}
}

func TestRefusedKeyIsRedacted(t *testing.T) {
	f, srv := newFake(t)
	f.key = "sk_test_another"
	var logs bytes.Buffer
	s, err := stripe.New(context.Background(), stripe.Config{APIKey: apiKey, BaseURL: srv.URL},
		stripe.WithLogger(slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))))
	if err != nil {
		t.Fatal(err)
	}
	rs, err := s.Send(context.Background(), []report.Item{item("r1", "cus_A", "api_calls", 1)})
	if err != nil {
		t.Fatal(err)
	}
	if rs[0].Outcome != report.Rejected || rs[0].Code != "401" || !strings.Contains(rs[0].Message, "sk_test_[redacted]") {
		t.Errorf("result = %+v", rs[0])
	}
	noKey(t, apiKey, rs...)
	if strings.Contains(logs.String(), apiKey) {
		t.Errorf("logs hold the key:\n%s", logs.String())
	}
	if logs.Len() == 0 {
		t.Error("stripe-go logged nothing through the logger")
	}
}

func TestLaterItemsRetryAfterTransientFailure(t *testing.T) {
	f, srv := newFake(t)
	s := newSender(t, stripe.Config{BaseURL: srv.URL})
	f.inject("", "500")
	rs, err := s.Send(context.Background(), []report.Item{item("r1", "cus_A", "api_calls", 1), item("r2", "cus_B", "api_calls", 2), item("r3", "cus_C", "api_calls", 3)})
	if err != nil {
		t.Fatal(err)
	}
	var got []report.Outcome
	for _, r := range rs {
		got = append(got, r.Outcome)
	}
	if diff := cmp.Diff([]report.Outcome{report.Accepted, report.Retry, report.Retry}, got); diff != "" {
		t.Errorf("outcomes (-want +got):\n%s", diff)
	}
}

// TestRetryLoop sends reports as the runner does while the fake injects
// every fault: in the end Stripe holds each report's event exactly once.
func TestRetryLoop(t *testing.T) {
	f, srv := newFake(t)
	s := newSender(t, stripe.Config{BaseURL: srv.URL, Timeout: 200 * time.Millisecond})
	var pending []report.Item
	want := map[string]string{}
	for i := range 12 {
		it := item(fmt.Sprintf("tally:sub_%d:api_calls:2026-11-22T11", i), fmt.Sprintf("cus_%d", i%4), "api_calls", int64(i+1))
		pending = append(pending, it)
		want[it.ID] = strconv.Itoa(i + 1)
	}
	f.inject("drop-after", "500", "slow-after", "429", "", "html-502", "drop-after", "409", "slow-after")
	for round := 0; len(pending) > 0; round++ {
		if round > 10 {
			t.Fatalf("%d reports still pending", len(pending))
		}
		var next []report.Item
		for _, it := range pending {
			rs, err := s.Send(context.Background(), []report.Item{it})
			if err != nil {
				it.Attempt++
				next = append(next, it)
				continue
			}
			switch rs[0].Outcome {
			case report.Accepted, report.Duplicate:
			default:
				t.Fatalf("%s: %+v", it.ID, rs[0])
			}
		}
		pending = next
	}
	got := map[string]string{}
	f.mu.Lock()
	for id, form := range f.events {
		got[id] = form.Get("payload[value]")
	}
	f.mu.Unlock()
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Stripe holds (-want +got):\n%s", diff)
	}
}

func TestConfig(t *testing.T) {
	err := stripe.Config{APIKey: "pk_test_public", BaseURL: "ftp://x", Timeout: -1}.Validate()
	for _, want := range []string{"apiKey", "baseURL", "timeout"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate() = %v, want a mention of %s", err, want)
		}
	}
	if err := (stripe.Config{APIKey: "rk_live_x"}).Validate(); err != nil {
		t.Errorf("restricted key: %v", err)
	}
	cfg := stripe.Config{APIKey: apiKey, BaseURL: "https://api.stripe.com"}
	var buf bytes.Buffer
	slog.New(slog.NewJSONHandler(&buf, nil)).Info("config", "target", cfg)
	for _, s := range []string{cfg.String(), fmt.Sprintf("%v", cfg), fmt.Sprintf("%#v", cfg), buf.String()} {
		if strings.Contains(s, apiKey) || strings.Contains(s, "4242") {
			t.Errorf("%q shows the key", s)
		}
	}
	if _, err := stripe.New(context.Background(), stripe.Config{APIKey: "bogus" + apiKey}); err == nil || strings.Contains(err.Error(), apiKey) {
		t.Errorf("New with a bad key = %v", err)
	}
}

func TestConfigYAML(t *testing.T) {
	var cfg stripe.Config
	src := "apiKey: sk_test_x\nbaseURL: http://127.0.0.1:12111\ntimeout: 5s\ncustomerPayloadKey: customer\nvaluePayloadKey: emails\n"
	if err := yaml.Unmarshal([]byte(src), &cfg); err != nil {
		t.Fatal(err)
	}
	want := stripe.Config{APIKey: "sk_test_x", BaseURL: "http://127.0.0.1:12111", Timeout: 5 * time.Second, CustomerPayloadKey: "customer", ValuePayloadKey: "emails"}
	if cfg != want {
		t.Errorf("decoded %#v, want %#v", cfg, want)
	}
}
