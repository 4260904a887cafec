package ingest

import (
	"context"
	"errors"
	"fmt"

	"github.com/google/uuid"

	"github.com/tally-metering/tally/internal/meter"
	"github.com/tally-metering/tally/internal/store"
)

// ErrManagedByConfig is returned (wrapped) when the API tries to change or
// delete a meter declared in the config file.
var ErrManagedByConfig = errors.New("meter is declared in the config file; change it there")

// InvalidError wraps a meter definition's validation errors.
type InvalidError struct{ Err error }

func (e *InvalidError) Error() string { return "invalid meter: " + e.Err.Error() }
func (e *InvalidError) Unwrap() error { return e.Err }

// LoadMeters reads the meter definitions from the store, makes them the
// active set, and replays into the rollups any events committed but not yet
// projected when tally last stopped. Call it once before serving.
func (p *Pipeline) LoadMeters(ctx context.Context) error {
	p.meterMu.Lock()
	defer p.meterMu.Unlock()
	if err := p.reloadLocked(ctx); err != nil {
		return err
	}
	set := p.meters.Load()
	n, err := p.store.Recover(ctx, set.StoredContributions)
	if err != nil {
		return fmt.Errorf("load meters: %w", err)
	}
	if n > 0 {
		p.log.Info("replayed events into rollups after an unclean stop", "events", n)
	}
	return p.resumeRulesLocked(ctx)
}

func (p *Pipeline) reloadLocked(ctx context.Context) error {
	ms, err := p.store.ListMeters(ctx)
	if err != nil {
		return fmt.Errorf("load meters: %w", err)
	}
	rules, err := p.store.ListRules(ctx)
	if err != nil {
		return fmt.Errorf("load cancellation rules: %w", err)
	}
	set, err := NewMeterSet(p.setVersion.Add(1), ms, rules...)
	if err != nil {
		return fmt.Errorf("load meters: %w", err)
	}
	p.meters.Store(set)
	return nil
}

// ActiveMeters is the current compiled meter set.
func (p *Pipeline) ActiveMeters() *MeterSet { return p.meters.Load() }

// put saves m with a projection rebuilt from the raw events, between two
// ingest commits so that no event is missed or counted twice, and activates
// the new meter set.
func (p *Pipeline) put(ctx context.Context, m meter.Meter, rebuild bool) error {
	c, err := meter.Compile(m)
	if err != nil {
		return &InvalidError{Err: err}
	}
	return p.Exclusive(ctx, func(ctx context.Context) error {
		if !rebuild {
			if err := p.store.UpdateMeter(ctx, m); err != nil {
				return err
			}
			return p.reloadLocked(ctx)
		}
		proj, err := Project(ctx, p.store, c, p.meters.Load().Rules())
		if err != nil {
			return err
		}
		if err := p.store.PutMeter(ctx, m, proj.Rollups, proj.Uniques, proj.Errors); err != nil {
			return err
		}
		p.log.Info("meter projection rebuilt", "meter", m.Slug, "rollups", len(proj.Rollups), "invalid_events", len(proj.Errors))
		return p.reloadLocked(ctx)
	})
}

// CreateMeter validates and stores a new meter and counts every event
// already stored for it. The meter must be within the bounds of
// meter.ValidateDefinition (config-file meters are not held to them).
func (p *Pipeline) CreateMeter(ctx context.Context, m meter.Meter) (meter.Meter, error) {
	if err := m.ValidateDefinition(); err != nil {
		return meter.Meter{}, &InvalidError{Err: err}
	}
	p.meterMu.Lock()
	defer p.meterMu.Unlock()
	return p.createLocked(ctx, m)
}

func (p *Pipeline) createLocked(ctx context.Context, m meter.Meter) (meter.Meter, error) {
	if err := m.Validate(); err != nil {
		return meter.Meter{}, &InvalidError{Err: err}
	}
	if _, err := p.store.GetMeter(ctx, m.Slug); err == nil {
		return meter.Meter{}, fmt.Errorf("meter %q: %w", m.Slug, store.ErrConflict)
	} else if !errors.Is(err, store.ErrNotFound) {
		return meter.Meter{}, err
	}
	id, err := uuid.NewV7()
	if err != nil {
		return meter.Meter{}, fmt.Errorf("create meter: %w", err)
	}
	now := p.now().UTC()
	m.ID = id.String()
	if m.ManagedBy == "" {
		m.ManagedBy = meter.ManagedByAPI
	}
	m.CreatedAt, m.UpdatedAt = now, now
	if err := p.put(ctx, m, true); err != nil {
		return meter.Meter{}, err
	}
	return m, nil
}

