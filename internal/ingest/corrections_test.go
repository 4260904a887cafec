package ingest_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/shopspring/decimal"

	"github.com/tally-metering/tally/internal/ingest"
	"github.com/tally-metering/tally/internal/meter"
	"github.com/tally-metering/tally/internal/store"
	"github.com/tally-metering/tally/internal/store/sqlite"
)

// correctionMeters are one meter of every kind of aggregation that can't
// take an event out of its state, and SUM, over the events of events().
func correctionMeters(t *testing.T, p *ingest.Pipeline) map[meter.Aggregation]meter.Meter {
	t.Helper()
	out := map[meter.Aggregation]meter.Meter{}
	for _, agg := range []meter.Aggregation{meter.Sum, meter.Count, meter.Max, meter.Min, meter.Latest, meter.UniqueCount, meter.Avg} {
		m := meter.Meter{Slug: "m_" + strings.ToLower(string(agg)), EventType: "request", Aggregation: agg}
		if agg != meter.Count {
			m.ValueProperty = "$.value"
		}
		if agg == meter.Sum {
			m.GroupBy = map[string]string{"route": "$.route"}
		}
		c, err := p.CreateMeter(context.Background(), m)
		if err != nil {
			t.Fatal(err)
		}
		out[agg] = c
	}
	return out
}

func verifyClean(t *testing.T, st *sqlite.DB) {
	t.Helper()
	for _, flush := range []bool{false, true} {
		if flush {
			if err := st.Flush(context.Background()); err != nil {
				t.Fatal(err)
			}
		}
		rep, err := ingest.Verify(context.Background(), st)
		if err != nil {
			t.Fatal(err)
		}
		if len(rep.Differences) > 0 {
			t.Fatalf("verify (flushed %v): %d differences, first: %s", flush, len(rep.Differences), rep.Differences[0])
		}
	}
}

// TestVoidAndAmend voids and amends events in the same minute as others
// and checks every aggregation, verify, the conflicts and a restart.
func TestVoidAndAmend(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	p, st := newPipeline(t, dir)
	ms := correctionMeters(t, p)
	// e0..e4 in one minute with values 0..4 (value = i): sent as 5.
	evs := events(t, 0, 5, "cust-a", "5")
	for i := range evs {
		evs[i].Data = json.RawMessage(`{"value":` + string(rune('0'+i)) + `}`)
		evs[i].Raw = json.RawMessage(`{"specversion":"1.0","id":"` + evs[i].ID + `","source":"test","type":"request","subject":"cust-a","data":{"value":` + string(rune('0'+i)) + `}}`)
	}
	if err := p.Submit(ctx, evs); err != nil {
		t.Fatal(err)
	}
	want := func(agg meter.Aggregation, count int64, value string) {
		t.Helper()
		s := total(t, st, ms[agg].ID)
		if s.Count != count {
			t.Errorf("%s: count %d, want %d", agg, s.Count, count)
		}
		if agg != meter.UniqueCount && agg != meter.Count && !s.Value(agg).Equal(decimal.RequireFromString(value)) {
			t.Errorf("%s: value %s, want %s", agg, s.Value(agg), value)
		}
	}
	want(meter.Max, 5, "4")
	// Void the maximum and the latest (e4): MAX, LATEST and SUM must drop it.
	_, err := p.VoidEvent(ctx, ingest.CorrectInput{Source: "test", ID: "e4", Subject: "cust-a", Reason: "test traffic", Actor: "admin"})
	if err != nil {
		t.Fatal(err)
	}
	want(meter.Max, 4, "3")
	want(meter.Latest, 4, "3")
	want(meter.Sum, 4, "6")
	want(meter.Count, 4, "")
	verifyClean(t, st)
	// Voiding it again is a conflict naming the first void; amending it too.
	if _, err := p.VoidEvent(ctx, ingest.CorrectInput{Source: "test", ID: "e4", Subject: "cust-a", Reason: "again", Actor: "admin"}); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("second void: %v, want a conflict", err)
	}
	if _, err := p.AmendEvent(ctx, ingest.CorrectInput{Source: "test", ID: "e4", Subject: "cust-a", Data: json.RawMessage(`{"value":1}`), Reason: "x", Actor: "admin"}); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("amend of a voided event: %v, want a conflict", err)
	}
	if _, err := p.VoidEvent(ctx, ingest.CorrectInput{Source: "test", ID: "nope", Subject: "cust-a", Reason: "x", Actor: "admin"}); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("void of a missing event: %v, want not found", err)
	}
	// Amend the minimum (e0: 0 → 10) with a route: MIN becomes 1, MAX 10,
	// and the SUM moves to the route's group.
	e, err := p.AmendEvent(ctx, ingest.CorrectInput{Source: "test", ID: "e0", Subject: "cust-a", Data: json.RawMessage(`{"value":10,"route":"/x"}`), Reason: "wrong value", Actor: "admin"})
	if err != nil {
		t.Fatal(err)
	}
	if len(e.Corrections) != 1 || e.Corrections[0].Kind != store.CorrectionAmend {
		t.Fatalf("amended event's corrections: %+v", e.Corrections)
	}
	want(meter.Min, 4, "1")
	want(meter.Max, 4, "10")
	want(meter.Sum, 4, "16")
	verifyClean(t, st)
	// The raw event is kept as received.
	got, err := st.ListEvents(ctx, store.EventFilter{ID: "e0"})
	if err != nil || len(got) != 1 {
		t.Fatal(got, err)
	}
	if string(got[0].Raw) != string(evs[0].Raw) {
		t.Errorf("raw changed: %s", got[0].Raw)
	}
	// An amendment that breaks the value: the event counts nowhere that
	// needs a value, and says why.
	if _, err := p.AmendEvent(ctx, ingest.CorrectInput{Source: "test", ID: "e1", Subject: "cust-a", Data: json.RawMessage(`{"other":1}`), Reason: "x", Actor: "admin"}); err != nil {
		t.Fatal(err)
	}
	got, _ = st.ListEvents(ctx, store.EventFilter{ID: "e1"})
	if len(got[0].ValidationErrors) == 0 {
		t.Error("amended event with no value has no validation errors")
	}
	want(meter.Count, 4, "")
	want(meter.Sum, 3, "15")
	verifyClean(t, st)
	// After a restart everything holds.
	p.Close()
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	p, st = newPipeline(t, dir)
	defer p.Close()
	defer st.Close()
	want(meter.Sum, 3, "15")
	verifyClean(t, st)
	// New events in the same minute still count on top.
	more := events(t, 10, 1, "cust-a", "100")
	if err := p.Submit(ctx, more); err != nil {
		t.Fatal(err)
	}
	want(meter.Sum, 4, "115")
	verifyClean(t, st)
}

