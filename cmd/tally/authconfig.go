package main

import (
	"encoding/base64"
	"errors"
	"fmt"
	"time"

	"github.com/tally-metering/tally/internal/auth"
)

// authConfig is the auth: section of the config file.
type authConfig struct {
	OIDC   *oidcConfig  `yaml:"oidc"`
	Portal portalConfig `yaml:"portal"`
}

// oidcConfig accepts JWTs of an OpenID Connect issuer (see auth.OIDCConfig).
type oidcConfig struct {
	Issuer          string        `yaml:"issuer"`
	Audience        string        `yaml:"audience"`
	JWKSURL         string        `yaml:"jwksURL"`
	CustomerClaim   string        `yaml:"customerClaim"`
	SubjectClaim    string        `yaml:"subjectClaim"`
	ScopesClaim     string        `yaml:"scopesClaim"`
	ScopePrefix     string        `yaml:"scopePrefix"`
	RefreshInterval time.Duration `yaml:"refreshInterval"`
}

func (o oidcConfig) config() auth.OIDCConfig {
	return auth.OIDCConfig{
		Issuer: o.Issuer, Audience: o.Audience, JWKSURL: o.JWKSURL, CustomerClaim: o.CustomerClaim,
		SubjectClaim: o.SubjectClaim, ScopesClaim: o.ScopesClaim, ScopePrefix: o.ScopePrefix, RefreshInterval: o.RefreshInterval,
	}
}

// portalConfig sets the portal token signing keys. Without signingKeys
// tally keeps them in the data directory (auth.PortalKeyFile), generated
// on first start and rotated with `tally portal rotate-key`.
type portalConfig struct {
	// SigningKeys are base64 secrets of at least 32 bytes: the first
	// signs, all verify (list the previous key second while rotating).
	SigningKeys []string `yaml:"signingKeys"`
}

func (p portalConfig) secrets() ([][]byte, error) {
	var out [][]byte
	var errs []error
	for i, k := range p.SigningKeys {
		b, err := base64.StdEncoding.DecodeString(k)
		if err != nil {
			errs = append(errs, fmt.Errorf("auth.portal.signingKeys[%d]: not base64 (make one with: openssl rand -base64 32)", i))
			continue
		}
		if len(b) < 32 {
			errs = append(errs, fmt.Errorf("auth.portal.signingKeys[%d]: %d bytes, need at least 32", i, len(b)))
		}
		out = append(out, b)
	}
	return out, errors.Join(errs...)
}

func (a authConfig) validate() []error {
	var errs []error
	if a.OIDC != nil {
		if err := a.OIDC.config().Validate(); err != nil {
			errs = append(errs, fmt.Errorf("auth.oidc: %w", err))
		}
		if a.OIDC.Issuer == auth.PortalIssuer {
			errs = append(errs, fmt.Errorf("auth.oidc.issuer: %q is the issuer of tally's own portal tokens", auth.PortalIssuer))
		}
	}
	if _, err := a.Portal.secrets(); err != nil {
		errs = append(errs, err)
	}
	return errs
}
