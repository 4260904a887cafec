package usage

import (
	"math/rand/v2"
	"strings"
	"testing"
	"time"
)

func mustLoc(t testing.TB, name string) *time.Location {
	t.Helper()
	loc, err := time.LoadLocation(name)
	if err != nil {
		t.Fatalf("load %s: %v", name, err)
	}
	return loc
}

func ts(t testing.TB, s string) time.Time {
	t.Helper()
	v, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		t.Fatalf("parse %q: %v", s, err)
	}
	return v
}

func TestParseWindowSize(t *testing.T) {
	tests := []struct {
		in      string
		want    WindowSize
		wantErr string
	}{
		{in: "", want: ""},
		{in: "MINUTE", want: WindowSizeMinute},
		{in: "HOUR", want: WindowSizeHour},
		{in: "DAY", want: WindowSizeDay},
		{in: "MONTH", want: WindowSizeMonth},
		{in: "day", want: WindowSizeDay},
		{in: "WEEK", wantErr: `windowSize: "WEEK" is not one of MINUTE, HOUR, DAY, MONTH`},
		{in: " DAY", wantErr: "windowSize"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseWindowSize(tt.in)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ParseWindowSize(%q) error = %v, want containing %q", tt.in, err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("ParseWindowSize(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
			}
		})
	}
}

func TestParseTimeZone(t *testing.T) {
	tests := []struct {
		in      string
		want    string
		wantErr bool
	}{
		{in: "", want: "UTC"},
		{in: "UTC", want: "UTC"},
		{in: "Europe/Berlin", want: "Europe/Berlin"},
		{in: "Asia/Kathmandu", want: "Asia/Kathmandu"},
		{in: "Local", wantErr: true},
		{in: "Mars/Olympus_Mons", wantErr: true},
		{in: "../etc/passwd", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseTimeZone(tt.in)
			if tt.wantErr {
				if err == nil || !strings.HasPrefix(err.Error(), "windowTimeZone: ") {
					t.Fatalf("ParseTimeZone(%q) error = %v, want a windowTimeZone error", tt.in, err)
				}
				return
			}
			if err != nil || got.String() != tt.want {
				t.Fatalf("ParseTimeZone(%q) = %v, %v; want %s", tt.in, got, err, tt.want)
			}
		})
	}
}

