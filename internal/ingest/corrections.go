package ingest

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"

	"github.com/tally-metering/tally/internal/billing"
	"github.com/tally-metering/tally/internal/bounds"
	"github.com/tally-metering/tally/internal/meter"
	"github.com/tally-metering/tally/internal/store"
)

// Corrections change what events count for without changing them: a void
// or an amendment is kept beside the raw event, a cancellation rule beside
// the events it selects, and the rollups are rebuilt from the raw events
// with them (MeterSet.StoredContributions). They are serialised with meter
// changes (meterMu), so that a rebuild never mixes two meter sets.

// MaxReasonLen is the longest reason, in characters, a correction may
// give.
const MaxReasonLen = 1000

// MaxRuleSubjects is the most subjects one cancellation rule may list.
const MaxRuleSubjects = 1000

// CorrectionError wraps the problems of a correction's input.
type CorrectionError struct{ Err error }

func (e *CorrectionError) Error() string { return "invalid correction: " + e.Err.Error() }
func (e *CorrectionError) Unwrap() error { return e.Err }

// ConflictError says why a correction clashes with an earlier one (a void
// of a voided event, a delete of a deleted rule). It is a store.ErrConflict.
type ConflictError struct{ Msg string }

func (e *ConflictError) Error() string { return e.Msg }

// Is makes a ConflictError a store.ErrConflict.
func (e *ConflictError) Is(target error) bool { return target == store.ErrConflict }

// CorrectInput is a void or an amendment of one stored event.
type CorrectInput struct {
	Source, ID, Subject string
	// Data is an amendment's new data (JSON); nil for a void.
	Data   json.RawMessage
	Reason string
	// Actor names who asks (the credential's id).
	Actor string
}

// Validate checks the input of a void (amend false) or an amendment.
func (in CorrectInput) Validate(amend bool) error {
	var errs []error
	if in.Source == "" {
		errs = append(errs, errors.New("source: required"))
	}
	if in.ID == "" {
		errs = append(errs, errors.New("id: required"))
	}
	if in.Subject == "" {
		errs = append(errs, errors.New("subject: required"))
	} else if err := bounds.CheckSubject(in.Subject); err != nil {
		errs = append(errs, fmt.Errorf("subject: %w", err))
	}
	errs = append(errs, checkReason(in.Reason)...)
	if amend {
		switch {
		case len(in.Data) == 0:
			errs = append(errs, errors.New("data: required: the event's new data"))
		case !json.Valid(in.Data):
			errs = append(errs, errors.New("data: not valid JSON"))
		}
	} else if len(in.Data) > 0 {
		errs = append(errs, errors.New("data: a void takes no data; amend the event to change it"))
	}
	return errors.Join(errs...)
}

func checkReason(r string) []error {
	switch {
	case strings.TrimSpace(r) == "":
		return []error{errors.New("reason: required: say why, for the record")}
	case utf8.RuneCountInString(r) > MaxReasonLen:
		return []error{fmt.Errorf("reason: %d characters, at most %d allowed", utf8.RuneCountInString(r), MaxReasonLen)}
	}
	return nil
}

// VoidEvent voids a stored event: from now on it counts for nothing, in
// the rollups and everything read from them. The raw event stays, with the
// void (who, when, why) recorded beside it. Voiding a voided event is a
// conflict (store.ErrConflict) naming the earlier void; ErrNotFound if no
// such event is stored.
func (p *Pipeline) VoidEvent(ctx context.Context, in CorrectInput) (store.StoredEvent, error) {
	if err := in.Validate(false); err != nil {
		return store.StoredEvent{}, &CorrectionError{Err: err}
	}
	return p.correct(ctx, in, store.CorrectionVoid)
}

// AmendEvent replaces the data a stored event counts with by in.Data,
// keeping the event as received and every earlier amendment. A voided
// event can't be amended (store.ErrConflict).
func (p *Pipeline) AmendEvent(ctx context.Context, in CorrectInput) (store.StoredEvent, error) {
	if err := in.Validate(true); err != nil {
		return store.StoredEvent{}, &CorrectionError{Err: err}
	}
	return p.correct(ctx, in, store.CorrectionAmend)
}

