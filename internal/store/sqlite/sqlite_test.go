package sqlite

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/shopspring/decimal"

	"github.com/tally-metering/tally/internal/meter"
	"github.com/tally-metering/tally/internal/store"
	"github.com/tally-metering/tally/internal/store/storetest"
)

// TestConformance runs the store conformance suite twice: with the default
// options, where rollups mostly live in the in-memory overlay until Close,
// and with FlushKeys 1, where nearly every commit writes the overlay into
// the rollups table, so that both paths and their mix are covered; and
// with FlushSliceCells 1, where a flush is written a cell per commit, so
// that flushes in progress meet every operation and crash.
func TestConformance(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts Options
	}{
		{"default", Options{}},
		{"FlushKeys=1", Options{FlushKeys: 1}},
		{"FlushKeys=1,FlushSliceCells=1", Options{FlushKeys: 1, FlushSliceCells: 1, FlushBacklogCells: 1 << 20}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			storetest.Run(t, backend(tc.opts))
		})
	}
}

// backend is the SQLite store for the conformance suite. Crash copies the
// database files as they are on disk while the store is open (what a power
// cut leaves behind: no Close, the overlay lost, the write-ahead log not
// checkpointed, no shared-memory index) and opens the copy.
func backend(opts Options) storetest.Backend {
	return storetest.Backend{
		// The suite closes every store it gets, except those it hands to
		// Crash, which abandons them.
		Open: func(t *testing.T) store.Store {
			return mustOpen(t, t.TempDir(), opts)
		},
		Reopen: func(t *testing.T, old store.Store) store.Store {
			return mustOpen(t, filepath.Dir(old.(*DB).Path()), opts)
		},
		Crash: func(t *testing.T, live store.Store) store.Store {
			db := live.(*DB)
			stopCheckpoints(t, db)
			dir := t.TempDir()
			copyFiles(t, db, dir)
			abandon(t, db)
			return mustOpen(t, dir, opts)
		},
	}
}

func mustOpen(t *testing.T, dir string, opts Options) *DB {
	t.Helper()
	db, err := Open(t.Context(), dir, opts)
	if err != nil {
		t.Fatalf("Open(%s): %v", dir, err)
	}
	return db
}

// openDB opens the store in dir for the SQLite tests, which close it with
// closeDB or lose it with abandon; if the test ends first, it is abandoned
// then.
func openDB(t *testing.T, dir string, opts Options) *DB {
	t.Helper()
	db := mustOpen(t, dir, opts)
	t.Cleanup(func() {
		if db.w != nil {
			abandon(t, db)
		}
	})
	return db
}

// closeDB closes db as a clean shutdown does.
func closeDB(t *testing.T, db *DB) {
	t.Helper()
	err := db.Close()
	db.r, db.w, db.ckpt, db.lock = nil, nil, nil, nil
	if err != nil {
		t.Fatalf("Close: %v", err)
	}
}

// stopCheckpoints stops db's background checkpointer, so that the files
// stay as they are while they are copied.
func stopCheckpoints(t *testing.T, db *DB) {
	t.Helper()
	if db.ckpt == nil {
		return
	}
	close(db.stopCkpt)
	<-db.ckptDone
	err := db.ckpt.Close()
	db.ckpt = nil
	if err != nil {
		t.Errorf("close checkpoint connection: %v", err)
	}
}

// abandon drops db as a dying process does: its connections are closed
// without flushing the overlay, which is lost.
func abandon(t *testing.T, db *DB) {
	t.Helper()
	stopCheckpoints(t, db)
	var errs []error
	if db.r != nil {
		errs = append(errs, db.r.Close())
	}
	if db.w != nil {
		errs = append(errs, db.w.Close())
	}
	db.r, db.w = nil, nil
	unlock(db.lock) // a dying process's lock goes with it
	db.lock = nil
	if err := errors.Join(errs...); err != nil {
		t.Errorf("abandon: %v", err)
	}
}

// crashCopy copies db's files as they are on disk now into a new
// directory, abandons db and opens the copy.
func crashCopy(t *testing.T, db *DB, opts Options) *DB {
	t.Helper()
	stopCheckpoints(t, db)
	dir := t.TempDir()
	copyFiles(t, db, dir)
	abandon(t, db)
	return openDB(t, dir, opts)
}

