package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"regexp"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.yaml.in/yaml/v3"

	"github.com/tally-metering/tally/internal/ingest"
	"github.com/tally-metering/tally/internal/report"
	"github.com/tally-metering/tally/internal/report/aws"
	"github.com/tally-metering/tally/internal/report/azure"
	"github.com/tally-metering/tally/internal/report/stripe"
	"github.com/tally-metering/tally/internal/report/webhook"
	"github.com/tally-metering/tally/internal/store/sqlite"
	"github.com/tally-metering/tally/internal/usage"
)

// reportingConfig is the config file's reporting: section.
type reportingConfig struct {
	// SettleDelay is how long after an hour ends it is reported (late
	// events); Lookback how long after a billing period's end late usage
	// for it is still reported; AlertMargin how long before a target's
	// window closes an unaccepted report raises an alert.
	SettleDelay *time.Duration `yaml:"settleDelay"`
	Lookback    *time.Duration `yaml:"lookback"`
	AlertMargin *time.Duration `yaml:"alertMargin"`
	// Interval is how often reports are planned and sent (default 1m).
	Interval *time.Duration `yaml:"interval"`
	// Backoff and MaxBackoff bound retry delays.
	Backoff    *time.Duration `yaml:"backoff"`
	MaxBackoff *time.Duration `yaml:"maxBackoff"`
	// AlertWebhook, if set, receives alerts as signed POSTs.
	AlertWebhook *webhook.Config `yaml:"alertWebhook"`
	Targets      []yaml.Node     `yaml:"targets"`
}

