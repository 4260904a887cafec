package httpapi

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/shopspring/decimal"

	"github.com/tally-metering/tally/internal/auth"
	"github.com/tally-metering/tally/internal/billing"
	"github.com/tally-metering/tally/internal/store"
)

// creditNoteView is a credit note as the API shows it: money with exactly
// the currency's minor-unit decimals, shown positive as credited.
type creditNoteView struct {
	ID           string               `json:"id"`
	Number       string               `json:"number"`
	Status       string               `json:"status"`
	Subscription string               `json:"subscription"`
	Customer     string               `json:"customer"`
	Currency     string               `json:"currency"`
	Lines        []creditNoteLineView `json:"lines"`
	Total        string               `json:"total"`
	IssuedAt     time.Time            `json:"issuedAt"`
}

type creditNoteLineView struct {
	Invoice     string    `json:"invoice"`
	PeriodStart time.Time `json:"periodStart"`
	PeriodEnd   time.Time `json:"periodEnd"`
	Key         string    `json:"key"`
	Meter       string    `json:"meter,omitempty"`
	Description string    `json:"description"`
	Quantity    string    `json:"quantity"`
	Amount      string    `json:"amount"`
	PlanKey     string    `json:"planKey,omitempty"`
	PlanVersion int       `json:"planVersion,omitempty"`
}

func toCreditNoteView(cn billing.CreditNote) creditNoteView {
	m := func(d decimal.Decimal) string { return d.StringFixed(cn.Digits) }
	v := creditNoteView{
		ID: cn.ID, Number: cn.Number, Status: "issued", Subscription: cn.SubscriptionID, Customer: cn.CustomerID,
		Currency: cn.Currency, Lines: make([]creditNoteLineView, 0, len(cn.Lines)), Total: m(cn.Total), IssuedAt: cn.IssuedAt.UTC(),
	}
	for _, l := range cn.Lines {
		v.Lines = append(v.Lines, creditNoteLineView{
			Invoice: l.Invoice, PeriodStart: l.PeriodStart.UTC(), PeriodEnd: l.PeriodEnd.UTC(), Key: l.Key, Meter: l.Meter,
			Description: l.Description, Quantity: l.Quantity.String(), Amount: m(l.Amount), PlanKey: l.PlanKey, PlanVersion: l.PlanVersion,
		})
	}
	return v
}

// listCreditNotes lists issued credit notes in the order of issue,
// filtered by ?customer=, ?subscription= and ?invoice=.
func (s *Server) listCreditNotes(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	q := r.URL.Query()
	p, err := parsePage(r, "credit notes", 1)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	var f store.CreditNoteFilter
	if k := q.Get("customer"); k != "" {
		c, err := s.Store.GetCustomer(ctx, k)
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		f.CustomerID = c.ID
	}
	if id := q.Get("subscription"); id != "" {
		if _, err := s.Store.GetSubscription(ctx, id); err != nil {
			s.writeError(w, r, err)
			return
		}
		f.SubscriptionID = id
	}
	f.InvoiceID = q.Get("invoice")
	cns, err := s.Store.ListCreditNotes(ctx, f)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	items := make([]creditNoteView, 0, len(cns))
	for _, cn := range cns {
		items = append(items, toCreditNoteView(cn))
	}
	s.writeJSON(w, r, http.StatusOK, paginate("credit notes", items, creditNoteSortKey, p))
}

// getCreditNote shows one credit note, by id or number.
func (s *Server) getCreditNote(w http.ResponseWriter, r *http.Request) {
	cn, err := s.Store.GetCreditNote(r.Context(), r.PathValue("id"))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	s.writeJSON(w, r, http.StatusOK, toCreditNoteView(cn))
}

// creditNoteInPath admits a bound caller only to its customer's credit
// notes; an unknown one is refused like another customer's, so that a
// bound caller learns nothing of ids it may not read.
func creditNoteInPath(name string) tenantCheck {
	return func(s *Server, w http.ResponseWriter, r *http.Request, p auth.Principal) bool {
		id := r.PathValue(name)
		cn, err := s.Store.GetCreditNote(r.Context(), id)
		switch {
		case err == nil && cn.CustomerID == p.CustomerID:
			return true
		case err != nil && !errors.Is(err, store.ErrNotFound):
			s.writeError(w, r, err)
			return false
		}
		forbid(w, r, fmt.Sprintf("credit note %q is not of the customer this credential is bound to", id))
		return false
	}
}

// creditNoteSortKey is a credit note's place in its list: its number (the
// order of issue), compared as a number ("CN-1000000" follows
// "CN-999999").
func creditNoteSortKey(v creditNoteView) []string {
	n, _ := strconv.ParseInt(strings.TrimPrefix(v.Number, "CN-"), 10, 64)
	return []string{sortKeyInt(n)}
}
