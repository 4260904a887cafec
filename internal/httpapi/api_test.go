package httpapi_test

// HTTP-level tests of tally's API: a real SQLite store, a real ingest
// pipeline and usage service behind httptest, with an injected clock.

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tally-metering/tally/api"
	"github.com/tally-metering/tally/internal/auth"
	"github.com/tally-metering/tally/internal/event"
	"github.com/tally-metering/tally/internal/httpapi"
	"github.com/tally-metering/tally/internal/ingest"
	"github.com/tally-metering/tally/internal/report"
	"github.com/tally-metering/tally/internal/store/sqlite"
	"github.com/tally-metering/tally/internal/usage"
)

// apiClock is the injected clock: it stands still unless advanced.
type apiClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *apiClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *apiClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// apiStart is when the injected clock starts.
var apiStart = time.Date(2026, 4, 1, 12, 0, 0, 0, time.UTC)

type harnessOptions struct {
	token        string
	maxBodyBytes int64
	limits       event.Limits
	storeOpts    sqlite.Options
	// targets, when set, turns reporting on with these targets.
	targets []report.Target
	// secrets are the configured secrets (httpapi.Config.Secrets).
	secrets []string
}

type apiHarness struct {
	t     *testing.T
	srv   *httptest.Server
	st    *sqlite.DB
	pipe  *ingest.Pipeline
	clock *apiClock
	token string
	// reporter is set when harnessOptions.targets is.
	reporter *report.Runner
}

func newAPIHarness(t *testing.T, o harnessOptions) *apiHarness {
	t.Helper()
	ctx := context.Background()
	st, err := sqlite.Open(ctx, t.TempDir(), o.storeOpts)
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	t.Cleanup(func() {
		if err := st.Close(); err != nil {
			t.Errorf("close store: %v", err)
		}
	})
	clock := &apiClock{t: apiStart}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	reg := prometheus.NewRegistry()
	pipe := ingest.New(st, clock.Now, log, ingest.NewMetrics(reg), ingest.Config{})
	t.Cleanup(pipe.Close)
	if err := pipe.LoadMeters(ctx); err != nil {
		t.Fatalf("load meters: %v", err)
	}
	h := &apiHarness{t: t, st: st, pipe: pipe, clock: clock, token: o.token}
	cfg := httpapi.Config{
		Store: st, Pipeline: pipe, Usage: &usage.Service{Store: st}, Auth: auth.NewAdminToken(o.token),
		Now: clock.Now, Log: log, Registry: reg, Gatherer: reg,
		MaxBodyBytes: o.maxBodyBytes, Limits: o.limits, OpenAPI: api.OpenAPI, Outbox: st,
		// Tests here fail authentication on purpose, many times from one
		// address; the limit has its own tests.
		AuthFailureLimit: -1,
		Secrets:          o.secrets,
	}
	if o.targets != nil {
		h.reporter = &report.Runner{Store: st, Outbox: st, Usage: &usage.Service{Store: st}, Stable: pipe.MetersStable,
			Targets: o.targets, Now: clock.Now, Log: log, Backoff: time.Second, MaxBackoff: time.Second}
		cfg.Reporter = h.reporter
	}
	h.srv = httptest.NewServer(httpapi.New(cfg))
	t.Cleanup(h.srv.Close)
	return h
}

type apiResp struct {
	Status int
	Header http.Header
	Body   []byte
}

func (r apiResp) String() string { return fmt.Sprintf("%d %s", r.Status, r.Body) }

