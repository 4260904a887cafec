package billing

import (
	"errors"
	"fmt"
	"strings"

	"github.com/shopspring/decimal"

	"github.com/tally-metering/tally/internal/bounds"
)

// Model is a pricing model.
type Model string

// The pricing models.
const (
	// ModelPerUnit prices every billable unit at UnitPrice.
	ModelPerUnit Model = "per_unit"
	// ModelPackage prices every started package of PackageSize billable
	// units at UnitPrice: partial packages round up, so 0.5 units with a
	// package size of 1000 is one package.
	ModelPackage Model = "package"
	// ModelGraduated prices each billable unit at the price of the tier it
	// falls in, like income tax brackets, plus the flat price of every tier
	// the billable quantity reaches.
	ModelGraduated Model = "graduated"
	// ModelVolume prices all billable units at the unit price of the one
	// tier the whole billable quantity falls in, plus that tier's flat
	// price.
	ModelVolume Model = "volume"
)

// Models lists every pricing model.
var Models = []Model{ModelPerUnit, ModelPackage, ModelGraduated, ModelVolume}

// Tier is one tier of graduated or volume pricing. Tiers are listed in
// ascending order; a tier covers the quantities above the previous tier's
// UpTo (or above 0 for the first tier) up to and including its own UpTo.
type Tier struct {
	// UpTo is the tier's inclusive upper bound; nil means unbounded, which
	// only the last tier is, and must be.
	UpTo *decimal.Decimal `json:"upTo"`
	// UnitPrice is the price of each unit in the tier.
	UnitPrice decimal.Decimal `json:"unitPrice"`
	// FlatPrice is charged once when the billable quantity reaches the tier
	// (graduated: any quantity in the tier; volume: the tier that applies).
	// Zero when not used.
	FlatPrice decimal.Decimal `json:"flatPrice"`
}

// Pricing says how a charge's billable quantity is priced.
type Pricing struct {
	Model Model `json:"model"`
	// UnitPrice is the price per unit (per_unit) or per package (package);
	// it must be zero for graduated and volume, which price per tier.
	UnitPrice decimal.Decimal `json:"unitPrice"`
	// PackageSize is the number of units in a package (package only).
	PackageSize decimal.Decimal `json:"packageSize"`
	// Tiers are the tiers of graduated and volume pricing.
	Tiers []Tier `json:"tiers,omitempty"`
}

// Validate checks p and joins every problem found; each names its field
// (model, unitPrice, packageSize, tiers, tiers[i].upTo, …).
func (p Pricing) Validate() error {
	var errs []error
	// Values out of range are reported as such, never printed.
	unitErr := checkDecimal("unitPrice", p.UnitPrice)
	sizeErr := checkDecimal("packageSize", p.PackageSize)
	tiered := false
	switch p.Model {
	case ModelPerUnit, ModelPackage:
		if unitErr != nil {
			errs = append(errs, unitErr)
		} else if p.UnitPrice.IsNegative() {
			errs = append(errs, fmt.Errorf("unitPrice: %s is negative", p.UnitPrice))
		}
		if len(p.Tiers) > 0 {
			errs = append(errs, fmt.Errorf("tiers: not used by the %s model", p.Model))
		}
	case ModelGraduated, ModelVolume:
		tiered = true
		if !p.UnitPrice.IsZero() {
			errs = append(errs, fmt.Errorf("unitPrice: not used by the %s model; set each tier's unitPrice", p.Model))
		}
	default:
		errs = append(errs, fmt.Errorf("model: %q is not one of %s", string(p.Model), joinModels()))
	}
	switch {
	case p.Model == ModelPackage && sizeErr != nil:
		errs = append(errs, sizeErr)
	case p.Model == ModelPackage && !p.PackageSize.IsPositive():
		errs = append(errs, fmt.Errorf("packageSize: must be positive, got %s", p.PackageSize))
	case p.Model != ModelPackage && !p.PackageSize.IsZero():
		errs = append(errs, fmt.Errorf("packageSize: not used by the %s model", p.Model))
	}
	if tiered {
		errs = append(errs, validateTiers(p.Tiers)...)
	}
	return errors.Join(errs...)
}

