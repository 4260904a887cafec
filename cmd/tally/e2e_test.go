package main

// End-to-end tests: they build the tally binary once and drive it as a user
// would, over the command line and HTTP. crash_test.go shares the helpers.

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// tallyBin is the binary built by TestMain.
var tallyBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "tally-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		os.Exit(1)
	}
	code := func() int {
		defer os.RemoveAll(dir)
		goTool, err := exec.LookPath("go")
		if err != nil {
			fmt.Fprintln(os.Stderr, "e2e: the go command is needed to build tally:", err)
			return 1
		}
		tallyBin = filepath.Join(dir, "tally")
		args := []string{"build", "-o", tallyBin}
		if raceTest {
			args = append(args, "-race")
		}
		build := exec.Command(goTool, append(args, ".")...)
		build.Stdout, build.Stderr = os.Stderr, os.Stderr
		if err := build.Run(); err != nil {
			fmt.Fprintln(os.Stderr, "e2e: go build:", err)
			return 1
		}
		return m.Run()
	}()
	os.Exit(code)
}

// logBuffer collects a process's output; it is safe for concurrent use.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// cleanEnv is the test's environment without TALLY_* variables, plus extra.
func cleanEnv(extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "TALLY_") {
			env = append(env, kv)
		}
	}
	return append(env, extra...)
}

// tallyServer is a running `tally serve` process.
type tallyServer struct {
	t      *testing.T
	cmd    *exec.Cmd
	URL    string
	Data   string
	Token  string
	logs   *logBuffer
	exited chan struct{}
	err    error // cmd.Wait's result, once exited is closed
}

type serveOpts struct {
	config string   // --config file
	token  string   // sent with every request; set with TALLY_ADMIN_TOKEN
	args   []string // more flags
	env    []string // more environment variables (NAME=value)
}

var listeningRE = regexp.MustCompile(`msg="tally listening" addr=(http://\S+)`)

// startTally starts `tally serve` on a free port with the data directory
// data and waits until it listens.
func startTally(t *testing.T, data string, o serveOpts) *tallyServer {
	t.Helper()
	args := []string{"serve", "--addr", "127.0.0.1:0", "--data", data}
	if o.config != "" {
		args = append(args, "--config", o.config)
	}
	args = append(args, o.args...)
	env := append([]string(nil), o.env...)
	if o.token != "" {
		env = append(env, "TALLY_ADMIN_TOKEN="+o.token)
	}
	s := &tallyServer{t: t, Data: data, Token: o.token, logs: &logBuffer{}, exited: make(chan struct{})}
	s.cmd = exec.Command(tallyBin, args...)
	s.cmd.Env = cleanEnv(env...)
	s.cmd.Stdout = s.logs
	s.cmd.Stderr = s.logs
	if err := s.cmd.Start(); err != nil {
		t.Fatalf("start tally: %v", err)
	}
	go func() {
		s.err = s.cmd.Wait()
		close(s.exited)
	}()
	t.Cleanup(func() {
		select {
		case <-s.exited:
		default:
			_ = s.cmd.Process.Kill()
			<-s.exited
		}
		if t.Failed() {
			t.Logf("tally serve log (%s):\n%s", data, tail(s.logs.String(), 40))
		}
	})
	deadline := time.Now().Add(60 * time.Second)
	for {
		if m := listeningRE.FindStringSubmatch(s.logs.String()); m != nil {
			s.URL = m[1]
			return s
		}
		select {
		case <-s.exited:
			t.Fatalf("tally serve exited before listening (%v):\n%s", s.err, s.logs.String())
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("tally serve did not start listening within 60s:\n%s", s.logs.String())
		}
	}
}

func tail(s string, lines int) string {
	parts := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(parts) > lines {
		parts = parts[len(parts)-lines:]
	}
	return strings.Join(parts, "\n")
}

// Log is everything the process has written so far.
func (s *tallyServer) Log() string { return s.logs.String() }

// kill ends the process with SIGKILL, as a crash would.
func (s *tallyServer) kill() {
	s.t.Helper()
	if err := s.cmd.Process.Kill(); err != nil {
		s.t.Fatalf("kill tally: %v", err)
	}
	<-s.exited
}

// signalStop sends SIGTERM.
func (s *tallyServer) signalStop() {
	s.t.Helper()
	if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		s.t.Fatalf("SIGTERM tally: %v", err)
	}
}

