package billing

import (
	"errors"
	"fmt"
	"slices"
	"time"
)

// SubscriptionStatus is the life-cycle state of a subscription.
type SubscriptionStatus string

// The subscription statuses.
const (
	// SubscriptionActive is a subscription that bills every period.
	SubscriptionActive SubscriptionStatus = "active"
	// SubscriptionScheduledCancel is an active subscription that ends at
	// CancelAt, the end of the period in which it was cancelled.
	SubscriptionScheduledCancel SubscriptionStatus = "scheduled_cancel"
	// SubscriptionCanceled is a subscription that ended at CancelAt. Its
	// data is kept.
	SubscriptionCanceled SubscriptionStatus = "canceled"
)

// CancelMode says when a cancellation takes effect.
type CancelMode string

// The cancel modes.
const (
	// CancelNow ends the subscription at the moment of the request.
	CancelNow CancelMode = "now"
	// CancelPeriodEnd ends the subscription at the end of its current
	// period; until then it stays in force (status scheduled_cancel).
	CancelPeriodEnd CancelMode = "period_end"
)

// Subscription is a customer on a published plan version from Start, and
// on each of its Phases from the phase's From on (plan changes, see
// ChangePlan). Its billing periods follow Cadence (copied from the plan
// version; a plan change keeps it), BillingAnchor and TimeZone.
type Subscription struct {
	ID          string `json:"id"`
	CustomerID  string `json:"customerId"`
	PlanID      string `json:"planId"`
	PlanKey     string `json:"planKey"`
	PlanVersion int    `json:"planVersion"`
	// Phases are the plan changes, ordered by From (see PlanPhase);
	// PlanID, PlanKey and PlanVersion are the plan it started on.
	Phases  []PlanPhase `json:"phases,omitempty"`
	Cadence Cadence     `json:"cadence"`
	Start   time.Time   `json:"start"`
	// BillingAnchor is AnchorAnniversary or AnchorCalendar, never empty.
	BillingAnchor Anchor `json:"billingAnchor"`
	// TimeZone is the IANA zone the period boundaries are computed in.
	TimeZone string             `json:"timeZone"`
	Status   SubscriptionStatus `json:"status"`
	// CancelAt is when the subscription ends (or ended): the moment of a
	// cancellation "now", or the end of the period in which it was
	// cancelled "at period end". Nil while the subscription is active.
	CancelAt *time.Time `json:"cancelAt,omitempty"`
	// CanceledAt is when the cancellation was requested.
	CanceledAt *time.Time `json:"canceledAt,omitempty"`
	CreatedAt  time.Time  `json:"createdAt"`
	UpdatedAt  time.Time  `json:"updatedAt"`
	// Version counts the stored states of the subscription: 1 when it is
	// created, one more on every write (a cancellation, a plan change).
	// The store sets it; a write based on an older version than the stored
	// one is refused, so that no concurrent change is lost (see
	// store.Subscriptions).
	Version int `json:"version"`
}

// Location returns the subscription's time zone (UTC when unset).
func (s Subscription) Location() (*time.Location, error) {
	return loadZone(s.TimeZone)
}

// StatusAt is the status as of now: a scheduled cancellation whose CancelAt
// has passed is canceled.
func (s Subscription) StatusAt(now time.Time) SubscriptionStatus {
	if s.Status == SubscriptionScheduledCancel && s.CancelAt != nil && !now.Before(*s.CancelAt) {
		return SubscriptionCanceled
	}
	return s.Status
}

// CurrentPeriod returns the billing period that contains now. Before the
// start (a subscription may start in the future) it is the first period.
// It does not look at the status: a cancelled subscription still has the
// period it would be in.
func (s Subscription) CurrentPeriod(now time.Time) (Period, error) {
	loc, err := s.Location()
	if err != nil {
		return Period{}, err
	}
	if now.Before(s.Start) {
		now = s.Start
	}
	return PeriodAt(s.Start, s.Cadence, s.BillingAnchor, loc, now)
}

