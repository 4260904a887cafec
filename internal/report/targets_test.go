package report_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/shopspring/decimal"

	"github.com/tally-metering/tally/internal/billing"
	"github.com/tally-metering/tally/internal/report"
	"github.com/tally-metering/tally/internal/report/webhook"
	"github.com/tally-metering/tally/internal/store"
	"github.com/tally-metering/tally/internal/store/sqlite"
)

// fakeTarget follows the marketplaces' rules: first write wins per
// resource, dimension and hour; hours older than the window expire.
type fakeTarget struct {
	mu     sync.Mutex
	now    func() time.Time
	caps   report.Capabilities
	got    map[string]decimal.Decimal
	faults []string
	// advance moves the scenario's clock (a slow call).
	advance func(time.Duration)
	// calls counts Send calls in the current run; stop ends the run's
	// context past maxCallsPerRun.
	calls int
	stop  func()
	// refuseCancel is how many more cancellations are refused.
	refuseCancel int
}

// maxCallsPerRun is more Send calls than any scenario's run needs.
const maxCallsPerRun = 1000

func newFakeTarget(now func() time.Time, caps report.Capabilities) *fakeTarget {
	return &fakeTarget{now: now, caps: caps, got: map[string]decimal.Decimal{}}
}

func (f *fakeTarget) inject(kind string, n int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if kind == "refuse-cancel" {
		f.refuseCancel += n
		return
	}
	for range n {
		f.faults = append(f.faults, kind)
	}
}

func key(res, dim string, hour time.Time) string {
	return res + "|" + dim + "|" + hour.UTC().Format(time.RFC3339)
}

func resourceOf(r report.Resource) string {
	if r.AzureResourceID != "" {
		return r.AzureResourceID
	}
	if r.AzureResourceURI != "" {
		return r.AzureResourceURI
	}
	if r.StripeCustomerID != "" {
		return r.StripeCustomerID
	}
	return r.AWSCustomerIdentifier
}

func (f *fakeTarget) held(res, dim string, hour time.Time) (decimal.Decimal, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	v, ok := f.got[key(res, dim, hour)]
	return v, ok
}

func (f *fakeTarget) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.got)
}

func (f *fakeTarget) Capabilities() report.Capabilities { return f.caps }

func (f *fakeTarget) Send(ctx context.Context, items []report.Item) ([]report.Result, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fault := ""
	if len(f.faults) > 0 {
		fault, f.faults = f.faults[0], f.faults[1:]
	}
	if f.calls++; f.calls > maxCallsPerRun && f.stop != nil {
		f.stop()
	}
	if fault == "slow" {
		f.advance(time.Minute)
		return nil, fmt.Errorf("503 service unavailable after a minute")
	}
	if fault == "5xx" {
		return nil, fmt.Errorf("503 service unavailable")
	}
	out := make([]report.Result, len(items))
	for i, it := range items {
		if !it.Quantity.IsPositive() {
			out[i] = report.Result{Outcome: report.Rejected, Code: "InvalidQuantity"}
			continue
		}
		if f.caps.Decimals >= 0 && !it.Quantity.Equal(it.Quantity.Truncate(f.caps.Decimals)) {
			out[i] = report.Result{Outcome: report.Rejected, Code: "InvalidQuantity", Message: "too many decimals: " + it.Quantity.String()}
			continue
		}
		switch {
		case fault == "reject":
			out[i] = report.Result{Outcome: report.Rejected, Code: "ResourceNotFound"}
			continue
		case fault == "expire" || f.now().Sub(it.Hour) > f.caps.Window:
			out[i] = report.Result{Outcome: report.Expired, Code: "Expired"}
			continue
		}
		k := key(resourceOf(it.Resource), it.Dimension, it.Hour)
		if _, dup := f.got[k]; dup {
			out[i] = report.Result{Outcome: report.Duplicate, Code: "Duplicate"}
			continue
		}
		f.got[k] = it.Quantity
		out[i] = report.Result{Outcome: report.Accepted, Code: "Accepted", Response: json.RawMessage(`{"status":"Accepted"}`)}
	}
	if fault == "drop" {
		return nil, fmt.Errorf("connection reset after the target accepted")
	}
	return out, nil
}

