package billing

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math/big"
	"slices"
	"time"

	"github.com/shopspring/decimal"
)

// PlanStatus is the life-cycle state of one plan version.
type PlanStatus string

// The plan statuses.
const (
	// PlanDraft is a version still being edited; subscriptions can't use it.
	PlanDraft PlanStatus = "draft"
	// PlanPublished is an immutable version; changing the plan makes a new
	// draft version.
	PlanPublished PlanStatus = "published"
)

// Plan is one version of a price list: a base fee per billing period and
// charges per meter. Versions of a plan share its ID and Key and count up
// from 1; only the latest version can be a draft.
type Plan struct {
	ID          string          `json:"id"`
	Key         string          `json:"key"`
	Version     int             `json:"version"`
	Name        string          `json:"name"`
	Description string          `json:"description,omitempty"`
	Currency    string          `json:"currency"`
	Cadence     Cadence         `json:"cadence"`
	BaseFee     decimal.Decimal `json:"baseFee"`
	Charges     []PlanCharge    `json:"charges"`
	// ProrateIncluded, when set, prorates every charge's included
	// quantity for a period shorter than a full one, by the share its
	// base fee is prorated by (see PlanCharge.IncludedFor). It belongs to
	// the version, so an invoice and every later correction of it rate
	// the period with the same allowance.
	ProrateIncluded bool       `json:"prorateIncluded,omitempty"`
	Status          PlanStatus `json:"status"`
	CreatedAt       time.Time  `json:"createdAt"`
	UpdatedAt       time.Time  `json:"updatedAt"`
	PublishedAt     *time.Time `json:"publishedAt,omitempty"`
}

// Published reports whether p is an immutable, published version.
func (p Plan) Published() bool { return p.Status == PlanPublished }

// PlanCharge is one charge of a plan: a meter's usage (optionally only the
// groups matching FilterGroupBy), the quantity included per period, how
// the rest is priced, and the marketplace dimensions it is reported as.
type PlanCharge struct {
	Key           string            `json:"key"`
	Meter         string            `json:"meter"`
	FilterGroupBy map[string]string `json:"filterGroupBy,omitempty"`
	Included      Included          `json:"included"`
	Pricing       Pricing           `json:"pricing"`
	Reporting     []Reporting       `json:"reporting,omitempty"`
}

// Charge is the part of pc that rating needs, with the included quantity
// of a full period. Rate a period's usage with ChargeFor.
func (pc PlanCharge) Charge() Charge {
	return Charge{Key: pc.Key, Meter: pc.Meter, Included: pc.Included, Pricing: pc.Pricing}
}

// ChargeFor is Charge with the included quantity of period p (see
// IncludedFor): what rates the usage of p wherever it is rated (invoices,
// the usage view, corrections, marketplace reports).
func (pc PlanCharge) ChargeFor(p Period, prorate bool) Charge {
	ch := pc.Charge()
	ch.Included = pc.IncludedFor(p, prorate)
	return ch
}

// IncludedFor is pc's included quantity for period p (a billing period or
// one plan segment of one) on a plan whose ProrateIncluded is prorate.
//
// It is pc.Included unless prorate is set and p is prorated (a partial
// first period, a period cut short by a cancellation, a part of a period
// split by a plan change: p.Prorated()), in which case it is
//
//	included × p.Duration() / p.FullDuration()
//
// the share the base fee is prorated by, computed exactly and rounded once,
// half-even, to the included quantity's own decimal places (those it shows:
// 1000 and 1000.00 are whole units, 1.5 has one decimal): 1,000 included
// become 333 for 10 days of a 30-day period and 667 for 20 days, and 1.5
// becomes 0.5 for a third of a period.
// Half-even is the rule money follows (RoundMoney), so neither the vendor
// nor the customer gains from rounding on average, and the allowance stays
// in the units the price list counts in. Unlimited stays unlimited.
func (pc PlanCharge) IncludedFor(p Period, prorate bool) Included {
	in := pc.Included
	if !prorate || in.Unlimited || !p.Prorated() || p.FullDuration() <= 0 {
		return in
	}
	part := max(p.Duration(), 0)
	return IncludedQuantity(prorateHalfEven(in.Quantity, part, p.FullDuration()))
}

