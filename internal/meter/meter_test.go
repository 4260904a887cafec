package meter

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/shopspring/decimal"
)

func TestValidate(t *testing.T) {
	ok := Meter{Slug: "api_requests", EventType: "request", Aggregation: Sum, ValueProperty: "$.value", GroupBy: map[string]string{"route": "$.route"}}
	tests := []struct {
		name    string
		mutate  func(*Meter)
		wantErr []string
	}{
		{"valid", func(*Meter) {}, nil},
		{"count needs no value", func(m *Meter) { m.Aggregation = Count; m.ValueProperty = "" }, nil},
		{"empty slug", func(m *Meter) { m.Slug = "" }, []string{"slug: required"}},
		{"bad slug", func(m *Meter) { m.Slug = "API-requests" }, []string{"slug: \"API-requests\""}},
		{"double underscore", func(m *Meter) { m.Slug = "a__b" }, []string{"slug:"}},
		{"long slug", func(m *Meter) { m.Slug = strings.Repeat("a", 65) }, []string{"at most 64"}},
		{"no event type", func(m *Meter) { m.EventType = " " }, []string{"eventType: required"}},
		{"bad aggregation", func(m *Meter) { m.Aggregation = "MEDIAN" }, []string{`aggregation: "MEDIAN" is not one of`}},
		{"sum without value", func(m *Meter) { m.ValueProperty = "" }, []string{"valueProperty: required for aggregation SUM"}},
		{"value not a path", func(m *Meter) { m.ValueProperty = "value" }, []string{"must start with $"}},
		{"bad path", func(m *Meter) { m.ValueProperty = "$.[" }, []string{"not a valid JSONPath"}},
		{"reserved group", func(m *Meter) { m.GroupBy = map[string]string{"subject": "$.s"} }, []string{`"subject" is reserved`}},
		{"bad group key", func(m *Meter) { m.GroupBy = map[string]string{"a-b": "$.s"} }, []string{`key "a-b"`}},
		{"eventFrom in year 10000", func(m *Meter) { t := time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC); m.EventFrom = &t },
			[]string{"eventFrom: 10000-01-01T00:00:00Z is out of range: it falls in year 10000 in UTC"}},
		{"eventFrom in year 9999", func(m *Meter) { t := time.Date(9999, 12, 31, 0, 0, 0, 0, time.UTC); m.EventFrom = &t }, nil},
		{"one recursive descent", func(m *Meter) { m.ValueProperty = "$..usage.tokens" }, nil},
		{"wildcards, slices and unions", func(m *Meter) {
			m.GroupBy = map[string]string{"a": "$.a[*].b", "b": "$.a[1:3]", "c": "$['x','y'].z", "d": "$.a[0,2]", "e": "$.a[-1,-2]"}
		}, nil},
		{"two recursive descents", func(m *Meter) { m.ValueProperty = "$..x..tokens" },
			[]string{`valueProperty: "$..x..tokens" uses recursive descent (..) more than once; a meter path may use it at most once`}},
		{"filter", func(m *Meter) { m.GroupBy = map[string]string{"k": "$.items[?(@.kind == 'llm')].model"} },
			[]string{`groupBy.k: "$.items[?(@.kind == 'llm')].model" uses a filter expression`}},
		{"filter with a descent", func(m *Meter) { m.ValueProperty = "$..[?(@..tokens)]" }, []string{"uses a filter expression"}},
		{"repeated union member", func(m *Meter) { m.ValueProperty = "$['a','a']" }, []string{`lists ['a'] twice in the union ['a','a']`}},
		{"union of indices of both signs", func(m *Meter) { m.ValueProperty = "$.a[0,-1]" }, []string{"mixes negative and non-negative indices in the union [0,-1]"}},
		{"every problem at once", func(m *Meter) { m.Slug = ""; m.EventType = ""; m.Aggregation = "X" },
			[]string{"slug: required", "eventType: required", "aggregation:"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := ok
			tt.mutate(&m)
			err := m.Validate()
			if len(tt.wantErr) == 0 {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate() = nil, want errors containing %q", tt.wantErr)
			}
			for _, w := range tt.wantErr {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Validate() = %q, want it to contain %q", err, w)
				}
			}
		})
	}
}

