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
	"slices"
	"sync"
	"time"

	"github.com/shopspring/decimal"

	"github.com/tally-metering/tally/internal/billing"
	"github.com/tally-metering/tally/internal/meter"
	"github.com/tally-metering/tally/internal/report"
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
	// Late, if set, tells FinalizeDue which subjects received late events,
	// so that it finds ended subscriptions whose late usage needs an
	// adjustment invoice (see closingDraft), and subscriptions whose
	// finalized periods' usage went down and needs a credit note (see
	// issueCredits), without reading every subscription's usage on every
	// call.
	Late LateEvents
	// Corrections says which finalized periods late usage still corrects.
	Corrections Corrections

	lateMu      sync.Mutex
	lateSeq     int64           // late events up to here are looked at
	lateDirty   map[string]bool // ended subscriptions to look at
	creditDirty map[string]bool // invoiced subscriptions to look at for credit
	creditInit  bool            // every invoiced subscription was looked at once
	metersSeen  time.Time       // the latest meter change looked at
}

// Corrections are the vendor's choices about correcting finalized
// periods (billing.correctionWindow and billing.rebillOnMeterChange in
// the configuration). The zero value corrects every finalized period for
// ever, whatever changed its usage.
type Corrections struct {
	// Window, if positive, is how long after a period's end its usage is
	// still corrected: late usage that changes a period whose end is
	// more than Window before now is neither billed nor credited (the
	// period is closed, as Stripe and Lago close periods). 0: no limit.
	Window time.Duration
	// KeepOnMeterChange, if set, leaves a charge of a finalized period as
	// it was billed once its meter's definition changed after the period
	// was finalized (a PUT of the meter rebuilds usage from the raw
	// events; without this, that rebuilt usage is corrected like late
	// usage). Late events of such a period are then not corrected either.
	KeepOnMeterChange bool
}

// LateEvents lists stored events that arrived after their UTC hour had
// ended (the store keeps an index of them; report.Outbox has it too).
type LateEvents interface {
	LateEvents(ctx context.Context, afterSeq int64, limit int) ([]report.LateEvent, error)
}

// floorMinute rounds t down to the whole minute; usage is rolled up per
// minute, so a period's usage is that of the minutes from its start's
// minute up to (not including) its end's minute.
func floorMinute(t time.Time) time.Time { return t.UTC().Truncate(time.Minute) }

// PeriodUsage is the usage of each of plan's charges for customer c in
// [start, end), keyed by charge key: the sum over c's subjects of the
// charge's meter (filtered by its FilterGroupBy), over the minutes from
// start's minute up to end's, each subject's only in the minutes c owned
// it (see billing.Ownership). A customer without subjects has no usage.
//
// Errors are not the caller's fault (a meter a plan needs is gone) and are
// not wrapped, so that they never read as a client's ErrNotFound.
func (s *Service) PeriodUsage(ctx context.Context, c billing.Customer, plan billing.Plan, start, end time.Time) (map[string]decimal.Decimal, error) {
	var amounts map[string]decimal.Decimal
	err := s.stable(func() error {
		var err error
		amounts, err = s.newReader().periodUsage(ctx, c, plan, start, end)
		return err
	})
	return amounts, err
}

// stable runs fn while no meter definition changes (see Service.Stable).
// Calls must not nest: Stable may be a read lock, which a waiting writer
// would deadlock.
func (s *Service) stable(fn func() error) error {
	if s.Stable != nil {
		return s.Stable(fn)
	}
	return fn()
}

// usageReader reads usage for invoices, looking each meter up once. It
// belongs to one stable section: the meters it keeps and the rollups it
// reads must come from the same meter definitions.
type usageReader struct {
	s      *Service
	meters map[string]meter.Meter // by the id or slug a charge names
}

func (s *Service) newReader() *usageReader {
	return &usageReader{s: s, meters: make(map[string]meter.Meter)}
}

func (r *usageReader) meter(ctx context.Context, idOrSlug string) (meter.Meter, error) {
	if m, ok := r.meters[idOrSlug]; ok {
		return m, nil
	}
	m, err := r.s.Store.GetMeter(ctx, idOrSlug)
	if err != nil {
		return m, err
	}
	r.meters[idOrSlug] = m
	return m, nil
}

