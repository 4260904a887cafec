package loadgen

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"slices"
	"time"
)

// QueryConfig describes a query benchmark: Queries GET requests to a meter's
// query endpoint, each for one random subject over [From, To).
type QueryConfig struct {
	URL, Meter, Token string
	Subjects          int
	From, To          time.Time
	WindowSize        string // "" for one total
	Queries           int
	Seed              int64
}

// Validate joins every field error.
func (c QueryConfig) Validate() error {
	var errs []error
	if c.URL == "" {
		errs = append(errs, errors.New("url: required"))
	}
	if c.Meter == "" {
		errs = append(errs, errors.New("meter: required"))
	}
	if c.Subjects < 1 {
		errs = append(errs, errors.New("subjects: must be at least 1"))
	}
	if c.Queries < 1 {
		errs = append(errs, errors.New("queries: must be at least 1"))
	}
	if !c.From.Before(c.To) {
		errs = append(errs, errors.New("from: must be before to"))
	}
	return errors.Join(errs...)
}

// QueryResult is a query benchmark's outcome.
type QueryResult struct {
	Queries int     `json:"queries"`
	P50ms   float64 `json:"p50_ms"`
	P99ms   float64 `json:"p99_ms"`
	MaxMs   float64 `json:"max_ms"`
	Rows    int     `json:"rows_last"`
}

// RunQueries runs the query benchmark one query at a time and reports
// latency percentiles. Any non-200 answer fails it.
func RunQueries(ctx context.Context, c QueryConfig) (QueryResult, error) {
	if err := c.Validate(); err != nil {
		return QueryResult{}, err
	}
	client := &http.Client{Timeout: 30 * time.Second}
	rng := rand.New(rand.NewPCG(uint64(c.Seed), 7))
	lats := make([]time.Duration, 0, c.Queries)
	var res QueryResult
	for i := 0; i < c.Queries; i++ {
		q := url.Values{}
		q.Set("from", c.From.UTC().Format(time.RFC3339))
		q.Set("to", c.To.UTC().Format(time.RFC3339))
		q.Set("subject", fmt.Sprintf("subject-%d", rng.IntN(c.Subjects)))
		if c.WindowSize != "" {
			q.Set("windowSize", c.WindowSize)
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.URL+"/api/v1/meters/"+url.PathEscape(c.Meter)+"/query?"+q.Encode(), nil)
		if err != nil {
			return res, err
		}
		if c.Token != "" {
			req.Header.Set("Authorization", "Bearer "+c.Token)
		}
		start := time.Now()
		resp, err := client.Do(req)
		if err != nil {
			return res, fmt.Errorf("query %d: %w", i, err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		lats = append(lats, time.Since(start))
		if err != nil {
			return res, fmt.Errorf("query %d: %w", i, err)
		}
		if resp.StatusCode != http.StatusOK {
			return res, fmt.Errorf("query %d: status %d: %.300s", i, resp.StatusCode, body)
		}
		res.Rows = countRows(body)
	}
	slices.Sort(lats)
	res.Queries = len(lats)
	res.P50ms = percentileMS(lats, 0.50)
	res.P99ms = percentileMS(lats, 0.99)
	res.MaxMs = float64(lats[len(lats)-1]) / float64(time.Millisecond)
	return res, nil
}

// countRows counts the rows of a query answer by their windowStart keys.
func countRows(body []byte) int {
	n := 0
	key := []byte(`"windowStart"`)
	for i := 0; i+len(key) <= len(body); i++ {
		if body[i] == '"' && string(body[i:i+len(key)]) == string(key) {
			n++
		}
	}
	return n
}
