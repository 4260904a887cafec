package billing

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/shopspring/decimal"
)

// InvoiceStatus is the state of an invoice.
type InvoiceStatus string

// The invoice statuses.
const (
	// InvoiceDraft is the live invoice of a period that is not finalized
	// yet: it changes as usage arrives and is never stored.
	InvoiceDraft InvoiceStatus = "draft"
	// InvoiceFinalized is an invoice stored once after its period ended
	// (plus the grace period); it never changes.
	InvoiceFinalized InvoiceStatus = "finalized"
)

// InvoiceKindAdjustment marks an adjustment invoice: late usage of a
// subscription that has ended and whose every period is finalized, so
// that no period's invoice is left to carry it.
const InvoiceKindAdjustment = "adjustment"

// LineKind says what an invoice line bills.
type LineKind string

// The line kinds.
const (
	// LineBaseFee is the plan's base fee for the period.
	LineBaseFee LineKind = "base_fee"
	// LineUsage is one charge's usage in the period.
	LineUsage LineKind = "usage"
	// LineAdjustment corrects a charge of an earlier, finalized period for
	// usage that arrived after it was finalized.
	LineAdjustment LineKind = "adjustment"
)

// Invoice is what one subscription owes for one billing period.
//
// Each line's Amount is its exact amount rounded once to the currency's
// minor unit, half-even (RoundMoney); Total is the sum of the lines'
// Amounts, so it always equals what the lines show.
type Invoice struct {
	// ID is InvoiceID(SubscriptionID, PeriodStart): a draft and the
	// invoice it becomes share it.
	ID string `json:"id"`
	// Kind is "" for the invoice of a billing period, or
	// InvoiceKindAdjustment (see BuildAdjustmentInvoice).
	Kind           string          `json:"kind,omitempty"`
	SubscriptionID string          `json:"subscriptionId"`
	CustomerID     string          `json:"customerId"`
	PlanID         string          `json:"planId"`
	PlanKey        string          `json:"planKey"`
	PlanVersion    int             `json:"planVersion"`
	Status         InvoiceStatus   `json:"status"`
	Currency       string          `json:"currency"`
	Digits         int32           `json:"digits"`
	PeriodIndex    int             `json:"periodIndex"`
	PeriodStart    time.Time       `json:"periodStart"`
	PeriodEnd      time.Time       `json:"periodEnd"`
	Partial        bool            `json:"partial,omitempty"`
	Lines          []InvoiceLine   `json:"lines"`
	Total          decimal.Decimal `json:"total"`
	// FinalizedAt is when the invoice was finalized; nil for a draft.
	FinalizedAt *time.Time `json:"finalizedAt,omitempty"`
}

// InvoiceLine is one line of an invoice.
type InvoiceLine struct {
	Kind LineKind `json:"kind"`
	// Key is the charge key (usage and adjustment lines); "base_fee" for
	// the base fee.
	Key         string `json:"key"`
	Meter       string `json:"meter,omitempty"`
	Description string `json:"description"`
	Model       Model  `json:"model,omitempty"`
	// Quantity is the period's usage (usage lines), the share of the full
	// period billed (base fee: 1 unless the period is partial or cut
	// short by a cancellation) or the usage that arrived after
	// finalization (adjustment lines).
	Quantity decimal.Decimal `json:"quantity"`
	// Included and Billable split a usage line's Quantity: the part the
	// included quantity covers and the part priced.
	Included decimal.Decimal `json:"included"`
	Billable decimal.Decimal `json:"billable"`
	// Packages is the number of started packages (package model).
	Packages decimal.Decimal `json:"packages"`
	// Tiers is the tier breakdown (graduated and volume models).
	Tiers []TierLine `json:"tiers,omitempty"`
	// UnitPrice as in Line; nil where the price varies by tier.
	UnitPrice *decimal.Decimal `json:"unitPrice,omitempty"`
	// ExactAmount is the unrounded amount; Amount is it rounded once.
	ExactAmount decimal.Decimal `json:"exactAmount"`
	Amount      decimal.Decimal `json:"amount"`
	// For adjustment lines: the finalized invoice and the period the late
	// usage belongs to.
	AdjustsInvoice     string     `json:"adjustsInvoice,omitempty"`
	AdjustsPeriodStart *time.Time `json:"adjustsPeriodStart,omitempty"`
	AdjustsPeriodEnd   *time.Time `json:"adjustsPeriodEnd,omitempty"`
	// PlanKey and PlanVersion are set on the lines of a period split by a
	// plan change (and on adjustments of such a period): the plan version
	// the line rates. Empty when the period is on one plan (the invoice's).
	PlanKey     string `json:"planKey,omitempty"`
	PlanVersion int    `json:"planVersion,omitempty"`
	// SegmentStart and SegmentEnd are the part of a split period the line
	// covers; nil when the period is on one plan.
	SegmentStart *time.Time `json:"segmentStart,omitempty"`
	SegmentEnd   *time.Time `json:"segmentEnd,omitempty"`
}

