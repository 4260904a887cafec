package billing

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/shopspring/decimal"
)

// CreditNote is money owed back to a customer for finalized invoices: the
// downward corrections (see NewCorrection) of one subscription's finalized
// periods, issued together. A finalized invoice never changes; a credit
// note is its own document, numbered, pointing with each line to the
// invoice it corrects. It is stored once and never changes.
//
// Amounts are shown positive, as credited: Total is the sum of the lines'
// Amounts, each already rounded to the currency's minor unit.
type CreditNote struct {
	// ID is CreditNoteID(SubscriptionID, Seq).
	ID string `json:"id"`
	// Number is the credit note's document number ("CN-000001"), from one
	// sequence over all credit notes; the store assigns it when it issues
	// the note.
	Number string `json:"number"`
	// Seq is the note's place among its subscription's credit notes, from 1.
	Seq            int              `json:"seq"`
	SubscriptionID string           `json:"subscriptionId"`
	CustomerID     string           `json:"customerId"`
	Currency       string           `json:"currency"`
	Digits         int32            `json:"digits"`
	Lines          []CreditNoteLine `json:"lines"`
	Total          decimal.Decimal  `json:"total"`
	IssuedAt       time.Time        `json:"issuedAt"`
}

// CreditNoteLine credits one charge of one finalized period.
type CreditNoteLine struct {
	// Invoice is the finalized invoice the line corrects; PeriodStart and
	// PeriodEnd are its period.
	Invoice     string    `json:"invoice"`
	PeriodStart time.Time `json:"periodStart"`
	PeriodEnd   time.Time `json:"periodEnd"`
	// Key is the charge key, Meter its meter.
	Key         string `json:"key"`
	Meter       string `json:"meter,omitempty"`
	Description string `json:"description"`
	// Quantity is the period's usage now minus the quantity billed and
	// credited for it before: negative when usage went down (a negative
	// event, a voided one), positive when more usage costs less (volume
	// pricing).
	Quantity decimal.Decimal `json:"quantity"`
	// Amount is the money credited, positive, in the currency's minor unit.
	Amount decimal.Decimal `json:"amount"`
	// PlanKey and PlanVersion name the plan of the segment credited when
	// the period was split by a plan change; empty otherwise.
	PlanKey     string `json:"planKey,omitempty"`
	PlanVersion int    `json:"planVersion,omitempty"`
}

// CreditNoteID is the id of the seq-th credit note of subscription sub.
// Two issuers that compute the same subscription's next credit note from
// the same state give it the same id, so a store keeping ids unique
// issues it once.
func CreditNoteID(sub string, seq int) string {
	return "cn_" + sub + "_" + strconv.Itoa(seq)
}

// ParseCreditNoteID splits a CreditNoteID into its subscription id and
// sequence number.
func ParseCreditNoteID(id string) (sub string, seq int, ok bool) {
	rest, found := strings.CutPrefix(id, "cn_")
	if !found {
		return "", 0, false
	}
	i := strings.LastIndexByte(rest, '_')
	if i <= 0 {
		return "", 0, false
	}
	n, err := strconv.Atoi(rest[i+1:])
	if err != nil || n < 1 {
		return "", 0, false
	}
	return rest[:i], n, true
}

// CreditNoteNumber formats the n-th number of the credit note sequence.
func CreditNoteNumber(n int64) string { return fmt.Sprintf("CN-%06d", n) }

// BuildCreditNote builds the seq-th credit note of sub, in currency,
// issued at at, from the corrections with a negative Amount (the others
// are ignored; see NewCorrection); ok is false when none is negative.
// Number is left to the store.
func BuildCreditNote(sub Subscription, currency string, seq int, at time.Time, corrections []Adjustment) (cn CreditNote, ok bool, err error) {
	digits, err := MinorUnits(currency)
	if err != nil {
		return CreditNote{}, false, err
	}
	cn = CreditNote{
		ID: CreditNoteID(sub.ID, seq), Seq: seq, SubscriptionID: sub.ID, CustomerID: sub.CustomerID,
		Currency: currency, Digits: digits, IssuedAt: at.UTC(), Lines: []CreditNoteLine{},
	}
	for _, a := range corrections {
		if !a.Amount.IsNegative() {
			continue
		}
		ps, pe := a.PeriodStart.UTC(), a.PeriodEnd.UTC()
		desc := fmt.Sprintf("%s: usage corrected for %s – %s", a.ChargeKey, ps.Format(time.RFC3339), pe.Format(time.RFC3339))
		if a.PlanKey != "" {
			desc = fmt.Sprintf("%s: usage corrected for %s – %s (%s v%d)", a.ChargeKey, ps.Format(time.RFC3339), pe.Format(time.RFC3339), a.PlanKey, a.PlanVersion)
		}
		l := CreditNoteLine{
			Invoice: a.Invoice, PeriodStart: ps, PeriodEnd: pe, Key: a.ChargeKey, Meter: a.Meter, Description: desc,
			Quantity: a.Quantity, Amount: a.Amount.Neg().RoundBank(digits), PlanKey: a.PlanKey, PlanVersion: a.PlanVersion,
		}
		cn.Lines = append(cn.Lines, l)
		cn.Total = cn.Total.Add(l.Amount)
	}
	return cn, len(cn.Lines) > 0, nil
}
