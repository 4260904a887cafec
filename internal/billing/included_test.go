package billing

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/shopspring/decimal"
)

// day is one day; the periods below are built from days so that the
// shares are easy to read.
const day = 24 * time.Hour

// shortPeriod is a period of part days out of a full period of whole days,
// cut short at its end (as a cancellation cuts one).
func shortPeriod(part, whole int) Period {
	start := time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC)
	p := Period{Start: start, End: start.Add(time.Duration(whole) * day), FullStart: start}
	if part != whole {
		p.FullEnd, p.End = p.End, start.Add(time.Duration(part)*day)
	}
	return p
}

func TestIncludedFor(t *testing.T) {
	start := time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC)
	// A calendar-anchored first period from 21 June: 10 of 30 days.
	partial := Period{Start: start.Add(20 * day), End: start.Add(30 * day), FullStart: start, Partial: true}
	// A segment of a period split by a plan change on 16 June, the
	// period being itself the partial one above (21 June – 1 July).
	seg := Period{Start: start.Add(20 * day), End: start.Add(25 * day), FullStart: start, FullEnd: start.Add(30 * day), Partial: true}
	tests := []struct {
		name     string
		included string
		period   Period
		prorate  bool
		want     string
	}{
		{"full period", "1000", shortPeriod(30, 30), true, "1000"},
		{"not prorated by default", "1000", shortPeriod(10, 30), false, "1000"},
		{"a third, rounded down", "1000", shortPeriod(10, 30), true, "333"},
		{"two thirds, rounded up", "1000", shortPeriod(20, 30), true, "667"},
		{"half of an odd number, tie to even (down)", "5", shortPeriod(15, 30), true, "2"},
		{"half of an odd number, tie to even (up)", "7", shortPeriod(15, 30), true, "4"},
		{"one decimal kept", "1.5", shortPeriod(10, 30), true, "0.5"},
		{"trailing zeros are not decimals", "1000.00", shortPeriod(10, 30), true, "333"},
		{"exponent form", "1e3", shortPeriod(10, 30), true, "333"},
		{"decimals kept exactly", "0.003", shortPeriod(15, 30), true, "0.002"},
		{"zero", "0", shortPeriod(10, 30), true, "0"},
		{"partial first period", "1000", partial, true, "333"},
		{"segment of a partial period", "1000", seg, true, "167"},
		{"a sixth of 3 is a half: tie to even", "3", Period{Start: start, End: start.Add(5 * day), FullStart: start, FullEnd: start.Add(30 * day)}, true, "0"},
		{"nothing left of a period", "1000", Period{Start: start, End: start, FullStart: start, FullEnd: start.Add(30 * day)}, true, "0"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			pc := PlanCharge{Key: "c", Meter: "m", Included: IncludedQuantity(decimal.RequireFromString(tc.included))}
			got := pc.IncludedFor(tc.period, tc.prorate)
			if got.Unlimited || got.Quantity.String() != tc.want {
				t.Errorf("IncludedFor(%s of %s, %v) = %s, want %s", tc.period.Duration(), tc.period.FullDuration(), tc.prorate, got, tc.want)
			}
			if ch := pc.ChargeFor(tc.period, tc.prorate); ch.Included.Unlimited || !ch.Included.Quantity.Equal(got.Quantity) {
				t.Errorf("ChargeFor included %s, IncludedFor %s", ch.Included, got)
			}
		})
	}
	unlimited := PlanCharge{Key: "c", Meter: "m", Included: IncludedUnlimited()}
	if got := unlimited.IncludedFor(shortPeriod(10, 30), true); !got.Unlimited {
		t.Errorf("unlimited prorated = %s, want unlimited", got)
	}
}

// prorating is the worked example plan with prorateIncluded.
func prorating() Plan {
	p := mailProPlan()
	p.ProrateIncluded = true
	return p
}

