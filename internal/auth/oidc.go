package auth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/MicahParks/keyfunc/v3"
	"github.com/golang-jwt/jwt/v5"
	"golang.org/x/time/rate"

	"github.com/tally-metering/tally/internal/bounds"
)

// OIDCConfig configures the acceptance of JWTs from an OpenID Connect
// issuer (Cognito, Entra ID, Auth0, Keycloak …).
type OIDCConfig struct {
	// Issuer must equal the token's iss claim.
	Issuer string
	// Audience must be among the token's aud claim.
	Audience string
	// JWKSURL is where the issuer publishes its keys; empty: read
	// jwks_uri from Issuer + "/.well-known/openid-configuration".
	JWKSURL string
	// CustomerClaim names the claim holding the customer (key or id) the
	// caller is bound to; a token without it is unbound.
	CustomerClaim string
	// SubjectClaim, when set, names the claim binding the caller to one
	// subject (deployment) of its customer.
	SubjectClaim string
	// ScopesClaim names the claim with the caller's tally scopes: a
	// space-separated string or an array of strings. Default "scope".
	ScopesClaim string
	// ScopePrefix is stripped from scope values ("tally:" turns
	// "tally:read" into read); values without it are ignored.
	ScopePrefix string
	// RefreshInterval is how often the key set is fetched again (default
	// 1h); an unknown key id fetches it at once (at most every 10 s).
	RefreshInterval time.Duration
	// Client fetches discovery and keys (default: 10 s timeout).
	Client *http.Client
}

// Validate checks the configuration.
func (c OIDCConfig) Validate() error {
	var errs []error
	if c.Issuer == "" {
		errs = append(errs, errors.New("issuer: required"))
	}
	if c.Audience == "" {
		errs = append(errs, errors.New("audience: required, so that tokens minted for other applications are refused"))
	}
	if c.RefreshInterval < 0 {
		errs = append(errs, errors.New("refreshInterval: must not be negative"))
	}
	return errors.Join(errs...)
}

// OIDCIdentity is what a verified token says about its bearer.
type OIDCIdentity struct {
	// Subject is the token's sub claim.
	Subject string
	// Customer is the customer claim's value (a key or id), empty if
	// absent; DeploymentSubject the subject claim's.
	Customer          string
	DeploymentSubject string
	Scopes            []Scope
}

// OIDC verifies bearer JWTs against an issuer's published keys.
type OIDC struct {
	cfg OIDCConfig
	kf  keyfunc.Keyfunc
}

// signingMethods are the asymmetric algorithms accepted: never "none" or
// an HMAC, whose key the issuer does not publish.
var signingMethods = []string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}

// NewOIDC fetches the issuer's key set and keeps it fresh until ctx ends.
func NewOIDC(ctx context.Context, cfg OIDCConfig) (*OIDC, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("oidc: %w", err)
	}
	if cfg.ScopesClaim == "" {
		cfg.ScopesClaim = "scope"
	}
	if cfg.RefreshInterval == 0 {
		cfg.RefreshInterval = time.Hour
	}
	if cfg.Client == nil {
		cfg.Client = &http.Client{Timeout: 10 * time.Second}
	}
	if cfg.JWKSURL == "" {
		u, err := discoverJWKS(ctx, cfg.Client, cfg.Issuer)
		if err != nil {
			return nil, err
		}
		cfg.JWKSURL = u
	}
	kf, err := keyfunc.NewDefaultOverrideCtx(ctx, []string{cfg.JWKSURL}, keyfunc.Override{
		Client:            cfg.Client,
		RefreshInterval:   cfg.RefreshInterval,
		RefreshUnknownKID: rate.NewLimiter(rate.Every(10*time.Second), 1),
		// A token naming an unknown key must not hold its request while
		// the refresh limiter waits: refuse it at once instead.
		RateLimitWaitMax: time.Millisecond,
	})
	if err != nil {
		return nil, fmt.Errorf("oidc: key set %s: %w", cfg.JWKSURL, err)
	}
	return &OIDC{cfg: cfg, kf: kf}, nil
}

