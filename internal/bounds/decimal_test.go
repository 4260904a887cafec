package bounds

import (
	"errors"
	"strings"
	"testing"

	"github.com/shopspring/decimal"
)

func TestParseDecimal(t *testing.T) {
	digits51 := "123456789012345678901234567890123456789012345678901"
	tests := []struct {
		in      string
		want    string // the value's String(), when accepted
		wantErr error
		msg     string // a part of the error message
	}{
		{in: "0", want: "0"},
		{in: "-12.50", want: "-12.5"},
		{in: "+7", want: "7"},
		{in: ".5", want: "0.5"},
		{in: "5.", want: "5"},
		{in: "1e3", want: "1000"},
		{in: "1.5E-3", want: "0.0015"},
		{in: "0e99999999999", want: "0"},
		{in: "-0.000e-5", want: "0"},
		{in: "0e-999999999999999999999999999", want: "0"},
		{in: "000000000001", want: "1"},
		{in: "1" + strings.Repeat("0", 39), want: "1" + strings.Repeat("0", 39)},
		{in: "0." + strings.Repeat("0", 29) + "1", want: "0." + strings.Repeat("0", 29) + "1"},
		{in: "1.000000000000000000000000000000000000000000000000", want: "1"},
		{in: "10e38", want: "1" + strings.Repeat("0", 39)},
		{in: "10e39", wantErr: ErrDecimalRange, msg: "41 integer digits"},
		{in: "100e-32", want: "0." + strings.Repeat("0", 29) + "1"},
		{in: "1e0000000000000000000000000000000000000000", want: "1"},

		{in: "1e999999999", wantErr: ErrDecimalRange, msg: `"1e999999999" has 1000000000 integer digits, outside the supported range of at most 40`},
		{in: "1e3000000", wantErr: ErrDecimalRange, msg: "integer digits"},
		{in: "1e99999999999999999999999999", wantErr: ErrDecimalRange, msg: "more than"},
		{in: "1e-31", wantErr: ErrDecimalRange, msg: "31 decimal places, outside the supported range of at most 30"},
		{in: "1" + strings.Repeat("0", 40), wantErr: ErrDecimalRange, msg: "41 integer digits"},
		{in: digits51, wantErr: ErrDecimalRange, msg: `"12345678901234567890…" (51 characters) has 51 integer digits, outside the supported range of at most 40`},
		{in: "1" + strings.Repeat("0", 300), wantErr: ErrDecimalRange, msg: `"10000000000000000000…" (301 characters) is longer than 200 characters`},

		{in: "", wantErr: ErrNotDecimal, msg: `"" is not a number`},
		{in: "-", wantErr: ErrNotDecimal},
		{in: ".", wantErr: ErrNotDecimal},
		{in: "1e", wantErr: ErrNotDecimal},
		{in: "1e+", wantErr: ErrNotDecimal},
		{in: "e5", wantErr: ErrNotDecimal},
		{in: "1.2.3", wantErr: ErrNotDecimal},
		{in: " 1", wantErr: ErrNotDecimal},
		{in: "NaN", wantErr: ErrNotDecimal},
		{in: "Infinity", wantErr: ErrNotDecimal},
		{in: "0x10", wantErr: ErrNotDecimal},
		{in: "1_000", wantErr: ErrNotDecimal},
		{in: "--1", wantErr: ErrNotDecimal},
	}
	for _, tt := range tests {
		name := tt.in
		if len(name) > 40 {
			name = name[:40]
		}
		t.Run(name, func(t *testing.T) {
			d, err := ParseDecimal(tt.in)
			if tt.wantErr == nil {
				if err != nil {
					t.Fatalf("ParseDecimal(%q): %v", tt.in, err)
				}
				if got := d.String(); got != tt.want {
					t.Errorf("ParseDecimal(%q) = %s, want %s", tt.in, got, tt.want)
				}
				return
			}
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("ParseDecimal(%q) error = %v, want %v", tt.in, err, tt.wantErr)
			}
			if !strings.Contains(err.Error(), tt.msg) {
				t.Errorf("ParseDecimal(%q) error = %q, want it to contain %q", tt.in, err, tt.msg)
			}
		})
	}
}

func TestCheckDecimal(t *testing.T) {
	tests := []struct {
		name string
		d    decimal.Decimal
		ok   bool
	}{
		{"zero", decimal.Zero, true},
		{"zero with a huge exponent", decimal.New(0, 999999999), true},
		{"40 integer digits", decimal.New(1, 39), true},
		{"41 integer digits", decimal.New(1, 40), false},
		{"huge exponent", decimal.New(1, 999999999), false},
		{"30 decimal places", decimal.New(-1, -30), true},
		{"31 decimal places", decimal.New(1, -31), false},
		{"trailing zeros are not decimal places", decimal.New(1000, -32), true},
		{"long coefficient", decimal.RequireFromString("1" + strings.Repeat("0", 400) + "e-400"), false},
		{"coefficient of 200 digits", decimal.RequireFromString("1" + strings.Repeat("0", 199) + "e-190"), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := CheckDecimal(tt.d)
			if (err == nil) != tt.ok {
				t.Fatalf("CheckDecimal = %v, want ok %v", err, tt.ok)
			}
			if err != nil && !errors.Is(err, ErrDecimalRange) {
				t.Errorf("CheckDecimal error %v does not wrap ErrDecimalRange", err)
			}
		})
	}
}

func TestQuote(t *testing.T) {
	tests := []struct{ in, want string }{
		{"12", `"12"`},
		{strings.Repeat("7", 24), `"` + strings.Repeat("7", 24) + `"`},
		{strings.Repeat("7", 25), `"` + strings.Repeat("7", 20) + `…" (25 characters)`},
		{strings.Repeat("x", 19) + "é" + "yyyyyy", `"` + strings.Repeat("x", 19) + `…" (27 characters)`},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			if got := Quote(tt.in); got != tt.want {
				t.Errorf("Quote(%q) = %s, want %s", tt.in, got, tt.want)
			}
		})
	}
}
