package main

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"path/filepath"
	"testing"
	"time"
)

// TestServeOpenModeOnlyForLoopbackHosts: open on loopback, tally answers
// requests for 127.0.0.1 but not those naming another host, as a page
// that rebound its domain name to 127.0.0.1 sends through a browser.
func TestServeOpenModeOnlyForLoopbackHosts(t *testing.T) {
	f := serveFlags{addr: "127.0.0.1:0", data: filepath.Join(t.TempDir(), "data"),
		shutdownTimeout: 5 * time.Second, readHeaderTimeout: 5 * time.Second, maxHeaderBytes: 1 << 16}
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan string, 1)
	done := make(chan error, 1)
	go func() { done <- serve(ctx, f, fileConfig{}, slog.New(slog.NewTextHandler(io.Discard, nil)), ready) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	}()
	var addr string
	select {
	case addr = <-ready:
	case err := <-done:
		t.Fatalf("serve: %v", err)
	}
	for host, want := range map[string]int{"": http.StatusOK, "localhost": http.StatusOK, "rebound.example": http.StatusForbidden} {
		req, err := http.NewRequest("GET", "http://"+addr+"/api/v1/meters", nil)
		if err != nil {
			t.Fatal(err)
		}
		if host != "" {
			req.Host = host
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("open mode, Host %q: got %d, want %d", host, resp.StatusCode, want)
		}
	}
}