// request sends a request with the harness token (if any) and extra headers
// given as name, value pairs.
func (h *apiHarness) request(method, path, contentType string, body io.Reader, hdr ...string) apiResp {
	h.t.Helper()
	req, err := http.NewRequest(method, h.srv.URL+path, body)
	if err != nil {
		h.t.Fatalf("new request: %v", err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if h.token != "" {
		req.Header.Set("Authorization", "Bearer "+h.token)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		if hdr[i+1] == "" {
			req.Header.Del(hdr[i])
		} else {
			req.Header.Set(hdr[i], hdr[i+1])
		}
	}
	resp, err := h.srv.Client().Do(req)
	if err != nil {
		h.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		h.t.Fatalf("%s %s: read body: %v", method, path, err)
	}
	return apiResp{Status: resp.StatusCode, Header: resp.Header, Body: b}
}

func (h *apiHarness) do(method, path, contentType, body string, hdr ...string) apiResp {
	h.t.Helper()
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	return h.request(method, path, contentType, r, hdr...)
}

func (h *apiHarness) expect(r apiResp, status int, what string) {
	h.t.Helper()
	if r.Status != status {
		h.t.Fatalf("%s: got %s, want status %d", what, r, status)
	}
}

func decodeInto(t *testing.T, r apiResp, v any) {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(r.Body))
	dec.UseNumber()
	if err := dec.Decode(v); err != nil {
		t.Fatalf("decode %s: %v", r, err)
	}
}

// ingest posts body and requires a 204.
func (h *apiHarness) ingest(contentType, body string) {
	h.t.Helper()
	h.expect(h.do("POST", "/api/v1/events", contentType, body), http.StatusNoContent, "ingest")
}

func (h *apiHarness) createMeter(body string) apiMeter {
	h.t.Helper()
	r := h.do("POST", "/api/v1/meters", "application/json", body)
	h.expect(r, http.StatusCreated, "create meter")
	var m apiMeter
	decodeInto(h.t, r, &m)
	return m
}

// verify recomputes every meter from the raw events, as `tally verify`
// does, and requires the stored rollups to match.
func (h *apiHarness) verify() {
	h.t.Helper()
	rep, err := ingest.Verify(context.Background(), h.st)
	if err != nil {
		h.t.Fatalf("verify: %v", err)
	}
	for _, d := range rep.Differences {
		h.t.Errorf("verify: %s", d)
	}
}

// events lists stored events (GET /api/v1/events with query q).
func (h *apiHarness) events(q string) []apiEvent {
	h.t.Helper()
	r := h.do("GET", "/api/v1/events?"+q, "", "")
	h.expect(r, http.StatusOK, "list events")
	var out []apiEvent
	decodeInto(h.t, r, &out)
	return out
}

func (h *apiHarness) eventByID(id string) apiEvent {
	h.t.Helper()
	evs := h.events("id=" + url.QueryEscape(id))
	if len(evs) != 1 {
		h.t.Fatalf("events with id %s: got %d, want 1", id, len(evs))
	}
	return evs[0]
}

func (h *apiHarness) query(slug string, q url.Values) apiQueryResult {
	h.t.Helper()
	r := h.do("GET", "/api/v1/meters/"+slug+"/query?"+q.Encode(), "", "")
	h.expect(r, http.StatusOK, "query "+slug+"?"+q.Encode())
	var out apiQueryResult
	decodeInto(h.t, r, &out)
	return out
}

// total is the single value of an ungrouped query ("0" when there are no rows).
func (h *apiHarness) total(slug string) string {
	h.t.Helper()
	res := h.query(slug, nil)
	switch len(res.Data) {
	case 0:
		return "0"
	case 1:
		return res.Data[0].Value.String()
	}
	h.t.Fatalf("query %s: %d rows, want at most 1: %+v", slug, len(res.Data), res.Data)
	return ""
}

type apiMeter struct {
	ID            string            `json:"id"`
	Slug          string            `json:"slug"`
	Name          string            `json:"name"`
	EventType     string            `json:"eventType"`
	Aggregation   string            `json:"aggregation"`
	ValueProperty string            `json:"valueProperty"`
	GroupBy       map[string]string `json:"groupBy"`
	ManagedBy     string            `json:"managedBy"`
	CreatedAt     time.Time         `json:"createdAt"`
	UpdatedAt     time.Time         `json:"updatedAt"`
}

type apiEvent struct {
	Event           map[string]any `json:"event"`
	IngestedAt      time.Time      `json:"ingestedAt"`
	ValidationError string         `json:"validationError"`
}

type apiRow struct {
	Value       json.Number        `json:"value"`
	WindowStart string             `json:"windowStart"`
	WindowEnd   string             `json:"windowEnd"`
	Subject     *string            `json:"subject"`
	GroupBy     map[string]*string `json:"groupBy"`
}

type apiQueryResult struct {
	From       *string  `json:"from"`
	To         *string  `json:"to"`
	WindowSize *string  `json:"windowSize"`
	Data       []apiRow `json:"data"`
}

type apiProblem struct {
	Type     string          `json:"type"`
	Title    string          `json:"title"`
	Status   int             `json:"status"`
	Detail   string          `json:"detail"`
	Instance string          `json:"instance"`
	Problems []event.Problem `json:"problems"`
	Errors   []string        `json:"errors"`
}

// problemOf checks that r is a problem+json response with the given status
// and returns it.
func problemOf(t *testing.T, r apiResp, status int) apiProblem {
	t.Helper()
	if r.Status != status {
		t.Fatalf("got %s, want status %d", r, status)
	}
	if ct := r.Header.Get("Content-Type"); ct != "application/problem+json" {
		t.Fatalf("Content-Type %q, want application/problem+json (body %s)", ct, r.Body)
	}
	var p apiProblem
	decodeInto(t, r, &p)
	if p.Status != status {
		t.Errorf("problem status %d, want %d", p.Status, status)
	}
	if p.Title == "" || p.Type == "" {
		t.Errorf("problem without type or title: %s", r.Body)
	}
	return p
}

// ce is one CloudEvent as JSON; ts and data may be empty.
func ce(id, typ, subject, ts, data string) string {
	var b strings.Builder
	fmt.Fprintf(&b, `{"specversion":"1.0","id":%q,"source":"test","type":%q,"subject":%q`, id, typ, subject)
	if ts != "" {
		fmt.Fprintf(&b, `,"time":%q`, ts)
	}
	if data != "" {
		b.WriteString(`,"data":` + data)
	}
	b.WriteString("}")
	return b.String()
}

func jsonArray(items ...string) string { return "[" + strings.Join(items, ",") + "]" }

const batchCT = "application/cloudevents-batch+json"

func vals(kv ...string) url.Values {
	v := url.Values{}
	for i := 0; i+1 < len(kv); i += 2 {
		v.Add(kv[i], kv[i+1])
	}
	return v
}

func strp(p *string) string {
	if p == nil {
		return "<nil>"
	}
	return *p
}

func TestAPIMeterCRUD(t *testing.T) {
	h := newAPIHarness(t, harnessOptions{})

	r := h.do("GET", "/api/v1/meters", "", "")
	h.expect(r, http.StatusOK, "list meters")
	if strings.TrimSpace(string(r.Body)) != "[]" {
		t.Fatalf("empty meter list: got %s, want []", r.Body)
	}

	r = h.do("POST", "/api/v1/meters", "application/json",
		`{"slug":"tokens","name":"Tokens","eventType":"prompt","aggregation":"SUM","valueProperty":"$.tokens","groupBy":{"model":"$.model"}}`)
	h.expect(r, http.StatusCreated, "create meter")
	if loc := r.Header.Get("Location"); loc != "/api/v1/meters/tokens" {
		t.Errorf("Location %q, want /api/v1/meters/tokens", loc)
	}
	var m apiMeter
	decodeInto(t, r, &m)
	if m.ID == "" || m.Slug != "tokens" || m.ManagedBy != "api" || m.Aggregation != "SUM" || m.GroupBy["model"] != "$.model" {
		t.Errorf("created meter: %+v", m)
	}
	if !m.CreatedAt.Equal(apiStart) || !m.UpdatedAt.Equal(apiStart) {
		t.Errorf("created meter times %v %v, want the clock's %v", m.CreatedAt, m.UpdatedAt, apiStart)
	}

	for _, key := range []string{"tokens", m.ID} {
		r = h.do("GET", "/api/v1/meters/"+key, "", "")
		h.expect(r, http.StatusOK, "get meter by "+key)
		var got apiMeter
		decodeInto(t, r, &got)
		if got.ID != m.ID || got.Slug != "tokens" {
			t.Errorf("get %s: %+v", key, got)
		}
	}

	// Same slug again: 409, and the first meter is untouched.
	p := problemOf(t, h.do("POST", "/api/v1/meters", "application/json",
		`{"slug":"tokens","eventType":"other","aggregation":"COUNT"}`), http.StatusConflict)
	if !strings.Contains(p.Detail, "tokens") {
		t.Errorf("conflict detail %q does not name the slug", p.Detail)
	}
	var list []apiMeter
	r = h.do("GET", "/api/v1/meters", "", "")
	decodeInto(t, r, &list)
	if len(list) != 1 || list[0].EventType != "prompt" {
		t.Fatalf("meters after conflict: %+v", list)
	}

	// Update: a new name keeps id and createdAt and moves updatedAt.
	h.clock.Advance(time.Hour)
	r = h.do("PUT", "/api/v1/meters/tokens", "application/json",
		`{"slug":"tokens","name":"Prompt tokens","eventType":"prompt","aggregation":"SUM","valueProperty":"$.tokens","groupBy":{"model":"$.model"}}`)
	h.expect(r, http.StatusOK, "update meter")
	var up apiMeter
	decodeInto(t, r, &up)
	if up.ID != m.ID || up.Name != "Prompt tokens" || !up.CreatedAt.Equal(apiStart) || !up.UpdatedAt.Equal(apiStart.Add(time.Hour)) {
		t.Errorf("updated meter: %+v", up)
	}
	r = h.do("GET", "/api/v1/meters/tokens", "", "")
	var got apiMeter
	decodeInto(t, r, &got)
	if got.Name != "Prompt tokens" {
		t.Errorf("meter after update: %+v", got)
	}

	problemOf(t, h.do("PUT", "/api/v1/meters/nope", "application/json",
		`{"slug":"nope","eventType":"x","aggregation":"COUNT"}`), http.StatusNotFound)
	problemOf(t, h.do("PUT", "/api/v1/meters/tokens", "application/json",
		`{"slug":"tokens","eventType":"prompt","aggregation":"SUM"}`), http.StatusBadRequest)
	problemOf(t, h.do("GET", "/api/v1/meters/nope", "", ""), http.StatusNotFound)
	problemOf(t, h.do("GET", "/api/v1/meters/nope/query", "", ""), http.StatusNotFound)

	// A second meter can't be renamed onto the first one's slug.
	h.createMeter(`{"slug":"calls","eventType":"prompt","aggregation":"COUNT"}`)
	problemOf(t, h.do("PUT", "/api/v1/meters/calls", "application/json",
		`{"slug":"tokens","eventType":"prompt","aggregation":"COUNT"}`), http.StatusConflict)

	r = h.do("DELETE", "/api/v1/meters/tokens", "", "")
	h.expect(r, http.StatusNoContent, "delete meter")
	problemOf(t, h.do("GET", "/api/v1/meters/tokens", "", ""), http.StatusNotFound)
	problemOf(t, h.do("GET", "/api/v1/meters/"+m.ID, "", ""), http.StatusNotFound)
	problemOf(t, h.do("DELETE", "/api/v1/meters/tokens", "", ""), http.StatusNotFound)
	r = h.do("GET", "/api/v1/meters", "", "")
	list = nil
	decodeInto(t, r, &list)
	if len(list) != 1 || list[0].Slug != "calls" {
		t.Errorf("meters after delete: %+v", list)
	}
	h.verify()
}

func TestAPIInvalidMeterListsEveryProblem(t *testing.T) {
	h := newAPIHarness(t, harnessOptions{})
	tests := []struct {
		name string
		body string
		// want are substrings each of which must be in a separate entry of
		// the problem's errors (or, when errors is empty, in detail).
		want []string
	}{
		{
			name: "everything wrong",
			body: `{"slug":"Bad Slug","aggregation":"FOO","groupBy":{"1x":"nope","subject":"$.s"}}`,
			want: []string{"slug:", "eventType: required", `aggregation: "FOO"`, `groupBy: key "1x"`, "groupBy.1x:", `key "subject" is reserved`},
		},
		{
			name: "value property missing",
			body: `{"slug":"s","eventType":"t","aggregation":"AVG"}`,
			want: []string{"valueProperty: required for aggregation AVG"},
		},
		{
			name: "value property not a JSONPath and slug too long",
			body: `{"slug":"` + strings.Repeat("a", 65) + `","eventType":"t","aggregation":"SUM","valueProperty":"value"}`,
			want: []string{"slug: 65 characters", `valueProperty: "value" is not a JSONPath`},
		},
		{
			name: "unknown field",
			body: `{"slug":"s","evenType":"t","aggregation":"COUNT"}`,
			want: []string{"evenType"},
		},
		{
			name: "wrong JSON type",
			body: `{"slug":"s","eventType":"t","aggregation":"COUNT","groupBy":["a"]}`,
			want: []string{"groupBy"},
		},
		{
			name: "not JSON",
			body: `{"slug":`,
			want: []string{"body"},
		},
		{
			name: "trailing data",
			body: `{"slug":"s","eventType":"t","aggregation":"COUNT"} {}`,
			want: []string{"unexpected data after the JSON value"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := problemOf(t, h.do("POST", "/api/v1/meters", "application/json", tc.body), http.StatusBadRequest)
			if len(p.Errors) == 0 {
				for _, w := range tc.want {
					if !strings.Contains(p.Detail, w) {
						t.Errorf("detail %q does not mention %q", p.Detail, w)
					}
				}
				return
			}
			if len(p.Errors) != len(tc.want) {
				t.Errorf("got %d errors %q, want %d", len(p.Errors), p.Errors, len(tc.want))
			}
			for _, w := range tc.want {
				found := false
				for _, e := range p.Errors {
					found = found || strings.Contains(e, w)
				}
				if !found {
					t.Errorf("no error mentions %q: %q", w, p.Errors)
				}
			}
		})
	}
	r := h.do("GET", "/api/v1/meters", "", "")
	if strings.TrimSpace(string(r.Body)) != "[]" {
		t.Errorf("invalid meters were stored: %s", r.Body)
	}
}

func TestAPIIngestContentTypes(t *testing.T) {
	h := newAPIHarness(t, harnessOptions{})
	h.createMeter(`{"slug":"calls","eventType":"call","aggregation":"COUNT"}`)
	ts := "2026-04-01T11:00:00Z"
	tests := []struct {
		name, contentType, body string
		ids                     []string
	}{
		{"cloudevent", "application/cloudevents+json", ce("ce-1", "call", "c1", ts, `{"n":1}`), []string{"ce-1"}},
		{"cloudevent upper case with charset", "Application/CloudEvents+JSON; charset=utf-8", ce("ce-2", "call", "c1", ts, ""), []string{"ce-2"}},
		{"batch", batchCT, jsonArray(ce("b-1", "call", "c1", ts, ""), ce("b-2", "call", "c2", ts, `{"n":2}`)), []string{"b-1", "b-2"}},
		{"json single", "application/json", ce("j-1", "call", "c1", ts, ""), []string{"j-1"}},
		{"json array", "application/json; charset=utf-8", jsonArray(ce("ja-1", "call", "c1", ts, ""), ce("ja-2", "call", "c1", ts, "")), []string{"ja-1", "ja-2"}},
		{"ndjson", "application/x-ndjson", ce("n-1", "call", "c1", ts, "") + "\n\n" + ce("n-2", "call", "c2", ts, "") + "\r\n", []string{"n-1", "n-2"}},
		{"ndjson alternative type", "application/ndjson", ce("na-1", "call", "c1", ts, ""), []string{"na-1"}},
	}
	total := 0
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := h.do("POST", "/api/v1/events", tc.contentType, tc.body)
			if r.Status != http.StatusNoContent || len(r.Body) != 0 {
				t.Fatalf("got %s, want 204 and no body", r)
			}
			for _, id := range tc.ids {
				ev := h.eventByID(id)
				if ev.Event["id"] != id || ev.Event["type"] != "call" || ev.Event["source"] != "test" {
					t.Errorf("stored event %s: %v", id, ev.Event)
				}
				if !ev.IngestedAt.Equal(apiStart) {
					t.Errorf("event %s ingestedAt %v, want the clock's %v", id, ev.IngestedAt, apiStart)
				}
				if ev.ValidationError != "" {
					t.Errorf("event %s: unexpected validation error %q", id, ev.ValidationError)
				}
			}
		})
		total += len(tc.ids)
	}
	if got := h.total("calls"); got != fmt.Sprint(total) {
		t.Errorf("COUNT = %s, want %d", got, total)
	}

	// An event without a time gets the receive time, and GET shows it.
	h.clock.Advance(90 * time.Second)
	h.ingest("application/x-ndjson", ce("no-time", "call", "c9", "", ""))
	ev := h.eventByID("no-time")
	if got, want := ev.Event["time"], apiStart.Add(90*time.Second).Format(time.RFC3339Nano); got != want {
		t.Errorf("time of an event sent without one: %v, want %v", got, want)
	}
	res := h.query("calls", vals("subject", "c9"))
	if len(res.Data) != 1 || res.Data[0].Value.String() != "1" || res.Data[0].WindowStart != "2026-04-01T12:01:00Z" {
		t.Errorf("usage of the event without time: %+v", res.Data)
	}
	h.verify()
}

