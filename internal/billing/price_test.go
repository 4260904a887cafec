package billing

import (
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/shopspring/decimal"
)

func dec(s string) decimal.Decimal { return decimal.RequireFromString(s) }

func decp(s string) *decimal.Decimal { return ptr(dec(s)) }

// mailPro is the worked example: 1,000 e-mails included, every
// further started 1,000 cost 5.00 EUR.
var mailPro = Charge{
	Key:      "emails",
	Meter:    "emails",
	Included: IncludedQuantity(dec("1000")),
	Pricing:  Pricing{Model: ModelPackage, PackageSize: dec("1000"), UnitPrice: dec("5.00")},
}

func TestWorkedExample(t *testing.T) {
	tests := []struct {
		usage      string
		wantLine   Line
		wantRound  string
		wantTotal  string
		wantString string
	}{
		{
			usage: "935",
			wantLine: Line{Key: "emails", Meter: "emails", Model: ModelPackage, Quantity: dec("935"), Included: dec("935"),
				Billable: dec("0"), Packages: dec("0"), UnitPrice: decp("5.00"), Amount: dec("0")},
			wantRound: "0.00", wantTotal: "10.00",
		},
		{
			usage: "12345",
			wantLine: Line{Key: "emails", Meter: "emails", Model: ModelPackage, Quantity: dec("12345"), Included: dec("1000"),
				Billable: dec("11345"), Packages: dec("12"), UnitPrice: decp("5.00"), Amount: dec("60.00")},
			wantRound: "60.00", wantTotal: "70.00",
		},
	}
	for _, tt := range tests {
		t.Run(tt.usage, func(t *testing.T) {
			l, err := Rate(mailPro, dec(tt.usage))
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.wantLine, l); diff != "" {
				t.Errorf("Rate (-want +got):\n%s", diff)
			}
			r, err := l.RoundedAmount("EUR")
			if err != nil {
				t.Fatal(err)
			}
			if got := r.StringFixed(2); got != tt.wantRound {
				t.Errorf("RoundedAmount = %s, want %s", got, tt.wantRound)
			}
			total, err := Total(dec("10.00"), []Line{l}, "EUR")
			if err != nil {
				t.Fatal(err)
			}
			if got := total.StringFixed(2); got != tt.wantTotal || !total.Equal(dec(tt.wantTotal)) {
				t.Errorf("Total = %s, want %s EUR", got, tt.wantTotal)
			}
		})
	}
}

// tiers1000 is a two-tier table: up to 1,000 units at 0.01, beyond at 0.005
// plus a flat 2.00 when reached.
var tiers1000 = []Tier{
	{UpTo: decp("1000"), UnitPrice: dec("0.01")},
	{UnitPrice: dec("0.005"), FlatPrice: dec("2.00")},
}

// tiers3 has three tiers with a flat fee on the first.
var tiers3 = []Tier{
	{UpTo: decp("100"), UnitPrice: dec("1"), FlatPrice: dec("10")},
	{UpTo: decp("1000"), UnitPrice: dec("0.5")},
	{UnitPrice: dec("0.1")},
}

