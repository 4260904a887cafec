package storetest

import (
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/shopspring/decimal"

	"github.com/tally-metering/tally/internal/meter"
	"github.com/tally-metering/tally/internal/store"
)

// correctionProjector counts "api.request" events for mSum and mMax with
// the value values gives their id, or their latest amendment's "v";
// voided events and those of subjects in drop count nothing.
func correctionProjector(values map[string]string, drop map[string]bool) store.Projector {
	return store.Projector{
		Meters: func(typ string) []string {
			if typ == "api.request" {
				return []string{mSum, mMax}
			}
			return nil
		},
		Contributions: func(e store.StoredEvent) ([]store.Contribution, error) {
			if e.Voided() || drop[e.Subject] {
				return nil, nil
			}
			v := values[e.ID]
			if d, ok := e.Amendment(); ok {
				var a struct{ V string }
				if err := json.Unmarshal(d, &a); err != nil {
					return nil, err
				}
				v = a.V
			}
			return []store.Contribution{sum(mSum, v), val(mMax, meter.Max, v)}, nil
		},
	}
}

func testCorrections(t *testing.T, b Backend) {
	e := newEnv(t, b)
	ctx := ctxOf(t)
	values := map[string]string{"c1": "1", "c2": "2", "c3": "3", "c4": "7"}
	p := correctionProjector(values, nil)
	var evs []store.NewEvent
	for i, id := range []string{"c1", "c2", "c3"} {
		evs = append(evs, ev(id, "sub-a", time.Duration(i)*time.Second, sum(mSum, values[id]), val(mMax, meter.Max, values[id])))
	}
	evs = append(evs, ev("c4", "sub-b", 0, sum(mSum, "7"), val(mMax, meter.Max, "7")))
	e.append(t, t0.Add(30*time.Second), evs...)
	want := func(meterID, subject string, count int64, value string) {
		t.Helper()
		var s meter.State
		for _, r := range e.rollups(t, store.RollupQuery{MeterID: meterID, From: openFrom, To: openTo, Subjects: []string{subject}}) {
			s.Merge(r.State)
		}
		agg := meter.Sum
		if meterID == mMax {
			agg = meter.Max
		}
		if s.Count != count || !s.Value(agg).Equal(decimal.RequireFromString(value)) {
			t.Errorf("%s of %s: count %d value %s, want %d and %s", meterID, subject, s.Count, s.Value(agg), count, value)
		}
	}
	at := t0.Add(2 * time.Hour)
	key := store.EventKey{Source: testSource, ID: "c3", Subject: "sub-a"}
	ok := func(store.StoredEvent) error { return nil }
	got, err := e.s.CorrectEvent(ctx, key, store.Correction{Kind: store.CorrectionVoid, Reason: "test", Actor: "tester", At: at}, ok, p)
	if err != nil {
		t.Fatalf("CorrectEvent: %v", err)
	}
	if !got.Voided() || len(got.Corrections) != 1 || got.Corrections[0].Actor != "tester" {
		t.Errorf("voided event: %+v", got.Corrections)
	}
	want(mSum, "sub-a", 2, "3")
	want(mMax, "sub-a", 2, "2")
	want(mSum, "sub-b", 1, "7")
	// The correction is listed with the late events (its subject and
	// minute), after every event stored before it, for reports and
	// invoices to look at again.
	late, err := outboxOf(t, e.s).LateEvents(ctx, 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(late); n != 1 || late[0].Subject != "sub-a" || !late[0].Time.Equal(t0) || late[0].Seq <= got.Seq {
		t.Errorf("LateEvents after a void: %+v, want one mark for sub-a at %s after seq %d", late, t0, got.Seq)
	}
	// A refusing check writes nothing; a missing event is ErrNotFound.
	refuse := errors.New("refused")
	if _, err := e.s.CorrectEvent(ctx, key, store.Correction{Kind: store.CorrectionVoid, Reason: "again", Actor: "tester", At: at}, func(store.StoredEvent) error { return refuse }, p); !errors.Is(err, refuse) {
		t.Errorf("CorrectEvent with a refusing check: %v", err)
	}
	if _, err := e.s.CorrectEvent(ctx, store.EventKey{Source: testSource, ID: "c3", Subject: "sub-b"}, store.Correction{Kind: store.CorrectionVoid, Reason: "x", Actor: "t", At: at}, ok, p); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("CorrectEvent of another subject's event: %v, want ErrNotFound", err)
	}
	// Amend c1 from 1 to 10.
	if _, err := e.s.CorrectEvent(ctx, store.EventKey{Source: testSource, ID: "c1", Subject: "sub-a"}, store.Correction{Kind: store.CorrectionAmend, Data: json.RawMessage(`{"V":"10"}`), Reason: "fix", Actor: "tester", At: at}, ok, p); err != nil {
		t.Fatalf("amend: %v", err)
	}
	check := func(t *testing.T) {
		t.Helper()
		want(mSum, "sub-a", 2, "12")
		want(mMax, "sub-a", 2, "10")
		got, err := e.s.ListEvents(ctx, store.EventFilter{Subject: "sub-a"})
		if err != nil {
			t.Fatal(err)
		}
		kinds := map[string]int{}
		for _, ev := range got {
			for _, c := range ev.Corrections {
				kinds[ev.ID+"/"+c.Kind]++
			}
		}
		if kinds["c3/void"] != 1 || kinds["c1/amend"] != 1 || len(kinds) != 2 {
			t.Errorf("corrections listed: %v", kinds)
		}
	}
	e.stages(t, check)
	if b.Reopen != nil {
		e.reopen(t)
		check(t)
	}
	// ScanMatching hands out events with their corrections.
	n := 0
	if err := e.s.ScanMatching(ctx, store.EventScan{Subjects: []string{"sub-a"}, From: t0, To: t0.Add(time.Minute)}, func(ev store.StoredEvent) error {
		n++
		if ev.ID == "c3" && !ev.Voided() {
			t.Errorf("ScanMatching: c3 without its void")
		}
		return nil
	}); err != nil || n != 3 {
		t.Errorf("ScanMatching: %d events, %v; want 3", n, err)
	}
	last, err := e.s.LastSeq(ctx)
	if err != nil || last < 4 {
		t.Errorf("LastSeq: %d, %v", last, err)
	}
	// RecomputeCells rebuilds what it is given: sub-b dropped.
	if err := e.s.RecomputeCells(ctx, []store.Cell{{MeterID: mSum, Subject: "sub-b", Minute: m0}}, correctionProjector(values, map[string]bool{"sub-b": true})); err != nil {
		t.Fatal(err)
	}
	want(mSum, "sub-b", 0, "0")
	want(mMax, "sub-b", 1, "7")
	e.flush(t)
	want(mSum, "sub-b", 0, "0")
}

