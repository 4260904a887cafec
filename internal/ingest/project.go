package ingest

import (
	"context"
	"fmt"
	"time"

	"github.com/tally-metering/tally/internal/event"
	"github.com/tally-metering/tally/internal/meter"
	"github.com/tally-metering/tally/internal/store"
)

// MeterSet is an immutable snapshot of the compiled meters, indexed by event
// type, with the cancellation rules in effect. A new set replaces the old
// one whenever a meter or a rule changes.
type MeterSet struct {
	Version int64
	byType  map[string][]*meter.Compiled
	all     []*meter.Compiled
	rules   []*rule
}

// NewMeterSet compiles meters, and the rules among rules that are in
// effect, into a set.
func NewMeterSet(version int64, meters []meter.Meter, rules ...store.CancellationRule) (*MeterSet, error) {
	s := &MeterSet{Version: version, byType: make(map[string][]*meter.Compiled)}
	for _, m := range meters {
		c, err := meter.Compile(m)
		if err != nil {
			return nil, fmt.Errorf("meter %s: %w", m.Slug, err)
		}
		s.all = append(s.all, c)
		s.byType[m.EventType] = append(s.byType[m.EventType], c)
	}
	for _, r := range rules {
		if r.InEffect() {
			s.rules = append(s.rules, compileRule(r))
		}
	}
	return s, nil
}

// Meters lists the compiled meters of the set.
func (s *MeterSet) Meters() []*meter.Compiled { return s.all }

// Rules lists the cancellation rules of the set.
func (s *MeterSet) Rules() []store.CancellationRule {
	out := make([]store.CancellationRule, len(s.rules))
	for i, r := range s.rules {
		out[i] = r.CancellationRule
	}
	return out
}

// MeterIDs lists the ids of the meters that count events of a type.
func (s *MeterSet) MeterIDs(eventType string) []string {
	ms := s.byType[eventType]
	out := make([]string, len(ms))
	for i, m := range ms {
		out[i] = m.ID
	}
	return out
}

// Projector is how the store rebuilds rollup cells with this set.
func (s *MeterSet) Projector() store.Projector {
	return store.Projector{Meters: s.MeterIDs, Contributions: s.StoredContributions}
}

// Contributions computes what ev adds to each meter of the set. Data is
// parsed once, and only if some meter reads the event's type. Rules are
// applied at commit, when the ingestion time is known (cancel).
func (s *MeterSet) Contributions(ev *event.Event) []store.Contribution {
	return contributions(s.byType[ev.Type], ev.Type, ev.Time, ev.Data)
}

// StoredContributions computes what a stored event counts for now: with
// its latest amended data, nothing if it is voided, and nothing for a
// meter whose usage a rule in effect cancels. A meter that can't read the
// data still says why (the event's validation errors follow its data,
// voided or cancelled or not). It serves replays after a crash, rebuilds
// and corrections alike.
func (s *MeterSet) StoredContributions(e store.StoredEvent) ([]store.Contribution, error) {
	ms := s.byType[e.Type]
	if len(ms) == 0 {
		return nil, nil
	}
	data, err := effectiveData(e)
	if err != nil {
		return nil, err
	}
	cs := contributions(ms, e.Type, e.Time, data)
	return s.keep(cs, e.Subject, e.Time, e.IngestedAt, e.Voided()), nil
}

// effectiveData is the data an event counts with: its latest amendment's,
// or what it was sent with.
func effectiveData(e store.StoredEvent) ([]byte, error) {
	if d, ok := e.Amendment(); ok {
		return d, nil
	}
	data, err := event.DataOf(e.Raw)
	if err != nil {
		return nil, fmt.Errorf("event seq %d: %w", e.Seq, err)
	}
	return data, nil
}

// keep drops from cs the valid contributions that must not count: all of
// them for a voided event, and those a rule in effect cancels. It returns
// cs itself when nothing is dropped.
func (s *MeterSet) keep(cs []store.Contribution, subject string, t, ingested time.Time, voided bool) []store.Contribution {
	if len(cs) == 0 || (!voided && len(s.rules) == 0) {
		return cs
	}
	out := make([]store.Contribution, 0, len(cs))
	for _, c := range cs {
		if c.Err == "" && (voided || s.cancelled(c.MeterID, subject, t, ingested, c.GroupKey)) {
			continue
		}
		out = append(out, c)
	}
	if len(out) == len(cs) {
		return cs
	}
	return out
}

