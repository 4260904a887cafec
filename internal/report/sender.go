package report

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"
)

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
		items[i] = Item{ID: rp.ID, Resource: rp.Resource, Dimension: rp.Dimension, Hour: rp.Hour, Quantity: rp.Quantity, Late: rp.Late, LateFrom: rp.LateFrom, Attempt: rp.Attempts + 1}
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
