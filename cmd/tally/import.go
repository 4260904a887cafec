package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strings"
	"time"
)

// Exit codes of tally import besides 0 (everything imported or there
// already) and 2 (bad flags).
const (
	// importExitStopped: the import stopped before the end (the server
	// could not be reached or refused the credential, or Ctrl-C); what was
	// done is kept and a rerun resumes.
	importExitStopped = 1
	// importExitLines: the import ran to the end, but some lines failed
	// (each reported as file:line: what is wrong).
	importExitLines = 3
)

// runImport loads customers, events and subscriptions from NDJSON or CSV
// files into a running server through its API (docs/import.md).
func runImport(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("import", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintln(stderr, `Usage: tally import [flags] FILE…

Loads customers, events and subscriptions from NDJSON or CSV files into a
running tally server through its API (an admin credential), customers
first, then events, then subscriptions. Importing twice changes nothing; a
rerun after a stop resumes where it stopped. A bad line is reported as
FILE:LINE: what is wrong, and the rest goes on. See docs/import.md.

Exit codes: 0 all imported (or there already), 1 stopped before the end
(rerun to resume), 2 bad flags, 3 finished with failed lines.

Flags:`)
		fs.PrintDefaults()
		fmt.Fprintln(stderr, `
Examples:
  tally import --url http://127.0.0.1:8080 --token $ADMIN customers.ndjson events.csv subscriptions.ndjson
  tally import --dry-run customers.ndjson`)
	}
	server := fs.String("url", "http://127.0.0.1:8080", "the tally server (env TALLY_URL)")
	token := fs.String("token", "", "an admin credential (env TALLY_TOKEN, else TALLY_ADMIN_TOKEN)")
	statePath := fs.String("state", "", "the state file that records how far the import got (default: FIRST-FILE.import-state.json; \"none\" keeps none)")
	restart := fs.Bool("restart", false, "ignore the state file and read every file from the beginning (harmless: what exists is left alone)")
	batch := fs.Int("batch", 500, "events per request")
	progress := fs.String("progress", "auto", "show a progress bar on stderr: auto (when it is a terminal), always or never")
	dryRun := fs.Bool("dry-run", false, "only read and check the files, reporting bad lines; send nothing")
	retries := fs.Int("retries", 5, "how often a request the server could not take (network error, 429, 5xx) is retried, waiting 0.5s, 1s, 2s, … before the import stops")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return errUsage
	}
	if err := applyEnv(fs); err != nil {
		return fmt.Errorf("import: %w", err)
	}
	if *token == "" {
		*token = os.Getenv("TALLY_ADMIN_TOKEN")
	}
	if fs.NArg() == 0 {
		fs.Usage()
		return errUsage
	}
	if *retries < 0 {
		return fmt.Errorf("import: --retries: %d is negative", *retries)
	}
	if *batch < 1 || *batch > 10000 {
		return fmt.Errorf("import: --batch: %d is not from 1 to 10000", *batch)
	}
	var showProgress bool
	switch *progress {
	case "auto":
		showProgress = isTerminal(stderr)
	case "always":
		showProgress = true
	case "never":
	default:
		return fmt.Errorf("import: --progress: %q is not auto, always or never", *progress)
	}
	var files []*importFile
	for _, p := range fs.Args() {
		in, err := openImportFile(p)
		if err != nil {
			return &exitError{importExitStopped, fmt.Errorf("import: %w", err)}
		}
		files = append(files, in)
	}
	switch {
	case *statePath == "none" || *dryRun:
		*statePath = ""
	case *statePath == "":
		*statePath = fs.Arg(0) + ".import-state.json"
	}
	base := strings.TrimRight(*server, "/")
	st, notes, err := loadImportState(*statePath, base, *restart)
	if err != nil {
		return &exitError{importExitStopped, fmt.Errorf("import: %w", err)}
	}
	imp := &importer{
		client: &importClient{base: base, token: *token, http: &http.Client{Timeout: 2 * time.Minute}, retries: *retries, backoff: 500 * time.Millisecond},
		state:  st, batch: *batch, dryRun: *dryRun, stderr: stderr,
		progress: &progressBar{w: stderr, on: showProgress},
	}
	for _, n := range notes {
		imp.note(n)
	}
	runErr := imp.run(ctx, files)
	imp.progress.clear()
	if err := st.save(); err != nil && runErr == nil {
		runErr = err
	}
	imp.summary(stdout)
	switch {
	case runErr != nil:
		msg := "import stopped: %w; run the same command again to resume"
		if st.path == "" {
			msg = "import stopped: %w; run the same command again: what is there already is left as it is"
		}
		return &exitError{importExitStopped, fmt.Errorf(msg, runErr)}
	case imp.failed > 0:
		return &exitError{importExitLines, fmt.Errorf("import: %d lines failed (listed above)", imp.failed)}
	}
	return nil
}