func TestBuildInvoiceProratesIncluded(t *testing.T) {
	sub := exampleSub()
	full, err := sub.CurrentPeriod(sub.Start)
	if err != nil {
		t.Fatal(err)
	}
	cut := full
	cut.FullEnd, cut.End = full.End, full.Start.Add(10*day) // 10 of 30 days
	tests := []struct {
		name             string
		plan             Plan
		period           Period
		usage            string
		included, billed string
		total            string
	}{
		// 1,500 e-mails: 1,000 included leave 500 (one package, 5.00);
		// 333 included leave 1,167 (two packages, 10.00).
		{"full allowance by default", mailProPlan(), cut, "1500", "1000", "500", "8.33"},
		{"prorated allowance", prorating(), cut, "1500", "333", "1167", "13.33"},
		{"a full period is not prorated", prorating(), full, "1500", "1000", "500", "15.00"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			inv, err := BuildInvoice(sub, tc.plan, tc.period, map[string]decimal.Decimal{"emails": dec(tc.usage)}, nil)
			if err != nil {
				t.Fatal(err)
			}
			l := inv.Lines[1]
			if l.Included.String() != tc.included || l.Billable.String() != tc.billed || inv.Total.StringFixed(2) != tc.total {
				t.Errorf("usage line included %s billable %s, total %s; want %s, %s, %s", l.Included, l.Billable, inv.Total.StringFixed(2), tc.included, tc.billed, tc.total)
			}
		})
	}
}

func TestBuildSegmentedInvoiceProratesIncludedPerSegment(t *testing.T) {
	sub := exampleSub()
	period, err := sub.CurrentPeriod(sub.Start)
	if err != nil {
		t.Fatal(err)
	}
	change := period.Start.Add(20 * day) // 20 and 10 of 30 days
	sub.Phases = []PlanPhase{{PlanID: "p2", PlanKey: "mail-team", PlanVersion: 1, From: change}}
	team := prorating()
	team.ID, team.Key, team.BaseFee = "p2", "mail-team", dec("40")
	team.Charges[0].Included = IncludedQuantity(dec("5000"))
	segs := sub.Segments(period)
	if len(segs) != 2 {
		t.Fatalf("%d segments", len(segs))
	}
	in := []SegmentUsage{
		{Plan: prorating(), Period: segs[0].Period, Usage: map[string]decimal.Decimal{"emails": dec("1000")}},
		{Plan: team, Period: segs[1].Period, Usage: map[string]decimal.Decimal{"emails": dec("2000")}},
	}
	inv, err := BuildSegmentedInvoice(sub, period, in, nil)
	if err != nil {
		t.Fatal(err)
	}
	// mail-pro: 667 included, 333 billable (one package); mail-team: 1,667
	// included, 333 billable (one package).
	want := map[string][2]string{"mail-pro": {"667", "333"}, "mail-team": {"1667", "333"}}
	for _, l := range inv.Lines {
		if l.Kind != LineUsage {
			continue
		}
		if w := want[l.PlanKey]; l.Included.String() != w[0] || l.Billable.String() != w[1] {
			t.Errorf("%s: included %s billable %s, want %s, %s", l.PlanKey, l.Included, l.Billable, w[0], w[1])
		}
	}
}

