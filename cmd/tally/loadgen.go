package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/tally-metering/tally/internal/loadgen"
)

// runLoadgen implements "tally loadgen": it sends synthetic events to a tally
// server (or a null server) and reports throughput, latency and the exact
// SUM(value) the server should report.
func runLoadgen(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("loadgen", flag.ContinueOnError)
	fs.SetOutput(stderr)
	setHelp(fs, helpText{
		usage: "tally loadgen [flags]",
		about: "Sends synthetic CloudEvents to POST {url}" + loadgen.EventsPath + " and reports events/s,\nrequest latency and the expected SUM(value).",
		examples: []string{
			"tally loadgen --url http://127.0.0.1:8080 --events 100000 --batch 1000 --concurrency 4",
			"TALLY_TOKEN=$INGEST_KEY tally loadgen --events 1000000 --subjects 10000 --json",
		},
	})
	var c loadgen.Config
	fs.StringVar(&c.URL, "url", "http://127.0.0.1:8080", "base `URL` of the server")
	fs.IntVar(&c.Events, "events", 100_000, "number of events to send")
	fs.IntVar(&c.Batch, "batch", 1000, "events per request")
	fs.IntVar(&c.Concurrency, "concurrency", 4, "concurrent requests, one keep-alive connection each")
	fs.IntVar(&c.Subjects, "subjects", 1000, "number of distinct subjects (subject-0 .. subject-N-1)")
	fs.StringVar(&c.Type, "type", "request", "CloudEvents type of the events")
	fs.StringVar(&c.Source, "source", "loadgen", "CloudEvents source of the events")
	fs.StringVar(&c.Token, "token", "", "bearer `token` (default $TALLY_TOKEN, else $TALLY_ADMIN_TOKEN)")
	fs.DurationVar(&c.Spread, "spread", 0, "spread event times uniformly over [now-spread, now] (0: now)")
	fs.Int64Var(&c.Seed, "seed", 1, "seed for subjects, values and routes")
	fs.StringVar(&c.RunID, "run-id", "", "event id prefix (default random)")
	fs.IntVar(&c.Retries, "retries", 0, "resend a batch failing with a transport error, 429 or 5xx up to `N` times, same ids")
	fs.DurationVar(&c.Timeout, "timeout", loadgen.DefaultTimeout, "per-request timeout")
	asJSON := fs.Bool("json", false, "print the result as one JSON object")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	tokenSet := false
	fs.Visit(func(f *flag.Flag) { tokenSet = tokenSet || f.Name == "token" })
	if !tokenSet {
		// Not a flag default, so that usage never prints a secret.
		c.Token = tokenFromEnv()
	}
	if fs.NArg() > 0 {
		fs.Usage()
		return fmt.Errorf("loadgen: unexpected arguments %q", fs.Args())
	}
	if err := c.Validate(); err != nil {
		return fmt.Errorf("loadgen: %w", err)
	}

	res, err := loadgen.Run(ctx, c)
	if res.Requests == 0 && err != nil {
		return err
	}
	if res.FirstError != "" {
		fmt.Fprintf(stderr, "loadgen: first failed request: %s\n", res.FirstError)
	}
	if *asJSON {
		b, jerr := json.Marshal(res)
		if jerr != nil {
			return jerr
		}
		fmt.Fprintf(stdout, "%s\n", b)
	} else {
		fmt.Fprintf(stdout, "run id      %s\n", res.RunID)
		fmt.Fprintf(stdout, "events      %d", res.Events)
		if res.Generated != res.Events {
			fmt.Fprintf(stdout, " accepted (%d sent)", res.Generated)
		}
		fmt.Fprintln(stdout)
		fmt.Fprintf(stdout, "requests    %d", res.Requests)
		if res.Retries > 0 {
			fmt.Fprintf(stdout, " (%d retries)", res.Retries)
		}
		fmt.Fprintln(stdout)
		fmt.Fprintf(stdout, "seconds     %.3f\n", res.Seconds)
		fmt.Fprintf(stdout, "events/s    %.0f\n", res.EventsPerSec)
		fmt.Fprintf(stdout, "latency     p50 %.2f ms, p99 %.2f ms\n", res.P50ms, res.P99ms)
		fmt.Fprintf(stdout, "errors      %d\n", res.Errors)
		fmt.Fprintf(stdout, "expected SUM(value) = %s\n", res.ExpectedSum)
	}
	if err != nil && res.Errors > 0 {
		// The first failure is on stderr already.
		return fmt.Errorf("loadgen: %d of %d requests failed", res.Errors, res.Requests)
	}
	return err
}

// tokenFromEnv is the bearer token the client commands use when no --token
// is given: $TALLY_TOKEN, else $TALLY_ADMIN_TOKEN.
func tokenFromEnv() string {
	if t := os.Getenv("TALLY_TOKEN"); t != "" {
		return t
	}
	return os.Getenv("TALLY_ADMIN_TOKEN")
}