// waitClean waits for the process to exit and requires exit status 0.
func (s *tallyServer) waitClean() {
	s.t.Helper()
	select {
	case <-s.exited:
	case <-time.After(60 * time.Second):
		s.t.Fatalf("tally serve did not exit within 60s of SIGTERM:\n%s", tail(s.Log(), 20))
	}
	if s.err != nil {
		s.t.Fatalf("tally serve exited with %v after SIGTERM:\n%s", s.err, tail(s.Log(), 20))
	}
	if !strings.Contains(s.Log(), `msg=stopped`) {
		s.t.Errorf("tally serve log has no \"stopped\" line:\n%s", tail(s.Log(), 20))
	}
}

// stop sends SIGTERM and waits for a clean exit.
func (s *tallyServer) stop() {
	s.t.Helper()
	s.signalStop()
	s.waitClean()
}

var e2eClient = &http.Client{
	Timeout:   2 * time.Minute,
	Transport: &http.Transport{MaxIdleConnsPerHost: 16, IdleConnTimeout: 30 * time.Second},
}

type e2eResp struct {
	Status int
	Header http.Header
	Body   []byte
}

func (r e2eResp) String() string { return fmt.Sprintf("%d %s", r.Status, r.Body) }

// send makes a request with the server's token; hdr are name, value pairs
// (an empty value removes the header).
func (s *tallyServer) send(method, path, contentType string, body []byte, hdr ...string) (e2eResp, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequest(method, s.URL+path, rd)
	if err != nil {
		return e2eResp{}, err
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if s.Token != "" {
		req.Header.Set("Authorization", "Bearer "+s.Token)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		if hdr[i+1] == "" {
			req.Header.Del(hdr[i])
		} else {
			req.Header.Set(hdr[i], hdr[i+1])
		}
	}
	resp, err := e2eClient.Do(req)
	if err != nil {
		return e2eResp{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return e2eResp{}, err
	}
	return e2eResp{Status: resp.StatusCode, Header: resp.Header, Body: b}, nil
}

// do is send that fails the test on a transport error or another status
// than want.
func (s *tallyServer) do(want int, method, path, contentType, body string, hdr ...string) e2eResp {
	s.t.Helper()
	var b []byte
	if body != "" {
		b = []byte(body)
	}
	r, err := s.send(method, path, contentType, b, hdr...)
	if err != nil {
		s.t.Fatalf("%s %s: %v", method, path, err)
	}
	if r.Status != want {
		s.t.Fatalf("%s %s: got %s, want status %d", method, path, r, want)
	}
	return r
}

type e2eRow struct {
	Value       json.Number        `json:"value"`
	WindowStart string             `json:"windowStart"`
	WindowEnd   string             `json:"windowEnd"`
	Subject     *string            `json:"subject"`
	GroupBy     map[string]*string `json:"groupBy"`
}

// query runs GET /api/v1/meters/{slug}/query?{q} and returns the rows.
func (s *tallyServer) query(slug, q string) []e2eRow {
	s.t.Helper()
	r := s.do(http.StatusOK, "GET", "/api/v1/meters/"+slug+"/query?"+q, "", "")
	var out struct {
		Data []e2eRow `json:"data"`
	}
	dec := json.NewDecoder(bytes.NewReader(r.Body))
	dec.UseNumber()
	if err := dec.Decode(&out); err != nil {
		s.t.Fatalf("decode query %s?%s: %v: %s", slug, q, err, r.Body)
	}
	return out.Data
}

// total is the meter's value over everything ("0" without usage).
func (s *tallyServer) total(slug string) string {
	s.t.Helper()
	rows := s.query(slug, "")
	switch len(rows) {
	case 0:
		return "0"
	case 1:
		return rows[0].Value.String()
	}
	s.t.Fatalf("query %s: %d rows, want at most 1", slug, len(rows))
	return ""
}

// eventCount is how many stored events have the id (0 or 1).
func (s *tallyServer) eventCount(id string) int {
	s.t.Helper()
	r := s.do(http.StatusOK, "GET", "/api/v1/events?id="+id, "", "")
	var evs []json.RawMessage
	if err := json.Unmarshal(r.Body, &evs); err != nil {
		s.t.Fatalf("decode events: %v: %s", err, r.Body)
	}
	return len(evs)
}

// runTally runs a tally command to completion.
func runTally(t *testing.T, env []string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, tallyBin, args...)
	cmd.Env = cleanEnv(env...)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee) && ee.Exited():
		code = ee.ExitCode()
	default:
		t.Fatalf("tally %s: %v\n%s", strings.Join(args, " "), err, errOut.String())
	}
	return code, out.String(), errOut.String()
}