func validateTiers(tiers []Tier) []error {
	if len(tiers) == 0 {
		return []error{errors.New("tiers: at least one tier is required")}
	}
	var errs []error
	prev := decimal.Zero
	for i, t := range tiers {
		// Values out of range are reported as such, never compared or
		// printed (either would expand them).
		var rangeErrs []error
		if t.UpTo != nil {
			rangeErrs = append(rangeErrs, checkDecimal(fmt.Sprintf("tiers[%d].upTo", i), *t.UpTo))
		}
		rangeErrs = append(rangeErrs, checkDecimal(fmt.Sprintf("tiers[%d].unitPrice", i), t.UnitPrice),
			checkDecimal(fmt.Sprintf("tiers[%d].flatPrice", i), t.FlatPrice))
		if err := errors.Join(rangeErrs...); err != nil {
			errs = append(errs, unjoin(err)...)
			continue
		}
		last := i == len(tiers)-1
		switch {
		case t.UpTo == nil && !last:
			errs = append(errs, fmt.Errorf("tiers[%d].upTo: only the last tier can be unbounded", i))
		case t.UpTo != nil && last:
			errs = append(errs, fmt.Errorf("tiers[%d].upTo: the last tier must be unbounded (upTo null), got %s", i, t.UpTo))
		case t.UpTo != nil && !t.UpTo.GreaterThan(prev):
			if i == 0 {
				errs = append(errs, fmt.Errorf("tiers[%d].upTo: must be positive, got %s", i, t.UpTo))
			} else {
				errs = append(errs, fmt.Errorf("tiers[%d].upTo: %s is not above the previous tier's upTo %s; tiers must ascend", i, t.UpTo, prev))
			}
		}
		if t.UpTo != nil && t.UpTo.GreaterThan(prev) {
			prev = *t.UpTo
		}
		if t.UnitPrice.IsNegative() {
			errs = append(errs, fmt.Errorf("tiers[%d].unitPrice: %s is negative", i, t.UnitPrice))
		}
		if t.FlatPrice.IsNegative() {
			errs = append(errs, fmt.Errorf("tiers[%d].flatPrice: %s is negative", i, t.FlatPrice))
		}
	}
	return errs
}

func joinModels() string {
	s := make([]string, len(Models))
	for i, m := range Models {
		s[i] = string(m)
	}
	return strings.Join(s, ", ")
}

// Included is a charge's included quantity per period: a quantity, or
// unlimited. The zero value includes nothing.
type Included struct {
	Unlimited bool
	// Quantity is the included quantity; ignored when Unlimited.
	Quantity decimal.Decimal
}

// IncludedQuantity returns an Included of q units.
func IncludedQuantity(q decimal.Decimal) Included { return Included{Quantity: q} }

// IncludedUnlimited returns an unlimited Included.
func IncludedUnlimited() Included { return Included{Unlimited: true} }

// ParseIncluded reads "unlimited" or a decimal quantity (see
// bounds.ParseDecimal for the range accepted).
func ParseIncluded(s string) (Included, error) {
	if s == "unlimited" {
		return IncludedUnlimited(), nil
	}
	q, err := bounds.ParseDecimal(s)
	if errors.Is(err, bounds.ErrNotDecimal) {
		return Included{}, fmt.Errorf("included: %s is neither a decimal number nor \"unlimited\"", bounds.Quote(s))
	}
	if err != nil {
		return Included{}, fmt.Errorf("included: %w", err)
	}
	return IncludedQuantity(q), nil
}

// String returns "unlimited" or the quantity.
func (in Included) String() string {
	if in.Unlimited {
		return "unlimited"
	}
	return in.Quantity.String()
}

// Charge prices one meter's usage per period.
type Charge struct {
	// Key names the charge within its plan.
	Key string
	// Meter is the slug of the meter whose usage is charged.
	Meter string
	// Included is consumed first in each period; only usage beyond it is
	// priced.
	Included Included
	Pricing  Pricing
}

// Validate checks ch and joins every problem found; each names its field
// (key, meter, included, pricing.…).
func (ch Charge) Validate() error {
	var errs []error
	if ch.Key == "" {
		errs = append(errs, errors.New("key: is required"))
	}
	if ch.Meter == "" {
		errs = append(errs, errors.New("meter: is required"))
	}
	if err := checkDecimal("included", ch.Included.Quantity); err != nil && !ch.Included.Unlimited {
		errs = append(errs, err)
	} else if !ch.Included.Unlimited && ch.Included.Quantity.IsNegative() {
		errs = append(errs, fmt.Errorf("included: %s is negative", ch.Included.Quantity))
	}
	if err := ch.Pricing.Validate(); err != nil {
		for _, e := range unjoin(err) {
			errs = append(errs, fmt.Errorf("pricing.%w", e))
		}
	}
	return errors.Join(errs...)
}

// unjoin returns the errors joined in err, or err alone.
func unjoin(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}

// TierLine is the part of a line priced in one tier.
type TierLine struct {
	// Tier is the tier's index in Pricing.Tiers.
	Tier int `json:"tier"`
	// From (exclusive) and To (inclusive, nil for unbounded) are the tier's
	// bounds.
	From decimal.Decimal  `json:"from"`
	To   *decimal.Decimal `json:"to"`
	// Quantity is the billable quantity priced in this tier.
	Quantity  decimal.Decimal `json:"quantity"`
	UnitPrice decimal.Decimal `json:"unitPrice"`
	Flat      decimal.Decimal `json:"flat"`
	// Amount is Quantity × UnitPrice + Flat, exact.
	Amount decimal.Decimal `json:"amount"`
}

