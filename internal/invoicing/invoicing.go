// Package invoicing turns subscriptions and metered usage into invoices:
// the live draft of every open period and, once a period has ended and its
// grace period passed, the finalized invoice stored for good (FinalizeDue).
// Usage is read exactly as the customer usage view reads it, so a draft
// shows the same amounts as the view.
package invoicing

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/shopspring/decimal"

	"github.com/tally-metering/tally/internal/billing"
	"github.com/tally-metering/tally/internal/store"
	"github.com/tally-metering/tally/internal/usage"
)

// DefaultGrace is how long after a period's end its invoice is finalized
// unless configured otherwise: time for late events to arrive.
const DefaultGrace = 24 * time.Hour

// Service builds and finalizes invoices.
type Service struct {
	Store store.Store
	Usage *usage.Service
	// Stable, if set, runs a usage read while no meter definition changes
	// (ingest.Pipeline.MetersStable).
	Stable func(fn func() error) error
	// Grace is how long after a period's end FinalizeDue finalizes it
	// (0: at the end itself; see DefaultGrace).
	Grace time.Duration
	// Log receives the finalizer's errors (nil: discarded).
	Log *slog.Logger
}

// floorMinute rounds t down to the whole minute; usage is rolled up per
// minute, so a period's usage is that of the minutes from its start's
// minute up to (not including) its end's minute.
func floorMinute(t time.Time) time.Time { return t.UTC().Truncate(time.Minute) }

// PeriodUsage is the usage of each of plan's charges for customer c in
// [start, end), keyed by charge key: the sum over c's subjects of the
// charge's meter (filtered by its FilterGroupBy), over the minutes from
// start's minute up to end's. A customer without subjects has no usage.
//
// Errors are not the caller's fault (a meter a plan needs is gone) and are
// not wrapped, so that they never read as a client's ErrNotFound.
func (s *Service) PeriodUsage(ctx context.Context, c billing.Customer, plan billing.Plan, start, end time.Time) (map[string]decimal.Decimal, error) {
	from, to := floorMinute(start), floorMinute(end)
	amounts := make(map[string]decimal.Decimal, len(plan.Charges))
	if len(c.Subjects) == 0 {
		return amounts, nil
	}
	run := func() error {
		for _, pc := range plan.Charges {
			m, err := s.Store.GetMeter(ctx, pc.Meter)
			if err != nil {
				return fmt.Errorf("plan %s: charge %s: meter %s: %v", plan.Key, pc.Key, pc.Meter, err)
			}
			res, err := s.Usage.Query(ctx, usage.Query{Meter: m, From: &from, To: &to, Subjects: c.Subjects, FilterGroupBy: pc.FilterGroupBy})
			if err != nil {
				return fmt.Errorf("plan %s: charge %s: usage: %v", plan.Key, pc.Key, err)
			}
			total := decimal.Zero
			for _, row := range res.Rows {
				total = total.Add(row.Value)
			}
			amounts[pc.Key] = total
		}
		return nil
	}
	var err error
	if s.Stable != nil {
		err = s.Stable(run)
	} else {
		err = run()
	}
	return amounts, err
}

// Periods returns the billing periods of sub that have begun by now, in
// order: from the first up to the one containing now (the first period for
// a subscription that has not started yet), ending at the cancellation for
// a cancelled subscription: the period a cancellation "now" falls in ends
// at that moment, with FullEnd its scheduled end, so that its base fee is
// prorated by time.
func Periods(sub billing.Subscription, now time.Time) ([]billing.Period, error) {
	loc, err := sub.Location()
	if err != nil {
		return nil, err
	}
	end := now
	if sub.CancelAt != nil && sub.CancelAt.Before(end) {
		end = *sub.CancelAt
	}
	ps, err := billing.Periods(sub.Start, sub.Cadence, sub.BillingAnchor, loc, sub.Start, end)
	if err != nil {
		return nil, err
	}
	if len(ps) == 0 && (sub.CancelAt == nil || sub.CancelAt.After(sub.Start)) {
		p, err := sub.CurrentPeriod(now)
		if err != nil {
			return nil, err
		}
		ps = []billing.Period{p}
	}
	if n := len(ps); n > 0 && sub.CancelAt != nil && sub.CancelAt.Before(ps[n-1].End) {
		ps[n-1].FullEnd = ps[n-1].End
		ps[n-1].End = *sub.CancelAt
	}
	return ps, nil
}

