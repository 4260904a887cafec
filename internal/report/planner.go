package report

import (
	"context"
	"fmt"
	"time"

	"github.com/shopspring/decimal"

	"github.com/tally-metering/tally/internal/billing"
	"github.com/tally-metering/tally/internal/meter"
	"github.com/tally-metering/tally/internal/usage"
)

// planner is one Plan call's working state and caches.
type planner struct {
	r       *Runner
	now     time.Time
	through time.Time
	late    map[string]time.Time
	// lateHours are the hours of each subject's late events.
	lateHours map[string]map[int64]bool
	streams   map[string]Stream
	// bySub lists the ids of each subscription's streams, so that planning
	// one subscription does not walk every stream.
	bySub     map[string][]string
	customers map[string]billing.Customer
	plans     map[string]billing.Plan
	meters    map[string]meter.Meter
	// corrections are the streams planned now that reported more than
	// their usage makes reportable, at a target that can take reports back.
	corrections []Stream
}

func (p *planner) customer(ctx context.Context, id string) (billing.Customer, error) {
	if c, ok := p.customers[id]; ok {
		return c, nil
	}
	c, err := p.r.Store.GetCustomer(ctx, id)
	if err != nil {
		return c, fmt.Errorf("customer %s: %w", id, err)
	}
	p.customers[id] = c
	return c, nil
}

func (p *planner) plan(ctx context.Context, id string, version int) (billing.Plan, error) {
	k := fmt.Sprintf("%s@%d", id, version)
	if pl, ok := p.plans[k]; ok {
		return pl, nil
	}
	pl, err := p.r.Store.GetPlan(ctx, id, version)
	if err != nil {
		return pl, fmt.Errorf("plan %s version %d: %w", id, version, err)
	}
	p.plans[k] = pl
	return pl, nil
}

func (p *planner) meter(ctx context.Context, slug string) (meter.Meter, error) {
	if m, ok := p.meters[slug]; ok {
		return m, nil
	}
	m, err := p.r.Store.GetMeter(ctx, slug)
	if err != nil {
		return m, fmt.Errorf("meter %s: %w", slug, err)
	}
	p.meters[slug] = m
	return m, nil
}

// segment is one plan-version segment of a billing period.
type segment struct {
	start, end time.Time
	plan       billing.Plan
}

// segments returns sub's segments overlapping [from, to), ending at its
// cancellation.
func segmentsOf(sub billing.Subscription, from, to time.Time) ([]billing.Segment, error) {
	loc, err := sub.Location()
	if err != nil {
		return nil, err
	}
	if sub.CancelAt != nil && sub.CancelAt.Before(to) {
		to = *sub.CancelAt
	}
	ps, err := billing.Periods(sub.Start, sub.Cadence, sub.BillingAnchor, loc, from, to)
	if err != nil {
		return nil, err
	}
	var out []billing.Segment
	for _, pr := range ps {
		if sub.CancelAt != nil && sub.CancelAt.Before(pr.End) {
			// Cut as invoices cut it (invoicing.Periods): a shorter
			// period of the same full length, its included quantity
			// prorated on a plan that prorates it.
			pr.FullEnd, pr.End = pr.End, *sub.CancelAt
		}
		for _, sg := range sub.Segments(pr) {
			if sg.Period.End.After(from) && sg.Period.Start.Before(to) {
				out = append(out, sg)
			}
		}
	}
	return out, nil
}

// entry is one reporting entry of a charge on one segment.
type entry struct {
	charge billing.PlanCharge
	rep    billing.Reporting
}

