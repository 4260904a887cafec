package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// importClock is a settable clock for an in-process server.
type importClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *importClock) Now() time.Time  { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *importClock) Set(t time.Time) { c.mu.Lock(); c.t = t; c.mu.Unlock() }

// startImportServer runs `tally serve` in-process on data with the clock;
// the returned function stops it.
func startImportServer(t *testing.T, data string, clock *importClock) (*tallyServer, func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan string, 1)
	done := make(chan error, 1)
	go func() {
		done <- serve(ctx, serveFlags{now: clock.Now, addr: "127.0.0.1:0", data: data, adminToken: "admin-token",
			rateLimit: -1, maxConcurrent: -1, shutdownTimeout: 5 * time.Second}, fileConfig{}, slog.New(slog.NewTextHandler(io.Discard, nil)), ready)
	}()
	var addr string
	select {
	case addr = <-ready:
	case err := <-done:
		t.Fatalf("serve: %v", err)
	}
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	}
	t.Cleanup(stop)
	return &tallyServer{t: t, URL: "http://" + addr, Token: "admin-token", logs: &logBuffer{}}, stop
}

// runImportCmd runs tally import in-process and returns its exit code and
// output.
func runImportCmd(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	err := run(context.Background(), append([]string{"import", "--token", "admin-token", "--progress", "never"}, args...), &out, &errb)
	if err != nil {
		code = exitCode(err)
		fmt.Fprintln(&errb, "tally:", err)
	}
	return code, out.String(), errb.String()
}

func setupMailPlan(s *tallyServer) {
	s.do(201, "POST", "/api/v1/meters", "application/json", `{"slug":"emails","eventType":"email.sent","aggregation":"SUM","valueProperty":"$.count"}`)
	s.do(201, "POST", "/api/v1/plans", "application/json", `{"key":"mail-pro","name":"Mail Pro","currency":"EUR","cadence":"P1M","baseFee":"10.00",
  "charges":[{"key":"emails","meter":"emails","included":"1000","pricing":{"model":"package","packageSize":"1000","unitPrice":"5.00"}}]}`)
	s.do(200, "POST", "/api/v1/plans/mail-pro/publish", "application/json", "")
}

type importedInvoice struct {
	PeriodStart time.Time `json:"periodStart"`
	Status      string    `json:"status"`
	Total       string    `json:"total"`
}

// invoicesOf returns the invoices of the customer's only subscription.
func invoicesOf(t *testing.T, s *tallyServer, customer string) []importedInvoice {
	t.Helper()
	var subs struct {
		Items []struct {
			ID    string    `json:"id"`
			Start time.Time `json:"start"`
		} `json:"items"`
	}
	if err := json.Unmarshal(s.do(200, "GET", "/api/v1/subscriptions?customer="+customer, "", "").Body, &subs); err != nil || len(subs.Items) != 1 {
		t.Fatalf("subscriptions of %s: %d, %v; want 1", customer, len(subs.Items), err)
	}
	var invs struct {
		Items []importedInvoice `json:"items"`
	}
	if err := json.Unmarshal(s.do(200, "GET", "/api/v1/invoices?subscription="+subs.Items[0].ID, "", "").Body, &invs); err != nil {
		t.Fatal(err)
	}
	return invs.Items
}

// wantLines requires each of want in output, runs of spaces counting as
// one.
func wantLines(t *testing.T, output string, want ...string) {
	t.Helper()
	squeeze := func(s string) string { return strings.Join(strings.Fields(s), " ") }
	for _, w := range want {
		if !strings.Contains(squeeze(output), squeeze(w)) {
			t.Errorf("output lacks %q:\n%s", w, output)
		}
	}
}

