package bounds

import (
	"errors"
	"fmt"
	"strconv"
	"time"
	"unicode/utf8"
)

// MinTime and MaxTime are the earliest and latest instants tally accepts:
// the first and last instant of years 0001 and 9999 in UTC.
//
// The rule is on the UTC instant, not on the digits written: an input may
// use any offset, but "9999-12-31T23:59:59-23:59" is 10000-01-01T23:58:59Z
// and is refused, and "0001-01-01T00:00:00+01:00" is in year 0000 in UTC and
// is refused too. Year 0000 is left out so that every accepted instant still
// has a year in 0000–9999 when shown in any time zone west of UTC (offsets
// reach −12:00), which RFC 3339 and encoding/json require. Times computed
// from accepted ones (a window end one minute after the last minute, a
// period end a month after its start) may leave the range; they pass through
// ClampTime before they are shown.
var (
	MinTime = time.Date(1, time.January, 1, 0, 0, 0, 0, time.UTC)
	MaxTime = time.Date(9999, time.December, 31, 23, 59, 59, 999999999, time.UTC)
)

// ErrTimeRange is wrapped by the errors of ParseTime and CheckTime for a
// well-formed time outside [MinTime, MaxTime].
var ErrTimeRange = errors.New("times must lie in years 0001–9999 in UTC")

// ParseTime parses an RFC 3339 time (fractional seconds up to nanoseconds,
// any offset within ±23:59) and returns it in UTC. It is stricter than
// time.Parse, which also accepts a one-digit hour, a comma before the
// fraction and offsets beyond ±23:59. It refuses a time whose instant lies
// outside [MinTime, MaxTime] with an error wrapping ErrTimeRange. Errors
// quote the input (at most about 64 bytes of it) and say what is wrong;
// callers prefix the field name.
func ParseTime(s string) (time.Time, error) {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil || !strictRFC3339(s) {
		return time.Time{}, fmt.Errorf("%s is not an RFC 3339 time (like 2026-06-20T10:00:00Z)", QuoteText(s))
	}
	if err := checkTime(t); err != nil {
		return time.Time{}, fmt.Errorf("%s %w", QuoteText(s), err)
	}
	return t.UTC(), nil
}

// CheckTime checks a time decoded elsewhere (encoding/json into a time.Time
// field, a configuration file) against the range ParseTime enforces. The
// zero time (year 1, UTC) is within the range: callers that give it a
// meaning ("not set") check for it themselves.
func CheckTime(t time.Time) error {
	if err := checkTime(t); err != nil {
		return fmt.Errorf("%s %w", t.Format(time.RFC3339Nano), err)
	}
	return nil
}

// InRange reports whether t lies within [MinTime, MaxTime]. It is a pair of
// comparisons, cheap enough for the event decoder's fast path.
func InRange(t time.Time) bool {
	return !t.Before(MinTime) && !t.After(MaxTime)
}

func checkTime(t time.Time) error {
	if InRange(t) {
		return nil
	}
	// The instant's year in UTC can be 10000 or more, which RFC 3339 can't
	// write: name it by its year.
	return fmt.Errorf("is out of range: it falls in year %d in UTC, and %w", t.UTC().Year(), ErrTimeRange)
}

// ClampTime returns t moved into [MinTime, MaxTime], in t's location unless
// the wall clock there falls outside years 0000–9999 (MaxTime at +14:00 is
// in year 10000), in which case it is returned in UTC. Its result always
// formats as RFC 3339 and encodes as JSON. It is for times computed from
// accepted ones, such as the end of a window that holds the last minute of
// year 9999, which would otherwise be 10000-01-01T00:00:00Z.
func ClampTime(t time.Time) time.Time {
	switch {
	case t.Before(MinTime):
		t = MinTime.In(t.Location())
	case t.After(MaxTime):
		t = MaxTime.In(t.Location())
	}
	if y := t.Year(); y < 0 || y > 9999 {
		return t.UTC()
	}
	return t
}

// strictRFC3339 checks what time.Parse leaves unchecked in a time it
// parsed with the RFC 3339 layout (see go.dev/issue/54580): the hour has
// two digits, fractional seconds follow a period (not a comma), and an
// offset's hours and minutes are within 23 and 59.
func strictRFC3339(s string) bool {
	const frac = len("2006-01-02T15:04:05")
	if len(s) < len("2006-01-02T15:04:05Z") || s[13] != ':' || s[frac] == ',' {
		return false
	}
	if s[len(s)-1] == 'Z' {
		return true
	}
	off := s[len(s)-len("07:00"):]
	return (off[0] < '2' || off[0] == '2' && off[1] <= '3') && off[3] <= '5'
}

// QuoteText quotes s for an error message, shortening it to about 64
// bytes (Quote is shorter still, for numbers).
func QuoteText(s string) string {
	const max = 64
	if len(s) <= max {
		return strconv.Quote(s)
	}
	cut := max
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return strconv.Quote(s[:cut]) + fmt.Sprintf(" (%d bytes in all)", len(s))
}