// subscription plans every stream of sub.
func (p *planner) subscription(ctx context.Context, sub billing.Subscription) ([]Stream, []Report, error) {
	horizon := p.through.Add(time.Hour)
	lookback := orDur(p.r.Lookback, DefaultLookback)
	if sub.CancelAt != nil && !sub.CancelAt.After(p.through.Add(time.Hour).Add(-lookback)) {
		// Ended long enough ago that nothing is tracked any more, unless a
		// stream still holds a segment.
		if !p.hasTracked(sub.ID) {
			return nil, nil, nil
		}
	}
	if !sub.Start.Before(horizon) {
		return nil, nil, nil
	}
	c, err := p.customer(ctx, sub.CustomerID)
	if err != nil {
		return nil, nil, err
	}
	// The earliest instant any stream of sub still needs: its tracked
	// segments, or, for a stream seen for the first time, the period that
	// was current a lookback ago (so that a reporter that was down across
	// a period boundary still reports the end of the earlier period).
	cur, err := sub.CurrentPeriod(p.through.Add(-lookback))
	if err != nil {
		return nil, nil, err
	}
	from := cur.Start
	for _, id := range p.bySub[sub.ID] {
		for _, sg := range p.streams[id].Segments {
			if sg.Start.Before(from) {
				from = sg.Start
			}
		}
	}
	segs, err := segmentsOf(sub, from, horizon)
	if err != nil {
		return nil, nil, err
	}
	lateAt, hasLate := time.Time{}, false
	for _, s := range c.EverOwned() {
		if t, ok := p.late[s]; ok && (!hasLate || t.Before(lateAt)) {
			lateAt, hasLate = t, true
		}
	}

	// Group the reporting entries by stream. Every segment a stream
	// tracks goes to PlanStream; only streams with a new hour or late usage
	// are planned at all.
	type streamWork struct {
		target Target
		rep    billing.Reporting
		inputs []SegmentInput
		busy   bool
		// lateFrom names where usage found in hours planned earlier
		// comes from (PlanInput.LateFrom).
		lateFrom []string
		// bySubject is the new hours' usage per subject (deployments only).
		bySubject map[string]map[int64]decimal.Decimal
	}
	work := map[string]*streamWork{}
	var order []string
	for _, sg := range segs {
		pl, err := p.plan(ctx, sg.PlanID, sg.PlanVersion)
		if err != nil {
			return nil, nil, err
		}
		for _, pc := range pl.Charges {
			if len(pc.Reporting) == 0 || pc.Included.Unlimited {
				continue
			}
			q := chargeQuery{p: p, pc: pc, customer: c, bySubject: len(deployments(c)) > 0}
			for _, rep := range pc.Reporting {
				t, ok := p.r.target(rep.Target)
				if !ok {
					continue
				}
				id := StreamID(rep.Target, sub.ID, "", rep.Dimension)
				st, known := p.streams[id]
				var tracked *SegmentState
				for i := range st.Segments {
					if st.Segments[i].Start.Equal(sg.Period.Start) {
						tracked = &st.Segments[i]
					}
				}
				var lastEnd time.Time
				if !st.LastHour.IsZero() {
					lastEnd = st.LastHour.Add(time.Hour)
				}
				switch {
				case tracked != nil:
				case !known && !sg.Period.End.After(cur.Start):
					continue // before the stream's first period
				case !lastEnd.IsZero() && !sg.Period.End.After(lastEnd.Add(-lookback)):
					continue // settled
				}
				sFrom := sg.Period.Start
				if lastEnd.After(sFrom) {
					sFrom = lastEnd
				}
				// The minute of the subscription's end is its last
				// segment's (billing.Subscription.UsageEnd), as invoices
				// count it.
				usageEnd := sg.Period.End
				if u := sub.UsageEnd(usageEnd); u.After(usageEnd) {
					usageEnd = u
				}
				segEnd := minTime(usageEnd, horizon)
				needHours := sFrom.Before(segEnd)
				// lateAt is the earliest late event: later ones may lie in
				// any segment after it.
				isLate := hasLate && lateAt.Before(minTime(sFrom, sg.Period.End))
				byEvents := isLate
				if known && tracked != nil && !isLate {
					// A meter changed since the stream was planned was
					// rebuilt from the raw events: recount what the stream
					// has seen, as for late events.
					m, err := p.meter(ctx, pc.Meter)
					if err != nil {
						return nil, nil, err
					}
					isLate = m.UpdatedAt.After(st.UpdatedAt)
				}
				in := SegmentInput{Start: sg.Period.Start, End: sg.Period.End, From: sFrom, Base: decimal.Zero}
				var lateNames []string
				if in.Band, err = bandOf(pc, pc.IncludedFor(sg.Period, pl.ProrateIncluded), rep); err != nil {
					return nil, nil, err
				}
				switch {
				case isLate || (tracked == nil && sFrom.After(sg.Period.Start)):
					// Recount what the stream had seen: late events, or a
					// segment it starts tracking late.
					// A segment that ended before sFrom is counted to its
					// end only: what follows is another segment's usage.
					recounted := minTime(sFrom, usageEnd)
					if in.Base, err = q.total(ctx, sg.Period.Start, recounted); err != nil {
						return nil, nil, err
					}
					if byEvents {
						lateNames = p.lateHoursOf(c, sg.Period.Start, recounted)
					} else {
						lateNames = []string{hourOf(sg.Period.Start).Format(time.RFC3339) + "/" + recounted.UTC().Format(time.RFC3339)}
					}
				case tracked != nil:
					in.Base = tracked.Usage
				}
				var hs usageByHour
				if needHours {
					if hs, err = q.hourly(ctx, sFrom, segEnd); err != nil {
						return nil, nil, err
					}
					in.Hours = hs.total
				}
				w := work[id]
				if w == nil {
					w = &streamWork{target: t, rep: rep, bySubject: map[string]map[int64]decimal.Decimal{}}
					work[id] = w
					order = append(order, id)
				}
				for subj, byHour := range hs.subjects {
					m := w.bySubject[subj]
					if m == nil {
						m = map[int64]decimal.Decimal{}
						w.bySubject[subj] = m
					}
					for h, v := range byHour {
						m[h] = m[h].Add(v)
					}
				}
				w.inputs = append(w.inputs, in)
				w.lateFrom = mergeNames(w.lateFrom, lateNames)
				// A tracked segment keeps its stream planned without new
				// usage (a cancelled subscription, a charge dropped by a plan
				// change): an expired report's quantity must reach a later
				// hour, and the segment must settle after the lookback.
				w.busy = w.busy || needHours || isLate || tracked != nil
			}
		}
	}
	var outStreams []Stream
	var outReports []Report
	for _, id := range order {
		w := work[id]
		if !w.busy {
			continue
		}
		st, known := p.streams[id]
		if !known {
			st = Stream{ID: id, Target: w.target.Name, SubscriptionID: sub.ID, CustomerID: sub.CustomerID, Dimension: w.rep.Dimension}
		}
		caps := w.target.Sender.Capabilities()
		_, canCancel := w.target.Sender.(Canceler)
		in := PlanInput{Stream: st, Segments: w.inputs, Through: p.through, Decimals: caps.Decimals, Lookback: lookback,
			Negative: caps.Negative, Refund: !caps.Negative && !canCancel, LateFrom: w.lateFrom}
		split := w.target.Type == TypeAzure && len(deployments(c)) > 0
		if split {
			// The whole subscription's quantity, exact, to be shared out.
			in.Decimals = -1
		}
		nst, planned := PlanStream(in)
		nst.UpdatedAt = p.now
		outStreams = append(outStreams, nst)
		if d := nst.Rounded.Sub(st.Rounded); !d.IsZero() {
			p.r.log().Info("carried fraction settled at a period's end", "stream", id, "target", w.target.Name, "customer", c.Key,
				"subscription", sub.ID, "dimension", w.rep.Dimension, "rounding", d.String())
		}
		res, resErr := ResourceFor(w.target.Type, c, sub)
		if split {
			res, resErr = Resource{CustomerID: c.ID, CustomerKey: c.Key, SubscriptionID: sub.ID}, nil
		}
		var shared []Planned
		for _, pl := range planned {
			if !pl.Refund {
				shared = append(shared, pl)
				continue
			}
			outReports = append(outReports, p.refund(w.target, sub, c, id, w.rep.Dimension, res, pl))
		}
		planned = shared
		if split {
			sts, reps := p.allocate(sub, c, w.target, w.rep.Dimension, st.LastHour, planned, w.bySubject)
			outStreams = append(outStreams, sts...)
			outReports = append(outReports, reps...)
			continue
		}
		for _, pl := range planned {
			rep := Report{
				ID: ReportID(w.target.Name, sub.ID, "", w.rep.Dimension, pl.Hour), StreamID: id, Target: w.target.Name,
				SubscriptionID: sub.ID, CustomerID: sub.CustomerID, Dimension: w.rep.Dimension, Resource: res,
				Hour: pl.Hour, Quantity: pl.Quantity, Usage: pl.Usage, Late: pl.Late, LateFrom: pl.LateFrom, Rounding: pl.Rounding,
				State: StatePending, NextAttemptAt: p.now, CreatedAt: p.now, UpdatedAt: p.now,
			}
			if resErr != nil {
				rep.State, rep.LastError = StateFailed, resErr.Error()
			}
			outReports = append(outReports, rep)
		}
	}
	return outStreams, outReports, nil
}

