// Command tally is a usage-metering and billing engine: it takes in usage
// events, keeps them, and turns them into per-customer usage.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		if !errors.Is(err, errUsage) {
			fmt.Fprintln(os.Stderr, "tally:", err)
		}
		os.Exit(exitCode(err))
	}
}

// errUsage marks an error already explained to the user (bad flags).
var errUsage = errors.New("usage")

// exitError carries a specific exit code.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

func exitCode(err error) int {
	var ee *exitError
	if errors.As(err, &ee) {
		return ee.code
	}
	if errors.Is(err, errUsage) {
		return 2
	}
	return 1
}

type command struct {
	name, summary string
	run           func(ctx context.Context, args []string, stdout, stderr io.Writer) error
	hidden        bool
}

func commands() []command {
	return []command{
		{"serve", "run the tally server", runServe, false},
		{"loadgen", "send generated events to a tally server and measure", runLoadgen, false},
		{"verify", "recompute every meter from the raw events and compare", runVerify, false},
		{"keys", "create, list and revoke API keys in a data directory", runKeys, false},
		{"portal", "rotate the portal token signing key", runPortal, false},
		{"reports", "list usage reports to marketplaces and their delivery", runReports, false},
		{"import", "load customers, subscriptions and events from NDJSON or CSV files", runImport, false},
		{"version", "print the version", runVersion, false},
		{"querybench", "time usage queries for random subjects (for benchmarks)", runQueryBench, true},
		{"nullserver", "serve an ingest endpoint that discards everything (for benchmarks)", runNullServer, true},
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		printUsage(stderr)
		return errUsage
	}
	if isHelp(args[0]) {
		if len(args) == 1 {
			printUsage(stderr)
			return nil
		}
		// tally help keys create = tally keys create --help
		args = append(args[1:len(args):len(args)], "--help")
	}
	for _, c := range commands() {
		if c.name == args[0] {
			err := c.run(ctx, args[1:], stdout, stderr)
			if errors.Is(err, flag.ErrHelp) {
				return nil
			}
			return err
		}
	}
	printUsage(stderr)
	return fmt.Errorf("unknown command %q", args[0])
}

func printUsage(w io.Writer) {
	fmt.Fprintln(w, "Usage: tally <command> [flags]\n\nCommands:")
	for _, c := range commands() {
		if !c.hidden {
			fmt.Fprintf(w, "  %-9s %s\n", c.name, c.summary)
		}
	}
	fmt.Fprintln(w, "\nRun 'tally <command> -h' (or 'tally help <command>') for a command's flags and examples.")
	fmt.Fprintln(w, "\nExamples:\n  tally serve --data ./tally-data\n  tally keys create --data ./tally-data --scope admin --name ops")
}
