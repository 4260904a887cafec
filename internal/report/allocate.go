package report

import (
	"fmt"
	"slices"
	"sort"
	"time"

	"github.com/shopspring/decimal"

	"github.com/tally-metering/tally/internal/billing"
)

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
			Dimension: dim, Resource: res, Hour: h, Quantity: q, Usage: pl.Usage, Late: pl.Late, LateFrom: pl.LateFrom,
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