func TestRate(t *testing.T) {
	perUnit := Pricing{Model: ModelPerUnit, UnitPrice: dec("0.002")}
	pkg := Pricing{Model: ModelPackage, PackageSize: dec("1000"), UnitPrice: dec("5")}
	grad := Pricing{Model: ModelGraduated, Tiers: tiers3}
	vol := Pricing{Model: ModelVolume, Tiers: tiers3}
	tests := []struct {
		name     string
		included Included
		pricing  Pricing
		usage    string
		want     Line // Key, Meter and Model are filled in
	}{
		{
			name: "per unit", pricing: perUnit, usage: "1500",
			want: Line{Quantity: dec("1500"), Included: dec("0"), Billable: dec("1500"), UnitPrice: decp("0.002"), Amount: dec("3")},
		},
		{
			// A SUM meter's values can be negative; negative usage is
			// priced like zero and consumes no included quantity.
			name: "package negative usage", included: IncludedQuantity(dec("1000")), pricing: pkg, usage: "-5",
			want: Line{Quantity: dec("-5"), Included: dec("0"), Billable: dec("0"), Packages: dec("0"), UnitPrice: decp("5"), Amount: dec("0")},
		},
		{
			name: "volume negative usage", pricing: vol, usage: "-0.5",
			want: Line{Quantity: dec("-0.5"), Included: dec("0"), Billable: dec("0"), Amount: dec("0")},
		},
		{
			name: "per unit zero usage", pricing: perUnit, usage: "0",
			want: Line{Quantity: dec("0"), Included: dec("0"), Billable: dec("0"), UnitPrice: decp("0.002"), Amount: dec("0")},
		},
		{
			name: "per unit below included", included: IncludedQuantity(dec("100")), pricing: perUnit, usage: "99.5",
			want: Line{Quantity: dec("99.5"), Included: dec("99.5"), Billable: dec("0"), UnitPrice: decp("0.002"), Amount: dec("0")},
		},
		{
			name: "per unit exactly included", included: IncludedQuantity(dec("100")), pricing: perUnit, usage: "100",
			want: Line{Quantity: dec("100"), Included: dec("100"), Billable: dec("0"), UnitPrice: decp("0.002"), Amount: dec("0")},
		},
		{
			name: "per unit fractional overage", included: IncludedQuantity(dec("100")), pricing: perUnit, usage: "100.25",
			want: Line{Quantity: dec("100.25"), Included: dec("100"), Billable: dec("0.25"), UnitPrice: decp("0.002"), Amount: dec("0.0005")},
		},
		{
			name: "unlimited included", included: IncludedUnlimited(), pricing: perUnit, usage: "1e9",
			want: Line{Quantity: dec("1e9"), Included: dec("1e9"), Billable: dec("0"), UnitPrice: decp("0.002"), Amount: dec("0")},
		},
		{
			name: "package half a unit is one package", pricing: pkg, usage: "0.5",
			want: Line{Quantity: dec("0.5"), Included: dec("0"), Billable: dec("0.5"), Packages: dec("1"), UnitPrice: decp("5"), Amount: dec("5")},
		},
		{
			name: "package exactly full", pricing: pkg, usage: "2000",
			want: Line{Quantity: dec("2000"), Included: dec("0"), Billable: dec("2000"), Packages: dec("2"), UnitPrice: decp("5"), Amount: dec("10")},
		},
		{
			name: "package just over", pricing: pkg, usage: "2000.000000000000000000001",
			want: Line{Quantity: dec("2000.000000000000000000001"), Included: dec("0"), Billable: dec("2000.000000000000000000001"),
				Packages: dec("3"), UnitPrice: decp("5"), Amount: dec("15")},
		},
		{
			name: "package zero usage", pricing: pkg, usage: "0",
			want: Line{Quantity: dec("0"), Included: dec("0"), Billable: dec("0"), Packages: dec("0"), UnitPrice: decp("5"), Amount: dec("0")},
		},
		{
			name: "package fractional size", pricing: Pricing{Model: ModelPackage, PackageSize: dec("0.5"), UnitPrice: dec("1")}, usage: "1.2",
			want: Line{Quantity: dec("1.2"), Included: dec("0"), Billable: dec("1.2"), Packages: dec("3"), UnitPrice: decp("1"), Amount: dec("3")},
		},
		{
			name: "graduated zero usage has no flat fee", pricing: grad, usage: "0",
			want: Line{Quantity: dec("0"), Included: dec("0"), Billable: dec("0"), Amount: dec("0")},
		},
		{
			name: "graduated within first tier", pricing: grad, usage: "0.5",
			want: Line{Quantity: dec("0.5"), Included: dec("0"), Billable: dec("0.5"), Amount: dec("10.5"), Tiers: []TierLine{
				{Tier: 0, From: dec("0"), To: decp("100"), Quantity: dec("0.5"), UnitPrice: dec("1"), Flat: dec("10"), Amount: dec("10.5")},
			}},
		},
		{
			name: "graduated exactly at tier edge", pricing: grad, usage: "100",
			want: Line{Quantity: dec("100"), Included: dec("0"), Billable: dec("100"), Amount: dec("110"), Tiers: []TierLine{
				{Tier: 0, From: dec("0"), To: decp("100"), Quantity: dec("100"), UnitPrice: dec("1"), Flat: dec("10"), Amount: dec("110")},
			}},
		},
		{
			name: "graduated just over tier edge", pricing: grad, usage: "100.1",
			want: Line{Quantity: dec("100.1"), Included: dec("0"), Billable: dec("100.1"), Amount: dec("110.05"), Tiers: []TierLine{
				{Tier: 0, From: dec("0"), To: decp("100"), Quantity: dec("100"), UnitPrice: dec("1"), Flat: dec("10"), Amount: dec("110")},
				{Tier: 1, From: dec("100"), To: decp("1000"), Quantity: dec("0.1"), UnitPrice: dec("0.5"), Flat: dec("0"), Amount: dec("0.05")},
			}},
		},
		{
			name: "graduated into the unbounded tier", pricing: grad, usage: "2500",
			want: Line{Quantity: dec("2500"), Included: dec("0"), Billable: dec("2500"), Amount: dec("710"), Tiers: []TierLine{
				{Tier: 0, From: dec("0"), To: decp("100"), Quantity: dec("100"), UnitPrice: dec("1"), Flat: dec("10"), Amount: dec("110")},
				{Tier: 1, From: dec("100"), To: decp("1000"), Quantity: dec("900"), UnitPrice: dec("0.5"), Flat: dec("0"), Amount: dec("450")},
				{Tier: 2, From: dec("1000"), Quantity: dec("1500"), UnitPrice: dec("0.1"), Flat: dec("0"), Amount: dec("150")},
			}},
		},
		{
			name: "graduated tiers count billable units", included: IncludedQuantity(dec("1000")), pricing: grad, usage: "1150",
			want: Line{Quantity: dec("1150"), Included: dec("1000"), Billable: dec("150"), Amount: dec("135"), Tiers: []TierLine{
				{Tier: 0, From: dec("0"), To: decp("100"), Quantity: dec("100"), UnitPrice: dec("1"), Flat: dec("10"), Amount: dec("110")},
				{Tier: 1, From: dec("100"), To: decp("1000"), Quantity: dec("50"), UnitPrice: dec("0.5"), Flat: dec("0"), Amount: dec("25")},
			}},
		},
		{
			name: "graduated below included", included: IncludedQuantity(dec("1000")), pricing: grad, usage: "999",
			want: Line{Quantity: dec("999"), Included: dec("999"), Billable: dec("0"), Amount: dec("0")},
		},
		{
			name: "graduated flat fee of a later tier", pricing: Pricing{Model: ModelGraduated, Tiers: tiers1000}, usage: "1001",
			want: Line{Quantity: dec("1001"), Included: dec("0"), Billable: dec("1001"), Amount: dec("12.005"), Tiers: []TierLine{
				{Tier: 0, From: dec("0"), To: decp("1000"), Quantity: dec("1000"), UnitPrice: dec("0.01"), Flat: dec("0"), Amount: dec("10")},
				{Tier: 1, From: dec("1000"), Quantity: dec("1"), UnitPrice: dec("0.005"), Flat: dec("2.00"), Amount: dec("2.005")},
			}},
		},
		{
			name: "volume zero usage", pricing: vol, usage: "0",
			want: Line{Quantity: dec("0"), Included: dec("0"), Billable: dec("0"), Amount: dec("0")},
		},
		{
			name: "volume exactly at tier edge stays in the lower tier", pricing: vol, usage: "1000",
			want: Line{Quantity: dec("1000"), Included: dec("0"), Billable: dec("1000"), UnitPrice: decp("0.5"), Amount: dec("500"), Tiers: []TierLine{
				{Tier: 1, From: dec("100"), To: decp("1000"), Quantity: dec("1000"), UnitPrice: dec("0.5"), Flat: dec("0"), Amount: dec("500")},
			}},
		},
		{
			name: "volume just over tier edge", pricing: vol, usage: "1000.5",
			want: Line{Quantity: dec("1000.5"), Included: dec("0"), Billable: dec("1000.5"), UnitPrice: decp("0.1"), Amount: dec("100.05"), Tiers: []TierLine{
				{Tier: 2, From: dec("1000"), Quantity: dec("1000.5"), UnitPrice: dec("0.1"), Flat: dec("0"), Amount: dec("100.05")},
			}},
		},
		{
			name: "volume first tier with flat", pricing: vol, usage: "50",
			want: Line{Quantity: dec("50"), Included: dec("0"), Billable: dec("50"), UnitPrice: decp("1"), Amount: dec("60"), Tiers: []TierLine{
				{Tier: 0, From: dec("0"), To: decp("100"), Quantity: dec("50"), UnitPrice: dec("1"), Flat: dec("10"), Amount: dec("60")},
			}},
		},
		{
			name: "volume tiers count billable units", included: IncludedQuantity(dec("1000")), pricing: vol, usage: "1150",
			want: Line{Quantity: dec("1150"), Included: dec("1000"), Billable: dec("150"), UnitPrice: decp("0.5"), Amount: dec("75"), Tiers: []TierLine{
				{Tier: 1, From: dec("100"), To: decp("1000"), Quantity: dec("150"), UnitPrice: dec("0.5"), Flat: dec("0"), Amount: dec("75")},
			}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ch := Charge{Key: "k", Meter: "m", Included: tt.included, Pricing: tt.pricing}
			got, err := Rate(ch, dec(tt.usage))
			if err != nil {
				t.Fatal(err)
			}
			want := tt.want
			want.Key, want.Meter, want.Model = "k", "m", tt.pricing.Model
			if diff := cmp.Diff(want, got, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("Rate (-want +got):\n%s", diff)
			}
			// Every line's tier breakdown adds up to its amount.
			sum := decimal.Zero
			for _, tl := range got.Tiers {
				sum = sum.Add(tl.Amount)
			}
			if len(got.Tiers) > 0 && !sum.Equal(got.Amount) {
				t.Errorf("tier amounts sum to %s, line amount is %s", sum, got.Amount)
			}
		})
	}
}

