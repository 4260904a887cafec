package billing

import (
	"fmt"
	"time"

	"github.com/shopspring/decimal"
)

// UsageView is what a customer sees of one subscription's current period:
// per charge the usage so far, what is left of the included quantity, the
// overage and its price so far, and a projection to the period's end.
//
// Money (BaseFee, Total, ProjectedTotal and each charge's Amount and
// ProjectedAmount) is rounded once to the currency's minor unit, half-even,
// like an invoice line (see RoundMoney); Digits is that minor unit, for
// showing every amount with exactly that many decimals (StringFixed).
type UsageView struct {
	Subscription string
	PlanKey      string
	PlanVersion  int
	Currency     string
	Digits       int32
	Period       Period
	// AsOf is the instant the view describes (the server clock).
	AsOf time.Time
	// Elapsed is the share of the period that has passed at AsOf, between 0
	// and 1, rounded half-even to 6 decimals (for display; projections use
	// the exact durations).
	Elapsed decimal.Decimal
	// BaseFee is the plan's base fee for the period: prorated by time for a
	// partial (calendar-anchored first) period, then rounded.
	BaseFee decimal.Decimal
	Charges []ChargeView
	// Total is BaseFee plus every charge's Amount: the invoice so far.
	Total decimal.Decimal
	// ProjectedTotal is BaseFee plus every charge's ProjectedAmount.
	ProjectedTotal decimal.Decimal
}

// ChargeView is one charge of a UsageView.
type ChargeView struct {
	Key           string
	Meter         string
	FilterGroupBy map[string]string
	// Usage is the meter's value in the period so far.
	Usage decimal.Decimal
	// Included is the charge's included quantity for the period:
	// prorated for a short period on a plan with ProrateIncluded (see
	// PlanCharge.IncludedFor), as the invoice rates it.
	Included Included
	// Remaining is what is left of the included quantity, never negative;
	// nil when the included quantity is unlimited.
	Remaining *decimal.Decimal
	// Overage is the billable usage: Usage beyond the included quantity.
	Overage decimal.Decimal
	// Amount is the overage's price so far, rounded.
	Amount decimal.Decimal
	// Line is the rated charge Amount comes from (packages, tiers, …).
	Line Line
	// ProjectedUsage is Usage extrapolated linearly to the period's end
	// (see View); ProjectedAmount is its price, rated like Usage and
	// rounded.
	ProjectedUsage  decimal.Decimal
	ProjectedAmount decimal.Decimal
}

// View builds the usage view of sub on plan (the plan version sub is on) for
// period, the period containing now, from usage: the meter value of each
// charge in the period so far, keyed by charge key (a missing key is zero
// usage).
//
// Each charge is rated with Rate, with its included quantity for period
// (PlanCharge.ChargeFor), and its amount rounded with RoundMoney, as an
// invoice line would be. The projection is a linear extrapolation of the
// usage by the elapsed share of the period:
//
//	projected = usage × (End − Start) / (now − Start)
//
// rounded half-even to the decimal places of usage itself (a count stays a
// whole number), and rated with the same pricing. Before any time has
// elapsed (now at or before the period start) the projection is the usage
// itself. The projection assumes the rest of the period looks like the part
// so far; early in a period it is only a rough guide.
func View(sub Subscription, plan Plan, period Period, now time.Time, usage map[string]decimal.Decimal) (UsageView, error) {
	digits, err := MinorUnits(plan.Currency)
	if err != nil {
		return UsageView{}, err
	}
	if !period.End.After(period.Start) {
		return UsageView{}, fmt.Errorf("period: end %s is not after start %s", period.End.Format(time.RFC3339), period.Start.Format(time.RFC3339))
	}
	length := period.Duration()
	elapsed := now.Sub(period.Start)
	elapsed = min(max(elapsed, 0), length)
	v := UsageView{
		Subscription: sub.ID,
		PlanKey:      plan.Key,
		PlanVersion:  plan.Version,
		Currency:     plan.Currency,
		Digits:       digits,
		Period:       period,
		AsOf:         now,
		Elapsed:      decimal.NewFromInt(int64(elapsed)).DivRound(decimal.NewFromInt(int64(length)), 6),
	}
	baseFee := plan.BaseFee
	if period.Prorated() {
		baseFee = Prorate(baseFee, period.Duration(), period.FullDuration())
	}
	if v.BaseFee, err = RoundMoney(baseFee, plan.Currency); err != nil {
		return UsageView{}, err
	}
	v.Total, v.ProjectedTotal = v.BaseFee, v.BaseFee
	v.Charges = make([]ChargeView, 0, len(plan.Charges))
	for i, pc := range plan.Charges {
		u := usage[pc.Key]
		ch := pc.ChargeFor(period, plan.ProrateIncluded)
		line, err := Rate(ch, u)
		if err != nil {
			return UsageView{}, fmt.Errorf("charges[%d] (%s): %w", i, pc.Key, err)
		}
		amount, err := line.RoundedAmount(plan.Currency)
		if err != nil {
			return UsageView{}, err
		}
		projected := u
		if elapsed > 0 {
			scale := max(-u.Exponent(), 0)
			projected = u.Mul(decimal.NewFromInt(int64(length))).DivRound(decimal.NewFromInt(int64(elapsed)), scale)
		}
		pline, err := Rate(ch, projected)
		if err != nil {
			return UsageView{}, fmt.Errorf("charges[%d] (%s): projection: %w", i, pc.Key, err)
		}
		pamount, err := pline.RoundedAmount(plan.Currency)
		if err != nil {
			return UsageView{}, err
		}
		cv := ChargeView{
			Key: pc.Key, Meter: pc.Meter, FilterGroupBy: pc.FilterGroupBy,
			Usage: u, Included: ch.Included, Overage: line.Billable,
			Amount: amount, Line: line, ProjectedUsage: projected, ProjectedAmount: pamount,
		}
		if !ch.Included.Unlimited {
			r := ch.Included.Quantity.Sub(line.Included)
			cv.Remaining = &r
		}
		v.Charges = append(v.Charges, cv)
		v.Total = v.Total.Add(amount)
		v.ProjectedTotal = v.ProjectedTotal.Add(pamount)
	}
	return v, nil
}
