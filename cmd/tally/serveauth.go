package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"time"

	"github.com/tally-metering/tally/internal/auth"
	"github.com/tally-metering/tally/internal/store"
)

// newAuth builds the authenticator and the portal token keys, and decides
// open mode: with no credential configured (no admin token, no OIDC issuer,
// no active admin key) tally serves a loopback address openly and refuses
// any other address unless --insecure-no-auth.
func newAuth(ctx context.Context, f serveFlags, cfg authConfig, st store.Store, log *slog.Logger) (*auth.Chain, *auth.PortalKeys, error) {
	now := f.now
	if now == nil {
		now = time.Now
	}
	chain := &auth.Chain{
		Keys: &auth.Keys{Store: st, Now: now, Log: log.With("component", "auth")},
		Now:  now,
		ResolveCustomer: func(ctx context.Context, ref string) (string, error) {
			c, err := st.GetCustomer(ctx, ref)
			if err != nil {
				return "", err
			}
			if c.DeletedAt != nil {
				return "", errors.New("the customer is deleted")
			}
			return c.ID, nil
		},
	}
	if f.adminToken != "" {
		chain.Admin = auth.NewAdminToken(f.adminToken)
		if len(f.adminToken) < minAdminToken {
			log.Warn("--admin-token is short enough to guess; use at least 32 random characters (openssl rand -hex 32)", "length", len(f.adminToken))
		}
	}
	secrets, err := cfg.Portal.secrets()
	if err != nil {
		return nil, nil, fmt.Errorf("config: %w", err)
	}
	if len(secrets) > 0 {
		chain.Portal, err = auth.NewPortalKeys(secrets...)
	} else {
		chain.Portal, err = auth.LoadPortalKeys(filepath.Join(f.data, auth.PortalKeyFile))
	}
	if err != nil {
		return nil, nil, err
	}
	if err := loadPortalRevocations(ctx, st, chain.Portal, now()); err != nil {
		return nil, nil, err
	}
	if cfg.OIDC != nil {
		chain.OIDC, err = auth.NewOIDC(ctx, cfg.OIDC.config())
		if err != nil {
			return nil, nil, err
		}
		log.Info("accepting OIDC tokens", "issuer", cfg.OIDC.Issuer, "audience", cfg.OIDC.Audience)
	}
	admins, err := activeAdminKeys(ctx, st, now())
	if err != nil {
		return nil, nil, err
	}
	open := f.adminToken == "" && cfg.OIDC == nil && admins == 0
	if open {
		if !isLoopback(f.addr) && !f.insecureNoAuth {
			return nil, nil, fmt.Errorf("serve: no credential is configured and %s is not a loopback address, so anyone who can reach it would be an admin; "+
				"set --admin-token (TALLY_ADMIN_TOKEN), create an admin key (tally keys create --scope admin --data %s) or configure auth.oidc — "+
				"or, knowingly, pass --insecure-no-auth", f.addr, f.data)
		}
		log.Warn("!!! NO CREDENTIAL CONFIGURED (no --admin-token set, no admin key, no OIDC issuer): the API accepts every request without credentials, as an admin. " +
			"Set --admin-token or create an admin key (POST /api/v1/keys, or tally keys create --scope admin) before exposing tally beyond this machine.")
	}
	chain.SetOpen(open)
	// Open on loopback, tally is for this machine: a web page rebinding
	// its domain name to 127.0.0.1 must not reach it through a browser.
	chain.OpenLoopbackOnly = open && isLoopback(f.addr)
	return chain, chain.Portal, nil
}

// loadPortalRevocations puts the revoked portal tokens that have not
// expired into pk's in-memory set, which every portal request checks; a
// revocation made later through the API is added to it at once. The set
// is this process's: one tally serve owns its data directory.
func loadPortalRevocations(ctx context.Context, st store.PortalTokens, pk *auth.PortalKeys, now time.Time) error {
	if _, err := st.DeleteExpiredPortalTokens(ctx, now); err != nil {
		return err
	}
	ts, err := st.ListPortalTokens(ctx, store.PortalTokenFilter{Revoked: true, ExpiresAfter: now})
	if err != nil {
		return err
	}
	for _, t := range ts {
		pk.Revoke(t.ID, t.ExpiresAt, now)
	}
	return nil
}

func activeAdminKeys(ctx context.Context, st store.APIKeys, now time.Time) (int, error) {
	ks, err := st.ListAPIKeys(ctx)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, k := range ks {
		if k.Scope == string(auth.ScopeAdmin) && k.RevokedAt == nil && (k.ExpiresAt == nil || k.ExpiresAt.After(now)) {
			n++
		}
	}
	return n, nil
}

// configuredSecrets lists the secrets given to tally by flag or config
// that the audit trail must never store. Reporting credentials are not
// listed: they have well-known shapes the audit trail redacts anyway.
func configuredSecrets(f serveFlags, cfg authConfig) []string {
	var out []string
	if f.adminToken != "" {
		out = append(out, f.adminToken)
	}
	for _, k := range cfg.Portal.SigningKeys {
		if k != "" {
			out = append(out, k)
		}
	}
	return out
}

// minAdminToken is the admin token length below which tally warns.
const minAdminToken = 24

// isLoopback reports whether addr (host:port) listens on loopback only.
func isLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// noneIsNegative turns a flag's "0 = none" into the server config's
// "negative = none".
func noneIsNegative(v float64) float64 {
	if v == 0 {
		return -1
	}
	return v
}