func TestRateErrors(t *testing.T) {
	valid := Charge{Key: "k", Meter: "m", Pricing: Pricing{Model: ModelPerUnit, UnitPrice: dec("1")}}
	tests := []struct {
		name  string
		ch    Charge
		usage string
		want  []string
	}{
		{"no key and meter", Charge{Pricing: valid.Pricing}, "1", []string{"key: is required", "meter: is required"}},
		{"negative included", Charge{Key: "k", Meter: "m", Included: IncludedQuantity(dec("-5")), Pricing: valid.Pricing}, "1",
			[]string{"included: -5 is negative"}},
		{"unknown model", Charge{Key: "k", Meter: "m", Pricing: Pricing{Model: "tiered"}}, "1", []string{`pricing.model: "tiered" is not one of`}},
		{"negative unit price", Charge{Key: "k", Meter: "m", Pricing: Pricing{Model: ModelPerUnit, UnitPrice: dec("-0.01")}}, "1",
			[]string{"pricing.unitPrice: -0.01 is negative"}},
		{"package size zero", Charge{Key: "k", Meter: "m", Pricing: Pricing{Model: ModelPackage, UnitPrice: dec("5")}}, "1",
			[]string{"pricing.packageSize: must be positive"}},
		{"package size negative", Charge{Key: "k", Meter: "m", Pricing: Pricing{Model: ModelPackage, PackageSize: dec("-1"), UnitPrice: dec("5")}}, "1",
			[]string{"pricing.packageSize: must be positive"}},
		{"package size on per unit", Charge{Key: "k", Meter: "m", Pricing: Pricing{Model: ModelPerUnit, PackageSize: dec("10")}}, "1",
			[]string{"pricing.packageSize: not used by the per_unit model"}},
		{"tiers on per unit", Charge{Key: "k", Meter: "m", Pricing: Pricing{Model: ModelPerUnit, Tiers: tiers3}}, "1",
			[]string{"pricing.tiers: not used by the per_unit model"}},
		{"no tiers", Charge{Key: "k", Meter: "m", Pricing: Pricing{Model: ModelGraduated}}, "1",
			[]string{"pricing.tiers: at least one tier is required"}},
		{"unit price on volume", Charge{Key: "k", Meter: "m", Pricing: Pricing{Model: ModelVolume, UnitPrice: dec("1"), Tiers: tiers3}}, "1",
			[]string{"pricing.unitPrice: not used by the volume model"}},
		{"last tier bounded", Charge{Key: "k", Meter: "m", Pricing: Pricing{Model: ModelGraduated, Tiers: []Tier{{UpTo: decp("10")}}}}, "1",
			[]string{"pricing.tiers[0].upTo: the last tier must be unbounded"}},
		{"unbounded tier in the middle", Charge{Key: "k", Meter: "m", Pricing: Pricing{Model: ModelGraduated, Tiers: []Tier{{}, {}}}}, "1",
			[]string{"pricing.tiers[0].upTo: only the last tier can be unbounded"}},
		{"tiers overlap", Charge{Key: "k", Meter: "m", Pricing: Pricing{Model: ModelVolume, Tiers: []Tier{
			{UpTo: decp("100")}, {UpTo: decp("100")}, {UpTo: decp("50")}, {}}}}, "1",
			[]string{"pricing.tiers[1].upTo: 100 is not above the previous tier's upTo 100", "pricing.tiers[2].upTo: 50 is not above"}},
		{"first tier not positive", Charge{Key: "k", Meter: "m", Pricing: Pricing{Model: ModelVolume, Tiers: []Tier{{UpTo: decp("0")}, {}}}}, "1",
			[]string{"pricing.tiers[0].upTo: must be positive"}},
		{"negative tier prices", Charge{Key: "k", Meter: "m", Pricing: Pricing{Model: ModelGraduated, Tiers: []Tier{
			{UpTo: decp("10"), UnitPrice: dec("-1")}, {FlatPrice: dec("-2")}}}}, "1",
			[]string{"pricing.tiers[0].unitPrice: -1 is negative", "pricing.tiers[1].flatPrice: -2 is negative"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Rate(tt.ch, dec(tt.usage))
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
			if n := strings.Count(err.Error(), "\n") + 1; n != len(tt.want) {
				t.Errorf("error has %d lines, want %d: %q", n, len(tt.want), err)
			}
		})
	}
}