func TestAPIIngestRejectsInvalidRequestWhole(t *testing.T) {
	h := newAPIHarness(t, harnessOptions{})
	h.createMeter(`{"slug":"calls","eventType":"call","aggregation":"COUNT"}`)
	ts := "2026-04-01T11:00:00Z"
	good := ce("good-1", "call", "c1", ts, "")
	type prob struct {
		index int
		field string
		msg   string
	}
	tests := []struct {
		name, contentType, body string
		want                    []prob
	}{
		{
			name:        "batch with several bad events",
			contentType: batchCT,
			body: jsonArray(good,
				`{"specversion":"1.0","id":"bad-1","source":"test","type":"call"}`,
				ce("bad-2", "call", "c1", "yesterday", ""),
				`{"specversion":"0.3","id":"bad-3","source":"test","type":"call","subject":"c1","data":[1]}`,
				ce("good-2", "call", "c1", ts, "")),
			want: []prob{{1, "subject", "missing"}, {2, "time", "RFC 3339"}, {3, "specversion", "1.0"}, {3, "data", "JSON object"}},
		},
		{
			name:        "ndjson with a malformed line",
			contentType: "application/x-ndjson",
			body:        good + "\n" + `{"specversion":"1.0","id":` + "\n" + ce("good-3", "call", "c1", ts, ""),
			want:        []prob{{1, "", "line 2"}},
		},
		{
			name:        "json single event without id",
			contentType: "application/json",
			body:        `{"specversion":"1.0","source":"test","type":"call","subject":"c1"}`,
			want:        []prob{{0, "id", "missing"}},
		},
		{
			name:        "empty id and source",
			contentType: "application/cloudevents+json",
			body:        `{"specversion":"1.0","id":"","source":"","type":"call","subject":"c1"}`,
			want:        []prob{{0, "id", "empty"}, {0, "source", "empty"}},
		},
		{
			name:        "array sent as a single cloudevent",
			contentType: "application/cloudevents+json",
			body:        jsonArray(good),
			want:        []prob{{-1, "", "one JSON event object"}},
		},
		{
			name:        "empty batch",
			contentType: batchCT,
			body:        `[]`,
			want:        []prob{{-1, "", "no events"}},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := problemOf(t, h.do("POST", "/api/v1/events", tc.contentType, tc.body), http.StatusBadRequest)
			if p.Title != "Invalid events" || !strings.Contains(p.Detail, "nothing of it was stored") {
				t.Errorf("problem title %q detail %q", p.Title, p.Detail)
			}
			if len(p.Problems) != len(tc.want) {
				t.Errorf("got %d problems %+v, want %d", len(p.Problems), p.Problems, len(tc.want))
			}
			for _, w := range tc.want {
				found := false
				for _, got := range p.Problems {
					if got.Index == w.index && got.Field == w.field && strings.Contains(got.Message, w.msg) {
						found = true
					}
				}
				if !found {
					t.Errorf("no problem {index %d field %q message ~%q} in %+v", w.index, w.field, w.msg, p.Problems)
				}
			}
		})
	}
	if evs := h.events(""); len(evs) != 0 {
		t.Errorf("events of rejected requests were stored: %+v", evs)
	}
	if got := h.total("calls"); got != "0" {
		t.Errorf("COUNT after rejected requests = %s, want 0", got)
	}
	// The valid events of a rejected request are not deduplicated away:
	// sending them alone later stores them.
	h.ingest(batchCT, jsonArray(good))
	if got := h.total("calls"); got != "1" {
		t.Errorf("COUNT = %s, want 1", got)
	}
}

func TestAPIIngestUnsupportedMediaType(t *testing.T) {
	h := newAPIHarness(t, harnessOptions{})
	body := ce("x-1", "call", "c1", "2026-04-01T11:00:00Z", "")
	for _, ct := range []string{"text/plain", "application/xml", "application/cloudevents", ""} {
		t.Run(ct, func(t *testing.T) {
			p := problemOf(t, h.do("POST", "/api/v1/events", ct, body), http.StatusUnsupportedMediaType)
			if !strings.Contains(p.Detail, "application/cloudevents+json") {
				t.Errorf("415 detail %q does not say what to send", p.Detail)
			}
		})
	}
	if evs := h.events(""); len(evs) != 0 {
		t.Errorf("events of rejected requests were stored: %+v", evs)
	}
}

// chunkedReader hides its length so that the client sends the body chunked,
// without Content-Length.
type chunkedReader struct{ r io.Reader }

func (c chunkedReader) Read(p []byte) (int, error) { return c.r.Read(p) }

func TestAPIIngestTooLarge(t *testing.T) {
	h := newAPIHarness(t, harnessOptions{maxBodyBytes: 2048, limits: event.Limits{MaxEvents: 3}})
	ts := "2026-04-01T11:00:00Z"
	var big []string
	for i := 0; len(strings.Join(big, ",")) < 3000; i++ {
		big = append(big, ce(fmt.Sprintf("big-%d", i), "call", "c1", ts, `{"pad":"`+strings.Repeat("x", 200)+`"}`))
	}
	body := jsonArray(big...)

	t.Run("content length over the limit", func(t *testing.T) {
		p := problemOf(t, h.do("POST", "/api/v1/events", batchCT, body), http.StatusRequestEntityTooLarge)
		if !strings.Contains(p.Detail, "2048") {
			t.Errorf("413 detail %q does not give the limit", p.Detail)
		}
	})
	t.Run("chunked body over the limit", func(t *testing.T) {
		r := h.request("POST", "/api/v1/events", batchCT, chunkedReader{strings.NewReader(body)})
		p := problemOf(t, r, http.StatusRequestEntityTooLarge)
		if !strings.Contains(p.Detail, "2048") {
			t.Errorf("413 detail %q does not give the limit", p.Detail)
		}
	})
	t.Run("too many events", func(t *testing.T) {
		var evs []string
		for i := 0; i < 4; i++ {
			evs = append(evs, ce(fmt.Sprintf("many-%d", i), "call", "c1", ts, ""))
		}
		p := problemOf(t, h.do("POST", "/api/v1/events", "application/x-ndjson", strings.Join(evs, "\n")), http.StatusRequestEntityTooLarge)
		if len(p.Problems) == 0 {
			t.Errorf("413 for too many events lists no problem: %+v", p)
		}
	})
	if evs := h.events(""); len(evs) != 0 {
		t.Fatalf("events of rejected requests were stored: %d", len(evs))
	}
	t.Run("at the limits", func(t *testing.T) {
		var evs []string
		for i := 0; i < 3; i++ {
			evs = append(evs, ce(fmt.Sprintf("ok-%d", i), "call", "c1", ts, ""))
		}
		h.ingest(batchCT, jsonArray(evs...))
		if evs := h.events(""); len(evs) != 3 {
			t.Errorf("stored %d events, want 3", len(evs))
		}
	})
}