var _ store.Store = (*sqlite.DB)(nil)

// holder is a target as the expectations see it.
type holder interface {
	held(res, dim string, hour time.Time) (decimal.Decimal, bool)
	count() int
}

const hookSecret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"

// hookReceiver is a webhook receiver as a vendor would write one: it
// verifies every delivery's signature, takes each webhook-id once (409 for
// a second delivery) and keeps what it took per customer, dimension and
// hour.
type hookReceiver struct {
	t    *testing.T
	url  string
	mu   sync.Mutex
	seen map[string]bool
	got  map[string]decimal.Decimal
	byTy map[string]int
}

func newHookReceiver(t *testing.T) *hookReceiver {
	h := &hookReceiver{t: t, seen: map[string]bool{}, got: map[string]decimal.Decimal{}, byTy: map[string]int{}}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	h.url = srv.URL
	return h
}

func (h *hookReceiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	if err := webhook.VerifyAt(hookSecret, r.Header, body, time.Now()); err != nil {
		h.t.Errorf("webhook receiver: %v", err)
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	var p webhook.Payload
	if err := json.Unmarshal(body, &p); err != nil {
		h.t.Errorf("webhook receiver: %v", err)
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	q, err := decimal.NewFromString(p.Quantity)
	hour, herr := time.Parse(time.RFC3339, p.Hour)
	if err != nil || herr != nil || p.ID != r.Header.Get(webhook.HeaderID) {
		h.t.Errorf("webhook receiver: bad payload %s", body)
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.seen[p.ID] {
		w.WriteHeader(http.StatusConflict)
		return
	}
	h.seen[p.ID] = true
	h.byTy[p.Type]++
	k := key(p.Resource.CustomerKey, p.Dimension, hour)
	h.got[k] = h.got[k].Add(q)
}

func (h *hookReceiver) held(res, dim string, hour time.Time) (decimal.Decimal, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	v, ok := h.got[key(res, dim, hour)]
	return v, ok
}

func (h *hookReceiver) count() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.got)
}

func (h *hookReceiver) posts(typ string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.byTy[typ]
}

// cancelingTarget is a fakeTarget that takes back accepted reports within
// 24 hours of accepting them, as Stripe's meter event adjustments do.
type cancelingTarget struct{ *fakeTarget }

func (c cancelingTarget) CancelWindow() time.Duration { return 24 * time.Hour }

func (c cancelingTarget) Cancel(_ context.Context, it report.Item) (report.Result, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	k := key(resourceOf(it.Resource), it.Dimension, it.Hour)
	if _, ok := c.got[k]; !ok {
		return report.Result{Outcome: report.Rejected, Code: "resource_missing"}, nil
	}
	if c.refuseCancel > 0 {
		c.refuseCancel--
		return report.Result{Outcome: report.Rejected, Code: "invalid_request_error"}, nil
	}
	delete(c.got, k)
	return report.Result{Outcome: report.Accepted, Code: "200"}, nil
}

// failingStore fails GetCustomer on demand, as a store does under a
// transient error.
type failingStore struct {
	store.Store
	failCustomer int
}

func (f *failingStore) GetCustomer(ctx context.Context, idOrKey string) (billing.Customer, error) {
	if f.failCustomer > 0 {
		f.failCustomer--
		return billing.Customer{}, fmt.Errorf("injected store error")
	}
	return f.Store.GetCustomer(ctx, idOrKey)
}

// crashingOutbox fails RecordDeliveries on demand without storing
// anything: what the store sees when tally dies between sending reports and
// recording the answer.
type crashingOutbox struct {
	report.Outbox
	failRecord int
}

func (o *crashingOutbox) RecordDeliveries(ctx context.Context, ds []report.Delivery, now time.Time) error {
	if o.failRecord > 0 {
		o.failRecord--
		return fmt.Errorf("injected crash before recording %d deliveries", len(ds))
	}
	return o.Outbox.RecordDeliveries(ctx, ds, now)
}