// verifyData runs `tally verify --data dir` and requires exit status 0.
func verifyData(t *testing.T, dir string) string {
	t.Helper()
	code, out, errOut := runTally(t, nil, "verify", "--data", dir)
	if code != 0 || !strings.HasPrefix(out, "ok: ") {
		t.Fatalf("tally verify --data %s: exit %d\nstdout:\n%s\nstderr:\n%s", dir, code, tail(out, 30), errOut)
	}
	return out
}

var replayedRE = regexp.MustCompile(`msg="replayed events into rollups[^"]*"[^\n]* events=(\d+)`)

// replayed is how many events the server's start-up replayed into the
// rollups (0 when it logged no replay).
func replayed(t *testing.T, log string) int {
	t.Helper()
	m := replayedRE.FindStringSubmatch(log)
	if m == nil {
		return 0
	}
	n, err := strconv.Atoi(m[1])
	if err != nil {
		t.Fatalf("replay count %q: %v", m[1], err)
	}
	return n
}

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

const e2eConfig = `
meters:
  - slug: requests
    name: Requests
    eventType: request
    aggregation: count
    groupBy:
      route: $.route
ingest:
  maxEvents: 5000
`

// readmeEvents are the README's example events.
const readmeEvents = `[
  {"specversion":"1.0","id":"e1","source":"chat","type":"prompt","subject":"customer-1",
   "time":"2026-11-22T10:00:00Z","data":{"tokens":"0.1","model":"gpt-4"}},
  {"specversion":"1.0","id":"e2","source":"chat","type":"prompt","subject":"customer-1",
   "time":"2026-11-22T10:20:00Z","data":{"tokens":0.2,"model":"gpt-4"}},
  {"specversion":"1.0","id":"e3","source":"chat","type":"prompt","subject":"customer-2",
   "time":"2026-11-22T11:05:00Z","data":{"tokens":7,"model":"small"}}]`