func TestAPIDuplicatesCountedOnce(t *testing.T) {
	h := newAPIHarness(t, harnessOptions{})
	h.createMeter(`{"slug":"n","eventType":"call","aggregation":"COUNT"}`)
	h.createMeter(`{"slug":"v","eventType":"call","aggregation":"SUM","valueProperty":"$.v"}`)
	h.createMeter(`{"slug":"u","eventType":"call","aggregation":"UNIQUE_COUNT","valueProperty":"$.user"}`)
	ts := "2026-04-01T11:00:00Z"
	ev := func(id string, v int, user string) string {
		return ce(id, "call", "c1", ts, fmt.Sprintf(`{"v":%d,"user":%q}`, v, user))
	}

	// Within one request the first occurrence wins.
	h.ingest(batchCT, jsonArray(ev("d1", 1, "a"), ev("d2", 10, "b"), ev("d1", 100, "z")))
	if n, v, u := h.total("n"), h.total("v"), h.total("u"); n != "2" || v != "11" || u != "2" {
		t.Fatalf("after a batch with a duplicate: COUNT %s SUM %s UNIQUE %s, want 2 11 2", n, v, u)
	}
	if got := h.eventByID("d1").Event["data"]; fmt.Sprint(got) != "map[user:a v:1]" {
		t.Errorf("stored d1 data %v, want the first occurrence", got)
	}

	// Across requests, and across content types.
	h.ingest("application/x-ndjson", ev("d2", 1000, "y")+"\n"+ev("d3", 10000, "c"))
	h.ingest("application/cloudevents+json", ev("d1", 5, "q"))
	if n, v, u := h.total("n"), h.total("v"), h.total("u"); n != "3" || v != "10011" || u != "3" {
		t.Fatalf("after resending: COUNT %s SUM %s UNIQUE %s, want 3 10011 3", n, v, u)
	}

	// The same id from another source is another event.
	h.ingest("application/json", `{"specversion":"1.0","id":"d1","source":"other","type":"call","subject":"c1","time":"`+ts+`","data":{"v":7,"user":"a"}}`)
	if n, v := h.total("n"), h.total("v"); n != "4" || v != "10018" {
		t.Fatalf("after the same id from another source: COUNT %s SUM %s, want 4 10018", n, v)
	}

	// The same batch sent concurrently (likely in one group commit) counts once.
	var evs []string
	want := 0
	for i := 0; i < 200; i++ {
		evs = append(evs, ev(fmt.Sprintf("cc-%d", i), i, fmt.Sprint("user-", i%7)))
		want += i
	}
	body := jsonArray(evs...)
	var wg sync.WaitGroup
	statuses := make([]int, 8)
	for g := range statuses {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, _ := http.NewRequest("POST", h.srv.URL+"/api/v1/events", strings.NewReader(body))
			req.Header.Set("Content-Type", batchCT)
			resp, err := h.srv.Client().Do(req)
			if err != nil {
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			statuses[g] = resp.StatusCode
		}()
	}
	wg.Wait()
	for g, s := range statuses {
		if s != http.StatusNoContent {
			t.Errorf("concurrent request %d: status %d, want 204", g, s)
		}
	}
	if n, v := h.total("n"), h.total("v"); n != "204" || v != fmt.Sprint(10018+want) {
		t.Errorf("after 8 concurrent copies of a batch: COUNT %s SUM %s, want 204 %d", n, v, 10018+want)
	}
	if evs := h.events("limit=1000"); len(evs) != 204 {
		t.Errorf("stored %d events, want 204", len(evs))
	}
	h.verify()
}

func TestAPIInvalidValuesStoredNotCounted(t *testing.T) {
	h := newAPIHarness(t, harnessOptions{})
	h.createMeter(`{"slug":"tokens","eventType":"prompt","aggregation":"SUM","valueProperty":"$.tokens"}`)
	h.createMeter(`{"slug":"prompts","eventType":"prompt","aggregation":"COUNT"}`)
	ts := "2026-04-01T11:00:00Z"
	tests := []struct {
		id, data string
		// wantErr are substrings of the event's validationError ("" = none).
		wantErr []string
	}{
		{"ok", `{"tokens":5}`, nil},
		{"ok-string", `{"tokens":"0.5"}`, nil},
		{"missing", `{"other":1}`, []string{"meter tokens", "$.tokens", "missing"}},
		{"no-data", ``, []string{"meter tokens", "no data"}},
		{"not-number", `{"tokens":"abc"}`, []string{"meter tokens", `"abc"`, "not a number"}},
		{"nan", `{"tokens":"NaN"}`, []string{"meter tokens", `"NaN"`, "not a number"}},
		{"infinity", `{"tokens":"Infinity"}`, []string{"not a number"}},
		{"spaces", `{"tokens":" 5"}`, []string{"not a number"}},
		{"bool", `{"tokens":true}`, []string{"a boolean", "not a number"}},
		{"null", `{"tokens":null}`, []string{"null", "not a number"}},
		{"object", `{"tokens":{"n":1}}`, []string{"an object"}},
	}
	var evs []string
	for _, tc := range tests {
		evs = append(evs, ce(tc.id, "prompt", "c1", ts, tc.data))
	}
	h.ingest(batchCT, jsonArray(evs...))

	if got := h.total("tokens"); got != "5.5" {
		t.Errorf("SUM = %s, want 5.5 (only the valid values)", got)
	}
	if got := h.total("prompts"); got != fmt.Sprint(len(tests)) {
		t.Errorf("COUNT on the same type = %s, want %d (every event)", got, len(tests))
	}
	for _, tc := range tests {
		ev := h.eventByID(tc.id)
		if len(tc.wantErr) == 0 && ev.ValidationError != "" {
			t.Errorf("event %s: validationError %q, want none", tc.id, ev.ValidationError)
		}
		for _, w := range tc.wantErr {
			if !strings.Contains(ev.ValidationError, w) {
				t.Errorf("event %s: validationError %q does not mention %q", tc.id, ev.ValidationError, w)
			}
		}
		if strings.Contains(ev.ValidationError, "prompts") {
			t.Errorf("event %s: the COUNT meter reported an error: %q", tc.id, ev.ValidationError)
		}
	}

	// A meter created now sees the same events and reports its own errors.
	h.createMeter(`{"slug":"tokens_max","eventType":"prompt","aggregation":"MAX","valueProperty":"$.tokens"}`)
	if got := h.total("tokens_max"); got != "5" {
		t.Errorf("MAX of a meter created later = %s, want 5", got)
	}
	ev := h.eventByID("nan")
	if !strings.Contains(ev.ValidationError, "meter tokens:") || !strings.Contains(ev.ValidationError, "meter tokens_max:") {
		t.Errorf("validationError %q, want errors of both meters", ev.ValidationError)
	}
	// Deleting a meter removes its errors.
	h.expect(h.do("DELETE", "/api/v1/meters/tokens", "", ""), http.StatusNoContent, "delete meter")
	ev = h.eventByID("nan")
	if strings.Contains(ev.ValidationError, "meter tokens:") || !strings.Contains(ev.ValidationError, "meter tokens_max:") {
		t.Errorf("validationError after deleting meter tokens: %q", ev.ValidationError)
	}
	h.verify()
}

func TestAPIMeterCreatedAfterEventsCountsThem(t *testing.T) {
	h := newAPIHarness(t, harnessOptions{})
	h.ingest(batchCT, jsonArray(
		ce("a1", "prompt", "c1", "2026-04-01T10:00:00Z", `{"tokens":3,"model":"m1"}`),
		ce("a2", "prompt", "c2", "2026-04-01T10:30:00Z", `{"tokens":4,"model":"m2"}`),
		ce("a3", "other", "c1", "2026-04-01T10:30:00Z", `{"tokens":100}`)))
	h.createMeter(`{"slug":"tokens","eventType":"prompt","aggregation":"SUM","valueProperty":"$.tokens","groupBy":{"model":"$.model"}}`)
	h.createMeter(`{"slug":"late","eventType":"prompt","aggregation":"SUM","valueProperty":"$.tokens","eventFrom":"2026-04-01T10:15:00Z"}`)
	if got := h.total("tokens"); got != "7" {
		t.Errorf("SUM of events sent before the meter existed = %s, want 7", got)
	}
	if got := h.total("late"); got != "4" {
		t.Errorf("SUM with eventFrom = %s, want 4", got)
	}
	// Events after creation add to the rebuilt totals.
	h.ingest("application/json", ce("a4", "prompt", "c1", "2026-04-01T11:00:00Z", `{"tokens":10,"model":"m1"}`))
	res := h.query("tokens", vals("groupBy", "model"))
	got := map[string]string{}
	for _, row := range res.Data {
		got[strp(row.GroupBy["model"])] = row.Value.String()
	}
	if len(got) != 2 || got["m1"] != "13" || got["m2"] != "4" {
		t.Errorf("SUM by model = %v, want m1 13, m2 4", got)
	}
	h.verify()
}

