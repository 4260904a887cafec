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
	"time"

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
			t, ok := s.tenantOf(w, r, p)
			if !ok {
				return
			}
			r = r.WithContext(context.WithValue(r.Context(), tenantKey{}, t))
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

// subjectInPath admits a bound caller only to the subjects its customer
// owns now (narrowed to its one subject for a subject-bound credential).
func subjectInPath(name string) tenantCheck {
	return func(s *Server, w http.ResponseWriter, r *http.Request, p auth.Principal) bool {
		sub := r.PathValue(name)
		if !slices.Contains(tenantFrom(r).customer.Subjects, sub) {
			forbid(w, r, fmt.Sprintf("subject %q is not one of the subjects this credential may read", sub))
			return false
		}
		return true
	}
}

// customerWide admits to a view of the whole customer (its record,
// users, subscriptions, invoices, reports) only callers bound to the
// whole customer: a credential bound to one subject sees that subject's
// usage and events, not what the customer's other subjects did or what
// the customer is billed.
func customerWide(check tenantCheck) tenantCheck {
	return func(s *Server, w http.ResponseWriter, r *http.Request, p auth.Principal) bool {
		if p.Subject != "" {
			forbid(w, r, fmt.Sprintf("%s %s shows the whole customer; this credential is bound to subject %q and sees that subject's usage and events only", r.Method, r.URL.Path, p.Subject))
			return false
		}
		return check(s, w, r, p)
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

// tenantKey holds, in a bound caller's request context, the tenant
// authorize found it reaches.
type tenantKey struct{}

// tenant is what a bound credential reaches: its customer with the
// customer's dated ownership of its subjects (billing.Ownership), narrowed
// to one subject for a credential bound to one. Every read and write of a
// bound caller asks this ownership, through the same functions billing
// attributes usage by, so a bound credential never reaches a minute its
// customer did not own.
type tenant struct {
	customer billing.Customer
	// subject is the one subject the credential is bound to ("" when it is
	// bound to the whole customer).
	subject string
}

// allTime is the range of every time an event may carry (bounds on input
// keep event times within years 0001 to 9999).
var allTime = billing.Span{
	From: time.Date(1, 1, 1, 0, 0, 0, 0, time.UTC),
	To:   time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC),
}

// tenantOf returns what bound caller p reaches. ok is false when the
// binding can't be used any more (the refusal is written): its customer
// was deleted, or never owned the subject it is bound to.
func (s *Server) tenantOf(w http.ResponseWriter, r *http.Request, p auth.Principal) (tenant, bool) {
	if t, ok := r.Context().Value(tenantKey{}).(tenant); ok {
		return t, true
	}
	c, err := s.Store.GetCustomer(r.Context(), p.CustomerID)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		s.writeError(w, r, err)
		return tenant{}, false
	}
	if err != nil || c.DeletedAt != nil {
		forbid(w, r, "the customer this credential is bound to was deleted; it can no longer be used")
		return tenant{}, false
	}
	if p.Subject == "" {
		return tenant{customer: c}, true
	}
	if len(c.OwnershipOf(p.Subject)) == 0 {
		forbid(w, r, fmt.Sprintf("subject %q, which this credential is bound to, was never customer %q's", p.Subject, c.Key))
		return tenant{}, false
	}
	return tenant{customer: c.Narrow(p.Subject), subject: p.Subject}, true
}

// tenantFrom is the tenant authorize stored for a bound request.
func tenantFrom(r *http.Request) tenant {
	t, _ := r.Context().Value(tenantKey{}).(tenant)
	return t
}

// readScope is what a caller may read of events and usage: everything (an
// unbound caller), or the minutes during which its customer owned each of
// its subjects.
type readScope struct {
	all      bool
	subjects []string
	within   map[string][]billing.Span
}

// none reports whether the scope reaches no subject at all: a query in it
// answers nothing without asking the store (an empty subject list would
// mean every subject there).
func (rs readScope) none() bool { return !rs.all && len(rs.subjects) == 0 }

// scopeOf checks that the caller may read the requested subjects and
// returns what it may read: the requested ones (every one when none is
// requested) and, for a bound caller, only the minutes its customer owned
// them. A subject its customer never owned is refused.
func (s *Server) scopeOf(w http.ResponseWriter, r *http.Request, requested []string) (readScope, bool) {
	p := principalOf(r)
	if !p.Bound() {
		return readScope{all: true, subjects: requested}, true
	}
	t, ok := s.tenantOf(w, r, p)
	if !ok {
		return readScope{}, false
	}
	subjects, within := t.customer.UsageSubjects(allTime.From, allTime.To)
	for _, sub := range requested {
		if !slices.Contains(subjects, sub) {
			forbid(w, r, fmt.Sprintf("subject %q is not one of the subjects this credential may read", sub))
			return readScope{}, false
		}
	}
	if len(requested) > 0 {
		subjects = requested
	}
	return readScope{subjects: subjects, within: within}, true
}

