package azure

import (
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"time"
)

// Defaults for the fields of Config left empty.
const (
	DefaultBaseURL            = "https://marketplaceapi.microsoft.com"
	DefaultAuthorityURL       = "https://login.microsoftonline.com"
	DefaultManagedIdentityURL = "http://169.254.169.254/metadata/identity/oauth2/token"
	DefaultTimeout            = 30 * time.Second
)

// MeteringResource is the Microsoft Entra resource (application) id of the
// marketplace metering service: the audience of the tokens the Sender asks
// for, with client credentials or a managed identity alike.
const MeteringResource = "20e940b3-4c77-4b0b-9a53-9e16a1b010a7"

// Config is an Azure Marketplace target as the config file describes it.
// Either TenantID, ClientID and ClientSecret (a Microsoft Entra app's client
// credentials) or ManagedIdentity is set.
type Config struct {
	// BaseURL is the metering API (default DefaultBaseURL).
	BaseURL string `yaml:"baseURL"`
	// AuthorityURL is the Microsoft Entra authority (default
	// DefaultAuthorityURL).
	AuthorityURL string `yaml:"authorityURL"`
	// TenantID, ClientID and ClientSecret are the Entra app's client
	// credentials. With ManagedIdentity, ClientID optionally picks a
	// user-assigned identity.
	TenantID     string `yaml:"tenantId"`
	ClientID     string `yaml:"clientId"`
	ClientSecret string `yaml:"clientSecret"`
	// ManagedIdentity takes tokens from the instance metadata service
	// (ManagedIdentityURL, default DefaultManagedIdentityURL) instead of
	// client credentials.
	ManagedIdentity    bool   `yaml:"managedIdentity"`
	ManagedIdentityURL string `yaml:"managedIdentityURL"`
	// Timeout bounds each HTTP call, token calls included (default
	// DefaultTimeout).
	Timeout time.Duration `yaml:"timeout"`
}

// Validate reports every field that is wrong, joined, without repeating
// secret values.
func (c Config) Validate() error {
	var errs []error
	check := func(field, value string, required bool) {
		if value == "" {
			if required {
				errs = append(errs, fmt.Errorf("%s: required", field))
			}
			return
		}
		if err := checkURL(value); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", field, err))
		}
	}
	check("baseURL", c.BaseURL, false)
	check("authorityURL", c.AuthorityURL, false)
	check("managedIdentityURL", c.ManagedIdentityURL, false)
	if c.ManagedIdentity {
		if c.TenantID != "" {
			errs = append(errs, errors.New("tenantId: not used with managedIdentity"))
		}
		if c.ClientSecret != "" {
			errs = append(errs, errors.New("clientSecret: not used with managedIdentity"))
		}
	} else {
		switch {
		case c.TenantID == "":
			errs = append(errs, errors.New("tenantId: required (or set managedIdentity)"))
		case strings.ContainsAny(c.TenantID, "/?#% \t\r\n"):
			errs = append(errs, errors.New("tenantId: must be a tenant id or domain name"))
		}
		if c.ClientID == "" {
			errs = append(errs, errors.New("clientId: required (or set managedIdentity)"))
		}
		if c.ClientSecret == "" {
			errs = append(errs, errors.New("clientSecret: required (or set managedIdentity)"))
		}
		if c.ManagedIdentityURL != "" {
			errs = append(errs, errors.New("managedIdentityURL: only used with managedIdentity"))
		}
	}
	if c.Timeout < 0 {
		errs = append(errs, fmt.Errorf("timeout: must not be negative, got %s", c.Timeout))
	}
	return errors.Join(errs...)
}

func checkURL(s string) error {
	u, err := url.Parse(s)
	if err != nil {
		return errors.New("not a URL")
	}
	if u.Scheme != "http" && u.Scheme != "https" || u.Host == "" {
		return errors.New("must be an absolute http or https URL")
	}
	if u.User != nil {
		return errors.New("must not carry credentials")
	}
	if u.RawQuery != "" || u.Fragment != "" {
		return errors.New("must have no query or fragment")
	}
	return nil
}

// withDefaults fills the empty fields.
func (c Config) withDefaults() Config {
	if c.BaseURL == "" {
		c.BaseURL = DefaultBaseURL
	}
	if c.AuthorityURL == "" {
		c.AuthorityURL = DefaultAuthorityURL
	}
	if c.ManagedIdentity && c.ManagedIdentityURL == "" {
		c.ManagedIdentityURL = DefaultManagedIdentityURL
	}
	if c.Timeout == 0 {
		c.Timeout = DefaultTimeout
	}
	c.BaseURL = strings.TrimRight(c.BaseURL, "/")
	c.AuthorityURL = strings.TrimRight(c.AuthorityURL, "/")
	return c
}

const redacted = "[redacted]"

func (c Config) redacted() Config {
	if c.ClientSecret != "" {
		c.ClientSecret = redacted
	}
	return c
}

// String describes the configuration with the client secret redacted.
func (c Config) String() string {
	r := c.redacted()
	return fmt.Sprintf("azure.Config{baseURL: %q, authorityURL: %q, tenantId: %q, clientId: %q, clientSecret: %q, managedIdentity: %t, managedIdentityURL: %q, timeout: %s}",
		r.BaseURL, r.AuthorityURL, r.TenantID, r.ClientID, r.ClientSecret, r.ManagedIdentity, r.ManagedIdentityURL, r.Timeout)
}

// GoString is String, so that %#v redacts the secret too.
func (c Config) GoString() string { return c.String() }

// LogValue logs the configuration with the client secret redacted.
func (c Config) LogValue() slog.Value {
	r := c.redacted()
	return slog.GroupValue(
		slog.String("baseURL", r.BaseURL),
		slog.String("authorityURL", r.AuthorityURL),
		slog.String("tenantId", r.TenantID),
		slog.String("clientId", r.ClientID),
		slog.String("clientSecret", r.ClientSecret),
		slog.Bool("managedIdentity", r.ManagedIdentity),
		slog.String("managedIdentityURL", r.ManagedIdentityURL),
		slog.Duration("timeout", r.Timeout),
	)
}
