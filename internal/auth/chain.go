package auth

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"sync/atomic"
	"time"
)

// Chain is tally's Authenticator: it recognises each kind of credential by
// its shape and verifies it with the matching verifier. Nil verifiers are
// off.
type Chain struct {
	// Admin is the bootstrap admin token (may be open: unset).
	Admin *AdminToken
	// Keys verifies API keys ("tly_…").
	Keys *Keys
	// Portal verifies portal tokens (HS256 JWTs issued by tally).
	Portal *PortalKeys
	// OIDC verifies JWTs of the configured issuer.
	OIDC *OIDC
	// ResolveCustomer turns an OIDC customer claim (a key or id) into a
	// live customer's id; an error means the customer can't be used.
	ResolveCustomer func(ctx context.Context, ref string) (string, error)
	Now             func() time.Time
	// OpenLoopbackOnly, in open mode, admits requests without credentials
	// only when they name a loopback host: a web page whose domain name
	// was rebound to 127.0.0.1 sends its own name, and must not become an
	// admin through the visitor's browser. Set it when tally is open
	// because it listens on loopback.
	OpenLoopbackOnly bool

	open atomic.Bool
}

// openCSRF refuses a browser's cross-origin writes in open mode, where a
// page could otherwise POST to tally as the anonymous admin (it can't
// read the answer, but the change is made).
var openCSRF = http.NewCrossOriginProtection()

// SetOpen sets open mode: requests without an Authorization header act as
// an anonymous admin. Requests with one are still verified, so a scoped key
// is scoped in open mode too.
func (c *Chain) SetOpen(open bool) { c.open.Store(open) }

// Open reports whether the chain is in open mode.
func (c *Chain) Open() bool { return c.open.Load() }

// EndOpenMode leaves open mode: called once an admin credential exists.
func (c *Chain) EndOpenMode() { c.open.Store(false) }

// Authenticate implements Authenticator.
func (c *Chain) Authenticate(r *http.Request) (Principal, error) {
	h := r.Header.Get("Authorization")
	if h == "" {
		if !c.Open() {
			return Principal{}, ErrUnauthenticated
		}
		if c.OpenLoopbackOnly && !loopbackHost(r.Host) {
			return Principal{}, &ForbiddenError{Msg: fmt.Sprintf("tally serves without credentials only to requests for a loopback host; this one is for %q (send a credential)", r.Host)}
		}
		if err := openCSRF.Check(r); err != nil {
			return Principal{}, &ForbiddenError{Msg: "tally serves without credentials, so it refuses a browser's cross-origin request: " + err.Error()}
		}
		return anonymousPrincipal, nil
	}
	tok, ok := BearerToken(h)
	if !ok {
		return Principal{}, ErrUnauthenticated
	}
	return c.Token(r.Context(), tok)
}

// Token verifies one bearer token.
func (c *Chain) Token(ctx context.Context, tok string) (Principal, error) {
	now := c.now()
	switch {
	case c.Admin != nil && c.Admin.Match(tok):
		return adminPrincipal, nil
	case strings.HasPrefix(tok, KeyPrefix):
		if c.Keys == nil {
			return Principal{}, ErrUnauthenticated
		}
		return c.Keys.Verify(ctx, tok)
	case strings.Count(tok, ".") == 2:
		if unverifiedIssuer(tok) == PortalIssuer {
			if c.Portal == nil {
				return Principal{}, ErrUnauthenticated
			}
			return c.Portal.Verify(tok, now)
		}
		if c.OIDC == nil {
			return Principal{}, ErrUnauthenticated
		}
		id, err := c.OIDC.Verify(ctx, tok, now)
		if err != nil {
			return Principal{}, err
		}
		return c.oidcPrincipal(ctx, id)
	}
	return Principal{}, ErrUnauthenticated
}

func (c *Chain) oidcPrincipal(ctx context.Context, id OIDCIdentity) (Principal, error) {
	p := Principal{ID: "oidc:" + id.Subject, Kind: KindOIDC, Scopes: id.Scopes, Admin: slices.Contains(id.Scopes, ScopeAdmin)}
	if id.Customer == "" {
		if id.DeploymentSubject != "" {
			return Principal{}, &ForbiddenError{Msg: "the token names a subject but no customer"}
		}
		return p, nil
	}
	if p.Admin {
		return Principal{}, &ForbiddenError{Msg: "the token is bound to a customer and can't have the admin scope"}
	}
	if c.ResolveCustomer == nil {
		return Principal{}, &ForbiddenError{Msg: "customer-bound tokens are not supported here"}
	}
	cid, err := c.ResolveCustomer(ctx, id.Customer)
	if err != nil {
		return Principal{}, &ForbiddenError{Msg: fmt.Sprintf("the token's customer %q can't be used: %v", id.Customer, err)}
	}
	p.CustomerID, p.Subject = cid, id.DeploymentSubject
	return p, nil
}

// loopbackHost reports whether a request's Host names this machine:
// localhost or a loopback address, with or without a port.
func loopbackHost(host string) bool {
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	} else if strings.HasPrefix(host, "[") && strings.HasSuffix(host, "]") {
		host = host[1 : len(host)-1]
	}
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.IsLoopback()
}

// unverifiedIssuer reads a JWT's iss claim without verifying anything, only
// to pick the verifier.
func unverifiedIssuer(tok string) string {
	parts := strings.Split(tok, ".")
	if len(parts) != 3 || len(parts[1]) > 8<<10 {
		return ""
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return ""
	}
	var c struct {
		Iss string `json:"iss"`
	}
	if json.Unmarshal(b, &c) != nil {
		return ""
	}
	return c.Iss
}

func (c *Chain) now() time.Time {
	if c.Now == nil {
		return time.Now()
	}
	return c.Now()
}
