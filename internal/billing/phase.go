package billing

import (
	"fmt"
	"time"
)

// PlanPhase is a plan change of a subscription: from From on it is on plan
// version PlanVersion of PlanID. A subscription's Phases are ordered by
// From; before the first one it is on the plan it was created with
// (Subscription.PlanID, PlanKey and PlanVersion, which never change).
type PlanPhase struct {
	PlanID      string    `json:"planId"`
	PlanKey     string    `json:"planKey"`
	PlanVersion int       `json:"planVersion"`
	From        time.Time `json:"from"`
}

// ChangeMode says when a plan change takes effect.
type ChangeMode string

// The plan change modes.
const (
	// ChangeNow switches plan at the moment of the request: the current
	// period is split there.
	ChangeNow ChangeMode = "now"
	// ChangePeriodEnd switches plan at the start of the next period.
	ChangePeriodEnd ChangeMode = "period_end"
)

// Segment is the part of a billing period that a subscription spends on
// one plan version. Its Period has the segment's Start and End and the
// whole period's FullStart and FullEnd, so that a segment shorter than the
// full period is Prorated by time.
type Segment struct {
	PlanID      string
	PlanKey     string
	PlanVersion int
	Period      Period
}

// PlanAt is the plan version s is on at t.
func (s Subscription) PlanAt(t time.Time) PlanPhase {
	cur := PlanPhase{PlanID: s.PlanID, PlanKey: s.PlanKey, PlanVersion: s.PlanVersion, From: s.Start}
	for _, ph := range s.Phases {
		if ph.From.After(t) {
			break
		}
		cur = ph
	}
	return cur
}

// Segments splits period p of s at every plan change inside it, in order.
// A period without a change inside is one segment whose Period is p.
func (s Subscription) Segments(p Period) []Segment {
	fullEnd := p.FullEnd
	if fullEnd.IsZero() {
		fullEnd = p.End
	}
	cur := s.PlanAt(p.Start)
	start := p.Start
	var out []Segment
	add := func(end time.Time) {
		sp := p
		sp.Start, sp.End, sp.FullEnd = start, end, fullEnd
		if sp.Start.Equal(p.Start) && sp.End.Equal(p.End) {
			sp = p
		}
		out = append(out, Segment{PlanID: cur.PlanID, PlanKey: cur.PlanKey, PlanVersion: cur.PlanVersion, Period: sp})
	}
	for _, ph := range s.Phases {
		if !ph.From.After(p.Start) {
			continue
		}
		if !ph.From.Before(p.End) {
			break
		}
		add(ph.From)
		cur, start = ph, ph.From
	}
	add(p.End)
	return out
}

// ChangePlan returns s switched to plan p (a version of another plan, or
// another version of its plan) in the given mode at now: ChangePeriodEnd
// from the end of the current period, ChangeNow from now (from the start
// for a subscription that has not started). A change replaces any change
// scheduled at or after the moment it takes effect.
//
// p must be published, in currency (the customer's), on the same cadence as
// the subscription (periods never move) and differ from the plan version
// in force when the change takes effect; otherwise a *ValidationError
// naming "plan". A canceled or scheduled-cancel subscription, or a second
// change "now" within one period, is a *NotSubscribableError.
func (s Subscription) ChangePlan(p Plan, currency string, mode ChangeMode, now time.Time) (Subscription, error) {
	if st := s.StatusAt(now); st != SubscriptionActive {
		return s, &NotSubscribableError{fmt.Sprintf("subscription %s is %s; only an active subscription can change plan", s.ID, st)}
	}
	period, err := s.CurrentPeriod(now)
	if err != nil {
		return s, err
	}
	now = now.UTC()
	var at time.Time
	switch mode {
	case ChangeNow:
		at = now
		if at.Before(s.Start) {
			at = s.Start
		}
		if segs := s.Segments(period); len(segs) > 1 && !segs[len(segs)-1].Period.Start.After(at) {
			return s, &NotSubscribableError{fmt.Sprintf("subscription %s already changed plan now in its current period (at %s); change it at period_end instead",
				s.ID, segs[len(segs)-1].Period.Start.Format(time.RFC3339))}
		}
	case ChangePeriodEnd:
		at = period.End.UTC()
	default:
		return s, &ValidationError{What: "plan change", Err: fmt.Errorf("at: %q is not one of %s, %s", string(mode), ChangeNow, ChangePeriodEnd)}
	}
	var errs []error
	switch {
	case !p.Published():
		errs = append(errs, fmt.Errorf("plan: plan %q version %d is a draft; publish it first", p.Key, p.Version))
	case p.Currency != currency:
		errs = append(errs, fmt.Errorf("plan: plan %q version %d is priced in %s, but the customer is billed in %s; the currencies must match", p.Key, p.Version, p.Currency, currency))
	case p.Cadence != s.Cadence:
		errs = append(errs, fmt.Errorf("plan: plan %q version %d is billed every %s, but the subscription every %s; a plan change keeps the cadence", p.Key, p.Version, p.Cadence, s.Cadence))
	}
	var kept []PlanPhase
	for _, ph := range s.Phases {
		if ph.From.Before(at) {
			kept = append(kept, ph)
		}
	}
	s.Phases = kept
	if cur := s.PlanAt(at.Add(-1)); len(errs) == 0 && at.After(s.Start) && cur.PlanID == p.ID && cur.PlanVersion == p.Version {
		errs = append(errs, fmt.Errorf("plan: the subscription is already on plan %q version %d", p.Key, p.Version))
	}
	if err := invalid("plan change", errs); err != nil {
		return s, err
	}
	s.Phases = append(s.Phases, PlanPhase{PlanID: p.ID, PlanKey: p.Key, PlanVersion: p.Version, From: at})
	s.UpdatedAt = now
	return s, nil
}
