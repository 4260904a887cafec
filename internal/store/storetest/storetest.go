// Package storetest is the conformance suite of store.Store: every backend
// runs it from its own tests, so that all backends keep the contracts
// documented in package store the same way.
//
// A backend describes how to get stores with a Backend and calls Run:
//
//	func TestConformance(t *testing.T) {
//		storetest.Run(t, storetest.Backend{
//			Open:   func(t *testing.T) store.Store { … a new, empty store … },
//			Reopen: func(t *testing.T, old store.Store) store.Store { … },
//			Crash:  func(t *testing.T, live store.Store) store.Store { … },
//		})
//	}
//
// Only Open is required. Reopen enables the durability tests (everything
// survives Close and a restart) and Crash the recovery tests (a process
// that dies without Close loses nothing and counts nothing twice once
// Recover has run). A store that writes behind, such as the SQLite store
// with its rollup overlay, should also implement Flusher, so that every
// check is made both before and after pending work is written out.
//
// Every test opens its own store, appends through a model of the Events
// contract (what is inserted, what is a duplicate, which contributions
// count) and compares the store with what the model derives: the events
// as listed, the rollups with their exact states and the distinct values.
package storetest

import (
	stdcmp "cmp"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/shopspring/decimal"

	"github.com/tally-metering/tally/internal/meter"
	"github.com/tally-metering/tally/internal/store"
)

// Backend says how the suite gets stores of the backend under test.
type Backend struct {
	// Open returns a new, empty store, private to the test t. Required.
	// The suite closes it (and checks Close's error), so Open must not.
	Open func(t *testing.T) store.Store
	// Reopen returns a new store on the data of old, which the suite has
	// just closed: a clean restart. The suite calls Recover on the result
	// and expects nothing to replay. Nil skips the durability tests.
	Reopen func(t *testing.T, old store.Store) store.Store
	// Crash returns a new store on the data that live would leave behind if
	// its process died at this moment: live is not closed, so whatever it
	// holds only in memory is lost, but every AppendEvents that returned is
	// durable. The suite neither uses nor closes live afterwards; Crash must
	// dispose of it without letting it write anything more to the data the
	// new store reads. Nil skips the crash recovery tests.
	Crash func(t *testing.T, live store.Store) store.Store
}

// Flusher is implemented by stores that write part of their state behind
// (after AppendEvents returns, from memory). Flush writes out everything
// pending. The suite checks reads both before and after a Flush.
type Flusher interface {
	Flush(ctx context.Context) error
}

// Run runs the conformance suite against b as subtests of t.
func Run(t *testing.T, b Backend) {
	if b.Open == nil {
		t.Fatal("storetest: Backend.Open is required")
	}
	t.Run("AppendEvents", func(t *testing.T) { testAppendEvents(t, b) })
	t.Run("IngestedAt", func(t *testing.T) { testIngestedAt(t, b) })
	t.Run("Aggregation", func(t *testing.T) { testAggregation(t, b) })
	t.Run("ReadYourWrites", func(t *testing.T) { testReadYourWrites(t, b) })
	t.Run("QueryRollups", func(t *testing.T) { testQueryRollups(t, b) })
	t.Run("QueryUniqueValues", func(t *testing.T) { testQueryUniqueValues(t, b) })
	t.Run("ListEvents", func(t *testing.T) { testListEvents(t, b) })
	t.Run("ScanEvents", func(t *testing.T) { testScanEvents(t, b) })
	t.Run("ManyEvents", func(t *testing.T) { testManyEvents(t, b) })
	t.Run("Meters", func(t *testing.T) { testMeters(t, b) })
	t.Run("DeleteMeter", func(t *testing.T) { testDeleteMeter(t, b) })
	t.Run("PutMeter", func(t *testing.T) { testPutMeter(t, b) })
	t.Run("Subjects", func(t *testing.T) { testSubjects(t, b) })
	t.Run("Customers", func(t *testing.T) { testCustomers(t, b) })
	t.Run("Plans", func(t *testing.T) { testPlans(t, b) })
	t.Run("Subscriptions", func(t *testing.T) { testSubscriptions(t, b) })
	t.Run("Invoices", func(t *testing.T) { testInvoices(t, b) })
	t.Run("SaveInvoices", func(t *testing.T) { testSaveInvoices(t, b) })
	t.Run("CreditNotes", func(t *testing.T) { testCreditNotes(t, b) })
	t.Run("APIKeys", func(t *testing.T) { testAPIKeys(t, b) })
	t.Run("PortalTokens", func(t *testing.T) { testPortalTokens(t, b) })
	t.Run("Audit", func(t *testing.T) { testAudit(t, b) })
	t.Run("Outbox", func(t *testing.T) { testOutbox(t, b) })
	t.Run("LateEvents", func(t *testing.T) { testLateEvents(t, b) })
	t.Run("Corrections", func(t *testing.T) { testCorrections(t, b) })
	t.Run("Rules", func(t *testing.T) { testRules(t, b) })
	t.Run("Size", func(t *testing.T) { testSize(t, b) })
	t.Run("Durability", func(t *testing.T) { testDurability(t, b) })
	t.Run("CrashRecovery", func(t *testing.T) { testCrashRecovery(t, b) })
	t.Run("ConcurrentReads", func(t *testing.T) { testConcurrentReads(t, b) })
}