func TestAPIUpdateMeterGroupByRebuilds(t *testing.T) {
	h := newAPIHarness(t, harnessOptions{})
	h.createMeter(`{"slug":"tokens","eventType":"prompt","aggregation":"SUM","valueProperty":"$.tokens","groupBy":{"model":"$.model"}}`)
	ts := "2026-04-01T10:00:00Z"
	h.ingest(batchCT, jsonArray(
		ce("g1", "prompt", "c1", ts, `{"tokens":1,"model":"m1","region":"eu"}`),
		ce("g2", "prompt", "c1", ts, `{"tokens":2,"model":"m2","region":"eu"}`),
		ce("g3", "prompt", "c2", ts, `{"tokens":4,"model":"m1","region":"us"}`),
		ce("g4", "prompt", "c2", ts, `{"tokens":8,"model":"m2"}`)))
	byKey := func(key string) map[string]string {
		t.Helper()
		out := map[string]string{}
		for _, row := range h.query("tokens", vals("groupBy", key)).Data {
			out[strp(row.GroupBy[key])] = row.Value.String()
		}
		return out
	}
	if got := byKey("model"); fmt.Sprint(got) != "map[m1:5 m2:10]" {
		t.Fatalf("SUM by model = %v", got)
	}
	r := h.do("PUT", "/api/v1/meters/tokens", "application/json",
		`{"slug":"tokens","eventType":"prompt","aggregation":"SUM","valueProperty":"$.tokens","groupBy":{"region":"$.region"}}`)
	h.expect(r, http.StatusOK, "change groupBy")
	if got := byKey("region"); fmt.Sprint(got) != "map[<nil>:8 eu:3 us:4]" {
		t.Errorf("SUM by region after the change = %v, want eu 3, us 4, none 8", got)
	}
	p := problemOf(t, h.do("GET", "/api/v1/meters/tokens/query?groupBy=model", "", ""), http.StatusBadRequest)
	if !strings.Contains(p.Detail, `unknown key "model"`) {
		t.Errorf("query by the removed key: %q", p.Detail)
	}
	h.ingest("application/json", ce("g5", "prompt", "c1", ts, `{"tokens":16,"model":"m1","region":"us"}`))
	if got := byKey("region"); fmt.Sprint(got) != "map[<nil>:8 eu:3 us:20]" {
		t.Errorf("SUM by region after a new event = %v", got)
	}
	// Changing the value property rebuilds too.
	h.expect(h.do("PUT", "/api/v1/meters/tokens", "application/json",
		`{"slug":"tokens","eventType":"prompt","aggregation":"COUNT","groupBy":{"region":"$.region"}}`), http.StatusOK, "change aggregation")
	if got := h.total("tokens"); got != "5" {
		t.Errorf("COUNT after changing the aggregation = %s, want 5", got)
	}
	h.verify()
}

// aggregationEvents are sent one request each, in this order: not the order
// of their times, so that LATEST must follow event time, and e5 ties with e4
// on time, so that LATEST must then follow ingestion order.
var aggregationEvents = []string{
	ce("e2", "req", "c1", "2026-03-10T10:20:00Z", `{"value":0.2,"user":"u2","region":"eu"}`),
	ce("e4", "req", "c2", "2026-03-10T11:06:00Z", `{"value":-1.5,"user":"u1","region":"us"}`),
	ce("e1", "req", "c1", "2026-03-10T10:00:05Z", `{"value":"0.1","user":"u1","region":"eu"}`),
	ce("e3", "req", "c2", "2026-03-10T11:05:00Z", `{"value":7,"user":"u1","region":"us"}`),
	ce("e5", "req", "c2", "2026-03-10T11:06:00Z", `{"value":2,"user":"u3","region":"us"}`),
}

func TestAPIQueryAggregations(t *testing.T) {
	tests := []struct {
		agg            string
		total, c1, c2  string
		byRegionEU, us string
	}{
		{"SUM", "7.8", "0.3", "7.5", "0.3", "7.5"},
		{"COUNT", "5", "2", "3", "2", "3"},
		{"UNIQUE_COUNT", "3", "2", "2", "2", "2"},
		{"AVG", "1.56", "0.15", "2.5", "0.15", "2.5"},
		{"MIN", "-1.5", "0.1", "-1.5", "0.1", "-1.5"},
		{"MAX", "7", "0.2", "7", "0.2", "7"},
		{"LATEST", "2", "0.2", "2", "0.2", "2"},
	}
	// Run once with rollups held in the write-behind overlay and once with
	// every commit flushed to the table, where states merge in SQL.
	for _, store := range []struct {
		name string
		opts sqlite.Options
	}{{"overlay", sqlite.Options{}}, {"flush every commit", sqlite.Options{FlushInterval: time.Nanosecond}}} {
		t.Run(store.name, func(t *testing.T) {
			h := newAPIHarness(t, harnessOptions{storeOpts: store.opts})
			for _, tc := range tests {
				value := ""
				if tc.agg != "COUNT" {
					value = `,"valueProperty":"$.value"`
					if tc.agg == "UNIQUE_COUNT" {
						value = `,"valueProperty":"$.user"`
					}
				}
				h.createMeter(fmt.Sprintf(`{"slug":%q,"eventType":"req","aggregation":%q%s,"groupBy":{"region":"$.region"}}`,
					strings.ToLower(tc.agg), tc.agg, value))
			}
			for _, e := range aggregationEvents {
				h.ingest("application/cloudevents+json", e)
			}
			for _, tc := range tests {
				t.Run(tc.agg, func(t *testing.T) {
					slug := strings.ToLower(tc.agg)
					if got := h.total(slug); got != tc.total {
						t.Errorf("total = %s, want %s", got, tc.total)
					}
					res := h.query(slug, vals("groupBy", "subject"))
					if len(res.Data) != 2 || strp(res.Data[0].Subject) != "c1" || strp(res.Data[1].Subject) != "c2" ||
						res.Data[0].Value.String() != tc.c1 || res.Data[1].Value.String() != tc.c2 {
						t.Errorf("by subject = %+v, want c1 %s, c2 %s", res.Data, tc.c1, tc.c2)
					}
					res = h.query(slug, vals("groupBy", "region"))
					if len(res.Data) != 2 || strp(res.Data[0].GroupBy["region"]) != "eu" || res.Data[0].Value.String() != tc.byRegionEU ||
						strp(res.Data[1].GroupBy["region"]) != "us" || res.Data[1].Value.String() != tc.us {
						t.Errorf("by region = %+v, want eu %s, us %s", res.Data, tc.byRegionEU, tc.us)
					}
				})
			}
			// The exact decimal sum, as JSON number text.
			r := h.do("GET", "/api/v1/meters/sum/query?subject=c1", "", "")
			h.expect(r, http.StatusOK, "query sum")
			if !bytes.Contains(r.Body, []byte(`"value":0.3,`)) {
				t.Errorf("SUM of 0.1 and 0.2: body %s does not hold \"value\":0.3", r.Body)
			}
			h.verify()
		})
	}
}

