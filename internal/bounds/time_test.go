package bounds

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"
)

func TestParseTime(t *testing.T) {
	for _, tc := range []struct {
		in      string
		want    string // RFC3339Nano in UTC; empty: an error
		errHas  string
		inRange bool // the error wraps ErrTimeRange
	}{
		{in: "2026-06-20T10:00:00Z", want: "2026-06-20T10:00:00Z"},
		{in: "2026-06-20T12:00:00.123456789+02:00", want: "2026-06-20T10:00:00.123456789Z"},
		{in: "0001-01-01T00:00:00Z", want: "0001-01-01T00:00:00Z"},
		{in: "0001-01-01T00:00:00-23:59", want: "0001-01-01T23:59:00Z"},
		{in: "9999-12-31T23:59:59Z", want: "9999-12-31T23:59:59Z"},
		{in: "9999-12-31T23:59:59.999999999Z", want: "9999-12-31T23:59:59.999999999Z"},
		{in: "9999-12-31T23:59:59+23:59", want: "9999-12-31T00:00:59Z"},
		{in: "9999-12-31T23:59:59-23:59", errHas: `"9999-12-31T23:59:59-23:59" is out of range: it falls in year 10000 in UTC`, inRange: true},
		{in: "9999-12-31T23:59:59.999999999-00:01", errHas: "year 10000", inRange: true},
		{in: "0000-01-01T00:00:00+23:59", errHas: `"0000-01-01T00:00:00+23:59" is out of range: it falls in year -1 in UTC`, inRange: true},
		{in: "0000-06-01T00:00:00Z", errHas: "year 0 in UTC", inRange: true},
		{in: "0001-01-01T00:00:00+00:01", errHas: "year 0 in UTC", inRange: true},
		{in: "2026-06-20T10:00:00+24:00", errHas: "is not an RFC 3339 time"},
		{in: "2026-06-20T10:00:00+23:60", errHas: "is not an RFC 3339 time"},
		{in: "2026-06-20T10:00:00,5Z", errHas: "is not an RFC 3339 time"},
		{in: "2026-06-20T1:00:00Z", errHas: "is not an RFC 3339 time"},
		{in: "2026-06-20T10:00:00.5+09:30", want: "2026-06-20T00:30:00.5Z"},
		{in: "2026-06-20 10:00:00Z", errHas: `"2026-06-20 10:00:00Z" is not an RFC 3339 time`},
		{in: "10000-01-01T00:00:00Z", errHas: "is not an RFC 3339 time"},
		{in: "", errHas: `"" is not an RFC 3339 time`},
		{in: strings.Repeat("9", 100), errHas: "(100 bytes in all)"},
	} {
		t.Run(tc.in, func(t *testing.T) {
			got, err := ParseTime(tc.in)
			if tc.want != "" {
				if err != nil {
					t.Fatalf("ParseTime(%q): %v", tc.in, err)
				}
				if s := got.Format(time.RFC3339Nano); s != tc.want || got.Location() != time.UTC {
					t.Errorf("ParseTime(%q) = %s in %s, want %s in UTC", tc.in, s, got.Location(), tc.want)
				}
				return
			}
			if err == nil {
				t.Fatalf("ParseTime(%q) = %s, want an error", tc.in, got.Format(time.RFC3339Nano))
			}
			if !strings.Contains(err.Error(), tc.errHas) {
				t.Errorf("ParseTime(%q) error %q does not contain %q", tc.in, err, tc.errHas)
			}
			if errors.Is(err, ErrTimeRange) != tc.inRange {
				t.Errorf("ParseTime(%q) error %q: errors.Is(ErrTimeRange) = %v, want %v", tc.in, err, !tc.inRange, tc.inRange)
			}
		})
	}
}