func mustCompile(t *testing.T, m Meter) *Compiled {
	t.Helper()
	c, err := Compile(m)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestExtract(t *testing.T) {
	sum := mustCompile(t, Meter{Slug: "v", EventType: "e", Aggregation: Sum, ValueProperty: "$.usage.value",
		GroupBy: map[string]string{"route": "$.route", "code": "$.code"}})
	uniq := mustCompile(t, Meter{Slug: "u", EventType: "e", Aggregation: UniqueCount, ValueProperty: "$.user"})
	tests := []struct {
		name      string
		m         *Compiled
		data      string
		wantValue string
		wantGroup string
		wantUniq  string
		wantErr   string
	}{
		{"number", sum, `{"usage":{"value":0.1},"route":"/a","code":200}`, "0.1", `{"code":"200","route":"/a"}`, "", ""},
		{"numeric string", sum, `{"usage":{"value":"12.50"}}`, "12.5", "", "", ""},
		{"exponent", sum, `{"usage":{"value":1e3}}`, "1000", "", "", ""},
		{"many digits stay exact", sum, `{"usage":{"value":0.100000000000000005551115123125}}`, "0.100000000000000005551115123125", "", "", ""},
		{"missing value", sum, `{"route":"/a"}`, "", "", "", "value property $.usage.value is missing"},
		{"no data", sum, ``, "", "", "", "event has no data"},
		{"NaN string", sum, `{"usage":{"value":"NaN"}}`, "", "", "", "not a number"},
		{"Infinity string", sum, `{"usage":{"value":"Infinity"}}`, "", "", "", "not a number"},
		{"padded string", sum, `{"usage":{"value":" 1"}}`, "", "", "", "not a number"},
		{"bool", sum, `{"usage":{"value":true}}`, "", "", "", "is a boolean"},
		{"huge exponent", sum, `{"usage":{"value":1e20000000}}`, "", "", "", "outside the supported range"},
		{"huge exponent string", sum, `{"usage":{"value":"1e400"}}`, "", "", "", "outside the supported range"},
		{"too many decimals", sum, `{"usage":{"value":1e-31}}`, "", "", "", "outside the supported range"},
		{"largest accepted", sum, `{"usage":{"value":9999999999999999999999999999999999999999}}`, "9999999999999999999999999999999999999999", "", "", ""},
		{"smallest accepted", sum, `{"usage":{"value":-1e-30}}`, "-0.000000000000000000000000000001", "", "", ""},
		{"zero with any exponent", sum, `{"usage":{"value":0e999}}`, "0", "", "", ""},
		{"zero with an exponent beyond int32", sum, `{"usage":{"value":0e99999999999}}`, "0", "", "", ""},
		{"51 digits quoted whole-length", sum, `{"usage":{"value":123456789012345678901234567890123456789012345678901}}`, "", "", "",
			`value property $.usage.value is the number "12345678901234567890…" (51 characters), which has 51 integer digits, outside the supported range of at most 40`},
		{"51 digits in a string", sum, `{"usage":{"value":"123456789012345678901234567890123456789012345678901"}}`, "", "", "",
			`is the string "12345678901234567890…" (51 characters), which has 51 integer digits`},
		{"unique huge number keeps its text", uniq, `{"user":1e20000000}`, "", "", "1e20000000", ""},
		{"object", sum, `{"usage":{"value":{}}}`, "", "", "", "is an object"},
		{"group of missing and null values", sum, `{"usage":{"value":1},"route":null}`, "1", "", "", ""},
		{"unique string", uniq, `{"user":"alice"}`, "", "", "alice", ""},
		{"unique number normalised", uniq, `{"user":1.50}`, "", "", "1.5", ""},
		{"unique object", uniq, `{"user":{"id":1}}`, "", "", "", "expected a string or number"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.m.Extract(NewData([]byte(tt.data)))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Extract() error = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Extract() error = %v", err)
			}
			if tt.wantValue != "" && got.Value.String() != tt.wantValue {
				t.Errorf("value = %s, want %s", got.Value, tt.wantValue)
			}
			if got.GroupKey != tt.wantGroup {
				t.Errorf("group key = %q, want %q", got.GroupKey, tt.wantGroup)
			}
			if got.Unique != tt.wantUniq {
				t.Errorf("unique = %q, want %q", got.Unique, tt.wantUniq)
			}
		})
	}
}

