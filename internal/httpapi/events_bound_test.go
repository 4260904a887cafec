package httpapi_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tally-metering/tally/internal/auth"
	"github.com/tally-metering/tally/internal/httpapi"
	"github.com/tally-metering/tally/internal/ingest"
	"github.com/tally-metering/tally/internal/store"
	"github.com/tally-metering/tally/internal/store/sqlite"
	"github.com/tally-metering/tally/internal/usage"
)

// listCountingStore counts ListEvents calls and the events they return.
type listCountingStore struct {
	*sqlite.DB
	calls, rows atomic.Int64
}

func (s *listCountingStore) ListEvents(ctx context.Context, f store.EventFilter) ([]store.StoredEvent, error) {
	evs, err := s.DB.ListEvents(ctx, f)
	s.calls.Add(1)
	s.rows.Add(int64(len(evs)))
	return evs, err
}

// TestBoundEventListReadsOnce: a customer-bound key listing events must
// not cost one listing of up to `limit` events per subject of its
// customer (a customer with many deployments turned one request of
// limit=1000 into many thousands of events held in memory).
func TestBoundEventListReadsOnce(t *testing.T) {
	ctx := context.Background()
	st, err := sqlite.Open(ctx, t.TempDir(), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	cs := &listCountingStore{DB: st}
	clock := &apiClock{t: apiStart}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	reg := prometheus.NewRegistry()
	pipe := ingest.New(st, clock.Now, log, ingest.NewMetrics(reg), ingest.Config{})
	defer pipe.Close()
	chain := &auth.Chain{Admin: auth.NewAdminToken(testAdminToken), Keys: &auth.Keys{Store: st, Now: clock.Now}, Now: clock.Now}
	srv := httptest.NewServer(httpapi.New(httpapi.Config{Store: cs, Pipeline: pipe, Usage: &usage.Service{Store: st}, Auth: chain,
		Now: clock.Now, Log: log, Registry: reg, RateLimit: -1}))
	defer srv.Close()
	h := &authHarness{t: t, srv: srv}
	const subjects = 20
	var subs []string
	for i := range subjects {
		subs = append(subs, fmt.Sprintf("dep-%d", i))
	}
	b, _ := json.Marshal(subs)
	h.must("POST", "/api/v1/customers", `{"key":"big","name":"Big","currency":"EUR","subjects":`+string(b)+`}`, http.StatusCreated, nil)
	for i, sub := range subs {
		for j := range 3 {
			h.must("POST", "/api/v1/events", eventBody(fmt.Sprintf("e-%d-%d", i, j), sub), http.StatusNoContent, nil)
		}
	}
	_, key := h.createKey(`{"scope":"read","customer":"big"}`)
	cs.calls.Store(0)
	cs.rows.Store(0)
	var evs []json.RawMessage
	r := h.call(key, "GET", "/api/v1/events?limit=5", "")
	if err := json.Unmarshal([]byte(r.body), &evs); err != nil || len(evs) != 5 {
		t.Fatalf("events: %s", r)
	}
	if c, n := cs.calls.Load(), cs.rows.Load(); c != 1 || n > 5 {
		t.Errorf("listing 5 events of a customer with %d subjects read the store %d times, %d events; want once, at most 5", subjects, c, n)
	}
}