func TestE2EReadmeFlow(t *testing.T) {
	data := filepath.Join(t.TempDir(), "data")
	cfg := writeFile(t, "tally.yaml", e2eConfig)
	const token = "e2e-token"
	srv := startTally(t, data, serveOpts{config: cfg, token: token})
	if strings.Contains(srv.Log(), "no --admin-token set") {
		t.Errorf("TALLY_ADMIN_TOKEN was not applied: the server warns it runs open")
	}

	// Public and protected endpoints.
	srv.do(http.StatusOK, "GET", "/healthz", "", "", "Authorization", "")
	r := srv.do(http.StatusUnauthorized, "GET", "/api/v1/meters", "", "", "Authorization", "")
	if ct := r.Header.Get("Content-Type"); ct != "application/problem+json" {
		t.Errorf("401 Content-Type %q", ct)
	}
	srv.do(http.StatusUnauthorized, "POST", "/api/v1/events", "application/cloudevents-batch+json", readmeEvents, "Authorization", "Bearer wrong")
	r = srv.do(http.StatusOK, "GET", "/api/v1/openapi.yaml", "", "")
	if !bytes.HasPrefix(bytes.TrimSpace(r.Body), []byte("openapi:")) {
		t.Errorf("openapi.yaml: %.80s", r.Body)
	}

	// The config meter exists and is managed by the config.
	r = srv.do(http.StatusOK, "GET", "/api/v1/meters/requests", "", "")
	var cm struct {
		Slug, Aggregation, ManagedBy string
		GroupBy                      map[string]string
	}
	if err := json.Unmarshal(r.Body, &cm); err != nil {
		t.Fatal(err)
	}
	if cm.Slug != "requests" || cm.Aggregation != "COUNT" || cm.ManagedBy != "config" || cm.GroupBy["route"] != "$.route" {
		t.Errorf("config meter: %s", r.Body)
	}

	// The README walk-through.
	srv.do(http.StatusCreated, "POST", "/api/v1/meters", "application/json", `{
  "slug": "tokens", "eventType": "prompt", "aggregation": "SUM",
  "valueProperty": "$.tokens", "groupBy": {"model": "$.model"}}`)
	srv.do(http.StatusNoContent, "POST", "/api/v1/events", "application/cloudevents-batch+json", readmeEvents)
	// Sending them again is safe.
	srv.do(http.StatusNoContent, "POST", "/api/v1/events", "application/cloudevents-batch+json", readmeEvents)

	r = srv.do(http.StatusOK, "GET", "/api/v1/meters/tokens/query?groupBy=subject&groupBy=model", "", "")
	if !bytes.Contains(r.Body, []byte(`"value":0.3,`)) || !bytes.Contains(r.Body, []byte(`"windowSize":null`)) {
		t.Errorf("query by subject and model: %s", r.Body)
	}
	var got []string
	for _, row := range srv.query("tokens", "groupBy=subject&groupBy=model") {
		got = append(got, fmt.Sprintf("%s/%s=%s", *row.Subject, *row.GroupBy["model"], row.Value))
	}
	if want := "customer-1/gpt-4=0.3 customer-2/small=7"; strings.Join(got, " ") != want {
		t.Errorf("usage by subject and model: %q, want %q", got, want)
	}
	rows := srv.query("tokens", "windowSize=HOUR&windowTimeZone=Europe/Berlin&subject=customer-1")
	if len(rows) != 1 || rows[0].WindowStart != "2026-11-22T11:00:00+01:00" || rows[0].WindowEnd != "2026-11-22T12:00:00+01:00" || rows[0].Value.String() != "0.3" {
		t.Errorf("hourly Berlin usage of customer-1: %+v", rows)
	}
	r = srv.do(http.StatusOK, "GET", "/api/v1/meters/tokens/query?windowSize=DAY&groupBy=subject", "", "", "Accept", "text/csv")
	recs, err := csv.NewReader(bytes.NewReader(r.Body)).ReadAll()
	if err != nil {
		t.Fatalf("CSV %s: %v", r.Body, err)
	}
	wantCSV := [][]string{
		{"windowStart", "windowEnd", "subject", "value"},
		{"2026-11-22T00:00:00Z", "2026-11-23T00:00:00Z", "customer-1", "0.3"},
		{"2026-11-22T00:00:00Z", "2026-11-23T00:00:00Z", "customer-2", "7"},
	}
	if fmt.Sprint(recs) != fmt.Sprint(wantCSV) {
		t.Errorf("CSV:\n got %q\nwant %q", recs, wantCSV)
	}
	r = srv.do(http.StatusOK, "GET", "/api/v1/events?subject=customer-1&limit=10", "", "")
	var evs []struct {
		Event struct{ ID string }
	}
	if err := json.Unmarshal(r.Body, &evs); err != nil {
		t.Fatal(err)
	}
	if len(evs) != 2 || evs[0].Event.ID != "e2" || evs[1].Event.ID != "e1" {
		t.Errorf("events of customer-1, newest first: %s", r.Body)
	}

	// Events for the config meter; its 5000-event limit comes from the config.
	var lines []string
	for i := 0; i < 30; i++ {
		lines = append(lines, fmt.Sprintf(`{"specversion":"1.0","id":"r%d","source":"web","type":"request","subject":"customer-%d","time":"2026-11-22T10:%02d:00Z","data":{"route":"/r%d"}}`, i, i%2+1, i, i%3))
	}
	srv.do(http.StatusNoContent, "POST", "/api/v1/events", "application/x-ndjson", strings.Join(lines, "\n"))
	tooMany := strings.Repeat(lines[0]+"\n", 5001)
	srv.do(http.StatusRequestEntityTooLarge, "POST", "/api/v1/events", "application/x-ndjson", tooMany)
	if got := srv.total("requests"); got != "30" {
		t.Errorf("config meter COUNT = %s, want 30", got)
	}

	// A config meter can't be changed or deleted through the API.
	r = srv.do(http.StatusConflict, "DELETE", "/api/v1/meters/requests", "", "")
	if !strings.Contains(string(r.Body), "config") {
		t.Errorf("409 for deleting a config meter does not say why: %s", r.Body)
	}
	srv.do(http.StatusConflict, "PUT", "/api/v1/meters/requests", "application/json", `{"slug":"requests","eventType":"request","aggregation":"COUNT"}`)
	srv.do(http.StatusOK, "GET", "/api/v1/meters/requests", "", "")
	// An API meter can.
	srv.do(http.StatusCreated, "POST", "/api/v1/meters", "application/json", `{"slug":"scratch","eventType":"prompt","aggregation":"COUNT"}`)
	srv.do(http.StatusNoContent, "DELETE", "/api/v1/meters/scratch", "", "")

	srv.stop()

	// Everything is still there after a restart; a graceful stop left
	// nothing to replay.
	srv = startTally(t, data, serveOpts{config: cfg, token: token})
	if n := replayed(t, srv.Log()); n != 0 {
		t.Errorf("restart after a graceful stop replayed %d events", n)
	}
	if got := srv.total("tokens"); got != "7.3" {
		t.Errorf("tokens after restart = %s, want 7.3", got)
	}
	byRoute := map[string]string{}
	for _, row := range srv.query("requests", "groupBy=route") {
		byRoute[*row.GroupBy["route"]] = row.Value.String()
	}
	if fmt.Sprint(byRoute) != "map[/r0:10 /r1:10 /r2:10]" {
		t.Errorf("requests by route after restart: %v", byRoute)
	}
	srv.stop()
	out := verifyData(t, data)
	if !strings.HasPrefix(out, "ok: 2 meters") {
		t.Errorf("verify: %q, want 2 meters", out)
	}

	// Without the config file the meter stays, now managed by the API.
	srv = startTally(t, data, serveOpts{token: token})
	r = srv.do(http.StatusOK, "GET", "/api/v1/meters/requests", "", "")
	if !strings.Contains(string(r.Body), `"managedBy":"api"`) {
		t.Errorf("meter removed from the config: %s", r.Body)
	}
	if got := srv.total("requests"); got != "30" {
		t.Errorf("requests after leaving the config = %s, want 30", got)
	}
	srv.do(http.StatusNoContent, "DELETE", "/api/v1/meters/requests", "", "")
	srv.stop()
	verifyData(t, data)
}

