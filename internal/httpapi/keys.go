package httpapi

import (
	"context"
	"crypto/rand"
	"encoding/base32"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/tally-metering/tally/internal/auth"
	"github.com/tally-metering/tally/internal/billing"
	"github.com/tally-metering/tally/internal/store"
)

// keyInput is the body of POST /api/v1/keys.
type keyInput struct {
	Name  string `json:"name"`
	Scope string `json:"scope"`
	// Customer (key or id) binds the key to a customer; Subject to one of
	// its subjects (the customer is then found from the subject if not
	// given).
	Customer  string     `json:"customer"`
	Subject   string     `json:"subject"`
	ExpiresAt *time.Time `json:"expiresAt"`
}

// keyView is an API key as the API shows it: never the key, except once,
// in Key, when it is created.
type keyView struct {
	store.APIKey
	Key         string `json:"key,omitempty"`
	CustomerKey string `json:"customerKey,omitempty"`
	// Status is active, expired or revoked as of the server clock.
	Status string `json:"status"`
}

func keyStatus(k store.APIKey, now time.Time) string {
	switch {
	case k.RevokedAt != nil && !k.RevokedAt.After(now):
		return "revoked"
	case k.ExpiresAt != nil && !k.ExpiresAt.After(now):
		return "expired"
	}
	return "active"
}

// binding resolves a customer reference and a subject into the customer
// and subject a credential is bound to. Both empty: unbound.
func (s *Server) binding(ctx context.Context, customerRef, subject string) (billing.Customer, error) {
	var c billing.Customer
	var err error
	switch {
	case customerRef == "" && subject == "":
		return c, nil
	case customerRef == "":
		c, err = s.Store.CustomerBySubject(ctx, subject)
		if errors.Is(err, store.ErrNotFound) {
			return c, &queryError{fmt.Errorf("subject: %q belongs to no customer; add it to a customer's subjects first", subject)}
		}
		return c, err
	}
	c, err = s.Store.GetCustomer(ctx, customerRef)
	if errors.Is(err, store.ErrNotFound) {
		return c, &queryError{fmt.Errorf("customer: there is no customer %q", customerRef)}
	}
	if err != nil {
		return c, err
	}
	if c.DeletedAt != nil {
		return c, &queryError{fmt.Errorf("customer: %q is deleted", customerRef)}
	}
	if subject != "" && !slices.Contains(c.Subjects, subject) {
		return c, &queryError{fmt.Errorf("subject: %q is not one of customer %q's subjects", subject, c.Key)}
	}
	return c, nil
}

func (s *Server) createKey(w http.ResponseWriter, r *http.Request) {
	var in keyInput
	if err := decodeJSON(w, r, &in); err != nil {
		s.writeError(w, r, err)
		return
	}
	now := s.Now().UTC()
	var errs []error
	scope, err := auth.ParseScope(in.Scope)
	if err != nil {
		errs = append(errs, fmt.Errorf("scope: %w", err))
	}
	if (scope == auth.ScopeAdmin || scope == auth.ScopeMetrics) && (in.Customer != "" || in.Subject != "") {
		errs = append(errs, fmt.Errorf("scope: an admin or metrics key can't be bound to a customer or subject (this one is %s); use ingest or read", scope))
	}
	if in.ExpiresAt != nil && !in.ExpiresAt.After(now) {
		errs = append(errs, fmt.Errorf("expiresAt: %s is not in the future", in.ExpiresAt.Format(time.RFC3339)))
	}
	if in.Subject != "" {
		errs = append(errs, checkSubjects("subject", []string{in.Subject})...)
	}
	if len(in.Name) > 200 {
		errs = append(errs, errors.New("name: at most 200 characters"))
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
	secret, hash, err := auth.NewAPIKey()
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	id, err := newKeyID()
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	k := store.APIKey{
		ID: id, Name: in.Name, Prefix: auth.KeyDisplayPrefix(secret), Hash: hash, Scope: string(scope),
		CustomerID: c.ID, Subject: in.Subject, CreatedBy: principalOf(r).ID, CreatedAt: now,
	}
	if in.ExpiresAt != nil {
		t := in.ExpiresAt.UTC()
		k.ExpiresAt = &t
	}
	if err := s.Store.CreateAPIKey(r.Context(), k); err != nil {
		s.writeError(w, r, err)
		return
	}
	if scope == auth.ScopeAdmin {
		// An admin credential now exists: the API stops being open.
		if o, ok := s.Auth.(interface {
			Open() bool
			EndOpenMode()
		}); ok && o.Open() {
			o.EndOpenMode()
			s.log.Warn("an admin API key was created: open mode ends, every API request now needs a credential", "key", k.ID)
		}
	}
	w.Header().Set("Location", "/api/v1/keys/"+k.ID)
	w.Header().Set("Cache-Control", "no-store")
	s.writeJSON(w, r, http.StatusCreated, keyView{APIKey: k, Key: secret, CustomerKey: c.Key, Status: keyStatus(k, now)})
}

// newKeyID names a key; the id is not secret.
func newKeyID() (string, error) {
	var b [10]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("generate key id: %w", err)
	}
	return "key_" + strings.ToLower(base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(b[:])), nil
}

func (s *Server) listKeys(w http.ResponseWriter, r *http.Request) {
	p, err := parsePage(r, "keys", 2)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	ks, err := s.Store.ListAPIKeys(r.Context())
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	now := s.Now()
	out := make([]keyView, 0, len(ks))
	customerKeys := map[string]string{}
	for _, k := range ks {
		out = append(out, s.viewKey(r.Context(), k, now, customerKeys))
	}
	s.writeJSON(w, r, http.StatusOK, paginate("keys", out, func(k keyView) []string { return []string{sortKeyTime(k.CreatedAt), k.ID} }, p))
}

func (s *Server) getKey(w http.ResponseWriter, r *http.Request) {
	k, err := s.Store.GetAPIKey(r.Context(), r.PathValue("id"))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	s.writeJSON(w, r, http.StatusOK, s.viewKey(r.Context(), k, s.Now(), nil))
}

// revokeKey revokes a key at once; revoking a revoked key changes nothing.
func (s *Server) revokeKey(w http.ResponseWriter, r *http.Request) {
	k, err := s.Store.RevokeAPIKey(r.Context(), r.PathValue("id"), s.Now().UTC())
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	s.writeJSON(w, r, http.StatusOK, s.viewKey(r.Context(), k, s.Now(), nil))
}

// viewKey shows k as the API does, with the key of the customer it is bound
// to, as its creation answered. customerKeys, when not nil, remembers the
// customers looked up across the keys of one answer. A customer that
// can't be read (deleted since) leaves customerKey out.
func (s *Server) viewKey(ctx context.Context, k store.APIKey, now time.Time, customerKeys map[string]string) keyView {
	v := keyView{APIKey: k, Status: keyStatus(k, now)}
	if k.CustomerID == "" {
		return v
	}
	key, ok := customerKeys[k.CustomerID]
	if !ok {
		if c, err := s.Store.GetCustomer(ctx, k.CustomerID); err == nil {
			key = c.Key
		}
		if customerKeys != nil {
			customerKeys[k.CustomerID] = key
		}
	}
	v.CustomerKey = key
	return v
}