// prorateHalfEven is q × part / whole rounded half-even to q's decimal
// places once trailing zeros are dropped. q, part and whole are not
// negative and whole is positive.
func prorateHalfEven(q decimal.Decimal, part, whole time.Duration) decimal.Decimal {
	places := shownPlaces(q)
	// q × part × 10^places is a whole number: q has at most places
	// decimals.
	num := q.Mul(decimal.NewFromInt(int64(part))).Shift(places).BigInt()
	den := big.NewInt(int64(whole))
	quo, rem := new(big.Int).QuoRem(num, den, new(big.Int))
	switch c := new(big.Int).Lsh(rem, 1).Cmp(den); {
	case c > 0, c == 0 && quo.Bit(0) == 1:
		quo.Add(quo, big.NewInt(1))
	}
	return decimal.NewFromBigInt(quo, -places)
}

// shownPlaces is the number of decimal places of d without trailing
// zeros (0 for a whole number, however it was written).
func shownPlaces(d decimal.Decimal) int32 {
	c, e := d.Coefficient(), d.Exponent()
	if c.Sign() == 0 {
		return 0
	}
	ten, r := big.NewInt(10), new(big.Int)
	for e < 0 {
		q, m := new(big.Int).QuoRem(c, ten, r)
		if m.Sign() != 0 {
			break
		}
		c, e = q, e+1
	}
	return max(-e, 0)
}

// Reporting names the dimension a charge's billable quantity is reported
// as to one target (used by reporting, a later issue).
type Reporting struct {
	// Target names a configured reporting target (reporting.targets in
	// the config file).
	Target string `json:"target"`
	// Dimension is the target's name for the charge (an Azure dimension id,
	// an AWS dimension, a Stripe meter event name, …).
	Dimension string `json:"dimension"`
	// UnitSize is how many billable units make one reported unit (1 when
	// omitted).
	UnitSize decimal.Decimal `json:"unitSize"`
	// Tier, when set (1-based), reports only the part of the billable
	// quantity that falls in that tier of graduated pricing, so that each
	// tier of a waterfall can be its own marketplace dimension.
	Tier int `json:"tier,omitempty"`
}

const (
	maxCharges       = 100
	maxDimensionLen  = 256
	maxDescription   = 4096
	maxFilterGroupBy = 16
)

// PlanInput is what a vendor sends to create a plan or edit its draft.
type PlanInput struct {
	Key         string          `json:"key"`
	Name        string          `json:"name"`
	Description string          `json:"description"`
	Currency    string          `json:"currency"`
	Cadence     Cadence         `json:"cadence"`
	BaseFee     decimal.Decimal `json:"baseFee"`
	Charges     []PlanCharge    `json:"charges"`
	// ProrateIncluded: see Plan.ProrateIncluded (default false: every
	// period gets each charge's full included quantity).
	ProrateIncluded bool `json:"prorateIncluded"`
}

