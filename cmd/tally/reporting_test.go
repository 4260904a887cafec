package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestReportingConfigErrors(t *testing.T) {
	t.Setenv("TEST_SECRET_SET", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
	for _, tc := range []struct {
		name, yaml string
		want       []string // substrings of the error
	}{
		{"unknown type", `
reporting:
  targets:
    - name: x
      type: gcp`, []string{`reporting.targets[0] (x): type: "gcp" is not one of azure-marketplace, aws-marketplace, stripe, webhook`}},
		{"missing name and duplicate", `
reporting:
  targets:
    - type: webhook
      url: http://127.0.0.1:1
      secret: ${TEST_SECRET_SET}
    - name: a
      type: webhook
      url: http://127.0.0.1:1
      secret: ${TEST_SECRET_SET}
    - name: a
      type: webhook
      url: http://127.0.0.1:1
      secret: ${TEST_SECRET_SET}`, []string{"reporting.targets[0].name: required", `reporting.targets[2].name: "a" is used by another target`}},
		{"unset variable", `
reporting:
  targets:
    - name: azure
      type: azure-marketplace
      tenantId: t
      clientId: c
      clientSecret: ${TEST_SECRET_NOT_SET}`, []string{"reporting.targets[0] (azure): environment variable [TEST_SECRET_NOT_SET] is not set"}},
		{"unknown field", `
reporting:
  targets:
    - name: hooks
      type: webhook
      url: http://127.0.0.1:1
      secret: ${TEST_SECRET_SET}
      colour: blue`, []string{"reporting.targets[0] (hooks):", "colour"}},
		{"bad settings", `
reporting:
  settleDelay: -1m
  interval: 10ms`, []string{"reporting.settleDelay: must not be negative", "reporting.interval: at least 1s"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "tally.yaml")
			if err := os.WriteFile(path, []byte(tc.yaml), 0o600); err != nil {
				t.Fatal(err)
			}
			cfg, err := loadFileConfig(path)
			if err == nil {
				_, err = buildTargets(context.Background(), cfg.Reporting)
			}
			if err == nil {
				t.Fatalf("no error, want %q", tc.want)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
			if strings.Contains(err.Error(), "whsec_") {
				t.Errorf("the error shows a secret: %v", err)
			}
		})
	}
}