// copyFiles copies db's database file and write-ahead log, as they are on
// disk now, into dir.
func copyFiles(t *testing.T, db *DB, dir string) {
	t.Helper()
	for _, suffix := range []string{"", "-wal"} {
		src, err := os.Open(db.Path() + suffix)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		dst, err := os.Create(filepath.Join(dir, FileName+suffix))
		if err != nil {
			src.Close()
			t.Fatal(err)
		}
		_, err = io.Copy(dst, src)
		src.Close()
		if cerr := dst.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			t.Fatal(err)
		}
	}
}

// crashMethods are the ways the crash tests lose a store.
var crashMethods = []struct {
	name string
	// crash loses db's process and returns a store on what it left.
	crash func(t *testing.T, db *DB, opts Options) *DB
}{
	{
		// A new process opens the directory while the old handle, never
		// closed, still has its connections open (its directory lock is
		// gone, as a dead process's is); it is abandoned when the test
		// ends.
		name: "second handle on the directory",
		crash: func(t *testing.T, db *DB, opts Options) *DB {
			unlock(db.lock)
			db.lock = nil
			return openDB(t, filepath.Dir(db.Path()), opts)
		},
	},
	{
		name:  "copy of the files",
		crash: crashCopy,
	},
}

// Meter ids of the SQLite tests.
const (
	mSum    = "sum"
	mCount  = "count"
	mUnique = "unique"
	mLatest = "latest"
)

var meterIDs = []string{mSum, mCount, mUnique, mLatest}

var base = time.Date(2026, 5, 6, 7, 8, 0, 0, time.UTC)

// newEvent is event id for subject at base+sec seconds, contributing to
// every meter; every seventh is invalid for the SUM meter.
func newEvent(id string, n int) store.NewEvent {
	subject := []string{"alice", "bob"}[n%2]
	at := base.Add(time.Duration(n*7%90) * time.Second)
	v := decimal.New(int64(n*37%100), -1) // 0.0 … 9.9
	cs := []store.Contribution{
		{MeterID: mSum, Aggregation: meter.Sum, Contribution: meter.Contribution{Value: v}},
		{MeterID: mCount, Aggregation: meter.Count, Contribution: meter.Contribution{GroupKey: `{"k":"` + strconv.Itoa(n%3) + `"}`}},
		{MeterID: mUnique, Aggregation: meter.UniqueCount, Contribution: meter.Contribution{Unique: "u" + strconv.Itoa(n%4)}},
		{MeterID: mLatest, Aggregation: meter.Latest, Contribution: meter.Contribution{Value: v.Neg()}},
	}
	if n%7 == 6 {
		cs[0] = store.Contribution{MeterID: mSum, Aggregation: meter.Sum, Err: "sum: bad value"}
	}
	return store.NewEvent{
		ID: id, Source: "sqlite-test", Type: "request", Subject: subject, Time: at,
		Raw:           []byte(fmt.Sprintf(`{"id":%q,"n":%d}`, id, n)),
		Contributions: cs,
	}
}

// events are newEvent(prefix-i, i) for i in [from, to).
func events(prefix string, from, to int) []store.NewEvent {
	var out []store.NewEvent
	for i := from; i < to; i++ {
		out = append(out, newEvent(prefix+"-"+strconv.Itoa(i), i))
	}
	return out
}

// replayer computes stored events' contributions for Recover from the
// events appended, and records which events were replayed.
type replayer struct {
	byKey    map[string]store.NewEvent
	replayed []string
}

func newReplayer() *replayer { return &replayer{byKey: make(map[string]store.NewEvent)} }

func (r *replayer) add(evs []store.NewEvent) {
	for _, e := range evs {
		if _, ok := r.byKey[e.Source+"/"+e.ID]; !ok {
			r.byKey[e.Source+"/"+e.ID] = e
		}
	}
}

func (r *replayer) contributions(e store.StoredEvent) ([]store.Contribution, error) {
	ne, ok := r.byKey[e.Source+"/"+e.ID]
	if !ok {
		return nil, fmt.Errorf("replayed unknown event %s/%s", e.Source, e.ID)
	}
	r.replayed = append(r.replayed, e.ID)
	return ne.Contributions, nil
}

