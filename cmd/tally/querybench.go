package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/tally-metering/tally/internal/bounds"
	"github.com/tally-metering/tally/internal/loadgen"
)

// runQueryBench implements "tally querybench": it times usage queries for
// random subjects, for the benchmarks in docs/benchmarks.md.
func runQueryBench(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("querybench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var c loadgen.QueryConfig
	var from, to string
	fs.StringVar(&c.URL, "url", "http://127.0.0.1:8080", "base `URL` of the server")
	fs.StringVar(&c.Meter, "meter", "", "meter slug to query")
	fs.IntVar(&c.Subjects, "subjects", 1000, "query subject-0 .. subject-N-1 at random")
	fs.StringVar(&from, "from", "", "range start, RFC 3339 (default: 30 days before --to)")
	fs.StringVar(&to, "to", "", "range end, RFC 3339 (default: the next whole hour)")
	fs.StringVar(&c.WindowSize, "window", "", "window size (MINUTE, HOUR, DAY, MONTH); empty for one total")
	fs.IntVar(&c.Queries, "queries", 1000, "number of queries")
	fs.Int64Var(&c.Seed, "seed", 1, "seed for the subject choice")
	asJSON := fs.Bool("json", false, "print the result as one JSON object")
	setHelp(fs, helpText{
		usage:    "tally querybench --meter SLUG [flags]",
		about:    "Times usage queries of a running server for random subjects (for docs/benchmarks.md).\nThe credential comes from TALLY_TOKEN (or TALLY_ADMIN_TOKEN).",
		examples: []string{"tally querybench --url http://127.0.0.1:8080 --meter requests --window DAY --queries 1000"},
	})
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return errUsage
	}
	c.Token = tokenFromEnv()
	var err error
	c.To = time.Now().UTC().Truncate(time.Hour).Add(time.Hour)
	if to != "" {
		if c.To, err = bounds.ParseTime(to); err != nil {
			return fmt.Errorf("querybench: --to: %w", err)
		}
	}
	c.From = c.To.Add(-30 * 24 * time.Hour)
	if from != "" {
		if c.From, err = bounds.ParseTime(from); err != nil {
			return fmt.Errorf("querybench: --from: %w", err)
		}
	}
	res, err := loadgen.RunQueries(ctx, c)
	if err != nil {
		return fmt.Errorf("querybench: %w", err)
	}
	if *asJSON {
		return json.NewEncoder(stdout).Encode(res)
	}
	fmt.Fprintf(stdout, "queries %d  p50 %.2f ms  p99 %.2f ms  max %.2f ms  rows(last) %d\n", res.Queries, res.P50ms, res.P99ms, res.MaxMs, res.Rows)
	return nil
}
