package report

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/shopspring/decimal"

	"github.com/tally-metering/tally/internal/billing"
	"github.com/tally-metering/tally/internal/meter"
	"github.com/tally-metering/tally/internal/store"
	"github.com/tally-metering/tally/internal/usage"
)

// Target types: what kind of provider a configured target speaks to.
const (
	TypeAzure   = "azure-marketplace"
	TypeAWS     = "aws-marketplace"
	TypeStripe  = "stripe"
	TypeWebhook = "webhook"
)

// Target is one configured reporting target.
type Target struct {
	// Name is what plan charges' reporting entries refer to.
	Name string
	// Type is one of TypeAzure, TypeAWS, TypeStripe, TypeWebhook.
	Type   string
	Sender Sender
}

// Defaults of the Runner's settings.
const (
	DefaultSettleDelay = 5 * time.Minute
	DefaultLookback    = 24 * time.Hour
	DefaultMargin      = 2 * time.Hour
	DefaultBackoff     = 30 * time.Second
	DefaultMaxBackoff  = time.Hour
	DefaultSendTimeout = time.Minute
)

// Alert is something a person should look at: a report that failed, expired
// or is about to miss its target's window.
type Alert struct {
	Kind    string `json:"kind"` // "failed", "expired", "deadline", "duplicate"
	Report  Report `json:"report"`
	Message string `json:"message"`
}

// Runner plans reports for closed hours and delivers them. Plan and Send
// are safe to call from one goroutine at a time each; Run does both on a
// schedule.
type Runner struct {
	Store  store.Store
	Outbox Outbox
	Usage  *usage.Service
	// Stable, if set, runs a usage read while no meter definition changes.
	Stable  func(fn func() error) error
	Targets []Target
	// SettleDelay is how long after an hour's end it is planned (time for
	// late events; 0: none, see DefaultSettleDelay); Lookback how long after a billing period's end late
	// usage for it is still reported; Margin how long before a target's
	// window closes an unaccepted report raises an alert.
	SettleDelay, Lookback, Margin time.Duration
	// Backoff and MaxBackoff bound the delay before a retry: Backoff
	// doubled per attempt, at most MaxBackoff, with jitter.
	Backoff, MaxBackoff time.Duration
	// SendTimeout bounds one Send call; a report left sending (a crash) is
	// due again after twice that.
	SendTimeout time.Duration
	// Workers is how many Send calls run at once per target (default 4).
	Workers int
	Now     func() time.Time
	Log     *slog.Logger
	// Alert receives alerts (nil: logged only).
	Alert func(ctx context.Context, a Alert)
	// Metrics, if set, counts what the runner does.
	Metrics *Metrics

	mu          sync.Mutex
	lastThrough time.Time
	atRisk      map[string]int
	alerted     map[string]bool
}

func (r *Runner) target(name string) (Target, bool) {
	for _, t := range r.Targets {
		if t.Name == name {
			return t, true
		}
	}
	return Target{}, false
}

func orDur(v, def time.Duration) time.Duration {
	if v <= 0 {
		return def
	}
	return v
}

func (r *Runner) log() *slog.Logger {
	if r.Log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return r.Log
}

// Through is the start of the last hour that is closed and settled at now.
func Through(now time.Time, settle time.Duration) time.Time {
	return hourOf(now.Add(-settle)).Add(-time.Hour)
}

// PlanStats says what one Plan call did.
type PlanStats struct {
	Subscriptions, Streams, Reports int
	Through                         time.Time
}