// TestGraduatedVolumeAgree checks, for random tier tables and quantities,
// where the two tiered models must agree: with one tier, within the first
// tier, and when every tier has the same unit price and no flat price; and
// that graduated tier quantities add up to the billable quantity.
func TestGraduatedVolumeAgree(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 11))
	randTiers := func(n int, samePrice bool) []Tier {
		tiers := make([]Tier, n)
		upTo := decimal.Zero
		price := decimal.New(rng.Int64N(1000), -3)
		for i := range tiers {
			if !samePrice {
				price = decimal.New(rng.Int64N(1000), -3)
				tiers[i].FlatPrice = decimal.New(rng.Int64N(500), -2)
			}
			tiers[i].UnitPrice = price
			if i < n-1 {
				upTo = upTo.Add(decimal.New(1+rng.Int64N(10000), -1))
				tiers[i].UpTo = ptr(upTo)
			}
		}
		return tiers
	}
	for i := range 500 {
		q := decimal.New(rng.Int64N(50000), -int32(rng.IntN(3)))
		var tiers []Tier
		mustAgree := true
		switch i % 3 {
		case 0:
			tiers = randTiers(1, false)
		case 1:
			tiers = randTiers(1+rng.IntN(5), true)
		case 2:
			tiers = randTiers(2+rng.IntN(4), false)
			mustAgree = q.LessThanOrEqual(*tiers[0].UpTo)
		}
		g, err := Rate(Charge{Key: "g", Meter: "m", Pricing: Pricing{Model: ModelGraduated, Tiers: tiers}}, q)
		if err != nil {
			t.Fatal(err)
		}
		v, err := Rate(Charge{Key: "v", Meter: "m", Pricing: Pricing{Model: ModelVolume, Tiers: tiers}}, q)
		if err != nil {
			t.Fatal(err)
		}
		if mustAgree && !g.Amount.Equal(v.Amount) {
			t.Errorf("q=%s tiers=%v: graduated %s, volume %s", q, tiers, g.Amount, v.Amount)
		}
		sum := decimal.Zero
		for _, tl := range g.Tiers {
			sum = sum.Add(tl.Quantity)
		}
		if !sum.Equal(q) {
			t.Errorf("q=%s: graduated tier quantities sum to %s", q, sum)
		}
	}
}