// Line is a rated charge: one invoice line.
type Line struct {
	Key   string `json:"key"`
	Meter string `json:"meter"`
	Model Model  `json:"model"`
	// Quantity is the period's usage.
	Quantity decimal.Decimal `json:"quantity"`
	// Included is the part of Quantity covered by the included quantity.
	Included decimal.Decimal `json:"included"`
	// Billable is Quantity - Included, the quantity priced.
	Billable decimal.Decimal `json:"billable"`
	// Packages is the number of started packages (package model only).
	Packages decimal.Decimal `json:"packages"`
	// Tiers breaks Amount down by tier (graduated and volume only): one entry
	// per tier holding billable quantity, none when Billable is zero.
	Tiers []TierLine `json:"tiers,omitempty"`
	// UnitPrice is the price per unit (per_unit), per package (package) or
	// per unit of the applied tier (volume with a billable quantity); nil
	// for graduated, where the price varies by tier.
	UnitPrice *decimal.Decimal `json:"unitPrice"`
	// Amount is the line's exact, unrounded price. Round it once, with
	// RoundedAmount.
	Amount decimal.Decimal `json:"amount"`
}

// RoundedAmount is the line's Amount rounded to currency's minor unit,
// half-even (see RoundMoney).
func (l Line) RoundedAmount(currency string) (decimal.Decimal, error) {
	return RoundMoney(l.Amount, currency)
}

// Rate prices usage, a period's quantity of ch's meter, into a Line.
//
// The included quantity is consumed first (all of it when unlimited); only
// the rest, Billable, is priced. Tiers apply to the billable quantity: tier
// bounds count billable units, starting at 0 after the included quantity, so
// with 1,000 included and a first tier up to 500, usage 1,200 puts 200 units
// in the first tier. A zero billable quantity costs nothing in every model;
// no flat price applies (a flat price is charged when usage reaches its
// tier). Graduated pricing charges each tier's units at its price plus the
// flat price of each tier holding units; volume pricing charges every
// billable unit at the price of the tier whose range holds the billable
// quantity (upper bounds are inclusive: exactly 1,000 falls in the tier up to
// 1,000) plus that tier's flat price.
//
// A negative usage (a SUM meter's values can be negative) is priced like
// zero: nothing included, nothing billable; Quantity still shows it.
//
// Amount is exact; nothing is rounded here. Rate fails with ch.Validate's
// error (one field error per line) when ch is invalid.
func Rate(ch Charge, usage decimal.Decimal) (Line, error) {
	if err := ch.Validate(); err != nil {
		return Line{}, err
	}
	used := decimal.Max(usage, decimal.Zero)
	included := used
	if !ch.Included.Unlimited {
		included = decimal.Min(used, ch.Included.Quantity)
	}
	billable := used.Sub(included)
	l := Line{
		Key:      ch.Key,
		Meter:    ch.Meter,
		Model:    ch.Pricing.Model,
		Quantity: usage,
		Included: included,
		Billable: billable,
	}
	p := ch.Pricing
	switch p.Model {
	case ModelPerUnit:
		l.UnitPrice = ptr(p.UnitPrice)
		l.Amount = billable.Mul(p.UnitPrice)
	case ModelPackage:
		q, r := billable.QuoRem(p.PackageSize, 0)
		if r.IsPositive() {
			q = q.Add(decimal.NewFromInt(1))
		}
		l.Packages = q
		l.UnitPrice = ptr(p.UnitPrice)
		l.Amount = q.Mul(p.UnitPrice)
	case ModelGraduated:
		from := decimal.Zero
		for i, t := range p.Tiers {
			if !billable.GreaterThan(from) {
				break
			}
			upper := billable
			if t.UpTo != nil {
				upper = decimal.Min(billable, *t.UpTo)
			}
			tl := tierLine(i, from, t, upper.Sub(from))
			l.Tiers = append(l.Tiers, tl)
			l.Amount = l.Amount.Add(tl.Amount)
			if t.UpTo != nil {
				from = *t.UpTo
			}
		}
	case ModelVolume:
		if billable.IsZero() {
			break
		}
		from := decimal.Zero
		for i, t := range p.Tiers {
			if t.UpTo == nil || billable.LessThanOrEqual(*t.UpTo) {
				tl := tierLine(i, from, t, billable)
				l.Tiers = []TierLine{tl}
				l.UnitPrice = ptr(t.UnitPrice)
				l.Amount = tl.Amount
				break
			}
			from = *t.UpTo
		}
	}
	return l, nil
}

func tierLine(i int, from decimal.Decimal, t Tier, qty decimal.Decimal) TierLine {
	return TierLine{
		Tier:      i,
		From:      from,
		To:        t.UpTo,
		Quantity:  qty,
		UnitPrice: t.UnitPrice,
		Flat:      t.FlatPrice,
		Amount:    qty.Mul(t.UnitPrice).Add(t.FlatPrice),
	}
}

func ptr[T any](v T) *T { return &v }