// lateHoursOf names the hours in [from, to) in which the subjects c ever
// owned had late events, each as an RFC 3339 hour.
func (p *planner) lateHoursOf(c billing.Customer, from, to time.Time) []string {
	var out []string
	for _, s := range c.EverOwned() {
		for h := range p.lateHours[s] {
			if t := time.Unix(h, 0).UTC(); !t.Before(hourOf(from)) && t.Before(to) {
				out = append(out, t.Format(time.RFC3339))
			}
		}
	}
	return mergeNames(out, nil)
}

// refund is the record of an excess the target keeps billing (it can
// neither take negative quantities nor take reports back) and that no
// later usage of the period can net: state refund, never sent, with the
// negative quantity a person is to refund. Its message is the alert's.
func (p *planner) refund(t Target, sub billing.Subscription, c billing.Customer, streamID, dim string, res Resource, pl Planned) Report {
	msg := fmt.Sprintf("%s can't take usage back: customer %s (%s, subscription %s) is billed %s units of dimension %s more than its usage up to %s; refund them to the customer at %s",
		t.Name, c.Key, resourceName(res), sub.ID, pl.Quantity.Neg(), dim, pl.Hour.Add(time.Hour).Format(time.RFC3339), t.Name)
	return Report{
		ID: RefundID(t.Name, sub.ID, res.Subject, dim, pl.Hour), StreamID: streamID, Target: t.Name,
		SubscriptionID: sub.ID, CustomerID: sub.CustomerID, Dimension: dim, Resource: res,
		Hour: pl.Hour, Quantity: pl.Quantity, Usage: pl.Usage, Late: pl.Late, LateFrom: pl.LateFrom,
		State: StateRefund, LastError: msg, NextAttemptAt: p.now, CreatedAt: p.now, UpdatedAt: p.now,
	}
}

