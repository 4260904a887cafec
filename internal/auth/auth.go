// Package auth decides who a request comes from. For now tally knows one
// credential, the admin token; scoped keys and tokens build on the same
// Authenticator.
package auth

import (
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"net/http"
	"strings"
)

// ErrUnauthenticated means the request carries no valid credential.
var ErrUnauthenticated = errors.New("missing or invalid credentials: send Authorization: Bearer <token>")

// Principal is who a request acts as.
type Principal struct {
	// ID names the credential (never the secret itself), for logs and audit.
	ID    string
	Admin bool
}

// Authenticator checks a request's credentials.
type Authenticator interface {
	// Authenticate returns the caller, or an error wrapping
	// ErrUnauthenticated.
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

// Authenticate implements Authenticator. It compares digests in constant
// time, so the comparison leaks nothing about the token.
func (a *AdminToken) Authenticate(r *http.Request) (Principal, error) {
	if !a.set {
		return Principal{ID: "anonymous", Admin: true}, nil
	}
	tok, ok := BearerToken(r.Header.Get("Authorization"))
	if !ok {
		return Principal{}, ErrUnauthenticated
	}
	got := sha256.Sum256([]byte(tok))
	if subtle.ConstantTimeCompare(got[:], a.sum[:]) != 1 {
		return Principal{}, ErrUnauthenticated
	}
	return Principal{ID: "admin-token", Admin: true}, nil
}

// BearerToken extracts the token of an "Authorization: Bearer <token>"
// header value.
func BearerToken(h string) (string, bool) {
	const prefix = "bearer "
	if len(h) <= len(prefix) || !strings.EqualFold(h[:len(prefix)], prefix) {
		return "", false
	}
	tok := strings.TrimSpace(h[len(prefix):])
	return tok, tok != ""
}