// TestImportNDJSON: one NDJSON file, in no useful order, with bad lines:
// the good lines are imported customers first, then events, then the
// subscription; each bad line is reported as file:line and the exit code
// is 3. A rerun with the state file does nothing; one from the beginning
// changes nothing. Then the server, restarted with its clock past the
// June period's end plus grace, finalizes it at 70.00 on its own.
func TestImportNDJSON(t *testing.T) {
	dir := t.TempDir()
	clock := &importClock{t: time.Date(2026, 7, 21, 8, 0, 0, 0, time.UTC)}
	data := filepath.Join(dir, "data")
	s, stop := startImportServer(t, data, clock)
	setupMailPlan(s)

	file := writeFile(t, "history.ndjson", `{"kind":"subscription","customer":"contoso","plan":"mail-pro","start":"2026-06-20T10:00:00Z"}
{"specversion":"1.0","id":"e1","source":"old-biller","type":"email.sent","subject":"contoso-mail","time":"2026-06-20T10:00:00Z","data":{"count":935}}
{"kind":"event","specversion":"1.0","id":"e2","source":"old-biller","type":"email.sent","subject":"contoso-mail","time":"2026-06-24T16:30:00Z","data":{"count":10000}}
this is not JSON

{"kind":"customer","key":"contoso","name":"Contoso","currency":"EUR","subjects":["contoso-mail"],"createdAt":"2026-06-01T00:00:00Z"}
{"kind":"event","specversion":"1.0","id":"e3","source":"old-biller","type":"email.sent","subject":"contoso-mail","data":{"count":1410}}
{"kind":"event","specversion":"1.0","id":"e3","source":"old-biller","type":"email.sent","subject":"contoso-mail","time":"2026-06-30T23:59:59Z","data":{"count":1410}}
{"kind":"customer","key":"bad key","name":"X","currency":"EUR"}
{"kind":"invoice"}
{"kind":"subscription","customer":"contoso","plan":"mail-pro"}
`)
	url := "--url=" + s.URL
	code, out, errs := runImportCmd(t, url, file)
	if code != importExitLines {
		t.Fatalf("first import: exit %d, want %d\nstdout:\n%s\nstderr:\n%s", code, importExitLines, out, errs)
	}
	wantLines(t, errs, file+":4: not a JSON object", file+`:7: field "time": is required`, file+":9: invalid customer: key:",
		file+`:10: kind: "invoice" is not`, file+":11: start: is required")
	if n := strings.Count(errs, file+":"); n != 5 {
		t.Errorf("%d lines reported, want 5:\n%s", n, errs)
	}
	wantLines(t, out, "customers:      1 created, 0 unchanged, 0 differ, 1 failed",
		"subscriptions:  1 created, 0 unchanged, 0 differ, 1 failed", "events:         3 sent", ", 1 failed")
	if _, err := os.Stat(file + ".import-state.json"); err != nil {
		t.Errorf("no state file: %v", err)
	}

	// The state file says everything is done: nothing is read again.
	code, out, errs = runImportCmd(t, url, file)
	if code != 0 || strings.Contains(errs, file+":") || !strings.Contains(out, "customers:     0 created, 0 unchanged") {
		t.Errorf("rerun with the state: exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errs)
	}
	// From the beginning, everything is found there already.
	code, out, errs = runImportCmd(t, url, "--restart", file)
	if code != importExitLines {
		t.Errorf("rerun from the beginning: exit %d, want %d", code, importExitLines)
	}
	wantLines(t, out, "customers:      0 created, 1 unchanged", "subscriptions:  0 created, 1 unchanged", "events:         3 sent")
	if n := strings.Count(errs, file+":"); n != 5 {
		t.Errorf("rerun from the beginning: %d lines reported, want the same 5:\n%s", n, errs)
	}
	var evs []json.RawMessage
	if err := json.Unmarshal(s.do(200, "GET", "/api/v1/events?subject=contoso-mail&limit=100", "", "").Body, &evs); err != nil || len(evs) != 3 {
		t.Errorf("events stored after two imports: %d, %v; want 3", len(evs), err)
	}
	if invs := invoicesOf(t, s, "contoso"); len(invs) != 2 || invs[0].Status != "draft" || invs[0].Total != "70.00" {
		t.Errorf("invoices before the grace has passed: %+v; want the June period a draft at 70.00", invs)
	}

	// A line that differs from what tally has is reported, and left.
	changed := writeFile(t, "changed.ndjson",
		`{"kind":"customer","key":"contoso","name":"Contoso Ltd","currency":"EUR","subjects":["contoso-mail"],"createdAt":"2026-06-02T00:00:00Z"}`+"\n")
	code, _, errs = runImportCmd(t, url, "--state=none", changed)
	if code != importExitLines {
		t.Errorf("differing customer: exit %d, want %d", code, importExitLines)
	}
	wantLines(t, errs, changed+`:1: customer "contoso" exists and differs from this line in name, createdAt (tally has 2026-06-01T00:00:00Z)`)

	// The server, restarted with its clock past the period end plus the
	// grace, finalizes June by itself.
	stop()
	clock.Set(time.Date(2026, 7, 21, 10, 1, 0, 0, time.UTC))
	s, _ = startImportServer(t, data, clock)
	var invs []importedInvoice
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		invs = invoicesOf(t, s, "contoso")
		if len(invs) > 0 && invs[0].Status == "finalized" || time.Now().After(deadline) {
			break
		}
	}
	if len(invs) != 2 || invs[0].Status != "finalized" || invs[0].Total != "70.00" || !invs[0].PeriodStart.Equal(time.Date(2026, 6, 20, 10, 0, 0, 0, time.UTC)) {
		t.Errorf("invoices once the grace has passed: %+v; want June finalized at 70.00", invs)
	}
}