// t0 is the start of a minute; test events happen around it.
var t0 = time.Date(2026, 3, 14, 15, 9, 0, 0, time.UTC)

// m0 is t0's minute in Unix seconds.
var m0 = t0.Unix()

// all is the whole minute range.
const (
	openFrom = math.MinInt64
	openTo   = math.MaxInt64
)

// Meter ids the tests contribute to.
const (
	mSum    = "m-sum"
	mCount  = "m-count"
	mUnique = "m-unique"
	mMax    = "m-max"
)

const testSource = "storetest"

// ---------------------------------------------------------------------------
// Building events and contributions.

// ev is an event of type "api.request" from testSource at t0+offset.
func ev(id, subject string, offset time.Duration, cs ...store.Contribution) store.NewEvent {
	return evFull(testSource, id, "api.request", subject, t0.Add(offset), cs...)
}

func evFull(source, id, typ, subject string, at time.Time, cs ...store.Contribution) store.NewEvent {
	raw, err := json.Marshal(map[string]any{
		"specversion": "1.0", "id": id, "source": source, "type": typ,
		"subject": subject, "time": at.Format(time.RFC3339Nano),
		"data": map[string]any{"note": "raw of " + id},
	})
	if err != nil {
		panic(err)
	}
	return store.NewEvent{ID: id, Source: source, Type: typ, Subject: subject, Time: at, Raw: raw, Contributions: cs}
}

func dec(s string) decimal.Decimal { return decimal.RequireFromString(s) }

// val is a contribution of value v to a meter with a value aggregation.
func val(meterID string, agg meter.Aggregation, v string) store.Contribution {
	return store.Contribution{MeterID: meterID, Aggregation: agg, Contribution: meter.Contribution{Value: dec(v)}}
}

func sum(meterID, v string) store.Contribution { return val(meterID, meter.Sum, v) }

// cnt is a COUNT contribution in group g.
func cnt(meterID, g string) store.Contribution {
	return store.Contribution{MeterID: meterID, Aggregation: meter.Count, Contribution: meter.Contribution{GroupKey: g}}
}

// uniq is a UNIQUE_COUNT contribution of distinct value v.
func uniq(meterID, v string) store.Contribution {
	return store.Contribution{MeterID: meterID, Aggregation: meter.UniqueCount, Contribution: meter.Contribution{Unique: v}}
}

// invalid is a contribution the meter could not compute.
func invalid(meterID string, agg meter.Aggregation, msg string) store.Contribution {
	return store.Contribution{MeterID: meterID, Aggregation: agg, Err: msg}
}