func (p *Pipeline) correct(ctx context.Context, in CorrectInput, kind string) (store.StoredEvent, error) {
	p.meterMu.Lock()
	defer p.meterMu.Unlock()
	c := store.Correction{Kind: kind, Reason: in.Reason, Actor: in.Actor, At: p.now().UTC()}
	if kind == store.CorrectionAmend {
		c.Data = in.Data
	}
	check := func(e store.StoredEvent) error {
		if e.Voided() {
			v := e.Corrections[len(e.Corrections)-1]
			return &ConflictError{fmt.Sprintf("event source %q id %q subject %q was voided by %s at %s (%q); a voided event stays voided",
				in.Source, in.ID, in.Subject, v.Actor, v.At.Format(time.RFC3339), v.Reason)}
		}
		return nil
	}
	set := p.meters.Load()
	e, err := p.store.CorrectEvent(ctx, store.EventKey{Source: in.Source, ID: in.ID, Subject: in.Subject}, c, check, set.Projector())
	if err != nil {
		return e, err
	}
	p.log.Info("event corrected", "kind", kind, "seq", e.Seq, "subject", e.Subject, "actor", in.Actor)
	return e, nil
}

// RuleInput is a new cancellation rule. Zero fields select everything;
// at least one must be set.
type RuleInput struct {
	// Meter is the meter (id or slug) whose usage is cancelled; "" for
	// every meter.
	Meter string
	// CustomerID with Subjects and Within: the subjects a customer owned
	// and the minutes it owned them (resolved by the caller). Set either
	// CustomerID or Subjects alone, not both.
	CustomerID                                   string
	Subjects                                     []string
	Within                                       map[string][]billing.Span
	EventFrom, EventTo, IngestedFrom, IngestedTo *time.Time
	GroupBy                                      map[string]string
	Reason                                       string
	Actor                                        string
}

// Validate checks the input on its own (the meter and its group keys are
// checked against the store by CreateRule).
func (in RuleInput) Validate() error {
	var errs []error
	if len(in.Subjects) > MaxRuleSubjects && in.CustomerID == "" {
		errs = append(errs, fmt.Errorf("subjects: %d listed, at most %d allowed", len(in.Subjects), MaxRuleSubjects))
	} else if in.CustomerID == "" {
		for i, s := range in.Subjects {
			if err := bounds.CheckSubject(s); err != nil {
				errs = append(errs, fmt.Errorf("subjects[%d]: %w", i, err))
			}
		}
	}
	rng := func(name string, from, to *time.Time) {
		for _, t := range []struct {
			n string
			v *time.Time
		}{{name + "From", from}, {name + "To", to}} {
			if t.v != nil {
				if err := bounds.CheckTime(*t.v); err != nil {
					errs = append(errs, fmt.Errorf("%s: %w", t.n, err))
				}
			}
		}
		if from != nil && to != nil && !from.Before(*to) {
			errs = append(errs, fmt.Errorf("%sFrom: %s is not before %sTo %s", name, from.UTC().Format(time.RFC3339Nano), name, to.UTC().Format(time.RFC3339Nano)))
		}
	}
	rng("event", in.EventFrom, in.EventTo)
	rng("ingested", in.IngestedFrom, in.IngestedTo)
	if len(in.GroupBy) > 0 && in.Meter == "" {
		errs = append(errs, errors.New("groupBy: needs a meter: group keys are a meter's"))
	}
	if len(in.GroupBy) > 20 {
		errs = append(errs, fmt.Errorf("groupBy: %d keys, at most 20 allowed", len(in.GroupBy)))
	}
	errs = append(errs, checkReason(in.Reason)...)
	if in.Meter == "" && in.CustomerID == "" && len(in.Subjects) == 0 && in.EventFrom == nil && in.EventTo == nil &&
		in.IngestedFrom == nil && in.IngestedTo == nil && len(in.GroupBy) == 0 {
		errs = append(errs, errors.New("rule selects every event of every meter: give at least one of meter, customer, subjects, eventFrom, eventTo, ingestedFrom, ingestedTo, groupBy"))
	}
	return errors.Join(errs...)
}