func TestViewProratesIncluded(t *testing.T) {
	sub := exampleSub()
	sub.BillingAnchor = AnchorCalendar // 20 June – 1 July, 10:00: 11 of 30 days
	now := time.Date(2026, 6, 25, 10, 0, 0, 0, time.UTC)
	period, err := sub.CurrentPeriod(now)
	if err != nil {
		t.Fatal(err)
	}
	if !period.Partial {
		t.Fatalf("period %+v is not partial", period)
	}
	usage := map[string]decimal.Decimal{"emails": dec("200")}
	v, err := View(sub, prorating(), period, now, usage)
	if err != nil {
		t.Fatal(err)
	}
	inv, err := BuildInvoice(sub, prorating(), period, usage, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := prorating().Charges[0].IncludedFor(period, true)
	c := v.Charges[0]
	// 1,000 × 11 / 30 = 366.67 → 367.
	if want.Quantity.String() != "367" || !c.Included.Quantity.Equal(want.Quantity) || c.Remaining == nil || c.Remaining.String() != "167" {
		t.Errorf("view included %s remaining %v, want 367 and 167", c.Included, c.Remaining)
	}
	if !inv.Lines[1].Included.Equal(dec("200")) || !v.Total.Equal(inv.Total) {
		t.Errorf("invoice %s included, total %s; view total %s", inv.Lines[1].Included, inv.Total, v.Total)
	}
	// The projection (200 × 11/5 = 440) is priced with the same
	// allowance: 73 above 367, one package. The full 1,000 would leave
	// nothing to pay.
	if c.ProjectedUsage.String() != "440" || c.ProjectedAmount.StringFixed(2) != "5.00" {
		t.Errorf("projected %s costs %s, want 440 for 5.00", c.ProjectedUsage, c.ProjectedAmount)
	}
}

func TestCorrectionUsesProratedIncluded(t *testing.T) {
	sub, plan := exampleSub(), prorating()
	period, err := sub.CurrentPeriod(sub.Start)
	if err != nil {
		t.Fatal(err)
	}
	period.FullEnd, period.End = period.End, period.Start.Add(10*day)
	// 300 e-mails are within the 333 included: nothing billed.
	closed, err := BuildInvoice(sub, plan, period, map[string]decimal.Decimal{"emails": dec("300")}, nil)
	if err != nil {
		t.Fatal(err)
	}
	closed.Status = InvoiceFinalized
	q, a := Billed(closed, nil, nil, "emails", "", 0)
	ch := plan.Charges[0].ChargeFor(period, plan.ProrateIncluded)
	// 100 late e-mails: 400 is 67 above 333, one package. With the full
	// allowance of 1,000 nothing would be owed.
	adj, ok, err := NewCorrection(closed, ch, dec("400"), q, a)
	if err != nil || !ok || adj.Amount.StringFixed(2) != "5.00" || adj.Quantity.String() != "100" {
		t.Errorf("correction %+v, %v, %v; want 5.00 for 100", adj, ok, err)
	}
	// Back to what was billed: nothing.
	if _, ok, _ := NewCorrection(closed, ch, dec("300"), q, a); ok {
		t.Error("a correction to the billed usage")
	}
}

func TestPlanProrateIncludedJSON(t *testing.T) {
	body := `{"key":"p","name":"P","currency":"EUR","cadence":"P1M","prorateIncluded":true,"charges":[]}`
	var in PlanInput
	if err := json.Unmarshal([]byte(body), &in); err != nil {
		t.Fatal(err)
	}
	if !in.ProrateIncluded {
		t.Fatal("prorateIncluded not read")
	}
	p := in.Plan("id", 1, time.Unix(0, 0), time.Unix(0, 0))
	b, err := json.Marshal(p)
	if err != nil || !strings.Contains(string(b), `"prorateIncluded":true`) {
		t.Errorf("plan JSON %s, %v: want prorateIncluded true", b, err)
	}
	var back Plan
	if err := json.Unmarshal(b, &back); err != nil || !back.ProrateIncluded {
		t.Errorf("round trip: %+v, %v", back.ProrateIncluded, err)
	}
	// false (the default) is left out, so that plans stored before the
	// setting existed read and write the same.
	p.ProrateIncluded = false
	if b, _ := json.Marshal(p); strings.Contains(string(b), "prorateIncluded") {
		t.Errorf("plan JSON %s: want no prorateIncluded when false", b)
	}
	if err := json.Unmarshal([]byte(strings.Replace(body, "true", `"yes"`, 1)), &in); err == nil || !strings.Contains(err.Error(), "prorateIncluded") {
		t.Errorf(`prorateIncluded "yes": %v, want an error naming the field`, err)
	}
}
