package main

import (
	"log/slog"
	"net/http"
	"net/http/pprof"
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
