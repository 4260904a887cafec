package bounds

import (
	"errors"
	"testing"

	"github.com/shopspring/decimal"
)

// FuzzParseDecimal checks that ParseDecimal never panics, that what it
// accepts is in range and is the number shopspring reads from the same
// text, and that what it refuses, it refuses for a stated reason. Whatever
// the input, ParseDecimal reads at most MaxDecimalText bytes of it and
// does no arithmetic on numbers out of range, so every input is cheap.
func FuzzParseDecimal(f *testing.F) {
	for _, s := range []string{"0", "-12.50", "1e3", "0e99999999999", "1e999999999", ".5", "1.", "1e-31", "+0.0e+0"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		d, err := ParseDecimal(s)
		if err != nil {
			if !errors.Is(err, ErrNotDecimal) && !errors.Is(err, ErrDecimalRange) {
				t.Fatalf("ParseDecimal(%q): error %v wraps neither ErrNotDecimal nor ErrDecimalRange", s, err)
			}
			return
		}
		if err := CheckDecimal(d); err != nil {
			t.Fatalf("ParseDecimal(%q) = %s, which CheckDecimal refuses: %v", s, d, err)
		}
		if e := d.Exponent(); e > MaxDecimalText || e < -MaxDecimalText {
			// Printing it would expand the exponent.
			t.Fatalf("ParseDecimal(%q) has exponent %d", s, e)
		}
		if len(s) > MaxDecimalText {
			t.Fatalf("ParseDecimal accepted %d bytes of text", len(s))
		}
		want, err := decimal.NewFromString(s)
		if err != nil {
			// shopspring can't read zeros whose exponent overflows int32.
			if !d.IsZero() {
				t.Fatalf("ParseDecimal(%q) = %s, but shopspring refuses it: %v", s, d, err)
			}
			return
		}
		if !want.IsZero() && !d.Equal(want) {
			t.Fatalf("ParseDecimal(%q) = %s, shopspring reads %s", s, d, want)
		}
		if want.IsZero() != d.IsZero() {
			t.Fatalf("ParseDecimal(%q) = %s, shopspring reads %s", s, d, want)
		}
	})
}