func TestParseIncluded(t *testing.T) {
	tests := []struct {
		in      string
		want    Included
		wantErr bool
	}{
		{"1000", IncludedQuantity(dec("1000")), false},
		{"0.5", IncludedQuantity(dec("0.5")), false},
		{"unlimited", IncludedUnlimited(), false},
		{"lots", Included{}, true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseIncluded(tt.in)
			if (err != nil) != tt.wantErr {
				t.Fatalf("error = %v", err)
			}
			if err != nil {
				if !strings.HasPrefix(err.Error(), "included: ") {
					t.Errorf("error %q does not name the field", err)
				}
				return
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
			if got.String() != tt.in {
				t.Errorf("String = %q, want %q", got.String(), tt.in)
			}
		})
	}
}

func TestRoundMoney(t *testing.T) {
	tests := []struct {
		amount, currency, want string
	}{
		{"0.125", "EUR", "0.12"},
		{"0.135", "EUR", "0.14"},
		{"0.1250000001", "EUR", "0.13"},
		{"-0.125", "EUR", "-0.12"},
		{"2.675", "USD", "2.68"},
		{"2.665", "GBP", "2.66"},
		{"10", "CHF", "10"},
		{"0.0005", "USD", "0"},
		{"2.5", "JPY", "2"},
		{"3.5", "JPY", "4"},
		{"1234.5", "KRW", "1234"},
		{"1.0005", "KWD", "1"},
		{"1.0015", "BHD", "1.002"},
		{"1.00005", "CLF", "1"},
	}
	for _, tt := range tests {
		t.Run(tt.amount+" "+tt.currency, func(t *testing.T) {
			got, err := RoundMoney(dec(tt.amount), tt.currency)
			if err != nil {
				t.Fatal(err)
			}
			if !got.Equal(dec(tt.want)) {
				t.Errorf("RoundMoney = %s, want %s", got, tt.want)
			}
		})
	}
}