func discoverJWKS(ctx context.Context, client *http.Client, issuer string) (string, error) {
	u := strings.TrimSuffix(issuer, "/") + "/.well-known/openid-configuration"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return "", fmt.Errorf("oidc discovery: %w", err)
	}
	resp, err := client.Do(req)
	if err != nil {
		return "", fmt.Errorf("oidc discovery: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("oidc discovery: %s answered %s", u, resp.Status)
	}
	var doc struct {
		Issuer  string `json:"issuer"`
		JWKSURI string `json:"jwks_uri"`
	}
	if err := json.NewDecoder(http.MaxBytesReader(nil, resp.Body, 1<<20)).Decode(&doc); err != nil {
		return "", fmt.Errorf("oidc discovery: %s: %w", u, err)
	}
	if doc.JWKSURI == "" {
		return "", fmt.Errorf("oidc discovery: %s has no jwks_uri", u)
	}
	if doc.Issuer != "" && doc.Issuer != issuer {
		return "", fmt.Errorf("oidc discovery: %s names issuer %q, not the configured %q", u, doc.Issuer, issuer)
	}
	return doc.JWKSURI, nil
}

// Issuer is the configured issuer.
func (o *OIDC) Issuer() string { return o.cfg.Issuer }

// Verify checks a token's signature against the issuer's keys, its iss,
// aud and exp (required), and returns what it says about its bearer.
func (o *OIDC) Verify(ctx context.Context, token string, now time.Time) (OIDCIdentity, error) {
	claims := jwt.MapClaims{}
	_, err := jwt.ParseWithClaims(token, claims, o.kf.KeyfuncCtx(ctx),
		jwt.WithValidMethods(signingMethods), jwt.WithIssuer(o.cfg.Issuer), jwt.WithAudience(o.cfg.Audience),
		jwt.WithExpirationRequired(), jwt.WithLeeway(30*time.Second),
		jwt.WithTimeFunc(func() time.Time { return now }))
	if err != nil {
		if errors.Is(err, jwt.ErrTokenExpired) {
			return OIDCIdentity{}, fmt.Errorf("%w (the token expired)", ErrUnauthenticated)
		}
		return OIDCIdentity{}, ErrUnauthenticated
	}
	id := OIDCIdentity{}
	id.Subject, _ = claims["sub"].(string)
	// A binding claim that is present but not a non-empty string (an
	// array, a number, null) binds to nothing we can name; reading it as
	// absent would make the token unbound: every customer's.
	binding := func(name string) (string, error) {
		v, ok := claims[name]
		if name == "" || !ok {
			return "", nil
		}
		if s, ok := v.(string); ok && s != "" {
			return s, nil
		}
		return "", &ForbiddenError{Msg: fmt.Sprintf("the token's %q claim is not a non-empty string, so it binds to no customer or subject tally can find", name)}
	}
	if id.Customer, err = binding(o.cfg.CustomerClaim); err != nil {
		return OIDCIdentity{}, err
	}
	if id.DeploymentSubject, err = binding(o.cfg.SubjectClaim); err != nil {
		return OIDCIdentity{}, err
	}
	if id.DeploymentSubject != "" {
		// A subject tally would refuse on an event can't bind a caller:
		// it names no subject's usage, and an odd one ("\x00") could
		// collide with a marker inside tally.
		if err := bounds.CheckSubject(id.DeploymentSubject); err != nil {
			return OIDCIdentity{}, &ForbiddenError{Msg: fmt.Sprintf("the token's %q claim is not a valid subject: %v", o.cfg.SubjectClaim, err)}
		}
	}
	var raw []string
	switch v := claims[o.cfg.ScopesClaim].(type) {
	case string:
		raw = strings.Fields(v)
	case []any:
		for _, s := range v {
			if s, ok := s.(string); ok {
				raw = append(raw, s)
			}
		}
	}
	for _, s := range raw {
		name, ok := strings.CutPrefix(s, o.cfg.ScopePrefix)
		if !ok {
			continue
		}
		if sc, err := ParseScope(name); err == nil {
			id.Scopes = append(id.Scopes, sc)
		}
	}
	if id.Subject == "" {
		return OIDCIdentity{}, fmt.Errorf("%w (the token has no sub claim)", ErrUnauthenticated)
	}
	// sub names the caller in logs, the audit trail and rate limits; OIDC
	// makes it at most 255 ASCII characters, within the subject syntax.
	if err := bounds.CheckSubject(id.Subject); err != nil {
		return OIDCIdentity{}, fmt.Errorf("%w (the token's sub claim %v)", ErrUnauthenticated, err)
	}
	if len(id.Scopes) == 0 {
		return OIDCIdentity{}, &ForbiddenError{Msg: fmt.Sprintf("the token grants no tally scope: claim %q must name admin, ingest or read (prefixed %q)", o.cfg.ScopesClaim, o.cfg.ScopePrefix)}
	}
	return id, nil
}
