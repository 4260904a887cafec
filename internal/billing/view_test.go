package billing

import (
	"testing"
	"time"

	"github.com/shopspring/decimal"
)

// mailProPlan is the worked example plan.
func mailProPlan() Plan {
	return Plan{
		ID: "p", Key: "mail-pro", Version: 1, Currency: "EUR", Cadence: CadenceMonthly, BaseFee: dec("10.00"),
		Charges: []PlanCharge{{
			Key: "emails", Meter: "emails", Included: IncludedQuantity(dec("1000")),
			Pricing: Pricing{Model: ModelPackage, PackageSize: dec("1000"), UnitPrice: dec("5.00")},
		}},
		Status: PlanPublished,
	}
}

func exampleSub() Subscription {
	return Subscription{
		ID: "s1", Start: time.Date(2026, 6, 20, 10, 0, 0, 0, time.UTC), Cadence: CadenceMonthly,
		BillingAnchor: AnchorAnniversary, TimeZone: "UTC", Status: SubscriptionActive,
	}
}

func mustView(t *testing.T, sub Subscription, plan Plan, now time.Time, usage map[string]decimal.Decimal) UsageView {
	t.Helper()
	p, err := sub.CurrentPeriod(now)
	if err != nil {
		t.Fatalf("CurrentPeriod: %v", err)
	}
	v, err := View(sub, plan, p, now, usage)
	if err != nil {
		t.Fatalf("View: %v", err)
	}
	return v
}

func money(v UsageView, d decimal.Decimal) string { return d.StringFixed(v.Digits) }

func TestViewWorkedExample(t *testing.T) {
	sub, plan := exampleSub(), mailProPlan()
	// Half-way through the first period (15 of 30 days).
	now := time.Date(2026, 7, 5, 10, 0, 0, 0, time.UTC)
	tests := []struct {
		usage                                      string
		remaining, overage, amount, total          string
		projected, projectedAmount, projectedTotal string
	}{
		{"935", "65", "0", "0.00", "10.00", "1870", "5.00", "15.00"},
		{"12345", "0", "11345", "60.00", "70.00", "24690", "120.00", "130.00"},
		{"0", "1000", "0", "0.00", "10.00", "0", "0.00", "10.00"},
		{"1000", "0", "0", "0.00", "10.00", "2000", "5.00", "15.00"},
	}
	for _, tc := range tests {
		v := mustView(t, sub, plan, now, map[string]decimal.Decimal{"emails": dec(tc.usage)})
		if !v.Period.Start.Equal(sub.Start) || !v.Period.End.Equal(time.Date(2026, 7, 20, 10, 0, 0, 0, time.UTC)) {
			t.Fatalf("period %v – %v", v.Period.Start, v.Period.End)
		}
		if v.Subscription != "s1" || v.Currency != "EUR" || v.Digits != 2 || !v.Elapsed.Equal(dec("0.5")) || !v.AsOf.Equal(now) {
			t.Errorf("view header %+v", v)
		}
		if len(v.Charges) != 1 {
			t.Fatalf("charges %+v", v.Charges)
		}
		c := v.Charges[0]
		if c.Key != "emails" || c.Meter != "emails" || c.Usage.String() != tc.usage || c.Included.String() != "1000" ||
			c.Remaining == nil || c.Remaining.String() != tc.remaining || c.Overage.String() != tc.overage ||
			money(v, c.Amount) != tc.amount || money(v, v.BaseFee) != "10.00" || money(v, v.Total) != tc.total ||
			c.ProjectedUsage.String() != tc.projected || money(v, c.ProjectedAmount) != tc.projectedAmount ||
			money(v, v.ProjectedTotal) != tc.projectedTotal {
			t.Errorf("usage %s: remaining %v overage %s amount %s total %s projected %s %s %s; want %+v",
				tc.usage, c.Remaining, c.Overage, money(v, c.Amount), money(v, v.Total),
				c.ProjectedUsage, money(v, c.ProjectedAmount), money(v, v.ProjectedTotal), tc)
		}
	}
	// The 12,345 case prices 12 packages.
	v := mustView(t, sub, plan, now, map[string]decimal.Decimal{"emails": dec("12345")})
	if got := v.Charges[0].Line.Packages.String(); got != "12" {
		t.Errorf("packages %s, want 12", got)
	}
}

