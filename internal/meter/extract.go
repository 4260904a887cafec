package meter

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/ohler55/ojg/jp"
	"github.com/shopspring/decimal"
	"github.com/tidwall/gjson"

	"github.com/tally-metering/tally/internal/bounds"
)

// Compiled is a meter with its JSONPath expressions parsed, ready to read
// events.
type Compiled struct {
	Meter
	value  *path
	groups []groupPath
}

type groupPath struct {
	name string
	path *path
}

// path is a compiled JSONPath. Plain member chains ($.a.b, $['a b']) — nearly
// every meter's — are read straight from the data's bytes (with gjson's
// scanner, which keeps a number's exact text); any other expression is
// evaluated on the parsed data (ojg). Both take the last of repeated member
// names, as the event decoder does.
type path struct {
	src  string
	expr jp.Expr
	keys []string // the member names when the expression is a plain chain
}

func compilePath(p string) *path {
	x := jp.MustParseString(p)
	out := &path{src: p, expr: x}
	if len(x) < 2 {
		return out
	}
	if _, ok := x[0].(jp.Root); !ok {
		return out
	}
	keys := make([]string, 0, len(x)-1)
	for _, f := range x[1:] {
		c, ok := f.(jp.Child)
		if !ok {
			return out
		}
		keys = append(keys, string(c))
	}
	out.keys = keys
	return out
}

// member walks raw through the object members named keys, taking the last
// member of a repeated name at each level.
func member(raw []byte, keys []string) gjson.Result {
	cur := gjson.ParseBytes(raw)
	for _, k := range keys {
		if !cur.IsObject() {
			return gjson.Result{}
		}
		var found gjson.Result
		cur.ForEach(func(name, v gjson.Result) bool {
			if name.Str == k {
				found = v
			}
			return true
		})
		if !found.Exists() {
			return gjson.Result{}
		}
		cur = found
	}
	return cur
}

// get returns the values the path selects in d. Results are cached in d,
// so meters reading the same property of an event read it once.
func (p *path) get(d *Data) ([]any, error) {
	for i := range d.cache {
		if d.cache[i].src == p.src {
			return d.cache[i].got, d.cache[i].err
		}
	}
	got, err := p.eval(d)
	d.cache = append(d.cache, cached{src: p.src, got: got, err: err})
	return got, err
}

func (p *path) eval(d *Data) ([]any, error) {
	if p.keys != nil {
		r := member(d.raw, p.keys)
		if !r.Exists() {
			return nil, nil
		}
		return []any{resultValue(r)}, nil
	}
	tree, err := d.tree()
	if err != nil || tree == nil {
		return nil, err
	}
	return p.expr.Get(tree), nil
}

// resultValue converts a gjson result to the values ParseData produces.
func resultValue(r gjson.Result) any {
	switch r.Type {
	case gjson.Null:
		return nil
	case gjson.False:
		return false
	case gjson.True:
		return true
	case gjson.Number:
		return json.Number(r.Raw)
	case gjson.String:
		return r.Str
	}
	v, err := ParseData([]byte(r.Raw))
	if err != nil {
		return r.Raw
	}
	return v
}

// Data is an event's data object, parsed only if a meter needs more than a
// plain member chain.
type Data struct {
	raw    []byte
	parsed any
	err    error
	done   bool
	cache  []cached
	buf    [4]cached
}

type cached struct {
	src string
	got []any
	err error
}

// NewData wraps the raw data object (nil or "null" for none).
func NewData(raw []byte) *Data {
	if bytes.Equal(raw, []byte("null")) {
		raw = nil
	}
	d := &Data{raw: raw}
	d.cache = d.buf[:0]
	return d
}

func (d *Data) tree() (any, error) {
	if !d.done {
		d.parsed, d.err = ParseData(d.raw)
		d.done = true
	}
	return d.parsed, d.err
}

// Compile validates m and parses its paths. It accepts the paths that
// Validate refuses only for their cost, so that a meter stored before that
// rule still counts; new and changed meters pass Validate first.
func Compile(m Meter) (*Compiled, error) {
	if err := m.validate(false); err != nil {
		return nil, err
	}
	c := &Compiled{Meter: m}
	if m.ValueProperty != "" && m.Aggregation.NeedsValue() {
		c.value = compilePath(m.ValueProperty)
	}
	for _, name := range sortedKeys(m.GroupBy) {
		c.groups = append(c.groups, groupPath{name: name, path: compilePath(m.GroupBy[name])})
	}
	return c, nil
}

