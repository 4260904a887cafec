package webhook

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/shopspring/decimal"

	"github.com/tally-metering/tally/internal/report"
)

// The Standard Webhooks specification's test vector.
const (
	vectorSecret    = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	vectorID        = "msg_p5jXN8AQM9LWM0D4loKWxJek"
	vectorTimestamp = "1614265330"
	vectorBody      = `{"test": 2432232314}`
	vectorSignature = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
)

var now = time.Date(2026, 11, 22, 10, 20, 0, 0, time.UTC)

func TestSignMatchesSpecification(t *testing.T) {
	key, err := parseSecret(vectorSecret)
	if err != nil {
		t.Fatal(err)
	}
	if got := sign(key, vectorID, vectorTimestamp, []byte(vectorBody)); got != vectorSignature {
		t.Errorf("sign = %s, want %s", got, vectorSignature)
	}
}

func TestVerify(t *testing.T) {
	signedAt := time.Unix(1614265330, 0)
	headers := func(id, ts, sig string) http.Header {
		h := http.Header{}
		for k, v := range map[string]string{HeaderID: id, HeaderTimestamp: ts, HeaderSignature: sig} {
			if v != "" {
				h.Set(k, v)
			}
		}
		return h
	}
	other := "whsec_" + strings.Repeat("QUJD", 8)
	tests := []struct {
		name   string
		secret string
		header http.Header
		body   string
		now    time.Time
		want   error // nil: valid
	}{
		{"valid", vectorSecret, headers(vectorID, vectorTimestamp, vectorSignature), vectorBody, signedAt, nil},
		{"one of several signatures", vectorSecret, headers(vectorID, vectorTimestamp, "v1,bm90IGl0 "+vectorSignature), vectorBody, signedAt, nil},
		{"within tolerance", vectorSecret, headers(vectorID, vectorTimestamp, vectorSignature), vectorBody, signedAt.Add(Tolerance), nil},
		{"tampered body", vectorSecret, headers(vectorID, vectorTimestamp, vectorSignature), `{"test": 2432232315}`, signedAt, ErrSignature},
		{"another id", vectorSecret, headers("msg_other", vectorTimestamp, vectorSignature), vectorBody, signedAt, ErrSignature},
		{"wrong secret", other, headers(vectorID, vectorTimestamp, vectorSignature), vectorBody, signedAt, ErrSignature},
		{"another version", vectorSecret, headers(vectorID, vectorTimestamp, "v1a"+vectorSignature[2:]), vectorBody, signedAt, ErrSignature},
		{"too old", vectorSecret, headers(vectorID, vectorTimestamp, vectorSignature), vectorBody, signedAt.Add(Tolerance + time.Second), ErrTimestamp},
		{"from the future", vectorSecret, headers(vectorID, vectorTimestamp, vectorSignature), vectorBody, signedAt.Add(-Tolerance - time.Second), ErrTimestamp},
		{"timestamp not a number", vectorSecret, headers(vectorID, "yesterday", vectorSignature), vectorBody, signedAt, ErrTimestamp},
		{"no signature", vectorSecret, headers(vectorID, vectorTimestamp, ""), vectorBody, signedAt, ErrMissingHeaders},
		{"no id", vectorSecret, headers("", vectorTimestamp, vectorSignature), vectorBody, signedAt, ErrMissingHeaders},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := VerifyAt(tt.secret, tt.header, []byte(tt.body), tt.now)
			if tt.want == nil && err != nil || tt.want != nil && !errors.Is(err, tt.want) {
				t.Errorf("VerifyAt = %v, want %v", err, tt.want)
			}
		})
	}
	if err := Verify("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", headers(vectorID, vectorTimestamp, vectorSignature), []byte(vectorBody)); err == nil || errors.Is(err, ErrSignature) {
		t.Errorf("Verify with a secret lacking whsec_ = %v, want a secret error", err)
	}
}

type receiver struct {
	mu       sync.Mutex
	requests []*http.Request
	bodies   [][]byte
	answer   func(w http.ResponseWriter, r *http.Request)
}

func (rc *receiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	rc.mu.Lock()
	rc.requests = append(rc.requests, r)
	rc.bodies = append(rc.bodies, body)
	answer := rc.answer
	rc.mu.Unlock()
	if answer != nil {
		answer(w, r)
	}
}

// got returns the requests and bodies received so far.
func (rc *receiver) got() ([]*http.Request, [][]byte) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]*http.Request(nil), rc.requests...), append([][]byte(nil), rc.bodies...)
}

