package storetest

import (
	"fmt"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/tally-metering/tally/internal/meter"
	"github.com/tally-metering/tally/internal/store"
)

// snapshot is everything a store returns, to compare a store before and
// after a restart or a crash.
type snapshot struct {
	Meters   []meter.Meter
	Subjects []store.Subject
	Events   []store.StoredEvent
	Rollups  map[string][]store.Rollup
	Uniques  map[string][]store.UniqueValue
}

func (e *env) snapshot(t *testing.T) snapshot {
	t.Helper()
	var s snapshot
	var err error
	if s.Meters, err = e.s.ListMeters(ctxOf(t)); err != nil {
		t.Fatalf("ListMeters: %v", err)
	}
	if s.Subjects, err = e.s.ListSubjects(ctxOf(t)); err != nil {
		t.Fatalf("ListSubjects: %v", err)
	}
	s.Events = e.listEvents(t, store.EventFilter{})
	ids := make(map[string]bool)
	for _, id := range e.m.meterIDs() {
		ids[id] = true
	}
	for _, m := range s.Meters {
		ids[m.ID] = true
	}
	s.Rollups = make(map[string][]store.Rollup)
	s.Uniques = make(map[string][]store.UniqueValue)
	for id := range ids {
		q := store.RollupQuery{MeterID: id, From: openFrom, To: openTo}
		s.Rollups[id] = e.rollups(t, q)
		s.Uniques[id] = e.uniques(t, q)
	}
	return s
}

var snapshotOpts = eventOpts

// deleteMeter deletes a meter from the store and the model.
func (e *env) deleteMeter(t *testing.T, id string) {
	t.Helper()
	if err := e.s.DeleteMeter(ctxOf(t), id); err != nil {
		t.Fatalf("DeleteMeter(%s): %v", id, err)
	}
	e.m.deleted[id] = true
}

// putMeter stores m with the projection the model derives for it, as the
// service does when a meter is created or changed.
func (e *env) putMeter(t *testing.T, m meter.Meter) {
	t.Helper()
	delete(e.m.deleted, m.ID)
	seqs := e.seqs(t)
	q := store.RollupQuery{MeterID: m.ID, From: openFrom, To: openTo}
	var errs []store.EventError
	for _, me := range e.m.events {
		for _, c := range me.Contributions {
			if c.MeterID == m.ID && c.Err != "" {
				errs = append(errs, store.EventError{Seq: seqs[keyOf(me.NewEvent)], MeterID: m.ID, Message: c.Err})
			}
		}
	}
	if err := e.s.PutMeter(ctxOf(t), m, e.m.rollups(seqs, q), e.m.uniques(q), errs); err != nil {
		t.Fatalf("PutMeter(%s): %v", m.Slug, err)
	}
}

// mixedBatch is a batch of n events named prefix-0… over three subjects
// and two minutes, contributing to every kind of meter, one in five
// invalid for the SUM meter.
func mixedBatch(prefix string, n int, at time.Duration) []store.NewEvent {
	evs := make([]store.NewEvent, 0, n)
	for i := range n {
		subject := []string{"alice", "bob", "carol"}[i%3]
		offset := at + time.Duration(i%2)*time.Minute + time.Duration(i)*time.Millisecond
		s := sum(mSum, fmt.Sprintf("%d.%d", i, i%10))
		if i%5 == 4 {
			s = invalid(mSum, meter.Sum, "sum: bad value in "+prefix+"-"+strconv.Itoa(i))
		}
		evs = append(evs, ev(prefix+"-"+strconv.Itoa(i), subject, offset,
			s,
			cnt(mCount, fmt.Sprintf(`{"shard":"%d"}`, i%2)),
			uniq(mUnique, "user-"+strconv.Itoa(i%4)),
			val(mMax, meter.Latest, strconv.Itoa(i*7%11)),
		))
	}
	return evs
}