// rule builds the rule in describes, with its meter resolved and checked.
func (p *Pipeline) newRule(ctx context.Context, in RuleInput) (store.CancellationRule, error) {
	if err := in.Validate(); err != nil {
		return store.CancellationRule{}, &CorrectionError{Err: err}
	}
	id, err := uuid.NewV7()
	if err != nil {
		return store.CancellationRule{}, err
	}
	utc := func(t *time.Time) *time.Time {
		if t == nil {
			return nil
		}
		u := t.UTC()
		return &u
	}
	r := store.CancellationRule{
		ID: id.String(), CustomerID: in.CustomerID, Subjects: slices.Clone(in.Subjects), Within: in.Within,
		EventFrom: utc(in.EventFrom), EventTo: utc(in.EventTo), IngestedFrom: utc(in.IngestedFrom), IngestedTo: utc(in.IngestedTo),
		GroupBy: in.GroupBy, Reason: in.Reason, State: store.RuleApplying, CreatedBy: in.Actor, CreatedAt: p.now().UTC(),
	}
	slices.Sort(r.Subjects)
	r.Subjects = slices.Compact(r.Subjects)
	if in.Meter != "" {
		m, err := p.store.GetMeter(ctx, in.Meter)
		if errors.Is(err, store.ErrNotFound) {
			return r, &CorrectionError{Err: fmt.Errorf("meter: no meter %q", in.Meter)}
		}
		if err != nil {
			return r, err
		}
		r.MeterID = m.ID
		var bad []error
		for _, k := range slices.Sorted(mapsKeys(in.GroupBy)) {
			if _, ok := m.GroupBy[k]; !ok {
				bad = append(bad, fmt.Errorf("groupBy.%s: meter %s has no group key %q (it has: %s)", k, m.Slug, k, strings.Join(slices.Sorted(mapsKeys(m.GroupBy)), ", ")))
			}
		}
		if len(bad) > 0 {
			return r, &CorrectionError{Err: errors.Join(bad...)}
		}
	}
	return r, nil
}

func mapsKeys(m map[string]string) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// CreateRule stores a cancellation rule and applies it: from the moment it
// is stored, new events it selects count nothing for the meters it names;
// the events stored before are then taken out of the rollups cell by cell
// (ruleChunkCells at a time, each between two ingest commits), so ingest
// waits only for moments. It returns the rule once applied. If applying
// fails, the rule stays in effect in state "applying" and is finished at
// the next start (ResumeRules).
func (p *Pipeline) CreateRule(ctx context.Context, in RuleInput) (store.CancellationRule, error) {
	p.meterMu.Lock()
	defer p.meterMu.Unlock()
	r, err := p.newRule(ctx, in)
	if err != nil {
		return r, err
	}
	return p.putRule(ctx, r, p.store.CreateRule)
}

// putRule writes r's new state (write), puts it in effect (or out of it)
// between two commits, and then rebuilds the cells it changes.
func (p *Pipeline) putRule(ctx context.Context, r store.CancellationRule, write func(context.Context, store.CancellationRule) error) (store.CancellationRule, error) {
	var last int64
	err := p.Exclusive(ctx, func(ctx context.Context) error {
		if err := write(ctx, r); err != nil {
			return err
		}
		if err := p.reloadLocked(ctx); err != nil {
			return err
		}
		var err error
		last, err = p.store.LastSeq(ctx)
		return err
	})
	if err != nil {
		return r, err
	}
	return p.finishRule(ctx, r, last)
}

// DeleteRule takes a rule out of effect and restores the usage it
// cancelled, as CreateRule applies it. The rule is kept, deleted, with who
// deleted it and when. Deleting a deleted rule is a conflict.
func (p *Pipeline) DeleteRule(ctx context.Context, id, actor string) (store.CancellationRule, error) {
	p.meterMu.Lock()
	defer p.meterMu.Unlock()
	r, err := p.store.GetRule(ctx, id)
	if err != nil {
		return r, err
	}
	if !r.InEffect() {
		return r, &ConflictError{fmt.Sprintf("cancellation rule %s was deleted by %s at %s", id, r.DeletedBy, r.DeletedAt.Format(time.RFC3339))}
	}
	now := p.now().UTC()
	r.State, r.DeletedBy, r.DeletedAt = store.RuleRemoving, actor, &now
	return p.putRule(ctx, r, p.store.UpdateRule)
}

// resumeRulesLocked finishes applying or removing the rules a stop interrupted.
// LoadMeters calls it.
func (p *Pipeline) resumeRulesLocked(ctx context.Context) error {
	rules, err := p.store.ListRules(ctx)
	if err != nil {
		return fmt.Errorf("resume cancellation rules: %w", err)
	}
	for _, r := range rules {
		if r.State != store.RuleApplying && r.State != store.RuleRemoving {
			continue
		}
		last, err := p.store.LastSeq(ctx)
		if err != nil {
			return err
		}
		p.log.Info("finishing a cancellation rule interrupted by a stop", "rule", r.ID, "state", r.State)
		if _, err := p.finishRule(ctx, r, last); err != nil {
			return fmt.Errorf("resume cancellation rule %s: %w", r.ID, err)
		}
	}
	return nil
}

// ruleChunkCells and ruleChunkEvents bound the cells one RecomputeCells
// call rebuilds (and the events the rule selected in them), so that each
// holds off ingest only for a moment.
const (
	ruleChunkCells  = 500
	ruleChunkEvents = 2500
)