// Adjustment is a correction of a finalized period's charge (see
// NewCorrection): billed on a later invoice when Amount is positive,
// credited on a credit note when it is negative.
type Adjustment struct {
	Invoice     string
	PeriodStart time.Time
	PeriodEnd   time.Time
	ChargeKey   string
	Meter       string
	// Quantity is the usage not billed yet: the period's usage now minus
	// what its invoice, earlier adjustments and credit notes accounted for
	// (negative when usage went down).
	Quantity decimal.Decimal
	// Amount is the correction, already in the currency's minor unit: the
	// rounded price of the period's usage now minus the rounded amounts
	// billed for it so far, net of credit. Negative: owed to the customer.
	Amount decimal.Decimal
	// PlanKey and PlanVersion name the plan of the segment adjusted when
	// the period was split by a plan change; empty otherwise.
	PlanKey     string
	PlanVersion int
}

// InvoiceID is the id of the invoice of subscription sub for the period
// starting at start.
func InvoiceID(sub string, start time.Time) string {
	return "inv_" + sub + "_" + strconv.FormatInt(start.Unix(), 10)
}

// ParseInvoiceID splits an InvoiceID into its subscription id and period
// start.
func ParseInvoiceID(id string) (sub string, start time.Time, ok bool) {
	rest, found := strings.CutPrefix(id, "inv_")
	if !found {
		return "", time.Time{}, false
	}
	i := strings.LastIndexByte(rest, '_')
	if i <= 0 {
		return "", time.Time{}, false
	}
	sec, err := strconv.ParseInt(rest[i+1:], 10, 64)
	if err != nil {
		return "", time.Time{}, false
	}
	return rest[:i], time.Unix(sec, 0).UTC(), true
}

// BuildInvoice builds the draft invoice of sub on plan (the plan version
// sub is on) for period from usage, the meter value of each charge over
// the whole period keyed by charge key (a missing key is zero usage), plus
// one adjustment line per entry of adjustments, each of which must have a
// positive Amount (a correction owed to the customer is a CreditNote).
//
// Lines come in this order: the base fee (prorated by time for a partial
// or cut-short period, as in View), each charge in plan order (rated with
// its included quantity for period, PlanCharge.IncludedFor), then the
// adjustments.
// Every line is rated exactly and rounded once, half-even, to the
// currency's minor unit, so a draft shows the same amounts as View.
func BuildInvoice(sub Subscription, plan Plan, period Period, usage map[string]decimal.Decimal, adjustments []Adjustment) (Invoice, error) {
	digits, err := MinorUnits(plan.Currency)
	if err != nil {
		return Invoice{}, err
	}
	if !period.End.After(period.Start) {
		return Invoice{}, fmt.Errorf("period: end %s is not after start %s", period.End.Format(time.RFC3339), period.Start.Format(time.RFC3339))
	}
	inv := Invoice{
		ID:             InvoiceID(sub.ID, period.Start),
		SubscriptionID: sub.ID, CustomerID: sub.CustomerID,
		PlanID: plan.ID, PlanKey: plan.Key, PlanVersion: plan.Version,
		Status: InvoiceDraft, Currency: plan.Currency, Digits: digits,
		PeriodIndex: period.Index, PeriodStart: period.Start.UTC(), PeriodEnd: period.End.UTC(), Partial: period.Partial,
		Lines: make([]InvoiceLine, 0, 1+len(plan.Charges)+len(adjustments)),
	}
	baseFee, share := plan.BaseFee, decimal.NewFromInt(1)
	if period.Prorated() {
		baseFee = Prorate(baseFee, period.Duration(), period.FullDuration())
		share = period.Fraction()
	}
	inv.Lines = append(inv.Lines, InvoiceLine{
		Kind: LineBaseFee, Key: "base_fee", Description: "Base fee", Quantity: share,
		UnitPrice: ptr(plan.BaseFee), ExactAmount: baseFee, Amount: baseFee.RoundBank(digits),
	})
	for i, pc := range plan.Charges {
		line, err := Rate(pc.ChargeFor(period, plan.ProrateIncluded), usage[pc.Key])
		if err != nil {
			return Invoice{}, fmt.Errorf("charges[%d] (%s): %w", i, pc.Key, err)
		}
		inv.Lines = append(inv.Lines, InvoiceLine{
			Kind: LineUsage, Key: pc.Key, Meter: pc.Meter, Description: pc.Key, Model: line.Model,
			Quantity: line.Quantity, Included: line.Included, Billable: line.Billable, Packages: line.Packages,
			Tiers: line.Tiers, UnitPrice: line.UnitPrice, ExactAmount: line.Amount, Amount: line.Amount.RoundBank(digits),
		})
	}
	for _, a := range adjustments {
		if !a.Amount.IsPositive() {
			return Invoice{}, nonPositiveAdjustment(a)
		}
		inv.Lines = append(inv.Lines, adjustmentLine(a, digits))
	}
	for _, l := range inv.Lines {
		inv.Total = inv.Total.Add(l.Amount)
	}
	return inv, nil
}

