package httpapi

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/shopspring/decimal"

	"github.com/tally-metering/tally/internal/billing"
	"github.com/tally-metering/tally/internal/store"
)

// customerUsage is the body of GET /api/v1/customers/{idOrKey}/usage.
type customerUsage struct {
	Customer    string `json:"customer"`
	CustomerKey string `json:"customerKey"`
	// Subject is set when the view is one subject's share: what a
	// credential bound to that subject sees (see shareOf).
	Subject       string              `json:"subject,omitempty"`
	AsOf          time.Time           `json:"asOf"`
	Subscriptions []subscriptionUsage `json:"subscriptions"`
}

// subscriptionUsage is one subscription's current period as the customer
// sees it. Money is shown with exactly the currency's minor-unit decimals.
type subscriptionUsage struct {
	Subscription   string        `json:"subscription"`
	PlanKey        string        `json:"planKey"`
	PlanVersion    int           `json:"planVersion"`
	Status         string        `json:"status"`
	Currency       string        `json:"currency"`
	PeriodStart    time.Time     `json:"periodStart"`
	PeriodEnd      time.Time     `json:"periodEnd"`
	Partial        bool          `json:"partial,omitempty"`
	Elapsed        string        `json:"elapsed"`
	BaseFee        string        `json:"baseFee,omitempty"`
	Charges        []chargeUsage `json:"charges"`
	Total          string        `json:"total,omitempty"`
	ProjectedTotal string        `json:"projectedTotal,omitempty"`
}

type chargeUsage struct {
	Key             string            `json:"key"`
	Meter           string            `json:"meter"`
	FilterGroupBy   map[string]string `json:"filterGroupBy,omitempty"`
	Usage           string            `json:"usage"`
	Included        string            `json:"included,omitempty"`
	Remaining       string            `json:"remaining,omitempty"`
	Overage         string            `json:"overage,omitempty"`
	Amount          string            `json:"amount,omitempty"`
	Projected       string            `json:"projected"`
	ProjectedAmount string            `json:"projectedAmount,omitempty"`
}

func toSubscriptionUsage(sub billing.Subscription, status billing.SubscriptionStatus, v billing.UsageView) subscriptionUsage {
	m := func(d decimal.Decimal) string { return d.StringFixed(v.Digits) }
	out := subscriptionUsage{
		Subscription: sub.ID, PlanKey: v.PlanKey, PlanVersion: v.PlanVersion, Status: string(status), Currency: v.Currency,
		PeriodStart: v.Period.Start.UTC(), PeriodEnd: v.Period.End.UTC(), Partial: v.Period.Partial,
		Elapsed: v.Elapsed.String(), BaseFee: m(v.BaseFee), Total: m(v.Total), ProjectedTotal: m(v.ProjectedTotal),
		Charges: make([]chargeUsage, 0, len(v.Charges)),
	}
	for _, c := range v.Charges {
		rem := "unlimited"
		if c.Remaining != nil {
			rem = c.Remaining.String()
		}
		out.Charges = append(out.Charges, chargeUsage{
			Key: c.Key, Meter: c.Meter, FilterGroupBy: c.FilterGroupBy, Usage: c.Usage.String(),
			Included: c.Included.String(), Remaining: rem, Overage: c.Overage.String(), Amount: m(c.Amount),
			Projected: c.ProjectedUsage.String(), ProjectedAmount: m(c.ProjectedAmount),
		})
	}
	return out
}

// getCustomerUsage shows, for each active (or scheduled_cancel)
// subscription of a customer, its current period at the server clock: per
// charge the usage so far, the included quantity left, the overage and its
// price, and a projection to the period's end (see billing.View).
func (s *Server) getCustomerUsage(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	c, err := s.Store.GetCustomer(ctx, r.PathValue("idOrKey"))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	share := ""
	if principalOf(r).Bound() {
		// A bound caller's usage is what its tenant owned: for a
		// credential bound to one subject, that subject's minutes only.
		t := tenantFrom(r)
		c, share = t.customer, t.subject
	}
	subs, err := s.Store.ListSubscriptions(ctx, store.SubscriptionFilter{CustomerID: c.ID})
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	now := s.Now()
	out := customerUsage{Customer: c.ID, CustomerKey: c.Key, Subject: share, AsOf: now.UTC(), Subscriptions: []subscriptionUsage{}}
	for _, sub := range subs {
		st := sub.StatusAt(now)
		if st != billing.SubscriptionActive && st != billing.SubscriptionScheduledCancel {
			continue
		}
		v, err := s.subscriptionUsage(ctx, c, sub, now)
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		su := toSubscriptionUsage(sub, st, v)
		if share != "" {
			su = shareOf(su)
		}
		out.Subscriptions = append(out.Subscriptions, su)
	}
	s.writeJSON(w, r, http.StatusOK, out)
}

func (s *Server) subscriptionUsage(ctx context.Context, c billing.Customer, sub billing.Subscription, now time.Time) (billing.UsageView, error) {
	period, err := sub.CurrentPeriod(now)
	if err != nil {
		return billing.UsageView{}, fmt.Errorf("subscription %s: current period: %w", sub.ID, err)
	}
	// After a plan change "now" the view is of the current segment: the
	// new plan, its usage since the change and its prorated base fee.
	segs := sub.Segments(period)
	seg := segs[0]
	for _, sg := range segs[1:] {
		if !sg.Period.Start.After(now) {
			seg = sg
		}
	}
	period = seg.Period
	plan, err := s.Store.GetPlan(ctx, seg.PlanID, seg.PlanVersion)
	if err != nil {
		return billing.UsageView{}, internalf("subscription %s: plan %s version %d: %v", sub.ID, seg.PlanID, seg.PlanVersion, err)
	}
	// Usage is read as invoices read it (a customer without subjects has
	// none), so the view and the draft invoice agree.
	amounts, err := s.invoices.PeriodUsage(ctx, c, plan, period.Start, period.End)
	if err != nil {
		return billing.UsageView{}, fmt.Errorf("subscription %s: %v", sub.ID, err)
	}
	return billing.View(sub, plan, period, now, amounts)
}

// internalf is an error that is not the client's fault (a plan or meter
// that a subscription needs is gone or no longer fits): it must not map to
// 404 or 400, so the store or validation error is not wrapped.
func internalf(format string, args ...any) error {
	return fmt.Errorf(format, args...)
}

// shareOf is a subscription's usage as a credential bound to one of the
// customer's subjects sees it: that subject's usage and projected usage
// per charge, without money or included quantities, which are the whole
// customer's (a share of an included quantity or of a tiered price would
// read as a bill it is not).
func shareOf(su subscriptionUsage) subscriptionUsage {
	su.BaseFee, su.Total, su.ProjectedTotal = "", "", ""
	for i := range su.Charges {
		c := &su.Charges[i]
		c.Included, c.Remaining, c.Overage, c.Amount, c.ProjectedAmount = "", "", "", "", ""
	}
	return su
}
