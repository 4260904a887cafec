package bounds

import (
	"errors"
	"fmt"
	"strconv"
	"unicode/utf8"

	"github.com/shopspring/decimal"
)

// The range of every decimal tally accepts: plan amounts, included
// quantities, unit and package sizes, meter values. An exact decimal of
// any size would let one number (say 1e999999999) cost minutes of CPU and
// gigabytes of memory wherever it is printed, compared or added; usage and
// money never need more than this.
const (
	// MaxIntegerDigits is the most digits before the decimal point, once
	// the value is written without exponent and leading zeros.
	MaxIntegerDigits = 40
	// MaxFractionDigits is the most decimal places, once trailing zeros
	// are dropped.
	MaxFractionDigits = 30
	// MaxDecimalText is the longest decimal text accepted, in bytes.
	// Longer text is refused without being read further.
	MaxDecimalText = 200
)

// ErrNotDecimal is wrapped by ParseDecimal's error for text that is not a
// decimal number.
var ErrNotDecimal = errors.New("not a number")

// ErrDecimalRange is wrapped by the errors of ParseDecimal and CheckDecimal
// for numbers outside the supported range.
var ErrDecimalRange = errors.New("outside the supported range")

// maxCheckedBits is the largest coefficient, in bits, that CheckDecimal
// inspects digit by digit (about 210 decimal digits); a larger one is out
// of range.
const maxCheckedBits = 700

// DecimalError is the error of ParseDecimal: the text as sent and what is
// wrong with it. It reads as the quoted text (shortened visibly when long,
// see Quote) followed by the reason, and wraps ErrNotDecimal or
// ErrDecimalRange.
type DecimalError struct {
	// Text is the text as sent, whole.
	Text string
	// Reason says what is wrong, as a predicate: "is not a number", "has
	// 51 integer digits, outside the supported range of at most 40".
	Reason string
	// Err is ErrNotDecimal or ErrDecimalRange.
	Err error
}

func (e *DecimalError) Error() string { return Quote(e.Text) + " " + e.Reason }

// Unwrap returns ErrNotDecimal or ErrDecimalRange.
func (e *DecimalError) Unwrap() error { return e.Err }

// ParseDecimal parses decimal text: an optional sign, digits with an
// optional fraction (at least one digit in all), and an optional exponent
// (e or E, an optional sign, and any number of digits). It checks the text
// in time linear in its length, and refuses text longer than
// MaxDecimalText without reading it, before any big-number arithmetic is
// done. A zero of any exponent (0e99999999999) is zero. Any other value
// must have at most MaxIntegerDigits integer digits and MaxFractionDigits
// decimal places once normalised (1.50e2 is 150: three integer digits, no
// decimal places). The error is a *DecimalError.
func ParseDecimal(s string) (decimal.Decimal, error) {
	if len(s) > MaxDecimalText {
		return decimal.Decimal{}, &DecimalError{Text: s, Err: ErrDecimalRange,
			Reason: fmt.Sprintf("is longer than %d characters, %v", MaxDecimalText, ErrDecimalRange)}
	}
	n, ok := scanDecimal(s)
	if !ok {
		return decimal.Decimal{}, &DecimalError{Text: s, Reason: "is " + ErrNotDecimal.Error(), Err: ErrNotDecimal}
	}
	if n.significant == 0 {
		return decimal.Zero, nil
	}
	if err := n.check(); err != nil {
		return decimal.Decimal{}, &DecimalError{Text: s, Reason: err.Error(), Err: ErrDecimalRange}
	}
	// The text is short and its exponent small: shopspring's parse is cheap
	// and keeps the scale the text was written with.
	d, err := decimal.NewFromString(s)
	if err != nil {
		// Unreachable: the syntax was checked above.
		return decimal.Decimal{}, &DecimalError{Text: s, Reason: "is " + ErrNotDecimal.Error(), Err: ErrNotDecimal}
	}
	return d, nil
}

// CheckDecimal reports whether d, a decimal already held, is within the
// range ParseDecimal accepts, without expanding it: it looks at d's
// exponent and the digits of its coefficient (a coefficient of more than
// about 210 digits is out of range whatever the exponent). A zero is always
// in range. The error, a predicate such as "has 41 integer digits, outside
// the supported range of at most 40", wraps ErrDecimalRange and does not
// print d, whose text could be huge.
func CheckDecimal(d decimal.Decimal) error {
	c := d.Coefficient()
	if c.Sign() == 0 {
		return nil
	}
	if c.BitLen() > maxCheckedBits {
		return fmt.Errorf("has more than %d significant digits, %w", maxCheckedBits*3/10, ErrDecimalRange)
	}
	digits := c.Abs(c).Text(10)
	n := number{exp: int64(d.Exponent())}
	n.significant, n.exp = trimTrailingZeros(digits, n.exp)
	return n.check()
}