func TestWindowBounds(t *testing.T) {
	tests := []struct {
		name      string
		zone      string // "" = nil location (UTC)
		ws        WindowSize
		at        string
		wantStart string
		wantEnd   string
		wantLen   time.Duration // checked when non-zero
	}{
		{name: "minute utc", ws: WindowSizeMinute, at: "2026-01-15T10:20:30.5Z", wantStart: "2026-01-15T10:20:00Z", wantEnd: "2026-01-15T10:21:00Z"},
		{name: "minute on boundary", ws: WindowSizeMinute, at: "2026-01-15T10:20:00Z", wantStart: "2026-01-15T10:20:00Z", wantEnd: "2026-01-15T10:21:00Z"},
		{name: "hour utc", ws: WindowSizeHour, at: "2026-01-15T10:59:59.999Z", wantStart: "2026-01-15T10:00:00Z", wantEnd: "2026-01-15T11:00:00Z"},
		{name: "day utc", ws: WindowSizeDay, at: "2026-01-15T23:59:00Z", wantStart: "2026-01-15T00:00:00Z", wantEnd: "2026-01-16T00:00:00Z"},
		{name: "month utc february", ws: WindowSizeMonth, at: "2026-02-28T12:00:00Z", wantStart: "2026-02-01T00:00:00Z", wantEnd: "2026-03-01T00:00:00Z"},
		{name: "month utc leap february", ws: WindowSizeMonth, at: "2028-02-29T12:00:00Z", wantStart: "2028-02-01T00:00:00Z", wantEnd: "2028-03-01T00:00:00Z"},
		{name: "month utc december", ws: WindowSizeMonth, at: "2026-12-31T23:59:00Z", wantStart: "2026-12-01T00:00:00Z", wantEnd: "2027-01-01T00:00:00Z"},
		{name: "input in another zone", ws: WindowSizeDay, at: "2026-01-15T23:30:00-05:00", wantStart: "2026-01-16T00:00:00Z", wantEnd: "2026-01-17T00:00:00Z"},

		// Europe/Berlin: CET +1, CEST +2; 2026-03-29 02:00 CET -> 03:00 CEST
		// (01:00Z), 2026-10-25 03:00 CEST -> 02:00 CET (01:00Z).
		{name: "berlin day normal", zone: "Europe/Berlin", ws: WindowSizeDay, at: "2026-01-15T23:30:00Z", wantStart: "2026-01-15T23:00:00Z", wantEnd: "2026-01-16T23:00:00Z", wantLen: 24 * time.Hour},
		{name: "berlin day spring forward 23h", zone: "Europe/Berlin", ws: WindowSizeDay, at: "2026-03-29T12:00:00Z", wantStart: "2026-03-28T23:00:00Z", wantEnd: "2026-03-29T22:00:00Z", wantLen: 23 * time.Hour},
		{name: "berlin day spring forward before change", zone: "Europe/Berlin", ws: WindowSizeDay, at: "2026-03-29T00:59:00Z", wantStart: "2026-03-28T23:00:00Z", wantEnd: "2026-03-29T22:00:00Z"},
		{name: "berlin day fall back 25h", zone: "Europe/Berlin", ws: WindowSizeDay, at: "2026-10-25T12:00:00Z", wantStart: "2026-10-24T22:00:00Z", wantEnd: "2026-10-25T23:00:00Z", wantLen: 25 * time.Hour},
		{name: "berlin day fall back in repeated hour", zone: "Europe/Berlin", ws: WindowSizeDay, at: "2026-10-25T01:30:00Z", wantStart: "2026-10-24T22:00:00Z", wantEnd: "2026-10-25T23:00:00Z"},
		{name: "berlin hour before spring forward", zone: "Europe/Berlin", ws: WindowSizeHour, at: "2026-03-29T00:30:00Z", wantStart: "2026-03-29T00:00:00Z", wantEnd: "2026-03-29T01:00:00Z"},
		{name: "berlin hour after spring forward", zone: "Europe/Berlin", ws: WindowSizeHour, at: "2026-03-29T01:30:00Z", wantStart: "2026-03-29T01:00:00Z", wantEnd: "2026-03-29T02:00:00Z"},
		{name: "berlin first 02:xx at fall back", zone: "Europe/Berlin", ws: WindowSizeHour, at: "2026-10-25T00:30:00Z", wantStart: "2026-10-25T00:00:00Z", wantEnd: "2026-10-25T01:00:00Z", wantLen: time.Hour},
		{name: "berlin second 02:xx at fall back", zone: "Europe/Berlin", ws: WindowSizeHour, at: "2026-10-25T01:30:00Z", wantStart: "2026-10-25T01:00:00Z", wantEnd: "2026-10-25T02:00:00Z", wantLen: time.Hour},
		{name: "berlin minute in repeated hour", zone: "Europe/Berlin", ws: WindowSizeMinute, at: "2026-10-25T01:30:10Z", wantStart: "2026-10-25T01:30:00Z", wantEnd: "2026-10-25T01:31:00Z"},
		{name: "berlin month march", zone: "Europe/Berlin", ws: WindowSizeMonth, at: "2026-03-15T00:00:00Z", wantStart: "2026-02-28T23:00:00Z", wantEnd: "2026-03-31T22:00:00Z", wantLen: 31*24*time.Hour - time.Hour},
		{name: "berlin month october", zone: "Europe/Berlin", ws: WindowSizeMonth, at: "2026-10-31T22:59:00Z", wantStart: "2026-09-30T22:00:00Z", wantEnd: "2026-10-31T23:00:00Z", wantLen: 31*24*time.Hour + time.Hour},
		{name: "berlin month first local minute", zone: "Europe/Berlin", ws: WindowSizeMonth, at: "2026-02-28T23:00:00Z", wantStart: "2026-02-28T23:00:00Z", wantEnd: "2026-03-31T22:00:00Z"},

		// America/New_York: 2026-03-08 02:00 EST -> 03:00 EDT, 2026-11-01
		// 02:00 EDT -> 01:00 EST.
		{name: "new york day spring forward", zone: "America/New_York", ws: WindowSizeDay, at: "2026-03-08T15:00:00Z", wantStart: "2026-03-08T05:00:00Z", wantEnd: "2026-03-09T04:00:00Z", wantLen: 23 * time.Hour},
		{name: "new york day fall back", zone: "America/New_York", ws: WindowSizeDay, at: "2026-11-01T15:00:00Z", wantStart: "2026-11-01T04:00:00Z", wantEnd: "2026-11-02T05:00:00Z", wantLen: 25 * time.Hour},
		{name: "new york evening is previous day", zone: "America/New_York", ws: WindowSizeDay, at: "2026-07-02T03:59:00Z", wantStart: "2026-07-01T04:00:00Z", wantEnd: "2026-07-02T04:00:00Z"},
		{name: "new york repeated 01:xx first", zone: "America/New_York", ws: WindowSizeHour, at: "2026-11-01T05:10:00Z", wantStart: "2026-11-01T05:00:00Z", wantEnd: "2026-11-01T06:00:00Z"},
		{name: "new york repeated 01:xx second", zone: "America/New_York", ws: WindowSizeHour, at: "2026-11-01T06:10:00Z", wantStart: "2026-11-01T06:00:00Z", wantEnd: "2026-11-01T07:00:00Z"},
		{name: "new york month", zone: "America/New_York", ws: WindowSizeMonth, at: "2026-11-30T12:00:00Z", wantStart: "2026-11-01T04:00:00Z", wantEnd: "2026-12-01T05:00:00Z"},

		// Offsets that are not whole hours: windows start at the local :00.
		{name: "kolkata hour", zone: "Asia/Kolkata", ws: WindowSizeHour, at: "2026-01-15T10:20:00Z", wantStart: "2026-01-15T09:30:00Z", wantEnd: "2026-01-15T10:30:00Z"},
		{name: "kolkata hour before :30", zone: "Asia/Kolkata", ws: WindowSizeHour, at: "2026-01-15T10:29:00Z", wantStart: "2026-01-15T09:30:00Z", wantEnd: "2026-01-15T10:30:00Z"},
		{name: "kolkata day", zone: "Asia/Kolkata", ws: WindowSizeDay, at: "2026-01-15T20:00:00Z", wantStart: "2026-01-15T18:30:00Z", wantEnd: "2026-01-16T18:30:00Z"},
		{name: "kathmandu hour", zone: "Asia/Kathmandu", ws: WindowSizeHour, at: "2026-01-15T10:20:00Z", wantStart: "2026-01-15T10:15:00Z", wantEnd: "2026-01-15T11:15:00Z"},
		{name: "kathmandu day", zone: "Asia/Kathmandu", ws: WindowSizeDay, at: "2026-01-15T10:20:00Z", wantStart: "2026-01-14T18:15:00Z", wantEnd: "2026-01-15T18:15:00Z"},

		// Local midnight skipped (Sao Paulo 2018-11-04 00:00 -03 -> 01:00 -02):
		// the day starts at the change.
		{name: "sao paulo skipped midnight", zone: "America/Sao_Paulo", ws: WindowSizeDay, at: "2018-11-04T12:00:00Z", wantStart: "2018-11-04T03:00:00Z", wantEnd: "2018-11-05T02:00:00Z", wantLen: 23 * time.Hour},
		{name: "sao paulo day before skipped midnight", zone: "America/Sao_Paulo", ws: WindowSizeDay, at: "2018-11-04T02:59:00Z", wantStart: "2018-11-03T03:00:00Z", wantEnd: "2018-11-04T03:00:00Z", wantLen: 24 * time.Hour},
		// Fall back across midnight (Santiago 2026-04-05 00:00 -03 -> Sat 23:00 -04).
		{name: "santiago saturday 25h", zone: "America/Santiago", ws: WindowSizeDay, at: "2026-04-05T03:30:00Z", wantStart: "2026-04-04T03:00:00Z", wantEnd: "2026-04-05T04:00:00Z", wantLen: 25 * time.Hour},
		// Half-hour DST (Lord Howe 2026-04-05 02:00 +11 -> 01:30 +10:30).
		{name: "lord howe hour before change", zone: "Australia/Lord_Howe", ws: WindowSizeHour, at: "2026-04-04T14:50:00Z", wantStart: "2026-04-04T14:00:00Z", wantEnd: "2026-04-04T15:00:00Z"},
		{name: "lord howe short hour after change", zone: "Australia/Lord_Howe", ws: WindowSizeHour, at: "2026-04-04T15:10:00Z", wantStart: "2026-04-04T15:00:00Z", wantEnd: "2026-04-04T15:30:00Z", wantLen: 30 * time.Minute},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var loc *time.Location
			if tt.zone != "" {
				loc = mustLoc(t, tt.zone)
			}
			at := ts(t, tt.at)
			start := WindowStart(at, tt.ws, loc)
			end := WindowEnd(start, tt.ws, loc)
			if want := ts(t, tt.wantStart); !start.Equal(want) {
				t.Errorf("WindowStart(%s) = %s, want %s", tt.at, start.UTC().Format(time.RFC3339), want.UTC().Format(time.RFC3339))
			}
			if want := ts(t, tt.wantEnd); !end.Equal(want) {
				t.Errorf("WindowEnd(%s) = %s, want %s", start.UTC().Format(time.RFC3339), end.UTC().Format(time.RFC3339), want.UTC().Format(time.RFC3339))
			}
			if tt.wantLen != 0 && end.Sub(start) != tt.wantLen {
				t.Errorf("window length = %s, want %s", end.Sub(start), tt.wantLen)
			}
			wantLoc := loc
			if wantLoc == nil {
				wantLoc = time.UTC
			}
			if start.Location() != wantLoc || end.Location() != wantLoc {
				t.Errorf("locations = %s, %s; want %s", start.Location(), end.Location(), wantLoc)
			}
		})
	}
}