// allowIngest checks that a bound ingest caller sends only events of its
// subjects, each timed in a minute its customer owned that subject and no
// further ahead of the server clock than BoundMaxFutureSkew; otherwise
// the whole request is refused, naming every event at fault, and nothing
// is stored.
func (s *Server) allowIngest(w http.ResponseWriter, r *http.Request, events []event.Event) bool {
	p := principalOf(r)
	if !p.Bound() || len(events) == 0 {
		return true
	}
	t, ok := s.tenantOf(w, r, p)
	if !ok {
		return false
	}
	lo, hi := events[0].Time, events[0].Time
	for _, e := range events[1:] {
		if e.Time.Before(lo) {
			lo = e.Time
		}
		if e.Time.After(hi) {
			hi = e.Time
		}
	}
	owned := t.customer.OwnedBetween(lo, hi)
	latest := s.Now().UTC().Add(s.boundFutureSkew())
	var problems []event.Problem
	var detail string
	for i, e := range events {
		var msg string
		switch {
		case !owned.Owns(e.Subject, e.Time):
			// The history is read again only to explain a refusal.
			os := t.customer.OwnershipOf(e.Subject)
			if len(os) == 0 {
				msg = fmt.Sprintf("subject %q is not one this credential may send events for", e.Subject)
				break
			}
			msg = fmt.Sprintf("subject %q was customer %q's %s; the event's minute %s is outside that, so its usage would be another customer's",
				e.Subject, t.customer.Key, describeOwnership(os), e.Time.Truncate(time.Minute).Format(time.RFC3339))
		case e.Time.After(latest):
			msg = fmt.Sprintf("time %s is more than %s after the server clock (%s); a credential bound to a customer may send events at most that far ahead",
				e.Time.Format(time.RFC3339Nano), s.boundFutureSkew(), s.Now().UTC().Format(time.RFC3339))
		default:
			continue
		}
		field := "subject"
		if strings.HasPrefix(msg, "time ") {
			field = "time"
		}
		if detail == "" {
			detail = fmt.Sprintf("event %d: %s; the request was rejected whole and nothing of it was stored", i, msg)
		}
		problems = append(problems, event.Problem{Index: i, Field: field, Message: msg})
	}
	if len(problems) == 0 {
		return true
	}
	writeProblem(w, r, Problem{Status: http.StatusForbidden, Title: "Event not allowed", Detail: detail, Problems: problems})
	return false
}

// DefaultBoundMaxFutureSkew is how far ahead of the server clock a bound
// credential may time an event by default.
const DefaultBoundMaxFutureSkew = 5 * time.Minute

func (s *Server) boundFutureSkew() time.Duration {
	if s.BoundMaxFutureSkew > 0 {
		return s.BoundMaxFutureSkew
	}
	return DefaultBoundMaxFutureSkew
}

// describeOwnership says when a customer owned a subject, for refusals.
func describeOwnership(os []billing.Ownership) string {
	if len(os) == 0 {
		return "never"
	}
	parts := make([]string, 0, len(os))
	for _, o := range os {
		from, to := "the beginning", "now"
		if o.From != nil {
			from = o.From.UTC().Format(time.RFC3339)
		}
		if o.To != nil {
			to = o.To.UTC().Format(time.RFC3339)
		}
		parts = append(parts, fmt.Sprintf("from %s until %s", from, to))
	}
	return strings.Join(parts, " and ")
}

// listEventsFor lists events as f selects them, narrowed for a bound
// caller to the minutes its customer owned its subjects (one listing of
// them all, so that a customer with many subjects costs no more than one
// with one).
func (s *Server) listEventsFor(w http.ResponseWriter, r *http.Request, f store.EventFilter) ([]store.StoredEvent, bool) {
	var req []string
	if f.Subject != "" {
		req = []string{f.Subject}
	}
	scope, ok := s.scopeOf(w, r, req)
	if !ok {
		return nil, false
	}
	if scope.none() {
		return nil, true
	}
	if !scope.all {
		f.Subjects, f.Within = scope.subjects, scope.within
	}
	evs, err := s.Store.ListEvents(r.Context(), f)
	if err != nil {
		s.writeError(w, r, err)
		return nil, false
	}
	return evs, true
}

// visibleSubjects keeps the subjects the caller may see: a bound
// caller's customer's current subjects (the subject resource is the
// subject as it is now, so a subject given up is another's to see).
func (s *Server) visibleSubjects(w http.ResponseWriter, r *http.Request, subs []store.Subject) ([]store.Subject, bool) {
	p := principalOf(r)
	if !p.Bound() {
		return subs, true
	}
	t, ok := s.tenantOf(w, r, p)
	if !ok {
		return nil, false
	}
	return slices.DeleteFunc(subs, func(sub store.Subject) bool { return !slices.Contains(t.customer.Subjects, sub.Key) }), true
}
