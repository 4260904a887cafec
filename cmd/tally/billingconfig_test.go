package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tally-metering/tally/internal/invoicing"
)

func TestBillingCorrectionsConfig(t *testing.T) {
	for _, tc := range []struct {
		name, yaml string
		want       invoicing.Corrections
		wantErr    string
	}{
		{"defaults", "billing:\n  gracePeriod: 1h\n", invoicing.Corrections{}, ""},
		{"closed periods", "billing:\n  correctionWindow: 720h\n  rebillOnMeterChange: false\n", invoicing.Corrections{Window: 720 * time.Hour, KeepOnMeterChange: true}, ""},
		{"rebill", "billing:\n  rebillOnMeterChange: true\n", invoicing.Corrections{}, ""},
		{"negative window", "billing:\n  correctionWindow: -1h\n", invoicing.Corrections{}, "billing.correctionWindow"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "tally.yaml")
			if err := os.WriteFile(path, []byte(tc.yaml), 0o600); err != nil {
				t.Fatal(err)
			}
			c, err := loadFileConfig(path)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("loadFileConfig: %v, want an error containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := c.Billing.corrections(); got != tc.want {
				t.Errorf("corrections = %+v, want %+v", got, tc.want)
			}
		})
	}
}
