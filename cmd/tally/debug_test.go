package main

import (
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
)

// TestDebugServerShowsNoCommandLine: the command line may hold
// --admin-token; the profiler's cmdline page would hand it to anyone who
// reaches the debug address (a web page rebinding its name to 127.0.0.1
// included).
func TestDebugServerShowsNoCommandLine(t *testing.T) {
	srv := httptest.NewServer(debugHandler())
	defer srv.Close()
	resp, err := http.Get(srv.URL + "/debug/pprof/cmdline")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode == http.StatusOK || strings.Contains(string(b), os.Args[0]) {
		t.Errorf("GET /debug/pprof/cmdline: %d %q; want no command line", resp.StatusCode, b)
	}
	if resp, err := http.Get(srv.URL + "/debug/pprof/heap?debug=1"); err != nil || resp.StatusCode != http.StatusOK {
		t.Errorf("heap profile: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}
}