func TestE2ECommandLine(t *testing.T) {
	badCfg := writeFile(t, "bad.yaml", "meters:\n  - slug: Bad Slug\n    eventType: x\n    aggregation: sum\n")
	unknownKey := writeFile(t, "unknown.yaml", "meterz: []\n")
	empty := t.TempDir()
	tests := []struct {
		name     string
		args     []string
		env      []string
		code     int
		contains string // in stdout or stderr
	}{
		{"version", []string{"version"}, nil, 0, "tally "},
		{"help", []string{"help"}, nil, 0, "Commands:"},
		{"no command", nil, nil, 2, "Usage: tally"},
		{"keys --help", []string{"keys", "--help"}, nil, 0, "Examples:\n  tally keys create --data"},
		{"serve -h", []string{"serve", "-h"}, nil, 0, "-admin-token"},
		{"unknown keys subcommand", []string{"keys", "delete"}, nil, 1, `unknown subcommand "delete"`},
		{"unknown command", []string{"frobnicate"}, nil, 1, `unknown command "frobnicate"`},
		{"bad flag", []string{"serve", "--no-such-flag"}, nil, 2, "no-such-flag"},
		{"bad log level", []string{"serve", "--log-level", "loud", "--data", t.TempDir()}, nil, 1, "--log-level"},
		{"bad env", []string{"serve", "--data", t.TempDir()}, []string{"TALLY_SHUTDOWN_TIMEOUT=soon"}, 1, "TALLY_SHUTDOWN_TIMEOUT"},
		{"invalid config meter", []string{"serve", "--config", badCfg, "--data", t.TempDir()}, nil, 1, "meters[0]"},
		{"unknown config key", []string{"serve", "--config", unknownKey, "--data", t.TempDir()}, nil, 1, "meterz"},
		{"missing config", []string{"serve", "--config", filepath.Join(empty, "nope.yaml"), "--data", t.TempDir()}, nil, 1, "read config"},
		{"verify an empty store", []string{"verify", "--data", empty}, nil, 0, "ok: 0 meters"},
		{"verify from env", []string{"verify"}, []string{"TALLY_DATA=" + empty}, 0, "ok: 0 meters"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, out, errOut := runTally(t, tc.env, tc.args...)
			if code != tc.code || !strings.Contains(out+errOut, tc.contains) {
				t.Errorf("tally %s: exit %d, want %d with %q in the output\nstdout: %s\nstderr: %s",
					strings.Join(tc.args, " "), code, tc.code, tc.contains, out, errOut)
			}
		})
	}
}