// chargeQuery reads one charge's usage for one customer, caching each
// range it was asked for.
type chargeQuery struct {
	p         *planner
	pc        billing.PlanCharge
	customer  billing.Customer
	bySubject bool
	m         *meter.Meter
	cache     map[[2]int64]usageByHour
}

func (q *chargeQuery) hourly(ctx context.Context, from, to time.Time) (usageByHour, error) {
	k := [2]int64{from.Unix(), to.Unix()}
	if h, ok := q.cache[k]; ok {
		return h, nil
	}
	if q.m == nil {
		m, err := q.p.meter(ctx, q.pc.Meter)
		if err != nil {
			return usageByHour{}, err
		}
		if m.Aggregation != meter.Sum && m.Aggregation != meter.Count {
			return usageByHour{}, fmt.Errorf("charge %s: meter %s aggregates with %s; only SUM and COUNT usage can be reported by the hour", q.pc.Key, m.Slug, m.Aggregation)
		}
		q.m = &m
	}
	h, err := q.p.hourly(ctx, *q.m, q.customer, q.pc.FilterGroupBy, from, to, q.bySubject)
	if err != nil {
		return usageByHour{}, err
	}
	if q.cache == nil {
		q.cache = map[[2]int64]usageByHour{}
	}
	q.cache[k] = h
	return h, nil
}

func (q *chargeQuery) total(ctx context.Context, from, to time.Time) (decimal.Decimal, error) {
	h, err := q.hourly(ctx, from, to)
	sum := decimal.Zero
	for _, v := range h.total {
		sum = sum.Add(v)
	}
	return sum, err
}