func setup(t *testing.T, answer func(w http.ResponseWriter, r *http.Request)) (*Sender, *receiver) {
	t.Helper()
	rc := &receiver{answer: answer}
	srv := httptest.NewServer(rc)
	t.Cleanup(srv.Close)
	s, err := New(Config{URL: srv.URL + "/hooks/usage", Secret: vectorSecret, Timeout: 300 * time.Millisecond}, srv.Client())
	if err != nil {
		t.Fatal(err)
	}
	s.now = func() time.Time { return now }
	return s, rc
}

func testItem() report.Item {
	return report.Item{
		ID:        "webhook/sub_1/emails/2026-11-22T09:00:00Z",
		Resource:  report.Resource{CustomerID: "cus_1", CustomerKey: "acme", SubscriptionID: "sub_1", Subject: "eu-1", AzureResourceID: "not-for-webhooks"},
		Dimension: "emails",
		Hour:      time.Date(2026, 11, 22, 9, 0, 0, 0, time.UTC),
		Quantity:  decimal.RequireFromString("2.396000000000000000000001"),
		Attempt:   3,
	}
}

func TestSendSignedReport(t *testing.T) {
	s, rc := setup(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, `{"received":true}`)
	})
	it := testItem()
	rs, err := s.Send(t.Context(), []report.Item{it})
	if err != nil {
		t.Fatal(err)
	}
	want := []report.Result{{Outcome: report.Accepted, Code: "200", Response: json.RawMessage(`{"status":200,"body":{"received":true}}`)}}
	if diff := cmp.Diff(want, rs); diff != "" {
		t.Errorf("results (-want +got):\n%s", diff)
	}
	reqs, bodies := rc.got()
	if len(reqs) != 1 {
		t.Fatalf("%d requests, want 1", len(reqs))
	}
	req, body := reqs[0], bodies[0]
	if req.Method != "POST" || req.URL.Path != "/hooks/usage" || req.Header.Get("Content-Type") != "application/json" {
		t.Errorf("%s %s with Content-Type %q", req.Method, req.URL.Path, req.Header.Get("Content-Type"))
	}
	if got := req.Header.Get(HeaderID); got != it.ID {
		t.Errorf("webhook-id = %q, want %q", got, it.ID)
	}
	if got := req.Header.Get(HeaderTimestamp); got != fmt.Sprint(now.Unix()) {
		t.Errorf("webhook-timestamp = %q, want %d", got, now.Unix())
	}
	if err := VerifyAt(vectorSecret, req.Header, body, now.Add(time.Minute)); err != nil {
		t.Errorf("the receiver cannot verify the delivery: %v", err)
	}
	wantBody := `{"id":"webhook/sub_1/emails/2026-11-22T09:00:00Z","type":"usage",` +
		`"resource":{"customerId":"cus_1","customerKey":"acme","subscriptionId":"sub_1","subject":"eu-1"},` +
		`"dimension":"emails","hour":"2026-11-22T09:00:00Z","quantity":"2.396000000000000000000001","attempt":3}`
	if string(body) != wantBody {
		t.Errorf("body\n got %s\nwant %s", body, wantBody)
	}
	if bytes.Contains(body, []byte("whsec_")) || strings.Contains(fmt.Sprint(req.Header), "MfKQ9r8G") {
		t.Errorf("the secret travels with the delivery")
	}
}

// A correction (usage corrected downwards) is one signed report of type
// correction with a negative quantity, naming the hours it corrects.
func TestSendSignedCorrection(t *testing.T) {
	s, rc := setup(t, func(w http.ResponseWriter, r *http.Request) {})
	if !s.Capabilities().Negative {
		t.Fatal("the webhook target does not take corrections (negative quantities)")
	}
	it := testItem()
	it.ID, it.Hour = "rpt_correction", time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)
	it.Quantity, it.Late, it.LateFrom = decimal.RequireFromString("-60"), decimal.RequireFromString("-60"), []string{"2026-11-22T10:00:00Z"}
	rs, err := s.Send(t.Context(), []report.Item{it})
	if err != nil || len(rs) != 1 || rs[0].Outcome != report.Accepted {
		t.Fatalf("results %+v, %v", rs, err)
	}
	reqs, bodies := rc.got()
	if err := VerifyAt(vectorSecret, reqs[0].Header, bodies[0], now); err != nil {
		t.Errorf("the receiver cannot verify the correction: %v", err)
	}
	want := `{"id":"rpt_correction","type":"correction",` +
		`"resource":{"customerId":"cus_1","customerKey":"acme","subscriptionId":"sub_1","subject":"eu-1"},` +
		`"dimension":"emails","hour":"2026-11-22T12:00:00Z","quantity":"-60","late":"-60","lateFrom":["2026-11-22T10:00:00Z"],"attempt":3}`
	if string(bodies[0]) != want {
		t.Errorf("body\n got %s\nwant %s", bodies[0], want)
	}
}