// ---------------------------------------------------------------------------
// The model of the Events contract.

// evKey identifies an event: its source and id, per subject.
type evKey struct{ source, id, subject string }

func keyOf(e store.NewEvent) evKey { return evKey{e.Source, e.ID, e.Subject} }

type modelEvent struct {
	store.NewEvent
	ingestedAt time.Time
}

// model is what the store should hold: every inserted event, in ingestion
// order, with the contributions it was appended with.
type model struct {
	byKey    map[evKey]int // index in events
	events   []modelEvent
	replayed map[evKey]int // how often Recover asked for each event
	// deleted meters have no rollups, and no longer contribute when
	// Recover recomputes contributions (as the ingest pipeline does).
	deleted map[string]bool
}

func newModel() *model {
	return &model{byKey: make(map[evKey]int), replayed: make(map[evKey]int), deleted: make(map[string]bool)}
}

// apply records an AppendEvents call and returns its expected result.
func (m *model) apply(evs []store.NewEvent, at time.Time) store.AppendResult {
	var r store.AppendResult
	for _, e := range evs {
		k := keyOf(e)
		if _, ok := m.byKey[k]; ok {
			r.Duplicates++
			continue
		}
		m.byKey[k] = len(m.events)
		m.events = append(m.events, modelEvent{NewEvent: e, ingestedAt: at})
		r.Inserted++
		for _, c := range e.Contributions {
			if c.Err != "" {
				if r.InvalidByMeter == nil {
					r.InvalidByMeter = make(map[string]int)
				}
				r.InvalidByMeter[c.MeterID]++
			}
		}
	}
	return r
}

// contributions is the contribs function for Recover: the contributions
// an event was appended with.
func (m *model) contributions(e store.StoredEvent) ([]store.Contribution, error) {
	k := evKey{e.Source, e.ID, e.Subject}
	i, ok := m.byKey[k]
	if !ok {
		return nil, fmt.Errorf("storetest: Recover replayed event %s/%s (seq %d), which was never inserted", e.Source, e.ID, e.Seq)
	}
	m.replayed[k]++
	var out []store.Contribution
	for _, c := range m.events[i].Contributions {
		if !m.deleted[c.MeterID] {
			out = append(out, c)
		}
	}
	return out, nil
}

type cell struct {
	meterID, subject, group string
	minute                  int64
}

// rollups derives the rollups of meterID that q selects; seqs are the
// stored events' sequence numbers.
func (m *model) rollups(seqs map[evKey]int64, q store.RollupQuery) []store.Rollup {
	states := make(map[cell]*meter.State)
	var order []cell
	for _, e := range m.events {
		minute := store.MinuteOf(e.Time)
		if !selects(q, e.Subject, minute) {
			continue
		}
		for _, c := range e.Contributions {
			if c.Err != "" || c.MeterID != q.MeterID || m.deleted[c.MeterID] {
				continue
			}
			k := cell{c.MeterID, e.Subject, c.GroupKey, minute}
			s := states[k]
			if s == nil {
				s = &meter.State{}
				states[k] = s
				order = append(order, k)
			}
			s.Observe(c.Aggregation, c.Value, e.Time.UnixMicro(), seqs[keyOf(e.NewEvent)])
		}
	}
	out := make([]store.Rollup, 0, len(order))
	for _, k := range order {
		out = append(out, store.Rollup{MeterID: k.meterID, Subject: k.subject, GroupKey: k.group, Minute: k.minute, State: *states[k]})
	}
	sortRollups(out)
	return out
}