// finishRule rebuilds the cells r selects among the events up to seq last
// (the events after were counted with r's current state already), then
// records r applied (or deleted).
func (p *Pipeline) finishRule(ctx context.Context, r store.CancellationRule, last int64) (store.CancellationRule, error) {
	// The rule is in effect (or out of it) already: finish even if the
	// caller goes away, rather than leave it half applied until a restart.
	ctx = context.WithoutCancel(ctx)
	start := time.Now()
	set := p.meters.Load()
	cells, matched, err := p.ruleCells(ctx, set, r, last)
	if err != nil {
		return r, err
	}
	found := time.Since(start)
	proj := set.Projector()
	for i := 0; i < len(cells); {
		j, events := i, 0
		for j < len(cells) && j-i < ruleChunkCells && events < ruleChunkEvents {
			events += cells[j].events
			j++
		}
		chunk := make([]store.Cell, 0, j-i)
		for _, c := range cells[i:j] {
			chunk = append(chunk, c.Cell)
		}
		if err := p.store.RecomputeCells(ctx, chunk, proj); err != nil {
			return r, err
		}
		i = j
	}
	if r.State == store.RuleApplying {
		r.State, r.EventsMatched = store.RuleActive, matched
	} else {
		r.State = store.RuleDeleted
	}
	if err := p.store.UpdateRule(ctx, r); err != nil {
		return r, err
	}
	if err := p.reloadLocked(ctx); err != nil {
		return r, err
	}
	p.log.Info("cancellation rule "+map[string]string{store.RuleActive: "applied", store.RuleDeleted: "removed"}[r.State],
		"rule", r.ID, "events", matched, "cells", len(cells), "scan", found, "took", time.Since(start))
	return r, nil
}

type ruleCell struct {
	store.Cell
	events int
}

// ruleCells finds the cells holding events (seq <= last, not voided) that
// r selects, in (minute, subject, meter) order (the store reads a
// chunk's events a minute at a time), and counts those events.
func (p *Pipeline) ruleCells(ctx context.Context, set *MeterSet, r store.CancellationRule, last int64) ([]ruleCell, int64, error) {
	cr := compileRule(r)
	if cr.subjects != nil && len(cr.subjects) == 0 {
		return nil, 0, nil // a customer without subjects
	}
	byType := map[string][]*meter.Compiled{}
	for _, m := range set.all {
		if r.MeterID == "" || m.ID == r.MeterID {
			byType[m.EventType] = append(byType[m.EventType], m)
		}
	}
	if len(byType) == 0 {
		return nil, 0, nil
	}
	scan := store.EventScan{Types: slices.Sorted(func(yield func(string) bool) {
		for t := range byType {
			if !yield(t) {
				return
			}
		}
	}), Subjects: r.Subjects, MaxSeq: last}
	if r.EventFrom != nil {
		scan.From = *r.EventFrom
	}
	if r.EventTo != nil {
		scan.To = *r.EventTo
	}
	if r.IngestedFrom != nil {
		scan.IngestedFrom = *r.IngestedFrom
	}
	if r.IngestedTo != nil {
		scan.IngestedTo = *r.IngestedTo
	}
	if last <= 0 {
		return nil, 0, nil
	}
	cells := map[store.Cell]int{}
	var matched int64
	err := p.store.ScanMatching(ctx, scan, func(e store.StoredEvent) error {
		if e.Voided() {
			return nil
		}
		data, err := effectiveData(e)
		if err != nil {
			return err
		}
		hit := false
		for _, c := range contributions(byType[e.Type], e.Type, e.Time, data) {
			if c.Err == "" && cr.selects(c.MeterID, e.Subject, e.Time, e.IngestedAt, c.GroupKey) {
				cells[store.Cell{MeterID: c.MeterID, Subject: e.Subject, Minute: store.MinuteOf(e.Time)}]++
				hit = true
			}
		}
		if hit {
			matched++
		}
		return nil
	})
	if err != nil {
		return nil, 0, fmt.Errorf("find the events of cancellation rule %s: %w", r.ID, err)
	}
	out := make([]ruleCell, 0, len(cells))
	for c, n := range cells {
		out = append(out, ruleCell{Cell: c, events: n})
	}
	slices.SortFunc(out, func(a, b ruleCell) int {
		return cmp.Or(cmp.Compare(a.Minute, b.Minute), strings.Compare(a.Subject, b.Subject), strings.Compare(a.MeterID, b.MeterID))
	})
	return out, matched, nil
}
