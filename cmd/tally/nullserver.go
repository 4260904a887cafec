package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"

	"github.com/tally-metering/tally/internal/loadgen"
)

// runNullServer implements "tally nullserver": an HTTP server that accepts
// POST /api/v1/events by discarding the body and answering 204, to measure
// the HTTP + loadgen ceiling of a machine. It stops when ctx is cancelled.
func runNullServer(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("nullserver", flag.ContinueOnError)
	fs.SetOutput(stderr)
	setHelp(fs, helpText{
		usage:    "tally nullserver [--addr ADDR]",
		about:    "Serves POST " + loadgen.EventsPath + " by discarding the body and answering 204\n(every other path 404), as a baseline for tally loadgen.",
		examples: []string{"tally nullserver --addr 127.0.0.1:8090 & tally loadgen --url http://127.0.0.1:8090"},
	})
	addr := fs.String("addr", "127.0.0.1:8090", "listen `address`")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	if fs.NArg() > 0 {
		fs.Usage()
		return fmt.Errorf("nullserver: unexpected arguments %q", fs.Args())
	}

	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return fmt.Errorf("nullserver: %w", err)
	}
	srv := &http.Server{
		Handler:           loadgen.NullHandler(),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
	}
	fmt.Fprintf(stdout, "nullserver listening on http://%s\n", ln.Addr())

	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	select {
	case err := <-served:
		return fmt.Errorf("nullserver: %w", err)
	case <-ctx.Done():
	}
	shutCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutCtx); err != nil {
		srv.Close()
	}
	if err := <-served; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("nullserver: %w", err)
	}
	return nil
}
