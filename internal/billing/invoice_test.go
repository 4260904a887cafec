package billing

import (
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
	q, a := Billed(closed, nil, "emails", "", 0)
	if _, ok, _ := NewAdjustment(closed, plan.Charges[0], dec("935"), q, a); ok {
		t.Error("adjustment without late usage")
	}
	adj, ok, err := NewAdjustment(closed, plan.Charges[0], dec("2100"), q, a)
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
	q, a = Billed(closed, []Invoice{inv}, "emails", "", 0)
	if q.String() != "2100" || a.StringFixed(2) != "10.00" {
		t.Errorf("billed after adjustment %s %s", q, a)
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