// trimTrailingZeros returns how many digits of the digit string digits
// (with no leading zeros) remain once trailing zeros are moved into the
// exponent exp, and the new exponent.
func trimTrailingZeros(digits string, exp int64) (int, int64) {
	k := len(digits)
	for k > 0 && digits[k-1] == '0' {
		k--
		exp++
	}
	return k, exp
}

// number is a decimal's shape: significant digits (no leading or trailing
// zeros; 0 for zero) times ten to the power exp.
type number struct {
	significant int
	exp         int64
}

// check reports whether n is within range.
func (n number) check() error {
	intDigits := int64(n.significant) + n.exp
	switch {
	case intDigits > MaxIntegerDigits:
		return fmt.Errorf("has %s integer digits, %w of at most %d", count(intDigits), ErrDecimalRange, MaxIntegerDigits)
	case -n.exp > MaxFractionDigits:
		return fmt.Errorf("has %s decimal places, %w of at most %d", count(-n.exp), ErrDecimalRange, MaxFractionDigits)
	}
	return nil
}

// expLimit caps the magnitude of a parsed exponent. Text of at most
// MaxDecimalText characters has fewer digits than this, so a capped
// exponent gives the same verdict as the exact one, and sums stay far
// from overflow.
const expLimit = 1 << 40

// count writes a digit count, which may come from a capped exponent.
func count(n int64) string {
	if n >= expLimit/2 {
		return "more than " + strconv.FormatInt(expLimit/2, 10)
	}
	return strconv.FormatInt(n, 10)
}

// scanDecimal checks the syntax of s and returns its shape.
func scanDecimal(s string) (number, bool) {
	i := 0
	if i < len(s) && (s[i] == '-' || s[i] == '+') {
		i++
	}
	// Digits of the mantissa, integer part then fraction: first is the
	// position (among all mantissa digits) of the first nonzero one, last
	// that of the last nonzero one.
	digits, fraction := 0, 0
	first, last := -1, -1
	for ; i < len(s) && isDigit(s[i]); i++ {
		if s[i] != '0' {
			if first < 0 {
				first = digits
			}
			last = digits
		}
		digits++
	}
	if i < len(s) && s[i] == '.' {
		i++
		for ; i < len(s) && isDigit(s[i]); i++ {
			if s[i] != '0' {
				if first < 0 {
					first = digits
				}
				last = digits
			}
			digits++
			fraction++
		}
	}
	if digits == 0 {
		return number{}, false
	}
	var exp int64
	if i < len(s) && (s[i] == 'e' || s[i] == 'E') {
		i++
		neg := false
		if i < len(s) && (s[i] == '-' || s[i] == '+') {
			neg = s[i] == '-'
			i++
		}
		start := i
		for ; i < len(s) && isDigit(s[i]); i++ {
			if exp < expLimit {
				exp = exp*10 + int64(s[i]-'0')
			}
		}
		if i == start {
			return number{}, false
		}
		exp = min(exp, expLimit)
		if neg {
			exp = -exp
		}
	}
	if i != len(s) {
		return number{}, false
	}
	if first < 0 {
		return number{}, true // zero
	}
	// The value is digits[first..last] times 10^(exp - fraction + trailing
	// zeros), where the trailing zeros are the mantissa digits after last.
	return number{
		significant: last - first + 1,
		exp:         exp - int64(fraction) + int64(digits-1-last),
	}, true
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

// quoteHead is how many characters of long text Quote keeps.
const quoteHead = 20

// Quote quotes text for an error message. Text longer than a few dozen
// bytes is cut visibly: its first characters, an ellipsis inside the
// quotes, and its full length, as in "12345678901234567890…" (51
// characters), so that a value cut short can't be read as another value.
func Quote(s string) string {
	if len(s) <= quoteHead+4 {
		return strconv.Quote(s)
	}
	cut := quoteHead
	for i := quoteHead; i > quoteHead-utf8.UTFMax; i-- {
		if utf8.RuneStart(s[i]) {
			cut = i // don't cut a character in two
			break
		}
	}
	q := strconv.Quote(s[:cut])
	return q[:len(q)-1] + "…\" (" + strconv.Itoa(len(s)) + " characters)"
}