// TestImportCSV: one CSV file per kind, told apart by their headers.
func TestImportCSV(t *testing.T) {
	dir := t.TempDir()
	clock := &importClock{t: time.Date(2026, 7, 1, 0, 0, 0, 0, time.UTC)}
	s, _ := startImportServer(t, filepath.Join(dir, "data"), clock)
	setupMailPlan(s)
	subs := writeFile(t, "subscriptions.csv", "customer,plan,start,billingAnchor,timeZone\n"+
		"fabrikam,mail-pro,2026-06-15T00:00:00Z,calendar,Europe/Berlin\n"+
		"fabrikam,nope,2026-06-15T00:00:00Z,,\n")
	customers := writeFile(t, "customers.csv", "key,name,currency,email,subjects,createdAt,metadata.tier\n"+
		`fabrikam,"Fabrikam, Inc.",EUR,ap@fabrikam.example,fab-1|fab-2,2026-06-01T00:00:00+02:00,gold`+"\n"+
		"broken,Broken,EUR,,,2026-06-01,\n")
	events := writeFile(t, "events.csv", "id,source,type,subject,time,data.count,data.note\n"+
		"f1,old,email.sent,fab-1,2026-06-16T08:00:00Z,1200,\n"+
		"f2,old,email.sent,fab-2,2026-06-17T08:00:00Z,800,\"quoted, with comma\"\n"+
		"f3,old,email.sent,fab-2,yesterday,5,\n"+
		"f4,old,email.sent,fab-1\n")
	code, out, errs := runImportCmd(t, "--url="+s.URL, subs, customers, events)
	if code != importExitLines {
		t.Fatalf("exit %d, want %d\nstdout:\n%s\nstderr:\n%s", code, importExitLines, out, errs)
	}
	wantLines(t, errs, customers+":3: createdAt:", events+`:4: field "time"`, events+":5: 4 fields, the header has 7", subs+":3: ")
	wantLines(t, out, "customers:      1 created", "subscriptions:  1 created", "events:         2 sent")

	var c struct {
		Name      string            `json:"name"`
		Subjects  []string          `json:"subjects"`
		Metadata  map[string]string `json:"metadata"`
		CreatedAt time.Time         `json:"createdAt"`
	}
	if err := json.Unmarshal(s.do(200, "GET", "/api/v1/customers/fabrikam", "", "").Body, &c); err != nil {
		t.Fatal(err)
	}
	if c.Name != "Fabrikam, Inc." || strings.Join(c.Subjects, ",") != "fab-1,fab-2" || c.Metadata["tier"] != "gold" || !c.CreatedAt.Equal(time.Date(2026, 5, 31, 22, 0, 0, 0, time.UTC)) {
		t.Errorf("imported customer: %+v", c)
	}
	// June 15 to July 1 in Berlin (calendar: a partial period, its base
	// fee prorated to 5.33): 2,000 e-mails, 1,000 above the included, 5.00.
	if invs := invoicesOf(t, s, "fabrikam"); len(invs) == 0 || invs[0].Total != "10.33" {
		t.Errorf("fabrikam's first invoice: %+v; want 10.33", invs)
	}
	var ev []struct {
		Event struct {
			Data map[string]any `json:"data"`
		} `json:"event"`
	}
	if err := json.Unmarshal(s.do(200, "GET", "/api/v1/events?id=f2", "", "").Body, &ev); err != nil || len(ev) != 1 {
		t.Fatalf("event f2: %v", err)
	}
	if d := ev[0].Event.Data; d["count"] != float64(800) || d["note"] != "quoted, with comma" {
		t.Errorf("event f2's data: %v", d)
	}
}

