package main

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// startDebugServer serves Go's profiler on its own address, never on the
// API listener.
func startDebugServer(addr string, log *slog.Logger) {
	mux := debugHandler()
	go func() {
		log.Info("debug server listening", "addr", "http://"+addr+"/debug/pprof/")
		if err := http.ListenAndServe(addr, mux); err != nil {
			log.Error("debug server", "err", err)
		}
	}()
}

// debugHandler serves the profiles, but not /debug/pprof/cmdline: the
// command line may hold --admin-token.
func debugHandler() *http.ServeMux {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	return mux
}

// startMetricsServer serves /metrics, and nothing else, without
// credentials on its own address (--metrics-addr): for a Prometheus
// scraper on a network the API's clients can't reach.
func startMetricsServer(addr string, g prometheus.Gatherer, log *slog.Logger) (*http.Server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("--metrics-addr: %w", err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(g, promhttp.HandlerOpts{}))
	hs := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		log.Info("metrics listening", "addr", "http://"+ln.Addr().String()+"/metrics")
		if err := hs.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("metrics server", "err", err)
		}
	}()
	return hs, nil
}