// pausedBody is a request body that sends its first part, then waits for
// release before sending the rest.
type pausedBody struct {
	first, rest []byte
	release     chan struct{}
	sentFirst   chan struct{}
	state       int
}

func (b *pausedBody) Read(p []byte) (int, error) {
	switch b.state {
	case 0:
		n := copy(p, b.first)
		b.first = b.first[n:]
		if len(b.first) == 0 {
			b.state = 1
			close(b.sentFirst)
		}
		return n, nil
	case 1:
		<-b.release
		b.state = 2
		fallthrough
	default:
		if len(b.rest) == 0 {
			return 0, io.EOF
		}
		n := copy(p, b.rest)
		b.rest = b.rest[n:]
		return n, nil
	}
}

// chargeBatch is a batch of "charge" events with integer-cent values.
type chargeBatch struct {
	name     string
	body     []byte
	ids      []string
	count    int
	sumCents int64
	// byPlan sums the counted values per data.plan.
	byPlan map[string]int64
	// invalid counts events whose value the SUM meters can't use.
	invalid int
}

var chargePlans = []string{"free", "pro", "team"}

// makeChargeBatch builds n events with ids prefix-0 .. prefix-(n-1). Every
// 97th event carries a value that is not a number: stored, counted by
// COUNT, not by SUM.
func makeChargeBatch(prefix string, n int, seed int64, base time.Time) *chargeBatch {
	b := &chargeBatch{name: prefix, count: n, byPlan: map[string]int64{}}
	var buf bytes.Buffer
	buf.WriteByte('[')
	for i := 0; i < n; i++ {
		if i > 0 {
			buf.WriteByte(',')
		}
		id := fmt.Sprintf("%s-%d", prefix, i)
		b.ids = append(b.ids, id)
		k := seed*1_000_003 + int64(i)*104_729
		cents := 1 + k%100_000
		plan := chargePlans[(seed+int64(i))%3]
		value := fmt.Sprintf("%d.%02d", cents/100, cents%100)
		if (seed+int64(i))%97 == 0 {
			value = `"n/a"`
			b.invalid++
		} else {
			b.sumCents += cents
			b.byPlan[plan] += cents
		}
		ts := base.Add(time.Duration((seed*31+int64(i))%1200) * time.Second).Format(time.RFC3339)
		fmt.Fprintf(&buf, `{"specversion":"1.0","id":%q,"source":"crash-test","type":"charge","subject":"customer-%d","time":%q,"data":{"value":%s,"plan":%q}}`,
			id, (seed+int64(i))%40, ts, value, plan)
	}
	buf.WriteByte(']')
	b.body = buf.Bytes()
	return b
}

// cents formats an amount in cents as the exact decimal tally prints.
func formatCents(c int64) string {
	s := fmt.Sprintf("%d.%02d", c/100, c%100)
	s = strings.TrimRight(strings.TrimRight(s, "0"), ".")
	if s == "" {
		return "0"
	}
	return s
}

const chargeMeters = `{"slug":"charges","eventType":"charge","aggregation":"COUNT"}
{"slug":"cents","eventType":"charge","aggregation":"SUM","valueProperty":"$.value"}
{"slug":"cents_by_plan","eventType":"charge","aggregation":"SUM","valueProperty":"$.value","groupBy":{"plan":"$.plan"}}`

func createChargeMeters(srv *tallyServer) {
	srv.t.Helper()
	for _, m := range strings.Split(chargeMeters, "\n") {
		srv.do(http.StatusCreated, "POST", "/api/v1/meters", "application/json", m)
	}
}

