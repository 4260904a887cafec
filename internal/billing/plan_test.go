package billing

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestCustomerInputValidate(t *testing.T) {
	ok := CustomerInput{Key: "contoso", Name: "Contoso", Currency: "EUR", Subjects: []string{"a", "b"}}
	tests := []struct {
		name string
		edit func(*CustomerInput)
		want []string // field prefixes of the errors, in order; nil: valid
	}{
		{"valid", func(*CustomerInput) {}, nil},
		{"loose email", func(in *CustomerInput) { in.Email = "a.b+c@mail.example.org" }, nil},
		{"key with separators", func(in *CustomerInput) { in.Key = "tenant:42.eu-west_1" }, nil},
		{"bad key", func(in *CustomerInput) { in.Key = ".x" }, []string{"key:"}},
		{"long key", func(in *CustomerInput) { in.Key = strings.Repeat("k", 129) }, []string{"key:"}},
		{"missing", func(in *CustomerInput) { *in = CustomerInput{} }, []string{"key:", "name:", "currency:"}},
		{"emails", func(in *CustomerInput) { in.Email = "a@b" }, []string{"email:"}},
		{"lower-case currency", func(in *CustomerInput) { in.Currency = "eur" }, []string{"currency:"}},
		{"subjects", func(in *CustomerInput) { in.Subjects = []string{"a", "", "a"} }, []string{"subjects[1]:", "subjects[2]:"}},
		{"subject syntax", func(in *CustomerInput) {
			in.Subjects = []string{"\x00", "a\nb", "a\xffb", strings.Repeat("s", 257), "ok é", "a\u2028"}
		}, []string{"subjects[0]:", "subjects[1]:", "subjects[2]:", "subjects[3]:", "subjects[5]:"}},
		{"external", func(in *CustomerInput) {
			in.External = ExternalRefs{Azure: &AzureRef{}, AWS: &AWSRef{CustomerAWSAccountID: "abc"}, Stripe: &StripeRef{}}
		}, []string{"external.azure:", "external.aws.customerAWSAccountId:", "external.stripe.customerId:"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			in := ok
			tc.edit(&in)
			checkFieldErrors(t, in.Validate(), tc.want)
		})
	}
}

// TestCustomerInputCreatedAt: a customer may be created in the past (an
// import), not before 1970 and, given a clock, not in the future; the error
// names the field and joins the others.
func TestCustomerInputCreatedAt(t *testing.T) {
	now := time.Date(2026, 7, 25, 9, 0, 0, 0, time.UTC)
	at := func(s string) *time.Time {
		v, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			t.Fatal(err)
		}
		return &v
	}
	tests := []struct {
		name      string
		createdAt *time.Time
		key       string
		want      []string
	}{
		{"unset", nil, "contoso", nil},
		{"in the past", at("2026-06-01T00:00:00Z"), "contoso", nil},
		{"now", &now, "contoso", nil},
		{"a nanosecond ahead", at("2026-07-25T09:00:00.000000001Z"), "contoso", []string{"createdAt:"}},
		{"in the future, with another error", at("2026-08-01T00:00:00+02:00"), ".bad", []string{"key:", "createdAt:"}},
		{"before 1970", at("1969-12-31T23:59:59Z"), "contoso", []string{"createdAt:"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			in := CustomerInput{Key: tc.key, Name: "Contoso", Currency: "EUR", CreatedAt: tc.createdAt}
			checkFieldErrors(t, in.ValidateAt(now), tc.want)
		})
	}
	// Validate alone has no clock: the future is not its business.
	if err := (CustomerInput{Key: "c", Name: "C", Currency: "EUR", CreatedAt: at("2999-01-01T00:00:00Z")}).Validate(); err != nil {
		t.Errorf("Validate with a future createdAt: %v, want nil", err)
	}
}

func TestPlanInputValidate(t *testing.T) {
	var ok PlanInput
	if err := json.Unmarshal([]byte(`{"key":"mail-pro","name":"Mail Pro","currency":"EUR","cadence":"P1M","baseFee":"10.00",
	  "charges":[{"key":"emails","meter":"emails","included":"1000",
	              "pricing":{"model":"package","packageSize":"1000","unitPrice":"5.00"}}]}`), &ok); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		edit func(*PlanInput)
		want []string
	}{
		{"valid", func(*PlanInput) {}, nil},
		{"no charges", func(in *PlanInput) { in.Charges = nil }, nil},
		{"cadence", func(in *PlanInput) { in.Cadence = "P1W" }, []string{"cadence:"}},
		{"charge key and meter", func(in *PlanInput) { in.Charges[0].Key, in.Charges[0].Meter = "", "" }, []string{"charges[0].key:", "charges[0].meter:"}},
		{"duplicate charge", func(in *PlanInput) { in.Charges = append(in.Charges, in.Charges[0]) }, []string{"charges[1].key:"}},
		{"pricing", func(in *PlanInput) { in.Charges[0].Pricing.PackageSize = PlanInput{}.BaseFee }, []string{"charges[0].pricing.packageSize:"}},
		{"reporting", func(in *PlanInput) {
			in.Charges[0].Reporting = []Reporting{{Target: "azure", Dimension: "d"}, {Target: "azure", Dimension: "d"}, {Target: "not a name"}}
		}, []string{"charges[0].reporting[1].dimension:", "charges[0].reporting[2].target:", "charges[0].reporting[2].dimension:"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			in := ok
			in.Charges = append([]PlanCharge{}, ok.Charges...)
			tc.edit(&in)
			checkFieldErrors(t, in.Validate(), tc.want)
		})
	}
}

func checkFieldErrors(t *testing.T, err error, want []string) {
	t.Helper()
	if want == nil {
		if err != nil {
			t.Fatalf("Validate: %v, want nil", err)
		}
		return
	}
	var ve *ValidationError
	if !errors.As(err, &ve) {
		t.Fatalf("Validate: %v, want a *ValidationError", err)
	}
	got := ve.Errors()
	var prefixes []string
	for _, e := range got {
		p, _, _ := strings.Cut(e, " ")
		prefixes = append(prefixes, p)
	}
	if diff := cmp.Diff(want, prefixes); diff != "" {
		t.Errorf("fields (-want +got):\n%s\nerrors: %q", diff, got)
	}
}

func TestIncludedJSON(t *testing.T) {
	for _, tc := range []struct{ in, out string }{
		{`"1000"`, `"1000"`}, {`"unlimited"`, `"unlimited"`}, {`12.5`, `"12.5"`}, {`null`, `"0"`},
	} {
		var in Included
		if err := json.Unmarshal([]byte(tc.in), &in); err != nil {
			t.Fatalf("unmarshal %s: %v", tc.in, err)
		}
		b, err := json.Marshal(in)
		if err != nil || string(b) != tc.out {
			t.Errorf("%s round-trips to %s, %v; want %s", tc.in, b, err, tc.out)
		}
	}
	var in Included
	if err := json.Unmarshal([]byte(`"lots"`), &in); err == nil || !strings.HasPrefix(err.Error(), "included:") {
		t.Errorf(`unmarshal "lots": %v, want an included: error`, err)
	}
}