// uniques derives the distinct values of meterID that q selects.
func (m *model) uniques(q store.RollupQuery) []store.UniqueValue {
	seen := make(map[store.UniqueValue]bool)
	var out []store.UniqueValue
	for _, e := range m.events {
		minute := store.MinuteOf(e.Time)
		if !selects(q, e.Subject, minute) {
			continue
		}
		for _, c := range e.Contributions {
			if c.Err != "" || c.MeterID != q.MeterID || c.Aggregation != meter.UniqueCount || m.deleted[c.MeterID] {
				continue
			}
			u := store.UniqueValue{MeterID: c.MeterID, Subject: e.Subject, GroupKey: c.GroupKey, Minute: minute, Value: c.Unique}
			if !seen[u] {
				seen[u] = true
				out = append(out, u)
			}
		}
	}
	sortUniques(out)
	return out
}

// stored is the events as ListEvents returns them with no filter, newest
// first; seqs are the store's sequence numbers.
func (m *model) stored(seqs map[evKey]int64) []store.StoredEvent {
	out := make([]store.StoredEvent, 0, len(m.events))
	for i := len(m.events) - 1; i >= 0; i-- {
		e := m.events[i]
		var errs []string
		for _, c := range e.Contributions {
			if c.Err != "" {
				errs = append(errs, c.Err)
			}
		}
		sort.Strings(errs)
		out = append(out, store.StoredEvent{
			Seq: seqs[keyOf(e.NewEvent)], ID: e.ID, Source: e.Source, Type: e.Type, Subject: e.Subject,
			Time: e.Time, IngestedAt: e.ingestedAt, Raw: e.Raw, ValidationErrors: errs,
		})
	}
	return out
}

// meterIDs lists every meter the model's events contribute to.
func (m *model) meterIDs() []string {
	ids := make(map[string]bool)
	for _, e := range m.events {
		for _, c := range e.Contributions {
			ids[c.MeterID] = true
		}
	}
	return slices.Sorted(maps.Keys(ids))
}

func selects(q store.RollupQuery, subject string, minute int64) bool {
	if minute < q.From || minute >= q.To {
		return false
	}
	return len(q.Subjects) == 0 || slices.Contains(q.Subjects, subject)
}

// ---------------------------------------------------------------------------
// The test environment: one store, its model, and ways to restart it.

type env struct {
	b Backend
	s store.Store
	m *model
}

func newEnv(t *testing.T, b Backend) *env {
	t.Helper()
	s := b.Open(t)
	if s == nil {
		t.Fatal("Backend.Open returned nil")
	}
	e := &env{b: b, s: s, m: newModel()}
	t.Cleanup(func() {
		if e.s != nil {
			if err := e.s.Close(); err != nil {
				t.Errorf("Close: %v", err)
			}
		}
	})
	return e
}

func ctxOf(t *testing.T) context.Context { return t.Context() }

// append appends evs, checks the result against the model and returns it.
func (e *env) append(t *testing.T, at time.Time, evs ...store.NewEvent) store.AppendResult {
	t.Helper()
	want := e.m.apply(evs, at)
	got, err := e.s.AppendEvents(ctxOf(t), evs, at)
	if err != nil {
		t.Fatalf("AppendEvents: %v", err)
	}
	if diff := cmp.Diff(want, got, cmpopts.EquateEmpty()); diff != "" {
		t.Errorf("AppendEvents result (-want +got):\n%s", diff)
	}
	return got
}

// flush writes pending work out if the store writes behind; it reports
// whether it did anything.
func (e *env) flush(t *testing.T) bool {
	t.Helper()
	f, ok := e.s.(Flusher)
	if !ok {
		return false
	}
	if err := f.Flush(ctxOf(t)); err != nil {
		t.Fatalf("Flush: %v", err)
	}
	return true
}

// reopen closes the store and opens it again, as a clean restart does, and
// runs Recover, which must replay nothing.
func (e *env) reopen(t *testing.T) {
	t.Helper()
	if e.b.Reopen == nil {
		t.Fatal("reopen without Backend.Reopen")
	}
	old := e.s
	e.s = nil
	if err := old.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	e.s = e.b.Reopen(t, old)
	if e.s == nil {
		t.Fatal("Backend.Reopen returned nil")
	}
	if n := e.recover(t); n != 0 {
		t.Errorf("Recover after a clean Close replayed %d events, want 0", n)
	}
}