// Cancel returns s cancelled at now in the given mode: CancelNow makes it
// canceled with CancelAt now; CancelPeriodEnd makes it scheduled_cancel
// with CancelAt the end of the current period. A subscription that has not
// started yet and is cancelled at period end ends at the end of its first
// period. Cancelling a scheduled cancellation again at period end returns
// it unchanged; cancelling it now ends it now. Cancelling a canceled
// subscription is a *NotSubscribableError.
func (s Subscription) Cancel(mode CancelMode, now time.Time) (Subscription, error) {
	if st := s.StatusAt(now); st == SubscriptionCanceled {
		return s, &NotSubscribableError{fmt.Sprintf("subscription %s is already canceled (it ended at %s)", s.ID, s.CancelAt.Format(time.RFC3339))}
	}
	if s.Status == SubscriptionScheduledCancel && mode == CancelPeriodEnd {
		return s, nil
	}
	now = now.UTC()
	switch mode {
	case CancelNow:
		s.Status = SubscriptionCanceled
		s.CancelAt = &now
	case CancelPeriodEnd:
		p, err := s.CurrentPeriod(now)
		if err != nil {
			return s, err
		}
		end := p.End.UTC()
		s.Status = SubscriptionScheduledCancel
		s.CancelAt = &end
	default:
		return s, &ValidationError{What: "cancellation", Err: fmt.Errorf("at: %q is not one of %s, %s", string(mode), CancelNow, CancelPeriodEnd)}
	}
	s.CanceledAt = &now
	s.UpdatedAt = now
	return s, nil
}

// SubscriptionInput is what a vendor sends to subscribe a customer to a
// plan.
type SubscriptionInput struct {
	// Customer is the customer's id or key.
	Customer string `json:"customer"`
	// Plan is the plan's id or key.
	Plan string `json:"plan"`
	// PlanVersion is the plan version; 0 (omitted) means the latest
	// published version.
	PlanVersion int `json:"planVersion"`
	// Start is when the subscription starts; nil means now. It may be in
	// the past or the future.
	Start         *time.Time `json:"start"`
	BillingAnchor Anchor     `json:"billingAnchor"`
	// TimeZone is an IANA time zone name; "" means UTC.
	TimeZone string `json:"timeZone"`
}

// earliestStart bounds subscription starts to sane instants.
var (
	earliestStart = time.Date(1970, 1, 1, 0, 0, 0, 0, time.UTC)
	latestStart   = time.Date(9000, 1, 1, 0, 0, 0, 0, time.UTC)
)

// Validate checks in by itself (whether the customer and plan exist is the
// caller's business) and returns a *ValidationError joining every field
// error, or nil.
func (in SubscriptionInput) Validate() error {
	var errs []error
	if in.Customer == "" {
		errs = append(errs, errors.New("customer: is required (the customer's id or key)"))
	}
	if in.Plan == "" {
		errs = append(errs, errors.New("plan: is required (the plan's id or key)"))
	}
	if in.PlanVersion < 0 {
		errs = append(errs, fmt.Errorf("planVersion: %d is not a plan version (1, 2, …; omit it for the latest published)", in.PlanVersion))
	}
	if in.Start != nil && (in.Start.Before(earliestStart) || !in.Start.Before(latestStart)) {
		errs = append(errs, fmt.Errorf("start: %s is out of range (1970 to 8999)", in.Start.Format(time.RFC3339Nano)))
	}
	if err := in.BillingAnchor.Validate(); err != nil {
		errs = append(errs, err)
	}
	if _, err := loadZone(in.TimeZone); err != nil {
		errs = append(errs, err)
	}
	return invalid("subscription", errs)
}

// Subscription returns the subscription in describes for the given
// customer and plan version, starting at start (in.Start, or now when the
// caller defaulted it), with the given id and creation time.
func (in SubscriptionInput) Subscription(id string, c Customer, p Plan, start, now time.Time) Subscription {
	a := in.BillingAnchor
	if a == "" {
		a = AnchorAnniversary
	}
	tz := in.TimeZone
	if tz == "" {
		tz = "UTC"
	}
	return Subscription{
		ID: id, CustomerID: c.ID, PlanID: p.ID, PlanKey: p.Key, PlanVersion: p.Version, Cadence: p.Cadence,
		Start: start.UTC(), BillingAnchor: a, TimeZone: tz, Status: SubscriptionActive,
		CreatedAt: now.UTC(), UpdatedAt: now.UTC(), Version: 1,
	}
}

