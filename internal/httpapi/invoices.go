package httpapi

import (
	"bytes"
	_ "embed"
	"errors"
	"fmt"
	"html/template"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/shopspring/decimal"

	"github.com/tally-metering/tally/internal/billing"
	"github.com/tally-metering/tally/internal/store"
)

// invoiceView is an invoice as the API shows it: money with exactly the
// currency's minor-unit decimals, quantities as decimal strings.
type invoiceView struct {
	ID     string `json:"id"`
	Status string `json:"status"`
	// Kind is "adjustment" for an adjustment invoice (late usage of an
	// ended subscription); absent for a period's invoice.
	Kind         string            `json:"kind,omitempty"`
	Subscription string            `json:"subscription"`
	Customer     string            `json:"customer"`
	PlanKey      string            `json:"planKey"`
	PlanVersion  int               `json:"planVersion"`
	Currency     string            `json:"currency"`
	PeriodStart  time.Time         `json:"periodStart"`
	PeriodEnd    time.Time         `json:"periodEnd"`
	Partial      bool              `json:"partial,omitempty"`
	Lines        []invoiceLineView `json:"lines"`
	Total        string            `json:"total"`
	FinalizedAt  *time.Time        `json:"finalizedAt,omitempty"`
}

type invoiceLineView struct {
	Kind               string         `json:"kind"`
	Key                string         `json:"key"`
	Meter              string         `json:"meter,omitempty"`
	Description        string         `json:"description"`
	Model              string         `json:"model,omitempty"`
	Quantity           string         `json:"quantity"`
	Included           string         `json:"included"`
	Billable           string         `json:"billable"`
	Packages           string         `json:"packages,omitempty"`
	Tiers              []tierLineView `json:"tiers,omitempty"`
	UnitPrice          string         `json:"unitPrice,omitempty"`
	Amount             string         `json:"amount"`
	AdjustsInvoice     string         `json:"adjustsInvoice,omitempty"`
	AdjustsPeriodStart *time.Time     `json:"adjustsPeriodStart,omitempty"`
	AdjustsPeriodEnd   *time.Time     `json:"adjustsPeriodEnd,omitempty"`
	// Set on the lines of a period split by a plan change.
	PlanKey      string     `json:"planKey,omitempty"`
	PlanVersion  int        `json:"planVersion,omitempty"`
	SegmentStart *time.Time `json:"segmentStart,omitempty"`
	SegmentEnd   *time.Time `json:"segmentEnd,omitempty"`
}

type tierLineView struct {
	Tier      int    `json:"tier"`
	From      string `json:"from"`
	To        string `json:"to,omitempty"`
	Quantity  string `json:"quantity"`
	UnitPrice string `json:"unitPrice"`
	Flat      string `json:"flat"`
	Amount    string `json:"amount"`
}

func toInvoiceView(inv billing.Invoice) invoiceView {
	m := func(d decimal.Decimal) string { return d.StringFixed(inv.Digits) }
	v := invoiceView{
		ID: inv.ID, Status: string(inv.Status), Kind: inv.Kind, Subscription: inv.SubscriptionID, Customer: inv.CustomerID,
		PlanKey: inv.PlanKey, PlanVersion: inv.PlanVersion, Currency: inv.Currency,
		PeriodStart: inv.PeriodStart.UTC(), PeriodEnd: inv.PeriodEnd.UTC(), Partial: inv.Partial,
		Lines: make([]invoiceLineView, 0, len(inv.Lines)), Total: m(inv.Total), FinalizedAt: inv.FinalizedAt,
	}
	for _, l := range inv.Lines {
		lv := invoiceLineView{
			Kind: string(l.Kind), Key: l.Key, Meter: l.Meter, Description: l.Description, Model: string(l.Model),
			Quantity: l.Quantity.String(), Included: l.Included.String(), Billable: l.Billable.String(), Amount: m(l.Amount),
			AdjustsInvoice: l.AdjustsInvoice, AdjustsPeriodStart: l.AdjustsPeriodStart, AdjustsPeriodEnd: l.AdjustsPeriodEnd,
			PlanKey: l.PlanKey, PlanVersion: l.PlanVersion, SegmentStart: l.SegmentStart, SegmentEnd: l.SegmentEnd,
		}
		if l.Model == billing.ModelPackage {
			lv.Packages = l.Packages.String()
		}
		if l.UnitPrice != nil {
			lv.UnitPrice = l.UnitPrice.String()
		}
		for _, t := range l.Tiers {
			tv := tierLineView{Tier: t.Tier, From: t.From.String(), Quantity: t.Quantity.String(), UnitPrice: t.UnitPrice.String(), Flat: t.Flat.String(), Amount: t.Amount.String()}
			if t.To != nil {
				tv.To = t.To.String()
			}
			lv.Tiers = append(lv.Tiers, tv)
		}
		v.Lines = append(v.Lines, lv)
	}
	return v
}

//go:embed templates/invoice.html
var invoiceHTML string

var invoiceTemplate = template.Must(template.New("invoice").Parse(invoiceHTML))

// wantsHTML reports whether the client prefers an HTML page (a browser, or
// Accept: text/html) to JSON.
func wantsHTML(r *http.Request) bool {
	for part := range strings.SplitSeq(r.Header.Get("Accept"), ",") {
		mt, _, _ := strings.Cut(strings.TrimSpace(part), ";")
		switch strings.TrimSpace(mt) {
		case "text/html":
			return true
		case "application/json", "application/*":
			return false
		}
	}
	return false
}