func TestAPIQueryParameters(t *testing.T) {
	h := newAPIHarness(t, harnessOptions{})
	h.createMeter(`{"slug":"sum","eventType":"req","aggregation":"SUM","valueProperty":"$.value","groupBy":{"region":"$.region","user":"$.user"}}`)
	for _, e := range aggregationEvents {
		h.ingest("application/cloudevents+json", e)
	}
	type row struct{ start, end, subject, region, user, value string }
	flatten := func(res apiQueryResult) []row {
		var out []row
		for _, d := range res.Data {
			r := row{start: d.WindowStart, end: d.WindowEnd, subject: strp(d.Subject), value: d.Value.String()}
			if v, ok := d.GroupBy["region"]; ok {
				r.region = strp(v)
			}
			if v, ok := d.GroupBy["user"]; ok {
				r.user = strp(v)
			}
			out = append(out, r)
		}
		return out
	}
	const (
		first = "2026-03-10T10:00:00Z"
		end   = "2026-03-10T11:07:00Z"
	)
	tests := []struct {
		name  string
		query url.Values
		body  string // for POST; empty: GET
		want  []row
	}{
		{"whole range", nil, "", []row{{first, end, "<nil>", "", "", "7.8"}}},
		{"by subject", vals("groupBy", "subject"), "", []row{
			{first, "2026-03-10T10:21:00Z", "c1", "", "", "0.3"},
			{"2026-03-10T11:05:00Z", end, "c2", "", "", "7.5"}}},
		{"by subject and user", vals("groupBy", "subject", "groupBy", "user", "groupBy", "subject"), "", []row{
			{first, "2026-03-10T10:01:00Z", "c1", "", "u1", "0.1"},
			{"2026-03-10T10:20:00Z", "2026-03-10T10:21:00Z", "c1", "", "u2", "0.2"},
			{"2026-03-10T11:05:00Z", end, "c2", "", "u1", "5.5"},
			{"2026-03-10T11:06:00Z", end, "c2", "", "u3", "2"}}},
		{"filter by group", vals("filterGroupBy[region]", "us"), "", []row{{"2026-03-10T11:05:00Z", end, "<nil>", "", "", "7.5"}}},
		{"filter by group and group by another", vals("filterGroupBy[user]", "u1", "groupBy", "region"), "", []row{
			{first, "2026-03-10T10:01:00Z", "<nil>", "eu", "", "0.1"},
			{"2026-03-10T11:05:00Z", end, "<nil>", "us", "", "5.5"}}},
		{"filter matching nothing", vals("filterGroupBy[region]", "mars"), "", nil},
		{"subject filter", vals("subject", "c2"), "", []row{{"2026-03-10T11:05:00Z", end, "<nil>", "", "", "7.5"}}},
		{"two subjects", vals("subject", "c1", "subject", "c2", "subject", "nobody", "groupBy", "subject"), "", []row{
			{first, "2026-03-10T10:21:00Z", "c1", "", "", "0.3"},
			{"2026-03-10T11:05:00Z", end, "c2", "", "", "7.5"}}},
		{"from and to", vals("from", "2026-03-10T10:01:00Z", "to", "2026-03-10T11:06:00Z"), "", []row{
			{"2026-03-10T10:01:00Z", "2026-03-10T11:06:00Z", "<nil>", "", "", "7.2"}}},
		{"from and to with an offset", vals("from", "2026-03-10T11:01:00+01:00", "to", "2026-03-10T12:06:00+01:00"), "", []row{
			{"2026-03-10T10:01:00Z", "2026-03-10T11:06:00Z", "<nil>", "", "", "7.2"}}},
		{"hourly by subject", vals("windowSize", "HOUR", "groupBy", "subject"), "", []row{
			{first, "2026-03-10T11:00:00Z", "c1", "", "", "0.3"},
			{"2026-03-10T11:00:00Z", "2026-03-10T12:00:00Z", "c2", "", "", "7.5"}}},
		{"minutes, lower case", vals("windowSize", "minute", "filterGroupBy[region]", "us"), "", []row{
			{"2026-03-10T11:05:00Z", "2026-03-10T11:06:00Z", "<nil>", "", "", "7"},
			{"2026-03-10T11:06:00Z", "2026-03-10T11:07:00Z", "<nil>", "", "", "0.5"}}},
		{"POST", nil, `{"subject":["c1"],"groupBy":["region"],"filterGroupBy":{"user":"u2"},"windowSize":"DAY","from":"2026-03-01T00:00:00Z","to":"2026-04-01T00:00:00Z"}`, []row{
			{"2026-03-10T00:00:00Z", "2026-03-11T00:00:00Z", "<nil>", "eu", "", "0.2"}}},
		{"POST empty", nil, `{}`, []row{{first, end, "<nil>", "", "", "7.8"}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var res apiQueryResult
			if tc.body != "" {
				r := h.do("POST", "/api/v1/meters/sum/query", "application/json", tc.body)
				h.expect(r, http.StatusOK, "POST query")
				decodeInto(t, r, &res)
			} else {
				res = h.query("sum", tc.query)
			}
			if got := flatten(res); fmt.Sprint(got) != fmt.Sprint(tc.want) {
				t.Errorf("rows:\n got %v\nwant %v", got, tc.want)
			}
			if res.Data == nil {
				t.Errorf("data is null, want an array")
			}
		})
	}

	bad := []struct {
		name, query, body string
		want              []string
	}{
		{"from not on a minute", "from=2026-03-10T10:00:30Z", "", []string{"from:", "whole minute"}},
		{"to not on a minute", "to=2026-03-10T10:00:00.5Z", "", []string{"to:", "whole minute"}},
		{"both not on a minute", "from=2026-03-10T10:00:01Z&to=2026-03-10T11:00:01Z", "", []string{"from:", "to:"}},
		{"POST from not on a minute", "", `{"from":"2026-03-10T10:00:30Z"}`, []string{"from:", "whole minute"}},
		{"from after to", "from=2026-03-10T11:00:00Z&to=2026-03-10T10:00:00Z", "", []string{"from:", "not before to"}},
		{"not a time", "from=yesterday", "", []string{"from:", "RFC 3339"}},
		{"bad window size", "windowSize=WEEK", "", []string{"windowSize:", "WEEK"}},
		{"bad time zone", "windowSize=DAY&windowTimeZone=Mars/Olympus", "", []string{"windowTimeZone:"}},
		{"local time zone", "windowTimeZone=Local", "", []string{"windowTimeZone:"}},
		{"unknown group", "groupBy=model", "", []string{`groupBy: unknown key "model"`}},
		{"filter by subject", "filterGroupBy[subject]=c1", "", []string{"filterGroupBy:", "subject parameter"}},
		{"bad filter syntax", "filterGroupBy[]=x", "", []string{"filterGroupBy"}},
		{"several problems", "windowSize=YEAR&windowTimeZone=Nowhere&groupBy=nope", "", []string{"windowSize:", "windowTimeZone:"}},
		{"POST unknown field", "", `{"subjects":["c1"]}`, []string{"subjects"}},
	}
	for _, tc := range bad {
		t.Run("bad/"+tc.name, func(t *testing.T) {
			var r apiResp
			if tc.body != "" {
				r = h.do("POST", "/api/v1/meters/sum/query", "application/json", tc.body)
			} else {
				r = h.do("GET", "/api/v1/meters/sum/query?"+tc.query, "", "")
			}
			p := problemOf(t, r, http.StatusBadRequest)
			all := p.Detail + " | " + strings.Join(p.Errors, " | ")
			for _, w := range tc.want {
				if !strings.Contains(all, w) {
					t.Errorf("problem %q does not mention %q", all, w)
				}
			}
		})
	}
}

func TestAPIQueryWindowsAcrossDST(t *testing.T) {
	h := newAPIHarness(t, harnessOptions{})
	h.createMeter(`{"slug":"dst","eventType":"dst","aggregation":"SUM","valueProperty":"$.v"}`)
	// Europe/Berlin moves from +01:00 to +02:00 at 2026-03-29T01:00:00Z and
	// back at 2026-10-25T01:00:00Z.
	h.ingest(batchCT, jsonArray(
		ce("s0", "dst", "c1", "2026-03-28T22:30:00Z", `{"v":1}`),      // 28th 23:30 CET
		ce("s1", "dst", "c1", "2026-03-28T23:30:00Z", `{"v":10}`),     // 29th 00:30 CET
		ce("s2", "dst", "c1", "2026-03-29T00:30:00Z", `{"v":100}`),    // 29th 01:30 CET
		ce("s3", "dst", "c1", "2026-03-29T01:30:00Z", `{"v":1000}`),   // 29th 03:30 CEST
		ce("s4", "dst", "c1", "2026-03-29T21:30:00Z", `{"v":10000}`),  // 29th 23:30 CEST
		ce("s5", "dst", "c1", "2026-03-29T22:30:00Z", `{"v":100000}`), // 30th 00:30 CEST
		ce("f1", "dst", "c1", "2026-10-25T00:30:00Z", `{"v":3}`),      // 02:30 CEST
		ce("f2", "dst", "c1", "2026-10-25T01:30:00Z", `{"v":5}`),      // 02:30 CET
	))
	march := []string{"from", "2026-03-01T00:00:00Z", "to", "2026-04-01T00:00:00Z"}
	october := []string{"from", "2026-10-24T00:00:00Z", "to", "2026-10-26T00:00:00Z"}
	tests := []struct {
		name  string
		query url.Values
		want  []string // "start end value"
	}{
		{"days in Berlin in spring", vals(append([]string{"windowSize", "DAY", "windowTimeZone", "Europe/Berlin"}, march...)...), []string{
			"2026-03-28T00:00:00+01:00 2026-03-29T00:00:00+01:00 1",
			"2026-03-29T00:00:00+01:00 2026-03-30T00:00:00+02:00 11110",
			"2026-03-30T00:00:00+02:00 2026-03-31T00:00:00+02:00 100000",
		}},
		{"days in UTC in spring", vals(append([]string{"windowSize", "DAY"}, march...)...), []string{
			"2026-03-28T00:00:00Z 2026-03-29T00:00:00Z 11",
			"2026-03-29T00:00:00Z 2026-03-30T00:00:00Z 111100",
		}},
		{"hours in Berlin in spring", vals(append([]string{"windowSize", "HOUR", "windowTimeZone", "Europe/Berlin"}, march...)...), []string{
			"2026-03-28T23:00:00+01:00 2026-03-29T00:00:00+01:00 1",
			"2026-03-29T00:00:00+01:00 2026-03-29T01:00:00+01:00 10",
			"2026-03-29T01:00:00+01:00 2026-03-29T03:00:00+02:00 100",
			"2026-03-29T03:00:00+02:00 2026-03-29T04:00:00+02:00 1000",
			"2026-03-29T23:00:00+02:00 2026-03-30T00:00:00+02:00 10000",
			"2026-03-30T00:00:00+02:00 2026-03-30T01:00:00+02:00 100000",
		}},
		{"day in Berlin in autumn", vals(append([]string{"windowSize", "DAY", "windowTimeZone", "Europe/Berlin"}, october...)...), []string{
			"2026-10-25T00:00:00+02:00 2026-10-26T00:00:00+01:00 8",
		}},
		{"hours in Berlin in autumn", vals(append([]string{"windowSize", "HOUR", "windowTimeZone", "Europe/Berlin"}, october...)...), []string{
			"2026-10-25T02:00:00+02:00 2026-10-25T02:00:00+01:00 3",
			"2026-10-25T02:00:00+01:00 2026-10-25T03:00:00+01:00 5",
		}},
		{"month in Berlin clipped to from and to", vals("windowSize", "MONTH", "windowTimeZone", "Europe/Berlin", "from", "2026-03-29T00:00:00Z", "to", "2026-03-29T22:00:00Z"), []string{
			"2026-03-29T01:00:00+01:00 2026-03-30T00:00:00+02:00 11100",
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			res := h.query("dst", tc.query)
			var got []string
			for _, d := range res.Data {
				got = append(got, d.WindowStart+" "+d.WindowEnd+" "+d.Value.String())
			}
			if strings.Join(got, "\n") != strings.Join(tc.want, "\n") {
				t.Errorf("rows:\n got %q\nwant %q", got, tc.want)
			}
			if res.WindowSize == nil || *res.WindowSize != strings.ToUpper(tc.query.Get("windowSize")) {
				t.Errorf("windowSize %v, want %s", strp(res.WindowSize), tc.query.Get("windowSize"))
			}
		})
	}
}

