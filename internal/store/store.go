// Package store declares tally's storage interfaces. Backends live in
// subpackages (sqlite, …) and all pass the conformance suite in storetest.
//
// The raw events table is the record of truth; rollups are a projection of
// it that AppendEvents keeps current in the same transaction, and that
// PutMeter rebuilds.
package store

import (
	"context"
	"encoding/json"
	"errors"
	"github.com/tally-metering/tally/internal/billing"
	"time"

	"github.com/tally-metering/tally/internal/meter"
)

// ErrNotFound is returned (wrapped) when a requested item does not exist.
var ErrNotFound = errors.New("not found")

// ErrConflict is returned (wrapped) when an item would clash with an
// existing one, such as a second meter with the same slug.
var ErrConflict = errors.New("conflict")

// Store is everything tally keeps. Implementations are safe for concurrent
// use, AppendEvents included (the ingest pipeline runs two committers); the
// pipeline calls PutMeter, DeleteMeter and Recover only while no
// AppendEvents call is running.
type Store interface {
	Events
	Corrections
	Meters
	Rollups
	Subjects
	Customers
	Plans
	Subscriptions
	Invoices
	CreditNotes
	Auth
	// Size is the bytes the store occupies on disk (0 if unknown).
	Size(ctx context.Context) (int64, error)
	Close() error
}

// Contribution is what one event adds to one meter's rollups, computed
// before the event is appended. Err is set when the meter can't use the
// event; the event is then stored but not counted by that meter.
type Contribution struct {
	MeterID     string
	Aggregation meter.Aggregation
	meter.Contribution
	Err string
}

// NewEvent is an event to append with its meter contributions.
type NewEvent struct {
	ID, Source, Type, Subject string
	Time                      time.Time
	Raw                       json.RawMessage
	Contributions             []Contribution
}

// AppendResult says what AppendEvents did.
type AppendResult struct {
	// Inserted counts events stored now; Duplicates those whose (source,
	// id, subject) was stored before (or earlier in the same call) and were skipped.
	Inserted, Duplicates int
	// InvalidByMeter counts, per meter id, inserted events the meter could
	// not use.
	InvalidByMeter map[string]int
}

// StoredEvent is a raw event as kept, with what the store knows about it.
type StoredEvent struct {
	Seq                       int64
	ID, Source, Type, Subject string
	Time                      time.Time
	IngestedAt                time.Time
	Raw                       json.RawMessage
	// ValidationErrors lists why meters could not count the event (with
	// its current data, amended or not).
	ValidationErrors []string
	// Corrections are the event's voids and amendments, oldest first.
	Corrections []Correction
}

// Voided reports whether the event's last correction voids it.
func (e StoredEvent) Voided() bool {
	n := len(e.Corrections)
	return n > 0 && e.Corrections[n-1].Kind == CorrectionVoid
}

// Amendment is the data of the event's latest amendment; ok is false when
// it has none.
func (e StoredEvent) Amendment() (data json.RawMessage, ok bool) {
	for i := len(e.Corrections) - 1; i >= 0; i-- {
		if e.Corrections[i].Kind == CorrectionAmend {
			return e.Corrections[i].Data, true
		}
	}
	return nil, false
}

// EventFilter selects events for ListEvents. Zero fields don't filter.
type EventFilter struct {
	From, To      time.Time // event time in [From, To)
	Subject, Type string
	// Subjects, when not empty, keeps only events of one of these
	// subjects (and of Subject, when that is set too).
	Subjects []string
	// Within narrows the subjects it has an entry for to events timed in
	// the minutes of their spans (a customer's subjects to the minutes it
	// owned them: billing.Customer.UsageSubjects); a subject without an
	// entry is not narrowed.
	Within map[string][]billing.Span
	ID     string
	Limit  int
}

// Events keeps raw events.
type Events interface {
	// AppendEvents stores, in one durable transaction, every event whose
	// (source, id, subject) is not stored yet (per subject, so that no
	// one can have another subject's event skipped by sending its source
	// and id first), and applies the contributions of those
	// events (and only those) to the rollups. It is idempotent: appending the
	// same events again changes nothing. ingestedAt is recorded on new events.
	AppendEvents(ctx context.Context, events []NewEvent, ingestedAt time.Time) (AppendResult, error)
	// ListEvents returns matching events, newest first (by ingestion).
	ListEvents(ctx context.Context, f EventFilter) ([]StoredEvent, error)
	// ScanEvents calls fn for every stored event of the given type (all
	// types when empty) in ingestion order, stopping at fn's first error.
	ScanEvents(ctx context.Context, eventType string, fn func(StoredEvent) error) error
}

