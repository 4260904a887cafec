package report

import (
	"context"
	"fmt"
	"sort"
	"time"
)

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