func TestAPIQueryCSV(t *testing.T) {
	h := newAPIHarness(t, harnessOptions{})
	h.createMeter(`{"slug":"sum","eventType":"req","aggregation":"SUM","valueProperty":"$.value","groupBy":{"region":"$.region","user":"$.user"}}`)
	for _, e := range aggregationEvents {
		h.ingest("application/cloudevents+json", e)
	}
	tests := []struct {
		name, query, accept string
		want                [][]string
	}{
		{"hourly by subject", "windowSize=HOUR&groupBy=subject", "text/csv", [][]string{
			{"windowStart", "windowEnd", "subject", "value"},
			{"2026-03-10T10:00:00Z", "2026-03-10T11:00:00Z", "c1", "0.3"},
			{"2026-03-10T11:00:00Z", "2026-03-10T12:00:00Z", "c2", "7.5"},
		}},
		{"groups sorted", "groupBy=user&groupBy=region&groupBy=subject&subject=c1&windowSize=DAY&windowTimeZone=Europe/Berlin", "application/json;q=0.5, text/csv", [][]string{
			{"windowStart", "windowEnd", "subject", "region", "user", "value"},
			{"2026-03-10T00:00:00+01:00", "2026-03-11T00:00:00+01:00", "c1", "eu", "u1", "0.1"},
			{"2026-03-10T00:00:00+01:00", "2026-03-11T00:00:00+01:00", "c1", "eu", "u2", "0.2"},
		}},
		{"no rows", "subject=nobody", "TEXT/CSV; charset=utf-8", [][]string{{"windowStart", "windowEnd", "value"}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := h.do("GET", "/api/v1/meters/sum/query?"+tc.query, "", "", "Accept", tc.accept)
			h.expect(r, http.StatusOK, "CSV query")
			if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/csv") {
				t.Errorf("Content-Type %q, want text/csv", ct)
			}
			recs, err := csv.NewReader(bytes.NewReader(r.Body)).ReadAll()
			if err != nil {
				t.Fatalf("parse CSV %q: %v", r.Body, err)
			}
			if fmt.Sprint(recs) != fmt.Sprint(tc.want) {
				t.Errorf("CSV:\n got %q\nwant %q", recs, tc.want)
			}
		})
	}
	// Subjects and group values from event data that a spreadsheet would
	// run as a formula are exported as text.
	h.ingest(batchCT, jsonArray(
		ce("csv1", "req", "=HYPERLINK(\"http://x\")", "2026-03-12T10:00:00Z", `{"value":1,"region":"@SUM(A1)","user":"-2+3"}`),
		ce("csv2", "req", "plain", "2026-03-12T10:00:00Z", `{"value":2,"region":"eu","user":"u=1"}`),
	))
	r := h.do("GET", "/api/v1/meters/sum/query?from=2026-03-12T00:00:00Z&groupBy=subject&groupBy=region&groupBy=user", "", "", "Accept", "text/csv")
	h.expect(r, http.StatusOK, "CSV query")
	recs, err := csv.NewReader(bytes.NewReader(r.Body)).ReadAll()
	if err != nil {
		t.Fatalf("parse CSV %q: %v", r.Body, err)
	}
	want := [][]string{
		{"windowStart", "windowEnd", "subject", "region", "user", "value"},
		{"2026-03-12T00:00:00Z", "2026-03-12T10:01:00Z", "'=HYPERLINK(\"http://x\")", "'@SUM(A1)", "'-2+3", "1"},
		{"2026-03-12T00:00:00Z", "2026-03-12T10:01:00Z", "plain", "eu", "u=1", "2"},
	}
	if fmt.Sprint(recs) != fmt.Sprint(want) {
		t.Errorf("CSV with formula-like cells:\n got %q\nwant %q", recs, want)
	}
	// Without text/csv in Accept the answer is JSON.
	r = h.do("GET", "/api/v1/meters/sum/query", "", "", "Accept", "application/json")
	if ct := r.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type %q, want application/json", ct)
	}
}

func TestAPIListEvents(t *testing.T) {
	h := newAPIHarness(t, harnessOptions{})
	var evs []string
	for i := 0; i < 5; i++ {
		subject := "c1"
		if i%2 == 1 {
			subject = "c2"
		}
		evs = append(evs, ce(fmt.Sprintf("l%d", i), "req", subject, fmt.Sprintf("2026-03-10T10:0%d:00Z", i), ""))
	}
	h.ingest(batchCT, jsonArray(evs...))
	h.ingest("application/json", ce("other-type", "other", "c1", "2026-03-10T10:00:00Z", ""))
	ids := func(q string) string {
		var out []string
		for _, e := range h.events(q) {
			out = append(out, fmt.Sprint(e.Event["id"]))
		}
		return strings.Join(out, ",")
	}
	for q, want := range map[string]string{
		"":                    "other-type,l4,l3,l2,l1,l0",
		"limit=2":             "other-type,l4",
		"subject=c2":          "l3,l1",
		"type=req&subject=c1": "l4,l2,l0",
		"from=2026-03-10T10:01:00Z&to=2026-03-10T10:03:00Z": "l2,l1",
		"id=l3":         "l3",
		"id=missing":    "",
		"subject=nobod": "",
	} {
		if got := ids(q); got != want {
			t.Errorf("GET /api/v1/events?%s: ids %q, want %q", q, got, want)
		}
	}
	for _, q := range []string{"limit=0", "limit=1001", "limit=x", "from=today", "from=2026-03-10T11:00:00Z&to=2026-03-10T10:00:00Z"} {
		problemOf(t, h.do("GET", "/api/v1/events?"+q, "", ""), http.StatusBadRequest)
	}
}

