package usage

import (
	"strings"
	"testing"
	"time"

	"github.com/tally-metering/tally/internal/meter"
)

func TestQueryValidate(t *testing.T) {
	m := testMeter(meter.Sum, "model", "region")
	tests := []struct {
		name string
		q    Query
		want []string // one substring per expected error, in order
	}{
		{name: "minimal", q: Query{Meter: m}},
		{
			name: "everything valid",
			q: Query{
				Meter:         m,
				From:          tp(t, "2026-01-15T10:00:00Z"),
				To:            tp(t, "2026-01-15T16:00:00+05:30"),
				WindowSize:    WindowSizeMonth,
				TimeZone:      mustLoc(t, "Asia/Kolkata"),
				Subjects:      []string{"s1", "s2"},
				GroupBy:       []string{"subject", "model", "region", "model"},
				FilterGroupBy: map[string]string{"model": "gpt", "region": ""},
			},
		},
		{name: "from only", q: Query{Meter: m, From: tp(t, "2026-01-15T10:00:00Z")}},
		{name: "to only", q: Query{Meter: m, To: tp(t, "2026-01-15T10:00:00Z")}},
		{
			name: "unknown group by key",
			q:    Query{Meter: m, GroupBy: []string{"model", "color"}},
			want: []string{`groupBy: unknown key "color": meter api_calls allows "model", "region", "subject"`},
		},
		{
			name: "group by key on a meter without groups",
			q:    Query{Meter: testMeter(meter.Count), GroupBy: []string{"model"}},
			want: []string{`groupBy: unknown key "model": meter api_calls allows "subject"`},
		},
		{
			name: "unknown filter key",
			q:    Query{Meter: m, FilterGroupBy: map[string]string{"color": "red"}},
			want: []string{`filterGroupBy: unknown key "color": meter api_calls allows "model", "region"`},
		},
		{
			name: "filter on subject",
			q:    Query{Meter: testMeter(meter.Count), FilterGroupBy: map[string]string{"subject": "s1"}},
			want: []string{`filterGroupBy: unknown key "subject": meter api_calls has no group-by keys (filter subjects with the subject parameter)`},
		},
		{
			name: "from equals to",
			q:    Query{Meter: m, From: tp(t, "2026-01-15T10:00:00Z"), To: tp(t, "2026-01-15T10:00:00Z")},
			want: []string{"from: 2026-01-15T10:00:00Z is not before to 2026-01-15T10:00:00Z"},
		},
		{
			name: "from after to",
			q:    Query{Meter: m, From: tp(t, "2026-01-16T00:00:00Z"), To: tp(t, "2026-01-15T00:00:00Z")},
			want: []string{"from: 2026-01-16T00:00:00Z is not before to"},
		},
		{
			name: "from not on a minute",
			q:    Query{Meter: m, From: tp(t, "2026-01-15T10:00:30Z")},
			want: []string{"from: 2026-01-15T10:00:30Z is not on a whole minute; usage is rolled up per minute"},
		},
		{
			name: "to not on a minute by a nanosecond",
			q:    Query{Meter: m, To: tp(t, "2026-01-15T10:00:00.000000001Z")},
			want: []string{"to: 2026-01-15T10:00:00.000000001Z is not on a whole minute; usage is rolled up per minute"},
		},
		{
			name: "invalid window size",
			q:    Query{Meter: m, WindowSize: "WEEK"},
			want: []string{`windowSize: "WEEK" is not one of MINUTE, HOUR, DAY, MONTH`},
		},
		{
			name: "window size must be canonical",
			q:    Query{Meter: m, WindowSize: "day"},
			want: []string{`windowSize: "day"`},
		},
		{
			name: "invalid aggregation",
			q:    Query{Meter: testMeter("MEDIAN")},
			want: []string{`meter: aggregation "MEDIAN" of meter api_calls is not valid`},
		},
		{
			name: "every problem at once",
			q: Query{
				Meter:         m,
				From:          tp(t, "2026-01-16T00:00:30Z"),
				To:            tp(t, "2026-01-15T00:00:00.5Z"),
				WindowSize:    "WEEK",
				GroupBy:       []string{"color", "subject", "size"},
				FilterGroupBy: map[string]string{"b": "1", "a": "2"},
			},
			want: []string{
				`windowSize: "WEEK"`,
				"from: 2026-01-16T00:00:30Z is not on a whole minute",
				"to: 2026-01-15T00:00:00.5Z is not on a whole minute",
				"from: 2026-01-16T00:00:30Z is not before to 2026-01-15T00:00:00.5Z",
				`groupBy: unknown key "color"`,
				`groupBy: unknown key "size"`,
				`filterGroupBy: unknown key "a"`,
				`filterGroupBy: unknown key "b"`,
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.q.Validate()
			if len(tt.want) == 0 {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate() = nil, want %d errors", len(tt.want))
			}
			lines := strings.Split(err.Error(), "\n")
			if len(lines) != len(tt.want) {
				t.Fatalf("Validate() gave %d errors, want %d:\n%v", len(lines), len(tt.want), err)
			}
			for i, w := range tt.want {
				if !strings.Contains(lines[i], w) {
					t.Errorf("error %d = %q, want containing %q", i, lines[i], w)
				}
			}
		})
	}
}

// TestQueryValidateTimesInZone checks that the whole-minute rule is about
// the instant, so times written with an offset of :30 or :45 are fine.
func TestQueryValidateTimesInZone(t *testing.T) {
	from := time.Date(2026, 1, 15, 10, 0, 0, 0, mustLoc(t, "Asia/Kathmandu"))
	to := from.Add(time.Hour)
	q := Query{Meter: testMeter(meter.Count), From: &from, To: &to}
	if err := q.Validate(); err != nil {
		t.Fatalf("Validate() = %v", err)
	}
}