// periodUsage is PeriodUsage inside the caller's stable section.
func (r *usageReader) periodUsage(ctx context.Context, c billing.Customer, plan billing.Plan, start, end time.Time) (map[string]decimal.Decimal, error) {
	from, to := floorMinute(start), floorMinute(end)
	amounts := make(map[string]decimal.Decimal, len(plan.Charges))
	if !from.Before(to) {
		// A period (segment) within one minute: it holds no whole minute
		// of usage (the query would refuse from == to).
		return amounts, nil
	}
	// Each subject's usage counts only while c owned it: a subject moved
	// to or from c during the period counts for part of it.
	subjects, within := c.UsageSubjects(from, to)
	if len(subjects) == 0 {
		return amounts, nil
	}
	for _, pc := range plan.Charges {
		m, err := r.meter(ctx, pc.Meter)
		if err != nil {
			return nil, fmt.Errorf("plan %s: charge %s: meter %s: %v", plan.Key, pc.Key, pc.Meter, err)
		}
		res, err := r.s.Usage.Query(ctx, usage.Query{Meter: m, From: &from, To: &to, Subjects: subjects, Within: within, FilterGroupBy: pc.FilterGroupBy})
		if err != nil {
			return nil, fmt.Errorf("plan %s: charge %s: usage: %v", plan.Key, pc.Key, err)
		}
		total := decimal.Zero
		for _, row := range res.Rows {
			total = total.Add(row.Value)
		}
		amounts[pc.Key] = total
	}
	return amounts, nil
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
	finalized []billing.Invoice       // ordered by period start
	credits   []billing.CreditNote    // issued, in order
}

func planKey(id string, version int) string { return fmt.Sprintf("%s@%d", id, version) }

// planCache keeps the plan versions one call has read; a published
// version never changes, so they can be shared by every subscription.
type planCache map[string]billing.Plan

// newSubject gathers sub's customer c and the plan versions it is on
// (read through plans), without its finalized invoices.
func (s *Service) newSubject(ctx context.Context, sub billing.Subscription, c billing.Customer, plans planCache) (*subject, error) {
	x := &subject{sub: sub, customer: c, plans: map[string]billing.Plan{}}
	refs := append([]billing.PlanPhase{{PlanID: sub.PlanID, PlanVersion: sub.PlanVersion}}, sub.Phases...)
	for _, ref := range refs {
		k := planKey(ref.PlanID, ref.PlanVersion)
		if _, ok := x.plans[k]; ok {
			continue
		}
		plan, ok := plans[k]
		if !ok {
			var err error
			if plan, err = s.Store.GetPlan(ctx, ref.PlanID, ref.PlanVersion); err != nil {
				return nil, fmt.Errorf("subscription %s: plan %s version %d: %v", sub.ID, ref.PlanID, ref.PlanVersion, err)
			}
			plans[k] = plan
		}
		x.plans[k] = plan
	}
	return x, nil
}

func (s *Service) load(ctx context.Context, sub billing.Subscription) (*subject, error) {
	c, err := s.Store.GetCustomer(ctx, sub.CustomerID)
	if err != nil {
		return nil, fmt.Errorf("subscription %s: customer %s: %v", sub.ID, sub.CustomerID, err)
	}
	x, err := s.newSubject(ctx, sub, c, planCache{})
	if err != nil {
		return nil, err
	}
	if x.finalized, err = s.Store.ListInvoices(ctx, store.InvoiceFilter{SubscriptionID: sub.ID}); err != nil {
		return nil, err
	}
	if len(x.finalized) > 0 {
		if x.credits, err = s.Store.ListCreditNotes(ctx, store.CreditNoteFilter{SubscriptionID: sub.ID}); err != nil {
			return nil, err
		}
	}
	return x, nil
}