// listInvoices lists invoices, ordered by subscription (start, then id)
// then period: for each selected subscription the finalized invoices and
// a live draft for every period that has begun and is not finalized yet.
//
// Drafts are computed, not stored, so a page is made by reading the
// selected subscriptions from the store in order, a batch at a time from
// the cursor's subscription on, and computing their invoices until the
// page is full: a page costs the invoices of about limit subscriptions,
// whatever the number of subscriptions.
func (s *Server) listInvoices(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	p, err := parsePage(r, "invoices", 4)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	var f store.SubscriptionFilter
	if k := r.URL.Query().Get("customer"); k != "" {
		c, err := s.Store.GetCustomer(ctx, k)
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		f.CustomerID = c.ID
	}
	var one *billing.Subscription // ?subscription=
	if id := r.URL.Query().Get("subscription"); id != "" {
		sub, err := s.Store.GetSubscription(ctx, id)
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		one = &sub
	}
	now := s.Now()
	var items []keyedInvoice
	// add appends the invoices of sub that come after the cursor.
	add := func(sub billing.Subscription) error {
		if f.CustomerID != "" && sub.CustomerID != f.CustomerID {
			return nil
		}
		invs, err := s.invoices.Invoices(ctx, sub, now)
		if err != nil {
			return err
		}
		sk := subscriptionSortKey(sub)
		var mine []keyedInvoice
		for _, inv := range invs {
			k := keyedInvoice{key: append(slices.Clone(sk), sortKeyTime(inv.PeriodStart), inv.ID), v: toInvoiceView(inv)}
			if p.After == nil || compareKeys(k.key, p.After) > 0 {
				mine = append(mine, k)
			}
		}
		slices.SortStableFunc(mine, func(a, b keyedInvoice) int { return compareKeys(a.key, b.key) })
		items = append(items, mine...)
		return nil
	}
	if one != nil {
		if err := add(*one); err != nil {
			s.writeError(w, r, err)
			return
		}
	} else {
		f.Limit = p.Limit + 1
		if p.After != nil {
			// The cursor's own subscription may have invoices left.
			sub, err := s.Store.GetSubscription(ctx, p.After[1])
			if err != nil && !errors.Is(err, store.ErrNotFound) {
				s.writeError(w, r, err)
				return
			}
			if err == nil && subscriptionSortKey(sub)[0] == p.After[0] {
				if err := add(sub); err != nil {
					s.writeError(w, r, err)
					return
				}
			}
			if f.AfterStart, err = parseSortKeyTime("invoices", p.After[0]); err != nil {
				s.writeError(w, r, err)
				return
			}
			f.AfterID = p.After[1]
		}
		for len(items) <= p.Limit {
			subs, err := s.Store.ListSubscriptions(ctx, f)
			if err != nil {
				s.writeError(w, r, err)
				return
			}
			for _, sub := range subs {
				if err := add(sub); err != nil {
					s.writeError(w, r, err)
					return
				}
			}
			if len(subs) < f.Limit {
				break
			}
			last := subs[len(subs)-1]
			f.AfterStart, f.AfterID = last.Start, last.ID
		}
	}
	pg := cutPage("invoices", items, func(k keyedInvoice) []string { return k.key }, p.Limit)
	out := page[invoiceView]{Items: make([]invoiceView, 0, len(pg.Items)), NextAfter: pg.NextAfter}
	for _, k := range pg.Items {
		out.Items = append(out.Items, k.v)
	}
	s.writeJSON(w, r, http.StatusOK, out)
}

// keyedInvoice is an invoice of a list with its place in it: its
// subscription's (subscriptionSortKey), then its period start and id.
type keyedInvoice struct {
	key []string
	v   invoiceView
}

// getInvoice shows one invoice, finalized or the live draft of an open
// period, as JSON or (Accept: text/html) as a printable page.
func (s *Server) getInvoice(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	id := r.PathValue("id")
	inv, err := s.Store.GetInvoice(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		inv, err = s.draftInvoice(r, id)
	}
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	v := toInvoiceView(inv)
	if wantsHTML(r) {
		var page bytes.Buffer
		if err := invoiceTemplate.Execute(&page, v); err != nil {
			s.writeError(w, r, fmt.Errorf("render invoice %s: %w", id, err))
			return
		}
		h := w.Header()
		h.Set("Content-Type", "text/html; charset=utf-8")
		h.Set("Vary", "Accept")
		// The page shows customer-supplied text (names, metadata); it needs
		// no script, image or outside resource, so a browser may load none.
		h.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'")
		h.Set("X-Content-Type-Options", "nosniff")
		_, _ = w.Write(page.Bytes())
		return
	}
	w.Header().Set("Vary", "Accept")
	s.writeJSON(w, r, http.StatusOK, v)
}

// draftInvoice finds the draft with the given id among the subscription's
// invoices; ErrNotFound if the id names no period that has begun.
func (s *Server) draftInvoice(r *http.Request, id string) (billing.Invoice, error) {
	notFound := fmt.Errorf("invoice %q: %w", id, store.ErrNotFound)
	subID, _, ok := billing.ParseInvoiceID(id)
	if !ok {
		return billing.Invoice{}, notFound
	}
	sub, err := s.Store.GetSubscription(r.Context(), subID)
	if errors.Is(err, store.ErrNotFound) {
		return billing.Invoice{}, notFound
	} else if err != nil {
		return billing.Invoice{}, err
	}
	invs, err := s.invoices.Invoices(r.Context(), sub, s.Now())
	if err != nil {
		return billing.Invoice{}, err
	}
	for _, inv := range invs {
		// The id counts whole seconds; a period may start within one
		// (a subscription started "now"), so compare ids, not instants.
		if inv.ID == id {
			return inv, nil
		}
	}
	return billing.Invoice{}, notFound
}