// crash drops the store as a dying process does and opens its data again,
// without Recover.
func (e *env) crash(t *testing.T) {
	t.Helper()
	if e.b.Crash == nil {
		t.Fatal("crash without Backend.Crash")
	}
	old := e.s
	e.s = nil
	e.s = e.b.Crash(t, old)
	if e.s == nil {
		t.Fatal("Backend.Crash returned nil")
	}
}

// recover runs Recover with the model's contributions and checks that no
// event was replayed twice or was never inserted.
func (e *env) recover(t *testing.T) int {
	t.Helper()
	clear(e.m.replayed)
	n, err := e.s.Recover(ctxOf(t), e.m.contributions)
	if err != nil {
		t.Fatalf("Recover: %v", err)
	}
	total := 0
	for k, times := range e.m.replayed {
		total += times
		if times > 1 {
			t.Errorf("Recover replayed event %s/%s %d times", k.source, k.id, times)
		}
	}
	if n != total {
		t.Errorf("Recover returned %d, but asked for the contributions of %d events", n, total)
	}
	return n
}

// stages runs check now, after a Flush (if the store writes behind) and
// after a restart (if the backend can reopen).
func (e *env) stages(t *testing.T, check func(t *testing.T)) {
	t.Helper()
	t.Run("live", check)
	if _, ok := e.s.(Flusher); ok {
		e.flush(t)
		t.Run("flushed", check)
	}
	if e.b.Reopen != nil {
		e.reopen(t)
		t.Run("reopened", check)
	}
}

// seqs maps each stored event to its sequence number.
func (e *env) seqs(t *testing.T) map[evKey]int64 {
	t.Helper()
	out := make(map[evKey]int64)
	err := e.s.ScanEvents(ctxOf(t), "", func(se store.StoredEvent) error {
		out[evKey{se.Source, se.ID, se.Subject}] = se.Seq
		return nil
	})
	if err != nil {
		t.Fatalf("ScanEvents: %v", err)
	}
	return out
}

// checkModel compares everything the store derives from events (the
// events as listed, each meter's rollups and distinct values) with the
// model.
func (e *env) checkModel(t *testing.T) {
	t.Helper()
	seqs := e.seqs(t)
	events := e.listEvents(t, store.EventFilter{})
	if diff := cmp.Diff(e.m.stored(seqs), events, eventOpts); diff != "" {
		t.Errorf("ListEvents (-want +got):\n%s", diff)
	}
	e.checkMeters(t, seqs, e.m.meterIDs()...)
}

// checkMeters compares the rollups and distinct values of the given
// meters with the model.
func (e *env) checkMeters(t *testing.T, seqs map[evKey]int64, meterIDs ...string) {
	t.Helper()
	if seqs == nil {
		seqs = e.seqs(t)
	}
	for _, id := range meterIDs {
		q := store.RollupQuery{MeterID: id, From: openFrom, To: openTo}
		if diff := cmp.Diff(e.m.rollups(seqs, q), e.rollups(t, q), rollupOpts); diff != "" {
			t.Errorf("QueryRollups(meter %s) (-want +got):\n%s", id, diff)
		}
		if diff := cmp.Diff(e.m.uniques(q), e.uniques(t, q), rollupOpts); diff != "" {
			t.Errorf("QueryUniqueValues(meter %s) (-want +got):\n%s", id, diff)
		}
	}
}

// rollups queries rollups, checks that each cell appears once and sorts
// them.
func (e *env) rollups(t *testing.T, q store.RollupQuery) []store.Rollup {
	t.Helper()
	rs, err := e.s.QueryRollups(ctxOf(t), q)
	if err != nil {
		t.Fatalf("QueryRollups(%+v): %v", q, err)
	}
	seen := make(map[cell]bool, len(rs))
	for _, r := range rs {
		k := cell{r.MeterID, r.Subject, r.GroupKey, r.Minute}
		if seen[k] {
			t.Errorf("QueryRollups(%+v) returned more than one rollup for meter %q subject %q group %q minute %d; a rollup is the whole state of its cell",
				q, r.MeterID, r.Subject, r.GroupKey, r.Minute)
		}
		seen[k] = true
	}
	sortRollups(rs)
	return rs
}

