package httpapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/shopspring/decimal"

	"github.com/tally-metering/tally/internal/auth"
	"github.com/tally-metering/tally/internal/store"
)

// portalTokenInput is the body of POST /api/v1/portal/tokens.
type portalTokenInput struct {
	// Customer (key or id) or Subject names whose data the token shows.
	Customer string `json:"customer"`
	Subject  string `json:"subject"`
	// Meters are the meters (slugs or ids) the token may query; omitted:
	// every meter.
	Meters []string `json:"meters"`
	// TTL is the token's lifetime, a Go duration ("15m", "1h"); default
	// 1h, at most 24h.
	TTL string `json:"ttl"`
}

type portalTokenView struct {
	Token     string    `json:"token"`
	ID        string    `json:"id"`
	Customer  string    `json:"customer"`
	Subject   string    `json:"subject,omitempty"`
	Meters    []string  `json:"meters,omitempty"`
	ExpiresAt time.Time `json:"expiresAt"`
}

// defaultPortalTTL is a portal token's lifetime when none is asked for.
const defaultPortalTTL = time.Hour

func (s *Server) createPortalToken(w http.ResponseWriter, r *http.Request) {
	if s.Portal == nil {
		writeProblem(w, r, Problem{Status: http.StatusServiceUnavailable, Detail: "portal tokens are not configured on this server"})
		return
	}
	var in portalTokenInput
	if err := decodeJSON(w, r, &in); err != nil {
		s.writeError(w, r, err)
		return
	}
	var errs []error
	ttl := defaultPortalTTL
	if in.TTL != "" {
		d, err := time.ParseDuration(in.TTL)
		switch {
		case err != nil:
			errs = append(errs, fmt.Errorf("ttl: %q is not a duration like 15m or 1h", in.TTL))
		case d <= 0 || d > auth.MaxPortalTTL:
			errs = append(errs, fmt.Errorf("ttl: %s is not between 0 and %s", d, auth.MaxPortalTTL))
		default:
			ttl = d
		}
	}
	if in.Customer == "" && in.Subject == "" {
		errs = append(errs, errors.New("customer: required (or subject)"))
	}
	if in.Subject != "" {
		errs = append(errs, checkSubjects("subject", []string{in.Subject})...)
	}
	var meters []string
	for i, ref := range in.Meters {
		m, err := s.Store.GetMeter(r.Context(), ref)
		if errors.Is(err, store.ErrNotFound) {
			errs = append(errs, fmt.Errorf("meters[%d]: there is no meter %q", i, ref))
			continue
		} else if err != nil {
			s.writeError(w, r, err)
			return
		}
		if !slices.Contains(meters, m.Slug) {
			meters = append(meters, m.Slug)
		}
	}
	if in.Meters != nil && len(in.Meters) == 0 {
		errs = append(errs, errors.New("meters: empty; omit it to allow every meter"))
	}
	if len(errs) > 0 {
		badRequest(w, r, errors.Join(errs...))
		return
	}
	c, err := s.binding(r.Context(), in.Customer, in.Subject)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	now := s.Now().UTC()
	tok, id, err := s.Portal.Issue(auth.PortalGrant{CustomerID: c.ID, Subject: in.Subject, Meters: meters}, now, ttl)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	// Recorded before it is handed out, so that every token in use can be
	// listed and revoked.
	rec := store.PortalToken{ID: id, CustomerID: c.ID, Subject: in.Subject, Meters: meters,
		CreatedBy: principalOf(r).ID, CreatedAt: now, ExpiresAt: now.Add(ttl)}
	if err := s.Store.CreatePortalToken(r.Context(), rec); err != nil {
		s.writeError(w, r, err)
		return
	}
	// Tokens that expired can't be used or revoked any more.
	if _, err := s.Store.DeleteExpiredPortalTokens(r.Context(), now); err != nil {
		s.log.Warn("forget expired portal tokens", "err", err)
	}
	setAuditTarget(r, id)
	w.Header().Set("Location", "/api/v1/portal/tokens/"+id)
	w.Header().Set("Cache-Control", "no-store")
	s.writeJSON(w, r, http.StatusCreated, portalTokenView{Token: tok, ID: id, Customer: c.ID, Subject: in.Subject, Meters: meters, ExpiresAt: now.Add(ttl)})
}

