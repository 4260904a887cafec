package billing

import (
	"fmt"
	"time"

	"github.com/shopspring/decimal"
)

// minorUnits maps the active ISO 4217 currency codes to the number of
// digits of their minor unit.
var minorUnits = func() map[string]int32 {
	m := map[string]int32{}
	for _, c := range []string{
		"BIF", "CLP", "DJF", "GNF", "ISK", "JPY", "KMF", "KRW", "PYG", "RWF",
		"UGX", "UYI", "VND", "VUV", "XAF", "XOF", "XPF",
	} {
		m[c] = 0
	}
	for _, c := range []string{"BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND"} {
		m[c] = 3
	}
	for _, c := range []string{"CLF", "UYW"} {
		m[c] = 4
	}
	for _, c := range []string{
		"AED", "AFN", "ALL", "AMD", "ANG", "AOA", "ARS", "AUD", "AWG", "AZN",
		"BAM", "BBD", "BDT", "BGN", "BMD", "BND", "BOB", "BOV", "BRL", "BSD",
		"BTN", "BWP", "BYN", "BZD", "CAD", "CDF", "CHE", "CHF", "CHW", "CNY",
		"COP", "COU", "CRC", "CUP", "CVE", "CZK", "DKK", "DOP", "DZD", "EGP",
		"ERN", "ETB", "EUR", "FJD", "FKP", "GBP", "GEL", "GHS", "GIP", "GMD",
		"GTQ", "GYD", "HKD", "HNL", "HTG", "HUF", "IDR", "ILS", "INR", "IRR",
		"JMD", "KES", "KGS", "KHR", "KPW", "KYD", "KZT", "LAK", "LBP", "LKR",
		"LRD", "LSL", "MAD", "MDL", "MGA", "MKD", "MMK", "MNT", "MOP", "MRU",
		"MUR", "MVR", "MWK", "MXN", "MXV", "MYR", "MZN", "NAD", "NGN", "NIO",
		"NOK", "NPR", "NZD", "PAB", "PEN", "PGK", "PHP", "PKR", "PLN", "QAR",
		"RON", "RSD", "RUB", "SAR", "SBD", "SCR", "SDG", "SEK", "SGD", "SHP",
		"SLE", "SOS", "SRD", "SSP", "STN", "SVC", "SYP", "SZL", "THB", "TJS",
		"TMT", "TOP", "TRY", "TTD", "TWD", "TZS", "UAH", "USD", "USN", "UYU",
		"UZS", "VED", "VES", "WST", "XCD", "XCG", "YER", "ZAR", "ZMW", "ZWG",
	} {
		m[c] = 2
	}
	return m
}()

// MinorUnits returns the number of decimal digits of currency's minor unit
// (2 for EUR, 0 for JPY, 3 for KWD) for an active ISO 4217 code in upper
// case. Other codes, lower case included, are an error naming the field
// "currency".
func MinorUnits(currency string) (int32, error) {
	d, ok := minorUnits[currency]
	if !ok {
		return 0, fmt.Errorf("currency: %q is not a supported ISO 4217 currency code", currency)
	}
	return d, nil
}

// RoundMoney rounds amount to currency's minor unit, half to even (banker's
// rounding: 0.125 EUR is 0.12, 0.135 EUR is 0.14). Tally rounds money once
// per invoice line, on the line's exact amount; see Line.RoundedAmount and
// Total.
func RoundMoney(amount decimal.Decimal, currency string) (decimal.Decimal, error) {
	d, err := MinorUnits(currency)
	if err != nil {
		return decimal.Decimal{}, err
	}
	return amount.RoundBank(d), nil
}

// Total is an invoice's total: the base fee and each line's Amount, each
// rounded once to currency's minor unit (RoundMoney), summed. So the total
// always equals the sum of the rounded amounts the invoice shows.
func Total(baseFee decimal.Decimal, lines []Line, currency string) (decimal.Decimal, error) {
	total, err := RoundMoney(baseFee, currency)
	if err != nil {
		return decimal.Decimal{}, err
	}
	for _, l := range lines {
		a, err := l.RoundedAmount(currency)
		if err != nil {
			return decimal.Decimal{}, err
		}
		total = total.Add(a)
	}
	return total, nil
}

// prorateDigits is how many decimal places beyond amount's own Prorate keeps.
const prorateDigits = 30

// Prorate returns amount × part / whole, the share of amount for part of a
// period of length whole (a negative part gives a credit). It does not round
// to a currency: round the line total once, with RoundMoney.
//
// The product amount × part is exact; the division is exact when the
// quotient terminates and otherwise rounded to 30 decimal places beyond
// amount's own. That never changes the money: a quotient that is not exactly
// a rounding tie at ≤ 4 decimals lies at least 10^-s / (2·10^4·2^63) ≈
// 10^-s·5·10^-24 from one (s: amount's decimal places, whole < 2^63 ns),
// far more than the 0.5·10^-(s+30) the division can be off, so RoundMoney
// of the result equals the half-even rounding of the exact rational.
//
// whole must be positive; Prorate panics otherwise, as division by zero does.
func Prorate(amount decimal.Decimal, part, whole time.Duration) decimal.Decimal {
	if whole <= 0 {
		panic(fmt.Sprintf("billing: Prorate: whole %s is not positive", whole))
	}
	num := amount.Mul(decimal.NewFromInt(int64(part)))
	scale := max(-amount.Exponent(), 0) + prorateDigits
	return num.DivRound(decimal.NewFromInt(int64(whole)), scale)
}
