package report

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

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
// or is about to miss its target's window, or a refund (a report in state
// refund: usage corrected downwards that a target keeps billing).
type Alert struct {
	Kind    string `json:"kind"` // "failed", "expired", "deadline", "duplicate", "refund"
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
	late := map[string]time.Time{}           // subject → earliest late event time
	lateHours := map[string]map[int64]bool{} // subject → its late events' hours
	lateSeq := map[string]int64{}            // subject → its first late event's seq
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
			if lateHours[e.Subject] == nil {
				lateHours[e.Subject] = map[int64]bool{}
			}
			lateHours[e.Subject][hourOf(e.Time).Unix()] = true
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
	p := &planner{r: r, now: now, through: through, late: late, lateHours: lateHours, streams: byID, bySub: bySub,
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
		// rejects; so does a refund: the target bills it and can't take it
		// back.
		for _, rp := range batchReports {
			switch rp.State {
			case StateFailed:
				r.alert(ctx, Alert{Kind: "failed", Report: rp, Message: fmt.Sprintf("report %s cannot be sent to %s: %s; fix the cause, then POST /api/v1/reports/%s/retry", rp.ID, rp.Target, rp.LastError, rp.ID)})
			case StateRefund:
				r.alert(ctx, Alert{Kind: "refund", Report: rp, Message: rp.LastError})
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
