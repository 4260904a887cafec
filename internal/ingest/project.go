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
// type. A new set replaces the old one whenever a meter changes.
type MeterSet struct {
	Version int64
	byType  map[string][]*meter.Compiled
	all     []*meter.Compiled
}

// NewMeterSet compiles meters into a set.
func NewMeterSet(version int64, meters []meter.Meter) (*MeterSet, error) {
	s := &MeterSet{Version: version, byType: make(map[string][]*meter.Compiled)}
	for _, m := range meters {
		c, err := meter.Compile(m)
		if err != nil {
			return nil, fmt.Errorf("meter %s: %w", m.Slug, err)
		}
		s.all = append(s.all, c)
		s.byType[m.EventType] = append(s.byType[m.EventType], c)
	}
	return s, nil
}

// Meters lists the compiled meters of the set.
func (s *MeterSet) Meters() []*meter.Compiled { return s.all }

// Contributions computes what ev adds to each meter of the set. Data is
// parsed once, and only if some meter reads the event's type.
func (s *MeterSet) Contributions(ev *event.Event) []store.Contribution {
	return contributions(s.byType[ev.Type], ev.Type, ev.Time, ev.Data)
}

// StoredContributions computes a stored event's contributions, for
// replaying events into the rollups after a crash.
func (s *MeterSet) StoredContributions(e store.StoredEvent) ([]store.Contribution, error) {
	ms := s.byType[e.Type]
	if len(ms) == 0 {
		return nil, nil
	}
	data, err := event.DataOf(e.Raw)
	if err != nil {
		return nil, fmt.Errorf("event seq %d: %w", e.Seq, err)
	}
	return contributions(ms, e.Type, e.Time, data), nil
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
func Project(ctx context.Context, events store.Events, m *meter.Compiled) (Projection, error) {
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
	metersOne := []*meter.Compiled{m}
	err := events.ScanEvents(ctx, m.EventType, func(e store.StoredEvent) error {
		data, err := event.DataOf(e.Raw)
		if err != nil {
			return fmt.Errorf("event seq %d: %w", e.Seq, err)
		}
		cs := contributions(metersOne, e.Type, e.Time, data)
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
