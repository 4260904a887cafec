package loadgen

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestRunQueries(t *testing.T) {
	var mu sync.Mutex
	subjects := map[string]bool{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/api/v1/meters/m1/query" || r.Header.Get("Authorization") != "Bearer tok" {
			http.Error(w, "bad request "+r.URL.Path, http.StatusBadRequest)
			return
		}
		q := r.URL.Query()
		if q.Get("windowSize") != "HOUR" || q.Get("from") != "2026-10-01T00:00:00Z" || q.Get("to") != "2026-10-31T00:00:00Z" {
			http.Error(w, "bad query "+r.URL.RawQuery, http.StatusBadRequest)
			return
		}
		mu.Lock()
		subjects[q.Get("subject")] = true
		mu.Unlock()
		_, _ = w.Write([]byte(`{"data":[{"windowStart":"a"},{"windowStart":"b"}]}`))
	}))
	defer srv.Close()
	from := time.Date(2026, 10, 1, 0, 0, 0, 0, time.UTC)
	res, err := RunQueries(context.Background(), QueryConfig{URL: srv.URL, Meter: "m1", Token: "tok", Subjects: 5,
		From: from, To: from.Add(30 * 24 * time.Hour), WindowSize: "HOUR", Queries: 50, Seed: 3})
	if err != nil {
		t.Fatal(err)
	}
	if res.Queries != 50 || res.Rows != 2 || res.P50ms <= 0 || res.P99ms < res.P50ms || res.MaxMs < res.P99ms {
		t.Fatalf("result = %+v", res)
	}
	for s := range subjects {
		if !strings.HasPrefix(s, "subject-") {
			t.Fatalf("queried subject %q", s)
		}
	}
	if len(subjects) < 2 {
		t.Fatalf("queried only %v", subjects)
	}
	if _, err := RunQueries(context.Background(), QueryConfig{URL: srv.URL, Meter: "other", Subjects: 1, From: from, To: from.Add(time.Hour), Queries: 1}); err == nil {
		t.Fatal("a 400 answer must fail the benchmark")
	}
}