// checkChargeTotals requires the charge meters to show exactly the batches.
func checkChargeTotals(t *testing.T, srv *tallyServer, batches []*chargeBatch) {
	t.Helper()
	count, sum := 0, int64(0)
	byPlan := map[string]int64{}
	for _, b := range batches {
		count += b.count
		sum += b.sumCents
		for p, c := range b.byPlan {
			byPlan[p] += c
		}
	}
	if got := srv.total("charges"); got != strconv.Itoa(count) {
		t.Errorf("COUNT = %s, want %d", got, count)
	}
	if got := srv.total("cents"); got != formatCents(sum) {
		t.Errorf("SUM = %s, want %s", got, formatCents(sum))
	}
	got := map[string]string{}
	for _, row := range srv.query("cents_by_plan", "groupBy=plan") {
		got[*row.GroupBy["plan"]] = row.Value.String()
	}
	want := map[string]string{}
	for p, c := range byPlan {
		want[p] = formatCents(c)
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("SUM by plan = %v, want %v", got, want)
	}
}

func TestE2EGracefulShutdownFinishesInFlightCommits(t *testing.T) {
	data := t.TempDir()
	srv := startTally(t, data, serveOpts{})
	if !strings.Contains(srv.Log(), "no --admin-token set") {
		t.Errorf("an open server does not warn about running without a token")
	}
	createChargeMeters(srv)
	base := time.Now().UTC().Truncate(time.Minute).Add(-time.Hour)
	var batches []*chargeBatch
	for i := 0; i < 3; i++ {
		b := makeChargeBatch(fmt.Sprintf("pre%d", i), 500, int64(i), base)
		srv.do(http.StatusNoContent, "POST", "/api/v1/events", "application/cloudevents-batch+json", string(b.body))
		batches = append(batches, b)
	}

	// A large request whose body is only half sent when SIGTERM arrives.
	inflight := makeChargeBatch("inflight", 5000, 7, base)
	half := len(inflight.body) / 2
	body := &pausedBody{first: inflight.body[:half], rest: inflight.body[half:], release: make(chan struct{}), sentFirst: make(chan struct{})}
	req, err := http.NewRequest("POST", srv.URL+"/api/v1/events", body)
	if err != nil {
		t.Fatal(err)
	}
	req.ContentLength = int64(len(inflight.body))
	req.Header.Set("Content-Type", "application/cloudevents-batch+json")
	type result struct {
		status int
		body   string
		err    error
	}
	done := make(chan result, 1)
	go func() {
		client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 2 * time.Minute}
		resp, err := client.Do(req)
		if err != nil {
			done <- result{err: err}
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		done <- result{status: resp.StatusCode, body: string(b)}
	}()
	select {
	case <-body.sentFirst:
	case r := <-done:
		t.Fatalf("in-flight request ended early: %+v", r)
	case <-time.After(30 * time.Second):
		t.Fatal("the first half of the body was not sent within 30s")
	}
	time.Sleep(200 * time.Millisecond) // let the server start reading it

	srv.signalStop()
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(srv.Log(), "shutting down") {
		if time.Now().After(deadline) {
			close(body.release)
			t.Fatalf("no shutdown in the log 30s after SIGTERM:\n%s", srv.Log())
		}
		time.Sleep(10 * time.Millisecond)
	}
	// The server no longer takes new connections…
	for {
		_, err := (&http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 5 * time.Second}).Get(srv.URL + "/healthz")
		if err != nil {
			break
		}
		if time.Now().After(deadline) {
			close(body.release)
			t.Fatal("the server still accepts connections 30s after SIGTERM")
		}
		time.Sleep(10 * time.Millisecond)
	}
	select {
	case <-srv.exited:
		close(body.release)
		t.Fatalf("the server exited with a request in flight:\n%s", srv.Log())
	default:
	}
	// …but finishes the request it was reading.
	close(body.release)
	res := <-done
	if res.err != nil || res.status != http.StatusNoContent {
		t.Fatalf("in-flight request during shutdown: status %d body %q err %v, want 204", res.status, res.body, res.err)
	}
	batches = append(batches, inflight)
	srv.waitClean()

	srv = startTally(t, data, serveOpts{})
	if n := replayed(t, srv.Log()); n != 0 {
		t.Errorf("restart after a graceful stop replayed %d events; shutdown should flush the rollups", n)
	}
	for _, id := range []string{inflight.ids[0], inflight.ids[len(inflight.ids)-1]} {
		if n := srv.eventCount(id); n != 1 {
			t.Errorf("event %s of the in-flight request: %d stored, want 1", id, n)
		}
	}
	checkChargeTotals(t, srv, batches)
	srv.stop()
	verifyData(t, data)
}