// without copies evs without their contributions to meterID.
func without(meterID string, evs []store.NewEvent) []store.NewEvent {
	out := make([]store.NewEvent, len(evs))
	for i, e := range evs {
		e.Contributions = slices.DeleteFunc(slices.Clone(e.Contributions), func(c store.Contribution) bool { return c.MeterID == meterID })
		out[i] = e
	}
	return out
}

func testDurability(t *testing.T, b Backend) {
	if b.Reopen == nil {
		t.Skip("Backend.Reopen is nil")
	}
	e := newEnv(t, b)
	e.createMeters(t, newMeter(mSum, "sum", meter.Sum), newMeter(mCount, "count", meter.Count), newMeter(mUnique, "unique", meter.UniqueCount))
	if _, err := e.s.UpsertSubjects(ctxOf(t), []store.Subject{{Key: "alice", DisplayName: ptr("Alice"), Metadata: map[string]string{"k": "v"}}}, t0); err != nil {
		t.Fatalf("UpsertSubjects: %v", err)
	}
	a := mixedBatch("a", 20, 0)
	e.append(t, t0, a...)
	e.flush(t)
	e.append(t, t0.Add(time.Second), mixedBatch("b", 15, 30*time.Second)...)
	e.putMeter(t, newMeter(mMax, "latest", meter.Latest))
	e.append(t, t0.Add(2*time.Second), mixedBatch("c", 10, 0)...)

	before := e.snapshot(t)
	e.reopen(t)
	if diff := cmp.Diff(before, e.snapshot(t), snapshotOpts); diff != "" {
		t.Errorf("after a restart (-before +after):\n%s", diff)
	}
	e.checkModel(t)

	// Appending continues where it left off; events stored before the
	// restart are still duplicates.
	r := e.append(t, t0.Add(3*time.Second), append(mixedBatch("d", 10, time.Minute), a[:5]...)...)
	if r.Duplicates != 5 {
		t.Errorf("appending 5 events stored before the restart: %d duplicates, want 5", r.Duplicates)
	}
	e.reopen(t)
	e.checkModel(t)
}

// crashStep is one step of a crash recovery scenario.
type crashStep func(t *testing.T, e *env)

func appendStep(evs ...store.NewEvent) crashStep {
	return func(t *testing.T, e *env) { e.append(t, t0, evs...) }
}

func flushStep(t *testing.T, e *env) { e.flush(t) }

// restartStep reopens the store cleanly (or only flushes, if the backend
// can't reopen).
func restartStep(t *testing.T, e *env) {
	if e.b.Reopen == nil {
		e.flush(t)
		return
	}
	e.reopen(t)
}

// crashStepFn crashes the store, runs Recover and checks that the store
// returns what it returned before the crash, and what the model derives.
func crashStepFn(t *testing.T, e *env) {
	before := e.snapshot(t)
	e.crash(t)
	e.recover(t)
	if diff := cmp.Diff(before, e.snapshot(t), snapshotOpts); diff != "" {
		t.Errorf("after a crash and Recover (-before +after):\n%s", diff)
	}
	e.checkModel(t)
}