// TestWindowLocalStart checks that windows begin on the local calendar in
// ordinary times.
func TestWindowLocalStart(t *testing.T) {
	zones := []string{"Europe/Berlin", "America/New_York", "Asia/Kolkata", "Asia/Kathmandu", "Australia/Lord_Howe"}
	for _, zone := range zones {
		loc := mustLoc(t, zone)
		for _, ws := range WindowSizes {
			t.Run(zone+"/"+string(ws), func(t *testing.T) {
				at := time.Date(2026, 6, 17, 13, 47, 29, 0, loc)
				start := WindowStart(at, ws, loc)
				y, m, d := start.Date()
				h, mi, s := start.Clock()
				var want [6]int
				switch ws {
				case WindowSizeMinute:
					want = [6]int{2026, 6, 17, 13, 47, 0}
				case WindowSizeHour:
					want = [6]int{2026, 6, 17, 13, 0, 0}
				case WindowSizeDay:
					want = [6]int{2026, 6, 17, 0, 0, 0}
				case WindowSizeMonth:
					want = [6]int{2026, 6, 1, 0, 0, 0}
				}
				if got := [6]int{y, int(m), d, h, mi, s}; got != want {
					t.Errorf("WindowStart local = %v, want %v", got, want)
				}
			})
		}
	}
}