func TestViewProjection(t *testing.T) {
	sub, plan := exampleSub(), mailProPlan()
	// At the period start nothing has elapsed: the projection is the usage.
	v := mustView(t, sub, plan, sub.Start, map[string]decimal.Decimal{"emails": dec("7")})
	if c := v.Charges[0]; !c.ProjectedUsage.Equal(dec("7")) || !v.Elapsed.IsZero() {
		t.Errorf("at start: projected %s elapsed %s", c.ProjectedUsage, v.Elapsed)
	}
	// Before a future start: the first period, no usage, nothing elapsed.
	v = mustView(t, sub, plan, sub.Start.Add(-48*time.Hour), nil)
	if c := v.Charges[0]; !c.Usage.IsZero() || !c.ProjectedUsage.IsZero() || money(v, v.Total) != "10.00" {
		t.Errorf("before start: %+v", v)
	}
	// 7 of 30 days: 1,100 × 30/7 = 4,714.2857… rounds to the usage's own
	// decimals (a whole number): 4,714 → 3,714 billable → 4 packages.
	v = mustView(t, sub, plan, sub.Start.Add(7*24*time.Hour), map[string]decimal.Decimal{"emails": dec("1100")})
	c := v.Charges[0]
	if c.ProjectedUsage.String() != "4714" || money(v, c.ProjectedAmount) != "20.00" || money(v, v.ProjectedTotal) != "30.00" ||
		money(v, c.Amount) != "5.00" || v.Elapsed.String() != "0.233333" {
		t.Errorf("7 days: projected %s amount %s total %s, now %s, elapsed %s", c.ProjectedUsage, money(v, c.ProjectedAmount),
			money(v, v.ProjectedTotal), money(v, c.Amount), v.Elapsed)
	}
	// A decimal usage keeps its decimals: 1.5 × 30/7 = 6.428… → 6.4.
	v = mustView(t, sub, plan, sub.Start.Add(7*24*time.Hour), map[string]decimal.Decimal{"emails": dec("1.5")})
	if got := v.Charges[0].ProjectedUsage.String(); got != "6.4" {
		t.Errorf("decimal projection %s, want 6.4", got)
	}
}

func TestViewUnlimitedPerUnitAndPartialPeriod(t *testing.T) {
	plan := Plan{
		Key: "api", Version: 2, Currency: "JPY", Cadence: CadenceMonthly, BaseFee: dec("3100"),
		Charges: []PlanCharge{
			{Key: "calls", Meter: "calls", Included: IncludedUnlimited(), Pricing: Pricing{Model: ModelPerUnit, UnitPrice: dec("1")}},
			{Key: "gpt4", Meter: "tokens", FilterGroupBy: map[string]string{"model": "gpt-4"},
				Pricing: Pricing{Model: ModelPerUnit, UnitPrice: dec("0.25")}},
		},
	}
	// Calendar anchor from July 10: a partial first period of 22 of 31 days.
	sub := Subscription{
		ID: "s2", Start: time.Date(2026, 7, 10, 0, 0, 0, 0, time.UTC), Cadence: CadenceMonthly,
		BillingAnchor: AnchorCalendar, TimeZone: "UTC", Status: SubscriptionActive,
	}
	now := time.Date(2026, 7, 21, 0, 0, 0, 0, time.UTC) // 11 of 22 days
	v := mustView(t, sub, plan, now, map[string]decimal.Decimal{"calls": dec("500"), "gpt4": dec("10")})
	if !v.Period.Partial || !v.Period.End.Equal(time.Date(2026, 8, 1, 0, 0, 0, 0, time.UTC)) {
		t.Fatalf("period %+v", v.Period)
	}
	// 3100 × 22/31 = 2200 JPY, no decimals.
	if money(v, v.BaseFee) != "2200" || v.Digits != 0 {
		t.Errorf("prorated base fee %s (digits %d)", money(v, v.BaseFee), v.Digits)
	}
	calls, gpt4 := v.Charges[0], v.Charges[1]
	if calls.Remaining != nil || calls.Included.String() != "unlimited" || !calls.Overage.IsZero() || !calls.Amount.IsZero() ||
		calls.ProjectedUsage.String() != "1000" || !calls.ProjectedAmount.IsZero() {
		t.Errorf("unlimited charge %+v", calls)
	}
	// 10 × 0.25 = 2.5 rounds half-even to 2 JPY; projected 20 × 0.25 = 5.
	if gpt4.Remaining == nil || !gpt4.Remaining.IsZero() || gpt4.Overage.String() != "10" || money(v, gpt4.Amount) != "2" ||
		gpt4.FilterGroupBy["model"] != "gpt-4" || money(v, gpt4.ProjectedAmount) != "5" {
		t.Errorf("per-unit charge %+v", gpt4)
	}
	if money(v, v.Total) != "2202" || money(v, v.ProjectedTotal) != "2205" {
		t.Errorf("totals %s %s", money(v, v.Total), money(v, v.ProjectedTotal))
	}
}

func TestViewRejectsBadInput(t *testing.T) {
	sub, plan := exampleSub(), mailProPlan()
	p, _ := sub.CurrentPeriod(sub.Start)
	// Negative usage (a SUM meter's values can be negative) costs nothing
	// and leaves the included quantity whole.
	v, err := View(sub, plan, p, sub.Start, map[string]decimal.Decimal{"emails": dec("-1")})
	if err != nil || !v.Charges[0].Amount.IsZero() || !v.Charges[0].Remaining.Equal(dec("1000")) || !v.Total.Equal(dec("10")) {
		t.Errorf("negative usage: %+v, %v", v, err)
	}
	plan.Currency = "XXX"
	if _, err := View(sub, plan, p, sub.Start, nil); err == nil {
		t.Error("unknown currency accepted")
	}
}
