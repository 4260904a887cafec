// Package loadgen is tally's load generator: it sends a reproducible stream of
// synthetic CloudEvents to an ingest endpoint as fast as the endpoint accepts
// them and reports throughput, request latency and the exact SUM(value) the
// server should arrive at.
//
// Everything about an event except its time is a pure function of the seed
// and the event's index, so two runs with the same seed produce the same
// subjects, values and routes regardless of concurrency or scheduling.
//
// The hot path does no per-event allocation: batch bodies are appended into
// a reused buffer per worker with strconv.Append* and pre-encoded constant
// fragments.
package loadgen

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"math/bits"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// EventsPath is the ingest endpoint, relative to Config.URL.
const EventsPath = "/api/v1/events"

// ContentType is the media type of a request body.
const ContentType = "application/cloudevents-batch+json"

// DefaultTimeout is the per-request timeout used when Config.Timeout is 0.
const DefaultTimeout = 30 * time.Second

// MaxCents is the largest value an event carries, in hundredths: values are
// drawn uniformly from 0.01 .. 100.00.
const MaxCents = 10000

// Routes are the data.route values events are spread over.
var Routes = []string{
	"/api/v3/items",
	"/api/v3/items/{id}",
	"/api/v3/orders",
	"/api/v3/search",
	"/api/v3/users",
	"/healthz",
}

// Config describes one load-generation run.
type Config struct {
	// URL is the server's base URL; events are POSTed to URL + EventsPath.
	URL string
	// Events is the number of events to send.
	Events int
	// Batch is the number of events per request (the last one may be
	// smaller).
	Batch int
	// Concurrency is the number of workers, each with its own keep-alive
	// connection and at most one request in flight.
	Concurrency int
	// Subjects is the number of distinct subjects, "subject-0" ..
	// "subject-<Subjects-1>".
	Subjects int
	// Type and Source are the CloudEvents type and source of every event.
	Type, Source string
	// Token, when set, is sent as "Authorization: Bearer <Token>".
	Token string
	// Spread spreads event times uniformly over [now-Spread, now], at
	// millisecond resolution; 0 stamps every event with the time its batch
	// is built.
	Spread time.Duration
	// Seed selects the subjects, values and routes of the events.
	Seed int64
	// RunID prefixes the event ids (RunID + "-" + index); empty picks a
	// random one, so separate runs never collide in deduplication.
	RunID string
	// Timeout bounds each request, response included; 0 means
	// DefaultTimeout.
	Timeout time.Duration
	// Retries is how many times a failed batch (transport error, 429 or
	// 5xx) is resent with the same ids. Deduplication on the server makes
	// that safe. 0 never retries.
	Retries int
}

// Result reports a run.
type Result struct {
	// Events is the number of events in batches the server accepted (204).
	Events int64 `json:"events"`
	// Seconds is the wall time from the first request to the last response.
	Seconds float64 `json:"seconds"`
	// EventsPerSec is Events / Seconds.
	EventsPerSec float64 `json:"events_per_sec"`
	// P50ms and P99ms are request latency percentiles (send to response
	// fully read) over all requests, in milliseconds.
	P50ms float64 `json:"p50_ms"`
	P99ms float64 `json:"p99_ms"`
	// Errors is the number of batches that failed: a non-204 answer or a
	// transport error on their last attempt.
	Errors int64 `json:"errors"`
	// ExpectedSum is the exact SUM(data.value) over every event generated,
	// as a decimal string with two fractional digits.
	ExpectedSum string `json:"expected_sum"`
	// Requests is the number of HTTP requests made, retries included.
	Requests int64 `json:"requests"`
	// Retries is the number of requests that were retries of a failed one.
	Retries int64 `json:"retries"`
	// Generated is the number of events generated (and sent at least
	// once); it is Config.Events unless the run was cancelled.
	Generated int64 `json:"generated"`
	// RunID is the id prefix the run used.
	RunID string `json:"run_id"`
	// FirstError describes the first failed request, if any.
	FirstError string `json:"first_error,omitempty"`
}

