package billing

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/shopspring/decimal"
)

func TestBuildInvoiceWorkedExample(t *testing.T) {
	sub, plan := exampleSub(), mailProPlan()
	period, err := sub.CurrentPeriod(sub.Start)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ usage, billable, packages, amount, total string }{
		{"935", "0", "0", "0.00", "10.00"},
		{"12345", "11345", "12", "60.00", "70.00"},
	} {
		inv, err := BuildInvoice(sub, plan, period, map[string]decimal.Decimal{"emails": dec(tc.usage)}, nil)
		if err != nil {
			t.Fatalf("BuildInvoice(%s): %v", tc.usage, err)
		}
		if inv.Status != InvoiceDraft || inv.Currency != "EUR" || inv.ID != InvoiceID("s1", sub.Start) ||
			!inv.PeriodStart.Equal(sub.Start) || !inv.PeriodEnd.Equal(time.Date(2026, 7, 20, 10, 0, 0, 0, time.UTC)) {
			t.Errorf("%s: header %+v", tc.usage, inv)
		}
		if got := inv.Total.StringFixed(inv.Digits); got != tc.total {
			t.Errorf("%s: total %s, want %s", tc.usage, got, tc.total)
		}
		if len(inv.Lines) != 2 {
			t.Fatalf("%s: lines %+v", tc.usage, inv.Lines)
		}
		base, l := inv.Lines[0], inv.Lines[1]
		if base.Kind != LineBaseFee || base.Amount.StringFixed(2) != "10.00" || !base.Quantity.Equal(dec("1")) {
			t.Errorf("%s: base fee line %+v", tc.usage, base)
		}
		if l.Kind != LineUsage || l.Key != "emails" || l.Quantity.String() != tc.usage || l.Billable.String() != tc.billable ||
			l.Packages.String() != tc.packages || l.Amount.StringFixed(2) != tc.amount || l.UnitPrice == nil || l.UnitPrice.StringFixed(2) != "5.00" {
			t.Errorf("%s: usage line %+v", tc.usage, l)
		}
		// The draft equals the usage view at the period's end.
		v, err := View(sub, plan, period, period.End, map[string]decimal.Decimal{"emails": dec(tc.usage)})
		if err != nil {
			t.Fatal(err)
		}
		if !v.Total.Equal(inv.Total) {
			t.Errorf("%s: view total %s, invoice %s", tc.usage, v.Total, inv.Total)
		}
	}
}

func TestBuildInvoiceTiersProrationAndRounding(t *testing.T) {
	up := dec("1000")
	plan := Plan{
		ID: "p", Key: "api", Version: 2, Currency: "EUR", Cadence: CadenceMonthly, BaseFee: dec("31.00"),
		Charges: []PlanCharge{{
			Key: "calls", Meter: "calls",
			Pricing: Pricing{Model: ModelGraduated, Tiers: []Tier{{UpTo: &up, UnitPrice: dec("0.001")}, {UnitPrice: dec("0.0005"), FlatPrice: dec("1")}}},
		}},
	}
	sub := Subscription{ID: "s2", Start: time.Date(2026, 1, 11, 0, 0, 0, 0, time.UTC), Cadence: CadenceMonthly,
		BillingAnchor: AnchorCalendar, TimeZone: "UTC", Status: SubscriptionActive}
	period, err := sub.CurrentPeriod(sub.Start)
	if err != nil {
		t.Fatal(err)
	}
	if !period.Partial {
		t.Fatalf("period %+v, want partial", period)
	}
	inv, err := BuildInvoice(sub, plan, period, map[string]decimal.Decimal{"calls": dec("1005")}, nil)
	if err != nil {
		t.Fatal(err)
	}
	// 21 of 31 days of 31.00.
	if got := inv.Lines[0].Amount.StringFixed(2); got != "21.00" {
		t.Errorf("prorated base fee %s, want 21.00", got)
	}
	// 1000 × 0.001 + 5 × 0.0005 + 1 = 2.0025 → 2.00 (half-even).
	l := inv.Lines[1]
	if len(l.Tiers) != 2 || l.ExactAmount.String() != "2.0025" || l.Amount.StringFixed(2) != "2.00" {
		t.Errorf("graduated line %+v", l)
	}
	sum := decimal.Zero
	for _, x := range inv.Lines {
		sum = sum.Add(x.Amount)
	}
	if !sum.Equal(inv.Total) || inv.Total.StringFixed(2) != "23.00" {
		t.Errorf("total %s, sum of lines %s", inv.Total, sum)
	}
}