func TestMinorUnits(t *testing.T) {
	tests := []struct {
		currency string
		want     int32
		wantErr  bool
	}{
		{"EUR", 2, false}, {"USD", 2, false}, {"GBP", 2, false}, {"CHF", 2, false},
		{"JPY", 0, false}, {"KRW", 0, false},
		{"BHD", 3, false}, {"KWD", 3, false},
		{"eur", 0, true}, {"XXX", 0, true}, {"", 0, true}, {"EURO", 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.currency, func(t *testing.T) {
			got, err := MinorUnits(tt.currency)
			if (err != nil) != tt.wantErr || got != tt.want {
				t.Fatalf("MinorUnits = %d, %v; want %d, error %v", got, err, tt.want, tt.wantErr)
			}
			if err != nil && !strings.HasPrefix(err.Error(), "currency: ") {
				t.Errorf("error %q does not name the field", err)
			}
			if _, err2 := RoundMoney(dec("1"), tt.currency); (err2 != nil) != tt.wantErr {
				t.Errorf("RoundMoney error = %v", err2)
			}
		})
	}
}

func TestTotal(t *testing.T) {
	lines := []Line{{Amount: dec("0.125")}, {Amount: dec("0.135")}, {Amount: dec("0.005")}}
	tests := []struct {
		name, currency, baseFee, want string
		lines                         []Line
		wantErr                       bool
	}{
		// Each line is rounded once (0.12 + 0.14 + 0.00), not the sum
		// (0.265 → 0.26).
		{name: "rounds per line", currency: "EUR", baseFee: "0", lines: lines, want: "0.26"},
		{name: "base fee rounded too", currency: "EUR", baseFee: "9.995", lines: lines, want: "10.26"},
		{name: "JPY", currency: "JPY", baseFee: "1000", lines: []Line{{Amount: dec("2.5")}, {Amount: dec("3.5")}}, want: "1006"},
		{name: "no lines", currency: "USD", baseFee: "10.00", want: "10"},
		{name: "unknown currency", currency: "ABC", baseFee: "10.00", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Total(dec(tt.baseFee), tt.lines, tt.currency)
			if (err != nil) != tt.wantErr {
				t.Fatalf("error = %v", err)
			}
			if err == nil && !got.Equal(dec(tt.want)) {
				t.Errorf("Total = %s, want %s", got, tt.want)
			}
		})
	}
}