// recoverAll runs Recover and checks it replayed exactly want, in order.
func (r *replayer) recoverAll(t *testing.T, db *DB, want []string) {
	t.Helper()
	r.replayed = nil
	n, err := db.Recover(t.Context(), r.contributions)
	if err != nil {
		t.Fatalf("Recover: %v", err)
	}
	if n != len(r.replayed) {
		t.Errorf("Recover returned %d, but replayed %d events", n, len(r.replayed))
	}
	if diff := cmp.Diff(want, r.replayed, cmpopts.EquateEmpty()); diff != "" {
		t.Errorf("Recover replayed (-want +got):\n%s", diff)
	}
}

// appendEvents appends evs and checks how many were new.
func appendEvents(t *testing.T, db *DB, r *replayer, evs []store.NewEvent, inserted, duplicates int) {
	t.Helper()
	r.add(evs)
	res, err := db.AppendEvents(t.Context(), evs, base.Add(time.Hour))
	if err != nil {
		t.Fatalf("AppendEvents: %v", err)
	}
	if res.Inserted != inserted || res.Duplicates != duplicates {
		t.Fatalf("AppendEvents: %d inserted, %d duplicates; want %d, %d", res.Inserted, res.Duplicates, inserted, duplicates)
	}
}

// state is everything the store returns about events and rollups.
type state struct {
	Rollups map[string][]store.Rollup
	Uniques map[string][]store.UniqueValue
	Events  []store.StoredEvent
}

func stateOf(t *testing.T, db *DB) state {
	t.Helper()
	ctx := t.Context()
	s := state{Rollups: make(map[string][]store.Rollup), Uniques: make(map[string][]store.UniqueValue)}
	for _, id := range meterIDs {
		q := store.RollupQuery{MeterID: id, From: -1 << 63, To: 1<<63 - 1}
		rs, err := db.QueryRollups(ctx, q)
		if err != nil {
			t.Fatalf("QueryRollups: %v", err)
		}
		sort.Slice(rs, func(i, j int) bool {
			a, b := rs[i], rs[j]
			if a.Subject != b.Subject {
				return a.Subject < b.Subject
			}
			if a.GroupKey != b.GroupKey {
				return a.GroupKey < b.GroupKey
			}
			return a.Minute < b.Minute
		})
		s.Rollups[id] = rs
		us, err := db.QueryUniqueValues(ctx, q)
		if err != nil {
			t.Fatalf("QueryUniqueValues: %v", err)
		}
		sort.Slice(us, func(i, j int) bool { return fmt.Sprint(us[i]) < fmt.Sprint(us[j]) })
		s.Uniques[id] = us
	}
	evs, err := db.ListEvents(ctx, store.EventFilter{})
	if err != nil {
		t.Fatalf("ListEvents: %v", err)
	}
	s.Events = evs
	return s
}

func diffState(want, got state) string {
	return cmp.Diff(want, got, cmpopts.EquateEmpty())
}

func ids(evs []store.NewEvent) []string {
	var out []string
	for _, e := range evs {
		out = append(out, e.ID)
	}
	return out
}

