package httpapi

import (
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/tally-metering/tally/internal/billing"
	"github.com/tally-metering/tally/internal/store"
)

// subscriptionView is a subscription as the API shows it: its status as of
// the server clock (a scheduled cancellation whose time has passed is
// canceled) and its current billing period, absent once it is canceled.
type subscriptionView struct {
	billing.Subscription
	Status        billing.SubscriptionStatus `json:"status"`
	CurrentPeriod *periodView                `json:"currentPeriod,omitempty"`
	// CurrentPlan is the plan version in force now (after any plan change
	// that has taken effect).
	CurrentPlan billing.PlanPhase `json:"currentPlan"`
}

// periodView is a billing period [start, end) in UTC.
type periodView struct {
	Start time.Time `json:"start"`
	End   time.Time `json:"end"`
	// Partial marks a calendar-anchored first period shorter than a full
	// one.
	Partial bool `json:"partial,omitempty"`
}

func (s *Server) viewSubscription(sub billing.Subscription) (subscriptionView, error) {
	now := s.Now()
	v := subscriptionView{Subscription: sub, Status: sub.StatusAt(now), CurrentPlan: sub.PlanAt(now)}
	if v.Status == billing.SubscriptionCanceled {
		return v, nil
	}
	p, err := sub.CurrentPeriod(now)
	if err != nil {
		return v, fmt.Errorf("subscription %s: current period: %w", sub.ID, err)
	}
	v.CurrentPeriod = &periodView{Start: p.Start.UTC(), End: p.End.UTC(), Partial: p.Partial}
	return v, nil
}

// subscribablePlan returns the plan version in names: the given version, or
// the latest published one when it names none.
func (s *Server) subscribablePlan(r *http.Request, in billing.SubscriptionInput) (billing.Plan, error) {
	p, err := s.Store.GetPlan(r.Context(), in.Plan, in.PlanVersion)
	if err != nil || in.PlanVersion != 0 || p.Published() {
		return p, err
	}
	// Only the latest version can be a draft: the one before is published.
	if p.Version == 1 {
		return p, &billing.NotSubscribableError{Msg: fmt.Sprintf("plan %q has no published version; publish it first (POST /api/v1/plans/%s/publish)", p.Key, p.Key)}
	}
	return s.Store.GetPlan(r.Context(), p.ID, p.Version-1)
}

func (s *Server) createSubscription(w http.ResponseWriter, r *http.Request) {
	var in billing.SubscriptionInput
	if err := decodeJSON(w, r, &in); err != nil {
		s.writeError(w, r, err)
		return
	}
	if err := in.Validate(); err != nil {
		s.writeError(w, r, err)
		return
	}
	c, err := s.Store.GetCustomer(r.Context(), in.Customer)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	p, err := s.subscribablePlan(r, in)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if err := billing.CheckSubscribable(c, p); err != nil {
		s.writeError(w, r, err)
		return
	}
	now := s.Now().UTC()
	start := now
	if in.Start != nil {
		start = *in.Start
	}
	if err := billing.CheckStart(c, start); err != nil {
		s.writeError(w, r, err)
		return
	}
	id, err := newID()
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	// The store checks again, in the transaction that writes it, that the
	// customer is still subscribable and not on the plan already (the
	// same usage would be billed twice): a concurrent request can't slip
	// in between (see store.Subscriptions).
	sub := in.Subscription(id, c, p, start, now)
	if err := s.Store.CreateSubscription(r.Context(), sub); err != nil {
		s.writeError(w, r, err)
		return
	}
	sub.Version = 1
	v, err := s.viewSubscription(sub)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	w.Header().Set("Location", "/api/v1/subscriptions/"+sub.ID)
	w.Header().Set("ETag", subscriptionETag(sub))
	s.writeJSON(w, r, http.StatusCreated, v)
}

func (s *Server) listSubscriptions(w http.ResponseWriter, r *http.Request) {
	p, err := parsePage(r, "subscriptions", 2)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	f := store.SubscriptionFilter{Limit: p.Limit + 1}
	if p.After != nil {
		if f.AfterStart, err = parseSortKeyTime("subscriptions", p.After[0]); err != nil {
			s.writeError(w, r, err)
			return
		}
		f.AfterID = p.After[1]
	}
	if k := r.URL.Query().Get("customer"); k != "" {
		c, err := s.Store.GetCustomer(r.Context(), k)
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		f.CustomerID = c.ID
	}
	if k := r.URL.Query().Get("plan"); k != "" {
		pl, err := s.Store.GetPlan(r.Context(), k, 0)
		if errors.Is(err, store.ErrNotFound) && principalOf(r).Bound() {
			// Plans are the vendor's: a bound caller learns only which
			// plans its customer is subscribed to, not which plans exist.
			s.writeJSON(w, r, http.StatusOK, page[subscriptionView]{Items: []subscriptionView{}})
			return
		}
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		f.PlanID = pl.ID
	}
	subs, err := s.Store.ListSubscriptions(r.Context(), f)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	out := make([]subscriptionView, 0, len(subs))
	for _, sub := range subs {
		v, err := s.viewSubscription(sub)
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		out = append(out, v)
	}
	s.writeJSON(w, r, http.StatusOK, cutPage("subscriptions", out, func(v subscriptionView) []string { return subscriptionSortKey(v.Subscription) }, p.Limit))
}

// subscriptionSortKey is a subscription's place in its list: by start, then
// id (the store's order; starts are kept to the microsecond).
func subscriptionSortKey(sub billing.Subscription) []string {
	return []string{sortKeyTime(sub.Start.Truncate(time.Microsecond)), sub.ID}
}