// TestWindowPartition checks, over many zones and instants (random ones and
// ones around every zone change), that windows tile time: each instant is
// in [start, end), a window's start is its own start, the next window starts
// where it ends, and MINUTE/HOUR windows are at most a minute/hour long.
func TestWindowPartition(t *testing.T) {
	zones := []string{"UTC", "Europe/Berlin", "America/New_York", "Asia/Kolkata", "Asia/Kathmandu",
		"Australia/Lord_Howe", "America/Sao_Paulo", "America/Santiago", "Pacific/Apia", "America/St_Johns", "Africa/Casablanca"}
	maxLen := map[WindowSize]time.Duration{
		WindowSizeMinute: time.Minute,
		WindowSizeHour:   time.Hour,
		WindowSizeDay:    26 * time.Hour,
		WindowSizeMonth:  32 * 24 * time.Hour,
	}
	rng := rand.New(rand.NewPCG(1, 2))
	lo := time.Date(1990, 1, 1, 0, 0, 0, 0, time.UTC).Unix()
	hi := time.Date(2040, 1, 1, 0, 0, 0, 0, time.UTC).Unix()
	for _, zone := range zones {
		loc := mustLoc(t, zone)
		var instants []time.Time
		for range 300 {
			instants = append(instants, time.Unix(lo+rng.Int64N(hi-lo), rng.Int64N(1e9)))
		}
		// Around each zone change from 1990 to 2040.
		for at := time.Unix(lo, 0).In(loc); at.Unix() < hi; {
			_, end := at.ZoneBounds()
			if end.IsZero() {
				break
			}
			for _, d := range []time.Duration{-time.Hour - time.Nanosecond, -time.Nanosecond, 0, time.Nanosecond, 30 * time.Minute, time.Hour} {
				instants = append(instants, end.Add(d))
			}
			at = end
		}
		for _, ws := range WindowSizes {
			t.Run(zone+"/"+string(ws), func(t *testing.T) {
				for _, at := range instants {
					start := WindowStart(at, ws, loc)
					end := WindowEnd(start, ws, loc)
					if at.Before(start) || !at.Before(end) {
						t.Fatalf("%s: window [%s, %s) does not contain it", at.UTC(), start.UTC(), end.UTC())
					}
					if got := WindowStart(start, ws, loc); !got.Equal(start) {
						t.Fatalf("%s: WindowStart(start %s) = %s", at.UTC(), start.UTC(), got.UTC())
					}
					if got := WindowStart(end.Add(-time.Nanosecond), ws, loc); !got.Equal(start) {
						t.Fatalf("%s: WindowStart(end %s - 1ns) = %s, want %s", at.UTC(), end.UTC(), got.UTC(), start.UTC())
					}
					if got := WindowStart(end, ws, loc); !got.Equal(end) {
						t.Fatalf("%s: WindowStart(end %s) = %s", at.UTC(), end.UTC(), got.UTC())
					}
					if l := end.Sub(start); l > maxLen[ws] {
						t.Fatalf("%s: window [%s, %s) is %s long", at.UTC(), start.UTC(), end.UTC(), l)
					}
					if ws == WindowSizeMinute || ws == WindowSizeHour {
						_, o1 := start.Zone()
						_, o2 := end.Add(-time.Nanosecond).Zone()
						if o1 != o2 {
							t.Fatalf("%s: %s window [%s, %s) spans an offset change", at.UTC(), ws, start.UTC(), end.UTC())
						}
					}
				}
			})
		}
	}
}

func TestWindowInvalidPanics(t *testing.T) {
	for _, ws := range []WindowSize{"", "WEEK"} {
		t.Run(string(ws), func(t *testing.T) {
			defer func() {
				if recover() == nil {
					t.Errorf("WindowStart with %q did not panic", ws)
				}
			}()
			WindowStart(time.Now(), ws, nil)
		})
	}
}