// subject is everything building a subscription's invoices needs.
type subject struct {
	sub       billing.Subscription
	customer  billing.Customer
	plans     map[string]billing.Plan // by planKey(id, version)
	finalized []billing.Invoice
	done      map[int64]bool // finalized period starts (Unix µs)
}

func planKey(id string, version int) string { return fmt.Sprintf("%s@%d", id, version) }

func (s *Service) load(ctx context.Context, sub billing.Subscription) (*subject, error) {
	c, err := s.Store.GetCustomer(ctx, sub.CustomerID)
	if err != nil {
		return nil, fmt.Errorf("subscription %s: customer %s: %v", sub.ID, sub.CustomerID, err)
	}
	x := &subject{sub: sub, customer: c, plans: map[string]billing.Plan{}, done: map[int64]bool{}}
	refs := append([]billing.PlanPhase{{PlanID: sub.PlanID, PlanVersion: sub.PlanVersion}}, sub.Phases...)
	for _, ref := range refs {
		k := planKey(ref.PlanID, ref.PlanVersion)
		if _, ok := x.plans[k]; ok {
			continue
		}
		plan, err := s.Store.GetPlan(ctx, ref.PlanID, ref.PlanVersion)
		if err != nil {
			return nil, fmt.Errorf("subscription %s: plan %s version %d: %v", sub.ID, ref.PlanID, ref.PlanVersion, err)
		}
		x.plans[k] = plan
	}
	fin, err := s.Store.ListInvoices(ctx, store.InvoiceFilter{SubscriptionID: sub.ID})
	if err != nil {
		return nil, err
	}
	x.finalized = fin
	for _, inv := range fin {
		x.done[inv.PeriodStart.UnixMicro()] = true
	}
	return x, nil
}

// segments returns the segments of period p (see billing.Subscription.
// Segments) with their plans and usage.
func (s *Service) segments(ctx context.Context, x *subject, p billing.Period) ([]billing.SegmentUsage, error) {
	segs := x.sub.Segments(p)
	out := make([]billing.SegmentUsage, 0, len(segs))
	for _, sg := range segs {
		plan := x.plans[planKey(sg.PlanID, sg.PlanVersion)]
		u, err := s.PeriodUsage(ctx, x.customer, plan, sg.Period.Start, sg.Period.End)
		if err != nil {
			return nil, err
		}
		out = append(out, billing.SegmentUsage{Plan: plan, Period: sg.Period, Usage: u})
	}
	return out, nil
}

// adjustments are the late usage of x's finalized periods not billed yet.
// A period split by a plan change is adjusted per segment, on the
// segment's plan.
func (s *Service) adjustments(ctx context.Context, x *subject) ([]billing.Adjustment, error) {
	var out []billing.Adjustment
	for i, inv := range x.finalized {
		segs, err := s.segments(ctx, x, billing.Period{Index: inv.PeriodIndex, Start: inv.PeriodStart, End: inv.PeriodEnd, FullStart: inv.PeriodStart})
		if err != nil {
			return nil, err
		}
		for _, sg := range segs {
			pk, pv := "", 0
			if len(segs) > 1 {
				pk, pv = sg.Plan.Key, sg.Plan.Version
			}
			for _, pc := range sg.Plan.Charges {
				q, a := billing.Billed(inv, x.finalized[i+1:], pc.Key, pk, pv)
				adj, ok, err := billing.NewAdjustment(inv, pc, sg.Usage[pc.Key], q, a)
				if err != nil {
					return nil, fmt.Errorf("subscription %s: invoice %s: %w", x.sub.ID, inv.ID, err)
				}
				if ok {
					adj.PlanKey, adj.PlanVersion = pk, pv
					out = append(out, adj)
				}
			}
		}
	}
	return out, nil
}