// portalTokenRecord is an issued portal token as the API lists it (never
// the token itself).
type portalTokenRecord struct {
	store.PortalToken
	// Status is active, revoked or expired as of the server clock.
	Status string `json:"status"`
}

func portalTokenStatus(t store.PortalToken, now time.Time) string {
	switch {
	case t.RevokedAt != nil && !t.RevokedAt.After(now):
		return "revoked"
	case !t.ExpiresAt.After(now):
		return "expired"
	}
	return "active"
}

// listPortalTokens lists the portal tokens that have not expired, oldest
// first, optionally of one customer (?customer=, key or id).
func (s *Server) listPortalTokens(w http.ResponseWriter, r *http.Request) {
	p, err := parsePage(r, "portal tokens", 2)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	now := s.Now().UTC()
	f := store.PortalTokenFilter{ExpiresAfter: now}
	if ref := r.URL.Query().Get("customer"); ref != "" {
		c, err := s.Store.GetCustomer(r.Context(), ref)
		if errors.Is(err, store.ErrNotFound) {
			badRequest(w, r, fmt.Errorf("customer: there is no customer %q", ref))
			return
		} else if err != nil {
			s.writeError(w, r, err)
			return
		}
		f.CustomerID = c.ID
	}
	ts, err := s.Store.ListPortalTokens(r.Context(), f)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	out := make([]portalTokenRecord, 0, len(ts))
	for _, t := range ts {
		out = append(out, portalTokenRecord{PortalToken: t, Status: portalTokenStatus(t, now)})
	}
	s.writeJSON(w, r, http.StatusOK, paginate("portal tokens", out, func(t portalTokenRecord) []string { return []string{sortKeyTime(t.CreatedAt), t.ID} }, p))
}

// revokePortalToken revokes one portal token at once; revoking a revoked
// token changes nothing. The revocation is stored (until the token
// expires) and takes effect in this process at once.
func (s *Server) revokePortalToken(w http.ResponseWriter, r *http.Request) {
	now := s.Now().UTC()
	t, err := s.Store.RevokePortalToken(r.Context(), r.PathValue("id"), now)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if s.Portal != nil {
		s.Portal.Revoke(t.ID, t.ExpiresAt, now)
	}
	s.writeJSON(w, r, http.StatusOK, portalTokenRecord{PortalToken: t, Status: portalTokenStatus(t, now)})
}

// revokeCustomerPortalTokens revokes every unexpired portal token of one
// customer (?customer=, key or id; a deleted customer too) and lists them.
func (s *Server) revokeCustomerPortalTokens(w http.ResponseWriter, r *http.Request) {
	ref := r.URL.Query().Get("customer")
	if ref == "" {
		badRequest(w, r, errors.New("customer: required: the customer (key or id) whose portal tokens to revoke"))
		return
	}
	c, err := s.Store.GetCustomer(r.Context(), ref)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	now := s.Now().UTC()
	ts, err := s.Store.RevokeCustomerPortalTokens(r.Context(), c.ID, now)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	out := make([]portalTokenRecord, 0, len(ts))
	for _, t := range ts {
		if s.Portal != nil {
			s.Portal.Revoke(t.ID, t.ExpiresAt, now)
		}
		out = append(out, portalTokenRecord{PortalToken: t, Status: portalTokenStatus(t, now)})
	}
	setAuditTarget(r, c.ID)
	s.writeJSON(w, r, http.StatusOK, itemsOf[portalTokenRecord]{out})
}

// portalUsage is the customer usage view of the token's customer, with
// only the charges of the meters the token may see as lines; the others
// are summed in otherCharges, and the totals stay the whole bill.
func (s *Server) portalUsage(w http.ResponseWriter, r *http.Request) {
	p := principalOf(r)
	r.SetPathValue("idOrKey", p.CustomerID)
	if p.Meters == nil {
		s.getCustomerUsage(w, r)
		return
	}
	rec := &bufferedResponse{header: http.Header{}, code: http.StatusOK}
	s.getCustomerUsage(rec, r)
	if rec.code != http.StatusOK {
		rec.copyTo(w)
		return
	}
	var v customerUsage
	if err := json.Unmarshal(rec.body.Bytes(), &v); err != nil {
		s.writeError(w, r, fmt.Errorf("portal usage: %w", err))
		return
	}
	out := portalUsageView{Customer: v.Customer, CustomerKey: v.CustomerKey, Subject: v.Subject, AsOf: v.AsOf, Subscriptions: make([]portalSubscriptionUsage, 0, len(v.Subscriptions))}
	for _, su := range v.Subscriptions {
		ps, err := hideCharges(su, p.Meters)
		if err != nil {
			s.writeError(w, r, fmt.Errorf("portal usage: %w", err))
			return
		}
		out.Subscriptions = append(out.Subscriptions, ps)
	}
	s.writeJSON(w, r, http.StatusOK, out)
}

