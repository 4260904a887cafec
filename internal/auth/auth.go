// Package auth decides who a request comes from and what it may do: the
// bootstrap admin token, API keys (stored only as hashes), portal tokens
// (short-lived, signed by tally) and JWTs from an OIDC issuer. Every kind of
// credential becomes a Principal; package httpapi decides with it what a
// request may touch.
package auth

import (
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
)

// ErrUnauthenticated means the request carries no valid credential.
var ErrUnauthenticated = errors.New("missing or invalid credentials: send Authorization: Bearer <token>")

// ForbiddenError is a credential that is valid but may not be used (its
// customer was deleted, say). It is not ErrUnauthenticated: a client
// should not retry with the same credential.
type ForbiddenError struct{ Msg string }

func (e *ForbiddenError) Error() string { return e.Msg }

// Scope is what a credential may do.
type Scope string

// The scopes. Admin includes every other scope.
const (
	// ScopeAdmin changes meters, subjects, customers, plans,
	// subscriptions, keys and tokens, and reads everything.
	ScopeAdmin Scope = "admin"
	// ScopeIngest sends events.
	ScopeIngest Scope = "ingest"
	// ScopeRead lists and queries.
	ScopeRead Scope = "read"
	// ScopeMetrics reads /metrics and nothing else: the credential of a
	// Prometheus scraper.
	ScopeMetrics Scope = "metrics"
)

// Scopes lists every scope.
var Scopes = []Scope{ScopeAdmin, ScopeIngest, ScopeRead, ScopeMetrics}

// ParseScope checks a scope name.
func ParseScope(s string) (Scope, error) {
	if slices.Contains(Scopes, Scope(s)) {
		return Scope(s), nil
	}
	return "", fmt.Errorf("scope %q is not one of admin, ingest, read, metrics", s)
}

// Kind says which sort of credential a Principal comes from.
type Kind string

// The kinds of credential.
const (
	KindAnonymous  Kind = "anonymous" // open mode: no credential configured
	KindAdminToken Kind = "admin-token"
	KindKey        Kind = "key"
	KindPortal     Kind = "portal"
	KindOIDC       Kind = "oidc"
)

// Principal is who a request acts as.
type Principal struct {
	// ID names the credential (never the secret itself), for logs, audit
	// and rate limits: "admin-token", a key id, "portal:<token id>",
	// "oidc:<subject>".
	ID   string
	Kind Kind
	// Admin is true when Scopes include ScopeAdmin.
	Admin  bool
	Scopes []Scope
	// CustomerID binds the credential to one customer (by id): it sees and
	// sends only that customer's data. Empty means unbound.
	CustomerID string
	// Subject binds the credential further, to one subject (a deployment)
	// of CustomerID.
	Subject string
	// Meters, for portal tokens, are the meter slugs the token may query
	// (nil: every meter).
	Meters []string
}

// Can reports whether p has scope s (admin has every scope).
func (p Principal) Can(s Scope) bool {
	return p.Admin || slices.Contains(p.Scopes, ScopeAdmin) || slices.Contains(p.Scopes, s)
}

// Bound reports whether p is restricted to one customer.
func (p Principal) Bound() bool { return p.CustomerID != "" }

// Authenticator checks a request's credentials.
type Authenticator interface {
	// Authenticate returns the caller, or an error wrapping
	// ErrUnauthenticated (no or bad credential) or a *ForbiddenError (a
	// good credential that can't be used).
	Authenticate(r *http.Request) (Principal, error)
}

// AdminToken accepts requests bearing one fixed token. With an empty token
// every request is accepted as an anonymous admin (open mode).
type AdminToken struct {
	sum [32]byte
	set bool
}

// NewAdminToken returns an authenticator for token ("" = open mode).
func NewAdminToken(token string) *AdminToken {
	if token == "" {
		return &AdminToken{}
	}
	return &AdminToken{sum: sha256.Sum256([]byte(token)), set: true}
}

// Open reports whether no credential is required.
func (a *AdminToken) Open() bool { return !a.set }

// adminPrincipal is the caller holding the admin token.
var adminPrincipal = Principal{ID: "admin-token", Kind: KindAdminToken, Admin: true, Scopes: []Scope{ScopeAdmin}}

// anonymousPrincipal is every caller in open mode.
var anonymousPrincipal = Principal{ID: "anonymous", Kind: KindAnonymous, Admin: true, Scopes: []Scope{ScopeAdmin}}

// Authenticate implements Authenticator. It compares digests in constant
// time, so the comparison leaks nothing about the token.
func (a *AdminToken) Authenticate(r *http.Request) (Principal, error) {
	if !a.set {
		return anonymousPrincipal, nil
	}
	tok, ok := BearerToken(r.Header.Get("Authorization"))
	if !ok || !a.Match(tok) {
		return Principal{}, ErrUnauthenticated
	}
	return adminPrincipal, nil
}

// Match reports, in constant time, whether tok is the admin token (never
// when none is set).
func (a *AdminToken) Match(tok string) bool {
	got := sha256.Sum256([]byte(tok))
	return subtle.ConstantTimeCompare(got[:], a.sum[:]) == 1 && a.set
}

// BearerToken extracts the token of an "Authorization: Bearer <token>"
// header value.
func BearerToken(h string) (string, bool) {
	const prefix = "bearer "
	if len(h) <= len(prefix) || !strings.EqualFold(h[:len(prefix)], prefix) {
		return "", false
	}
	tok := strings.TrimSpace(h[len(prefix):])
	if tok == "" || strings.ContainsAny(tok, " \t\r\n") {
		return "", false
	}
	return tok, true
}