// TestImportResume: an import that stops (the server goes away) resumes
// where it stopped, and sends only the rest.
func TestImportResume(t *testing.T) {
	dir := t.TempDir()
	clock := &importClock{t: time.Date(2026, 7, 1, 0, 0, 0, 0, time.UTC)}
	s, _ := startImportServer(t, filepath.Join(dir, "data"), clock)
	setupMailPlan(s)
	var b strings.Builder
	b.WriteString(`{"kind":"customer","key":"contoso","name":"Contoso","currency":"EUR","subjects":["contoso-mail"],"createdAt":"2026-06-01T00:00:00Z"}` + "\n")
	for i := range 40 {
		fmt.Fprintf(&b, `{"specversion":"1.0","id":"r%d","source":"old","type":"email.sent","subject":"contoso-mail","time":"2026-06-%02dT12:00:00Z","data":{"count":1}}`+"\n", i, 2+i%28)
	}
	file := writeFile(t, "big.ndjson", b.String())

	// A proxy that lets 3 event batches through, then fails.
	target, _ := url.Parse(s.URL)
	proxy := httputil.NewSingleHostReverseProxy(target)
	var batches atomic.Int64
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/api/v1/events" && batches.Add(1) > 3 {
			http.Error(w, "gone", http.StatusServiceUnavailable)
			return
		}
		proxy.ServeHTTP(w, r)
	}))
	defer front.Close()
	state := filepath.Join(dir, "state.json")
	code, out, errs := runImportCmd(t, "--url="+front.URL, "--state="+state, "--batch=5", "--retries=0", file)
	if code != importExitStopped || !strings.Contains(errs, "run the same command again to resume") {
		t.Fatalf("stopped import: exit %d, want %d\nstdout:\n%s\nstderr:\n%s", code, importExitStopped, out, errs)
	}
	wantLines(t, out, "events:         15 sent")

	// The state is tied to the server: against the real one (same data,
	// another URL) it would start over, so resume through the proxy.
	batches.Store(-100)
	code, out, errs = runImportCmd(t, "--url="+front.URL, "--state="+state, "--batch=5", "--retries=0", file)
	if code != 0 {
		t.Fatalf("resumed import: exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errs)
	}
	wantLines(t, out, "customers:      0 created, 0 unchanged", "events:         25 sent", "resumed 1 passes")
	var evs []json.RawMessage
	if err := json.Unmarshal(s.do(200, "GET", "/api/v1/events?subject=contoso-mail&limit=100", "", "").Body, &evs); err != nil || len(evs) != 40 {
		t.Errorf("events stored: %d, %v; want 40", len(evs), err)
	}

	// Another server's state is not this one's: it starts over, harmlessly.
	code, out, errs = runImportCmd(t, "--url="+s.URL, "--state="+state, "--batch=50", "--progress=always", file)
	if code != 0 || !strings.Contains(errs, "starting from the beginning") || !strings.Contains(errs, "\r\033[K") {
		t.Errorf("import to another URL: exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errs)
	}
	wantLines(t, out, "customers:      0 created, 1 unchanged", "events:         40 sent")
}

// TestImportStopsOnBadCredential: a refused credential stops the import at
// once (exit 1), without reporting every line.
func TestImportStopsOnBadCredential(t *testing.T) {
	dir := t.TempDir()
	s, _ := startImportServer(t, filepath.Join(dir, "data"), &importClock{t: time.Date(2026, 7, 1, 0, 0, 0, 0, time.UTC)})
	file := writeFile(t, "c.ndjson", `{"kind":"customer","key":"a","name":"A","currency":"EUR"}`+"\n"+`{"kind":"customer","key":"b","name":"B","currency":"EUR"}`+"\n")
	var out, errb bytes.Buffer
	err := run(context.Background(), []string{"import", "--url=" + s.URL, "--token=wrong", "--progress=never", file}, &out, &errb)
	var ee *exitError
	if !errors.As(err, &ee) || ee.code != importExitStopped || !strings.Contains(err.Error(), "401") {
		t.Errorf("wrong token: %v, want exit %d naming the 401", err, importExitStopped)
	}
	if strings.Contains(errb.String(), file+":") {
		t.Errorf("lines reported for a refused credential:\n%s", errb.String())
	}
}