// TestCrashReplay appends events, some flushed into the rollups table and
// some only in the overlay, loses the process without Close and checks
// that Recover replays exactly the events appended since the last flush,
// once each, after which every rollup is what the live store showed.
func TestCrashReplay(t *testing.T) {
	// Flushes happen only when the test asks.
	opts := Options{FlushInterval: time.Hour}
	for _, cm := range crashMethods {
		t.Run(cm.name, func(t *testing.T) {
			r := newReplayer()
			db := openDB(t, t.TempDir(), opts)
			a := events("a", 0, 10)
			appendEvents(t, db, r, a, 10, 0)
			if err := db.Flush(t.Context()); err != nil {
				t.Fatalf("Flush: %v", err)
			}
			flushed := stateOf(t, db)

			// Not flushed: new events in the same cells and new cells,
			// duplicates of flushed events and within a call, and a
			// last call of duplicates only.
			b := events("b", 10, 20)
			b = append(b, a[0], b[3], a[9])
			appendEvents(t, db, r, b, 10, 3)
			c := events("c", 20, 26)
			appendEvents(t, db, r, c, 6, 0)
			appendEvents(t, db, r, []store.NewEvent{a[1], c[5], b[0]}, 0, 3)
			live := stateOf(t, db)
			if diff := diffState(flushed, live); diff == "" {
				t.Fatal("appending after the flush changed nothing")
			}
			if err := checkDurable(t.Context(), db, r); err != nil {
				t.Error(err)
			}

			db2 := cm.crash(t, db, opts)
			// The overlay is lost: the table holds what was flushed.
			lost := stateOf(t, db2)
			if diff := cmp.Diff(flushed.Rollups, lost.Rollups, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("rollups after the crash, before Recover, are not the flushed ones (-flushed +got):\n%s", diff)
			}
			if diff := cmp.Diff(live.Events, lost.Events, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("events after the crash (-live +got):\n%s", diff)
			}

			r.recoverAll(t, db2, append(ids(b[:10]), ids(c)...))
			if diff := diffState(live, stateOf(t, db2)); diff != "" {
				t.Errorf("after Recover (-live +recovered):\n%s", diff)
			}
			// Recover flushed: a second one has nothing to replay, nor has
			// one after a clean restart.
			r.recoverAll(t, db2, nil)
			dir := filepath.Dir(db2.Path())
			closeDB(t, db2)
			db3 := openDB(t, dir, opts)
			r.recoverAll(t, db3, nil)
			if diff := diffState(live, stateOf(t, db3)); diff != "" {
				t.Errorf("after a restart (-live +got):\n%s", diff)
			}

			// Appending continues after the recovered events, and the
			// events of before the crash are still duplicates.
			d := events("d", 26, 30)
			appendEvents(t, db3, r, append(d, a[2], b[5]), 4, 2)
			want := stateOf(t, db3)
			db4 := cm.crash(t, db3, opts)
			r.recoverAll(t, db4, ids(d))
			if diff := diffState(want, stateOf(t, db4)); diff != "" {
				t.Errorf("after a second crash (-live +recovered):\n%s", diff)
			}
			closeDB(t, db4)
		})
	}
}

// TestCrashReplayFlushTriggers checks which events are replayed when the
// overlay was flushed by an ingest transaction itself, because it held
// FlushKeys cells or was older than FlushInterval: that transaction writes
// the batches committed before it, while its own deltas go to the emptied
// overlay, to be replayed after a crash.
func TestCrashReplayFlushTriggers(t *testing.T) {
	tests := []struct {
		name string
		opts Options
		// wait before the second and third calls
		wait time.Duration
	}{
		{"FlushKeys", Options{FlushKeys: 1, FlushInterval: time.Hour}, 0},
		{"FlushInterval", Options{FlushInterval: 2 * time.Millisecond}, 3 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newReplayer()
			db := openDB(t, t.TempDir(), tt.opts)
			// The first call fills the empty overlay (an empty overlay is
			// never due); the second and third each flush what the
			// overlay holds, the previous call's deltas.
			appendEvents(t, db, r, events("a", 0, 5), 5, 0)
			time.Sleep(tt.wait)
			appendEvents(t, db, r, events("b", 5, 10), 5, 0)
			time.Sleep(tt.wait)
			appendEvents(t, db, r, events("c", 10, 12), 2, 0)
			live := stateOf(t, db)
			db2 := crashCopy(t, db, tt.opts)
			r.recoverAll(t, db2, []string{"c-10", "c-11"})
			if diff := diffState(live, stateOf(t, db2)); diff != "" {
				t.Errorf("after Recover (-live +recovered):\n%s", diff)
			}
			closeDB(t, db2)
		})
	}
}