// isTerminal reports whether w is a terminal (a character device), without
// a dependency for it.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// importer runs one import.
type importer struct {
	client   *importClient
	state    *importState
	batch    int
	dryRun   bool
	stderr   io.Writer
	progress *progressBar

	customers, subscriptions itemCounts
	eventsSent, eventsFailed int
	// failed counts the lines that failed, of any kind.
	failed int
	// resumed counts the passes that started where an earlier run left.
	resumed int
}

// itemCounts is what became of the customer or subscription lines.
type itemCounts struct {
	created, unchanged, differ, failed int
}

func (imp *importer) note(msg string) {
	imp.progress.clear()
	fmt.Fprintln(imp.stderr, "import:", msg)
}

// fail reports a failed line.
func (imp *importer) fail(in *importFile, no int, err error) {
	imp.failed++
	imp.progress.clear()
	fmt.Fprintf(imp.stderr, "%s:%d: %v\n", in.path, no, err)
}

// run makes one pass per kind over the files, in importPhases' order.
func (imp *importer) run(ctx context.Context, files []*importFile) error {
	for _, kind := range importPhases {
		for _, in := range files {
			if in.csv && in.kind != kind || in.csv && in.header == nil {
				continue
			}
			fs, note := imp.state.file(in)
			if note != "" {
				imp.note(note)
			}
			if in.csv {
				fs.Kinds = []importKind{in.kind}
			}
			if fs.Kinds != nil && !slices.Contains(fs.Kinds, kind) {
				continue
			}
			p := fs.phase(kind)
			if p.Done {
				continue
			}
			if p.Offset > 0 {
				imp.resumed++
			}
			if err := imp.pass(ctx, in, fs, p, kind); err != nil {
				return err
			}
			p.Done = true
			imp.state.dirty = true
			if err := imp.state.saveSoon(); err != nil {
				return err
			}
		}
	}
	return nil
}

// pass reads in from where its kind's pass got and imports the lines of
// that kind.
func (imp *importer) pass(ctx context.Context, in *importFile, fs *fileState, p *phaseState, kind importKind) error {
	// Lines that can't be read at all are reported once, in the file's
	// first pass: the customers' for NDJSON.
	first := kind == kindCustomer || in.csv
	whole := p.Offset == 0
	seen := map[importKind]bool{}
	var pending []pendingEvent
	var last importLine // the last line read while events are pending
	flush := func() error {
		if len(pending) == 0 {
			return nil
		}
		if err := imp.sendEvents(ctx, in, pending); err != nil {
			return err
		}
		pending = pending[:0]
		imp.state.advance(p, last)
		return imp.state.saveSoon()
	}
	bytesPending := 0
	err := in.lines(p.Offset, p.Line, func(l importLine) (bool, error) {
		if err := ctx.Err(); err != nil {
			return false, err
		}
		imp.progress.update(kind, in.path, l.end, in.size, imp)
		seen[l.kind] = true
		switch {
		case l.err != nil:
			if first {
				imp.fail(in, l.no, l.err)
			}
		case l.kind != kind:
		case kind == kindCustomer:
			if err := imp.customer(ctx, in, l); err != nil {
				return false, err
			}
		case kind == kindSubscription:
			if err := imp.subscription(ctx, in, l); err != nil {
				return false, err
			}
		case kind == kindEvent:
			raw, err := l.event(time.Now())
			if err != nil {
				imp.eventsFailed++
				imp.fail(in, l.no, err)
				break
			}
			pending = append(pending, pendingEvent{no: l.no, raw: raw})
			bytesPending += len(raw)
		}
		if len(pending) == 0 {
			imp.state.advance(p, l)
			return true, imp.state.saveSoon()
		}
		last = l
		if len(pending) >= imp.batch || bytesPending >= 4<<20 {
			bytesPending = 0
			return true, flush()
		}
		return true, nil
	})
	if err == nil {
		err = flush()
	}
	if err != nil {
		return err
	}
	if whole && fs.Kinds == nil {
		for _, k := range importPhases {
			if seen[k] {
				fs.Kinds = append(fs.Kinds, k)
			}
		}
		if fs.Kinds == nil {
			fs.Kinds = []importKind{}
		}
	}
	return nil
}