func testRules(t *testing.T, b Backend) {
	e := newEnv(t, b)
	ctx := ctxOf(t)
	from := t0
	r := store.CancellationRule{ID: "r1", MeterID: mSum, Subjects: []string{"a"}, EventFrom: &from, Reason: "dup", State: store.RuleApplying, CreatedBy: "tester", CreatedAt: t0}
	if err := e.s.CreateRule(ctx, r); err != nil {
		t.Fatal(err)
	}
	if err := e.s.CreateRule(ctx, r); !errors.Is(err, store.ErrConflict) {
		t.Errorf("second CreateRule: %v, want ErrConflict", err)
	}
	r2 := r
	r2.ID, r2.CreatedAt = "r2", t0.Add(time.Second)
	if err := e.s.CreateRule(ctx, r2); err != nil {
		t.Fatal(err)
	}
	r.State, r.EventsMatched = store.RuleActive, 5
	if err := e.s.UpdateRule(ctx, r); err != nil {
		t.Fatal(err)
	}
	if err := e.s.UpdateRule(ctx, store.CancellationRule{ID: "nope"}); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("UpdateRule of a missing rule: %v", err)
	}
	got, err := e.s.GetRule(ctx, "r1")
	if err != nil || got.State != store.RuleActive || got.EventsMatched != 5 || !got.EventFrom.Equal(from) {
		t.Errorf("GetRule: %+v, %v", got, err)
	}
	if _, err := e.s.GetRule(ctx, "nope"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("GetRule of a missing rule: %v", err)
	}
	all, err := e.s.ListRules(ctx)
	if err != nil || len(all) != 2 || all[0].ID != "r1" || all[1].ID != "r2" {
		t.Errorf("ListRules: %+v, %v", all, err)
	}
}