// segments returns the segments of period p (see billing.Subscription.
// Segments) with their plans and usage.
func (s *Service) segments(ctx context.Context, r *usageReader, x *subject, p billing.Period) ([]billing.SegmentUsage, error) {
	segs := x.sub.Segments(p)
	out := make([]billing.SegmentUsage, 0, len(segs))
	for _, sg := range segs {
		plan := x.plans[planKey(sg.PlanID, sg.PlanVersion)]
		// The minute of the subscription's end belongs to its last
		// segment (see billing.Subscription.UsageEnd).
		u, err := r.periodUsage(ctx, x.customer, plan, sg.Period.Start, x.sub.UsageEnd(sg.Period.End))
		if err != nil {
			return nil, err
		}
		out = append(out, billing.SegmentUsage{Plan: plan, Period: sg.Period, Usage: u})
	}
	return out, nil
}

// invoicedPeriod is the billing period of sub that the finalized invoice
// inv bills, as it was drafted (see Periods): with its FullStart (a
// partial first period) and FullEnd (a period cut by a cancellation), so
// that a correction prorates what the invoice prorated. The invoice keeps
// only its bounds; the schedule gives the rest. Should the schedule not
// give these bounds, the period is taken as a full one.
func invoicedPeriod(sub billing.Subscription, inv billing.Invoice) billing.Period {
	fallback := billing.Period{Index: inv.PeriodIndex, Start: inv.PeriodStart, End: inv.PeriodEnd, FullStart: inv.PeriodStart}
	p, err := sub.CurrentPeriod(inv.PeriodStart)
	if err != nil || !p.Start.Equal(inv.PeriodStart) {
		return fallback
	}
	if inv.PeriodEnd.Before(p.End) {
		p.FullEnd, p.End = p.End, inv.PeriodEnd
	}
	if !p.End.Equal(inv.PeriodEnd) {
		return fallback
	}
	return p
}

// corrections are the corrections (billing.NewCorrection) of x's
// finalized periods as of now, per charge: positive ones are billed as
// adjustments, negative ones credited on a credit note. A period split by
// a plan change is corrected per segment, on the segment's plan. Periods
// closed to corrections (see Corrections) are skipped.
func (s *Service) corrections(ctx context.Context, r *usageReader, x *subject, now time.Time) ([]billing.Adjustment, error) {
	var out []billing.Adjustment
	for i, inv := range x.finalized {
		if inv.Kind == billing.InvoiceKindAdjustment {
			continue // no usage of its own
		}
		if w := s.Corrections.Window; w > 0 && inv.PeriodEnd.Add(w).Before(now) {
			continue // closed
		}
		segs, err := s.segments(ctx, r, x, invoicedPeriod(x.sub, inv))
		if err != nil {
			return nil, err
		}
		for _, sg := range segs {
			pk, pv := "", 0
			if len(segs) > 1 {
				pk, pv = sg.Plan.Key, sg.Plan.Version
			}
			for _, pc := range sg.Plan.Charges {
				if s.Corrections.KeepOnMeterChange && inv.FinalizedAt != nil {
					m, err := r.meter(ctx, pc.Meter)
					if err != nil {
						return nil, fmt.Errorf("invoice %s: charge %s: meter %s: %v", inv.ID, pc.Key, pc.Meter, err)
					}
					if m.UpdatedAt.After(*inv.FinalizedAt) {
						continue
					}
				}
				q, a := billing.Billed(inv, x.finalized[i+1:], x.credits, pc.Key, pk, pv)
				c, ok, err := billing.NewCorrection(inv, pc.ChargeFor(sg.Period, sg.Plan.ProrateIncluded), sg.Usage[pc.Key], q, a)
				if err != nil {
					return nil, fmt.Errorf("invoice %s: %w", inv.ID, err)
				}
				if ok {
					c.PlanKey, c.PlanVersion = pk, pv
					out = append(out, c)
				}
			}
		}
	}
	return out, nil
}

// adjustments are the positive corrections of x's finalized periods: what
// the customer owes for them and was not billed yet.
func (s *Service) adjustments(ctx context.Context, r *usageReader, x *subject, now time.Time) ([]billing.Adjustment, error) {
	cs, err := s.corrections(ctx, r, x, now)
	if err != nil {
		return nil, err
	}
	return slices.DeleteFunc(cs, func(c billing.Adjustment) bool { return !c.Amount.IsPositive() }), nil
}

