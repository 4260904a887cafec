package usage

import (
	"fmt"
	"strings"
	"time"

	// Embed the IANA time zone database so windowTimeZone works on machines
	// without /usr/share/zoneinfo.
	_ "time/tzdata"
)

// WindowSize is the length of the windows a query splits usage into.
type WindowSize string

// The window sizes a query can use. The empty WindowSize means no windowing:
// one row per group for the whole range.
const (
	WindowSizeMinute WindowSize = "MINUTE"
	WindowSizeHour   WindowSize = "HOUR"
	WindowSizeDay    WindowSize = "DAY"
	WindowSizeMonth  WindowSize = "MONTH"
)

// WindowSizes lists every valid window size, shortest first.
var WindowSizes = []WindowSize{WindowSizeMinute, WindowSizeHour, WindowSizeDay, WindowSizeMonth}

// Valid reports whether ws is one of WindowSizes (the empty WindowSize is not).
func (ws WindowSize) Valid() bool {
	switch ws {
	case WindowSizeMinute, WindowSizeHour, WindowSizeDay, WindowSizeMonth:
		return true
	}
	return false
}

// ParseWindowSize reads a window size, ignoring case. The empty string gives
// the empty WindowSize (no windowing) and no error.
func ParseWindowSize(s string) (WindowSize, error) {
	if s == "" {
		return "", nil
	}
	ws := WindowSize(strings.ToUpper(s))
	if !ws.Valid() {
		return "", fmt.Errorf("windowSize: %q is not one of %s", s, joinWindowSizes())
	}
	return ws, nil
}

// ParseTimeZone reads an IANA time zone name such as "Europe/Berlin". The
// empty string gives UTC. "Local" is refused: the server's own zone is not
// something a client can know.
func ParseTimeZone(name string) (*time.Location, error) {
	switch name {
	case "", "UTC":
		return time.UTC, nil
	case "Local":
		return nil, fmt.Errorf("windowTimeZone: %q is not an IANA time zone name", name)
	}
	loc, err := time.LoadLocation(name)
	if err != nil {
		return nil, fmt.Errorf("windowTimeZone: %q is not a known IANA time zone name", name)
	}
	return loc, nil
}

func joinWindowSizes() string {
	s := make([]string, len(WindowSizes))
	for i, ws := range WindowSizes {
		s[i] = string(ws)
	}
	return strings.Join(s, ", ")
}

// Windows follow the wall clock of the time zone: a window is a maximal run
// of instants that share the same truncated local time (local minute, hour,
// date or month) and, for MINUTE and HOUR, the same UTC offset. So:
//   - DAY and MONTH windows start at local midnight (day 1 for MONTH) and a
//     DAY across a DST change lasts 23 or 25 hours; where midnight itself is
//     skipped, the day starts at the transition.
//   - HOUR windows start at the local :00 (also for :30 and :45 offsets) and
//     are real hours: the hour repeated at a DST fall-back is two windows.
//   - A transition that is not on a whole hour (Australia/Lord_Howe moves by
//     30 minutes) ends one HOUR window and starts the next, shorter one.
// Within a zone period the offset is constant, so window bounds are found by
// wall-clock arithmetic on the instant; ZoneBounds finds where periods end.

// WindowStart returns the start of the window of size ws that contains t, in
// loc (nil means UTC). The result is in loc. It panics if ws is not valid.
func WindowStart(t time.Time, ws WindowSize, loc *time.Location) time.Time {
	loc = orUTC(loc)
	t = t.In(loc)
	k := keyOf(t, ws)
	for {
		w := wall(t)
		b := t.Add(-w.Sub(truncWall(w, ws)))
		zs, _ := t.ZoneBounds()
		if zs.IsZero() || b.After(zs) {
			return b
		}
		// The truncated wall time is at or before the start of t's zone
		// period: the window starts at the period's start, unless the
		// previous period still has the same key (a DAY or MONTH across a
		// DST change), in which case keep looking there.
		p := zs.Add(-time.Nanosecond)
		if !keyOf(p, ws).equal(k) {
			return zs
		}
		t = p
	}
}

// WindowEnd returns the end of the window of size ws that starts at start (a
// WindowStart result), in loc (nil means UTC): the start of the next window.
// The result is in loc. It panics if ws is not valid.
func WindowEnd(start time.Time, ws WindowSize, loc *time.Location) time.Time {
	loc = orUTC(loc)
	t := start.In(loc)
	k := keyOf(t, ws)
	for {
		w := wall(t)
		e := t.Add(nextWall(truncWall(w, ws), ws).Sub(w))
		_, ze := t.ZoneBounds()
		if ze.IsZero() || e.Before(ze) {
			return e
		}
		// t's zone period ends first. The window goes on into the next
		// period if that starts with the same key.
		if !keyOf(ze, ws).equal(k) {
			return ze
		}
		t = ze
	}
}

func orUTC(loc *time.Location) *time.Location {
	if loc == nil {
		return time.UTC
	}
	return loc
}

// wall returns t's local wall clock as a UTC time with the same fields.
func wall(t time.Time) time.Time {
	_, off := t.Zone()
	return t.UTC().Add(time.Duration(off) * time.Second)
}

// truncWall truncates a wall clock time (in UTC) to the start of its window.
func truncWall(w time.Time, ws WindowSize) time.Time {
	switch ws {
	case WindowSizeMinute:
		return w.Truncate(time.Minute)
	case WindowSizeHour:
		return w.Truncate(time.Hour)
	case WindowSizeDay:
		y, m, d := w.Date()
		return time.Date(y, m, d, 0, 0, 0, 0, time.UTC)
	case WindowSizeMonth:
		y, m, _ := w.Date()
		return time.Date(y, m, 1, 0, 0, 0, 0, time.UTC)
	}
	panic(fmt.Sprintf("usage: invalid window size %q", ws))
}

// nextWall returns the wall clock start of the window after the one starting
// at w.
func nextWall(w time.Time, ws WindowSize) time.Time {
	switch ws {
	case WindowSizeMinute:
		return w.Add(time.Minute)
	case WindowSizeHour:
		return w.Add(time.Hour)
	case WindowSizeDay:
		return w.AddDate(0, 0, 1)
	case WindowSizeMonth:
		return w.AddDate(0, 1, 0)
	}
	panic(fmt.Sprintf("usage: invalid window size %q", ws))
}

// windowKey identifies the window an instant falls in, up to contiguity.
type windowKey struct {
	wall   time.Time // truncated wall clock time
	offset int       // UTC offset in seconds; only for MINUTE and HOUR
}

func keyOf(t time.Time, ws WindowSize) windowKey {
	k := windowKey{wall: truncWall(wall(t), ws)}
	if ws == WindowSizeMinute || ws == WindowSizeHour {
		_, k.offset = t.Zone()
	}
	return k
}

func (k windowKey) equal(o windowKey) bool {
	return k.offset == o.offset && k.wall.Equal(o.wall)
}
