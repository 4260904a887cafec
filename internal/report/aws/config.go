package aws

import (
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"time"
)

// DefaultTimeout bounds one BatchMeterUsage call when Config.Timeout is 0.
const DefaultTimeout = 15 * time.Second

// Config configures the AWS Marketplace metering target.
//
// Credentials are either static (AccessKeyID and SecretAccessKey, typically
// filled from the environment by the config loader) or, when both are
// empty, the SDK's default chain (environment, shared files, web identity,
// container and instance roles).
type Config struct {
	// Region is the AWS region of the metering endpoint (us-east-1 for most
	// SaaS products).
	Region string `yaml:"region"`
	// Endpoint overrides the service URL (an emulator in tests, a VPC
	// endpoint in production); empty uses the SDK's resolver.
	Endpoint string `yaml:"endpoint"`
	// ProductCode is sent with records that identify the customer by
	// CustomerIdentifier or by CustomerAWSAccountId without a LicenseArn
	// (legacy integrations). Records with a LicenseArn (concurrent
	// agreements) are sent without it, as AWS requires, so a product that
	// only uses license ARNs may leave it empty.
	ProductCode string `yaml:"productCode"`
	// AccessKeyID and SecretAccessKey are static credentials; leave both
	// empty for the SDK's default chain.
	AccessKeyID     string `yaml:"accessKeyId"`
	SecretAccessKey string `yaml:"secretAccessKey"`
	// Timeout bounds one call (DefaultTimeout when 0).
	Timeout time.Duration `yaml:"timeout"`
}

// Validate reports every problem with c, joined.
func (c Config) Validate() error {
	var errs []error
	if c.Region == "" {
		errs = append(errs, errors.New("region is required"))
	}
	if c.Endpoint != "" {
		u, err := url.Parse(c.Endpoint)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			errs = append(errs, fmt.Errorf("endpoint %q is not an absolute http(s) URL", c.Endpoint))
		}
	}
	if (c.AccessKeyID == "") != (c.SecretAccessKey == "") {
		errs = append(errs, errors.New("accessKeyId and secretAccessKey must be set together (or both left empty for the default credential chain)"))
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

// String describes c without its secret.
func (c Config) String() string {
	return fmt.Sprintf("aws-marketplace{region=%s endpoint=%s productCode=%s accessKeyId=%s secretAccessKey=%s timeout=%s}",
		c.Region, c.Endpoint, c.ProductCode, maskKeyID(c.AccessKeyID), secretState(c.SecretAccessKey), c.timeout())
}

// GoString keeps %#v from printing the secret.
func (c Config) GoString() string { return c.String() }

// LogValue logs c without its secret.
func (c Config) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("region", c.Region),
		slog.String("endpoint", c.Endpoint),
		slog.String("productCode", c.ProductCode),
		slog.String("accessKeyId", maskKeyID(c.AccessKeyID)),
		slog.String("secretAccessKey", secretState(c.SecretAccessKey)),
		slog.Duration("timeout", c.timeout()),
	)
}

// maskKeyID keeps the last four characters of an access key id, enough to
// tell keys apart in a log.
func maskKeyID(id string) string {
	if id == "" {
		return ""
	}
	if len(id) <= 4 {
		return "****"
	}
	return "****" + id[len(id)-4:]
}

func secretState(s string) string {
	if s == "" {
		return ""
	}
	return "[redacted]"
}