// CheckSubscribable reports why customer c can't subscribe to plan version
// p, or nil: a currency mismatch is a *ValidationError naming the field
// "plan"; a deleted customer or a draft plan version is a
// *NotSubscribableError (the state of what the request names, not a field
// error).
func CheckSubscribable(c Customer, p Plan) error {
	if c.DeletedAt != nil {
		return &NotSubscribableError{fmt.Sprintf("customer %q was deleted at %s; a deleted customer can't subscribe", c.Key, c.DeletedAt.Format(time.RFC3339))}
	}
	if !p.Published() {
		return &NotSubscribableError{fmt.Sprintf("plan %q version %d is a draft; publish it first (POST /api/v1/plans/%s/publish)", p.Key, p.Version, p.Key)}
	}
	if p.Currency != c.Currency {
		return invalid("subscription", []error{fmt.Errorf("plan: plan %q version %d is priced in %s, but customer %q is billed in %s; the currencies must match", p.Key, p.Version, p.Currency, c.Key, c.Currency)})
	}
	return nil
}

// CheckStart reports, as a *ValidationError naming the field "start", a
// subscription start before customer c existed (its CreatedAt): a
// subscription can't bill a customer for time before it was created. Nil
// otherwise.
func CheckStart(c Customer, start time.Time) error {
	if start.Before(c.CreatedAt) {
		return invalid("subscription", []error{fmt.Errorf("start: %s is before customer %q was created (%s); a subscription can't start before its customer exists",
			start.UTC().Format(time.RFC3339Nano), c.Key, c.CreatedAt.UTC().Format(time.RFC3339Nano))})
	}
	return nil
}

// OnPlanFrom returns the first instant at or after t at which s is on plan
// planID (any version), and whether there is one: from then on a second
// subscription of s's customer to that plan, starting at t and open-ended,
// would bill the same usage twice. s is on a plan from its start (or the
// plan change to it) until its next plan change or its cancellation.
func (s Subscription) OnPlanFrom(planID string, t time.Time) (time.Time, bool) {
	at, _, _, ok := s.onPlan(planID, t)
	return at, ok
}

// onPlan is OnPlanFrom that also returns the span [from, end) of s on the
// plan that at falls in (end nil: open-ended), for naming it to a user.
func (s Subscription) onPlan(planID string, t time.Time) (at, from time.Time, end *time.Time, ok bool) {
	phases := append([]PlanPhase{{PlanID: s.PlanID, From: s.Start}}, s.Phases...)
	for i, ph := range phases {
		var end *time.Time
		if i+1 < len(phases) {
			end = &phases[i+1].From
		}
		if s.CancelAt != nil && (end == nil || s.CancelAt.Before(*end)) {
			end = s.CancelAt
		}
		if ph.PlanID != planID {
			continue
		}
		at := ph.From
		if at.Before(t) {
			at = t
		}
		if end == nil || at.Before(*end) {
			return at, ph.From, end, true
		}
	}
	return time.Time{}, time.Time{}, nil, false
}