func TestInvoiceIDRoundTrip(t *testing.T) {
	start := time.Date(2026, 6, 20, 10, 0, 0, 0, time.UTC)
	id := InvoiceID("sub_a_b", start)
	sub, got, ok := ParseInvoiceID(id)
	if !ok || sub != "sub_a_b" || !got.Equal(start) {
		t.Errorf("ParseInvoiceID(%q) = %q %s %v", id, sub, got, ok)
	}
	for _, bad := range []string{"", "inv_", "inv_x", "inv_x_y", "x_1"} {
		if _, _, ok := ParseInvoiceID(bad); ok {
			t.Errorf("ParseInvoiceID(%q) ok", bad)
		}
	}
}

func TestAdjustment(t *testing.T) {
	sub, plan := exampleSub(), mailProPlan()
	period, _ := sub.CurrentPeriod(sub.Start)
	closed, err := BuildInvoice(sub, plan, period, map[string]decimal.Decimal{"emails": dec("935")}, nil)
	if err != nil {
		t.Fatal(err)
	}
	q, a := Billed(closed, nil, nil, "emails", "", 0)
	if _, ok, _ := NewCorrection(closed, plan.Charges[0].Charge(), dec("935"), q, a); ok {
		t.Error("adjustment without late usage")
	}
	adj, ok, err := NewCorrection(closed, plan.Charges[0].Charge(), dec("2100"), q, a)
	if err != nil || !ok || adj.Quantity.String() != "1165" || adj.Amount.StringFixed(2) != "10.00" {
		t.Fatalf("adjustment %+v %v %v", adj, ok, err)
	}
	next, _ := sub.CurrentPeriod(period.End)
	inv, err := BuildInvoice(sub, plan, next, nil, []Adjustment{adj})
	if err != nil {
		t.Fatal(err)
	}
	l := inv.Lines[len(inv.Lines)-1]
	if l.Kind != LineAdjustment || l.AdjustsInvoice != closed.ID || !l.AdjustsPeriodStart.Equal(period.Start) || inv.Total.StringFixed(2) != "20.00" {
		t.Errorf("adjustment line %+v total %s", l, inv.Total)
	}
	q, a = Billed(closed, []Invoice{inv}, nil, "emails", "", 0)
	if q.String() != "2100" || a.StringFixed(2) != "10.00" {
		t.Errorf("billed after adjustment %s %s", q, a)
	}
}

// TestCorrectionBothDirections checks the one formula of corrections: the
// rounded price of the period's usage now minus what was billed, net of
// credit, whichever way usage and price moved.
func TestCorrectionBothDirections(t *testing.T) {
	sub, plan := exampleSub(), mailProPlan()
	volume := PlanCharge{Key: "calls", Meter: "calls", Pricing: Pricing{Model: ModelVolume, Tiers: []Tier{
		{UpTo: decp("5"), UnitPrice: dec("2.00")}, {UnitPrice: dec("1.00")},
	}}}
	plan.Charges = append(plan.Charges, volume)
	period, _ := sub.CurrentPeriod(sub.Start)
	tests := []struct {
		name          string
		charge        PlanCharge
		billed, now   string
		wantQ, wantA  string // "" for no correction
		wantCreditAmt string // the credit note line's amount, for negative ones
	}{
		// The October example: 12,345 billed 60.00 for e-mails; a late
		// -12000 leaves 345, within the included 1,000.
		{"usage down, credit", plan.Charges[0], "12345", "345", "-12000", "-60.00", "60.00"},
		{"usage up, adjustment", plan.Charges[0], "12345", "13345", "1000", "5.00", ""},
		{"usage down within a package, nothing", plan.Charges[0], "12345", "12001", "", "", ""},
		// Volume: 6 units cost 6.00, 5 cost 10.00.
		{"volume one less costs more", volume, "6", "5", "-1", "4.00", ""},
		{"volume one more costs less", volume, "5", "6", "1", "-4.00", "4.00"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			closed, err := BuildInvoice(sub, plan, period, map[string]decimal.Decimal{tc.charge.Key: dec(tc.billed)}, nil)
			if err != nil {
				t.Fatal(err)
			}
			q, a := Billed(closed, nil, nil, tc.charge.Key, "", 0)
			c, ok, err := NewCorrection(closed, tc.charge.Charge(), dec(tc.now), q, a)
			if err != nil {
				t.Fatal(err)
			}
			if tc.wantA == "" {
				if ok {
					t.Fatalf("correction %+v, want none", c)
				}
				return
			}
			if !ok || c.Quantity.String() != tc.wantQ || c.Amount.StringFixed(2) != tc.wantA {
				t.Fatalf("correction quantity %s amount %s (ok %v), want %s %s", c.Quantity, c.Amount, ok, tc.wantQ, tc.wantA)
			}
			cn, issued, err := BuildCreditNote(sub, "EUR", 1, period.End, []Adjustment{c})
			if err != nil {
				t.Fatal(err)
			}
			if tc.wantCreditAmt == "" {
				if issued {
					t.Fatalf("credit note %+v for a positive correction", cn)
				}
				if _, err := BuildInvoice(sub, plan, period, nil, []Adjustment{c}); err != nil {
					t.Fatalf("adjustment line: %v", err)
				}
				return
			}
			if !issued || len(cn.Lines) != 1 || cn.Total.StringFixed(2) != tc.wantCreditAmt || cn.Lines[0].Invoice != closed.ID || cn.ID != CreditNoteID(sub.ID, 1) {
				t.Fatalf("credit note %+v", cn)
			}
			if _, err := BuildInvoice(sub, plan, period, nil, []Adjustment{c}); err == nil {
				t.Error("BuildInvoice took a negative adjustment")
			}
			// Once credited, nothing is left to correct; usage going back
			// up is billed again.
			q, a = Billed(closed, nil, []CreditNote{cn}, tc.charge.Key, "", 0)
			if _, ok, _ := NewCorrection(closed, tc.charge.Charge(), dec(tc.now), q, a); ok {
				t.Errorf("credited twice: billed %s %s", q, a)
			}
			back, ok, _ := NewCorrection(closed, tc.charge.Charge(), dec(tc.billed), q, a)
			if !ok || back.Amount.StringFixed(2) != tc.wantCreditAmt || !back.Quantity.Equal(dec(tc.wantQ).Neg()) {
				t.Errorf("usage back up: %+v %v", back, ok)
			}
		})
	}
}