// draft builds the draft of period p, one set of lines per plan segment;
// the earliest open period carries the adjustments for late usage of
// finalized periods.
func (s *Service) draft(ctx context.Context, x *subject, p billing.Period, earliestOpen bool) (billing.Invoice, error) {
	segs, err := s.segments(ctx, x, p)
	if err != nil {
		return billing.Invoice{}, err
	}
	var adj []billing.Adjustment
	if earliestOpen {
		if adj, err = s.adjustments(ctx, x); err != nil {
			return billing.Invoice{}, err
		}
	}
	inv, err := billing.BuildSegmentedInvoice(x.sub, p, segs, adj)
	if err != nil {
		return billing.Invoice{}, fmt.Errorf("subscription %s: %v", x.sub.ID, err)
	}
	return inv, nil
}

// Invoices returns sub's invoices as of now, ordered by period: the
// finalized ones and a live draft for every period that has begun and is
// not finalized yet.
func (s *Service) Invoices(ctx context.Context, sub billing.Subscription, now time.Time) ([]billing.Invoice, error) {
	x, err := s.load(ctx, sub)
	if err != nil {
		return nil, err
	}
	ps, err := Periods(sub, now)
	if err != nil {
		return nil, fmt.Errorf("subscription %s: periods: %w", sub.ID, err)
	}
	out := make([]billing.Invoice, 0, len(ps))
	fin := x.finalized
	first := true
	for _, p := range ps {
		for len(fin) > 0 && fin[0].PeriodStart.Before(p.Start) {
			out, fin = append(out, fin[0]), fin[1:]
		}
		if len(fin) > 0 && fin[0].PeriodStart.Equal(p.Start) {
			out, fin = append(out, fin[0]), fin[1:]
			continue
		}
		inv, err := s.draft(ctx, x, p, first)
		if err != nil {
			return nil, err
		}
		first = false
		out = append(out, inv)
	}
	return append(out, fin...), nil
}

// FinalizeDue finalizes, for every subscription, each period whose end
// plus the grace period is at or before now and that is not finalized yet,
// oldest first, and returns how many invoices it stored. It is idempotent
// (a finalized period is skipped; the store keeps one invoice per period)
// and resumable: everything it has stored stays, and a later call picks up
// the rest. An error with one subscription does not stop the others; all
// are returned joined.
func (s *Service) FinalizeDue(ctx context.Context, now time.Time) (int, error) {
	subs, err := s.Store.ListSubscriptions(ctx, store.SubscriptionFilter{})
	if err != nil {
		return 0, err
	}
	due := now.Add(-s.Grace)
	n := 0
	var errs []error
	for _, sub := range subs {
		if err := ctx.Err(); err != nil {
			return n, err
		}
		k, err := s.finalizeSubscription(ctx, sub, due, now)
		n += k
		if err != nil {
			errs = append(errs, err)
		}
	}
	return n, errors.Join(errs...)
}

func (s *Service) finalizeSubscription(ctx context.Context, sub billing.Subscription, due, now time.Time) (int, error) {
	ps, err := Periods(sub, due)
	if err != nil {
		return 0, fmt.Errorf("subscription %s: periods: %w", sub.ID, err)
	}
	var x *subject
	n := 0
	for _, p := range ps {
		if p.End.After(due) {
			break
		}
		if x == nil {
			if x, err = s.load(ctx, sub); err != nil {
				return n, err
			}
		}
		if x.done[p.Start.UnixMicro()] {
			continue
		}
		inv, err := s.draft(ctx, x, p, true)
		if err != nil {
			return n, err
		}
		at := now.UTC()
		inv.Status, inv.FinalizedAt = billing.InvoiceFinalized, &at
		stored, created, err := s.Store.SaveInvoice(ctx, inv)
		if err != nil {
			return n, fmt.Errorf("subscription %s: save invoice %s: %w", sub.ID, inv.ID, err)
		}
		if created {
			n++
		}
		x.finalized = append(x.finalized, stored)
		x.done[p.Start.UnixMicro()] = true
	}
	return n, nil
}

// Run calls FinalizeDue at once and then every interval until ctx is
// done, with the time from now, logging errors.
func (s *Service) Run(ctx context.Context, interval time.Duration, now func() time.Time) {
	log := s.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		n, err := s.FinalizeDue(ctx, now())
		if err != nil && ctx.Err() == nil {
			log.Error("finalize invoices", "err", err, "finalized", n)
		} else if n > 0 {
			log.Info("finalized invoices", "count", n)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