// TestCrashAfterTrailingDuplicates: sequence numbers are handed out to
// every event of a call, and a flush records the call's last one as
// applied even when that event was a duplicate and never stored. After a
// restart Open numbers new events from the greatest stored one, at or
// below applied_seq; it is the Recover made at start that brings
// applied_seq back down, so that a crash later does not take the new
// events for already projected.
func TestCrashAfterTrailingDuplicates(t *testing.T) {
	opts := Options{FlushInterval: time.Hour}
	for _, cm := range crashMethods {
		t.Run(cm.name, func(t *testing.T) {
			r := newReplayer()
			dir := t.TempDir()
			db := openDB(t, dir, opts)
			a := events("a", 0, 3)
			appendEvents(t, db, r, []store.NewEvent{a[0], a[1], a[0], a[1]}, 2, 2)
			closeDB(t, db) // flushes: applied through the last duplicate's number
			db = openDB(t, dir, opts)
			r.recoverAll(t, db, nil)
			appendEvents(t, db, r, a[2:], 1, 0)
			live := stateOf(t, db)
			db2 := cm.crash(t, db, opts)
			r.recoverAll(t, db2, []string{"a-2"})
			if diff := diffState(live, stateOf(t, db2)); diff != "" {
				t.Errorf("after Recover (-live +recovered):\n%s", diff)
			}
			closeDB(t, db2)
		})
	}
}

// TestListEventsUnlimited lists more events than SQLite binds variables in
// one statement (32,766), with no limit, as EventFilter allows.
func TestListEventsUnlimited(t *testing.T) {
	const n = 33_000
	db := openDB(t, t.TempDir(), Options{})
	evs := make([]store.NewEvent, n)
	for i := range evs {
		evs[i] = store.NewEvent{ID: strconv.Itoa(i), Source: "s", Type: "t", Subject: "x", Time: base, Raw: []byte(`{}`)}
		if i%1000 == 999 {
			evs[i].Contributions = []store.Contribution{{MeterID: mSum, Aggregation: meter.Sum, Err: "bad " + strconv.Itoa(i)}}
		}
	}
	if _, err := db.AppendEvents(t.Context(), evs, base); err != nil {
		t.Fatalf("AppendEvents: %v", err)
	}
	got, err := db.ListEvents(t.Context(), store.EventFilter{})
	if err != nil {
		t.Fatalf("ListEvents: %v", err)
	}
	if len(got) != n {
		t.Fatalf("ListEvents: %d events, want %d", len(got), n)
	}
	withErrors := 0
	for i, e := range got {
		if want := strconv.Itoa(n - 1 - i); e.ID != want {
			t.Fatalf("event %d is %s, want %s", i, e.ID, want)
		}
		if len(e.ValidationErrors) > 0 {
			withErrors++
			if want := "bad " + e.ID; len(e.ValidationErrors) != 1 || e.ValidationErrors[0] != want {
				t.Errorf("event %s: validation errors %q, want [%q]", e.ID, e.ValidationErrors, want)
			}
		}
	}
	if withErrors != n/1000 {
		t.Errorf("%d events with validation errors, want %d", withErrors, n/1000)
	}
	closeDB(t, db)
}

type cell struct {
	meterID, subject, group string
	minute                  int64
}

// addEvent folds an event's valid contributions into states.
func addEvent(states map[cell]*meter.State, cs []store.Contribution, subject string, at time.Time, seq int64) {
	for _, c := range cs {
		if c.Err != "" {
			continue
		}
		k := cell{c.MeterID, subject, c.GroupKey, store.MinuteOf(at)}
		s := states[k]
		if s == nil {
			s = &meter.State{}
			states[k] = s
		}
		s.Observe(c.Aggregation, c.Value, at.UnixMicro(), seq)
	}
}

// project computes the rollups the stored events should give, from their
// contributions (as appended) and sequence numbers, sorted as stateOf
// sorts them.
func project(t *testing.T, db *DB, r *replayer) map[string][]store.Rollup {
	t.Helper()
	states := make(map[cell]*meter.State)
	err := db.ScanEvents(t.Context(), "", func(e store.StoredEvent) error {
		ne, ok := r.byKey[e.Source+"/"+e.ID]
		if !ok {
			return fmt.Errorf("unknown event %s", e.ID)
		}
		addEvent(states, ne.Contributions, e.Subject, e.Time, e.Seq)
		return nil
	})
	if err != nil {
		t.Fatalf("ScanEvents: %v", err)
	}
	out := make(map[string][]store.Rollup)
	for _, id := range meterIDs {
		out[id] = nil
	}
	for k, s := range states {
		out[k.meterID] = append(out[k.meterID], store.Rollup{MeterID: k.meterID, Subject: k.subject, GroupKey: k.group, Minute: k.minute, State: *s})
	}
	for _, rs := range out {
		sort.Slice(rs, func(i, j int) bool {
			a, b := rs[i], rs[j]
			if a.Subject != b.Subject {
				return a.Subject < b.Subject
			}
			if a.GroupKey != b.GroupKey {
				return a.GroupKey < b.GroupKey
			}
			return a.Minute < b.Minute
		})
	}
	return out
}