func TestSendSameIDOnEveryAttempt(t *testing.T) {
	s, rc := setup(t, func(w http.ResponseWriter, r *http.Request) {})
	it := testItem()
	for attempt := 1; attempt <= 2; attempt++ {
		it.Attempt = attempt
		if _, err := s.Send(t.Context(), []report.Item{it}); err != nil {
			t.Fatal(err)
		}
	}
	reqs, bodies := rc.got()
	if a, b := reqs[0].Header.Get(HeaderID), reqs[1].Header.Get(HeaderID); a != b || a != it.ID {
		t.Errorf("webhook-ids %q and %q, want %q twice", a, b, it.ID)
	}
	if bytes.Equal(bodies[0], bodies[1]) {
		t.Errorf("the attempt is not in the body")
	}
}

func TestSendAnswers(t *testing.T) {
	tests := []struct {
		status     int
		header     map[string]string
		body       string
		outcome    report.Outcome // "": an error
		retryAfter time.Duration
		message    string
	}{
		{status: 200, outcome: report.Accepted},
		{status: 202, body: "queued", outcome: report.Accepted},
		{status: 204, outcome: report.Accepted},
		{status: 409, body: `{"error":"already have it"}`, outcome: report.Duplicate},
		{status: 400, body: "unknown dimension\nmore detail", outcome: report.Rejected, message: "unknown dimension"},
		{status: 404, outcome: report.Rejected},
		{status: 422, body: `{"error":"bad quantity"}`, outcome: report.Rejected, message: `{"error":"bad quantity"}`},
		{status: 308, header: map[string]string{"Location": "https://elsewhere.example/hook"}, outcome: report.Rejected, message: "redirect to https://elsewhere.example/hook not followed"},
		{status: 408},
		{status: 429, header: map[string]string{"Retry-After": "42"}, retryAfter: 42 * time.Second},
		{status: 429},
		{status: 500, body: "boom"},
		{status: 503, header: map[string]string{"Retry-After": now.Add(90 * time.Second).Format(http.TimeFormat)}, retryAfter: 90 * time.Second},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprint(tt.status), func(t *testing.T) {
			s, _ := setup(t, func(w http.ResponseWriter, r *http.Request) {
				for k, v := range tt.header {
					w.Header().Set(k, v)
				}
				w.WriteHeader(tt.status)
				fmt.Fprint(w, tt.body)
			})
			rs, err := s.Send(t.Context(), []report.Item{testItem()})
			if tt.outcome == "" {
				if err == nil {
					t.Fatalf("Send = %+v, want an error", rs)
				}
				if d, ok := report.RetryAfter(err); d != tt.retryAfter || ok != (tt.retryAfter != 0) {
					t.Errorf("RetryAfter = %s, %t; want %s", d, ok, tt.retryAfter)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			r := rs[0]
			if r.Outcome != tt.outcome || r.Code != fmt.Sprint(tt.status) {
				t.Errorf("result %s %s, want %s %d", r.Outcome, r.Code, tt.outcome, tt.status)
			}
			if !strings.HasPrefix(r.Message, tt.message) {
				t.Errorf("message %q, want %q", r.Message, tt.message)
			}
			var resp struct {
				Status int `json:"status"`
			}
			if err := json.Unmarshal(r.Response, &resp); err != nil || resp.Status != tt.status {
				t.Errorf("response %s: %v", r.Response, err)
			}
		})
	}
}

func TestSendTimeout(t *testing.T) {
	s, _ := setup(t, func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-time.After(10 * time.Second):
		}
	})
	began := time.Now()
	_, err := s.Send(t.Context(), []report.Item{testItem()})
	if err == nil {
		t.Fatal("Send succeeded past the timeout")
	}
	if time.Since(began) > 5*time.Second {
		t.Errorf("Send took %s with a 300ms timeout", time.Since(began))
	}
}