// Plan plans the reports of every closed, settled hour not planned yet,
// and re-plans streams whose subjects received late events. When no new
// hour closed since the last call, only subscriptions with late events are
// looked at.
func (r *Runner) Plan(ctx context.Context) (PlanStats, error) {
	now := r.Now().UTC()
	through := Through(now, max(r.SettleDelay, 0))
	stats := PlanStats{Through: through}
	cursor, err := r.Outbox.LateCursor(ctx)
	if err != nil {
		return stats, err
	}
	late := map[string]time.Time{} // subject → earliest late event time
	lateSeq := map[string]int64{}  // subject → its first late event's seq
	newCursor := cursor
	for {
		evs, err := r.Outbox.LateEvents(ctx, newCursor, 10000)
		if err != nil {
			return stats, err
		}
		for _, e := range evs {
			if t, ok := late[e.Subject]; !ok || e.Time.Before(t) {
				late[e.Subject] = e.Time
			}
			if _, ok := lateSeq[e.Subject]; !ok {
				lateSeq[e.Subject] = e.Seq
			}
			newCursor = e.Seq
		}
		if len(evs) < 10000 {
			break
		}
	}
	r.mu.Lock()
	full := !through.Equal(r.lastThrough)
	r.mu.Unlock()
	if !full && len(late) == 0 {
		return stats, nil
	}

	var subs []billing.Subscription
	if full {
		if subs, err = r.Store.ListSubscriptions(ctx, store.SubscriptionFilter{}); err != nil {
			return stats, fmt.Errorf("plan reports: %w", err)
		}
	} else {
		// Every customer that ever owned the subject: a late event may be
		// from before it moved to its current owner.
		seen := map[string]bool{}
		for _, subject := range sortedKeys(late) {
			ids, err := r.Store.CustomersOfSubject(ctx, subject)
			if err != nil {
				return stats, fmt.Errorf("plan reports: %w", err)
			}
			for _, id := range ids {
				if seen[id] {
					continue
				}
				seen[id] = true
				cs, err := r.Store.ListSubscriptions(ctx, store.SubscriptionFilter{CustomerID: id})
				if err != nil {
					return stats, fmt.Errorf("plan reports: %w", err)
				}
				subs = append(subs, cs...)
			}
		}
	}
	// A full pass needs every stream; one for late events only those of
	// the subscriptions concerned.
	var only []string
	if !full {
		only = make([]string, 0, len(subs))
		for _, sub := range subs {
			only = append(only, sub.ID)
		}
	}
	streams, err := r.Outbox.LoadStreams(ctx, only)
	if err != nil {
		return stats, err
	}
	byID := make(map[string]Stream, len(streams))
	bySub := map[string][]string{}
	for _, s := range streams {
		byID[s.ID] = s
		bySub[s.SubscriptionID] = append(bySub[s.SubscriptionID], s.ID)
	}
	p := &planner{r: r, now: now, through: through, late: late, streams: byID, bySub: bySub,
		customers: map[string]billing.Customer{}, plans: map[string]billing.Plan{}, meters: map[string]meter.Meter{}}
	var batchStreams []Stream
	var batchReports []Report
	hold := newCursor // the late cursor may not pass a failed subscription's late events
	flush := func(final bool) error {
		if len(batchStreams) == 0 && !final {
			return nil
		}
		seq := cursor
		if final {
			seq = min(newCursor, hold)
		}
		if err := r.Outbox.CommitPlan(ctx, batchStreams, batchReports, seq); err != nil {
			return err
		}
		stats.Reports += len(batchReports)
		// A report that fails as it is planned (the customer has no
		// identity at the target) needs a person as much as one the target
		// rejects.
		for _, rp := range batchReports {
			if rp.State == StateFailed {
				r.alert(ctx, Alert{Kind: "failed", Report: rp, Message: fmt.Sprintf("report %s cannot be sent to %s: %s; fix the cause, then POST /api/v1/reports/%s/retry", rp.ID, rp.Target, rp.LastError, rp.ID)})
			}
		}
		batchStreams, batchReports = batchStreams[:0], batchReports[:0]
		return nil
	}
	for _, sub := range subs {
		sts, reps, err := p.subscription(ctx, sub)
		for _, st := range sts {
			if st.Excess.Sign() > 0 {
				if t, ok := r.target(st.Target); ok {
					if _, can := t.Sender.(Canceler); can {
						p.corrections = append(p.corrections, st)
					}
				}
			}
		}
		if err != nil {
			// One subscription's problem must not stop the others. Its
			// late events stay unread, for the next plan to find.
			r.log().Error("plan reports", "subscription", sub.ID, "err", err)
			r.Metrics.planError()
			if c, ok := p.customers[sub.CustomerID]; ok {
				for _, s := range c.EverOwned() {
					if seq, ok := lateSeq[s]; ok {
						hold = min(hold, seq-1)
					}
				}
			} else if len(late) > 0 {
				hold = cursor
			}
			continue
		}
		if len(sts) > 0 {
			stats.Subscriptions++
		}
		stats.Streams += len(sts)
		batchStreams = append(batchStreams, sts...)
		batchReports = append(batchReports, reps...)
		if len(batchStreams) >= 2000 {
			if err := flush(false); err != nil {
				return stats, err
			}
		}
	}
	if err := flush(true); err != nil {
		return stats, err
	}
	for _, st := range p.corrections {
		if err := r.correct(ctx, st); err != nil {
			r.log().Error("correct reports", "stream", st.ID, "err", err)
		}
	}
	r.Metrics.countPlanned(stats.Reports)
	if full {
		r.mu.Lock()
		r.lastThrough = through
		r.mu.Unlock()
	}
	return stats, nil
}