func (imp *importer) customer(ctx context.Context, in *importFile, l importLine) error {
	c, err := l.customer()
	if err == nil && c.CreatedAt != nil && c.CreatedAt.After(time.Now()) {
		err = fmt.Errorf("createdAt: %s is in the future", c.CreatedAt.UTC().Format(time.RFC3339Nano))
	}
	if err != nil {
		imp.customers.failed++
		imp.fail(in, l.no, err)
		return nil
	}
	if imp.dryRun {
		return nil
	}
	out, err := imp.client.ensureCustomer(ctx, c)
	return imp.count(&imp.customers, in, l, out, err)
}

func (imp *importer) subscription(ctx context.Context, in *importFile, l importLine) error {
	s, err := l.subscription()
	if err != nil {
		imp.subscriptions.failed++
		imp.fail(in, l.no, err)
		return nil
	}
	if imp.dryRun {
		return nil
	}
	out, err := imp.client.ensureSubscription(ctx, s)
	return imp.count(&imp.subscriptions, in, l, out, err)
}

// count records what became of a customer or subscription line; only an
// error that stops the import is returned.
func (imp *importer) count(c *itemCounts, in *importFile, l importLine, out importOutcome, err error) error {
	var de *differsError
	switch {
	case err != nil && fatal(err):
		return err
	case errors.As(err, &de):
		c.differ++
		imp.fail(in, l.no, err)
	case err != nil:
		c.failed++
		imp.fail(in, l.no, err)
	case out == outcomeCreated:
		c.created++
	default:
		c.unchanged++
	}
	return nil
}

// pendingEvent is an event read and not sent yet.
type pendingEvent struct {
	no  int
	raw []byte
}

// sendEvents sends a batch; when the server refuses it whole (one bad
// event refuses a request), each event is sent on its own to find the
// lines at fault.
func (imp *importer) sendEvents(ctx context.Context, in *importFile, evs []pendingEvent) error {
	if imp.dryRun {
		return nil
	}
	raws := make([][]byte, len(evs))
	for i, e := range evs {
		raws[i] = e.raw
	}
	err := imp.client.sendEvents(ctx, raws)
	if err == nil {
		imp.eventsSent += len(evs)
		return nil
	}
	if fatal(err) {
		return err
	}
	if len(evs) == 1 {
		imp.eventsFailed++
		imp.fail(in, evs[0].no, err)
		return nil
	}
	for _, e := range evs {
		if err := imp.sendEvents(ctx, in, []pendingEvent{e}); err != nil {
			return err
		}
	}
	return nil
}

// summary prints what the import did.
func (imp *importer) summary(w io.Writer) {
	verb := "imported"
	if imp.dryRun {
		verb = "checked (dry run: nothing sent)"
	}
	fmt.Fprintf(w, "tally import: %s\n", verb)
	item := func(name string, c itemCounts) {
		fmt.Fprintf(w, "  %-14s %d created, %d unchanged, %d differ, %d failed\n", name+":", c.created, c.unchanged, c.differ, c.failed)
	}
	item("customers", imp.customers)
	item("subscriptions", imp.subscriptions)
	fmt.Fprintf(w, "  %-14s %d sent (new or already there: the server keeps each once), %d failed\n", "events:", imp.eventsSent, imp.eventsFailed)
	if imp.resumed > 0 {
		fmt.Fprintf(w, "  resumed %d passes where an earlier run stopped (state file %s)\n", imp.resumed, imp.state.path)
	}
	if imp.failed > 0 {
		fmt.Fprintf(w, "  %d lines failed (listed on stderr as FILE:LINE: what is wrong)\n", imp.failed)
	}
}

// progressBar draws one line on a terminal: the pass, how far into the
// file it is, and the counts so far.
type progressBar struct {
	w     io.Writer
	on    bool
	last  time.Time
	drawn bool
}

func (p *progressBar) update(kind importKind, path string, done, total int64, imp *importer) {
	if !p.on || time.Since(p.last) < 100*time.Millisecond {
		return
	}
	p.last = time.Now()
	pct := 100
	if total > 0 {
		pct = int(done * 100 / total)
	}
	const width = 24
	fill := pct * width / 100
	name := path
	if len(name) > 30 {
		name = "…" + name[len(name)-29:]
	}
	fmt.Fprintf(p.w, "\r\033[K%-12s %s [%s%s] %3d%%  customers %d  subscriptions %d  events %d  failed %d",
		string(kind)+"s", name, strings.Repeat("#", fill), strings.Repeat(" ", width-fill), pct,
		imp.customers.created+imp.customers.unchanged, imp.subscriptions.created+imp.subscriptions.unchanged, imp.eventsSent, imp.failed)
	p.drawn = true
}

// clear removes the bar so that a message can be printed.
func (p *progressBar) clear() {
	if p.drawn {
		fmt.Fprint(p.w, "\r\033[K")
		p.drawn = false
		p.last = time.Time{}
	}
}
