package billing

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/shopspring/decimal"
)

func TestPlanInputDecimalsJSON(t *testing.T) {
	digits51 := "123456789012345678901234567890123456789012345678901"
	plan := func(baseFee, pricing string) string {
		return `{"key":"p","name":"P","currency":"EUR","cadence":"P1M","baseFee":` + baseFee +
			`,"charges":[{"key":"c","meter":"m","included":"0","pricing":` + pricing + `}]}`
	}
	perUnit := `{"model":"per_unit","unitPrice":"0.5"}`
	tests := []struct {
		name    string
		body    string
		wantErr string // "" when the body decodes
		check   func(t *testing.T, in PlanInput)
	}{
		{name: "plain", body: plan(`"10.00"`, perUnit), check: func(t *testing.T, in PlanInput) {
			if in.BaseFee.String() != "10" || in.Charges[0].Pricing.UnitPrice.String() != "0.5" {
				t.Errorf("baseFee %s, unitPrice %s", in.BaseFee, in.Charges[0].Pricing.UnitPrice)
			}
		}},
		{name: "number", body: plan(`10.5`, perUnit), check: func(t *testing.T, in PlanInput) {
			if in.BaseFee.String() != "10.5" {
				t.Errorf("baseFee %s", in.BaseFee)
			}
		}},
		{name: "zero with a huge exponent", body: plan(`"0e99999999999"`, perUnit), check: func(t *testing.T, in PlanInput) {
			if !in.BaseFee.IsZero() || in.BaseFee.String() != "0" {
				t.Errorf("baseFee %s, want 0", in.BaseFee)
			}
		}},
		{name: "null base fee", body: plan(`null`, perUnit), check: func(t *testing.T, in PlanInput) {
			if !in.BaseFee.IsZero() {
				t.Errorf("baseFee %s, want 0", in.BaseFee)
			}
		}},
		{name: "tiers", body: plan(`0`, `{"model":"graduated","tiers":[{"upTo":"1e3","unitPrice":"0.1"},{"upTo":null,"unitPrice":0.05,"flatPrice":"2"}]}`),
			check: func(t *testing.T, in PlanInput) {
				tiers := in.Charges[0].Pricing.Tiers
				if len(tiers) != 2 || tiers[0].UpTo == nil || tiers[0].UpTo.String() != "1000" || tiers[1].UpTo != nil || tiers[1].FlatPrice.String() != "2" {
					t.Errorf("tiers %+v", tiers)
				}
			}},
		{name: "huge base fee", body: plan(`"1e999999999"`, perUnit),
			wantErr: `baseFee: "1e999999999" has 1000000000 integer digits, outside the supported range of at most 40`},
		{name: "huge base fee number", body: plan(`1e3000000`, perUnit), wantErr: `baseFee: "1e3000000" has 3000001 integer digits`},
		{name: "51 digits", body: plan(`"1"`, `{"model":"per_unit","unitPrice":"`+digits51+`"}`),
			wantErr: `unitPrice: "12345678901234567890…" (51 characters) has 51 integer digits`},
		{name: "megabyte of digits", body: plan(`"1"`, `{"model":"per_unit","unitPrice":`+strings.Repeat("9", 1<<20)+`}`),
			wantErr: `unitPrice: "99999999999999999999…" (1048576 characters) is longer than 200 characters`},
		{name: "package size", body: plan(`"1"`, `{"model":"package","unitPrice":"1","packageSize":"1e-40"}`), wantErr: "packageSize: "},
		{name: "tier bound", body: plan(`"1"`, `{"model":"graduated","tiers":[{"upTo":"1e41","unitPrice":"1"},{"unitPrice":"1"}]}`), wantErr: "upTo: "},
		{name: "flat price", body: plan(`"1"`, `{"model":"graduated","tiers":[{"flatPrice":"1e41","unitPrice":"1"}]}`), wantErr: "flatPrice: "},
		{name: "included", body: strings.Replace(plan(`"1"`, perUnit), `"included":"0"`, `"included":"1e50"`, 1), wantErr: `included: "1e50" has 51 integer digits`},
		{name: "unit size", body: strings.Replace(plan(`"1"`, perUnit), `"included":"0"`, `"reporting":[{"target":"t","dimension":"d","unitSize":"1e-99"}]`, 1), wantErr: "unitSize: "},
		{name: "not a number", body: plan(`true`, perUnit), wantErr: "baseFee: must be a decimal number"},
		{name: "unknown tier field", body: plan(`"1"`, `{"model":"graduated","tiers":[{"unitPrice":"1","upper":"5"}]}`), wantErr: `unknown field "upper"`},
		{name: "unknown pricing field", body: plan(`"1"`, `{"model":"per_unit","unitPrice":"1","size":1}`), wantErr: `unknown field "size"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var in PlanInput
			err := json.Unmarshal([]byte(tt.body), &in)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Unmarshal error = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Unmarshal: %v", err)
			}
			tt.check(t, in)
		})
	}
}

// TestPlanInputValidateDecimalRange checks that Validate refuses decimals
// out of range without expanding them: 1e999999999 printed or compared
// would take minutes and gigabytes.
func TestPlanInputValidateDecimalRange(t *testing.T) {
	huge := decimal.New(1, 999999999)
	in := PlanInput{Key: "p", Name: "P", Currency: "EUR", Cadence: "P1M", BaseFee: huge.Neg(), Charges: []PlanCharge{
		{Key: "a", Meter: "m", Included: IncludedQuantity(huge.Neg()), Pricing: Pricing{Model: ModelPackage, UnitPrice: huge.Neg(), PackageSize: huge.Neg()},
			Reporting: []Reporting{{Target: "t", Dimension: "d", UnitSize: huge.Neg()}}},
		{Key: "b", Meter: "m", Pricing: Pricing{Model: ModelGraduated, Tiers: []Tier{
			{UpTo: &huge, UnitPrice: huge.Neg(), FlatPrice: huge.Neg()}, {UpTo: nil, UnitPrice: decimal.New(1, -40)}}}},
	}}
	err := in.Validate()
	if err == nil {
		t.Fatal("Validate() = nil")
	}
	for _, field := range []string{"baseFee: ", "charges[0].included: ", "charges[0].pricing.unitPrice: ", "charges[0].pricing.packageSize: ",
		"charges[0].reporting[0].unitSize: ", "charges[1].pricing.tiers[0].upTo: ", "charges[1].pricing.tiers[0].unitPrice: ",
		"charges[1].pricing.tiers[0].flatPrice: ", "charges[1].pricing.tiers[1].unitPrice: has 40 decimal places"} {
		if !strings.Contains(err.Error(), field) {
			t.Errorf("Validate() = %v\nwant an error for %s", err, field)
		}
	}
}
