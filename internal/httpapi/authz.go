package httpapi

// Access control: which caller may call which route, and what a caller
// bound to one customer may see and send. The route table (server.go)
// names each route's scope and tenant policy; everything else about the
// policy is here, and handlers call the helpers below.

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/tally-metering/tally/internal/auth"
	"github.com/tally-metering/tally/internal/billing"
	"github.com/tally-metering/tally/internal/event"
	"github.com/tally-metering/tally/internal/store"
)

// access is who may call a route.
type access struct {
	public bool
	scope  auth.Scope
	// tenant, when set, admits callers bound to a customer: it checks (or
	// leaves to the handler) that they reach only their customer's data.
	// Routes without it are for unbound callers only.
	tenant tenantCheck
	// portal routes answer for the caller's customer and are the only
	// routes portal tokens may call.
	portal bool
}

// tenantCheck decides whether a bound caller may make request r, writing
// the refusal when not. It may rewrite r's query to narrow it to the
// caller's customer.
type tenantCheck func(s *Server, w http.ResponseWriter, r *http.Request, p auth.Principal) bool

// authorize authenticates the caller and applies the route's access.
func (s *Server) authorize(a access, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, ok := s.authenticate(w, r)
		if !ok {
			return
		}
		switch {
		case a.portal && !p.Bound():
			forbid(w, r, "portal endpoints answer for the customer a credential is bound to; this credential is bound to none (use a portal token: POST /api/v1/portal/tokens)")
			return
		case !a.portal && p.Kind == auth.KindPortal:
			forbid(w, r, "a portal token may only call /api/v1/portal/ endpoints")
			return
		case !p.Can(a.scope):
			forbid(w, r, fmt.Sprintf("%s %s needs the %s scope; this credential has %s", r.Method, r.URL.Path, a.scope, scopeList(p)))
			return
		case p.Bound() && !a.portal && a.tenant == nil:
			forbid(w, r, fmt.Sprintf("%s %s reaches data of every customer; this credential is bound to one customer", r.Method, r.URL.Path))
			return
		}
		if !s.limits.allow(w, r, p) {
			return
		}
		r = r.WithContext(context.WithValue(r.Context(), principalKey{}, p))
		if p.Bound() {
			// Every route a bound caller may reach shows its customer's
			// data, so the binding must still hold (the customer not
			// deleted, the subject still its): a deleted customer's
			// subscriptions read usage of subjects now another's.
			mine, ok := s.boundSubjects(w, r, p)
			if !ok {
				return
			}
			r = r.WithContext(context.WithValue(r.Context(), boundSubjectsKey{}, mine))
			if a.tenant != nil && !a.tenant(s, w, r, p) {
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}

func scopeList(p auth.Principal) string {
	if len(p.Scopes) == 0 {
		return "no scope"
	}
	var names []string
	for _, sc := range p.Scopes {
		names = append(names, string(sc))
	}
	return "scope " + strings.Join(names, ", ")
}

// forbid answers 403 with what was refused.
func forbid(w http.ResponseWriter, r *http.Request, detail string) {
	writeProblem(w, r, Problem{Status: http.StatusForbidden, Detail: detail})
}

// anyTenant admits bound callers: the route shows nothing of any customer
// (meter definitions, the API document).
func anyTenant(*Server, http.ResponseWriter, *http.Request, auth.Principal) bool { return true }

// inHandler admits bound callers; the handler narrows what they get with
// the helpers below.
func inHandler(*Server, http.ResponseWriter, *http.Request, auth.Principal) bool { return true }

// customerInPath admits a bound caller only to its own customer, named by
// the path wildcard.
func customerInPath(name string) tenantCheck {
	return func(s *Server, w http.ResponseWriter, r *http.Request, p auth.Principal) bool {
		ref := r.PathValue(name)
		c, err := s.Store.GetCustomer(r.Context(), ref)
		if errors.Is(err, store.ErrNotFound) || (err == nil && c.ID != p.CustomerID) {
			forbid(w, r, fmt.Sprintf("customer %q is not the customer this credential is bound to", ref))
			return false
		}
		if err != nil {
			s.writeError(w, r, err)
			return false
		}
		return true
	}
}

// subscriptionInPath admits a bound caller only to its customer's
// subscriptions.
func subscriptionInPath(name string) tenantCheck {
	return func(s *Server, w http.ResponseWriter, r *http.Request, p auth.Principal) bool {
		return s.allowSubscription(w, r, p, r.PathValue(name))
	}
}

// invoiceInPath admits a bound caller only to its customer's invoices,
// finalized or draft.
func invoiceInPath(name string) tenantCheck {
	return func(s *Server, w http.ResponseWriter, r *http.Request, p auth.Principal) bool {
		id := r.PathValue(name)
		inv, err := s.Store.GetInvoice(r.Context(), id)
		switch {
		case err == nil:
			if inv.CustomerID == p.CustomerID {
				return true
			}
		case errors.Is(err, store.ErrNotFound):
			// A draft's id names its subscription.
			if subID, _, ok := billing.ParseInvoiceID(id); ok {
				sub, err := s.Store.GetSubscription(r.Context(), subID)
				if err == nil && sub.CustomerID == p.CustomerID {
					return true
				}
			}
		default:
			s.writeError(w, r, err)
			return false
		}
		forbid(w, r, fmt.Sprintf("invoice %q is not of the customer this credential is bound to", id))
		return false
	}
}

func (s *Server) allowSubscription(w http.ResponseWriter, r *http.Request, p auth.Principal, id string) bool {
	sub, err := s.Store.GetSubscription(r.Context(), id)
	if errors.Is(err, store.ErrNotFound) || (err == nil && sub.CustomerID != p.CustomerID) {
		forbid(w, r, fmt.Sprintf("subscription %q is not of the customer this credential is bound to", id))
		return false
	}
	if err != nil {
		s.writeError(w, r, err)
		return false
	}
	return true
}

// subjectInPath admits a bound caller only to its own subjects.
func subjectInPath(name string) tenantCheck {
	return func(s *Server, w http.ResponseWriter, r *http.Request, p auth.Principal) bool {
		_, ok := s.allowSubjects(w, r, []string{r.PathValue(name)})
		return ok
	}
}

// customerInQuery narrows a list to the bound caller's customer: a
// ?customer= naming another customer, or a ?subscription= of another
// customer, is refused; without ?customer= the caller's is set.
func customerInQuery(s *Server, w http.ResponseWriter, r *http.Request, p auth.Principal) bool {
	q := r.URL.Query()
	if ref := q.Get("customer"); ref != "" {
		c, err := s.Store.GetCustomer(r.Context(), ref)
		if errors.Is(err, store.ErrNotFound) || (err == nil && c.ID != p.CustomerID) {
			forbid(w, r, fmt.Sprintf("customer %q is not the customer this credential is bound to", ref))
			return false
		}
		if err != nil {
			s.writeError(w, r, err)
			return false
		}
	}
	if id := q.Get("subscription"); id != "" && !s.allowSubscription(w, r, p, id) {
		return false
	}
	q.Set("customer", p.CustomerID)
	r.URL.RawQuery = q.Encode()
	return true
}

// boundSubjectsKey holds, in a bound caller's request context, the
// subjects authorize found it may see.
type boundSubjectsKey struct{}

// boundSubjects returns the subjects a bound caller may see and send: its
// customer's, or its one subject. ok is false when the binding can't be
// used any more (the refusal is written).
func (s *Server) boundSubjects(w http.ResponseWriter, r *http.Request, p auth.Principal) ([]string, bool) {
	if mine, ok := r.Context().Value(boundSubjectsKey{}).([]string); ok {
		return mine, true
	}
	c, err := s.Store.GetCustomer(r.Context(), p.CustomerID)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		s.writeError(w, r, err)
		return nil, false
	}
	if err != nil || c.DeletedAt != nil {
		forbid(w, r, "the customer this credential is bound to was deleted; it can no longer be used")
		return nil, false
	}
	if p.Subject == "" {
		return c.Subjects, true
	}
	if !slices.Contains(c.Subjects, p.Subject) {
		forbid(w, r, fmt.Sprintf("subject %q, which this credential is bound to, no longer belongs to customer %q", p.Subject, c.Key))
		return nil, false
	}
	return []string{p.Subject}, true
}

// allowSubjects checks that the caller may see the requested subjects and
// returns what it may query: the requested ones, or, when none are
// requested, every subject it may see (nil for an unbound caller: all). A
// bound caller whose customer has no subject gets noSubject, which matches
// nothing.
func (s *Server) allowSubjects(w http.ResponseWriter, r *http.Request, requested []string) ([]string, bool) {
	p := principalOf(r)
	if !p.Bound() {
		return requested, true
	}
	mine, ok := s.boundSubjects(w, r, p)
	if !ok {
		return nil, false
	}
	for _, sub := range requested {
		if !slices.Contains(mine, sub) {
			forbid(w, r, fmt.Sprintf("subject %q is not one of the subjects this credential may read", sub))
			return nil, false
		}
	}
	if len(requested) > 0 {
		return requested, true
	}
	if len(mine) == 0 {
		return []string{noSubject}, true
	}
	return mine, true
}

// noSubject is a subject no event can have (event subjects are non-empty
// and have no control characters): querying it finds nothing.
const noSubject = "\x00"

// allowIngest checks that a bound ingest caller sends only events of its
// subjects; otherwise the whole request is refused, naming every event at
// fault, and nothing is stored.
func (s *Server) allowIngest(w http.ResponseWriter, r *http.Request, events []event.Event) bool {
	p := principalOf(r)
	if !p.Bound() {
		return true
	}
	mine, ok := s.boundSubjects(w, r, p)
	if !ok {
		return false
	}
	var problems []event.Problem
	for i, e := range events {
		if !slices.Contains(mine, e.Subject) {
			problems = append(problems, event.Problem{Index: i, Field: "subject",
				Message: fmt.Sprintf("subject %q is not one this credential may send events for", e.Subject)})
		}
	}
	if len(problems) == 0 {
		return true
	}
	detail := fmt.Sprintf("event %d has subject %q, which this credential may not send events for; the request was rejected whole and nothing of it was stored", problems[0].Index, events[problems[0].Index].Subject)
	writeProblem(w, r, Problem{Status: http.StatusForbidden, Title: "Subject not allowed", Detail: detail, Problems: problems})
	return false
}

// listEventsFor lists events as f selects them, narrowed for a bound
// caller to its subjects (one listing of them all, so that a customer
// with many subjects costs no more than one with one).
func (s *Server) listEventsFor(w http.ResponseWriter, r *http.Request, f store.EventFilter) ([]store.StoredEvent, bool) {
	var req []string
	if f.Subject != "" {
		req = []string{f.Subject}
	}
	subs, ok := s.allowSubjects(w, r, req)
	if !ok {
		return nil, false
	}
	if principalOf(r).Bound() {
		f.Subjects = subs
	}
	evs, err := s.Store.ListEvents(r.Context(), f)
	if err != nil {
		s.writeError(w, r, err)
		return nil, false
	}
	return evs, true
}

// visibleCustomers keeps the customers the caller may see.
func visibleCustomers(r *http.Request, cs []billing.Customer) []billing.Customer {
	p := principalOf(r)
	if !p.Bound() {
		return cs
	}
	return slices.DeleteFunc(cs, func(c billing.Customer) bool { return c.ID != p.CustomerID })
}

// visibleSubjects keeps the subjects the caller may see.
func (s *Server) visibleSubjects(w http.ResponseWriter, r *http.Request, subs []store.Subject) ([]store.Subject, bool) {
	p := principalOf(r)
	if !p.Bound() {
		return subs, true
	}
	mine, ok := s.boundSubjects(w, r, p)
	if !ok {
		return nil, false
	}
	return slices.DeleteFunc(subs, func(sub store.Subject) bool { return !slices.Contains(mine, sub.Key) }), true
}