// TestTotalIsSumOfRoundedLines checks the invoice property for random
// lines: the total equals the base fee plus the sum of the rounded line
// amounts, and is a whole number of minor units.
func TestTotalIsSumOfRoundedLines(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for range 200 {
		cur := []string{"EUR", "JPY", "KWD"}[rng.IntN(3)]
		lines := make([]Line, rng.IntN(6))
		sum := decimal.Zero
		for i := range lines {
			lines[i].Amount = decimal.New(rng.Int64N(1e7), -int32(rng.IntN(6)))
			r, err := lines[i].RoundedAmount(cur)
			if err != nil {
				t.Fatal(err)
			}
			sum = sum.Add(r)
		}
		base := decimal.New(rng.Int64N(1e5), -2)
		rb, _ := RoundMoney(base, cur)
		got, err := Total(base, lines, cur)
		if err != nil {
			t.Fatal(err)
		}
		if !got.Equal(sum.Add(rb)) {
			t.Errorf("Total = %s, want %s", got, sum.Add(rb))
		}
		if again, _ := RoundMoney(got, cur); !again.Equal(got) {
			t.Errorf("Total %s %s is not whole minor units", got, cur)
		}
	}
}

func TestProrate(t *testing.T) {
	day := 24 * time.Hour
	tests := []struct {
		name        string
		amount      string
		part, whole time.Duration
		want        string
		wantEUR     string
	}{
		{"full", "10.00", 30 * day, 30 * day, "10", "10.00"},
		{"half", "10.00", 15 * day, 30 * day, "5", "5.00"},
		// 30 places beyond the amount's 2.
		{"third", "10.00", 10 * day, 30 * day, "3.33333333333333333333333333333333", "3.33"},
		{"two thirds", "10.00", 20 * day, 30 * day, "6.66666666666666666666666666666667", "6.67"},
		{"exact tie rounds even", "0.25", 1, 2, "0.125", "0.12"},
		{"credit", "10.00", -15 * day, 30 * day, "-5", "-5.00"},
		{"zero part", "10.00", 0, 30 * day, "0", "0.00"},
		{"11 of 30 days", "10.00", 11 * day, 30 * day, "3.66666666666666666666666666666667", "3.67"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Prorate(dec(tt.amount), tt.part, tt.whole)
			if !got.Equal(dec(tt.want)) {
				t.Errorf("Prorate = %s, want %s", got, tt.want)
			}
			r, err := RoundMoney(got, "EUR")
			if err != nil {
				t.Fatal(err)
			}
			if r.StringFixed(2) != tt.wantEUR {
				t.Errorf("rounded = %s, want %s", r.StringFixed(2), tt.wantEUR)
			}
		})
	}
	t.Run("panics on zero whole", func(t *testing.T) {
		defer func() {
			if recover() == nil {
				t.Error("no panic")
			}
		}()
		Prorate(dec("1"), 1, 0)
	})
}