// portalUsageView is the customer usage view as a portal token limited to
// some meters sees it.
type portalUsageView struct {
	Customer      string                    `json:"customer"`
	CustomerKey   string                    `json:"customerKey"`
	Subject       string                    `json:"subject,omitempty"`
	AsOf          time.Time                 `json:"asOf"`
	Subscriptions []portalSubscriptionUsage `json:"subscriptions"`
}

// portalSubscriptionUsage is a subscription's usage with the charges of
// meters the token may not see taken out of the lines but not out of the
// money: OtherCharges adds them up, so that the base fee, the lines shown
// and OtherCharges still make the total the customer will be billed.
type portalSubscriptionUsage struct {
	subscriptionUsage
	OtherCharges *otherCharges `json:"otherCharges,omitempty"`
}

// otherCharges sums the charges a portal token does not show.
type otherCharges struct {
	Charges         int    `json:"charges"`
	Amount          string `json:"amount,omitempty"`
	ProjectedAmount string `json:"projectedAmount,omitempty"`
}

// hideCharges keeps the charges of meters, summing the others.
func hideCharges(su subscriptionUsage, meters []string) (portalSubscriptionUsage, error) {
	// Amounts have the currency's decimals; so has the total.
	digits := int32(0)
	if _, frac, ok := strings.Cut(su.Total, "."); ok {
		digits = int32(len(frac))
	}
	var n int
	var amount, projected decimal.Decimal
	kept := make([]chargeUsage, 0, len(su.Charges))
	for _, c := range su.Charges {
		if slices.Contains(meters, c.Meter) {
			kept = append(kept, c)
			continue
		}
		if su.Total == "" {
			// One subject's share shows no money (shareOf).
			n++
			continue
		}
		a, err := decimal.NewFromString(c.Amount)
		if err != nil {
			return portalSubscriptionUsage{}, fmt.Errorf("charge %s amount: %w", c.Key, err)
		}
		pa, err := decimal.NewFromString(c.ProjectedAmount)
		if err != nil {
			return portalSubscriptionUsage{}, fmt.Errorf("charge %s projected amount: %w", c.Key, err)
		}
		n, amount, projected = n+1, amount.Add(a), projected.Add(pa)
	}
	su.Charges = kept
	out := portalSubscriptionUsage{subscriptionUsage: su}
	switch {
	case n > 0 && su.Total == "":
		out.OtherCharges = &otherCharges{Charges: n}
	case n > 0:
		out.OtherCharges = &otherCharges{Charges: n, Amount: amount.StringFixed(digits), ProjectedAmount: projected.StringFixed(digits)}
	}
	return out, nil
}

// bufferedResponse holds a handler's response so that it can be filtered
// before it is sent.
type bufferedResponse struct {
	header http.Header
	code   int
	body   bytes.Buffer
}

func (b *bufferedResponse) Header() http.Header         { return b.header }
func (b *bufferedResponse) WriteHeader(code int)        { b.code = code }
func (b *bufferedResponse) Write(p []byte) (int, error) { return b.body.Write(p) }

func (b *bufferedResponse) copyTo(w http.ResponseWriter) {
	for k, vs := range b.header {
		w.Header()[k] = vs
	}
	w.WriteHeader(b.code)
	_, _ = w.Write(b.body.Bytes())
}

// portalQuery is a usage query of one meter the token may see, over the
// token's customer's subjects only.
func (s *Server) portalQuery(w http.ResponseWriter, r *http.Request) {
	p := principalOf(r)
	ref := r.PathValue("slug")
	m, err := s.Store.GetMeter(r.Context(), ref)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		s.writeError(w, r, err)
		return
	}
	if err != nil || (p.Meters != nil && !slices.Contains(p.Meters, m.Slug)) {
		forbid(w, r, fmt.Sprintf("meter %q is not one this token may query", ref))
		return
	}
	r.SetPathValue("idOrSlug", m.ID)
	s.queryMeter(w, r)
}