// planner is one Plan call's working state and caches.
type planner struct {
	r       *Runner
	now     time.Time
	through time.Time
	late    map[string]time.Time
	streams map[string]Stream
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
			pr.End = *sub.CancelAt
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
				if in.Band, err = bandOf(pc, rep); err != nil {
					return nil, nil, err
				}
				switch {
				case isLate || (tracked == nil && sFrom.After(sg.Period.Start)):
					// Recount what the stream had seen: late events, or a
					// segment it starts tracking late.
					// A segment that ended before sFrom is counted to its
					// end only: what follows is another segment's usage.
					if in.Base, err = q.total(ctx, sg.Period.Start, minTime(sFrom, usageEnd)); err != nil {
						return nil, nil, err
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
		decimals := w.target.Sender.Capabilities().Decimals
		split := w.target.Type == TypeAzure && len(deployments(c)) > 0
		if split {
			// The whole subscription's quantity, exact, to be shared out.
			decimals = -1
		}
		nst, planned := PlanStream(PlanInput{Stream: st, Segments: w.inputs, Through: p.through, Decimals: decimals, Lookback: lookback})
		nst.UpdatedAt = p.now
		outStreams = append(outStreams, nst)
		if split {
			sts, reps := p.allocate(sub, c, w.target, w.rep.Dimension, st.LastHour, planned, w.bySubject)
			outStreams = append(outStreams, sts...)
			outReports = append(outReports, reps...)
			continue
		}
		res, resErr := ResourceFor(w.target.Type, c, sub)
		for _, pl := range planned {
			rep := Report{
				ID: ReportID(w.target.Name, sub.ID, "", w.rep.Dimension, pl.Hour), StreamID: id, Target: w.target.Name,
				SubscriptionID: sub.ID, CustomerID: sub.CustomerID, Dimension: w.rep.Dimension, Resource: res,
				Hour: pl.Hour, Quantity: pl.Quantity, Usage: pl.Usage, Late: pl.Late,
				State: StatePending, NextAttemptAt: p.now, CreatedAt: p.now, UpdatedAt: p.now,
			}
			if pl.Late.Sign() > 0 {
				rep.LateFrom = lateFrom(pl, hasLate, lateAt)
			}
			if resErr != nil {
				rep.State, rep.LastError = StateFailed, resErr.Error()
			}
			outReports = append(outReports, rep)
		}
	}
	return outStreams, outReports, nil
}

// deployments maps the subjects a customer reports per Azure deployment to
// the deployment.
func deployments(c billing.Customer) map[string]billing.AzureDeployment {
	if c.External.Azure == nil || len(c.External.Azure.Deployments) == 0 {
		return nil
	}
	out := make(map[string]billing.AzureDeployment, len(c.External.Azure.Deployments))
	for _, d := range c.External.Azure.Deployments {
		out[d.Subject] = d
	}
	return out
}

// mainResource names the stream of a split subscription's subjects that
// have no deployment of their own.
const mainResource = "#main"

// allocate shares a subscription's exact hourly quantities (planned, from
// its aggregate stream) among its resources: each deployment's subject,
// and the customer's own resource for the other subjects. An hour's
// quantity is shared in proportion to each resource's usage in that hour;
// a quantity in an hour without usage (late usage, an expired report's
// quantity) in proportion to the resources' usage over the hours planned
// now, or, without any, to the customer's own resource (the first
// deployment when it has none). Each resource's stream carries its
// fraction the target can't take, as a whole subscription's would.
func (p *planner) allocate(sub billing.Subscription, c billing.Customer, t Target, dim string, prevLast time.Time, planned []Planned, bySubject map[string]map[int64]decimal.Decimal) ([]Stream, []Report) {
	deps := deployments(c)
	keyOf := func(subject string) string {
		if _, ok := deps[subject]; ok {
			return subject
		}
		return mainResource
	}
	// Usage per resource, per hour and over all.
	perHour := map[string]map[int64]decimal.Decimal{}
	overall := map[string]decimal.Decimal{}
	for subj, hs := range bySubject {
		k := keyOf(subj)
		if perHour[k] == nil {
			perHour[k] = map[int64]decimal.Decimal{}
		}
		for h, v := range hs {
			perHour[k][h] = perHour[k][h].Add(v)
			overall[k] = overall[k].Add(v)
		}
	}
	fallback := mainResource
	if az := c.External.Azure; az.ResourceID == "" && az.ResourceURI == "" {
		fallback = c.External.Azure.Deployments[0].Subject
	}
	streams := map[string]*Stream{}
	var keys []string
	stream := func(k string) *Stream {
		if st := streams[k]; st != nil {
			return st
		}
		id := StreamID(t.Name, sub.ID, k, dim)
		st, ok := p.streams[id]
		if !ok {
			st = Stream{ID: id, Target: t.Name, SubscriptionID: sub.ID, CustomerID: sub.CustomerID, Dimension: dim, Subject: k}
		}
		streams[k] = &st
		keys = append(keys, k)
		return &st
	}
	decimals := t.Sender.Capabilities().Decimals
	var reps []Report
	emit := func(k string, h time.Time, pl Planned) {
		st := stream(k)
		q := st.Owed.Sub(st.Reported)
		if decimals >= 0 {
			q = q.Truncate(decimals)
		}
		if q.Sign() <= 0 {
			return
		}
		st.Reported = st.Reported.Add(q)
		res, err := resourceOfDeployment(c, sub, k, deps)
		rep := Report{
			ID: ReportID(t.Name, sub.ID, k, dim, h), StreamID: st.ID, Target: t.Name, SubscriptionID: sub.ID, CustomerID: sub.CustomerID,
			Dimension: dim, Resource: res, Hour: h, Quantity: q, Usage: pl.Usage, Late: pl.Late,
			State: StatePending, NextAttemptAt: p.now, CreatedAt: p.now, UpdatedAt: p.now,
		}
		if err != nil {
			rep.State, rep.LastError = StateFailed, err.Error()
		}
		reps = append(reps, rep)
	}
	emitted := map[string]int64{} // resource → last hour reported now
	for _, pl := range planned {
		h := pl.Hour.Unix()
		weights := map[string]decimal.Decimal{}
		for k, hs := range perHour {
			if v := hs[h]; v.Sign() > 0 {
				weights[k] = v
			}
		}
		if len(weights) == 0 {
			for k, v := range overall {
				if v.Sign() > 0 {
					weights[k] = v
				}
			}
		}
		if len(weights) == 0 {
			weights[fallback] = decimal.NewFromInt(1)
		}
		for k, share := range shareOut(pl.Quantity, weights) {
			st := stream(k)
			st.Owed = st.Owed.Add(share)
		}
		for _, k := range sortedKeys(weights) {
			emit(k, pl.Hour, pl)
			emitted[k] = h
		}
	}
	// Quantity a resource still owes (carried fractions aside: an expired
	// report's) goes out with the last hour planned now.
	if last := p.through; last.After(prevLast) {
		for _, id := range p.bySub[sub.ID] {
			if st := p.streams[id]; st.Target == t.Name && st.Dimension == dim && st.Subject != "" {
				stream(st.Subject)
			}
		}
		for _, k := range slices.Clone(keys) {
			if emitted[k] != last.Unix() {
				emit(k, last, Planned{Hour: last})
			}
		}
	}
	out := make([]Stream, 0, len(keys))
	for _, k := range keys {
		st := streams[k]
		st.LastHour, st.UpdatedAt = p.through, p.now
		out = append(out, *st)
	}
	return out, reps
}

// shareOut splits q among weights in proportion, exactly: the shares add up
// to q (the last one takes what rounding leaves).
func shareOut(q decimal.Decimal, weights map[string]decimal.Decimal) map[string]decimal.Decimal {
	keys := sortedKeys(weights)
	total := decimal.Zero
	for _, k := range keys {
		total = total.Add(weights[k])
	}
	out := make(map[string]decimal.Decimal, len(keys))
	left := q
	for i, k := range keys {
		if i == len(keys)-1 {
			out[k] = left
			break
		}
		sh := q.Mul(weights[k]).DivRound(total, 16)
		out[k] = sh
		left = left.Sub(sh)
	}
	return out
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// resourceOfDeployment is the Azure resource of one resource key of a
// split subscription.
func resourceOfDeployment(c billing.Customer, sub billing.Subscription, k string, deps map[string]billing.AzureDeployment) (Resource, error) {
	r := Resource{CustomerID: c.ID, CustomerKey: c.Key, SubscriptionID: sub.ID}
	az := c.External.Azure
	if d, ok := deps[k]; ok {
		r.Subject, r.AzureResourceURI, r.AzurePlanID = k, d.ResourceURI, d.PlanID
		if r.AzurePlanID == "" {
			r.AzurePlanID = az.PlanID
		}
		return r, nil
	}
	if az.ResourceID == "" && az.ResourceURI == "" {
		return r, fmt.Errorf("customer %s: usage of subjects without a deployment, and no external.azure.resourceId or resourceUri to report it to", c.Key)
	}
	r.AzureResourceID, r.AzureResourceURI, r.AzurePlanID = az.ResourceID, az.ResourceURI, az.PlanID
	return r, nil
}

// lateFrom says where a report's late quantity came from, for the audit.
func lateFrom(pl Planned, hasLate bool, lateAt time.Time) []string {
	if hasLate {
		return []string{fmt.Sprintf("usage of %s or later, from events that arrived after that hour had been planned", hourOf(lateAt).Format(time.RFC3339))}
	}
	return []string{"usage found for hours planned earlier"}
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

// bandOf is the usage band reporting entry rep of charge pc reports: the
// usage above the included quantity, or one graduated tier of it.
func bandOf(pc billing.PlanCharge, rep billing.Reporting) (Band, error) {
	unit := rep.UnitSize
	if unit.Sign() <= 0 {
		unit = decimal.NewFromInt(1)
	}
	b := Band{Lo: pc.Included.Quantity, UnitSize: unit}
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
	b.Lo = pc.Included.Quantity.Add(lo)
	if up := tiers[rep.Tier-1].UpTo; up != nil {
		hi := pc.Included.Quantity.Add(*up)
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

// correct asks a Canceler target to take back st's most recent accepted
// reports, newest first, until they cover st.Excess; their quantities go
// back to the stream and the next plan reports the net usage again in a
// later hour. Reports accepted longer than the target's cancel window ago
// stay: the excess is then netted against later growth.
func (r *Runner) correct(ctx context.Context, st Stream) error {
	t, _ := r.target(st.Target)
	c := t.Sender.(Canceler)
	now := r.Now().UTC()
	reps, err := r.Outbox.ListReports(ctx, Filter{SubscriptionID: st.SubscriptionID, Target: st.Target, State: StateAccepted})
	if err != nil {
		return err
	}
	left := st.Excess
	for i := len(reps) - 1; i >= 0 && left.Sign() > 0; i-- {
		rp := reps[i]
		// The window runs from when the target may first have received the
		// report, not from its last update: a refused cancellation updates
		// it, and must not keep it cancellable for ever.
		sent := rp.UpdatedAt
		if rp.FirstAttemptAt != nil {
			sent = *rp.FirstAttemptAt
		}
		if rp.StreamID != st.ID || now.Sub(sent) > c.CancelWindow() {
			continue
		}
		attempt := rp.Attempts + 1
		res, err := c.Cancel(ctx, Item{ID: rp.ID, Resource: rp.Resource, Dimension: rp.Dimension, Hour: rp.Hour, Quantity: rp.Quantity, Attempt: attempt})
		if err != nil {
			return err // transient: the excess is still there at the next plan
		}
		a := Attempt{Attempt: attempt, At: r.Now().UTC(), Outcome: "cancel " + string(res.Outcome), Code: res.Code, Message: res.Message, Response: res.Response}
		d := Delivery{ReportID: rp.ID, State: StateAccepted, Attempt: a}
		if res.Outcome == Accepted || res.Outcome == Duplicate {
			d.State = StateCancelled
			d.LastError = fmt.Sprintf("cancelled: usage was corrected by %s after it was reported", st.Excess)
			left = left.Sub(rp.Quantity)
		}
		if err := r.Outbox.RecordDeliveries(ctx, []Delivery{d}, r.Now().UTC()); err != nil {
			return err
		}
		if d.State != StateCancelled {
			break // refused: net the rest against later hours
		}
	}
	return nil
}

// SendStats says what one Send call did.
type SendStats struct {
	Sent, Accepted, Retried, Failed, Expired int
}

// Send delivers every due report of every target, in batches of the
// target's size, Workers calls at a time per target.
func (r *Runner) Send(ctx context.Context) (SendStats, error) {
	var total SendStats
	var errs []error
	for _, t := range r.Targets {
		st, err := r.sendTarget(ctx, t)
		total.Sent += st.Sent
		total.Accepted += st.Accepted
		total.Retried += st.Retried
		total.Failed += st.Failed
		total.Expired += st.Expired
		if err != nil {
			errs = append(errs, fmt.Errorf("target %s: %w", t.Name, err))
		}
	}
	r.watchDeadlines(ctx)
	return total, errors.Join(errs...)
}

func (r *Runner) sendTarget(ctx context.Context, t Target) (SendStats, error) {
	caps := t.Sender.Capabilities()
	batch := max(caps.MaxBatch, 1)
	workers := r.Workers
	if workers <= 0 {
		workers = 4
	}
	timeout := orDur(r.SendTimeout, DefaultSendTimeout)
	round := batch * workers * 8
	var stats SendStats
	// One pass over what is due now: a report retried during this call is
	// due again only after it, or a slow, failing target would keep this
	// call (and every other target, planning and the deadline watch)
	// going for ever.
	start := r.Now().UTC()
	for {
		now := r.Now().UTC()
		due, err := r.Outbox.DueReports(ctx, t.Name, start, round)
		if err != nil {
			return stats, err
		}
		if len(due) == 0 {
			return stats, nil
		}
		// Past the target's dedupe window, a report whose earlier outcome
		// is unknown is not resent: it fails, for a person to check.
		var stale []Delivery
		var staleAlerts []Alert
		if dw := caps.DedupeWindow; dw > 0 {
			keep := due[:0]
			for _, rp := range due {
				if rp.FirstAttemptAt != nil && now.Sub(*rp.FirstAttemptAt) > dw {
					msg := fmt.Sprintf("report %s was first sent %s ago and its outcome is unknown; %s only recognises a resend within %s. Check whether %s holds it, then POST /api/v1/reports/%s/retry if it does not", rp.ID, now.Sub(*rp.FirstAttemptAt).Round(time.Minute), t.Name, dw, t.Name, rp.ID)
					stale = append(stale, Delivery{ReportID: rp.ID, State: StateFailed, LastError: msg, Attempt: Attempt{Attempt: rp.Attempts + 1, At: now, Outcome: "not sent", Message: msg}})
					rp.State = StateFailed
					staleAlerts = append(staleAlerts, Alert{Kind: "failed", Report: rp, Message: msg})
					continue
				}
				keep = append(keep, rp)
			}
			due = keep
			if len(stale) > 0 {
				if err := r.Outbox.RecordDeliveries(ctx, stale, now); err != nil {
					return stats, err
				}
				stats.Failed += len(stale)
				for _, a := range staleAlerts {
					r.alert(ctx, a)
				}
			}
			if len(due) == 0 {
				continue
			}
		}
		// One transaction marks the whole round sending and one records
		// every answer: two durable commits per round, not per call.
		ids := make([]string, len(due))
		for i, rp := range due {
			ids[i] = rp.ID
		}
		if err := r.Outbox.MarkSending(ctx, ids, now, now.Add(2*timeout)); err != nil {
			return stats, err
		}
		var batches [][]Report
		for i := 0; i < len(due); i += batch {
			batches = append(batches, due[i:min(i+batch, len(due))])
		}
		work := make(chan int)
		results := make([]batchResult, len(batches))
		var wg sync.WaitGroup
		for range min(workers, len(batches)) {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range work {
					results[i] = r.sendBatch(ctx, t, batches[i])
				}
			}()
		}
		for i := range batches {
			work <- i
		}
		close(work)
		wg.Wait()
		var ds []Delivery
		var alerts []Alert
		for _, br := range results {
			ds = append(ds, br.deliveries...)
			alerts = append(alerts, br.alerts...)
			stats.Sent += br.stats.Sent
			stats.Accepted += br.stats.Accepted
			stats.Retried += br.stats.Retried
			stats.Failed += br.stats.Failed
			stats.Expired += br.stats.Expired
		}
		if err := r.Outbox.RecordDeliveries(ctx, ds, r.Now().UTC()); err != nil {
			return stats, err
		}
		for _, a := range alerts {
			r.alert(ctx, a)
		}
		if len(due) < round {
			return stats, nil
		}
	}
}

// batchResult is what sending one batch came to.
type batchResult struct {
	deliveries []Delivery
	alerts     []Alert
	stats      SendStats
}

// sendBatch sends one batch (already marked sending) and works out what
// became of each report.
func (r *Runner) sendBatch(ctx context.Context, t Target, reps []Report) batchResult {
	var out batchResult
	timeout := orDur(r.SendTimeout, DefaultSendTimeout)
	items := make([]Item, len(reps))
	for i, rp := range reps {
		items[i] = Item{ID: rp.ID, Resource: rp.Resource, Dimension: rp.Dimension, Hour: rp.Hour, Quantity: rp.Quantity, Attempt: rp.Attempts + 1}
	}
	sctx, cancel := context.WithTimeout(ctx, timeout)
	start := time.Now()
	results, err := t.Sender.Send(sctx, items)
	cancel()
	r.Metrics.sendLatency(t.Name, time.Since(start))
	if err == nil && len(results) != len(items) {
		err = fmt.Errorf("target answered %d results for %d reports", len(results), len(items))
	}
	done := r.Now().UTC()
	out.deliveries = make([]Delivery, len(reps))
	for i, rp := range reps {
		attempt := rp.Attempts + 1
		d := Delivery{ReportID: rp.ID, Attempt: Attempt{Attempt: attempt, At: done}}
		if err != nil {
			d.State, d.LastError = StatePending, err.Error()
			d.NextAttemptAt = done.Add(r.backoff(attempt, err))
			d.Attempt.Outcome, d.Attempt.Message = "error", err.Error()
			out.stats.Retried++
			r.Metrics.delivered(t.Name, "error")
			out.deliveries[i] = d
			continue
		}
		res := results[i]
		d.Attempt.Outcome, d.Attempt.Code, d.Attempt.Message, d.Attempt.Response = string(res.Outcome), res.Code, res.Message, res.Response
		r.Metrics.delivered(t.Name, string(res.Outcome))
		switch res.Outcome {
		case Accepted:
			d.State = StateAccepted
			out.stats.Accepted++
		case Duplicate:
			d.State = StateDuplicate
			out.stats.Accepted++
			if attempt == 1 {
				// Not a resend of ours: something else reported this
				// resource, dimension and hour first (another subscription
				// mapped to the same resource, another tool), and this
				// report's quantity is not billed.
				rp.State = StateDuplicate
				out.alerts = append(out.alerts, Alert{Kind: "duplicate", Report: rp, Message: fmt.Sprintf("%s already held a report for %s, dimension %s, hour %s before tally's first attempt (%s); the quantity %s of report %s is not billed there", t.Name, resourceName(rp.Resource), rp.Dimension, rp.Hour.Format(time.RFC3339), describe(res), rp.Quantity, rp.ID)})
			}
		case Expired:
			d.State, d.LastError = StateExpired, describe(res)
			out.stats.Expired++
			rp.State = StateExpired
			out.alerts = append(out.alerts, Alert{Kind: "expired", Report: rp, Message: fmt.Sprintf("%s refused report %s for hour %s as too old (%s); its quantity %s moves into the next hour", t.Name, rp.ID, rp.Hour.Format(time.RFC3339), describe(res), rp.Quantity)})
		case Rejected:
			d.State, d.LastError = StateFailed, describe(res)
			out.stats.Failed++
			rp.State = StateFailed
			out.alerts = append(out.alerts, Alert{Kind: "failed", Report: rp, Message: fmt.Sprintf("%s rejected report %s: %s; fix the cause, then POST /api/v1/reports/%s/retry", t.Name, rp.ID, describe(res), rp.ID)})
		default: // Retry, or an outcome this runner does not know
			d.State, d.LastError = StatePending, describe(res)
			d.NextAttemptAt = done.Add(r.backoff(attempt, nil))
			out.stats.Retried++
		}
		out.deliveries[i] = d
	}
	out.stats.Sent = len(reps)
	return out
}

// resourceName names a report's resource at its target, for messages.
func resourceName(r Resource) string {
	for _, v := range []string{r.AzureResourceID, r.AzureResourceURI, r.AWSCustomerIdentifier, r.AWSCustomerAWSAccountID, r.StripeCustomerID} {
		if v != "" {
			return v
		}
	}
	return "customer " + r.CustomerKey
}

func describe(res Result) string {
	switch {
	case res.Code != "" && res.Message != "":
		return res.Code + ": " + res.Message
	case res.Code != "":
		return res.Code
	default:
		return res.Message
	}
}

// backoff is the delay before attempt+1: Backoff·2^(attempt-1), at most
// MaxBackoff, with "equal jitter" (half fixed, half random) so that many
// reports failing together do not retry together; never less than a
// Retry-After the target asked for.
func (r *Runner) backoff(attempt int, err error) time.Duration {
	base, maxB := orDur(r.Backoff, DefaultBackoff), orDur(r.MaxBackoff, DefaultMaxBackoff)
	d := base
	for i := 1; i < attempt && d < maxB; i++ {
		d *= 2
	}
	d = min(d, maxB)
	d = d/2 + time.Duration(rand.Int64N(int64(d/2)+1))
	if ra, ok := RetryAfter(err); ok && ra > d {
		d = ra
	}
	return d
}

func (r *Runner) alert(ctx context.Context, a Alert) {
	r.log().Warn("report alert", "kind", a.Kind, "report", a.Report.ID, "target", a.Report.Target, "message", a.Message)
	r.Metrics.alerted(a.Kind)
	if r.Alert != nil {
		r.Alert(ctx, a)
	}
}

// watchDeadlines finds reports still unaccepted within Margin of their
// target's window and alerts once per report.
func (r *Runner) watchDeadlines(ctx context.Context) {
	now := r.Now().UTC()
	margin := orDur(r.Margin, DefaultMargin)
	counts := map[string]int{}
	var alerts []Alert
	// Only reports still at risk stay remembered, so the set does not grow
	// for ever; a report that leaves the list and comes back alerts again.
	stillAtRisk := map[string]bool{}
	for _, t := range r.Targets {
		w := t.Sender.Capabilities().Window
		if w <= 0 {
			continue
		}
		reps, err := r.Outbox.Unsettled(ctx, t.Name, now.Add(-w).Add(margin), 1000)
		if err != nil {
			r.log().Error("deadline watch", "target", t.Name, "err", err)
			continue
		}
		counts[t.Name] = len(reps)
		r.mu.Lock()
		if r.alerted == nil {
			r.alerted = map[string]bool{}
		}
		for _, rp := range reps {
			stillAtRisk[rp.ID] = true
			if !r.alerted[rp.ID] {
				r.alerted[rp.ID] = true
				alerts = append(alerts, Alert{Kind: "deadline", Report: rp, Message: fmt.Sprintf("report %s for hour %s is still %s and %s stops taking it at %s", rp.ID, rp.Hour.Format(time.RFC3339), rp.State, t.Name, rp.Hour.Add(w).Format(time.RFC3339))})
			}
		}
		r.mu.Unlock()
		r.Metrics.atRisk(t.Name, len(reps))
	}
	r.mu.Lock()
	r.atRisk = counts
	for id := range r.alerted {
		if !stillAtRisk[id] {
			delete(r.alerted, id)
		}
	}
	r.mu.Unlock()
	for _, a := range alerts {
		r.alert(ctx, a)
	}
}

// Status is the reporting health shown in /readyz.
type Status struct {
	// AtRisk counts, per target, reports still unaccepted within the
	// margin of the target's window (capped at 1000).
	AtRisk map[string]int `json:"atRisk"`
}

// Status returns the last deadline watch's findings.
func (r *Runner) Status() Status {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := Status{AtRisk: map[string]int{}}
	names := make([]string, 0, len(r.atRisk))
	for n := range r.atRisk {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		if r.atRisk[n] > 0 {
			s.AtRisk[n] = r.atRisk[n]
		}
	}
	return s
}

// Run plans and sends every interval until ctx ends.
func (r *Runner) Run(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		if st, err := r.Plan(ctx); err != nil {
			r.log().Error("plan reports", "err", err)

		} else if st.Reports > 0 {
			r.log().Info("planned reports", "reports", st.Reports, "streams", st.Streams, "through", st.Through)
		}
		if st, err := r.Send(ctx); err != nil {
			r.log().Error("send reports", "err", err)
		} else if st.Sent > 0 {
			r.log().Info("sent reports", "sent", st.Sent, "accepted", st.Accepted, "retried", st.Retried, "failed", st.Failed, "expired", st.Expired)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Resource resolves rep's resource again from its customer's current
// marketplace identity, for a retry after a person fixed it.
func (r *Runner) Resource(ctx context.Context, rep Report) (Resource, error) {
	t, ok := r.target(rep.Target)
	if !ok {
		return Resource{}, fmt.Errorf("no reporting target named %q is configured", rep.Target)
	}
	c, err := r.Store.GetCustomer(ctx, rep.CustomerID)
	if err != nil {
		return Resource{}, err
	}
	sub, err := r.Store.GetSubscription(ctx, rep.SubscriptionID)
	if err != nil {
		return Resource{}, err
	}
	if deps := deployments(c); t.Type == TypeAzure && len(deps) > 0 {
		k := rep.Resource.Subject
		if k == "" {
			k = mainResource
		}
		return resourceOfDeployment(c, sub, k, deps)
	}
	return ResourceFor(t.Type, c, sub)
}