func TestCheckTime(t *testing.T) {
	for _, tc := range []struct {
		t  time.Time
		ok bool
	}{
		{time.Time{}, true},
		{MinTime, true},
		{MaxTime, true},
		{MaxTime.In(time.FixedZone("", 14*3600)), true},
		{MinTime.Add(-time.Nanosecond), false},
		{MaxTime.Add(time.Nanosecond), false},
		{time.Date(12000, 1, 1, 0, 0, 0, 0, time.UTC), false},
	} {
		err := CheckTime(tc.t)
		if (err == nil) != tc.ok {
			t.Errorf("CheckTime(%s) = %v, want ok %v", tc.t, err, tc.ok)
		}
		if err != nil && !errors.Is(err, ErrTimeRange) {
			t.Errorf("CheckTime(%s) = %v, does not wrap ErrTimeRange", tc.t, err)
		}
	}
}

func TestClampTime(t *testing.T) {
	east := time.FixedZone("east", 14*3600)
	west := time.FixedZone("west", -12*3600)
	for _, tc := range []struct {
		in   time.Time
		want string
	}{
		{time.Date(2026, 6, 20, 10, 0, 0, 0, east), "2026-06-20T10:00:00+14:00"},
		{time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC), "9999-12-31T23:59:59.999999999Z"},
		{time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC).In(west), "9999-12-31T11:59:59.999999999-12:00"},
		// MaxTime at +14:00 is in year 10000 there: shown in UTC.
		{time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC).In(east), "9999-12-31T23:59:59.999999999Z"},
		{time.Date(9999, 12, 31, 12, 0, 0, 0, time.UTC).In(east), "9999-12-31T12:00:00Z"},
		{time.Date(0, 6, 1, 0, 0, 0, 0, time.UTC), "0001-01-01T00:00:00Z"},
		{MinTime.In(west), "0000-12-31T12:00:00-12:00"},
	} {
		got := ClampTime(tc.in)
		if s := got.Format(time.RFC3339Nano); s != tc.want {
			t.Errorf("ClampTime(%s) = %s, want %s", tc.in, s, tc.want)
		}
		if _, err := json.Marshal(got); err != nil {
			t.Errorf("json.Marshal(ClampTime(%s)): %v", tc.in, err)
		}
	}
}

// FuzzParseTime checks that ParseTime never panics, and that whatever it
// accepts lies within the bounds, is in UTC, and round-trips through
// RFC 3339 and JSON.
func FuzzParseTime(f *testing.F) {
	for _, s := range []string{
		"2026-06-20T10:00:00Z", "9999-12-31T23:59:59-23:59", "0000-01-01T00:00:00+23:59",
		"9999-12-31T23:59:59.999999999Z", "0001-01-01T00:00:00Z", "2026-02-29T00:00:00Z",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, err := ParseTime(s)
		if err != nil {
			if !strings.Contains(err.Error(), QuoteText(s)) {
				t.Errorf("ParseTime(%q) error %q does not quote the input", s, err)
			}
			return
		}
		if !InRange(got) || CheckTime(got) != nil {
			t.Fatalf("ParseTime(%q) = %s, outside [%s, %s]", s, got.Format(time.RFC3339Nano), MinTime.Format(time.RFC3339Nano), MaxTime.Format(time.RFC3339Nano))
		}
		if got.Location() != time.UTC {
			t.Errorf("ParseTime(%q) is in %s, want UTC", s, got.Location())
		}
		back, err := time.Parse(time.RFC3339Nano, got.Format(time.RFC3339Nano))
		if err != nil || !back.Equal(got) {
			t.Fatalf("ParseTime(%q) = %s does not round-trip through RFC 3339: %v", s, got.Format(time.RFC3339Nano), err)
		}
		b, err := json.Marshal(got)
		if err != nil {
			t.Fatalf("json.Marshal(ParseTime(%q)): %v", s, err)
		}
		var fromJSON time.Time
		if err := json.Unmarshal(b, &fromJSON); err != nil || !fromJSON.Equal(got) {
			t.Fatalf("ParseTime(%q) does not round-trip through JSON %s: %v", s, b, err)
		}
		if _, err := json.Marshal(ClampTime(got.Add(366 * 24 * time.Hour))); err != nil {
			t.Fatalf("json.Marshal(ClampTime(a year after ParseTime(%q))): %v", s, err)
		}
	})
}