// Contribution is what one event adds to a meter: the group it falls in and
// its value (zero for COUNT). For UNIQUE_COUNT, Unique is the value's
// canonical text.
type Contribution struct {
	GroupKey string
	Value    decimal.Decimal
	Unique   string
}

// Applies reports whether an event of this type and time is counted by the
// meter at all.
func (c *Compiled) Applies(eventType string, t time.Time) bool {
	if eventType != c.EventType {
		return false
	}
	return c.EventFrom == nil || !t.Before(*c.EventFrom)
}

// Extract reads the event's contribution from its data. The error says why
// the meter can't count the event.
func (c *Compiled) Extract(data *Data) (Contribution, error) {
	var out Contribution
	if len(c.groups) > 0 {
		out.GroupKey = c.groupKey(data)
	}
	if c.value == nil {
		return out, nil
	}
	v, err := c.lookup(data)
	if err != nil {
		return out, err
	}
	if c.Aggregation == UniqueCount {
		s, ok := scalarText(v)
		if !ok {
			return out, fmt.Errorf("meter %s: value property %s is %s, expected a string or number", c.Slug, c.ValueProperty, jsonKind(v))
		}
		out.Unique = s
		return out, nil
	}
	d, err := toDecimal(v)
	if err != nil {
		return out, fmt.Errorf("meter %s: value property %s %w", c.Slug, c.ValueProperty, err)
	}
	out.Value = d
	return out, nil
}

func (c *Compiled) lookup(data *Data) (any, error) {
	if len(data.raw) == 0 {
		return nil, fmt.Errorf("meter %s: event has no data, value property %s is missing", c.Slug, c.ValueProperty)
	}
	got, err := c.value.get(data)
	if err != nil {
		return nil, fmt.Errorf("meter %s: %w", c.Slug, err)
	}
	switch len(got) {
	case 0:
		return nil, fmt.Errorf("meter %s: value property %s is missing", c.Slug, c.ValueProperty)
	case 1:
		return got[0], nil
	default:
		return nil, fmt.Errorf("meter %s: value property %s matches %d values, expected one", c.Slug, c.ValueProperty, len(got))
	}
}

func (c *Compiled) groupKey(data *Data) string {
	if len(data.raw) == 0 {
		return ""
	}
	var b []byte
	for _, g := range c.groups {
		got, err := g.path.get(data)
		if err != nil || len(got) != 1 {
			continue
		}
		s, ok := groupText(got[0])
		if !ok {
			continue
		}
		if b == nil {
			b = append(b, '{')
		} else {
			b = append(b, ',')
		}
		b = appendJSONString(b, g.name)
		b = append(b, ':')
		b = appendJSONString(b, s)
	}
	if b == nil {
		return ""
	}
	return string(append(b, '}'))
}

// appendJSONString appends s as a JSON string, escaped as encoding/json
// does for the characters JSON requires escaping.
func appendJSONString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '"' || c == '\\':
			b = append(b, '\\', c)
		case c < 0x20:
			b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
		default:
			b = append(b, c)
		}
	}
	return append(b, '"')
}