// draft builds the draft of period p, one set of lines per plan segment;
// the earliest open period carries the adjustments for late usage of
// finalized periods. Its errors name the subscription.
func (s *Service) draft(ctx context.Context, r *usageReader, x *subject, p billing.Period, earliestOpen bool, now time.Time) (billing.Invoice, error) {
	segs, err := s.segments(ctx, r, x, p)
	if err != nil {
		return billing.Invoice{}, fmt.Errorf("subscription %s: period %s: %v", x.sub.ID, p.Start.UTC().Format(time.RFC3339), err)
	}
	var adj []billing.Adjustment
	if earliestOpen {
		cs, err := s.corrections(ctx, r, x, now)
		if err != nil {
			return billing.Invoice{}, fmt.Errorf("subscription %s: adjustments: %v", x.sub.ID, err)
		}
		for _, c := range cs {
			if c.Amount.IsPositive() {
				adj = append(adj, c)
			} else {
				// Owed to the customer: a credit note, not this invoice.
				s.Recheck(x.sub.ID)
			}
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
	err = s.stable(func() error {
		r := s.newReader()
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
			inv, err := s.draft(ctx, r, x, p, first, now)
			if err != nil {
				return err
			}
			first = false
			out = append(out, inv)
		}
		out = append(out, fin...)
		if first {
			inv, ok, err := s.closingDraft(ctx, r, x, now)
			if err != nil {
				return err
			}
			if ok {
				out = append(out, inv)
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// closingDraft is the draft adjustment invoice of x's subscription, when
// it has ended by now, every one of its periods is finalized (the caller
// checks) and late usage of those periods is not billed yet: with no open
// period left to carry it, it goes on an invoice of its own. The draft's
// instant is the cancellation, or, once an adjustment invoice was
// finalized, the later of that one's finalization and a second after its
// instant, so each adjustment invoice has its own id. due is when the draft
// is to be finalized: its instant plus the grace period.
func (s *Service) closingDraft(ctx context.Context, r *usageReader, x *subject, now time.Time) (inv billing.Invoice, ok bool, err error) {
	inv, _, ok, err = s.closing(ctx, r, x, now)
	return inv, ok, err
}

func (s *Service) closing(ctx context.Context, r *usageReader, x *subject, now time.Time) (billing.Invoice, time.Time, bool, error) {
	sub := x.sub
	if sub.CancelAt == nil || sub.CancelAt.After(now) || len(x.finalized) == 0 {
		return billing.Invoice{}, time.Time{}, false, nil
	}
	adj, err := s.adjustments(ctx, r, x, now)
	if err != nil || len(adj) == 0 {
		return billing.Invoice{}, time.Time{}, false, err
	}
	at := sub.CancelAt.UTC()
	var last billing.Invoice
	for _, inv := range x.finalized {
		if inv.Kind != billing.InvoiceKindAdjustment {
			last = inv
			continue
		}
		if next := inv.PeriodStart.Add(time.Second); next.After(at) {
			at = next
		}
		if inv.FinalizedAt != nil && inv.FinalizedAt.After(at) {
			at = *inv.FinalizedAt
		}
	}
	at = at.Truncate(time.Second)
	if lastStart := last.PeriodStart.Truncate(time.Second); !at.After(lastStart) {
		// Cancelled within the last period's first second: its id (whole
		// seconds) would be that period's.
		at = lastStart.Add(time.Second)
	}
	plan, ok := x.plans[planKey(last.PlanID, last.PlanVersion)]
	if !ok {
		return billing.Invoice{}, time.Time{}, false, fmt.Errorf("subscription %s: plan %s version %d of invoice %s is not loaded", sub.ID, last.PlanID, last.PlanVersion, last.ID)
	}
	inv, err := billing.BuildAdjustmentInvoice(sub, plan, last.PeriodIndex+1, at, adj)
	if err != nil {
		return billing.Invoice{}, time.Time{}, false, fmt.Errorf("subscription %s: %v", sub.ID, err)
	}
	return inv, at.Add(s.Grace), true, nil
}

// Finalizing in chunks: FinalizeDue drafts the due periods of up to
// finalizeChunk subscriptions in one stable section (each meter looked up
// once) and stores them with one SaveInvoices, one transaction; a chunk's
// finalized invoices are read with one ListInvoices. Above
// listCustomersAbove due subscriptions, all customers are read with one
// ListCustomers rather than one GetCustomer each.
const (
	finalizeChunk      = 500
	listCustomersAbove = 200
)

// dueJob is a subscription with periods to finalize.
type dueJob struct {
	sub billing.Subscription
	// due are the periods to finalize, oldest first.
	due []billing.Period
	// invoiced is whether sub has finalized invoices already.
	invoiced bool
	x        *subject
}

// FinalizeDue finalizes, for every subscription, each period whose end
// plus the grace period is at or before now and that is not finalized yet,
// oldest first, and returns how many invoices it stored. It is idempotent
// (a finalized period is skipped; the store keeps one invoice per period)
// and resumable: everything it has stored stays, and a later call picks up
// the rest. An error with one subscription does not stop the others; all
// are returned joined. A store error stops the call.
//
// Which periods are finalized comes from the store's index of invoiced
// periods, so a subscription with nothing due costs no reads. The due ones
// are handled in chunks (see finalizeChunk), each chunk in rounds: a round
// drafts the oldest open period of every subscription in the chunk and
// stores those invoices in one transaction, so a subscription's next
// period is drafted only once the previous one is stored, and its
// adjustments for late usage see the invoice actually stored.
func (s *Service) FinalizeDue(ctx context.Context, now time.Time) (int, error) {
	subs, err := s.Store.ListSubscriptions(ctx, store.SubscriptionFilter{})
	if err != nil {
		return 0, err
	}
	invoiced, err := s.Store.InvoicedPeriods(ctx)
	if err != nil {
		return 0, err
	}
	due := now.Add(-s.Grace)
	var errs []error
	var jobs []*dueJob
	for _, sub := range subs {
		ps, err := Periods(sub, due)
		if err != nil {
			errs = append(errs, fmt.Errorf("subscription %s: periods: %w", sub.ID, err))
			continue
		}
		done := invoiced[sub.ID]
		j := &dueJob{sub: sub, invoiced: len(done) > 0}
		for _, p := range ps {
			if p.End.After(due) {
				break
			}
			us := p.Start.UnixMicro()
			if !slices.ContainsFunc(done, func(t time.Time) bool { return t.UnixMicro() == us }) {
				j.due = append(j.due, p)
			}
		}
		if len(j.due) > 0 {
			jobs = append(jobs, j)
		}
	}
	n := 0
	if len(jobs) > 0 {
		customer, err := s.customers(ctx, len(jobs))
		if err != nil {
			return 0, errors.Join(append(errs, err)...)
		}
		k, err := s.finalizeJobs(ctx, jobs, customer, now, &errs)
		n += k
		if err != nil {
			return n, errors.Join(append(errs, err)...)
		}
	}
	k, err := s.finalizeClosing(ctx, subs, invoiced, now, &errs)
	n += k
	if err != nil {
		errs = append(errs, err)
	}
	if err := s.issueCredits(ctx, subs, invoiced, now, &errs); err != nil {
		errs = append(errs, err)
	}
	return n, errors.Join(errs...)
}

// finalizeJobs finalizes the due periods of jobs, chunk by chunk.
func (s *Service) finalizeJobs(ctx context.Context, jobs []*dueJob, customer func(context.Context, string) (billing.Customer, error), now time.Time, errs *[]error) (int, error) {
	plans := planCache{}
	n := 0
	for chunk := range slices.Chunk(jobs, finalizeChunk) {
		if err := ctx.Err(); err != nil {
			return n, err
		}
		k, err := s.finalizeChunk(ctx, chunk, customer, plans, now, errs)
		n += k
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

// finalizeClosing finalizes the adjustment invoices (see closingDraft) that
// are due, for the ended subscriptions whose subjects received late events
// (from s.Late; none without it), and, with a grace period under an hour,
// for those that ended within the last two hours. A subscription stays on the list while
// its adjustment invoice is not due yet; the list and the position in the
// late events live in memory, so after a restart every late event is
// looked at once more, which finalizes nothing twice.
func (s *Service) finalizeClosing(ctx context.Context, subs []billing.Subscription, invoiced map[string][]time.Time, now time.Time, errs *[]error) (int, error) {
	if s.Late == nil {
		return 0, nil
	}
	s.lateMu.Lock()
	defer s.lateMu.Unlock()
	if s.lateDirty == nil {
		s.lateDirty = map[string]bool{}
	}
	if s.creditDirty == nil {
		s.creditDirty = map[string]bool{}
	}
	bySubject := map[string][]billing.Subscription{}
	for {
		evs, err := s.Late.LateEvents(ctx, s.lateSeq, 10000)
		if err != nil {
			return 0, err
		}
		for _, e := range evs {
			if len(bySubject) == 0 {
				// Index the ended and the invoiced subscriptions by
				// subject once.
				var watched []billing.Subscription
				for _, sub := range subs {
					if sub.CancelAt != nil || len(invoiced[sub.ID]) > 0 {
						watched = append(watched, sub)
					}
				}
				customer, err := s.customers(ctx, len(watched))
				if err != nil {
					return 0, err
				}
				for _, sub := range watched {
					c, err := customer(ctx, sub.CustomerID)
					if err != nil {
						*errs = append(*errs, fmt.Errorf("subscription %s: customer %s: %v", sub.ID, sub.CustomerID, err))
						continue
					}
					// Every subject the customer ever owned: late usage of
					// one it has given up since may be from its time.
					for _, subj := range c.EverOwned() {
						bySubject[subj] = append(bySubject[subj], sub)
					}
				}
				if len(bySubject) == 0 {
					bySubject[""] = nil // nothing to watch: stop indexing
				}
			}
			for _, sub := range bySubject[e.Subject] {
				if sub.CancelAt != nil && e.Time.Before(*sub.CancelAt) {
					s.lateDirty[sub.ID] = true
				}
				if len(invoiced[sub.ID]) > 0 && !e.Time.Before(sub.Start.Truncate(time.Minute)) {
					// Maybe usage of a finalized period: look for credit.
					s.creditDirty[sub.ID] = true
				}
			}
			s.lateSeq = e.Seq
		}
		if len(evs) < 10000 {
			break
		}
	}
	// With a grace period under an hour, an ended subscription's last
	// period can be finalized before the UTC hour of its last instant has
	// ended: events of that hour arriving on time after that are in no
	// late-event index. Look at such a subscription until an hour after
	// that hour has ended.
	for _, sub := range subs {
		if sub.CancelAt == nil || now.Before(*sub.CancelAt) {
			continue
		}
		hourEnd := sub.CancelAt.Add(-1).Truncate(time.Hour).Add(time.Hour)
		if sub.CancelAt.Add(s.Grace).Before(hourEnd) && now.Before(hourEnd.Add(time.Hour)) {
			s.lateDirty[sub.ID] = true
		}
	}
	n := 0
	for _, sub := range subs {
		if !s.lateDirty[sub.ID] {
			continue
		}
		done, keep, err := s.finalizeClosingOne(ctx, sub, now)
		if err != nil {
			*errs = append(*errs, err)
			continue
		}
		n += done
		if !keep {
			delete(s.lateDirty, sub.ID)
		}
	}
	return n, nil
}

// Recheck has the next FinalizeDue look for credit owed on the finalized
// periods of the given subscriptions (see issueCredits). Whatever lowers
// a finalized period's usage other than a late event (whose index
// FinalizeDue reads itself) or a meter change (which it notices) calls
// it.
func (s *Service) Recheck(subscriptionIDs ...string) {
	s.lateMu.Lock()
	defer s.lateMu.Unlock()
	if s.creditDirty == nil {
		s.creditDirty = map[string]bool{}
	}
	for _, id := range subscriptionIDs {
		s.creditDirty[id] = true
	}
}

// issueCredits issues the credit notes owed: for every subscription with
// finalized invoices that may have negative corrections (its subjects
// received late events, a meter changed, a draft or a Recheck found some;
// on the first call, every one), one credit note with a line per negative
// correction (see billing.BuildCreditNote), numbered by the store.
//
// Exactly once: a credit note and the record of what it credits are the
// same stored document, written in one transaction; corrections are
// computed net of the notes issued, and a note's id is its subscription's
// next sequence number, so two runs that compute the same note from the
// same state store it once, and a run that died before storing it leaves
// nothing to undo (the next run computes it again).
func (s *Service) issueCredits(ctx context.Context, subs []billing.Subscription, invoiced map[string][]time.Time, now time.Time, errs *[]error) error {
	metas, err := s.Store.ListMeters(ctx)
	if err != nil {
		return err
	}
	s.lateMu.Lock()
	if s.creditDirty == nil {
		s.creditDirty = map[string]bool{}
	}
	changed := !s.creditInit
	for _, m := range metas {
		if m.UpdatedAt.After(s.metersSeen) {
			// Rollups rebuilt from the raw events: any period may differ.
			changed, s.metersSeen = true, m.UpdatedAt
		}
	}
	if changed {
		for _, sub := range subs {
			if len(invoiced[sub.ID]) > 0 {
				s.creditDirty[sub.ID] = true
			}
		}
	}
	s.creditInit = true
	var todo []billing.Subscription
	for _, sub := range subs {
		if s.creditDirty[sub.ID] {
			todo = append(todo, sub)
		}
	}
	s.lateMu.Unlock()

	for _, sub := range todo {
		if err := ctx.Err(); err != nil {
			return err
		}
		again, err := s.issueCredit(ctx, sub, now)
		if err != nil {
			*errs = append(*errs, err)
			continue
		}
		if again {
			continue // another issuer came first: look again next time
		}
		s.lateMu.Lock()
		delete(s.creditDirty, sub.ID)
		s.lateMu.Unlock()
	}
	return nil
}

// PendingCredit is the credit note that sub's negative corrections as of
// now come to: what the finalizer issues on its next run. ok is false when
// nothing is owed back. Nothing is stored.
func (s *Service) PendingCredit(ctx context.Context, sub billing.Subscription, now time.Time) (cn billing.CreditNote, ok bool, err error) {
	x, err := s.load(ctx, sub)
	if err != nil || len(x.finalized) == 0 {
		return cn, false, err
	}
	var cs []billing.Adjustment
	err = s.stable(func() error {
		var err error
		cs, err = s.corrections(ctx, s.newReader(), x, now)
		return err
	})
	if err != nil {
		return cn, false, fmt.Errorf("subscription %s: credit: %v", sub.ID, err)
	}
	return billing.BuildCreditNote(sub, x.finalized[0].Currency, len(x.credits)+1, now, cs)
}

// issueCredit issues sub's credit note for its negative corrections as of
// now, if it has any; again says that a credit note with its id was
// issued meanwhile (from another state), so sub needs another look.
func (s *Service) issueCredit(ctx context.Context, sub billing.Subscription, now time.Time) (again bool, err error) {
	cn, ok, err := s.PendingCredit(ctx, sub, now)
	if err != nil || !ok {
		return false, err
	}
	_, created, err := s.Store.IssueCreditNote(ctx, cn)
	if err != nil {
		return false, fmt.Errorf("subscription %s: issue credit note: %w", sub.ID, err)
	}
	return !created, nil
}

// finalizeClosingOne finalizes sub's adjustment invoice if it is due; keep
// says whether to look at sub again later (its invoice is not due yet).
func (s *Service) finalizeClosingOne(ctx context.Context, sub billing.Subscription, now time.Time) (n int, keep bool, err error) {
	x, err := s.load(ctx, sub)
	if err != nil {
		return 0, true, err
	}
	ps, err := Periods(sub, now)
	if err != nil {
		return 0, false, fmt.Errorf("subscription %s: periods: %w", sub.ID, err)
	}
	for _, p := range ps {
		if !slices.ContainsFunc(x.finalized, func(inv billing.Invoice) bool { return inv.PeriodStart.Equal(p.Start) }) {
			// An open period carries the late usage; the usual
			// finalization bills it.
			return 0, false, nil
		}
	}
	var inv billing.Invoice
	var due time.Time
	var ok bool
	err = s.stable(func() error {
		var err error
		inv, due, ok, err = s.closing(ctx, s.newReader(), x, now)
		return err
	})
	if err != nil || !ok {
		return 0, false, err
	}
	if now.Before(due) {
		return 0, true, nil
	}
	at := now.UTC()
	inv.Status, inv.FinalizedAt = billing.InvoiceFinalized, &at
	if _, created, err := s.Store.SaveInvoice(ctx, inv); err != nil {
		return 0, true, err
	} else if created {
		n = 1
	}
	return n, false, nil
}

// customers returns a lookup of customers by id for n due subscriptions:
// one read of all customers when n is large, else one read each.
func (s *Service) customers(ctx context.Context, n int) (func(ctx context.Context, id string) (billing.Customer, error), error) {
	if n <= listCustomersAbove {
		return s.Store.GetCustomer, nil
	}
	all, err := s.Store.ListCustomers(ctx, true)
	if err != nil {
		return nil, err
	}
	byID := make(map[string]billing.Customer, len(all))
	for _, c := range all {
		byID[c.ID] = c
	}
	return func(ctx context.Context, id string) (billing.Customer, error) {
		if c, ok := byID[id]; ok {
			return c, nil
		}
		return s.Store.GetCustomer(ctx, id)
	}, nil
}

// finalizeChunk finalizes the due periods of jobs (see FinalizeDue) and
// returns how many invoices it stored. Errors with one subscription are
// added to errs; a store error is returned.
func (s *Service) finalizeChunk(ctx context.Context, jobs []*dueJob, customer func(context.Context, string) (billing.Customer, error), plans planCache, now time.Time, errs *[]error) (int, error) {
	live := make([]*dueJob, 0, len(jobs))
	var invoiced []string
	for _, j := range jobs {
		c, err := customer(ctx, j.sub.CustomerID)
		if err != nil {
			*errs = append(*errs, fmt.Errorf("subscription %s: customer %s: %v", j.sub.ID, j.sub.CustomerID, err))
			continue
		}
		if j.x, err = s.newSubject(ctx, j.sub, c, plans); err != nil {
			*errs = append(*errs, err)
			continue
		}
		if j.invoiced {
			invoiced = append(invoiced, j.sub.ID)
		}
		live = append(live, j)
	}
	if len(invoiced) > 0 {
		fin, err := s.Store.ListInvoices(ctx, store.InvoiceFilter{SubscriptionIDs: invoiced})
		if err != nil {
			return 0, err
		}
		bySub := make(map[string]*subject, len(live))
		for _, j := range live {
			bySub[j.sub.ID] = j.x
		}
		for _, inv := range fin {
			if x := bySub[inv.SubscriptionID]; x != nil {
				x.finalized = append(x.finalized, inv)
			}
		}
		cns, err := s.Store.ListCreditNotes(ctx, store.CreditNoteFilter{SubscriptionIDs: invoiced})
		if err != nil {
			return 0, err
		}
		for _, cn := range cns {
			if x := bySub[cn.SubscriptionID]; x != nil {
				x.credits = append(x.credits, cn)
			}
		}
	}

	at := now.UTC()
	n := 0
	for len(live) > 0 {
		batch := make([]billing.Invoice, 0, len(live))
		owners := make([]*dueJob, 0, len(live))
		err := s.stable(func() error {
			r := s.newReader()
			for _, j := range live {
				if err := ctx.Err(); err != nil {
					return err
				}
				inv, err := s.draft(ctx, r, j.x, j.due[0], true, now)
				if err != nil {
					*errs = append(*errs, err)
					j.due = nil
					continue
				}
				inv.Status, inv.FinalizedAt = billing.InvoiceFinalized, &at
				batch = append(batch, inv)
				owners = append(owners, j)
			}
			return nil
		})
		if err != nil {
			return n, err
		}
		saved, err := s.Store.SaveInvoices(ctx, batch)
		if err != nil {
			return n, err
		}
		for i, sv := range saved {
			j := owners[i]
			if sv.Created {
				n++
			}
			j.x.finalized = append(j.x.finalized, sv.Invoice)
			j.due = j.due[1:]
		}
		live = slices.DeleteFunc(live, func(j *dueJob) bool { return len(j.due) == 0 })
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
