package stripe

import (
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"time"
)

// DefaultTimeout bounds one Stripe request when Config.Timeout is 0.
const DefaultTimeout = 15 * time.Second

// Default payload keys of a Stripe meter (customer_mapping and
// value_settings).
const (
	DefaultCustomerPayloadKey = "stripe_customer_id"
	DefaultValuePayloadKey    = "value"
)

// Config configures the Stripe meter-event target.
type Config struct {
	// APIKey is a secret (sk_…) or restricted (rk_…) key allowed to write
	// billing meter events; usually filled from the environment.
	APIKey string `yaml:"apiKey"`
	// BaseURL overrides https://api.stripe.com (stripe-mock in tests).
	BaseURL string `yaml:"baseURL"`
	// Timeout bounds one request (DefaultTimeout when 0).
	Timeout time.Duration `yaml:"timeout"`
	// CustomerPayloadKey and ValuePayloadKey follow a meter whose payload
	// keys were overridden; empty means Stripe's defaults.
	CustomerPayloadKey string `yaml:"customerPayloadKey"`
	ValuePayloadKey    string `yaml:"valuePayloadKey"`
}

// Validate reports every problem with c, joined.
func (c Config) Validate() error {
	var errs []error
	switch {
	case c.APIKey == "":
		errs = append(errs, errors.New("apiKey is required"))
	case !strings.HasPrefix(c.APIKey, "sk_") && !strings.HasPrefix(c.APIKey, "rk_"):
		errs = append(errs, errors.New("apiKey must be a secret (sk_…) or restricted (rk_…) key"))
	}
	if c.BaseURL != "" {
		u, err := url.Parse(c.BaseURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			errs = append(errs, fmt.Errorf("baseURL %q is not an absolute http(s) URL", c.BaseURL))
		}
	}
	if c.Timeout < 0 {
		errs = append(errs, fmt.Errorf("timeout %s is negative", c.Timeout))
	}
	return errors.Join(errs...)
}

func (c Config) timeout() time.Duration {
	if c.Timeout == 0 {
		return DefaultTimeout
	}
	return c.Timeout
}

func (c Config) customerKey() string {
	if c.CustomerPayloadKey == "" {
		return DefaultCustomerPayloadKey
	}
	return c.CustomerPayloadKey
}

func (c Config) valueKey() string {
	if c.ValuePayloadKey == "" {
		return DefaultValuePayloadKey
	}
	return c.ValuePayloadKey
}

// String describes c without its API key.
func (c Config) String() string {
	return fmt.Sprintf("stripe{baseURL=%s apiKey=%s timeout=%s customerPayloadKey=%s valuePayloadKey=%s}",
		c.BaseURL, maskKey(c.APIKey), c.timeout(), c.customerKey(), c.valueKey())
}

// GoString keeps %#v from printing the API key.
func (c Config) GoString() string { return c.String() }

// LogValue logs c without its API key.
func (c Config) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("baseURL", c.BaseURL),
		slog.String("apiKey", maskKey(c.APIKey)),
		slog.Duration("timeout", c.timeout()),
		slog.String("customerPayloadKey", c.customerKey()),
		slog.String("valuePayloadKey", c.valueKey()),
	)
}

// maskKey keeps a key's kind and mode (sk_live_, rk_test_), never a
// character of the secret part.
func maskKey(k string) string {
	if k == "" {
		return ""
	}
	for _, p := range []string{"sk_live_", "sk_test_", "rk_live_", "rk_test_"} {
		if strings.HasPrefix(k, p) {
			return p + "[redacted]"
		}
	}
	return "[redacted]"
}