// TestFastAndTreePathsAgree checks that plain member chains, read straight
// from the bytes, give what the general JSONPath evaluation gives.
func TestFastAndTreePathsAgree(t *testing.T) {
	data := []byte(`{"a":{"b c":"x","n":12.50,"z":null,"t":true,"o":{"k":[1,2]}},"dot.key":3,"arr":[{"v":"9.99"}],"dup":1,"dup":2,"list":[5,6]}`)
	for _, p := range []string{"$.a['b c']", "$.a.n", "$.a.z", "$.a.t", "$.a.o", "$['dot.key']", "$.missing", "$.a.missing.deeper", "$.dup", "$.list.0", "$['list']['1']"} {
		fast := compilePath(p)
		if fast.keys == nil {
			t.Fatalf("%s: expected a plain member chain", p)
		}
		slow := &path{expr: fast.expr}
		gf, err := fast.get(NewData(data))
		if err != nil {
			t.Fatal(err)
		}
		gs, err := slow.get(NewData(data))
		if err != nil {
			t.Fatal(err)
		}
		if fmt.Sprint(gf) != fmt.Sprint(gs) {
			t.Errorf("%s: fast path gives %v, JSONPath evaluation gives %v", p, gf, gs)
		}
	}
	for _, p := range []string{"$.arr[0].v", "$..n", "$.a.*"} {
		if compilePath(p).keys != nil {
			t.Errorf("%s must not take the fast path", p)
		}
	}
	m := mustCompile(t, Meter{Slug: "v", EventType: "e", Aggregation: Sum, ValueProperty: "$.arr[0].v"})
	got, err := m.Extract(NewData(data))
	if err != nil || got.Value.String() != "9.99" {
		t.Fatalf("Extract with an array index = %v, %v; want 9.99", got.Value, err)
	}
}

func TestGroupKeyRoundTrip(t *testing.T) {
	in := map[string]string{"b": `quote " and \ slash`, "a": "ünïcode", "c": ""}
	key := EncodeGroupKey(in)
	if want := `{"a":"ünïcode","b":"quote \" and \\ slash","c":""}`; key != want {
		t.Fatalf("EncodeGroupKey = %s, want %s", key, want)
	}
	out, err := DecodeGroupKey(key)
	if err != nil {
		t.Fatal(err)
	}
	if len(out) != 3 || out["b"] != in["b"] || out["a"] != in["a"] || out["c"] != "" {
		t.Fatalf("DecodeGroupKey = %v, want %v", out, in)
	}
	if EncodeGroupKey(nil) != "" {
		t.Fatal("no groups must encode as the empty key")
	}
}

func TestApplies(t *testing.T) {
	from := time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC)
	c := mustCompile(t, Meter{Slug: "c", EventType: "e", Aggregation: Count, EventFrom: &from})
	if c.Applies("other", from) {
		t.Error("applies to another event type")
	}
	if c.Applies("e", from.Add(-time.Nanosecond)) {
		t.Error("applies to an event before eventFrom")
	}
	if !c.Applies("e", from) {
		t.Error("does not apply to an event at eventFrom")
	}
}

func d(s string) decimal.Decimal { return decimal.RequireFromString(s) }