// envRef is a ${NAME} reference to an environment variable in a target's
// settings, so that secrets stay out of the file.
var envRef = regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)\}`)

// expandEnv replaces every ${NAME} in s by the variable's value; an unset
// variable is an error naming it (never its value).
func expandEnv(s string) (string, error) {
	var missing []string
	out := envRef.ReplaceAllStringFunc(s, func(m string) string {
		name := envRef.FindStringSubmatch(m)[1]
		v, ok := os.LookupEnv(name)
		if !ok {
			missing = append(missing, name)
		}
		return v
	})
	if len(missing) > 0 {
		return "", fmt.Errorf("environment variable %v is not set", missing)
	}
	return out, nil
}

// strictDecode decodes node into v, refusing unknown fields, after
// expanding ${NAME} references.
func strictDecode(node *yaml.Node, v any) error {
	b, err := yaml.Marshal(node)
	if err != nil {
		return err
	}
	s, err := expandEnv(string(b))
	if err != nil {
		return err
	}
	dec := yaml.NewDecoder(bytes.NewReader([]byte(s)))
	dec.KnownFields(true)
	return dec.Decode(v)
}

// targetHead is the part every target has.
type targetHead struct {
	Name string `yaml:"name"`
	Type string `yaml:"type"`
}

// buildTargets makes a Sender for every configured target. Errors name the
// target's index and field, never a secret.
func buildTargets(ctx context.Context, c reportingConfig) ([]report.Target, error) {
	var out []report.Target
	var errs []error
	names := map[string]bool{}
	for i := range c.Targets {
		node := &c.Targets[i]
		at := fmt.Sprintf("reporting.targets[%d]", i)
		var head targetHead
		if err := node.Decode(&head); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", at, err))
			continue
		}
		switch {
		case head.Name == "":
			errs = append(errs, fmt.Errorf("%s.name: required", at))
			continue
		case names[head.Name]:
			errs = append(errs, fmt.Errorf("%s.name: %q is used by another target", at, head.Name))
			continue
		}
		names[head.Name] = true
		// The type's own settings are the node without name and type.
		rest := &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"}
		if node.Kind == yaml.MappingNode {
			for j := 0; j+1 < len(node.Content); j += 2 {
				if k := node.Content[j].Value; k != "name" && k != "type" {
					rest.Content = append(rest.Content, node.Content[j], node.Content[j+1])
				}
			}
		}
		s, err := newSender(ctx, head.Type, rest)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s (%s): %w", at, head.Name, err))
			continue
		}
		out = append(out, report.Target{Name: head.Name, Type: head.Type, Sender: s})
	}
	return out, errors.Join(errs...)
}

func newSender(ctx context.Context, typ string, settings *yaml.Node) (report.Sender, error) {
	client := &http.Client{}
	switch typ {
	case report.TypeAzure:
		var cfg azure.Config
		if err := strictDecode(settings, &cfg); err != nil {
			return nil, err
		}
		return azure.New(cfg, client)
	case report.TypeAWS:
		var cfg aws.Config
		if err := strictDecode(settings, &cfg); err != nil {
			return nil, err
		}
		return aws.New(ctx, cfg)
	case report.TypeStripe:
		var cfg stripe.Config
		if err := strictDecode(settings, &cfg); err != nil {
			return nil, err
		}
		return stripe.New(ctx, cfg)
	case report.TypeWebhook:
		var cfg webhook.Config
		if err := strictDecode(settings, &cfg); err != nil {
			return nil, err
		}
		return webhook.New(cfg, client)
	default:
		return nil, fmt.Errorf("type: %q is not one of %s, %s, %s, %s", typ, report.TypeAzure, report.TypeAWS, report.TypeStripe, report.TypeWebhook)
	}
}

func durOr(d *time.Duration, def time.Duration) time.Duration {
	if d == nil {
		return def
	}
	return *d
}

// alerter posts alerts to the alert webhook, signed like reports.
func alerter(cfg *webhook.Config, log *slog.Logger) (func(context.Context, report.Alert), error) {
	if cfg == nil {
		return nil, nil
	}
	s, err := webhook.New(*cfg, &http.Client{})
	if err != nil {
		return nil, fmt.Errorf("reporting.alertWebhook: %w", err)
	}
	return func(ctx context.Context, a report.Alert) {
		if err := s.PostJSON(ctx, "alert_"+a.Kind+"_"+a.Report.ID, a); err != nil {
			log.Warn("alert webhook", "report", a.Report.ID, "err", err)
		}
	}, nil
}

// newReporter builds the reporting runner from the config, or returns nil
// when no target is configured.
func newReporter(ctx context.Context, c reportingConfig, st *sqlite.DB, pipe *ingest.Pipeline, reg prometheus.Registerer, log *slog.Logger, now func() time.Time) (*report.Runner, error) {
	targets, err := buildTargets(ctx, c)
	if err != nil {
		return nil, err
	}
	if len(targets) == 0 {
		if c.AlertWebhook != nil {
			return nil, errors.New("reporting.alertWebhook: set, but no reporting.targets are configured")
		}
		return nil, nil
	}
	log = log.With("component", "reporting")
	alert, err := alerter(c.AlertWebhook, log)
	if err != nil {
		return nil, err
	}
	return &report.Runner{
		Store: st, Outbox: st, Usage: &usage.Service{Store: st}, Stable: pipe.MetersStable, Targets: targets,
		SettleDelay: durOr(c.SettleDelay, report.DefaultSettleDelay),
		Lookback:    durOr(c.Lookback, report.DefaultLookback),
		Margin:      durOr(c.AlertMargin, report.DefaultMargin),
		Backoff:     durOr(c.Backoff, report.DefaultBackoff),
		MaxBackoff:  durOr(c.MaxBackoff, report.DefaultMaxBackoff),
		Now:         now, Log: log, Alert: alert, Metrics: report.NewMetrics(reg),
	}, nil
}

// validate checks the reporting settings that need no target built.
func (c reportingConfig) validate() []error {
	var errs []error
	for _, d := range []struct {
		name string
		v    *time.Duration
	}{{"settleDelay", c.SettleDelay}, {"lookback", c.Lookback}, {"alertMargin", c.AlertMargin}, {"interval", c.Interval}, {"backoff", c.Backoff}, {"maxBackoff", c.MaxBackoff}} {
		if d.v != nil && *d.v < 0 {
			errs = append(errs, fmt.Errorf("reporting.%s: must not be negative, got %s", d.name, *d.v))
		}
	}
	if c.Interval != nil && *c.Interval < time.Second {
		errs = append(errs, fmt.Errorf("reporting.interval: at least 1s, got %s", *c.Interval))
	}
	return errs
}
