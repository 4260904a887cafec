package httpapi

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"sort"
	"time"

	"github.com/shopspring/decimal"

	"github.com/tally-metering/tally/internal/billing"
	"github.com/tally-metering/tally/internal/bounds"
	"github.com/tally-metering/tally/internal/event"
	"github.com/tally-metering/tally/internal/ingest"
	"github.com/tally-metering/tally/internal/invoicing"
	"github.com/tally-metering/tally/internal/meter"
	"github.com/tally-metering/tally/internal/store"
	"github.com/tally-metering/tally/internal/usage"
)

// voidInput is the body of POST /api/v1/events/void.
type voidInput struct {
	Source  string `json:"source"`
	ID      string `json:"id"`
	Subject string `json:"subject"`
	Reason  string `json:"reason"`
}

// amendInput is the body of POST /api/v1/events/amend.
type amendInput struct {
	Source  string          `json:"source"`
	ID      string          `json:"id"`
	Subject string          `json:"subject"`
	Data    json.RawMessage `json:"data"`
	Reason  string          `json:"reason"`
}

func (s *Server) voidEvent(w http.ResponseWriter, r *http.Request) {
	var in voidInput
	if err := decodeJSON(w, r, &in); err != nil {
		s.writeError(w, r, err)
		return
	}
	e, err := s.Pipeline.VoidEvent(r.Context(), ingest.CorrectInput{Source: in.Source, ID: in.ID, Subject: in.Subject, Reason: in.Reason, Actor: principalOf(r).ID})
	s.answerCorrection(w, r, e, err)
}

func (s *Server) amendEvent(w http.ResponseWriter, r *http.Request) {
	var in amendInput
	if err := decodeJSON(w, r, &in); err != nil {
		s.writeError(w, r, err)
		return
	}
	if len(in.Data) > 0 {
		// The new data is held to the bounds ingest holds data to, by the
		// same decoder.
		doc := []byte(`{"specversion":"1.0","id":"amend","source":"amend","type":"amend","subject":"amend","data":` + string(in.Data) + `}`)
		if _, err := event.Decode(event.MediaTypeCloudEvent, doc, s.Now().UTC(), s.Limits); err != nil {
			badRequest(w, r, fmt.Errorf("data: %w", err))
			return
		}
	}
	e, err := s.Pipeline.AmendEvent(r.Context(), ingest.CorrectInput{Source: in.Source, ID: in.ID, Subject: in.Subject, Data: in.Data, Reason: in.Reason, Actor: principalOf(r).ID})
	s.answerCorrection(w, r, e, err)
}

func (s *Server) answerCorrection(w http.ResponseWriter, r *http.Request, e store.StoredEvent, err error) {
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	setAuditTarget(r, fmt.Sprintf("event %d", e.Seq))
	item, err := s.eventItem(e, s.Pipeline.ActiveMeters())
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	s.writeJSON(w, r, http.StatusOK, item)
}

// cancelledBy names a rule that cancels an event's usage and the meters
// (slugs) it cancels it for.
type cancelledBy struct {
	Rule   string   `json:"rule"`
	Meters []string `json:"meters"`
}

// eventItem is e as GET /api/v1/events lists it.
func (s *Server) eventItem(e store.StoredEvent, set *ingest.MeterSet) (ingestedEvent, error) {
	raw, err := withTime(e.Raw, e.Time)
	if err != nil {
		return ingestedEvent{}, fmt.Errorf("event seq %d: %w", e.Seq, err)
	}
	item := ingestedEvent{Event: raw, IngestedAt: e.IngestedAt, Voided: e.Voided(), Corrections: e.Corrections}
	if len(e.ValidationErrors) > 0 {
		item.ValidationError = joinErrors(e.ValidationErrors)
	}
	if d, ok := e.Amendment(); ok && !e.Voided() {
		item.Data = d
	}
	if e.Voided() {
		return item, nil
	}
	by, err := set.CancelledBy(e)
	if err != nil {
		return item, nil // data a meter can't read cancels nothing either
	}
	slugs := map[string]string{}
	for _, m := range set.Meters() {
		slugs[m.ID] = m.Slug
	}
	ids := make([]string, 0, len(by))
	for id := range by {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		c := cancelledBy{Rule: id}
		for _, m := range by[id] {
			c.Meters = append(c.Meters, slugs[m])
		}
		sort.Strings(c.Meters)
		item.CancelledBy = append(item.CancelledBy, c)
	}
	return item, nil
}

