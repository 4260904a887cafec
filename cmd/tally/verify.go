package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/tally-metering/tally/internal/ingest"
	"github.com/tally-metering/tally/internal/store"
	"github.com/tally-metering/tally/internal/store/sqlite"
)

func runVerify(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("verify", flag.ContinueOnError)
	fs.SetOutput(stderr)
	data := fs.String("data", "./tally-data", "data directory to verify (env TALLY_DATA)")
	maxShown := fs.Int("max-differences", 50, "how many differences to print")
	setHelp(fs, helpText{
		usage: "tally verify [--data DIR] [--max-differences N]",
		about: `Recomputes every meter from the raw events and compares the result with the
stored rollups. Exits 1 and names the meter, subject and window that differ.
Stop tally first: verify refuses a data directory a running tally holds.`,
		examples: []string{"tally verify --data ./tally-data"},
	})
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return errUsage
	}
	if err := applyEnv(fs); err != nil {
		return fmt.Errorf("verify: %w", err)
	}
	if fi, err := os.Stat(*data); err != nil || !fi.IsDir() {
		return fmt.Errorf("verify: data directory %s does not exist", *data)
	}
	// Open refuses a directory a running tally holds: stop it first.
	st, err := sqlite.Open(ctx, *data, sqlite.Options{})
	if err != nil {
		return err
	}
	defer st.Close()
	ms, err := st.ListMeters(ctx)
	if err != nil {
		return fmt.Errorf("verify: %w", err)
	}
	rules, err := st.ListRules(ctx)
	if err != nil {
		return fmt.Errorf("verify: %w", err)
	}
	for _, r := range rules {
		if r.State == store.RuleApplying || r.State == store.RuleRemoving {
			fmt.Fprintf(stdout, "note: cancellation rule %s was still being %s when tally stopped; tally serve finishes it at start, and until then its cells differ\n", r.ID, map[string]string{store.RuleApplying: "applied", store.RuleRemoving: "removed"}[r.State])
		}
	}
	set, err := ingest.NewMeterSet(1, ms, rules...)
	if err != nil {
		return fmt.Errorf("verify: %w", err)
	}
	if _, err := st.Recover(ctx, set.StoredContributions); err != nil {
		return fmt.Errorf("verify: %w", err)
	}
	rep, err := ingest.Verify(ctx, st)
	if err != nil {
		return fmt.Errorf("verify: %w", err)
	}
	for i, d := range rep.Differences {
		if i == *maxShown {
			fmt.Fprintf(stdout, "... and %d more differences\n", len(rep.Differences)-i)
			break
		}
		fmt.Fprintln(stdout, d.String())
	}
	if len(rep.Differences) > 0 {
		return &exitError{code: 1, err: fmt.Errorf("verify: %d differences between stored rollups and raw events in %d meters", len(rep.Differences), rep.Meters)}
	}
	fmt.Fprintf(stdout, "ok: %d meters, %d rollups match the raw events\n", rep.Meters, rep.Rollups)
	return nil
}