// cancelled reports whether a rule in effect cancels the usage of an
// event for a meter.
func (s *MeterSet) cancelled(meterID, subject string, t, ingested time.Time, groupKey string) bool {
	for _, r := range s.rules {
		if r.selects(meterID, subject, t, ingested, groupKey) {
			return true
		}
	}
	return false
}

// CancelledBy lists the rules in effect that cancel a stored event's
// usage, with the meters (ids) each cancels it for.
func (s *MeterSet) CancelledBy(e store.StoredEvent) (map[string][]string, error) {
	if len(s.rules) == 0 || len(s.byType[e.Type]) == 0 {
		return nil, nil
	}
	data, err := effectiveData(e)
	if err != nil {
		return nil, err
	}
	var out map[string][]string
	for _, c := range contributions(s.byType[e.Type], e.Type, e.Time, data) {
		if c.Err != "" {
			continue
		}
		for _, r := range s.rules {
			if r.selects(c.MeterID, e.Subject, e.Time, e.IngestedAt, c.GroupKey) {
				if out == nil {
					out = map[string][]string{}
				}
				out[r.ID] = append(out[r.ID], c.MeterID)
			}
		}
	}
	return out, nil
}

// cancel applies the rules in effect to events about to be stored at
// ingestedAt.
func (s *MeterSet) cancel(events []store.NewEvent, ingestedAt time.Time) {
	if len(s.rules) == 0 {
		return
	}
	for i := range events {
		ev := &events[i]
		ev.Contributions = s.keep(ev.Contributions, ev.Subject, ev.Time, ingestedAt, false)
	}
}

func contributions(meters []*meter.Compiled, typ string, t time.Time, data []byte) []store.Contribution {
	if len(meters) == 0 {
		return nil
	}
	d := meter.NewData(data)
	out := make([]store.Contribution, 0, len(meters))
	for _, m := range meters {
		if !m.Applies(typ, t) {
			continue
		}
		c := store.Contribution{MeterID: m.ID, Aggregation: m.Aggregation}
		contrib, err := m.Extract(d)
		if err != nil {
			c.Err = err.Error()
		} else {
			c.Contribution = contrib
		}
		out = append(out, c)
	}
	return out
}

// Projection is everything derived for one meter from the raw events.
type Projection struct {
	Rollups []store.Rollup
	Uniques []store.UniqueValue
	Errors  []store.EventError
}

// Project recomputes one meter's projection from the raw events: the
// rebuild for a new or changed meter, and the reference `tally verify`
// compares the stored rollups with.
func Project(ctx context.Context, events store.Events, m *meter.Compiled, rules []store.CancellationRule) (Projection, error) {
	set, err := NewMeterSet(0, []meter.Meter{m.Meter}, rules...)
	if err != nil {
		return Projection{}, err
	}
	type key struct {
		subject, group string
		minute         int64
	}
	type ukey struct {
		key
		value string
	}
	states := make(map[key]*meter.State)
	uniques := make(map[ukey]struct{})
	var errs []store.EventError
	err = events.ScanEvents(ctx, m.EventType, func(e store.StoredEvent) error {
		cs, err := set.StoredContributions(e)
		if err != nil {
			return err
		}
		for _, c := range cs {
			if c.Err != "" {
				errs = append(errs, store.EventError{Seq: e.Seq, MeterID: m.ID, Message: c.Err})
				continue
			}
			k := key{e.Subject, c.GroupKey, store.MinuteOf(e.Time)}
			st := states[k]
			if st == nil {
				st = &meter.State{}
				states[k] = st
			}
			st.Observe(m.Aggregation, c.Value, e.Time.UnixMicro(), e.Seq)
			if m.Aggregation == meter.UniqueCount {
				uniques[ukey{k, c.Unique}] = struct{}{}
			}
		}
		return nil
	})
	if err != nil {
		return Projection{}, fmt.Errorf("project meter %s: %w", m.Slug, err)
	}
	p := Projection{Errors: errs}
	for k, st := range states {
		p.Rollups = append(p.Rollups, store.Rollup{MeterID: m.ID, Subject: k.subject, GroupKey: k.group, Minute: k.minute, State: *st})
	}
	for k := range uniques {
		p.Uniques = append(p.Uniques, store.UniqueValue{MeterID: m.ID, Subject: k.subject, GroupKey: k.group, Minute: k.minute, Value: k.value})
	}
	return p, nil
}