// checkDurable checks, on one snapshot of the database file, the invariant
// that makes the overlay safe: the rollups table merged with what Recover
// would replay (the events after applied_seq, those up to a flush in
// progress only into the cells it has not written) is what all stored
// events give. It must hold after every commit, whatever the overlay holds.
func checkDurable(ctx context.Context, db *DB, r *replayer) error {
	tx, err := db.r.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	prog, err := readFlushProgress(ctx, tx)
	if err != nil {
		return err
	}
	applied := prog.applied
	want := make(map[cell]*meter.State)
	got := make(map[cell]*meter.State)
	rows, err := tx.QueryContext(ctx, "SELECT seq, source, id, subject, time_us FROM events ORDER BY seq")
	if err != nil {
		return err
	}
	for rows.Next() {
		var seq, timeUS int64
		var source, id, subject string
		if err := rows.Scan(&seq, &source, &id, &subject, &timeUS); err != nil {
			rows.Close()
			return err
		}
		ne, ok := r.byKey[source+"/"+id]
		if !ok {
			rows.Close()
			return fmt.Errorf("unknown event %s/%s", source, id)
		}
		at := time.UnixMicro(timeUS)
		addEvent(want, ne.Contributions, subject, at, seq)
		if seq > applied {
			addEvent(got, prog.unwritten(seq, subject, store.MinuteOf(at), ne.Contributions), subject, at, seq)
		}
	}
	if err := rows.Close(); err != nil {
		return err
	}
	rows, err = tx.QueryContext(ctx, "SELECT meter_id, subject, group_key, minute, count, sum, min, max, latest, latest_us, latest_seq FROM rollups")
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var k cell
		var st meter.State
		var sum, mn, mx, latest string
		if err := rows.Scan(&k.meterID, &k.subject, &k.group, &k.minute, &st.Count, &sum, &mn, &mx, &latest, &st.LatestTime, &st.LatestSeq); err != nil {
			return err
		}
		if err := parseDecimals(&st, sum, mn, mx, latest); err != nil {
			return err
		}
		if s := got[k]; s != nil {
			s.Merge(st)
		} else {
			got[k] = &st
		}
	}
	if err := rows.Err(); err != nil {
		return err
	}
	if diff := cmp.Diff(want, got, cmp.AllowUnexported(cell{})); diff != "" {
		return fmt.Errorf("applied_seq %d: rollups table + replay (-all events +table and replay):\n%s", applied, diff)
	}
	return nil
}

// TestConcurrentAppends: the ingest pipeline commits from several
// goroutines, so AppendEvents runs concurrently with itself (and here with
// flushes and queries). Writers append the same events in different
// orders, so that concurrent calls race to insert them: each must be
// stored and counted once, queries must never see a count go down, and the
// rollups must end up as the events give them, also after a crash. With
// FlushKeys 4 and FlushSliceCells 2 most commits write a slice of a flush
// in progress, and with FlushBacklogCells 12 some write all that is left.
func TestConcurrentAppends(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts Options
	}{
		{"whole flushes", Options{FlushKeys: 40, FlushInterval: time.Hour}},
		{"FlushSliceCells=2", Options{FlushKeys: 4, FlushInterval: time.Hour, FlushSliceCells: 2, FlushBacklogCells: 12}},
	} {
		t.Run(tc.name, func(t *testing.T) { testConcurrentAppends(t, tc.opts) })
	}
}

