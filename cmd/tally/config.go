package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/tally-metering/tally/internal/invoicing"
	"github.com/tally-metering/tally/internal/meter"
)

// fileConfig is the YAML config file (--config).
type fileConfig struct {
	Meters  []meterConfig `yaml:"meters"`
	Ingest  ingestConfig  `yaml:"ingest"`
	Billing billingConfig `yaml:"billing"`
	Auth    authConfig    `yaml:"auth"`
	// Reporting configures usage reporting to marketplaces (reporting.go).
	Reporting reportingConfig `yaml:"reporting"`
}

type billingConfig struct {
	// GracePeriod is how long after a billing period's end its invoice is
	// finalized (nil: invoicing.DefaultGrace, 24h).
	GracePeriod *time.Duration `yaml:"gracePeriod"`
	// CorrectionWindow is how long after a period's end late usage still
	// corrects it (adjustment or credit note); 0, the default, is no
	// limit.
	CorrectionWindow time.Duration `yaml:"correctionWindow"`
	// RebillOnMeterChange says whether a changed meter definition
	// corrects finalized periods (nil: true).
	RebillOnMeterChange *bool `yaml:"rebillOnMeterChange"`
}

// corrections are the configured choices about correcting finalized
// periods.
func (b billingConfig) corrections() invoicing.Corrections {
	return invoicing.Corrections{
		Window:            b.CorrectionWindow,
		KeepOnMeterChange: b.RebillOnMeterChange != nil && !*b.RebillOnMeterChange,
	}
}

// grace is the configured grace period or the default.
func (b billingConfig) grace() time.Duration {
	if b.GracePeriod == nil {
		return invoicing.DefaultGrace
	}
	return *b.GracePeriod
}

type meterConfig struct {
	Slug          string            `yaml:"slug"`
	Name          string            `yaml:"name"`
	Description   string            `yaml:"description"`
	EventType     string            `yaml:"eventType"`
	Aggregation   string            `yaml:"aggregation"`
	ValueProperty string            `yaml:"valueProperty"`
	GroupBy       map[string]string `yaml:"groupBy"`
	EventFrom     *time.Time        `yaml:"eventFrom"`
}

type ingestConfig struct {
	// MaxBodyBytes caps one ingest request body.
	MaxBodyBytes int64 `yaml:"maxBodyBytes"`
	// MaxEvents caps the events of one request.
	MaxEvents int `yaml:"maxEvents"`
	// MaxFutureSkew rejects events timed further ahead than this (off when 0).
	MaxFutureSkew time.Duration `yaml:"maxFutureSkew"`
	// BoundMaxFutureSkew rejects events of credentials bound to a
	// customer timed further ahead than this (0: 5m).
	BoundMaxFutureSkew time.Duration `yaml:"boundMaxFutureSkew"`
	// MaxBatchEvents caps the events of one group commit.
	MaxBatchEvents int `yaml:"maxBatchEvents"`
}

func loadFileConfig(path string) (fileConfig, error) {
	var c fileConfig
	if path == "" {
		return c, nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return c, fmt.Errorf("read config: %w", err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&c); err != nil {
		return c, fmt.Errorf("config %s: %w", path, err)
	}
	var errs []error
	if c.Ingest.MaxBodyBytes < 0 {
		errs = append(errs, errors.New("ingest.maxBodyBytes: must not be negative"))
	}
	if c.Ingest.MaxEvents < 0 {
		errs = append(errs, errors.New("ingest.maxEvents: must not be negative"))
	}
	if c.Ingest.MaxFutureSkew < 0 {
		errs = append(errs, errors.New("ingest.maxFutureSkew: must not be negative"))
	}
	if c.Ingest.BoundMaxFutureSkew < 0 {
		errs = append(errs, errors.New("ingest.boundMaxFutureSkew: must not be negative"))
	}
	errs = append(errs, c.Auth.validate()...)
	errs = append(errs, c.Reporting.validate()...)
	if g := c.Billing.GracePeriod; g != nil && *g < 0 {
		errs = append(errs, errors.New("billing.gracePeriod: must not be negative"))
	}
	if c.Billing.CorrectionWindow < 0 {
		errs = append(errs, errors.New("billing.correctionWindow: must not be negative (0 is no limit)"))
	}
	for i, m := range c.Meters {
		if err := m.meter().Validate(); err != nil {
			errs = append(errs, fmt.Errorf("meters[%d] (%s): %w", i, m.Slug, err))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return c, fmt.Errorf("config %s: %w", path, err)
	}
	return c, nil
}

func (m meterConfig) meter() meter.Meter {
	out := meter.Meter{
		Slug: m.Slug, Name: m.Name, Description: m.Description, EventType: m.EventType,
		Aggregation: meter.Aggregation(strings.ToUpper(m.Aggregation)), ValueProperty: m.ValueProperty,
		GroupBy: m.GroupBy, EventFrom: m.EventFrom,
	}
	if out.EventFrom != nil {
		t := out.EventFrom.UTC()
		out.EventFrom = &t
	}
	return out
}

// envName is the environment variable that stands for a flag: --admin-token
// is TALLY_ADMIN_TOKEN.
func envName(flagName string) string {
	return "TALLY_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// applyEnv sets every flag not given on the command line from its
// environment variable, if that is set.
func applyEnv(fs *flag.FlagSet) error {
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	var errs []error
	fs.VisitAll(func(f *flag.Flag) {
		if given[f.Name] {
			return
		}
		if v, ok := os.LookupEnv(envName(f.Name)); ok {
			if err := fs.Set(f.Name, v); err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", envName(f.Name), err))
			}
		}
	})
	return errors.Join(errs...)
}