func testCrashRecovery(t *testing.T, b Backend) {
	if b.Crash == nil {
		t.Skip("Backend.Crash is nil")
	}
	a, bb, c := mixedBatch("a", 12, 0), mixedBatch("b", 12, 30*time.Second), mixedBatch("c", 6, 0)
	tests := []struct {
		name  string
		steps []crashStep
	}{
		{"empty store", []crashStep{crashStepFn}},
		{"unflushed appends", []crashStep{appendStep(a...), appendStep(bb...), crashStepFn}},
		{"flushed, then unflushed appends to the same cells", []crashStep{appendStep(a...), flushStep, appendStep(bb...), crashStepFn}},
		{"everything flushed", []crashStep{appendStep(a...), appendStep(bb...), flushStep, crashStepFn}},
		{
			name: "duplicates within and across calls",
			steps: []crashStep{
				appendStep(a...),
				appendStep(a[0], c[0], c[1], c[0], a[11], c[2]),
				appendStep(c...),
				crashStepFn,
			},
		},
		{
			name:  "all-duplicate call last",
			steps: []crashStep{appendStep(a...), flushStep, appendStep(bb...), appendStep(a[3], bb[4]), crashStepFn},
		},
		{
			// Sequence numbers handed to duplicates must not be reused for
			// new events after a restart, or events could be taken for
			// already projected.
			name: "trailing duplicates, restart, append",
			steps: []crashStep{
				appendStep(a[0], a[1], a[0]),
				appendStep(a[1], a[0]),
				restartStep,
				appendStep(a[2:]...),
				crashStepFn,
			},
		},
		{
			name: "trailing duplicates, crash, append, crash",
			steps: []crashStep{
				appendStep(a[0], a[1], a[1], a[0]),
				flushStep,
				crashStepFn,
				appendStep(a[2:]...),
				crashStepFn,
			},
		},
		{
			name:  "crash right after recovering",
			steps: []crashStep{appendStep(a...), crashStepFn, crashStepFn, appendStep(bb...), crashStepFn},
		},
		{
			name: "restart between crashes",
			steps: []crashStep{
				appendStep(a...), crashStepFn, appendStep(bb...), restartStep, appendStep(c...), crashStepFn,
			},
		},
		{
			name: "meter changes between appends",
			steps: []crashStep{
				func(t *testing.T, e *env) {
					e.createMeters(t, newMeter(mSum, "sum", meter.Sum), newMeter(mCount, "count", meter.Count))
				},
				appendStep(a...),
				func(t *testing.T, e *env) {
					e.putMeter(t, newMeter(mMax, "latest", meter.Latest))
					e.deleteMeter(t, mCount)
				},
				// The pipeline no longer computes contributions to the
				// deleted meter.
				appendStep(without(mCount, bb)...),
				crashStepFn,
				func(t *testing.T, e *env) { e.putMeter(t, newMeter(mCount, "count", meter.Count)) },
				appendStep(c...),
				crashStepFn,
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, b)
			for _, step := range tt.steps {
				step(t, e)
				if t.Failed() {
					return
				}
			}
		})
	}
}

// testConcurrentReads appends events one at a time (and flushes, for a
// store that writes behind) while other goroutines read: every read must
// see each completed append once, never a pending one twice.
func testConcurrentReads(t *testing.T, b Backend) {
	e := newEnv(t, b)
	const n = 40
	var started, done atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	ctx := ctxOf(t)
	q := store.RollupQuery{MeterID: mCount, From: openFrom, To: openTo}
	for range 2 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				lo := done.Load()
				rs, err := e.s.QueryRollups(ctx, q)
				hi := started.Load()
				if err != nil {
					t.Errorf("QueryRollups: %v", err)
					return
				}
				var total int64
				seen := make(map[cell]bool)
				for _, r := range rs {
					k := cell{r.MeterID, r.Subject, r.GroupKey, r.Minute}
					if seen[k] {
						t.Errorf("QueryRollups returned cell %+v twice", k)
						return
					}
					seen[k] = true
					total += r.State.Count
				}
				if total < lo || total > hi {
					t.Errorf("QueryRollups counted %d events while %d appends had returned and %d had started", total, lo, hi)
					return
				}
				if _, err := e.s.ListEvents(ctx, store.EventFilter{Limit: 5}); err != nil {
					t.Errorf("ListEvents: %v", err)
					return
				}
			}
		})
	}
	if f, ok := e.s.(Flusher); ok {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				case <-time.After(2 * time.Millisecond):
				}
				if err := f.Flush(ctx); err != nil {
					t.Errorf("Flush: %v", err)
					return
				}
			}
		})
	}
	for i := range n {
		started.Add(1)
		e.append(t, t0, ev("conc-"+strconv.Itoa(i), []string{"alice", "bob", "carol"}[i%3], time.Duration(i)*time.Second, cnt(mCount, "")))
		done.Add(1)
	}
	close(stop)
	wg.Wait()
	e.checkModel(t)
}