func testConcurrentAppends(t *testing.T, opts Options) {
	const (
		writers  = 4
		batches  = 15
		perBatch = 20
		total    = batches * perBatch
	)
	db := openDB(t, t.TempDir(), opts)
	r := newReplayer()
	all := events("e", 0, total)
	r.add(all)

	var inserted, duplicates atomic.Int64
	stop := make(chan struct{})
	var readers sync.WaitGroup
	for range 2 {
		readers.Go(func() {
			var last int64
			for {
				select {
				case <-stop:
					return
				default:
				}
				rs, err := db.QueryRollups(t.Context(), store.RollupQuery{MeterID: mCount, From: -1 << 63, To: 1<<63 - 1})
				if err != nil {
					t.Errorf("QueryRollups: %v", err)
					return
				}
				var n int64
				for _, r := range rs {
					n += r.State.Count
				}
				if n < last || n > total {
					t.Errorf("QueryRollups counted %d events after %d (of %d)", n, last, total)
					return
				}
				last = n
			}
		})
	}
	checks := 0
	readers.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			if err := checkDurable(t.Context(), db, r); err != nil {
				t.Errorf("after %d checks: %v", checks, err)
				return
			}
			checks++
		}
	})
	readers.Go(func() {
		for {
			select {
			case <-stop:
				return
			case <-time.After(3 * time.Millisecond):
			}
			if err := db.Flush(t.Context()); err != nil {
				t.Errorf("Flush: %v", err)
				return
			}
		}
	})
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for j := range batches {
				b := (j + w*batches/writers) % batches
				batch := slices.Clone(all[b*perBatch : (b+1)*perBatch])
				if w%2 == 1 {
					slices.Reverse(batch)
				}
				res, err := db.AppendEvents(t.Context(), batch, base)
				if err != nil {
					t.Errorf("AppendEvents: %v", err)
					return
				}
				inserted.Add(int64(res.Inserted))
				duplicates.Add(int64(res.Duplicates))
			}
		})
	}
	wg.Wait()
	close(stop)
	readers.Wait()
	if inserted.Load() != total || duplicates.Load() != (writers-1)*total {
		t.Errorf("%d inserted, %d duplicates; want %d, %d", inserted.Load(), duplicates.Load(), total, (writers-1)*total)
	}

	t.Logf("%d snapshots checked while appending", checks)
	if err := checkDurable(t.Context(), db, r); err != nil {
		t.Error(err)
	}
	want := project(t, db, r)
	if diff := cmp.Diff(want, stateOf(t, db).Rollups, cmpopts.EquateEmpty()); diff != "" {
		t.Errorf("rollups (-projected +stored):\n%s", diff)
	}
	db2 := crashCopy(t, db, opts)
	r.replayed = nil
	if _, err := db2.Recover(t.Context(), r.contributions); err != nil {
		t.Fatalf("Recover: %v", err)
	}
	if diff := cmp.Diff(want, stateOf(t, db2).Rollups, cmpopts.EquateEmpty()); diff != "" {
		t.Errorf("rollups after a crash (-projected +recovered):\n%s", diff)
	}
	closeDB(t, db2)
}

// TestFlushDuringMerge flushes right after a large batch commits, while
// its rollup deltas are still being computed outside the writer lock. The
// flush records the batch as applied, so it must wait for the batch's
// deltas and write them too; otherwise a crash before the next flush would
// lose them.
func TestFlushDuringMerge(t *testing.T) {
	opts := Options{FlushInterval: time.Hour}
	db := openDB(t, t.TempDir(), opts)
	r := newReplayer()
	appendEvents(t, db, r, events("small", 0, 10), 10, 0)
	big := events("big", 10, 10_010)
	r.add(big)
	db.mu.Lock()
	before := db.nextSeq
	db.mu.Unlock()
	done := make(chan error, 1)
	go func() {
		_, err := db.AppendEvents(t.Context(), big, base)
		done <- err
	}()
	for {
		db.mu.Lock()
		committed := db.nextSeq > before
		db.mu.Unlock()
		if committed {
			break
		}
		time.Sleep(100 * time.Microsecond)
	}
	if err := db.Flush(t.Context()); err != nil {
		t.Fatalf("Flush: %v", err)
	}
	if err := <-done; err != nil {
		t.Fatalf("AppendEvents: %v", err)
	}
	if err := checkDurable(t.Context(), db, r); err != nil {
		t.Error(err)
	}
	live := stateOf(t, db)
	db2 := crashCopy(t, db, opts)
	r.recoverAll(t, db2, nil)
	// Rollups only: comparing this many events is slow, and they are
	// compared in the other tests.
	got := stateOf(t, db2)
	live.Events, got.Events = nil, nil
	if diff := diffState(live, got); diff != "" {
		t.Errorf("after a crash (-live +recovered):\n%s", diff)
	}
	closeDB(t, db2)
}