// Meters keeps meter definitions.
type Meters interface {
	ListMeters(ctx context.Context) ([]meter.Meter, error)
	// GetMeter finds a meter by id or slug; ErrNotFound if there is none.
	GetMeter(ctx context.Context, idOrSlug string) (meter.Meter, error)
	// CreateMeter stores a new meter; ErrConflict if the id or slug is taken.
	CreateMeter(ctx context.Context, m meter.Meter) error
	// UpdateMeter replaces a meter's definition (found by id); ErrNotFound,
	// or ErrConflict if the new slug is taken.
	UpdateMeter(ctx context.Context, m meter.Meter) error
	// DeleteMeter removes a meter and its rollups; ErrNotFound if absent.
	DeleteMeter(ctx context.Context, id string) error
}

// Rollup is the aggregation state of one meter's events for one subject,
// group and minute. State holds only the fields the meter's aggregation
// reads (see meter.State.Observe); the others are zero.
type Rollup struct {
	MeterID  string
	Subject  string
	GroupKey string
	// Minute is the minute's start, Unix seconds (a multiple of 60).
	Minute int64
	State  meter.State
}

// UniqueValue is one distinct value a UNIQUE_COUNT meter saw for a subject,
// group and minute.
type UniqueValue struct {
	MeterID  string
	Subject  string
	GroupKey string
	Minute   int64
	Value    string
}

// EventError records that a meter could not count an event.
type EventError struct {
	Seq     int64
	MeterID string
	Message string
}

// RollupQuery selects one meter's rollups for minutes in [From, To) (Unix
// seconds), for the given subjects (all when empty).
type RollupQuery struct {
	MeterID  string
	From, To int64
	Subjects []string
}

// Rollups reads and rebuilds the per-minute projections of meters.
type Rollups interface {
	QueryRollups(ctx context.Context, q RollupQuery) ([]Rollup, error)
	QueryUniqueValues(ctx context.Context, q RollupQuery) ([]UniqueValue, error)
	// PutMeter creates or replaces (by id) a meter definition together with
	// everything derived for it (rollups, distinct values, event errors), in
	// one transaction, so that a meter is never stored without its
	// projection. ErrConflict if another meter has the slug.
	PutMeter(ctx context.Context, m meter.Meter, rollups []Rollup, uniques []UniqueValue, errs []EventError) error
	// Recover re-applies to the rollups the events whose rollup deltas were
	// committed but not yet projected when the process stopped (a backend
	// that projects synchronously has none), computing each event's
	// contributions with contribs. It returns how many events it replayed.
	// Call it once at start, after loading the meters, before serving.
	Recover(ctx context.Context, contribs func(StoredEvent) ([]Contribution, error)) (int, error)
}

// Subject is a key usage is attributed to, with optional descriptive data.
type Subject struct {
	Key              string            `json:"key"`
	DisplayName      *string           `json:"displayName,omitempty"`
	Metadata         map[string]string `json:"metadata,omitempty"`
	StripeCustomerID *string           `json:"stripeCustomerId,omitempty"`
	CreatedAt        time.Time         `json:"createdAt"`
	UpdatedAt        time.Time         `json:"updatedAt"`
}

// Subjects keeps subjects.
type Subjects interface {
	// UpsertSubjects creates or updates subjects by key, keeping CreatedAt.
	UpsertSubjects(ctx context.Context, subjects []Subject, now time.Time) ([]Subject, error)
	ListSubjects(ctx context.Context) ([]Subject, error)
	// GetSubject returns ErrNotFound if there is no such subject.
	GetSubject(ctx context.Context, key string) (Subject, error)
	DeleteSubject(ctx context.Context, key string) error
}

// MinuteOf is the start of t's UTC minute in Unix seconds: the rollup
// granularity.
func MinuteOf(t time.Time) int64 {
	s := t.Unix()
	m := s % 60
	if m < 0 {
		m += 60
	}
	return s - m
}