// CheckNoOverlap reports, as a *NotSubscribableError naming the field
// "plan", that storing after would put customer c on one plan twice at
// once (the same usage billed twice), given its other subscriptions
// others; after itself is skipped among them. after is a new subscription
// when before is nil, else a new state of the stored subscription before.
//
// Only what the write adds is checked, each from when it takes effect
// until after's next plan change or cancellation (open-ended when there is
// none): the plan a new subscription starts on and its plan changes, or
// the plan changes after has and before has not. A cancellation adds
// nothing, so it is never refused, even of subscriptions that overlap
// already. Nil when nothing overlaps.
//
// A store calls it in the transaction that writes after, so that two
// concurrent writes can't both pass it (see store.Subscriptions).
func CheckNoOverlap(c Customer, before *Subscription, after Subscription, others []Subscription) error {
	phases := append([]PlanPhase{{PlanID: after.PlanID, PlanKey: after.PlanKey, PlanVersion: after.PlanVersion, From: after.Start}}, after.Phases...)
	for i, ph := range phases {
		if before != nil {
			same := func(o PlanPhase) bool {
				return o.PlanID == ph.PlanID && o.PlanVersion == ph.PlanVersion && o.From.Equal(ph.From)
			}
			if i == 0 || slices.ContainsFunc(before.Phases, same) {
				continue
			}
		}
		end := after.CancelAt
		if i+1 < len(phases) && (end == nil || phases[i+1].From.Before(*end)) {
			end = &phases[i+1].From
		}
		if end != nil && !ph.From.Before(*end) {
			continue // never in force
		}
		for _, other := range others {
			if other.ID == after.ID {
				continue
			}
			if at, from, otherEnd, ok := other.onPlan(ph.PlanID, ph.From); ok && (end == nil || at.Before(*end)) {
				until, advice := "with no end", "Cancel or change that subscription first"
				if otherEnd != nil {
					until = "until " + otherEnd.UTC().Format(time.RFC3339)
					advice = "Cancel or change that subscription first, or start this one at " + otherEnd.UTC().Format(time.RFC3339) + " or later"
				}
				return &NotSubscribableError{fmt.Sprintf("plan: customer %q is already on plan %q: subscription %s is on it from %s %s, so the usage from %s would be billed twice. %s",
					c.Key, ph.PlanKey, other.ID, from.UTC().Format(time.RFC3339), until, at.UTC().Format(time.RFC3339), advice)}
			}
		}
	}
	return nil
}

// CheckNewSubscription reports why s, a new subscription of customer c to
// plan version p, can't be stored next to the customer's subscriptions
// others: CheckSubscribable's errors, then CheckNoOverlap's. Nil
// otherwise. A store calls it in the transaction that writes s, with c, p
// and others as stored then, so that a concurrent subscription, deletion
// of the customer or change of its currency is not missed.
func CheckNewSubscription(c Customer, p Plan, s Subscription, others []Subscription) error {
	if err := CheckSubscribable(c, p); err != nil {
		return err
	}
	return CheckNoOverlap(c, nil, s, others)
}

// NotSubscribableError is a subscription change refused because of the
// state of what it names (a deleted customer, a draft plan version, an
// already canceled subscription).
type NotSubscribableError struct{ Msg string }

func (e *NotSubscribableError) Error() string { return e.Msg }

func loadZone(tz string) (*time.Location, error) {
	if tz == "" || tz == "UTC" {
		return time.UTC, nil
	}
	if tz == "Local" {
		return nil, errors.New(`timeZone: "Local" is not allowed; name an IANA time zone such as Europe/Berlin`)
	}
	loc, err := time.LoadLocation(tz)
	if err != nil {
		return nil, fmt.Errorf("timeZone: %q is not an IANA time zone such as Europe/Berlin", tz)
	}
	return loc, nil
}

// UsageEnd is the end, in whole minutes, of the usage that belongs to the
// period or segment of s ending at end. Usage is rolled up per minute, and
// a minute belongs to the part of the subscription it starts in: a part
// ending mid-minute at a period boundary or a plan change ends at that
// minute's start (the next part has the minute). The subscription's own
// end is the exception: the minute containing a cancellation that is not
// on a whole minute belongs to the last period, which has no successor to
// take it, so UsageEnd is the next whole minute. Billing and reporting
// both ask this function, so no minute is billed twice or never.
func (s Subscription) UsageEnd(end time.Time) time.Time {
	m := end.UTC().Truncate(time.Minute)
	if s.CancelAt != nil && end.Equal(*s.CancelAt) && !m.Equal(end) {
		return m.Add(time.Minute)
	}
	return m
}