func (s *Server) getSubscription(w http.ResponseWriter, r *http.Request) {
	sub, err := s.Store.GetSubscription(r.Context(), r.PathValue("id"))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	v, err := s.viewSubscription(sub)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	w.Header().Set("ETag", subscriptionETag(sub))
	s.writeJSON(w, r, http.StatusOK, v)
}

// cancelRequest is the body of POST /api/v1/subscriptions/{id}/cancel.
type cancelRequest struct {
	At billing.CancelMode `json:"at"`
}

// cancelSubscription ends a subscription now or at the end of its current
// period. The subscription and its history are kept.
func (s *Server) cancelSubscription(w http.ResponseWriter, r *http.Request) {
	var in cancelRequest
	if err := decodeJSON(w, r, &in); err != nil {
		s.writeError(w, r, err)
		return
	}
	switch in.At {
	case billing.CancelNow, billing.CancelPeriodEnd:
	case "":
		s.writeError(w, r, &billing.ValidationError{What: "cancellation", Err: errors.New(`at: is required ("now" or "period_end")`)})
		return
	default:
		s.writeError(w, r, &billing.ValidationError{What: "cancellation", Err: fmt.Errorf(`at: %q is not one of "now", "period_end"`, string(in.At))})
		return
	}
	im, err := parseIfMatch(r.Header)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	canceled, err := s.updateSubscription(r.Context(), r.PathValue("id"), im, func(sub billing.Subscription) (billing.Subscription, bool, error) {
		canceled, err := sub.Cancel(in.At, s.Now())
		// A repeated cancellation at period end changes nothing.
		return canceled, err == nil && canceled.Status != sub.Status, err
	})
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	v, err := s.viewSubscription(canceled)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	w.Header().Set("ETag", subscriptionETag(canceled))
	s.writeJSON(w, r, http.StatusOK, v)
}

// changeRequest is the body of POST /api/v1/subscriptions/{id}/change.
type changeRequest struct {
	// Plan is the new plan's id or key.
	Plan string `json:"plan"`
	// PlanVersion is its version; 0 (omitted) means the latest published.
	PlanVersion int                `json:"planVersion"`
	At          billing.ChangeMode `json:"at"`
}

// changeSubscription switches a subscription to another plan version at
// the end of its current period or now (see billing.Subscription.ChangePlan).
func (s *Server) changeSubscription(w http.ResponseWriter, r *http.Request) {
	var in changeRequest
	if err := decodeJSON(w, r, &in); err != nil {
		s.writeError(w, r, err)
		return
	}
	var errs []error
	if in.Plan == "" {
		errs = append(errs, errors.New("plan: is required (the plan's id or key)"))
	}
	if in.PlanVersion < 0 {
		errs = append(errs, fmt.Errorf("planVersion: %d is not a plan version (1, 2, …; omit it for the latest published)", in.PlanVersion))
	}
	switch in.At {
	case billing.ChangeNow, billing.ChangePeriodEnd:
	case "":
		errs = append(errs, errors.New(`at: is required ("now" or "period_end")`))
	default:
		errs = append(errs, fmt.Errorf(`at: %q is not one of "now", "period_end"`, string(in.At)))
	}
	if len(errs) > 0 {
		s.writeError(w, r, &billing.ValidationError{What: "plan change", Err: errors.Join(errs...)})
		return
	}
	im, err := parseIfMatch(r.Header)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	changed, err := s.updateSubscription(r.Context(), r.PathValue("id"), im, func(sub billing.Subscription) (billing.Subscription, bool, error) {
		changed, err := s.changedPlan(r, sub, in)
		return changed, err == nil, err
	})
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	v, err := s.viewSubscription(changed)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	w.Header().Set("ETag", subscriptionETag(changed))
	s.writeJSON(w, r, http.StatusOK, v)
}

// changedPlan returns sub switched to the plan version in names. Whether
// that puts the customer on a plan twice at once is checked by the store,
// in the transaction that writes it.
func (s *Server) changedPlan(r *http.Request, sub billing.Subscription, in changeRequest) (billing.Subscription, error) {
	c, err := s.Store.GetCustomer(r.Context(), sub.CustomerID)
	if err != nil {
		return sub, internalf("subscription %s: customer %s: %v", sub.ID, sub.CustomerID, err)
	}
	p, err := s.subscribablePlan(r, billing.SubscriptionInput{Plan: in.Plan, PlanVersion: in.PlanVersion})
	var nsub *billing.NotSubscribableError
	if errors.As(err, &nsub) { // no published version: a field error here
		err = &billing.ValidationError{What: "plan change", Err: fmt.Errorf("plan: %s", nsub.Msg)}
	}
	if err != nil {
		return sub, err
	}
	// The customer's currency may have changed since it subscribed; the
	// subscription's invoices stay in the currency of its plans.
	first, err := s.Store.GetPlan(r.Context(), sub.PlanID, sub.PlanVersion)
	if err != nil {
		return sub, internalf("subscription %s: plan %s version %d: %v", sub.ID, sub.PlanID, sub.PlanVersion, err)
	}
	if p.Currency != first.Currency {
		return sub, &billing.ValidationError{What: "plan change", Err: fmt.Errorf("plan: plan %q version %d is priced in %s, but subscription %s is billed in %s; a plan change keeps the currency",
			p.Key, p.Version, p.Currency, sub.ID, first.Currency)}
	}
	return sub.ChangePlan(p, c.Currency, in.At, s.Now())
}