// nonPositiveAdjustment is the error of an adjustment that would lower an
// invoice: money owed to the customer goes on a credit note, so that no
// invoice total is ever negative.
func nonPositiveAdjustment(a Adjustment) error {
	return fmt.Errorf("adjustment of invoice %s charge %s: amount %s is not positive; credit it on a credit note", a.Invoice, a.ChargeKey, a.Amount)
}

// SegmentUsage is one segment of a period split by a plan change: its
// plan version, its part of the period (see Subscription.Segments) and the
// usage in it keyed by charge key.
type SegmentUsage struct {
	Plan   Plan
	Period Period
	Usage  map[string]decimal.Decimal
}

// BuildSegmentedInvoice builds the draft invoice of period from its
// segments (in order, covering it). One segment is BuildInvoice. Several
// give, per segment, a base fee line prorated by the segment's share of the
// full period and a line per charge of the segment's plan rated on the
// segment's usage alone (included quantities are not shared between
// segments), each tagged with the plan version and segment; then the
// adjustments. The header names the last segment's plan.
func BuildSegmentedInvoice(sub Subscription, period Period, segs []SegmentUsage, adjustments []Adjustment) (Invoice, error) {
	if len(segs) == 0 {
		return Invoice{}, fmt.Errorf("period %s: no segments", period.Start.Format(time.RFC3339))
	}
	last := segs[len(segs)-1]
	if len(segs) == 1 {
		return BuildInvoice(sub, last.Plan, period, last.Usage, adjustments)
	}
	var lines []InvoiceLine
	for _, sg := range segs {
		part, err := BuildInvoice(sub, sg.Plan, sg.Period, sg.Usage, nil)
		if err != nil {
			return Invoice{}, err
		}
		from, to := sg.Period.Start.UTC(), sg.Period.End.UTC()
		for _, l := range part.Lines {
			l.PlanKey, l.PlanVersion, l.SegmentStart, l.SegmentEnd = sg.Plan.Key, sg.Plan.Version, &from, &to
			l.Description = fmt.Sprintf("%s (%s v%d, %s – %s)", l.Description, sg.Plan.Key, sg.Plan.Version, from.Format(time.RFC3339), to.Format(time.RFC3339))
			lines = append(lines, l)
		}
	}
	inv, err := BuildInvoice(sub, last.Plan, period, nil, adjustments)
	if err != nil {
		return Invoice{}, err
	}
	inv.Lines = append(lines, inv.Lines[1+len(last.Plan.Charges):]...)
	inv.Total = decimal.Zero
	for _, l := range inv.Lines {
		inv.Total = inv.Total.Add(l.Amount)
	}
	return inv, nil
}

// Billed is the quantity and rounded amount billed so far, net of
// credit, for charge key of inv's period (inv is a finalized invoice): its
// usage line, plus every adjustment line of the later finalized invoices
// pointing to inv, minus every line of credits pointing to inv (a credit
// line's quantity, usually negative, is added as it is). When planKey is
// set, only lines of that plan version count (a period split by a plan
// change); lines without a plan always do.
func Billed(inv Invoice, later []Invoice, credits []CreditNote, key, planKey string, planVersion int) (quantity, amount decimal.Decimal) {
	match := func(k, pk string, pv int) bool {
		return k == key && (planKey == "" || pk == "" || (pk == planKey && pv == planVersion))
	}
	for _, l := range inv.Lines {
		if l.Kind == LineUsage && match(l.Key, l.PlanKey, l.PlanVersion) {
			quantity, amount = quantity.Add(l.Quantity), amount.Add(l.Amount)
		}
	}
	for _, o := range later {
		for _, l := range o.Lines {
			if l.Kind == LineAdjustment && match(l.Key, l.PlanKey, l.PlanVersion) && l.AdjustsInvoice == inv.ID {
				quantity, amount = quantity.Add(l.Quantity), amount.Add(l.Amount)
			}
		}
	}
	for _, cn := range credits {
		for _, l := range cn.Lines {
			if l.Invoice == inv.ID && match(l.Key, l.PlanKey, l.PlanVersion) {
				quantity, amount = quantity.Add(l.Quantity), amount.Sub(l.Amount)
			}
		}
	}
	return quantity, amount
}

