package report

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/shopspring/decimal"

	"github.com/tally-metering/tally/internal/store"
)

// ErrNotFound is returned (wrapped) by an Outbox for an unknown report; it
// wraps store.ErrNotFound.
var ErrNotFound = fmt.Errorf("report %w", store.ErrNotFound)

// State is where a report is in its delivery.
type State string

// The report states. Pending reports wait for their next attempt; sending
// ones were handed to the target and await its answer (after a crash they
// are sent again, which the target's idempotency makes safe); accepted
// and duplicate are delivered; expired ones were too old for the target
// (their quantity moved into a later hour); failed ones were refused for
// good and need a person.
const (
	StatePending   State = "pending"
	StateSending   State = "sending"
	StateAccepted  State = "accepted"
	StateDuplicate State = "duplicate"
	StateExpired   State = "expired"
	StateFailed    State = "failed"
	// StateCancelled is an accepted report the target took back (a
	// correction); its quantity is reported again, net, in a later hour.
	StateCancelled State = "cancelled"
	// StateRefund is never sent: it records usage corrected downwards that
	// a target which can neither take it back nor take a negative quantity
	// (Azure, AWS) keeps billing, with the negative Quantity a person is to
	// refund there. An alert (refund) says so.
	StateRefund State = "refund"
)

// States lists every state, in life-cycle order.
var States = []State{StatePending, StateSending, StateAccepted, StateDuplicate, StateExpired, StateFailed, StateCancelled, StateRefund}

// Report is one quantity for one target, resource, dimension and hour, with
// where its delivery stands.
type Report struct {
	ID             string          `json:"id"`
	StreamID       string          `json:"streamId"`
	Target         string          `json:"target"`
	SubscriptionID string          `json:"subscriptionId"`
	CustomerID     string          `json:"customerId"`
	Dimension      string          `json:"dimension"`
	Resource       Resource        `json:"resource"`
	Hour           time.Time       `json:"hour"`
	Quantity       decimal.Decimal `json:"quantity"`
	// Usage is the meter usage of the hour itself when it was planned;
	// Late is usage of earlier, already planned hours that this report
	// carries (events that arrived late, or quantity moved here from an
	// expired report), and LateFrom says where it came from.
	Usage    decimal.Decimal `json:"usage"`
	Late     decimal.Decimal `json:"late"`
	LateFrom []string        `json:"lateFrom,omitempty"`
	// Rounding is the carried fraction settled in this report at the end
	// of a billing period: the part added by rounding up to one more unit,
	// or, negative, the part dropped.
	Rounding decimal.Decimal `json:"rounding,omitzero"`
	State    State           `json:"state"`
	Attempts int             `json:"attempts"`
	// FirstAttemptAt is when the report was first handed to its target.
	FirstAttemptAt *time.Time `json:"firstAttemptAt,omitempty"`
	// NextAttemptAt is when a pending report is due.
	NextAttemptAt time.Time `json:"nextAttemptAt"`
	LastError     string    `json:"lastError,omitempty"`
	CreatedAt     time.Time `json:"createdAt"`
	UpdatedAt     time.Time `json:"updatedAt"`
}

// Attempt is one delivery attempt of a report and the target's answer, kept
// for disputes.
type Attempt struct {
	ReportID string    `json:"reportId"`
	Attempt  int       `json:"attempt"`
	At       time.Time `json:"at"`
	// Outcome is the item's outcome, or "error" when the call as a whole
	// failed.
	Outcome  string          `json:"outcome"`
	Code     string          `json:"code,omitempty"`
	Message  string          `json:"message,omitempty"`
	Response json.RawMessage `json:"response,omitempty"`
}

// Delivery is what a send attempt did to one report.
type Delivery struct {
	ReportID string
	State    State
	// NextAttemptAt is set for a report that goes back to pending.
	NextAttemptAt time.Time
	LastError     string
	Attempt       Attempt
}

// Filter selects reports; zero fields match all.
type Filter struct {
	CustomerID, SubscriptionID, Target string
	State                              State
	// HourFrom and HourTo bound the report hour to [HourFrom, HourTo).
	HourFrom, HourTo time.Time
	// After continues a listing after the report with this id (reports are
	// ordered by hour, then id).
	After string
	Limit int
}

// LateEvent is a stored event that arrived after its UTC hour had ended.
type LateEvent struct {
	Seq     int64
	Subject string
	Time    time.Time
}

// Outbox keeps report streams, reports and their delivery history.
// Implementations are safe for concurrent use.
type Outbox interface {
	// LoadStreams returns the stored streams of the given subscriptions,
	// or every stored stream when subscriptionIDs is nil.
	LoadStreams(ctx context.Context, subscriptionIDs []string) ([]Stream, error)
	// CommitPlan stores, in one transaction, the streams' new states, the
	// new reports (a report whose id is stored already is left as it is,
	// so planning twice is harmless) and the late-event cursor.
	CommitPlan(ctx context.Context, streams []Stream, reports []Report, lateSeq int64) error
	// LateCursor is the late-event cursor last committed (0 at first).
	LateCursor(ctx context.Context) (int64, error)
	// LateEvents returns up to limit events with a sequence number above
	// afterSeq that were ingested after their UTC hour had ended, in
	// sequence order.
	LateEvents(ctx context.Context, afterSeq int64, limit int) ([]LateEvent, error)
	// DueReports returns up to limit reports of target that are pending or
	// sending with NextAttemptAt at or before now, oldest hour first.
	DueReports(ctx context.Context, target string, now time.Time, limit int) ([]Report, error)
	// MarkSending moves the reports to sending, counts an attempt and sets
	// their NextAttemptAt to retryAt (when a crash leaves them sending,
	// they are due again then).
	MarkSending(ctx context.Context, ids []string, now, retryAt time.Time) error
	// RecordDeliveries stores each delivery's new state and attempt in one
	// transaction. An expired or cancelled report's quantity is taken off
	// its stream's Reported, so the next plan carries it into a later hour.
	RecordDeliveries(ctx context.Context, ds []Delivery, now time.Time) error
	// Requeue moves a failed report back to pending with resource, due
	// at now (after a person fixed its cause); ErrNotFound if there is no
	// such report, an error if it is not failed.
	Requeue(ctx context.Context, id string, resource Resource, now time.Time) error
	// ListReports returns the reports f selects, by hour then id.
	ListReports(ctx context.Context, f Filter) ([]Report, error)
	// GetReport returns a report and its attempts, oldest first;
	// ErrNotFound if there is none.
	GetReport(ctx context.Context, id string) (Report, []Attempt, error)
	// Unsettled returns up to limit reports of target still pending or
	// sending whose hour starts before hourBefore, oldest first: the
	// deadline watch.
	Unsettled(ctx context.Context, target string, hourBefore time.Time, limit int) ([]Report, error)
}