func TestStateAggregations(t *testing.T) {
	var s State
	s.Add(d("0.1"), 100, 1)
	s.Add(d("0.2"), 300, 2)
	s.Add(d("-5"), 200, 3)
	s.Add(d("7"), 300, 0) // same time as seq 2 but ingested earlier: not the latest
	checks := map[Aggregation]string{Sum: "2.3", Count: "4", Min: "-5", Max: "7", Latest: "0.2", Avg: "0.575"}
	for agg, want := range checks {
		if got := s.Value(agg).String(); got != want {
			t.Errorf("%s = %s, want %s", agg, got, want)
		}
	}
}

func TestStateAvgRounding(t *testing.T) {
	var s State
	s.Add(d("1"), 1, 1)
	s.Add(d("0"), 2, 2)
	s.Add(d("0"), 3, 3)
	if got, want := s.Value(Avg).String(), "0.33333333333333333333"; got != want {
		t.Fatalf("AVG = %s, want %s (rounded to %d places)", got, want, AvgScale)
	}
}

// TestStateMergeIsOrderFree checks that merging partial states in any order
// gives the state of adding every value to one.
func TestStateMergeIsOrderFree(t *testing.T) {
	vals := []string{"3", "0.5", "-2", "10", "10", "0.25"}
	var whole State
	parts := make([]State, 3)
	for i, v := range vals {
		whole.Add(d(v), int64(i%4), int64(i))
		parts[i%3].Add(d(v), int64(i%4), int64(i))
	}
	for _, order := range [][]int{{0, 1, 2}, {2, 1, 0}, {1, 2, 0}} {
		var m State
		for _, i := range order {
			m.Merge(parts[i])
		}
		m.Merge(State{}) // merging nothing changes nothing
		for _, agg := range []Aggregation{Sum, Count, Min, Max, Latest, Avg} {
			if !m.Value(agg).Equal(whole.Value(agg)) {
				t.Errorf("order %v: %s = %s, want %s", order, agg, m.Value(agg), whole.Value(agg))
			}
		}
	}
}

// TestObserveMatchesAdd checks that the ingest path's Observe and MergeFor
// give every aggregation the same value as Add and Merge.
func TestObserveMatchesAdd(t *testing.T) {
	vals := []string{"3", "0.5", "-2", "10", "10", "0.25", "7"}
	for _, agg := range []Aggregation{Sum, Avg, Min, Max, Latest, Count} {
		var whole, observed State
		parts := make([]State, 3)
		for i, v := range vals {
			ts, seq := int64(i%3), int64(i)
			whole.Add(d(v), ts, seq)
			observed.Observe(agg, d(v), ts, seq)
			parts[i%3].Observe(agg, d(v), ts, seq)
		}
		var merged State
		for _, i := range []int{2, 0, 1} {
			merged.MergeFor(agg, parts[i])
		}
		for name, s := range map[string]State{"Observe": observed, "MergeFor": merged} {
			if !s.Value(agg).Equal(whole.Value(agg)) || s.Count != whole.Count {
				t.Errorf("%s %s = %s (count %d), Add gives %s (count %d)", name, agg, s.Value(agg), s.Count, whole.Value(agg), whole.Count)
			}
		}
	}
}

// TestCompileKeepsStoredCostlyPaths: a meter stored before the path cost
// rule still compiles, so that the server still starts; creating or
// changing one runs Validate, which refuses it.
func TestCompileKeepsStoredCostlyPaths(t *testing.T) {
	m := Meter{Slug: "m", EventType: "e", Aggregation: Sum, ValueProperty: "$..x..tokens"}
	if err := m.Validate(); err == nil {
		t.Fatal("Validate() = nil, want the path refused")
	}
	c, err := Compile(m)
	if err != nil {
		t.Fatalf("Compile: %v", err)
	}
	got, err := c.Extract(NewData([]byte(`{"x":{"tokens":3}}`)))
	if err != nil || got.Value.String() != "3" {
		t.Errorf("Extract = %v, %v; want 3", got.Value, err)
	}
}
