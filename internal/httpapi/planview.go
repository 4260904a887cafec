package httpapi

import (
	"strings"

	"github.com/shopspring/decimal"

	"github.com/tally-metering/tally/internal/billing"
)

// planView is a plan as the API answers it: money (the base fee, unit,
// package and tier prices) in the plan currency's minor units ("10.00",
// not "10"), and only the pricing fields of the charge's model. The store
// keeps billing.Plan's own JSON; this is the answer's shape only.
type planView struct {
	billing.Plan
	BaseFee string       `json:"baseFee"`
	Charges []chargeView `json:"charges"`
}

type chargeView struct {
	billing.PlanCharge
	Pricing pricingView `json:"pricing"`
}

// pricingView leaves out unitPrice and packageSize where the model does
// not use them (graduated and volume price per tier; per_unit has no
// packages).
type pricingView struct {
	Model       billing.Model `json:"model"`
	UnitPrice   string        `json:"unitPrice,omitempty"`
	PackageSize string        `json:"packageSize,omitempty"`
	Tiers       []tierView    `json:"tiers,omitempty"`
}

type tierView struct {
	UpTo      *decimal.Decimal `json:"upTo"`
	UnitPrice string           `json:"unitPrice"`
	FlatPrice string           `json:"flatPrice"`
}

func viewPlans(ps []billing.Plan) []planView {
	out := make([]planView, len(ps))
	for i, p := range ps {
		out[i] = viewPlan(p)
	}
	return out
}

func viewPlan(p billing.Plan) planView {
	digits, err := billing.MinorUnits(p.Currency)
	if err != nil {
		digits = 0 // a stored plan's currency is valid; show amounts as they are
	}
	money := func(d decimal.Decimal) string { return moneyString(d, digits) }
	v := planView{Plan: p, BaseFee: money(p.BaseFee), Charges: make([]chargeView, len(p.Charges))}
	for i, ch := range p.Charges {
		pr := pricingView{Model: ch.Pricing.Model}
		switch ch.Pricing.Model {
		case billing.ModelPerUnit:
			pr.UnitPrice = money(ch.Pricing.UnitPrice)
		case billing.ModelPackage:
			pr.UnitPrice = money(ch.Pricing.UnitPrice)
			pr.PackageSize = ch.Pricing.PackageSize.String()
		default:
			if !ch.Pricing.UnitPrice.IsZero() {
				pr.UnitPrice = money(ch.Pricing.UnitPrice)
			}
			if !ch.Pricing.PackageSize.IsZero() {
				pr.PackageSize = ch.Pricing.PackageSize.String()
			}
		}
		for _, t := range ch.Pricing.Tiers {
			pr.Tiers = append(pr.Tiers, tierView{UpTo: t.UpTo, UnitPrice: money(t.UnitPrice), FlatPrice: money(t.FlatPrice)})
		}
		v.Charges[i] = chargeView{PlanCharge: ch, Pricing: pr}
	}
	return v
}

// moneyString writes d with at least the currency's minor digits ("10.00"
// for EUR), and more only where the price has them (a unit price of
// 0.0005 stays 0.0005): a price is never rounded for display.
func moneyString(d decimal.Decimal, digits int32) string {
	s := d.String() // without trailing zeros
	if i := strings.IndexByte(s, '.'); i >= 0 && int32(len(s)-i-1) > digits {
		return s
	}
	return d.StringFixed(digits)
}