func (p *planner) hasTracked(subID string) bool {
	for _, id := range p.bySub[subID] {
		if len(p.streams[id].Segments) > 0 {
			return true
		}
	}
	return false
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

func floorMinute(t time.Time) time.Time { return t.UTC().Truncate(time.Minute) }

func (p *planner) stable(fn func() error) error {
	if p.r.Stable != nil {
		return p.r.Stable(fn)
	}
	return fn()
}

// hourly is customer c's usage in [from, to) per UTC hour, in all and per
// subject when bySubject: each subject's usage only in the minutes c owned
// it (see billing.Ownership), so that an hour of a subject that moved
// between customers is counted once.
func (p *planner) hourly(ctx context.Context, m meter.Meter, c billing.Customer, filter map[string]string, from, to time.Time, bySubject bool) (usageByHour, error) {
	out := usageByHour{total: map[int64]decimal.Decimal{}}
	f, t := floorMinute(from), floorMinute(to)
	if !f.Before(t) {
		return out, nil
	}
	subjects, within := c.UsageSubjects(f, t)
	if len(subjects) == 0 {
		return out, nil
	}
	q := usage.Query{Meter: m, From: &f, To: &t, WindowSize: usage.WindowSizeHour, Subjects: subjects, Within: within, FilterGroupBy: filter}
	if bySubject {
		q.GroupBy = []string{usage.SubjectGroup}
		out.subjects = map[string]map[int64]decimal.Decimal{}
	}
	err := p.stable(func() error {
		res, err := p.r.Usage.Query(ctx, q)
		if err != nil {
			return err
		}
		for _, row := range res.Rows {
			k := hourOf(row.WindowStart).Unix()
			out.total[k] = out.total[k].Add(row.Value)
			if bySubject && row.Subject != nil {
				hs := out.subjects[*row.Subject]
				if hs == nil {
					hs = map[int64]decimal.Decimal{}
					out.subjects[*row.Subject] = hs
				}
				hs[k] = hs[k].Add(row.Value)
			}
		}
		return nil
	})
	return out, err
}

// usageByHour is usage per UTC hour (Unix seconds of its start), in all
// and, when asked for, per subject.
type usageByHour struct {
	total    map[int64]decimal.Decimal
	subjects map[string]map[int64]decimal.Decimal
}

// bandOf is the usage band reporting entry rep of charge pc reports in a
// segment whose included quantity is included (PlanCharge.IncludedFor the
// segment, as its invoice rates it): the usage above it, or one graduated
// tier of it.
func bandOf(pc billing.PlanCharge, included billing.Included, rep billing.Reporting) (Band, error) {
	unit := rep.UnitSize
	if unit.Sign() <= 0 {
		unit = decimal.NewFromInt(1)
	}
	b := Band{Lo: included.Quantity, UnitSize: unit}
	if rep.Tier == 0 {
		return b, nil
	}
	tiers := pc.Pricing.Tiers
	if rep.Tier < 1 || rep.Tier > len(tiers) {
		return b, fmt.Errorf("charge %s: reporting tier %d: the pricing has %d tiers", pc.Key, rep.Tier, len(tiers))
	}
	lo := decimal.Zero
	if rep.Tier > 1 {
		lo = *tiers[rep.Tier-2].UpTo
	}
	b.Lo = included.Quantity.Add(lo)
	if up := tiers[rep.Tier-1].UpTo; up != nil {
		hi := included.Quantity.Add(*up)
		b.Hi = &hi
	}
	return b, nil
}

// ResourceFor is customer c's identity at a target of the given type for
// subscription sub, or an error naming what the customer lacks.
func ResourceFor(targetType string, c billing.Customer, sub billing.Subscription) (Resource, error) {
	r := Resource{CustomerID: c.ID, CustomerKey: c.Key, SubscriptionID: sub.ID}
	x := c.External
	switch targetType {
	case TypeAzure:
		if x.Azure == nil || (x.Azure.ResourceID == "" && x.Azure.ResourceURI == "") {
			return r, fmt.Errorf("customer %s has no external.azure.resourceId or resourceUri", c.Key)
		}
		r.AzureResourceID, r.AzureResourceURI, r.AzurePlanID = x.Azure.ResourceID, x.Azure.ResourceURI, x.Azure.PlanID
	case TypeAWS:
		if x.AWS == nil || (x.AWS.CustomerIdentifier == "" && x.AWS.CustomerAWSAccountID == "") {
			return r, fmt.Errorf("customer %s has no external.aws.customerIdentifier or customerAWSAccountId", c.Key)
		}
		r.AWSCustomerIdentifier, r.AWSCustomerAWSAccountID, r.AWSLicenseArn = x.AWS.CustomerIdentifier, x.AWS.CustomerAWSAccountID, x.AWS.LicenseArn
	case TypeStripe:
		if x.Stripe == nil || x.Stripe.CustomerID == "" {
			return r, fmt.Errorf("customer %s has no external.stripe.customerId", c.Key)
		}
		r.StripeCustomerID = x.Stripe.CustomerID
	}
	return r, nil
}