// TestSecondOpenIsRefused checks that a data directory can't be opened
// twice at once, and can be after the first handle is closed.
func TestSecondOpenIsRefused(t *testing.T) {
	dir := t.TempDir()
	db := openDB(t, dir, Options{})
	if _, err := Open(t.Context(), dir, Options{}); !errors.Is(err, ErrLocked) {
		t.Fatalf("second Open = %v, want ErrLocked", err)
	}
	closeDB(t, db)
	again := openDB(t, dir, Options{})
	closeDB(t, again)
}

// TestFailingFlushKeepsIngesting checks that a rollup flush that fails does
// not reject incoming events: they are committed, counted from memory, and
// Health reports the failure until a flush succeeds.
func TestFailingFlushKeepsIngesting(t *testing.T) {
	ctx := t.Context()
	db := openDB(t, t.TempDir(), Options{FlushKeys: 1})
	defer closeDB(t, db)
	at := time.Date(2026, 6, 20, 10, 0, 0, 0, time.UTC)
	ev := func(id, v string) store.NewEvent {
		return store.NewEvent{ID: id, Source: "s", Type: "t", Subject: "alice", Time: at, Raw: []byte(`{}`),
			Contributions: []store.Contribution{{MeterID: "m", Aggregation: meter.Sum, Contribution: meter.Contribution{Value: decimal.RequireFromString(v)}}}}
	}
	for _, id := range []string{"a", "b"} { // the second append flushes the first
		if _, err := db.AppendEvents(ctx, []store.NewEvent{ev(id, "1")}, at); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := db.w.Exec("UPDATE rollups SET sum = 'not a number'"); err != nil {
		t.Fatal(err)
	}
	res, err := db.AppendEvents(ctx, []store.NewEvent{ev("c", "1")}, at)
	if err != nil || res.Inserted != 1 {
		t.Fatalf("AppendEvents with a failing flush = %+v, %v; want the event stored", res, err)
	}
	if err := db.Health(); err == nil {
		t.Fatal("Health() = nil after a failed flush")
	}
	if evs, err := db.ListEvents(ctx, store.EventFilter{ID: "c"}); err != nil || len(evs) != 1 {
		t.Fatalf("event c stored: %v, %v", evs, err)
	}
	if _, err := db.w.Exec("UPDATE rollups SET sum = '1'"); err != nil {
		t.Fatal(err)
	}
	if err := db.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if err := db.Health(); err != nil {
		t.Fatalf("Health() = %v after a successful flush", err)
	}
	rs, err := db.QueryRollups(ctx, store.RollupQuery{MeterID: "m", From: -1 << 62, To: 1 << 62})
	if err != nil || len(rs) != 1 || !rs[0].State.Sum.Equal(decimal.RequireFromString("3")) {
		t.Fatalf("rollups = %+v, %v; want one cell with sum 3", rs, err)
	}
}

// TestSortedCellsKeyOrder: a flush in progress is resumed, queried and
// replayed by comparing cells with the last one written (compareCells),
// so the order it writes them in must be that order.
func TestSortedCellsKeyOrder(t *testing.T) {
	bySubject := make(subjectCells)
	for _, sub := range []string{"b", "a", "ab", "", "B"} {
		cells := make(map[cellKey]*meter.State)
		for _, minute := range []int64{3, -1, 2} {
			for _, g := range []string{`{"k":"2"}`, "", `{"k":"10"}`} {
				cells[cellKey{subject: sub, groupKey: g, minute: minute}] = &meter.State{}
			}
		}
		bySubject[sub] = cells
	}
	got := sortedCells(sortedCells(nil, "m1", bySubject), "m2", bySubject)
	if len(got) != 2*5*3*3 {
		t.Fatalf("%d cells, want %d", len(got), 2*5*3*3)
	}
	for i := 1; i < len(got); i++ {
		if compareCells(got[i].meterID, got[i].k, got[i-1]) <= 0 {
			t.Fatalf("cell %d %+v does not follow cell %d %+v", i, got[i].k, i-1, got[i-1].k)
		}
	}
}