// ruleInput is the body of POST /api/v1/cancellation-rules.
type ruleInput struct {
	Meter        string            `json:"meter"`
	Customer     string            `json:"customer"`
	Subjects     []string          `json:"subjects"`
	EventFrom    *time.Time        `json:"eventFrom"`
	EventTo      *time.Time        `json:"eventTo"`
	IngestedFrom *time.Time        `json:"ingestedFrom"`
	IngestedTo   *time.Time        `json:"ingestedTo"`
	GroupBy      map[string]string `json:"groupBy"`
	Reason       string            `json:"reason"`
	DryRun       bool              `json:"dryRun"`
}

// ruleOf resolves the customer of in (its subjects and the minutes it
// owned them) into the pipeline's input.
func (s *Server) ruleOf(r *http.Request, in ruleInput) (ingest.RuleInput, error) {
	out := ingest.RuleInput{Meter: in.Meter, Subjects: in.Subjects, EventFrom: in.EventFrom, EventTo: in.EventTo,
		IngestedFrom: in.IngestedFrom, IngestedTo: in.IngestedTo, GroupBy: in.GroupBy, Reason: in.Reason, Actor: principalOf(r).ID}
	if in.Customer == "" {
		return out, nil
	}
	if len(in.Subjects) > 0 {
		return out, &queryError{errors.New("customer, subjects: give one or the other: a customer's rule selects the subjects it owned")}
	}
	c, err := s.Store.GetCustomer(r.Context(), in.Customer)
	if errors.Is(err, store.ErrNotFound) {
		return out, &queryError{fmt.Errorf("customer: no customer %q", in.Customer)}
	}
	if err != nil {
		return out, err
	}
	out.CustomerID = c.ID
	out.Subjects = []string{}
	out.Within = map[string][]billing.Span{}
	for _, subj := range c.EverOwned() {
		out.Subjects = append(out.Subjects, subj)
		var spans []billing.Span
		whole := false
		for _, o := range c.OwnershipOf(subj) {
			if o.From == nil && o.To == nil {
				whole = true
				break
			}
			sp := billing.Span{From: bounds.MinTime, To: bounds.MaxTime}
			if o.From != nil {
				sp.From = *o.From
			}
			if o.To != nil {
				sp.To = *o.To
			}
			spans = append(spans, sp)
		}
		if !whole {
			out.Within[subj] = spans
		}
	}
	return out, nil
}

func (s *Server) createRule(w http.ResponseWriter, r *http.Request) {
	var in ruleInput
	if err := decodeJSON(w, r, &in); err != nil {
		s.writeError(w, r, err)
		return
	}
	ri, err := s.ruleOf(r, in)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if in.DryRun {
		pv, err := s.Pipeline.PreviewRule(r.Context(), ri)
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		out, err := s.preview(r, pv)
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		setAuditTarget(r, "dry run")
		s.writeJSON(w, r, http.StatusOK, out)
		return
	}
	rule, err := s.Pipeline.CreateRule(r.Context(), ri)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	w.Header().Set("Location", "/api/v1/cancellation-rules/"+rule.ID)
	s.writeJSON(w, r, http.StatusCreated, rule)
}

func (s *Server) listRules(w http.ResponseWriter, r *http.Request) {
	p, err := parsePage(r, "cancellation rules", 2)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	rules, err := s.Store.ListRules(r.Context())
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	s.writeJSON(w, r, http.StatusOK, paginate("cancellation rules", rules, func(r store.CancellationRule) []string { return []string{sortKeyTime(r.CreatedAt), r.ID} }, p))
}

func (s *Server) getRule(w http.ResponseWriter, r *http.Request) {
	rule, err := s.Store.GetRule(r.Context(), r.PathValue("id"))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	s.writeJSON(w, r, http.StatusOK, rule)
}

func (s *Server) deleteRule(w http.ResponseWriter, r *http.Request) {
	rule, err := s.Pipeline.DeleteRule(r.Context(), r.PathValue("id"), principalOf(r).ID)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	s.writeJSON(w, r, http.StatusOK, rule)
}

// rulePreview is the answer of a dry run.
type rulePreview struct {
	Rule          store.CancellationRule `json:"rule"`
	EventsMatched int64                  `json:"eventsMatched"`
	ByMeter       []meterMatched         `json:"byMeter"`
	// Usage is the change of each subject's usage of each meter over the
	// minutes the rule changes (from the first to the last).
	Usage []usageChange `json:"usage"`
	// Invoices are the drafts (open periods, and the earliest open one
	// carrying adjustments of finalized periods) whose lines would change.
	Invoices []invoiceChange `json:"invoices"`
	// Credits are the credit notes the finalizer would issue (for
	// finalized periods whose price would fall), before and with the rule.
	Credits []creditChange `json:"credits"`
}

