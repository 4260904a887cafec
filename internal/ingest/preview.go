package ingest

import (
	"context"
	"errors"
	"time"

	"github.com/tally-metering/tally/internal/meter"
	"github.com/tally-metering/tally/internal/store"
)

// RulePreview is what a cancellation rule would change, computed without
// storing anything: the events it selects and the rollup cells they are
// in, rebuilt as they would be with the rule in effect.
type RulePreview struct {
	// Rule is the rule as it would be stored (State "preview").
	Rule store.CancellationRule
	// EventsMatched counts the stored events (not voided) the rule
	// selects; ByMeter per meter id.
	EventsMatched int64
	ByMeter       map[string]int64
	// Cells are the cells the rule changes; Rollups and Uniques their
	// states with the rule.
	Cells   []store.Cell
	Rollups []store.Rollup
	Uniques []store.UniqueValue
}

// PreviewRule computes what CreateRule would change for in, changing
// nothing.
func (p *Pipeline) PreviewRule(ctx context.Context, in RuleInput) (RulePreview, error) {
	r, err := p.newRule(ctx, in)
	if err != nil {
		return RulePreview{}, err
	}
	r.State = "preview"
	cur := p.meters.Load()
	ms := make([]meter.Meter, 0, len(cur.all))
	for _, m := range cur.all {
		ms = append(ms, m.Meter)
	}
	with := r
	with.State = store.RuleApplying
	set, err := NewMeterSet(0, ms, append(cur.Rules(), with)...)
	if err != nil {
		return RulePreview{}, err
	}
	last, err := p.store.LastSeq(ctx)
	if err != nil {
		return RulePreview{}, err
	}
	cells, matched, err := p.ruleCells(ctx, set, r, last)
	if err != nil {
		return RulePreview{}, err
	}
	pv := RulePreview{Rule: r, EventsMatched: matched, ByMeter: map[string]int64{}}
	type span struct{ from, to int64 }
	bySubject := map[string]span{}
	inCell := map[store.Cell]bool{}
	var order []string
	for _, c := range cells {
		pv.Cells = append(pv.Cells, c.Cell)
		pv.ByMeter[c.MeterID] += int64(c.events)
		inCell[c.Cell] = true
		sp, ok := bySubject[c.Subject]
		if !ok {
			order = append(order, c.Subject)
			sp = span{c.Minute, c.Minute}
		}
		bySubject[c.Subject] = span{min(sp.from, c.Minute), max(sp.to, c.Minute)}
	}
	type gkey struct {
		store.Cell
		group string
	}
	states := map[gkey]*meter.State{}
	uniques := map[gkey]map[string]bool{}
	aggs := map[string]meter.Aggregation{}
	var gorder []gkey
	for _, subject := range order {
		sp := bySubject[subject]
		scan := store.EventScan{Subjects: []string{subject}, From: unixMinute(sp.from), To: unixMinute(sp.to + 60)}
		err := p.store.ScanMatching(ctx, scan, func(e store.StoredEvent) error {
			cs, err := set.StoredContributions(e)
			if err != nil {
				return err
			}
			for _, c := range cs {
				cell := store.Cell{MeterID: c.MeterID, Subject: e.Subject, Minute: store.MinuteOf(e.Time)}
				if c.Err != "" || !inCell[cell] {
					continue
				}
				k := gkey{cell, c.GroupKey}
				st := states[k]
				if st == nil {
					st = &meter.State{}
					states[k] = st
					gorder = append(gorder, k)
				}
				aggs[c.MeterID] = c.Aggregation
				st.Observe(c.Aggregation, c.Value, e.Time.UnixMicro(), e.Seq)
				if c.Aggregation == meter.UniqueCount {
					if uniques[k] == nil {
						uniques[k] = map[string]bool{}
					}
					uniques[k][c.Unique] = true
				}
			}
			return nil
		})
		if err != nil {
			return RulePreview{}, err
		}
	}
	for _, k := range gorder {
		pv.Rollups = append(pv.Rollups, store.Rollup{MeterID: k.MeterID, Subject: k.Subject, GroupKey: k.group, Minute: k.Minute, State: *states[k]})
		for v := range uniques[k] {
			pv.Uniques = append(pv.Uniques, store.UniqueValue{MeterID: k.MeterID, Subject: k.Subject, GroupKey: k.group, Minute: k.Minute, Value: v})
		}
	}
	return pv, nil
}

// WhatIf is st as it would read with the preview's rule in effect: the
// rollups and distinct values of the cells the rule changes are replaced
// by their states with it. Nothing is written.
func (pv RulePreview) WhatIf(st store.Store) store.Store {
	w := &whatIf{Store: st, cells: map[store.Cell]bool{}, rollups: map[string][]store.Rollup{}, uniques: map[string][]store.UniqueValue{}}
	for _, c := range pv.Cells {
		w.cells[c] = true
	}
	for _, r := range pv.Rollups {
		w.rollups[r.MeterID] = append(w.rollups[r.MeterID], r)
	}
	for _, u := range pv.Uniques {
		w.uniques[u.MeterID] = append(w.uniques[u.MeterID], u)
	}
	return w
}

type whatIf struct {
	store.Store
	cells   map[store.Cell]bool
	rollups map[string][]store.Rollup
	uniques map[string][]store.UniqueValue
}

func selected(q store.RollupQuery, subject string, minute int64) bool {
	if minute < q.From || minute >= q.To {
		return false
	}
	if len(q.Subjects) == 0 {
		return true
	}
	for _, s := range q.Subjects {
		if s == subject {
			return true
		}
	}
	return false
}

func (w *whatIf) QueryRollups(ctx context.Context, q store.RollupQuery) ([]store.Rollup, error) {
	rs, err := w.Store.QueryRollups(ctx, q)
	if err != nil {
		return nil, err
	}
	return overlay(w, q, rs, w.rollups[q.MeterID], func(r store.Rollup) (string, int64) { return r.Subject, r.Minute }), nil
}

func (w *whatIf) QueryUniqueValues(ctx context.Context, q store.RollupQuery) ([]store.UniqueValue, error) {
	us, err := w.Store.QueryUniqueValues(ctx, q)
	if err != nil {
		return nil, err
	}
	return overlay(w, q, us, w.uniques[q.MeterID], func(u store.UniqueValue) (string, int64) { return u.Subject, u.Minute }), nil
}

// overlay is what q reads with the rule: the stored rows of cells the
// rule leaves alone, and the rebuilt rows of the cells it changes.
func overlay[T any](w *whatIf, q store.RollupQuery, stored, rebuilt []T, cell func(T) (string, int64)) []T {
	out := stored[:0:0]
	for _, r := range stored {
		if sub, minute := cell(r); !w.cells[store.Cell{MeterID: q.MeterID, Subject: sub, Minute: minute}] {
			out = append(out, r)
		}
	}
	for _, r := range rebuilt {
		if sub, minute := cell(r); selected(q, sub, minute) {
			out = append(out, r)
		}
	}
	return out
}

// errNoWrite is returned by every write of a what-if store.
var errNoWrite = errors.New("a preview writes nothing")

func (w *whatIf) AppendEvents(context.Context, []store.NewEvent, time.Time) (store.AppendResult, error) {
	return store.AppendResult{}, errNoWrite
}

func unixMinute(m int64) time.Time { return time.Unix(m, 0).UTC() }