// Validate checks in and returns a *ValidationError joining every field
// error (charges[0].pricing.tiers[1].upTo: …), or nil. It does not check
// that the meters exist; the caller, who can see them, does.
func (in PlanInput) Validate() error {
	var errs []error
	errs = append(errs, validateKey("key", in.Key)...)
	errs = append(errs, validateName("name", in.Name, true)...)
	if len(in.Description) > maxDescription {
		errs = append(errs, fmt.Errorf("description: %d bytes, at most %d allowed", len(in.Description), maxDescription))
	}
	if in.Currency == "" {
		errs = append(errs, errors.New("currency: is required (an ISO 4217 code such as EUR)"))
	} else if _, err := MinorUnits(in.Currency); err != nil {
		errs = append(errs, err)
	}
	if in.Cadence == "" {
		errs = append(errs, fmt.Errorf("cadence: is required; use one of %s", joinCadences()))
	} else if err := in.Cadence.Validate(); err != nil {
		errs = append(errs, err)
	}
	if err := checkDecimal("baseFee", in.BaseFee); err != nil {
		errs = append(errs, err)
	} else if in.BaseFee.IsNegative() {
		errs = append(errs, fmt.Errorf("baseFee: %s is negative", in.BaseFee))
	}
	if len(in.Charges) > maxCharges {
		errs = append(errs, fmt.Errorf("charges: %d charges, at most %d allowed", len(in.Charges), maxCharges))
	}
	keys := map[string]int{}
	dims := map[[2]string]string{}
	for i, ch := range in.Charges {
		at := fmt.Sprintf("charges[%d].", i)
		var cerrs []error
		if ch.Key != "" {
			cerrs = append(cerrs, validateKey("key", ch.Key)...)
			if j, dup := keys[ch.Key]; dup {
				cerrs = append(cerrs, fmt.Errorf("key: %q is also the key of charges[%d]", ch.Key, j))
			} else {
				keys[ch.Key] = i
			}
		}
		if err := ch.Charge().Validate(); err != nil {
			cerrs = append(cerrs, unjoin(err)...)
		}
		if len(ch.FilterGroupBy) > maxFilterGroupBy {
			cerrs = append(cerrs, fmt.Errorf("filterGroupBy: %d entries, at most %d allowed", len(ch.FilterGroupBy), maxFilterGroupBy))
		}
		for _, k := range slices.Sorted(maps.Keys(ch.FilterGroupBy)) {
			if k == "" {
				cerrs = append(cerrs, errors.New("filterGroupBy: a key is empty"))
			} else if ch.FilterGroupBy[k] == "" {
				cerrs = append(cerrs, fmt.Errorf("filterGroupBy.%s: the value is empty", k))
			}
		}
		for j, rep := range ch.Reporting {
			rat := fmt.Sprintf("reporting[%d].", j)
			if rep.Target == "" || !keyRE.MatchString(rep.Target) {
				cerrs = append(cerrs, fmt.Errorf("%starget: %q is not the name of a reporting target (letters, digits, '.', '_', ':', '-')", rat, rep.Target))
			}
			switch {
			case rep.Dimension == "":
				cerrs = append(cerrs, fmt.Errorf("%sdimension: is required", rat))
			case len(rep.Dimension) > maxDimensionLen:
				cerrs = append(cerrs, fmt.Errorf("%sdimension: %d bytes, at most %d allowed", rat, len(rep.Dimension), maxDimensionLen))
			default:
				k := [2]string{rep.Target, rep.Dimension}
				if other, dup := dims[k]; dup {
					cerrs = append(cerrs, fmt.Errorf("%sdimension: %s dimension %q is already reported by %s", rat, rep.Target, rep.Dimension, other))
				} else {
					dims[k] = fmt.Sprintf("charges[%d].%s", i, rat[:len(rat)-1])
				}
			}
			if err := checkDecimal(rat+"unitSize", rep.UnitSize); err != nil {
				cerrs = append(cerrs, err)
			} else if rep.UnitSize.IsNegative() {
				cerrs = append(cerrs, fmt.Errorf("%sunitSize: must be positive, got %s", rat, rep.UnitSize))
			}
			switch {
			case rep.Tier < 0:
				cerrs = append(cerrs, fmt.Errorf("%stier: must be 1 or more, got %d", rat, rep.Tier))
			case rep.Tier > 0 && ch.Pricing.Model != ModelGraduated:
				cerrs = append(cerrs, fmt.Errorf("%stier: only graduated pricing reports tiers separately, this charge's model is %s", rat, ch.Pricing.Model))
			case rep.Tier > len(ch.Pricing.Tiers):
				cerrs = append(cerrs, fmt.Errorf("%stier: %d, but the pricing has %d tiers", rat, rep.Tier, len(ch.Pricing.Tiers)))
			}
		}
		for _, e := range cerrs {
			errs = append(errs, fmt.Errorf("%s%w", at, e))
		}
	}
	return invalid("plan", errs)
}

// Plan returns the plan version in describes, a draft, with the given id,
// version and times. An omitted reporting unitSize becomes 1.
func (in PlanInput) Plan(id string, version int, created, updated time.Time) Plan {
	charges := make([]PlanCharge, len(in.Charges))
	for i, ch := range in.Charges {
		if len(ch.Reporting) > 0 {
			reps := make([]Reporting, len(ch.Reporting))
			for j, r := range ch.Reporting {
				if r.UnitSize.IsZero() {
					r.UnitSize = decimal.NewFromInt(1)
				}
				reps[j] = r
			}
			ch.Reporting = reps
		}
		charges[i] = ch
	}
	return Plan{
		ID: id, Key: in.Key, Version: version, Name: in.Name, Description: in.Description,
		Currency: in.Currency, Cadence: in.Cadence, BaseFee: in.BaseFee, Charges: charges,
		ProrateIncluded: in.ProrateIncluded, Status: PlanDraft, CreatedAt: created.UTC(), UpdatedAt: updated.UTC(),
	}
}

// MarshalJSON writes in as a decimal string or "unlimited".
func (in Included) MarshalJSON() ([]byte, error) {
	return json.Marshal(in.String())
}

// UnmarshalJSON reads a decimal string (a JSON number is accepted too) or
// "unlimited".
func (in *Included) UnmarshalJSON(b []byte) error {
	if bytes.Equal(b, []byte("null")) {
		*in = Included{}
		return nil
	}
	s := string(b)
	if len(b) > 0 && b[0] == '"' {
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
	}
	v, err := ParseIncluded(s)
	if err != nil {
		return err
	}
	*in = v
	return nil
}