// Validate reports every problem with c, joined with errors.Join.
func (c Config) Validate() error {
	var errs []error
	if c.URL == "" {
		errs = append(errs, errors.New("url: must be set"))
	} else if u, err := url.Parse(c.URL); err != nil {
		errs = append(errs, fmt.Errorf("url: %v", err))
	} else if u.Scheme != "http" && u.Scheme != "https" {
		errs = append(errs, fmt.Errorf("url: scheme must be http or https, got %q", u.Scheme))
	} else if u.Host == "" {
		errs = append(errs, fmt.Errorf("url: %q has no host", c.URL))
	}
	if c.Events < 1 {
		errs = append(errs, fmt.Errorf("events: must be at least 1, got %d", c.Events))
	}
	if c.Batch < 1 {
		errs = append(errs, fmt.Errorf("batch: must be at least 1, got %d", c.Batch))
	}
	if c.Concurrency < 1 {
		errs = append(errs, fmt.Errorf("concurrency: must be at least 1, got %d", c.Concurrency))
	}
	if c.Subjects < 1 {
		errs = append(errs, fmt.Errorf("subjects: must be at least 1, got %d", c.Subjects))
	}
	if c.Type == "" {
		errs = append(errs, errors.New("type: must be set"))
	}
	if c.Source == "" {
		errs = append(errs, errors.New("source: must be set"))
	}
	if strings.ContainsFunc(c.Token, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
		errs = append(errs, errors.New("token: must not contain control characters"))
	}
	if c.Spread < 0 {
		errs = append(errs, fmt.Errorf("spread: must not be negative, got %v", c.Spread))
	}
	if c.Timeout < 0 {
		errs = append(errs, fmt.Errorf("timeout: must not be negative, got %v", c.Timeout))
	}
	if c.Retries < 0 {
		errs = append(errs, fmt.Errorf("retries: must not be negative, got %d", c.Retries))
	}
	return errors.Join(errs...)
}

// FormatCents renders an amount in hundredths as a decimal with two
// fractional digits ("-1.05", "0.07", "1234.50").
func FormatCents(cents int64) string {
	return string(appendCents(nil, cents))
}

func appendCents(b []byte, cents int64) []byte {
	u := uint64(cents)
	if cents < 0 {
		b = append(b, '-')
		u = -u
	}
	b = strconv.AppendUint(b, u/100, 10)
	r := u % 100
	return append(b, '.', byte('0'+r/10), byte('0'+r%10))
}

// Run sends c.Events events and reports how it went. The error is non-nil
// when c is invalid, when ctx ends before the run does (the Result then
// covers what was sent), or when any batch failed.
func Run(ctx context.Context, c Config) (Result, error) {
	if err := c.Validate(); err != nil {
		return Result{}, err
	}
	if c.RunID == "" {
		c.RunID = RandomRunID()
	}
	if c.Timeout == 0 {
		c.Timeout = DefaultTimeout
	}
	g, err := newGenerator(c)
	if err != nil {
		return Result{}, err
	}
	endpoint := strings.TrimSuffix(c.URL, "/") + EventsPath
	if _, err := http.NewRequest(http.MethodPost, endpoint, nil); err != nil {
		return Result{}, fmt.Errorf("url: %w", err)
	}

	batches := (int64(c.Events) + int64(c.Batch) - 1) / int64(c.Batch)
	workers := int64(c.Concurrency)
	if workers > batches {
		workers = batches
	}
	bodyCap := g.maxEventSize()*c.Batch + 2
	wbuf := min(max(bodyCap+4096, 64<<10), 4<<20)
	tr := &http.Transport{
		Proxy:               nil,
		MaxIdleConns:        int(workers),
		MaxIdleConnsPerHost: int(workers),
		MaxConnsPerHost:     int(workers),
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
		ForceAttemptHTTP2:   false,
		WriteBufferSize:     wbuf,
		ReadBufferSize:      16 << 10,
	}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: c.Timeout}

	var auth []string
	if c.Token != "" {
		auth = []string{"Bearer " + c.Token}
	}
	s := &shared{
		ctx:      ctx,
		cfg:      c,
		gen:      g,
		client:   client,
		endpoint: endpoint,
		auth:     auth,
		batches:  batches,
	}

	ws := make([]*worker, workers)
	var wg sync.WaitGroup
	start := time.Now()
	for i := range ws {
		w := &worker{
			s:    s,
			buf:  make([]byte, 0, bodyCap),
			lats: make([]time.Duration, 0, batches/workers+1),
		}
		ws[i] = w
		wg.Add(1)
		go func() {
			defer wg.Done()
			w.run()
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)

	var res Result
	var sum int64
	var lats []time.Duration
	for _, w := range ws {
		res.Events += w.accepted
		res.Errors += w.errors
		res.Requests += w.requests
		res.Retries += w.retries
		res.Generated += w.generated
		sum += w.sum
		lats = append(lats, w.lats...)
	}
	res.Seconds = elapsed.Seconds()
	if res.Seconds > 0 {
		res.EventsPerSec = float64(res.Events) / res.Seconds
	}
	slices.Sort(lats)
	res.P50ms = percentileMS(lats, 0.50)
	res.P99ms = percentileMS(lats, 0.99)
	res.ExpectedSum = FormatCents(sum)
	res.RunID = c.RunID
	s.mu.Lock()
	res.FirstError = s.firstErr
	s.mu.Unlock()

	if err := ctx.Err(); err != nil && res.Generated < int64(c.Events) {
		return res, err
	}
	if res.Errors > 0 {
		return res, fmt.Errorf("loadgen: %d of %d batches failed; first: %s", res.Errors, batches, res.FirstError)
	}
	return res, nil
}