// creditChange is the credit a subscription is owed for its finalized
// periods, not issued yet, before and with the rule: what its next credit
// note would credit.
type creditChange struct {
	CustomerID     string           `json:"customerId"`
	SubscriptionID string           `json:"subscriptionId"`
	Currency       string           `json:"currency"`
	Lines          []creditLineView `json:"lines"`
	TotalBefore    decimal.Decimal  `json:"totalBefore"`
	TotalAfter     decimal.Decimal  `json:"totalAfter"`
	Change         decimal.Decimal  `json:"change"`
}

// creditLineView is a line of the credit note a rule would cause.
type creditLineView struct {
	Invoice     string          `json:"invoice"`
	PeriodStart time.Time       `json:"periodStart"`
	PeriodEnd   time.Time       `json:"periodEnd"`
	Key         string          `json:"key"`
	Quantity    decimal.Decimal `json:"quantity"`
	Amount      decimal.Decimal `json:"amount"`
}

type meterMatched struct {
	Meter         string `json:"meter"`
	EventsMatched int64  `json:"eventsMatched"`
}

type usageChange struct {
	Customers []string        `json:"customers,omitempty"`
	Subject   string          `json:"subject"`
	Meter     string          `json:"meter"`
	From      time.Time       `json:"from"`
	To        time.Time       `json:"to"`
	Before    decimal.Decimal `json:"before"`
	After     decimal.Decimal `json:"after"`
	Change    decimal.Decimal `json:"change"`
}

type invoiceChange struct {
	Invoice        string          `json:"invoice"`
	Kind           string          `json:"kind,omitempty"`
	CustomerID     string          `json:"customerId"`
	SubscriptionID string          `json:"subscriptionId"`
	PeriodStart    time.Time       `json:"periodStart"`
	PeriodEnd      time.Time       `json:"periodEnd"`
	Status         string          `json:"status"`
	Lines          []lineChange    `json:"lines"`
	TotalBefore    decimal.Decimal `json:"totalBefore"`
	TotalAfter     decimal.Decimal `json:"totalAfter"`
	Change         decimal.Decimal `json:"change"`
}

type lineChange struct {
	Kind           string          `json:"kind"`
	Key            string          `json:"key"`
	Meter          string          `json:"meter,omitempty"`
	QuantityBefore decimal.Decimal `json:"quantityBefore"`
	QuantityAfter  decimal.Decimal `json:"quantityAfter"`
	AmountBefore   decimal.Decimal `json:"amountBefore"`
	AmountAfter    decimal.Decimal `json:"amountAfter"`
}