// EncodeGroupKey turns group values into the canonical key rollups are stored
// under: a JSON object with sorted keys, or "" when there are none.
func EncodeGroupKey(vals map[string]string) string {
	if len(vals) == 0 {
		return ""
	}
	keys := make([]string, 0, len(vals))
	for k := range vals {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	b := []byte{'{'}
	for i, k := range keys {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendJSONString(b, k)
		b = append(b, ':')
		b = appendJSONString(b, vals[k])
	}
	return string(append(b, '}'))
}

// DecodeGroupKey is the inverse of EncodeGroupKey.
func DecodeGroupKey(key string) (map[string]string, error) {
	if key == "" {
		return map[string]string{}, nil
	}
	var m map[string]string
	if err := json.Unmarshal([]byte(key), &m); err != nil {
		return nil, fmt.Errorf("decode group key %q: %w", key, err)
	}
	return m, nil
}

// ParseData parses an event's data object for JSONPath evaluation, keeping
// numbers as their exact decimal text. A nil or null data gives nil.
func ParseData(raw []byte) (any, error) {
	if len(raw) == 0 || bytes.Equal(raw, []byte("null")) {
		return nil, nil
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, fmt.Errorf("parse data: %w", err)
	}
	return v, nil
}

// errNotNumber is wrapped by value errors for values that are not numbers.
var errNotNumber = bounds.ErrNotDecimal

// toDecimal reads a value as a decimal within the range tally supports
// (bounds.ParseDecimal). Errors quote the value as sent, shortened
// visibly when long.
func toDecimal(v any) (decimal.Decimal, error) {
	switch x := v.(type) {
	case json.Number:
		d, err := bounds.ParseDecimal(string(x))
		if err != nil {
			return decimal.Decimal{}, valueError("the number", string(x), err)
		}
		return d, nil
	case string:
		s := strings.TrimSpace(x)
		if s != x || s == "" || !isDecimalText(s) {
			return decimal.Decimal{}, fmt.Errorf("is the string %s, which is %w", bounds.Quote(x), errNotNumber)
		}
		d, err := bounds.ParseDecimal(s)
		if err != nil {
			return decimal.Decimal{}, valueError("the string", x, err)
		}
		return d, nil
	case int64:
		return decimal.NewFromInt(x), nil
	case float64:
		return decimal.NewFromFloat(x), nil
	default:
		return decimal.Decimal{}, fmt.Errorf("is %s, %w", jsonKind(v), errNotNumber)
	}
}

// valueError says what is wrong with the value text of the given kind.
func valueError(kind, text string, err error) error {
	var de *bounds.DecimalError
	if errors.As(err, &de) {
		// The reason says the bound already; the sentinel stays for errors.Is.
		return &wrapped{msg: fmt.Sprintf("is %s %s, which %s", kind, bounds.Quote(text), de.Reason), err: de.Err}
	}
	return fmt.Errorf("is %s %s: %w", kind, bounds.Quote(text), err)
}

// isDecimalText accepts JSON-style number text: optional sign, digits with an
// optional fraction, optional exponent. It refuses NaN, Inf, hex and the like.
func isDecimalText(s string) bool {
	i := 0
	if i < len(s) && (s[i] == '-' || s[i] == '+') {
		i++
	}
	digits := 0
	for i < len(s) && s[i] >= '0' && s[i] <= '9' {
		i++
		digits++
	}
	if i < len(s) && s[i] == '.' {
		i++
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			i++
			digits++
		}
	}
	if digits == 0 {
		return false
	}
	if i < len(s) && (s[i] == 'e' || s[i] == 'E') {
		i++
		if i < len(s) && (s[i] == '-' || s[i] == '+') {
			i++
		}
		exp := 0
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			i++
			exp++
		}
		if exp == 0 {
			return false
		}
	}
	return i == len(s)
}

func scalarText(v any) (string, bool) {
	switch x := v.(type) {
	case string:
		return x, true
	case json.Number:
		// 1, 1.0 and 1e0 are the same number: count them once. A number
		// outside the supported range keeps its text, which is cheap.
		if d, err := bounds.ParseDecimal(string(x)); err == nil {
			return d.String(), true
		}
		return string(x), true
	case int64:
		return strconv.FormatInt(x, 10), true
	case float64:
		return decimal.NewFromFloat(x).String(), true
	}
	return "", false
}

func groupText(v any) (string, bool) {
	if s, ok := scalarText(v); ok {
		return s, true
	}
	switch x := v.(type) {
	case bool:
		return strconv.FormatBool(x), true
	case nil:
		return "", false
	}
	b, err := json.Marshal(v)
	if err != nil {
		return "", false
	}
	return string(b), true
}

func jsonKind(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case bool:
		return "a boolean"
	case string:
		return "a string"
	case json.Number, int64, float64:
		return "a number"
	case []any:
		return "an array"
	case map[string]any:
		return "an object"
	}
	return fmt.Sprintf("%T", v)
}

// wrapped is an error with its own message that still unwraps to err.
type wrapped struct {
	msg string
	err error
}

func (e *wrapped) Error() string { return e.msg }
func (e *wrapped) Unwrap() error { return e.err }