func TestSendConnectionRefused(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	srv.Close()
	s, err := New(Config{URL: srv.URL, Secret: vectorSecret}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Send(t.Context(), []report.Item{testItem()}); err == nil {
		t.Fatal("Send to a closed server succeeded")
	}
}

func TestSendSeveralAndInvalidItems(t *testing.T) {
	s, rc := setup(t, func(w http.ResponseWriter, r *http.Request) {})
	a, b, bad := testItem(), testItem(), testItem()
	b.ID += "-b"
	bad.ID = "line\nbreak"
	rs, err := s.Send(t.Context(), []report.Item{a, bad, b})
	if err != nil {
		t.Fatal(err)
	}
	got := []string{string(rs[0].Outcome), rs[1].Code, string(rs[2].Outcome)}
	if diff := cmp.Diff([]string{"accepted", CodeInvalidItem, "accepted"}, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	if reqs, _ := rc.got(); len(reqs) != 2 {
		t.Errorf("%d requests, want 2", len(reqs))
	}
}

func TestCapabilities(t *testing.T) {
	s, _ := setup(t, nil)
	if diff := cmp.Diff(report.Capabilities{MaxBatch: 1, Decimals: -1, Window: 0, Negative: true}, s.Capabilities()); diff != "" {
		t.Error(diff)
	}
}

func TestConfig(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		want []string // fields named in the error; none: valid
	}{
		{"valid", Config{URL: "https://hooks.example.com/usage", Secret: vectorSecret, Timeout: time.Second}, nil},
		{"empty", Config{}, []string{"url", "secret"}},
		{"relative URL", Config{URL: "/usage", Secret: vectorSecret}, []string{"url"}},
		{"no prefix", Config{URL: "https://x.example", Secret: "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"}, []string{"secret"}},
		{"not base64", Config{URL: "https://x.example", Secret: "whsec_not base64!"}, []string{"secret"}},
		{"too short", Config{URL: "https://x.example", Secret: "whsec_c2hvcnQ="}, []string{"secret"}},
		{"negative timeout", Config{URL: "https://x.example", Secret: vectorSecret, Timeout: -1}, []string{"timeout"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Validate()
			if len(tt.want) == 0 {
				if err != nil {
					t.Fatalf("Validate = %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate = nil, want errors for %v", tt.want)
			}
			for _, f := range tt.want {
				if !strings.Contains(err.Error(), f+":") {
					t.Errorf("error %q does not name %s", err, f)
				}
			}
			if tt.cfg.Secret != "" && strings.Contains(err.Error(), strings.TrimPrefix(tt.cfg.Secret, "whsec_")) {
				t.Errorf("error %q holds the secret", err)
			}
			if _, err := New(tt.cfg, nil); err == nil {
				t.Error("New accepted an invalid config")
			}
		})
	}

	cfg := Config{URL: "https://user:pw@hooks.example.com/usage", Secret: vectorSecret}
	s, err := New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	var logged bytes.Buffer
	slog.New(slog.NewTextHandler(&logged, nil)).Info("target", "config", cfg, "sender", s)
	for how, out := range map[string]string{
		"%v": fmt.Sprintf("%v", cfg), "%+v": fmt.Sprintf("%+v", cfg), "%#v": fmt.Sprintf("%#v", cfg),
		"sender": fmt.Sprintf("%+v", s), "slog": logged.String(),
	} {
		if strings.Contains(out, "MfKQ9r8G") || strings.Contains(out, ":pw@") {
			t.Errorf("%s shows a secret: %s", how, out)
		}
	}
}

func TestPostJSON(t *testing.T) {
	tests := []struct {
		status     int
		retryAfter string
		ok         bool
		retry      bool // the error asks for a delay
	}{
		{status: 200, ok: true},
		{status: 204, ok: true},
		{status: 409, ok: true},
		{status: 400},
		{status: 503, retryAfter: "5", retry: true},
		{status: 500},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprint(tt.status), func(t *testing.T) {
			s, rc := setup(t, func(w http.ResponseWriter, r *http.Request) {
				if tt.retryAfter != "" {
					w.Header().Set("Retry-After", tt.retryAfter)
				}
				w.WriteHeader(tt.status)
			})
			alert := map[string]string{"kind": "deadline", "report": "r1"}
			err := s.PostJSON(t.Context(), "alert_deadline_r1", alert)
			if (err == nil) != tt.ok {
				t.Fatalf("PostJSON = %v, want ok %t", err, tt.ok)
			}
			if _, ok := report.RetryAfter(err); ok != tt.retry {
				t.Errorf("PostJSON = %v: asks for a delay %t, want %t", err, ok, tt.retry)
			}
			reqs, bodies := rc.got()
			if len(reqs) != 1 {
				t.Fatalf("%d requests", len(reqs))
			}
			if reqs[0].Header.Get(HeaderID) != "alert_deadline_r1" || string(bodies[0]) != `{"kind":"deadline","report":"r1"}` {
				t.Errorf("id %q, body %s", reqs[0].Header.Get(HeaderID), bodies[0])
			}
			if err := VerifyAt(vectorSecret, reqs[0].Header, bodies[0], now); err != nil {
				t.Errorf("unverifiable: %v", err)
			}
		})
	}
	s, rc := setup(t, nil)
	if err := s.PostJSON(t.Context(), "bad\nid", 1); err == nil {
		t.Error("PostJSON took an id that cannot be a header")
	}
	if err := s.PostJSON(t.Context(), "x", func() {}); err == nil {
		t.Error("PostJSON took a value JSON cannot encode")
	}
	if reqs, _ := rc.got(); len(reqs) != 0 {
		t.Errorf("%d requests for invalid posts", len(reqs))
	}
}

// FuzzVerify checks that Verify never panics on what a receiver may get,
// and never accepts a body other than the one signed.
func FuzzVerify(f *testing.F) {
	f.Add(vectorID, vectorTimestamp, vectorSignature, []byte(vectorBody))
	f.Add("", "-1", "v1,", []byte{})
	f.Add("id", "99999999999999999999", "v1,=== v2,abc", []byte("{}"))
	signedAt := time.Unix(1614265330, 0)
	f.Fuzz(func(t *testing.T, id, ts, sig string, body []byte) {
		h := http.Header{}
		h.Set(HeaderID, id)
		h.Set(HeaderTimestamp, ts)
		h.Set(HeaderSignature, sig)
		err := VerifyAt(vectorSecret, h, body, signedAt)
		if err == nil && (id != vectorID || ts != vectorTimestamp || string(body) != vectorBody) {
			t.Errorf("accepted a forgery: id %q, timestamp %q, signature %q, body %q", id, ts, sig, body)
		}
	})
}

// The correction shown in docs/reporting.md is what the sender posts and
// verifies under the specification's test secret.
func TestDocumentedCorrection(t *testing.T) {
	const (
		id   = "rpt_95dbbb84ba96321aea79d364abab3506"
		ts   = "1772334301"
		sig  = "v1,mL4JO2eY5Vabm7lGuaMitUud0MhgbaINuPpZNgKNVdE="
		body = `{"id":"rpt_95dbbb84ba96321aea79d364abab3506","type":"correction","resource":{"customerId":"c-acme","customerKey":"acme","subscriptionId":"s-s1"},"dimension":"api_calls","hour":"2026-03-01T03:00:00Z","quantity":"-60","late":"-60","lateFrom":["2026-03-01T01:00:00Z"],"attempt":1}`
	)
	at := time.Unix(1772334301, 0)
	if got := report.ReportID("hooks", "s-s1", "", "api_calls", time.Date(2026, 3, 1, 3, 0, 0, 0, time.UTC)); got != id {
		t.Errorf("report id %s, documented %s", got, id)
	}
	s, rc := setup(t, func(w http.ResponseWriter, r *http.Request) {})
	s.now = func() time.Time { return at }
	it := report.Item{ID: id, Resource: report.Resource{CustomerID: "c-acme", CustomerKey: "acme", SubscriptionID: "s-s1"}, Dimension: "api_calls",
		Hour: time.Date(2026, 3, 1, 3, 0, 0, 0, time.UTC), Quantity: decimal.RequireFromString("-60"), Late: decimal.RequireFromString("-60"),
		LateFrom: []string{"2026-03-01T01:00:00Z"}, Attempt: 1}
	if _, err := s.Send(t.Context(), []report.Item{it}); err != nil {
		t.Fatal(err)
	}
	reqs, bodies := rc.got()
	if string(bodies[0]) != body || reqs[0].Header.Get(HeaderTimestamp) != ts || reqs[0].Header.Get(HeaderSignature) != sig {
		t.Errorf("posted %s with %s %s, documented %s with %s %s", bodies[0], reqs[0].Header.Get(HeaderTimestamp), reqs[0].Header.Get(HeaderSignature), body, ts, sig)
	}
	h := http.Header{}
	h.Set(HeaderID, id)
	h.Set(HeaderTimestamp, ts)
	h.Set(HeaderSignature, sig)
	if err := VerifyAt(vectorSecret, h, []byte(body), at); err != nil {
		t.Errorf("the documented correction does not verify: %v", err)
	}
}
