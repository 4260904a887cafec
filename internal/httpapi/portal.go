package httpapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"time"

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
	setAuditTarget(r, id)
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusCreated, portalTokenView{Token: tok, ID: id, Customer: c.ID, Subject: in.Subject, Meters: meters, ExpiresAt: now.Add(ttl)})
}

// portalUsage is the customer usage view of the token's customer, with
// only the charges of the meters the token may see.
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
	for i := range v.Subscriptions {
		v.Subscriptions[i].Charges = slices.DeleteFunc(v.Subscriptions[i].Charges, func(c chargeUsage) bool {
			return !slices.Contains(p.Meters, c.Meter)
		})
	}
	writeJSON(w, http.StatusOK, v)
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