// NewCorrection returns the correction of charge ch of the finalized
// invoice inv when the period's usage is now usage and billedQty and
// billedAmount were billed for it so far, net of credit (see Billed); ok
// is false when the amounts already match. The one formula serves both
// directions: Amount is the rounded price of usage now minus
// billedAmount, and Quantity is usage minus billedQty. A positive Amount
// is owed by the customer (an adjustment line on an open invoice), a
// negative one is owed to the customer (a credit note line). The signs of
// Quantity and Amount may differ: under volume pricing one unit less can
// cost more, and one unit more can cost less. Either way the amounts
// billed and credited for the period add up to exactly what an invoice
// with all its usage would show.
//
// ch must be the charge as inv rated it: PlanCharge.ChargeFor the
// period (or plan segment) and its plan's ProrateIncluded, so that the
// usage now is rated with the included quantity the invoice used.
func NewCorrection(inv Invoice, ch Charge, usage, billedQty, billedAmount decimal.Decimal) (a Adjustment, ok bool, err error) {
	line, err := Rate(ch, usage)
	if err != nil {
		return Adjustment{}, false, fmt.Errorf("charge %s: %w", ch.Key, err)
	}
	amount, err := line.RoundedAmount(inv.Currency)
	if err != nil {
		return Adjustment{}, false, err
	}
	delta := amount.Sub(billedAmount)
	if delta.IsZero() {
		return Adjustment{}, false, nil
	}
	return Adjustment{
		Invoice: inv.ID, PeriodStart: inv.PeriodStart, PeriodEnd: inv.PeriodEnd, ChargeKey: ch.Key, Meter: ch.Meter,
		Quantity: usage.Sub(billedQty), Amount: delta,
	}, true, nil
}

// BuildAdjustmentInvoice builds the draft of an adjustment invoice of sub,
// which has ended and has every period finalized: only adjustment lines,
// for the late usage no period's invoice is left to carry. Its period is
// the instant at (PeriodStart = PeriodEnd = at, whole seconds), which
// makes its id; plan is the plan version sub ended on and gives the
// currency; index follows the last period's.
func BuildAdjustmentInvoice(sub Subscription, plan Plan, index int, at time.Time, adjustments []Adjustment) (Invoice, error) {
	digits, err := MinorUnits(plan.Currency)
	if err != nil {
		return Invoice{}, err
	}
	if len(adjustments) == 0 {
		return Invoice{}, fmt.Errorf("adjustment invoice: no adjustments")
	}
	at = at.UTC().Truncate(time.Second)
	inv := Invoice{
		ID: InvoiceID(sub.ID, at), Kind: InvoiceKindAdjustment,
		SubscriptionID: sub.ID, CustomerID: sub.CustomerID,
		PlanID: plan.ID, PlanKey: plan.Key, PlanVersion: plan.Version,
		Status: InvoiceDraft, Currency: plan.Currency, Digits: digits,
		PeriodIndex: index, PeriodStart: at, PeriodEnd: at,
	}
	for _, a := range adjustments {
		if !a.Amount.IsPositive() {
			return Invoice{}, nonPositiveAdjustment(a)
		}
		inv.Lines = append(inv.Lines, adjustmentLine(a, digits))
	}
	for _, l := range inv.Lines {
		inv.Total = inv.Total.Add(l.Amount)
	}
	return inv, nil
}

// adjustmentLine is the invoice line of adjustment a.
func adjustmentLine(a Adjustment, digits int32) InvoiceLine {
	ps, pe := a.PeriodStart.UTC(), a.PeriodEnd.UTC()
	return InvoiceLine{
		Kind: LineAdjustment, Key: a.ChargeKey, Meter: a.Meter,
		Description: fmt.Sprintf("%s: late usage for %s – %s", a.ChargeKey, ps.Format(time.RFC3339), pe.Format(time.RFC3339)),
		Quantity:    a.Quantity, Billable: a.Quantity, ExactAmount: a.Amount, Amount: a.Amount.RoundBank(digits),
		AdjustsInvoice: a.Invoice, AdjustsPeriodStart: &ps, AdjustsPeriodEnd: &pe,
		PlanKey: a.PlanKey, PlanVersion: a.PlanVersion,
	}
}