// UpdateMeter replaces the user-settable fields of the meter idOrSlug with
// those of m. A change to how events are counted (event type, aggregation,
// value property, groupBy, eventFrom) rebuilds the meter from the raw events.
// The new definition must be within the bounds of meter.ValidateDefinition.
func (p *Pipeline) UpdateMeter(ctx context.Context, idOrSlug string, m meter.Meter) (meter.Meter, error) {
	if err := m.ValidateDefinition(); err != nil {
		return meter.Meter{}, &InvalidError{Err: err}
	}
	p.meterMu.Lock()
	defer p.meterMu.Unlock()
	return p.updateLocked(ctx, idOrSlug, m, false)
}

func (p *Pipeline) updateLocked(ctx context.Context, idOrSlug string, m meter.Meter, fromConfig bool) (meter.Meter, error) {
	old, err := p.store.GetMeter(ctx, idOrSlug)
	if err != nil {
		return meter.Meter{}, err
	}
	if old.ManagedBy == meter.ManagedByConfig && !fromConfig {
		return meter.Meter{}, fmt.Errorf("meter %q: %w", old.Slug, ErrManagedByConfig)
	}
	if err := m.Validate(); err != nil {
		return meter.Meter{}, &InvalidError{Err: err}
	}
	m.ID, m.CreatedAt = old.ID, old.CreatedAt
	m.UpdatedAt = p.now().UTC()
	if fromConfig {
		m.ManagedBy = meter.ManagedByConfig
	} else {
		m.ManagedBy = old.ManagedBy
	}
	if err := p.put(ctx, m, !meter.SameComputation(old, m)); err != nil {
		return meter.Meter{}, err
	}
	return m, nil
}

// DeleteMeter removes a meter and its projection. The raw events stay.
func (p *Pipeline) DeleteMeter(ctx context.Context, idOrSlug string) error {
	p.meterMu.Lock()
	defer p.meterMu.Unlock()
	old, err := p.store.GetMeter(ctx, idOrSlug)
	if err != nil {
		return err
	}
	if old.ManagedBy == meter.ManagedByConfig {
		return fmt.Errorf("meter %q: %w", old.Slug, ErrManagedByConfig)
	}
	return p.Exclusive(ctx, func(ctx context.Context) error {
		if err := p.store.DeleteMeter(ctx, old.ID); err != nil {
			return err
		}
		return p.reloadLocked(ctx)
	})
}

// SyncConfigMeters makes the meters declared in the config file exist as
// declared: new ones are created, changed ones updated (and rebuilt when
// their counting changed), and meters no longer in the file become ordinary
// API-managed meters.
func (p *Pipeline) SyncConfigMeters(ctx context.Context, declared []meter.Meter) error {
	seen := make(map[string]bool)
	for i, m := range declared {
		if err := m.Validate(); err != nil {
			return fmt.Errorf("config meters[%d] (%s): %w", i, m.Slug, err)
		}
		if seen[m.Slug] {
			return fmt.Errorf("config meters[%d]: slug %q declared twice", i, m.Slug)
		}
		seen[m.Slug] = true
	}
	p.meterMu.Lock()
	defer p.meterMu.Unlock()
	for _, m := range declared {
		old, err := p.store.GetMeter(ctx, m.Slug)
		switch {
		case errors.Is(err, store.ErrNotFound):
			m.ManagedBy = meter.ManagedByConfig
			if _, err := p.createLocked(ctx, m); err != nil {
				return fmt.Errorf("config meter %s: %w", m.Slug, err)
			}
		case err != nil:
			return err
		default:
			m.CreatedAt = old.CreatedAt
			if sameDefinition(old, m) && old.ManagedBy == meter.ManagedByConfig {
				continue
			}
			if _, err := p.updateLocked(ctx, old.ID, m, true); err != nil {
				return fmt.Errorf("config meter %s: %w", m.Slug, err)
			}
		}
	}
	all, err := p.store.ListMeters(ctx)
	if err != nil {
		return err
	}
	for _, m := range all {
		if m.ManagedBy == meter.ManagedByConfig && !seen[m.Slug] {
			m.ManagedBy = meter.ManagedByAPI
			if err := p.put(ctx, m, false); err != nil {
				return fmt.Errorf("release meter %s from config: %w", m.Slug, err)
			}
		}
	}
	return p.reloadLocked(ctx)
}

func sameDefinition(a, b meter.Meter) bool {
	return meter.SameComputation(a, b) && a.Name == b.Name && a.Description == b.Description
}