// TestCancellationRule applies a rule, checks that it also cancels events
// arriving after it, deletes it and checks the usage is back.
func TestCancellationRule(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	p, st := newPipeline(t, dir)
	defer st.Close()
	defer p.Close()
	ms := correctionMeters(t, p)
	// 200 events over 200 seconds for two subjects.
	if err := p.Submit(ctx, events(t, 0, 200, "cust-a", "2")); err != nil {
		t.Fatal(err)
	}
	if err := p.Submit(ctx, events(t, 1000, 200, "cust-b", "3")); err != nil {
		t.Fatal(err)
	}
	from, to := t0.Add(60*time.Second), t0.Add(120*time.Second)
	in := ingest.RuleInput{Meter: ms[meter.Max].Slug, Subjects: []string{"cust-a"}, EventFrom: &from, EventTo: &to, Reason: "duplicate agent", Actor: "admin"}
	r, err := p.CreateRule(ctx, in)
	if err != nil {
		t.Fatal(err)
	}
	if r.State != store.RuleActive || r.EventsMatched != 60 {
		t.Fatalf("rule: state %s, matched %d; want active, 60", r.State, r.EventsMatched)
	}
	if s := total(t, st, ms[meter.Max].ID); s.Count != 340 {
		t.Errorf("MAX meter counts %d events, want 340", s.Count)
	}
	if s := total(t, st, ms[meter.Sum].ID); s.Count != 400 {
		t.Errorf("SUM meter counts %d events, want 400 (the rule is for MAX only)", s.Count)
	}
	verifyClean(t, st)
	// An event arriving now that the rule selects counts nothing.
	late := events(t, 90, 1, "cust-a", "2")
	late[0].ID, late[0].Raw = "late", json.RawMessage(`{"specversion":"1.0","id":"late","source":"test","type":"request","subject":"cust-a","data":{"value":2}}`)
	if err := p.Submit(ctx, late); err != nil {
		t.Fatal(err)
	}
	if s := total(t, st, ms[meter.Max].ID); s.Count != 340 {
		t.Errorf("after a late event the rule selects, MAX counts %d, want 340", s.Count)
	}
	verifyClean(t, st)
	// A groupBy needs a meter with that key.
	if _, err := p.CreateRule(ctx, ingest.RuleInput{Meter: ms[meter.Max].Slug, GroupBy: map[string]string{"route": "/x"}, Reason: "x"}); err == nil {
		t.Error("rule grouping by a key the meter lacks was accepted")
	}
	// Deleting restores the usage, the late event included.
	d, err := p.DeleteRule(ctx, r.ID, "admin")
	if err != nil {
		t.Fatal(err)
	}
	if d.State != store.RuleDeleted || d.DeletedBy != "admin" {
		t.Fatalf("deleted rule: %+v", d)
	}
	if s := total(t, st, ms[meter.Max].ID); s.Count != 401 {
		t.Errorf("after deleting the rule MAX counts %d, want 401", s.Count)
	}
	verifyClean(t, st)
	if _, err := p.DeleteRule(ctx, r.ID, "admin"); !errors.Is(err, store.ErrConflict) {
		t.Errorf("second delete: %v, want a conflict", err)
	}
}