// uniques queries distinct values and sorts them.
func (e *env) uniques(t *testing.T, q store.RollupQuery) []store.UniqueValue {
	t.Helper()
	us, err := e.s.QueryUniqueValues(ctxOf(t), q)
	if err != nil {
		t.Fatalf("QueryUniqueValues(%+v): %v", q, err)
	}
	seen := make(map[store.UniqueValue]bool, len(us))
	for _, u := range us {
		if seen[u] {
			t.Errorf("QueryUniqueValues(%+v) returned %+v twice", q, u)
		}
		seen[u] = true
	}
	sortUniques(us)
	return us
}

// listEvents lists events, with each event's validation errors sorted.
func (e *env) listEvents(t *testing.T, f store.EventFilter) []store.StoredEvent {
	t.Helper()
	evs, err := e.s.ListEvents(ctxOf(t), f)
	if err != nil {
		t.Fatalf("ListEvents(%+v): %v", f, err)
	}
	for i := range evs {
		sort.Strings(evs[i].ValidationErrors)
	}
	return evs
}

// total merges all of a meter's rollups.
func (e *env) total(t *testing.T, meterID string) meter.State {
	t.Helper()
	var s meter.State
	for _, r := range e.rollups(t, store.RollupQuery{MeterID: meterID, From: openFrom, To: openTo}) {
		s.Merge(r.State)
	}
	return s
}

// ---------------------------------------------------------------------------
// Comparing.

func sortRollups(rs []store.Rollup) {
	slices.SortFunc(rs, func(a, b store.Rollup) int {
		return stdcmp.Or(strings.Compare(a.MeterID, b.MeterID), strings.Compare(a.Subject, b.Subject),
			strings.Compare(a.GroupKey, b.GroupKey), stdcmp.Compare(a.Minute, b.Minute))
	})
}

func sortUniques(us []store.UniqueValue) {
	slices.SortFunc(us, func(a, b store.UniqueValue) int {
		return stdcmp.Or(strings.Compare(a.MeterID, b.MeterID), strings.Compare(a.Subject, b.Subject),
			strings.Compare(a.GroupKey, b.GroupKey), stdcmp.Compare(a.Minute, b.Minute), strings.Compare(a.Value, b.Value))
	})
}

// rollupOpts compare rollups and distinct values. Decimals and times are
// compared with their Equal methods (cmp's default for types that have
// one): 1.50 equals 1.5.
var rollupOpts = cmp.Options{cmpopts.EquateEmpty()}

// eventOpts compare stored events; raw JSON is compared by meaning, since
// a backend may normalise it.
var eventOpts = cmp.Options{cmpopts.EquateEmpty(), cmp.Comparer(sameJSON)}

func sameJSON(a, b json.RawMessage) bool {
	var x, y any
	if json.Unmarshal(a, &x) != nil || json.Unmarshal(b, &y) != nil {
		return string(a) == string(b)
	}
	return cmp.Equal(x, y)
}

// describe shows a state briefly, for error messages.
func describe(s meter.State) string {
	return fmt.Sprintf("count=%d sum=%s min=%s max=%s latest=%s@%d#%d", s.Count, s.Sum, s.Min, s.Max, s.Latest, s.LatestTime, s.LatestSeq)
}

func ids(evs []store.StoredEvent) []string {
	out := make([]string, len(evs))
	for i, e := range evs {
		out[i] = e.ID
	}
	return out
}

func joinIDs(evs []store.NewEvent) string {
	out := make([]string, len(evs))
	for i, e := range evs {
		out[i] = e.ID
	}
	return strings.Join(out, ",")
}