func TestAPIAdminToken(t *testing.T) {
	const token = "s3cret-token"
	h := newAPIHarness(t, harnessOptions{token: token})
	protected := []struct{ method, path, ct, body string }{
		{"GET", "/api/v1/meters", "", ""},
		{"POST", "/api/v1/meters", "application/json", `{"slug":"m","eventType":"t","aggregation":"COUNT"}`},
		{"POST", "/api/v1/events", "application/json", ce("t1", "t", "c1", "2026-03-10T10:00:00Z", "")},
		{"GET", "/api/v1/events", "", ""},
		{"GET", "/api/v1/subjects", "", ""},
		{"GET", "/api/v1/openapi.yaml", "", ""},
		{"GET", "/api/v1/meters/m/query", "", ""},
	}
	for _, auth := range []struct{ name, header string }{
		{"missing", ""},
		{"wrong", "Bearer not-the-token"},
		{"prefix of the token", "Bearer s3cret"},
		{"wrong scheme", "Basic " + token},
		{"empty bearer", "Bearer "},
	} {
		for _, rt := range protected {
			t.Run(auth.name+" "+rt.method+" "+rt.path, func(t *testing.T) {
				hdr := []string{"Authorization", auth.header}
				p := problemOf(t, h.do(rt.method, rt.path, rt.ct, rt.body, hdr...), http.StatusUnauthorized)
				if p.Instance != rt.path {
					t.Errorf("problem instance %q, want %q", p.Instance, rt.path)
				}
			})
		}
	}
	// Nothing of the refused requests took effect.
	r := h.do("GET", "/api/v1/meters", "", "")
	h.expect(r, http.StatusOK, "list meters with the token")
	if strings.TrimSpace(string(r.Body)) != "[]" {
		t.Errorf("a refused request created a meter: %s", r.Body)
	}
	if evs := h.events(""); len(evs) != 0 {
		t.Errorf("a refused request stored events: %+v", evs)
	}
	// With the token (scheme in any case) it works.
	h.createMeter(`{"slug":"m","eventType":"t","aggregation":"COUNT"}`)
	h.expect(h.do("POST", "/api/v1/events", "application/json", ce("t1", "t", "c1", "2026-03-10T10:00:00Z", ""), "Authorization", "bearer "+token),
		http.StatusNoContent, "ingest with a lower-case scheme")
	if got := h.total("m"); got != "1" {
		t.Errorf("COUNT = %s, want 1", got)
	}
	// Public endpoints need no token; /metrics needs one.
	for _, path := range []string{"/healthz", "/readyz"} {
		r := h.do("GET", path, "", "", "Authorization", "")
		if r.Status != http.StatusOK {
			t.Errorf("GET %s without a token: %s", path, r)
		}
	}
	h.expect(h.do("GET", "/metrics", "", "", "Authorization", ""), http.StatusUnauthorized, "metrics without a token")
	h.expect(h.do("GET", "/metrics", "", ""), http.StatusOK, "metrics with the admin token")
	r = h.do("GET", "/healthz", "", "", "Authorization", "")
	if string(r.Body) != "ok\n" {
		t.Errorf("healthz body %q", r.Body)
	}
	r = h.do("GET", "/api/v1/meters", "", "", "Authorization", "")
	if got := r.Header.Get("WWW-Authenticate"); !strings.HasPrefix(got, "Bearer") {
		t.Errorf("401 WWW-Authenticate %q, want a Bearer challenge", got)
	}
}

func TestAPISubjects(t *testing.T) {
	h := newAPIHarness(t, harnessOptions{})
	r := h.do("GET", "/api/v1/subjects", "", "")
	h.expect(r, http.StatusOK, "list subjects")
	if strings.TrimSpace(string(r.Body)) != "[]" {
		t.Errorf("empty subject list: %s", r.Body)
	}
	type subject struct {
		Key              string            `json:"key"`
		DisplayName      *string           `json:"displayName"`
		Metadata         map[string]string `json:"metadata"`
		StripeCustomerID *string           `json:"stripeCustomerId"`
		CreatedAt        time.Time         `json:"createdAt"`
		UpdatedAt        time.Time         `json:"updatedAt"`
	}
	r = h.do("POST", "/api/v1/subjects", "application/json",
		`[{"key":"c1","displayName":"Customer 1","metadata":{"tier":"gold"},"stripeCustomerId":"cus_1"},{"key":"c2"}]`)
	h.expect(r, http.StatusOK, "upsert subjects")
	var subs []subject
	decodeInto(t, r, &subs)
	if len(subs) != 2 || subs[0].Key != "c1" || strp(subs[0].DisplayName) != "Customer 1" || subs[0].Metadata["tier"] != "gold" ||
		strp(subs[0].StripeCustomerID) != "cus_1" || !subs[0].CreatedAt.Equal(apiStart) || subs[1].Key != "c2" || subs[1].DisplayName != nil {
		t.Fatalf("upserted subjects: %+v", subs)
	}

	h.clock.Advance(time.Minute)
	r = h.do("POST", "/api/v1/subjects", "application/json", `[{"key":"c1","displayName":"Renamed"}]`)
	h.expect(r, http.StatusOK, "update subject")
	subs = nil
	decodeInto(t, r, &subs)
	if len(subs) != 1 || strp(subs[0].DisplayName) != "Renamed" || subs[0].Metadata != nil || subs[0].StripeCustomerID != nil ||
		!subs[0].CreatedAt.Equal(apiStart) || !subs[0].UpdatedAt.Equal(apiStart.Add(time.Minute)) {
		t.Errorf("updated subject: %+v", subs)
	}

	r = h.do("GET", "/api/v1/subjects/c1", "", "")
	h.expect(r, http.StatusOK, "get subject")
	var one subject
	decodeInto(t, r, &one)
	if one.Key != "c1" || strp(one.DisplayName) != "Renamed" {
		t.Errorf("get subject: %+v", one)
	}
	r = h.do("GET", "/api/v1/subjects", "", "")
	subs = nil
	decodeInto(t, r, &subs)
	if len(subs) != 2 || subs[0].Key != "c1" || subs[1].Key != "c2" {
		t.Errorf("list subjects: %+v", subs)
	}

	for name, body := range map[string]string{
		"empty":        `[]`,
		"no key":       `[{"displayName":"x"}]`,
		"repeated key": `[{"key":"c3"},{"key":"c3"}]`,
		"long key":     `[{"key":"` + strings.Repeat("k", 257) + `"}]`,
		"not an array": `{"key":"c3"}`,
		"unknown":      `[{"key":"c3","name":"x"}]`,
	} {
		t.Run("bad/"+name, func(t *testing.T) {
			problemOf(t, h.do("POST", "/api/v1/subjects", "application/json", body), http.StatusBadRequest)
		})
	}
	p := problemOf(t, h.do("POST", "/api/v1/subjects", "application/json", `[{"key":""},{"key":"c4"},{"key":"c4"}]`), http.StatusBadRequest)
	if len(p.Errors) != 2 || !strings.HasPrefix(p.Errors[0], "[0].key") || !strings.HasPrefix(p.Errors[1], "[2].key") {
		t.Errorf("errors %q, want one for [0] and one for [2]", p.Errors)
	}
	problemOf(t, h.do("GET", "/api/v1/subjects/c4", "", ""), http.StatusNotFound)

	h.expect(h.do("DELETE", "/api/v1/subjects/c1", "", ""), http.StatusNoContent, "delete subject")
	problemOf(t, h.do("GET", "/api/v1/subjects/c1", "", ""), http.StatusNotFound)
	problemOf(t, h.do("DELETE", "/api/v1/subjects/c1", "", ""), http.StatusNotFound)
	r = h.do("GET", "/api/v1/subjects", "", "")
	subs = nil
	decodeInto(t, r, &subs)
	if len(subs) != 1 || subs[0].Key != "c2" {
		t.Errorf("subjects after delete: %+v", subs)
	}
}

func TestAPIServesOpenAPIDocument(t *testing.T) {
	h := newAPIHarness(t, harnessOptions{})
	r := h.do("GET", "/api/v1/openapi.yaml", "", "")
	h.expect(r, http.StatusOK, "openapi")
	if ct := r.Header.Get("Content-Type"); ct != "application/yaml" {
		t.Errorf("Content-Type %q, want application/yaml", ct)
	}
	if len(api.OpenAPI) == 0 || !bytes.Equal(r.Body, api.OpenAPI) {
		t.Errorf("served document (%d bytes) differs from api/openapi.yaml (%d bytes)", len(r.Body), len(api.OpenAPI))
	}
	if !bytes.Contains(r.Body, []byte("openapi:")) {
		t.Errorf("served document is not an OpenAPI document: %.100s", r.Body)
	}
	// Every route of the server is answered (not 404/405 from the mux).
	srv := httpapi.New(httpapi.Config{Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	for _, rt := range srv.Routes() {
		path := strings.NewReplacer("{idOrSlug}", "nope", "{key}", "nope").Replace(rt.Pattern)
		r := h.do(rt.Method, path, "application/json", "")
		if r.Status == http.StatusMethodNotAllowed || (r.Status == http.StatusNotFound && bytes.Contains(r.Body, []byte("no such endpoint"))) {
			t.Errorf("%s %s: %s", rt.Method, path, r)
		}
	}
}

// TestAPIFieldNamesAreCaseSensitive checks that a body member whose name
// matches a field only when case is ignored is refused, naming the field.
func TestAPIFieldNamesAreCaseSensitive(t *testing.T) {
	h := newAPIHarness(t, harnessOptions{})
	h.createMeter(`{"slug":"v","eventType":"e","aggregation":"SUM","valueProperty":"$.v"}`)
	for _, tc := range []struct{ method, path, body, want string }{
		{"POST", "/api/v1/meters/v/query", `{"windowsize":"DAY"}`, `did you mean \"windowSize\"`},
		{"POST", "/api/v1/meters", `{"slug":"w","eventtype":"e","aggregation":"COUNT"}`, `did you mean \"eventType\"`},
		{"POST", "/api/v1/subjects", `[{"key":"a"},{"Key":"b"}]`, `[1]: unknown field \"Key\"`},
	} {
		r := h.do(tc.method, tc.path, "application/json", tc.body)
		if r.Status != 400 || !strings.Contains(string(r.Body), tc.want) {
			t.Errorf("%s %s %s = %s, want 400 mentioning %s", tc.method, tc.path, tc.body, r, tc.want)
		}
	}
}
