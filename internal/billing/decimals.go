package billing

import (
	"bytes"
	"encoding/json"
	"fmt"

	"github.com/shopspring/decimal"

	"github.com/tally-metering/tally/internal/bounds"
)

// Every decimal of a plan is read through bounds.ParseDecimal, which checks
// its text in linear time before it is expanded: shopspring's own
// UnmarshalJSON would take seconds on a megabyte of digits and keep
// 1e999999999 whole, to be expanded by the first String or comparison.
// The types holding decimals decode their other fields as encoding/json
// does, refusing unknown fields as the API's decoder does.

// decodeStrict decodes b into v, refusing unknown fields.
func decodeStrict(b []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	return dec.Decode(v)
}

// readDecimal reads the JSON value raw of field name, a number or a string
// holding one, into d. An absent or null value leaves d as it is.
func readDecimal(name string, raw json.RawMessage, d *decimal.Decimal) error {
	text, ok, err := decimalText(name, raw)
	if !ok || err != nil {
		return err
	}
	v, err := bounds.ParseDecimal(text)
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	*d = v
	return nil
}

// readDecimalPtr is readDecimal for an optional decimal: null sets d to nil.
func readDecimalPtr(name string, raw json.RawMessage, d **decimal.Decimal) error {
	if raw == nil {
		return nil
	}
	if bytes.Equal(raw, []byte("null")) {
		*d = nil
		return nil
	}
	var v decimal.Decimal
	if err := readDecimal(name, raw, &v); err != nil {
		return err
	}
	*d = &v
	return nil
}

// decimalText returns the text of the JSON number or string raw; ok is
// false when raw is absent or null.
func decimalText(name string, raw json.RawMessage) (text string, ok bool, err error) {
	if raw == nil || bytes.Equal(raw, []byte("null")) {
		return "", false, nil
	}
	switch c := raw[0]; {
	case c == '"':
		if err := json.Unmarshal(raw, &text); err != nil {
			return "", false, fmt.Errorf("%s: %w", name, err)
		}
		return text, true, nil
	case c == '-' || ('0' <= c && c <= '9'):
		return string(raw), true, nil
	}
	return "", false, fmt.Errorf("%s: must be a decimal number (a JSON number or a string holding one), got JSON %s", name, bounds.Quote(string(raw)))
}

// firstError returns the first non-nil error.
func firstError(errs ...error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// UnmarshalJSON reads in, its baseFee through bounds.ParseDecimal.
func (in *PlanInput) UnmarshalJSON(b []byte) error {
	type plain PlanInput
	var aux struct {
		*plain
		BaseFee json.RawMessage `json:"baseFee"`
	}
	aux.plain = (*plain)(in)
	if err := decodeStrict(b, &aux); err != nil {
		return err
	}
	return readDecimal("baseFee", aux.BaseFee, &in.BaseFee)
}

// UnmarshalJSON reads p, its unitPrice and packageSize through
// bounds.ParseDecimal.
func (p *Pricing) UnmarshalJSON(b []byte) error {
	type plain Pricing
	var aux struct {
		*plain
		UnitPrice   json.RawMessage `json:"unitPrice"`
		PackageSize json.RawMessage `json:"packageSize"`
	}
	aux.plain = (*plain)(p)
	if err := decodeStrict(b, &aux); err != nil {
		return err
	}
	return firstError(
		readDecimal("unitPrice", aux.UnitPrice, &p.UnitPrice),
		readDecimal("packageSize", aux.PackageSize, &p.PackageSize))
}

// UnmarshalJSON reads t, its decimals through bounds.ParseDecimal.
func (t *Tier) UnmarshalJSON(b []byte) error {
	type plain Tier
	var aux struct {
		*plain
		UpTo      json.RawMessage `json:"upTo"`
		UnitPrice json.RawMessage `json:"unitPrice"`
		FlatPrice json.RawMessage `json:"flatPrice"`
	}
	aux.plain = (*plain)(t)
	if err := decodeStrict(b, &aux); err != nil {
		return err
	}
	return firstError(
		readDecimalPtr("upTo", aux.UpTo, &t.UpTo),
		readDecimal("unitPrice", aux.UnitPrice, &t.UnitPrice),
		readDecimal("flatPrice", aux.FlatPrice, &t.FlatPrice))
}

// UnmarshalJSON reads r, its unitSize through bounds.ParseDecimal.
func (r *Reporting) UnmarshalJSON(b []byte) error {
	type plain Reporting
	var aux struct {
		*plain
		UnitSize json.RawMessage `json:"unitSize"`
	}
	aux.plain = (*plain)(r)
	if err := decodeStrict(b, &aux); err != nil {
		return err
	}
	return readDecimal("unitSize", aux.UnitSize, &r.UnitSize)
}

// checkDecimal returns field's error when d is outside the range
// bounds.CheckDecimal accepts. Validation checks every decimal this way
// before comparing or printing it, either of which would expand it.
func checkDecimal(field string, d decimal.Decimal) error {
	if err := bounds.CheckDecimal(d); err != nil {
		return fmt.Errorf("%s: %w", field, err)
	}
	return nil
}