// RandomRunID returns a fresh run id such as "lg-3f9a1c07".
func RandomRunID() string {
	var b [4]byte
	if _, err := rand.Read(b[:]); err != nil {
		// crypto/rand does not fail on supported platforms; fall back to
		// the clock all the same.
		return "lg-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	}
	return "lg-" + hex.EncodeToString(b[:])
}

// percentileMS is the nearest-rank p-quantile of sorted, in milliseconds.
func percentileMS(sorted []time.Duration, p float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	i := int(math.Ceil(p*float64(len(sorted)))) - 1
	i = min(max(i, 0), len(sorted)-1)
	return float64(sorted[i]) / float64(time.Millisecond)
}

// shared is the state common to all workers of a run.
type shared struct {
	ctx      context.Context
	cfg      Config
	gen      *generator
	client   *http.Client
	endpoint string
	auth     []string
	batches  int64
	next     atomic.Int64

	mu       sync.Mutex
	firstErr string
}

func (s *shared) noteError(msg string) {
	s.mu.Lock()
	if s.firstErr == "" {
		s.firstErr = msg
	}
	s.mu.Unlock()
}

// worker sends batches one at a time over its own connection. Its counters
// are only touched by its goroutine and read after it finished.
type worker struct {
	s    *shared
	buf  []byte
	tf   timeFormatter
	lats []time.Duration

	accepted, errors, requests, retries, generated, sum int64
}

func (w *worker) run() {
	s := w.s
	for s.ctx.Err() == nil {
		b := s.next.Add(1) - 1
		if b >= s.batches {
			return
		}
		lo := b * int64(s.cfg.Batch)
		hi := min(lo+int64(s.cfg.Batch), int64(s.cfg.Events))
		var sum int64
		w.buf, sum = s.gen.appendBatch(w.buf[:0], &w.tf, lo, hi, time.Now().UnixMilli())
		w.sum += sum
		w.generated += hi - lo
		if w.send() {
			w.accepted += hi - lo
		}
	}
}

// send POSTs w.buf, retrying as configured, and reports whether the server
// accepted it.
func (w *worker) send() bool {
	s := w.s
	for attempt := 0; ; attempt++ {
		if attempt > 0 {
			w.retries++
			if !sleepCtx(s.ctx, backoff(attempt)) {
				return false
			}
		}
		ok, retryable := w.attempt()
		if ok {
			return true
		}
		if s.ctx.Err() != nil {
			// Cancelled: neither a failure of the server nor worth a retry.
			return false
		}
		if !retryable || attempt >= s.cfg.Retries {
			w.errors++
			return false
		}
	}
}

func backoff(attempt int) time.Duration {
	return min(50*time.Millisecond<<(attempt-1), 2*time.Second)
}

func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// attempt makes one request with the body in w.buf. retryable reports
// whether a failure may succeed when repeated.
func (w *worker) attempt() (ok, retryable bool) {
	s := w.s
	body := &reqBody{done: make(chan struct{})}
	body.r.Reset(w.buf)
	req, err := http.NewRequestWithContext(s.ctx, http.MethodPost, s.endpoint, body)
	if err != nil {
		s.noteError(err.Error())
		return false, false
	}
	req.ContentLength = int64(len(w.buf))
	req.Header["Content-Type"] = []string{ContentType}
	req.Header["User-Agent"] = []string{"tally-loadgen"}
	if s.auth != nil {
		req.Header["Authorization"] = s.auth
	}

	w.requests++
	start := time.Now()
	resp, err := s.client.Do(req)
	var excerpt []byte
	if err == nil {
		if resp.StatusCode != http.StatusNoContent {
			excerpt, _ = io.ReadAll(io.LimitReader(resp.Body, 512))
		}
		_, err = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	w.lats = append(w.lats, time.Since(start))
	w.waitBody(body)

	switch {
	case resp == nil || err != nil:
		if s.ctx.Err() == nil {
			s.noteError("transport error: " + err.Error())
		}
		return false, true
	case resp.StatusCode != http.StatusNoContent:
		s.noteError(fmt.Sprintf("status %d: %s", resp.StatusCode, bytes.TrimSpace(excerpt)))
		return false, resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode >= 500
	}
	return true, false
}

// waitBody waits until the transport is done reading the request body, so
// that w.buf may be overwritten. A transport that never lets go (it always
// does) only costs the buffer.
func (w *worker) waitBody(b *reqBody) {
	select {
	case <-b.done:
		return
	default:
	}
	t := time.NewTimer(5 * time.Second)
	defer t.Stop()
	select {
	case <-b.done:
	case <-t.C:
		w.buf = make([]byte, 0, cap(w.buf))
	}
}

// reqBody is a request body over a worker's buffer that reports when the
// transport closed it.
type reqBody struct {
	r    bytes.Reader
	once sync.Once
	done chan struct{}
}

func (b *reqBody) Read(p []byte) (int, error)         { return b.r.Read(p) }
func (b *reqBody) WriteTo(w io.Writer) (int64, error) { return b.r.WriteTo(w) }
func (b *reqBody) Close() error {
	b.once.Do(func() { close(b.done) })
	return nil
}

// generator turns event indexes into encoded events.
type generator struct {
	key      uint64
	subjects uint64
	spreadMS uint64

	idPrefix   []byte // {"specversion":"1.0","id":"<run-id>-
	mid        []byte // ","source":<source>,"type":<type>,"subject":"subject-
	timeOpen   []byte // ","time":"
	valueOpen  []byte // ","data":{"value":
	routeTails [][]byte
}

func newGenerator(c Config) (*generator, error) {
	runID, err := json.Marshal(c.RunID)
	if err != nil {
		return nil, fmt.Errorf("run id: %w", err)
	}
	source, err := json.Marshal(c.Source)
	if err != nil {
		return nil, fmt.Errorf("source: %w", err)
	}
	typ, err := json.Marshal(c.Type)
	if err != nil {
		return nil, fmt.Errorf("type: %w", err)
	}
	g := &generator{
		key:      mix64(uint64(c.Seed) ^ 0x6c6f616467656e21), // "loadgen!"
		subjects: uint64(c.Subjects),
		spreadMS: uint64(c.Spread / time.Millisecond),
	}
	g.idPrefix = append([]byte(`{"specversion":"1.0","id":`), runID[:len(runID)-1]...)
	g.idPrefix = append(g.idPrefix, '-')
	g.mid = append([]byte(`","source":`), source...)
	g.mid = append(g.mid, `,"type":`...)
	g.mid = append(g.mid, typ...)
	g.mid = append(g.mid, `,"subject":"subject-`...)
	g.timeOpen = []byte(`","time":"`)
	g.valueOpen = []byte(`","data":{"value":`)
	for _, r := range Routes {
		enc, err := json.Marshal(r)
		if err != nil {
			return nil, err
		}
		tail := append([]byte(`,"route":`), enc...)
		g.routeTails = append(g.routeTails, append(tail, "}}"...))
	}
	return g, nil
}

// maxEventSize bounds the encoded size of one event.
func (g *generator) maxEventSize() int {
	longest := 0
	for _, t := range g.routeTails {
		longest = max(longest, len(t))
	}
	// index, subject, time (with a >4-digit year) and value digits.
	return len(g.idPrefix) + 20 + len(g.mid) + 20 + len(g.timeOpen) + 32 +
		len(g.valueOpen) + 8 + longest + 1
}

// Draw is the seeded content of one event.
type Draw struct {
	Subject  int64 // 0 .. Subjects-1
	Cents    int64 // 1 .. MaxCents
	Route    int   // index into Routes
	OffsetMS int64 // 0 .. Spread in milliseconds, subtracted from now
}

// draw derives event i's content from the seed alone.
func (g *generator) draw(i int64) Draw {
	st := g.key ^ uint64(i)*0xd1342543de82ef95
	r1 := next64(&st)
	r2 := next64(&st)
	r3 := next64(&st)
	d := Draw{
		Subject: int64(mulHi(r1, g.subjects)),
		Cents:   int64(mulHi(r2, MaxCents)) + 1,
		Route:   int(mulHi(r3, uint64(len(Routes)))),
	}
	if g.spreadMS > 0 {
		d.OffsetMS = int64(mulHi(next64(&st), g.spreadMS+1))
	}
	return d
}

// appendBatch appends the JSON array of events [lo, hi) to b, stamped
// relative to nowMS (Unix milliseconds), and returns it with the sum of
// their values in cents.
func (g *generator) appendBatch(b []byte, tf *timeFormatter, lo, hi, nowMS int64) ([]byte, int64) {
	var sum int64
	b = append(b, '[')
	for i := lo; i < hi; i++ {
		if i > lo {
			b = append(b, ',')
		}
		d := g.draw(i)
		sum += d.Cents
		b = append(b, g.idPrefix...)
		b = strconv.AppendInt(b, i, 10)
		b = append(b, g.mid...)
		b = strconv.AppendInt(b, d.Subject, 10)
		b = append(b, g.timeOpen...)
		b = tf.append(b, nowMS-d.OffsetMS)
		b = append(b, g.valueOpen...)
		b = appendCents(b, d.Cents)
		b = append(b, g.routeTails[d.Route]...)
	}
	b = append(b, ']')
	return b, sum
}

const msPerDay = 24 * 60 * 60 * 1000

// timeFormatter writes RFC 3339 UTC timestamps with millisecond precision
// ("2026-11-22T10:00:00.123Z"), formatting the date part only when the day
// changes.
type timeFormatter struct {
	day    int64
	valid  bool
	prefix []byte // "2026-11-22T"; a slice of buf
	buf    [16]byte
}

func (t *timeFormatter) append(b []byte, ms int64) []byte {
	day := ms / msPerDay
	if ms < 0 && ms%msPerDay != 0 {
		day--
	}
	if !t.valid || day != t.day {
		t.prefix = appendDate(t.buf[:0], day)
		t.day, t.valid = day, true
	}
	rem := ms - day*msPerDay
	milli := rem % 1000
	sec := rem / 1000
	b = append(b, t.prefix...)
	b = append2(b, sec/3600)
	b = append(b, ':')
	b = append2(b, sec/60%60)
	b = append(b, ':')
	b = append2(b, sec%60)
	return append(b, '.', byte('0'+milli/100), byte('0'+milli/10%10), byte('0'+milli%10), 'Z')
}

// appendDate appends "YYYY-MM-DDT" for the given day since the Unix epoch,
// using the days-to-civil algorithm of H. Hinnant (no time.Time, since with a
// wide spread nearly every event falls on another day than the last).
func appendDate(b []byte, days int64) []byte {
	z := days + 719468
	era := z / 146097
	if z < 0 && z%146097 != 0 {
		era--
	}
	doe := z - era*146097
	yoe := (doe - doe/1460 + doe/36524 - doe/146096) / 365
	y := yoe + era*400
	doy := doe - (365*yoe + yoe/4 - yoe/100)
	mp := (5*doy + 2) / 153
	d := doy - (153*mp+2)/5 + 1
	m := mp + 3
	if mp >= 10 {
		m = mp - 9
		y++
	}
	if y < 0 || y > 9999 {
		return time.Unix(days*86400, 0).UTC().AppendFormat(b, "2006-01-02T")
	}
	b = append2(b, y/100)
	b = append2(b, y%100)
	b = append(b, '-')
	b = append2(b, m)
	b = append(b, '-')
	b = append2(b, d)
	return append(b, 'T')
}

func append2(b []byte, v int64) []byte {
	return append(b, byte('0'+v/10), byte('0'+v%10))
}

// mix64 is the splitmix64 finaliser.
func mix64(z uint64) uint64 {
	z = (z ^ z>>30) * 0xbf58476d1ce4e5b9
	z = (z ^ z>>27) * 0x94d049bb133111eb
	return z ^ z>>31
}

// next64 is one step of splitmix64.
func next64(st *uint64) uint64 {
	*st += 0x9e3779b97f4a7c15
	return mix64(*st)
}

// mulHi maps a uniform 64-bit r onto [0, n).
func mulHi(r, n uint64) uint64 {
	hi, _ := bits.Mul64(r, n)
	return hi
}