func TestCreditNoteIDRoundTrip(t *testing.T) {
	id := CreditNoteID("sub_a_b", 12)
	sub, n, ok := ParseCreditNoteID(id)
	if !ok || sub != "sub_a_b" || n != 12 {
		t.Errorf("ParseCreditNoteID(%q) = %q %d %v", id, sub, n, ok)
	}
	for _, bad := range []string{"", "cn_", "cn_x", "cn_x_0", "cn_x_y", "inv_x_1"} {
		if _, _, ok := ParseCreditNoteID(bad); ok {
			t.Errorf("ParseCreditNoteID(%q) ok", bad)
		}
	}
}

func TestBuildInvoiceCutPeriodProratesBaseFee(t *testing.T) {
	sub, plan := exampleSub(), mailProPlan()
	period, err := sub.CurrentPeriod(sub.Start)
	if err != nil {
		t.Fatal(err)
	}
	// Cut 12 of the period's 30 days in (a cancellation "now").
	period.FullEnd, period.End = period.End, period.Start.Add(12*24*time.Hour)
	if !period.Prorated() || period.Partial {
		t.Fatalf("cut period %+v: Prorated %v", period, period.Prorated())
	}
	inv, err := BuildInvoice(sub, plan, period, map[string]decimal.Decimal{"emails": dec("935")}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if base := inv.Lines[0]; !base.Quantity.Equal(dec("0.4")) || base.Amount.StringFixed(2) != "4.00" || inv.Total.StringFixed(2) != "4.00" ||
		!inv.PeriodEnd.Equal(period.End) {
		t.Errorf("cut period invoice %+v", inv)
	}
}

// TestInvoiceTotalIsSumOfLinesProperty checks, for random plans (every
// pricing model, currencies with 0, 2 and 3 decimals), usage, adjustments,
// cut-short periods and periods split by plan changes, that an invoice's
// total is exactly the sum of its lines' amounts, that each amount is its
// exact amount rounded once (half-even) to the currency's minor unit, and
// that the invoice has one base fee and one line per charge per segment
// plus one per adjustment.
func TestInvoiceTotalIsSumOfLinesProperty(t *testing.T) {
	rng := rand.New(rand.NewPCG(17, 2026))
	num := func(max int64, maxScale int) decimal.Decimal {
		return decimal.New(rng.Int64N(max), -int32(rng.IntN(maxScale+1)))
	}
	randPricing := func() Pricing {
		switch rng.IntN(4) {
		case 0:
			return Pricing{Model: ModelPerUnit, UnitPrice: num(10000, 5)}
		case 1:
			return Pricing{Model: ModelPackage, UnitPrice: num(10000, 3), PackageSize: num(5000, 1).Add(decimal.NewFromInt(1))}
		default:
			n := 1 + rng.IntN(4)
			tiers := make([]Tier, n)
			upTo := decimal.Zero
			for i := range tiers {
				tiers[i] = Tier{UnitPrice: num(1000, 4), FlatPrice: num(500, 2)}
				if i < n-1 {
					upTo = upTo.Add(num(10000, 1)).Add(decimal.NewFromInt(1))
					tiers[i].UpTo = ptr(upTo)
				}
			}
			return Pricing{Model: []Model{ModelGraduated, ModelVolume}[rng.IntN(2)], Tiers: tiers}
		}
	}
	randPlan := func(key, cur string) Plan {
		p := Plan{ID: "p-" + key, Key: key, Version: 1, Currency: cur, Cadence: CadenceMonthly, BaseFee: num(100000, 4), Status: PlanPublished}
		for i := range rng.IntN(4) {
			inc := IncludedQuantity(num(2000, 2))
			if rng.IntN(5) == 0 {
				inc = IncludedUnlimited()
			}
			p.Charges = append(p.Charges, PlanCharge{Key: fmt.Sprintf("c%d", i), Meter: "m", Included: inc, Pricing: randPricing()})
		}
		return p
	}
	randUsage := func(p Plan) map[string]decimal.Decimal {
		u := map[string]decimal.Decimal{}
		for _, pc := range p.Charges {
			u[pc.Key] = num(100000, 6)
		}
		return u
	}
	sub := exampleSub()
	full, err := sub.CurrentPeriod(sub.Start)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 500 {
		cur := []string{"EUR", "JPY", "KWD"}[rng.IntN(3)]
		digits, err := MinorUnits(cur)
		if err != nil {
			t.Fatal(err)
		}
		period := full
		if rng.IntN(3) == 0 { // cut short by a cancellation "now"
			period.FullEnd, period.End = period.End, period.Start.Add(time.Duration(1+rng.Int64N(int64(period.Duration()-1))))
		}
		// One to three segments, split at random instants.
		var segs []SegmentUsage
		charges := 0
		cuts := []time.Time{period.Start}
		for range rng.IntN(3) {
			cuts = append(cuts, cuts[len(cuts)-1].Add(time.Duration(1+rng.Int64N(int64(period.End.Sub(cuts[len(cuts)-1])/2)))))
		}
		cuts = append(cuts, period.End)
		for k := range len(cuts) - 1 {
			sp := period
			sp.Start, sp.End = cuts[k], cuts[k+1]
			if len(cuts) > 2 && sp.FullEnd.IsZero() {
				sp.FullEnd = period.End
			}
			plan := randPlan(fmt.Sprintf("plan%d", k), cur)
			charges += len(plan.Charges)
			segs = append(segs, SegmentUsage{Plan: plan, Period: sp, Usage: randUsage(plan)})
		}
		var adj []Adjustment
		for range rng.IntN(3) {
			// Adjustments are positive: a negative correction is credited
			// on a credit note.
			a := num(100000, int(digits)).Add(decimal.New(1, -digits))
			adj = append(adj, Adjustment{Invoice: "inv_prev", PeriodStart: full.Start.AddDate(0, -1, 0), PeriodEnd: full.Start,
				ChargeKey: "c0", Meter: "m", Quantity: num(1000, 2), Amount: a})
		}
		inv, err := BuildSegmentedInvoice(sub, period, segs, adj)
		if err != nil {
			t.Fatalf("case %d: %v", i, err)
		}
		if want := len(segs) + charges + len(adj); len(inv.Lines) != want {
			t.Fatalf("case %d: %d lines, want %d (%d segments, %d charges, %d adjustments)", i, len(inv.Lines), want, len(segs), charges, len(adj))
		}
		sum := decimal.Zero
		for j, l := range inv.Lines {
			if want := l.ExactAmount.RoundBank(digits); !l.Amount.Equal(want) {
				t.Errorf("case %d line %d (%s %s): amount %s, want %s rounded = %s", i, j, l.Kind, l.Key, l.Amount, l.ExactAmount, want)
			}
			sum = sum.Add(l.Amount)
		}
		if !inv.Total.Equal(sum) {
			t.Errorf("case %d: total %s, sum of lines %s", i, inv.Total, sum)
		}
		if !inv.Total.RoundBank(digits).Equal(inv.Total) {
			t.Errorf("case %d: total %s %s is not whole minor units", i, inv.Total, cur)
		}
	}
}
