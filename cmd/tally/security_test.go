package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// inProcess runs serve with f until the test ends and returns its address.
func inProcess(t *testing.T, f serveFlags) (addr string, stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan string, 1)
	done := make(chan error, 1)
	go func() { done <- serve(ctx, f, fileConfig{}, slog.New(slog.NewTextHandler(io.Discard, nil)), ready) }()
	stopped := false
	stop = func() {
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
	select {
	case addr = <-ready:
	case err := <-done:
		t.Fatalf("serve: %v", err)
	}
	return addr, stop
}

// req sends a request with a bearer credential and returns the status and
// body.
func req(t *testing.T, cred, method, url, body string) (int, string) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	r, err := http.NewRequest(method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		r.Header.Set("Content-Type", "application/json")
	}
	if cred != "" {
		r.Header.Set("Authorization", "Bearer "+cred)
	}
	resp, err := http.DefaultClient.Do(r)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestPortalRevocationSurvivesRestart: a revoked portal token stays
// revoked after tally restarts (the revocations are loaded from the
// store into memory at start).
func TestPortalRevocationSurvivesRestart(t *testing.T) {
	const admin = "an-admin-token-long-enough-to-pass-muster"
	f := serveFlags{addr: "127.0.0.1:0", data: filepath.Join(t.TempDir(), "data"), adminToken: admin,
		shutdownTimeout: 5 * time.Second, readHeaderTimeout: 5 * time.Second, maxHeaderBytes: 1 << 16}
	addr, stop := inProcess(t, f)
	base := "http://" + addr
	if code, body := req(t, admin, "POST", base+"/api/v1/customers", `{"key":"contoso","name":"Contoso","currency":"EUR","subjects":["c-1"]}`); code != http.StatusCreated {
		t.Fatalf("create customer: %d %s", code, body)
	}
	var toks [2]struct{ Token, ID string }
	for i := range toks {
		code, body := req(t, admin, "POST", base+"/api/v1/portal/tokens", `{"customer":"contoso"}`)
		if code != http.StatusCreated || json.Unmarshal([]byte(body), &toks[i]) != nil {
			t.Fatalf("create portal token: %d %s", code, body)
		}
	}
	if code, body := req(t, admin, "DELETE", base+"/api/v1/portal/tokens/"+toks[0].ID, ""); code != http.StatusOK {
		t.Fatalf("revoke: %d %s", code, body)
	}
	stop()

	addr, _ = inProcess(t, f)
	base = "http://" + addr
	if code, body := req(t, toks[0].Token, "GET", base+"/api/v1/portal/usage", ""); code != http.StatusUnauthorized || !strings.Contains(body, "revoked") {
		t.Errorf("the revoked token after a restart: %d %s; want 401, revoked", code, body)
	}
	if code, body := req(t, toks[1].Token, "GET", base+"/api/v1/portal/usage", ""); code != http.StatusOK {
		t.Errorf("the other token after a restart: %d %s", code, body)
	}
}

func TestParseTrustedProxies(t *testing.T) {
	got, err := parseTrustedProxies(" 10.0.0.0/8, 192.0.2.1,2001:db8::/32,, ::ffff:198.51.100.1")
	if err != nil {
		t.Fatal(err)
	}
	want := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("192.0.2.1/32"),
		netip.MustParsePrefix("2001:db8::/32"), netip.MustParsePrefix("198.51.100.1/32")}
	if len(got) != len(want) {
		t.Fatalf("parseTrustedProxies = %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("parseTrustedProxies[%d] = %v, want %v", i, got[i], want[i])
		}
	}
	if _, err := parseTrustedProxies("10.0.0.0/8,proxy.internal"); err == nil || !strings.Contains(err.Error(), "proxy.internal") {
		t.Errorf("a host name: %v, want an error naming it", err)
	}
}

// TestMetricsAddr: with --metrics-addr, /metrics is served there without
// credentials, while the API's /metrics still needs one.
func TestMetricsAddr(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	maddr := ln.Addr().String()
	ln.Close()
	const admin = "an-admin-token-long-enough-to-pass-muster"
	f := serveFlags{addr: "127.0.0.1:0", data: filepath.Join(t.TempDir(), "data"), adminToken: admin, metricsAddr: maddr,
		shutdownTimeout: 5 * time.Second, readHeaderTimeout: 5 * time.Second, maxHeaderBytes: 1 << 16}
	addr, stop := inProcess(t, f)
	if code, body := req(t, "", "GET", "http://"+maddr+"/metrics", ""); code != http.StatusOK || !strings.Contains(body, "tally_store_size_bytes") {
		t.Errorf("--metrics-addr /metrics: %d %.200s", code, body)
	}
	if code, _ := req(t, "", "GET", "http://"+maddr+"/api/v1/meters", ""); code != http.StatusNotFound {
		t.Errorf("--metrics-addr serves the API: %d", code)
	}
	if code, _ := req(t, "", "GET", "http://"+addr+"/metrics", ""); code != http.StatusUnauthorized {
		t.Errorf("the API's /metrics without a credential: %d, want 401", code)
	}
	if code, _ := req(t, admin, "GET", "http://"+addr+"/metrics", ""); code != http.StatusOK {
		t.Errorf("the API's /metrics with the admin token: %d, want 200", code)
	}
	stop()
	if _, err := net.Dial("tcp", maddr); err == nil {
		t.Error("the metrics listener is still open after shutdown")
	}
}

// TestAuditNeverStoresAdminToken: the admin token sent in a body, by a
// caller using another credential and under an innocent member name, is
// not in the audit trail, nor anywhere in the data directory.
func TestAuditNeverStoresAdminToken(t *testing.T) {
	const admin = "an-admin-token-that-must-never-be-stored"
	f := serveFlags{addr: "127.0.0.1:0", data: filepath.Join(t.TempDir(), "data"), adminToken: admin,
		shutdownTimeout: 5 * time.Second, readHeaderTimeout: 5 * time.Second, maxHeaderBytes: 1 << 16}
	addr, stop := inProcess(t, f)
	base := "http://" + addr
	var key struct{ Key string }
	if code, body := req(t, admin, "POST", base+"/api/v1/keys", `{"name":"ops","scope":"admin"}`); code != http.StatusCreated || json.Unmarshal([]byte(body), &key) != nil {
		t.Fatalf("create key: %d %s", code, body)
	}
	if code, body := req(t, key.Key, "POST", base+"/api/v1/meters", `{"slug":"calls","eventType":"call","aggregation":"COUNT"}`); code != http.StatusCreated {
		t.Fatalf("create meter: %d %s", code, body)
	}
	// windowSize is accepted and ignored: only the audit trail could keep it.
	if code, body := req(t, key.Key, "PUT", base+"/api/v1/meters/calls", `{"slug":"calls","eventType":"call","aggregation":"COUNT","windowSize":"use `+admin+` to get in"}`); code != http.StatusOK {
		t.Fatalf("update meter: %d %s", code, body)
	}
	code, body := req(t, admin, "GET", base+"/api/v1/audit", "")
	if code != http.StatusOK || !strings.Contains(body, `"windowSize":"[redacted]"`) {
		t.Errorf("audit trail: %d %s; want the update with windowSize redacted", code, body)
	}
	stop()
	err := filepath.WalkDir(f.data, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		if bytes.Contains(b, []byte(admin)) {
			t.Errorf("%s holds the admin token", path)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}
