package loadgen

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

type wireEvent struct {
	SpecVersion string `json:"specversion"`
	ID          string `json:"id"`
	Source      string `json:"source"`
	Type        string `json:"type"`
	Subject     string `json:"subject"`
	Time        string `json:"time"`
	Data        struct {
		Value json.Number `json:"value"`
		Route string      `json:"route"`
	} `json:"data"`
}

// recorder is an ingest endpoint that decodes every batch with
// encoding/json and keeps what it saw.
type recorder struct {
	t      *testing.T
	status func(n int64, events []wireEvent) int // status for request n

	mu       sync.Mutex
	requests int64
	batches  [][]wireEvent // accepted batches
	all      [][]wireEvent // every decoded batch
	auth     []string
}

func (rc *recorder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost || r.URL.Path != EventsPath {
		http.NotFound(w, r)
		return
	}
	if ct := r.Header.Get("Content-Type"); ct != ContentType {
		rc.t.Errorf("Content-Type = %q", ct)
	}
	if ae := r.Header.Get("Accept-Encoding"); ae != "" {
		rc.t.Errorf("Accept-Encoding = %q, want none", ae)
	}
	body, err := io.ReadAll(r.Body)
	if err != nil {
		rc.t.Errorf("reading body: %v", err)
		return
	}
	if int64(len(body)) != r.ContentLength {
		rc.t.Errorf("body has %d bytes, Content-Length %d", len(body), r.ContentLength)
	}
	dec := json.NewDecoder(strings.NewReader(string(body)))
	dec.DisallowUnknownFields()
	dec.UseNumber()
	var events []wireEvent
	if err := dec.Decode(&events); err != nil {
		rc.t.Errorf("decoding body: %v\n%.300s", err, body)
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	rc.mu.Lock()
	n := rc.requests
	rc.requests++
	rc.auth = append(rc.auth, r.Header.Get("Authorization"))
	rc.all = append(rc.all, events)
	status := http.StatusNoContent
	if rc.status != nil {
		status = rc.status(n, events)
	}
	if status == http.StatusNoContent {
		rc.batches = append(rc.batches, events)
	}
	rc.mu.Unlock()
	if status != http.StatusNoContent {
		http.Error(w, "injected failure "+strconv.Itoa(status), status)
		return
	}
	w.WriteHeader(status)
}

func testConfig(url string) Config {
	return Config{
		URL:         url,
		Events:      10_007,
		Batch:       250,
		Concurrency: 4,
		Subjects:    37,
		Type:        "request",
		Source:      "loadgen",
		Seed:        42,
		RunID:       "test",
		Timeout:     10 * time.Second,
	}
}

// cents parses a two-decimal JSON number exactly.
func cents(t *testing.T, n json.Number) int64 {
	t.Helper()
	s := string(n)
	whole, frac, ok := strings.Cut(s, ".")
	if !ok || len(frac) != 2 {
		t.Fatalf("value %q: want two fractional digits", s)
	}
	w, err1 := strconv.ParseInt(whole, 10, 64)
	f, err2 := strconv.ParseInt(frac, 10, 64)
	if err1 != nil || err2 != nil {
		t.Fatalf("value %q: not a decimal", s)
	}
	return w*100 + f
}

func TestRunDeliversEverything(t *testing.T) {
	rc := &recorder{t: t}
	srv := httptest.NewServer(rc)
	defer srv.Close()

	c := testConfig(srv.URL)
	c.Token = "s3cret"
	c.Spread = time.Hour
	c.Type = `req"uest`
	c.RunID = `run/"1"`
	before := time.Now()
	res, err := Run(context.Background(), c)
	after := time.Now()
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	if res.Events != int64(c.Events) || res.Generated != int64(c.Events) || res.Errors != 0 {
		t.Errorf("Events=%d Generated=%d Errors=%d", res.Events, res.Generated, res.Errors)
	}
	wantBatches := (c.Events + c.Batch - 1) / c.Batch
	if res.Requests != int64(wantBatches) || len(rc.batches) != wantBatches {
		t.Errorf("Requests=%d, server saw %d, want %d", res.Requests, len(rc.batches), wantBatches)
	}
	if res.EventsPerSec <= 0 || res.Seconds <= 0 || res.P50ms <= 0 || res.P99ms < res.P50ms {
		t.Errorf("timing: %+v", res)
	}
	for _, a := range rc.auth {
		if a != "Bearer s3cret" {
			t.Fatalf("Authorization = %q", a)
		}
	}

	ids := map[string]bool{}
	var sum int64
	short := 0
	subjects := map[string]bool{}
	routes := map[string]bool{}
	for _, r := range Routes {
		routes[r] = true
	}
	lo := before.Add(-c.Spread).Truncate(time.Millisecond)
	for _, batch := range rc.batches {
		switch {
		case len(batch) == c.Batch:
		case len(batch) == c.Events%c.Batch:
			short++
		default:
			t.Errorf("batch of %d events", len(batch))
		}
		for _, e := range batch {
			if e.SpecVersion != "1.0" || e.Source != c.Source || e.Type != c.Type {
				t.Fatalf("bad envelope: %+v", e)
			}
			if ids[e.ID] {
				t.Fatalf("duplicate id %q", e.ID)
			}
			ids[e.ID] = true
			n, ok := strings.CutPrefix(e.ID, c.RunID+"-")
			if i, err := strconv.Atoi(n); !ok || err != nil || i < 0 || i >= c.Events {
				t.Fatalf("id %q", e.ID)
			}
			sn, ok := strings.CutPrefix(e.Subject, "subject-")
			if k, err := strconv.Atoi(sn); !ok || err != nil || k < 0 || k >= c.Subjects {
				t.Fatalf("subject %q out of range", e.Subject)
			}
			subjects[e.Subject] = true
			if !routes[e.Data.Route] {
				t.Fatalf("route %q", e.Data.Route)
			}
			v := cents(t, e.Data.Value)
			if v < 1 || v > MaxCents {
				t.Fatalf("value %s out of range", e.Data.Value)
			}
			sum += v
			ts, err := time.Parse(time.RFC3339Nano, e.Time)
			if err != nil || !strings.HasSuffix(e.Time, "Z") || len(e.Time) != len("2006-01-02T15:04:05.000Z") {
				t.Fatalf("time %q: %v", e.Time, err)
			}
			if ts.Before(lo) || ts.After(after) {
				t.Fatalf("time %v outside [%v, %v]", ts, lo, after)
			}
		}
	}
	if short != 1 {
		t.Errorf("%d short batches, want 1", short)
	}
	if len(ids) != c.Events {
		t.Errorf("%d distinct ids, want %d", len(ids), c.Events)
	}
	if len(subjects) != c.Subjects {
		t.Errorf("%d distinct subjects, want all %d", len(subjects), c.Subjects)
	}
	if got := FormatCents(sum); got != res.ExpectedSum {
		t.Errorf("server-side sum %s, ExpectedSum %s", got, res.ExpectedSum)
	}
	// The same sum with arbitrary-precision decimals, independent of
	// FormatCents.
	r := new(big.Rat)
	for _, batch := range rc.batches {
		for _, e := range batch {
			v, _ := new(big.Rat).SetString(string(e.Data.Value))
			r.Add(r, v)
		}
	}
	if got := r.FloatString(2); got != res.ExpectedSum {
		t.Errorf("big.Rat sum %s, ExpectedSum %s", got, res.ExpectedSum)
	}
}

func TestRunDeterministic(t *testing.T) {
	content := func(seed int64, conc, batch int, runID string) (map[string]string, Result) {
		rc := &recorder{t: t}
		srv := httptest.NewServer(rc)
		defer srv.Close()
		c := testConfig(srv.URL)
		c.Seed, c.Concurrency, c.Batch, c.RunID = seed, conc, batch, runID
		res, err := Run(context.Background(), c)
		if err != nil {
			t.Fatal(err)
		}
		m := map[string]string{}
		for _, b := range rc.batches {
			for _, e := range b {
				m[strings.TrimPrefix(e.ID, runID+"-")] = e.Subject + " " + string(e.Data.Value) + " " + e.Data.Route
			}
		}
		return m, res
	}
	a, ra := content(7, 4, 250, "a")
	b, rb := content(7, 1, 1000, "b")
	c, rc := content(8, 4, 250, "c")
	if ra.ExpectedSum != rb.ExpectedSum {
		t.Errorf("same seed, sums %s and %s", ra.ExpectedSum, rb.ExpectedSum)
	}
	if ra.ExpectedSum == rc.ExpectedSum {
		t.Errorf("different seeds, same sum %s", ra.ExpectedSum)
	}
	same := 0
	for k, v := range a {
		if b[k] != v {
			t.Fatalf("event %s: %q vs %q with the same seed", k, v, b[k])
		}
		if c[k] == v {
			same++
		}
	}
	if same > len(a)/10 {
		t.Errorf("%d of %d events identical under another seed", same, len(a))
	}
}

func TestRunCountsFailures(t *testing.T) {
	rc := &recorder{t: t, status: func(n int64, events []wireEvent) int {
		if n%5 == 2 {
			return http.StatusInternalServerError
		}
		return http.StatusNoContent
	}}
	srv := httptest.NewServer(rc)
	defer srv.Close()
	c := testConfig(srv.URL)
	c.Events, c.Batch = 10_000, 100
	res, err := Run(context.Background(), c)
	if err == nil {
		t.Fatal("Run succeeded despite failed requests")
	}
	if res.Errors != 20 || res.Requests != 100 || res.Retries != 0 {
		t.Errorf("Errors=%d Requests=%d Retries=%d, want 20, 100, 0", res.Errors, res.Requests, res.Retries)
	}
	if res.Events != 8000 || res.Generated != 10_000 {
		t.Errorf("Events=%d Generated=%d, want 8000, 10000", res.Events, res.Generated)
	}
	if !strings.Contains(res.FirstError, "status 500") || !strings.Contains(res.FirstError, "injected failure 500") {
		t.Errorf("FirstError = %q", res.FirstError)
	}
	if !strings.Contains(err.Error(), "20 of 100") || !strings.Contains(err.Error(), "status 500") {
		t.Errorf("err = %v", err)
	}
	// ExpectedSum covers every generated event, accepted or not.
	var sum int64
	for _, b := range rc.all {
		for _, e := range b {
			sum += cents(t, e.Data.Value)
		}
	}
	if FormatCents(sum) != res.ExpectedSum {
		t.Errorf("sum of all events %s, ExpectedSum %s", FormatCents(sum), res.ExpectedSum)
	}
}

func TestRunRetriesWithSameIDs(t *testing.T) {
	var seen sync.Map // first id of a batch -> attempts
	rc := &recorder{t: t, status: func(n int64, events []wireEvent) int {
		v, _ := seen.LoadOrStore(events[0].ID, new(atomic.Int32))
		if v.(*atomic.Int32).Add(1) == 1 {
			return http.StatusServiceUnavailable
		}
		return http.StatusNoContent
	}}
	srv := httptest.NewServer(rc)
	defer srv.Close()
	c := testConfig(srv.URL)
	c.Events, c.Batch, c.Retries = 2000, 100, 2
	res, err := Run(context.Background(), c)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	if res.Errors != 0 || res.Requests != 40 || res.Retries != 20 || res.Events != 2000 {
		t.Errorf("%+v", res)
	}
	// Each retry resent exactly the ids of the failed attempt.
	byFirst := map[string][]string{}
	for _, b := range rc.all {
		ids := make([]string, len(b))
		for i, e := range b {
			ids[i] = e.ID
		}
		if prev, ok := byFirst[ids[0]]; ok && strings.Join(prev, ",") != strings.Join(ids, ",") {
			t.Fatalf("retry of %s carried different ids", ids[0])
		}
		byFirst[ids[0]] = ids
	}
}

func TestRunDoesNotRetryClientErrors(t *testing.T) {
	rc := &recorder{t: t, status: func(int64, []wireEvent) int { return http.StatusUnauthorized }}
	srv := httptest.NewServer(rc)
	defer srv.Close()
	c := testConfig(srv.URL)
	c.Events, c.Batch, c.Retries = 500, 100, 3
	res, err := Run(context.Background(), c)
	if err == nil || res.Errors != 5 || res.Requests != 5 || res.Events != 0 {
		t.Errorf("err=%v %+v", err, res)
	}
}

func TestRunTransportErrors(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now
	c := testConfig("http://" + addr)
	c.Events, c.Batch = 300, 100
	res, err := Run(context.Background(), c)
	if err == nil || res.Errors != 3 || res.Events != 0 {
		t.Errorf("err=%v %+v", err, res)
	}
	if !strings.Contains(res.FirstError, "transport error") {
		t.Errorf("FirstError = %q", res.FirstError)
	}
}

func TestRunCancel(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	rc := &recorder{t: t, status: func(n int64, _ []wireEvent) int {
		if n == 3 {
			cancel()
		}
		return http.StatusNoContent
	}}
	srv := httptest.NewServer(rc)
	defer srv.Close()
	c := testConfig(srv.URL)
	c.Events, c.Batch, c.Concurrency = 1_000_000, 10, 2
	res, err := Run(ctx, c)
	if !errors.Is(err, context.Canceled) {
		t.Errorf("err = %v, want context.Canceled", err)
	}
	if res.Generated >= int64(c.Events) || res.Errors != 0 {
		t.Errorf("%+v", res)
	}
}

func TestValidate(t *testing.T) {
	err := Config{Spread: -1, Timeout: -1, Retries: -1, Token: "a\nb"}.Validate()
	if err == nil {
		t.Fatal("zero Config validated")
	}
	for _, field := range []string{"url", "events", "batch", "concurrency", "subjects", "type", "source", "token", "spread", "timeout", "retries"} {
		if !strings.Contains(err.Error(), field+":") {
			t.Errorf("no %s error in %q", field, err)
		}
	}
	for _, u := range []string{"ftp://x", "localhost:8080", "http://"} {
		c := testConfig(u)
		if err := c.Validate(); err == nil || !strings.HasPrefix(err.Error(), "url:") {
			t.Errorf("url %q: err = %v", u, err)
		}
	}
	if err := testConfig("http://127.0.0.1:1").Validate(); err != nil {
		t.Errorf("valid config: %v", err)
	}
	if _, err := Run(context.Background(), Config{}); err == nil {
		t.Error("Run accepted an invalid config")
	}
}

func TestFormatCents(t *testing.T) {
	for c, want := range map[int64]string{0: "0.00", 7: "0.07", 100: "1.00", 123456: "1234.56", -105: "-1.05"} {
		if got := FormatCents(c); got != want {
			t.Errorf("FormatCents(%d) = %q, want %q", c, got, want)
		}
	}
}

func TestTimeFormatter(t *testing.T) {
	var tf timeFormatter
	base := time.Date(2026, 11, 22, 23, 59, 58, 0, time.UTC).UnixMilli()
	for _, ms := range []int64{base, base + 1, base + 999, base + 1500, base + 2000, base + 86_400_123, 0, -1, -86_400_001, 1} {
		got := string(tf.append(nil, ms))
		want := time.UnixMilli(ms).UTC().Format("2006-01-02T15:04:05.000Z")
		if got != want {
			t.Errorf("%d: got %s, want %s", ms, got, want)
		}
	}
}

// TestAppendDate checks every day from year -1 to 10000. The expected
// date comes from stepping a calendar one day at a time, itself checked
// against the time package on the first of every month: as exhaustive as
// formatting each day with the time package, a tenth of the time under
// -race.
func TestAppendDate(t *testing.T) {
	start := time.Date(-1, 1, 1, 0, 0, 0, 0, time.UTC).Unix() / 86400
	end := time.Date(10001, 1, 1, 0, 0, 0, 0, time.UTC).Unix() / 86400
	y, m, d := -1, 1, 1
	var want []byte
	var got []byte
	for day := start; day < end; day++ {
		if d == 1 || y < 0 || y > 9999 {
			tm := time.Unix(day*86400, 0).UTC()
			if tm.Year() != y || int(tm.Month()) != m || tm.Day() != d {
				t.Fatalf("day %d: the stepped calendar says %d-%d-%d, the time package %s", day, y, m, d, tm)
			}
			want = tm.AppendFormat(want[:0], "2006-01-02T")
		} else {
			want = append(want[:0], byte('0'+y/1000), byte('0'+y/100%10), byte('0'+y/10%10), byte('0'+y%10), '-',
				byte('0'+m/10), byte('0'+m%10), '-', byte('0'+d/10), byte('0'+d%10), 'T')
		}
		got = appendDate(got[:0], day)
		if string(got) != string(want) {
			t.Fatalf("day %d: got %s, want %s", day, got, want)
		}
		// The next day.
		if d++; d > daysIn(y, m) {
			d = 1
			if m++; m > 12 {
				m = 1
				y++
			}
		}
	}
}

// daysIn is the length of month m of proleptic Gregorian year y.
func daysIn(y, m int) int {
	switch m {
	case 2:
		if y%4 == 0 && (y%100 != 0 || y%400 == 0) {
			return 29
		}
		return 28
	case 4, 6, 9, 11:
		return 30
	}
	return 31
}

func TestAppendBatchDoesNotAllocate(t *testing.T) {
	c := testConfig("http://x")
	c.Spread = 48 * time.Hour
	g, err := newGenerator(c)
	if err != nil {
		t.Fatal(err)
	}
	var tf timeFormatter
	buf := make([]byte, 0, g.maxEventSize()*1000+2)
	now := time.Now().UnixMilli()
	allocs := testing.AllocsPerRun(20, func() {
		buf, _ = g.appendBatch(buf[:0], &tf, 5000, 6000, now)
	})
	if allocs != 0 {
		t.Errorf("%v allocations per 1000-event batch", allocs)
	}
	if len(buf) > cap(buf) || !json.Valid(buf) {
		t.Errorf("invalid batch")
	}
}

func TestNullHandler(t *testing.T) {
	srv := httptest.NewServer(NullHandler())
	defer srv.Close()
	for _, tc := range []struct {
		method, path string
		want         int
	}{
		{"POST", EventsPath, 204},
		{"POST", "/other", 404},
		{"GET", "/", 404},
		{"GET", EventsPath, 405},
	} {
		req, _ := http.NewRequest(tc.method, srv.URL+tc.path, strings.NewReader(strings.Repeat("x", 100_000)))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tc.want {
			t.Errorf("%s %s: %d, want %d", tc.method, tc.path, resp.StatusCode, tc.want)
		}
	}
	c := testConfig(srv.URL)
	if res, err := Run(context.Background(), c); err != nil || res.Events != int64(c.Events) {
		t.Errorf("Run against null handler: %v %+v", err, res)
	}
}

func BenchmarkAppendBatch(b *testing.B) {
	g, err := newGenerator(testConfig("http://x"))
	if err != nil {
		b.Fatal(err)
	}
	var tf timeFormatter
	buf := make([]byte, 0, g.maxEventSize()*1000+2)
	now := time.Now().UnixMilli()
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		buf, _ = g.appendBatch(buf[:0], &tf, int64(i)*1000, int64(i+1)*1000, now)
	}
	b.SetBytes(int64(len(buf)))
	b.ReportMetric(float64(b.N)*1000/b.Elapsed().Seconds(), "events/s")
}

// BenchmarkNullServer measures loadgen against the null handler in the same
// process: the HTTP + loadgen ceiling of the machine.
func BenchmarkNullServer(b *testing.B) {
	srv := httptest.NewServer(NullHandler())
	defer srv.Close()
	c := testConfig(srv.URL)
	c.Events, c.Batch, c.Subjects = 2_000_000, 1000, 1000
	var total float64
	for b.Loop() {
		res, err := Run(context.Background(), c)
		if err != nil {
			b.Fatal(err)
		}
		total += res.EventsPerSec
	}
	b.ReportMetric(total/float64(b.N), "events/s")
}

func BenchmarkAppendBatchSpread(b *testing.B) {
	c := testConfig("http://x")
	c.Spread = 30 * 24 * time.Hour
	g, err := newGenerator(c)
	if err != nil {
		b.Fatal(err)
	}
	var tf timeFormatter
	buf := make([]byte, 0, g.maxEventSize()*1000+2)
	now := time.Now().UnixMilli()
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		buf, _ = g.appendBatch(buf[:0], &tf, int64(i)*1000, int64(i+1)*1000, now)
	}
	b.ReportMetric(float64(b.N)*1000/b.Elapsed().Seconds(), "events/s")
}