// preview computes a dry run's answer: usage through the usage service
// and drafts through the invoicing service, each once on the store as it
// is and once as it would read with the rule (RulePreview.WhatIf).
func (s *Server) preview(r *http.Request, pv ingest.RulePreview) (rulePreview, error) {
	ctx := r.Context()
	out := rulePreview{Rule: pv.Rule, EventsMatched: pv.EventsMatched, ByMeter: []meterMatched{}, Usage: []usageChange{}, Invoices: []invoiceChange{}, Credits: []creditChange{}}
	meters := map[string]meter.Meter{}
	for _, m := range s.Pipeline.ActiveMeters().Meters() {
		meters[m.ID] = m.Meter
	}
	for id, n := range pv.ByMeter {
		out.ByMeter = append(out.ByMeter, meterMatched{Meter: meters[id].Slug, EventsMatched: n})
	}
	sort.Slice(out.ByMeter, func(i, j int) bool { return out.ByMeter[i].Meter < out.ByMeter[j].Meter })
	wi := pv.WhatIf(s.Store)
	after := &usage.Service{Store: wi}
	type sm struct{ subject, meter string }
	spans := map[sm][2]int64{}
	var order []sm
	for _, c := range pv.Cells {
		k := sm{c.Subject, c.MeterID}
		sp, ok := spans[k]
		if !ok {
			order = append(order, k)
			sp = [2]int64{c.Minute, c.Minute}
		}
		spans[k] = [2]int64{min(sp[0], c.Minute), max(sp[1], c.Minute)}
	}
	customers := map[string][]string{}
	for _, k := range order {
		if _, ok := customers[k.subject]; !ok {
			ids, err := s.Store.CustomersOfSubject(ctx, k.subject)
			if err != nil {
				return out, err
			}
			customers[k.subject] = ids
		}
		from, to := time.Unix(spans[k][0], 0).UTC(), time.Unix(spans[k][1]+60, 0).UTC()
		q := usage.Query{Meter: meters[k.meter], From: &from, To: &to, Subjects: []string{k.subject}}
		b, err := s.Usage.Query(ctx, q)
		if err != nil {
			return out, err
		}
		a, err := after.Query(ctx, q)
		if err != nil {
			return out, err
		}
		bv, av := totalOf(b), totalOf(a)
		out.Usage = append(out.Usage, usageChange{Customers: customers[k.subject], Subject: k.subject, Meter: meters[k.meter].Slug,
			From: from, To: to, Before: bv, After: av, Change: av.Sub(bv)})
	}
	// Drafts of every subscription of every customer that ever owned a
	// subject the rule changes.
	var ids []string
	for _, cs := range customers {
		ids = append(ids, cs...)
	}
	slices.Sort(ids)
	ids = slices.Compact(ids)
	invAfter := &invoicing.Service{Store: wi, Usage: after, Stable: s.invoices.Stable}
	now := s.Now().UTC()
	for _, id := range ids {
		subs, err := s.Store.ListSubscriptions(ctx, store.SubscriptionFilter{CustomerID: id})
		if err != nil {
			return out, err
		}
		for _, sub := range subs {
			before, err := s.invoices.Invoices(ctx, sub, now)
			if err != nil {
				return out, err
			}
			afterInv, err := invAfter.Invoices(ctx, sub, now)
			if err != nil {
				return out, err
			}
			out.Invoices = append(out.Invoices, invoiceChanges(before, afterInv)...)
			cb, _, err := s.invoices.PendingCredit(ctx, sub, now)
			if err != nil {
				return out, err
			}
			ca, _, err := invAfter.PendingCredit(ctx, sub, now)
			if err != nil {
				return out, err
			}
			if !cb.Total.Equal(ca.Total) {
				ch := creditChange{CustomerID: sub.CustomerID, SubscriptionID: sub.ID, Currency: cmp.Or(ca.Currency, cb.Currency),
					TotalBefore: cb.Total, TotalAfter: ca.Total, Change: ca.Total.Sub(cb.Total), Lines: []creditLineView{}}
				for _, l := range ca.Lines {
					ch.Lines = append(ch.Lines, creditLineView{Invoice: l.Invoice, PeriodStart: l.PeriodStart, PeriodEnd: l.PeriodEnd, Key: l.Key, Quantity: l.Quantity, Amount: l.Amount})
				}
				out.Credits = append(out.Credits, ch)
			}
		}
	}
	return out, nil
}

func totalOf(res usage.Result) decimal.Decimal {
	t := decimal.Zero
	for _, row := range res.Rows {
		t = t.Add(row.Value)
	}
	return t
}

// invoiceChanges pairs drafts by id and lists those whose lines differ.
func invoiceChanges(before, after []billing.Invoice) []invoiceChange {
	byID := map[string]billing.Invoice{}
	for _, inv := range before {
		byID[inv.ID] = inv
	}
	var out []invoiceChange
	for _, a := range after {
		if a.Status != billing.InvoiceDraft {
			continue
		}
		b := byID[a.ID]
		ch := invoiceChange{Invoice: a.ID, Kind: a.Kind, CustomerID: a.CustomerID, SubscriptionID: a.SubscriptionID,
			PeriodStart: a.PeriodStart, PeriodEnd: a.PeriodEnd, Status: string(a.Status), TotalBefore: b.Total, TotalAfter: a.Total, Change: a.Total.Sub(b.Total)}
		type lk struct{ kind, key string }
		lines := map[lk]*lineChange{}
		var order []lk
		get := func(l billing.InvoiceLine) *lineChange {
			k := lk{string(l.Kind), l.Key}
			if lines[k] == nil {
				lines[k] = &lineChange{Kind: string(l.Kind), Key: l.Key, Meter: l.Meter}
				order = append(order, k)
			}
			return lines[k]
		}
		for _, l := range b.Lines {
			c := get(l)
			c.QuantityBefore, c.AmountBefore = c.QuantityBefore.Add(l.Quantity), c.AmountBefore.Add(l.Amount)
		}
		for _, l := range a.Lines {
			c := get(l)
			c.QuantityAfter, c.AmountAfter = c.QuantityAfter.Add(l.Quantity), c.AmountAfter.Add(l.Amount)
		}
		for _, k := range order {
			c := lines[k]
			if !c.QuantityBefore.Equal(c.QuantityAfter) || !c.AmountBefore.Equal(c.AmountAfter) {
				ch.Lines = append(ch.Lines, *c)
			}
		}
		if len(ch.Lines) > 0 || !ch.Change.IsZero() {
			out = append(out, ch)
		}
	}
	return out
}
