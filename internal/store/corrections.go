package store

import (
	"context"
	"encoding/json"
	"time"

	"github.com/tally-metering/tally/internal/billing"
)

// Kinds of Correction.
const (
	CorrectionVoid  = "void"
	CorrectionAmend = "amend"
)

// Correction is one void or amendment of a stored event: a new fact kept
// beside the raw event, which never changes. An event's corrections are
// kept in the order they were made; the last one says how it counts now.
type Correction struct {
	// Kind is CorrectionVoid or CorrectionAmend.
	Kind string `json:"kind"`
	// Data is, for an amendment, the event's data from now on.
	Data json.RawMessage `json:"data,omitempty"`
	// Reason is why, in the words of the person who made it.
	Reason string `json:"reason,omitempty"`
	// Actor names the credential that made it.
	Actor string    `json:"actor,omitempty"`
	At    time.Time `json:"at"`
}

// EventKey names one stored event by its deduplication key.
type EventKey struct {
	Source, ID, Subject string
}

// States of a CancellationRule.
const (
	// RuleApplying: in effect (new events it matches count nothing), and
	// the events stored before it are being taken out of the rollups.
	RuleApplying = "applying"
	// RuleActive: in effect and applied.
	RuleActive = "active"
	// RuleRemoving: deleted, and the usage it cancelled is being restored.
	RuleRemoving = "removing"
	// RuleDeleted: deleted and restored; kept for the record.
	RuleDeleted = "deleted"
)

// CancellationRule selects usage that is not to count: for one meter (or
// every meter), the events of some subjects (or all), within event and
// ingestion time ranges, with some group values. Each field left zero
// selects everything.
type CancellationRule struct {
	ID string `json:"id"`
	// MeterID is the meter whose usage is cancelled ("" for every meter).
	MeterID string `json:"meterId,omitempty"`
	// CustomerID is the customer whose usage was asked for: Subjects and
	// Within then hold the subjects it had owned, in the minutes it owned
	// them, when the rule was made.
	CustomerID string   `json:"customerId,omitempty"`
	Subjects   []string `json:"subjects,omitempty"`
	// Within narrows the subjects it has an entry for to their spans.
	Within       map[string][]billing.Span `json:"within,omitempty"`
	EventFrom    *time.Time                `json:"eventFrom,omitempty"`
	EventTo      *time.Time                `json:"eventTo,omitempty"`
	IngestedFrom *time.Time                `json:"ingestedFrom,omitempty"`
	IngestedTo   *time.Time                `json:"ingestedTo,omitempty"`
	// GroupBy holds group values (of MeterID's groupBy keys) an event must
	// have, all of them, to be selected.
	GroupBy map[string]string `json:"groupBy,omitempty"`
	Reason  string            `json:"reason"`
	// State is one of RuleApplying, RuleActive, RuleRemoving, RuleDeleted.
	State     string     `json:"state"`
	CreatedBy string     `json:"createdBy"`
	CreatedAt time.Time  `json:"createdAt"`
	DeletedBy string     `json:"deletedBy,omitempty"`
	DeletedAt *time.Time `json:"deletedAt,omitempty"`
	// EventsMatched is how many stored events (not voided) the rule
	// selected when it was applied.
	EventsMatched int64 `json:"eventsMatched"`
}

// InEffect reports whether the rule cancels the usage it selects.
func (r CancellationRule) InEffect() bool { return r.State == RuleApplying || r.State == RuleActive }

// Cell is one meter's rollups of one subject and minute, every group.
type Cell struct {
	MeterID string
	Subject string
	// Minute is the minute's start, Unix seconds.
	Minute int64
}

// EventScan selects stored events for ScanMatching. Zero fields don't
// filter.
type EventScan struct {
	Types    []string
	Subjects []string
	// From and To bound the event time: [From, To).
	From, To time.Time
	// IngestedFrom and IngestedTo bound the ingestion time: [From, To).
	IngestedFrom, IngestedTo time.Time
	// MaxSeq, when positive, keeps only events with seq <= MaxSeq.
	MaxSeq int64
}

// Projector says how stored events count now, corrections and
// cancellation rules applied: it is how the store rebuilds rollup cells.
type Projector struct {
	// Meters lists the ids of the meters that count events of a type.
	Meters func(eventType string) []string
	// Contributions computes what a stored event (with its Corrections)
	// adds to each meter now: a meter that does not count it is left out,
	// except that an error says why a meter can't read its data.
	Contributions func(StoredEvent) ([]Contribution, error)
}

// Corrections keeps the corrections of raw events and the cancellation
// rules, and rebuilds the rollups they change.
type Corrections interface {
	// CorrectEvent adds c to the corrections of the event key names and,
	// in the same transaction, rebuilds with p (which sees the event with
	// c) that event's validation errors and the rollup cells of its
	// subject and minute of every meter of its type. check is called
	// first with the event as stored, with its earlier corrections; its
	// error is returned as it is and nothing is written. ErrNotFound
	// (wrapped) when there is no such event. It returns the event with c.
	CorrectEvent(ctx context.Context, key EventKey, c Correction, check func(StoredEvent) error, p Projector) (StoredEvent, error)
	// LastSeq is the sequence number of the newest stored event (0: none).
	LastSeq(ctx context.Context) (int64, error)
	// ScanMatching calls fn for every stored event f selects, with its
	// corrections, in no particular order, stopping at fn's first error.
	ScanMatching(ctx context.Context, f EventScan, fn func(StoredEvent) error) error
	// RecomputeCells replaces the rollups and distinct values of cells
	// with what p computes from the raw events in them, in one
	// transaction between two appends, and records the change for
	// LateEvents (marks with the first minute changed per subject, so that
	// reports and invoices already made for those minutes are looked at
	// again). It is idempotent.
	RecomputeCells(ctx context.Context, cells []Cell, p Projector) error
	// CreateRule stores a new rule; ErrConflict if its id is taken.
	CreateRule(ctx context.Context, r CancellationRule) error
	// UpdateRule replaces a rule (found by id); ErrNotFound if absent.
	UpdateRule(ctx context.Context, r CancellationRule) error
	// GetRule returns ErrNotFound (wrapped) if there is no such rule.
	GetRule(ctx context.Context, id string) (CancellationRule, error)
	// ListRules lists every rule, deleted ones included, oldest first.
	ListRules(ctx context.Context) ([]CancellationRule, error)
}
