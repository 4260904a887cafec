package billing

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

func mustLoc(t testing.TB, name string) *time.Location {
	t.Helper()
	loc, err := time.LoadLocation(name)
	if err != nil {
		t.Fatal(err)
	}
	return loc
}

func ts(t testing.TB, s string) time.Time {
	t.Helper()
	v, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// starts returns the Start of each period, formatted in RFC 3339.
func starts(ps []Period) []string {
	s := make([]string, len(ps))
	for i, p := range ps {
		s[i] = p.Start.Format(time.RFC3339)
	}
	return s
}

func TestPeriodAtWorkedExample(t *testing.T) {
	start := ts(t, "2026-06-20T10:00:00Z")
	for _, at := range []string{"2026-06-20T10:00:00Z", "2026-07-01T00:00:00Z", "2026-07-20T09:59:59.999999999Z"} {
		t.Run(at, func(t *testing.T) {
			p, err := PeriodAt(start, CadenceMonthly, AnchorAnniversary, time.UTC, ts(t, at))
			if err != nil {
				t.Fatal(err)
			}
			want := Period{Index: 0, Start: start, End: ts(t, "2026-07-20T10:00:00Z"), FullStart: start}
			if diff := cmp.Diff(want, p); diff != "" {
				t.Errorf("PeriodAt (-want +got):\n%s", diff)
			}
		})
	}
	p, err := PeriodAt(start, CadenceMonthly, "", nil, ts(t, "2026-07-20T10:00:00Z"))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := p.Start, ts(t, "2026-07-20T10:00:00Z"); !got.Equal(want) || p.Index != 1 {
		t.Errorf("period at the first End: start %s index %d, want %s index 1", got, p.Index, want)
	}
}

func TestPeriods(t *testing.T) {
	berlin := mustLoc(t, "Europe/Berlin")
	ny := mustLoc(t, "America/New_York")
	tests := []struct {
		name     string
		start    string
		cadence  Cadence
		anchor   Anchor
		loc      *time.Location
		from, to string
		want     []string // period starts in RFC 3339 with loc's offset
		wantEnd  string   // End of the last period
	}{
		{
			name: "Jan 31 clamps and never drifts", start: "2026-01-31T09:00:00Z", cadence: CadenceMonthly,
			from: "2026-01-01T00:00:00Z", to: "2026-07-01T00:00:00Z",
			want: []string{"2026-01-31T09:00:00Z", "2026-02-28T09:00:00Z", "2026-03-31T09:00:00Z",
				"2026-04-30T09:00:00Z", "2026-05-31T09:00:00Z", "2026-06-30T09:00:00Z"},
			wantEnd: "2026-07-31T09:00:00Z",
		},
		{
			name: "Jan 31 in a leap year", start: "2028-01-31T00:00:00Z", cadence: CadenceMonthly,
			from: "2028-01-31T00:00:00Z", to: "2028-03-01T00:00:00Z",
			want:    []string{"2028-01-31T00:00:00Z", "2028-02-29T00:00:00Z"},
			wantEnd: "2028-03-31T00:00:00Z",
		},
		{
			name: "Feb 29 yearly", start: "2028-02-29T12:00:00Z", cadence: CadenceYearly,
			from: "2028-01-01T00:00:00Z", to: "2032-03-01T00:00:00Z",
			want: []string{"2028-02-29T12:00:00Z", "2029-02-28T12:00:00Z", "2030-02-28T12:00:00Z",
				"2031-02-28T12:00:00Z", "2032-02-29T12:00:00Z"},
			wantEnd: "2033-02-28T12:00:00Z",
		},
		{
			name: "Feb 29 monthly keeps the 29th", start: "2028-02-29T12:00:00Z", cadence: CadenceMonthly,
			from: "2028-02-29T12:00:00Z", to: "2028-04-01T00:00:00Z",
			want:    []string{"2028-02-29T12:00:00Z", "2028-03-29T12:00:00Z"},
			wantEnd: "2028-04-29T12:00:00Z",
		},
		{
			name: "quarterly anniversary", start: "2026-11-30T08:00:00Z", cadence: CadenceQuarterly,
			from: "2026-11-30T08:00:00Z", to: "2027-06-01T00:00:00Z",
			want:    []string{"2026-11-30T08:00:00Z", "2027-02-28T08:00:00Z", "2027-05-30T08:00:00Z"},
			wantEnd: "2027-08-30T08:00:00Z",
		},
		{
			name: "three years", start: "2026-06-20T10:00:00Z", cadence: CadenceThreeYears,
			from: "2026-06-20T10:00:00Z", to: "2029-06-21T00:00:00Z",
			want:    []string{"2026-06-20T10:00:00Z", "2029-06-20T10:00:00Z"},
			wantEnd: "2032-06-20T10:00:00Z",
		},
		{
			name: "calendar monthly, partial first period", start: "2026-06-20T10:00:00Z", cadence: CadenceMonthly, anchor: AnchorCalendar,
			from: "2026-06-20T10:00:00Z", to: "2026-08-02T00:00:00Z",
			want:    []string{"2026-06-20T10:00:00Z", "2026-07-01T10:00:00Z", "2026-08-01T10:00:00Z"},
			wantEnd: "2026-09-01T10:00:00Z",
		},
		{
			name: "calendar quarterly", start: "2026-05-15T00:00:00Z", cadence: CadenceQuarterly, anchor: AnchorCalendar,
			from: "2026-05-15T00:00:00Z", to: "2027-01-01T00:00:01Z",
			want:    []string{"2026-05-15T00:00:00Z", "2026-07-01T00:00:00Z", "2026-10-01T00:00:00Z", "2027-01-01T00:00:00Z"},
			wantEnd: "2027-04-01T00:00:00Z",
		},
		{
			name: "calendar half-yearly", start: "2026-03-01T00:00:00Z", cadence: CadenceHalfYearly, anchor: AnchorCalendar,
			from: "2026-03-01T00:00:00Z", to: "2027-01-01T00:00:00Z",
			want:    []string{"2026-03-01T00:00:00Z", "2026-07-01T00:00:00Z"},
			wantEnd: "2027-01-01T00:00:00Z",
		},
		{
			name: "calendar yearly", start: "2026-06-20T10:00:00Z", cadence: CadenceYearly, anchor: AnchorCalendar,
			from: "2026-06-20T10:00:00Z", to: "2028-01-01T00:00:00Z",
			want:    []string{"2026-06-20T10:00:00Z", "2027-01-01T10:00:00Z"},
			wantEnd: "2028-01-01T10:00:00Z",
		},
		{
			name: "calendar two years from the next January", start: "2026-06-20T00:00:00Z", cadence: CadenceTwoYears, anchor: AnchorCalendar,
			from: "2026-06-20T00:00:00Z", to: "2029-01-02T00:00:00Z",
			want:    []string{"2026-06-20T00:00:00Z", "2027-01-01T00:00:00Z", "2029-01-01T00:00:00Z"},
			wantEnd: "2031-01-01T00:00:00Z",
		},
		{
			name: "calendar start on a boundary is not partial", start: "2026-04-01T00:00:00Z", cadence: CadenceQuarterly, anchor: AnchorCalendar,
			from: "2026-04-01T00:00:00Z", to: "2026-07-02T00:00:00Z",
			want:    []string{"2026-04-01T00:00:00Z", "2026-07-01T00:00:00Z"},
			wantEnd: "2026-10-01T00:00:00Z",
		},
		{
			name: "range in the middle", start: "2026-01-31T09:00:00Z", cadence: CadenceMonthly,
			from: "2027-03-15T00:00:00Z", to: "2027-04-30T09:00:00Z",
			want:    []string{"2027-02-28T09:00:00Z", "2027-03-31T09:00:00Z"},
			wantEnd: "2027-04-30T09:00:00Z",
		},
		{
			name: "Berlin keeps local time across DST", start: "2026-01-15T09:00:00+01:00", cadence: CadenceMonthly, loc: berlin,
			from: "2026-01-15T08:00:00Z", to: "2026-05-01T00:00:00Z",
			want:    []string{"2026-01-15T09:00:00+01:00", "2026-02-15T09:00:00+01:00", "2026-03-15T09:00:00+01:00", "2026-04-15T09:00:00+02:00"},
			wantEnd: "2026-05-15T09:00:00+02:00",
		},
		{
			// 2026-03-29 02:30 does not exist in Berlin: read with the
			// offset before the jump, it is 03:30 CEST.
			name: "Berlin skipped time moves forward", start: "2026-01-29T02:30:00+01:00", cadence: CadenceMonthly, loc: berlin,
			from: "2026-01-29T01:30:00Z", to: "2026-04-01T00:00:00Z",
			want:    []string{"2026-01-29T02:30:00+01:00", "2026-02-28T02:30:00+01:00", "2026-03-29T03:30:00+02:00"},
			wantEnd: "2026-04-29T02:30:00+02:00",
		},
		{
			name: "calendar Berlin skipped time", start: "2026-03-28T02:30:00+01:00", cadence: CadenceMonthly, anchor: AnchorCalendar, loc: berlin,
			from: "2026-03-28T01:30:00Z", to: "2026-04-02T00:00:00Z",
			want:    []string{"2026-03-28T02:30:00+01:00", "2026-04-01T02:30:00+02:00"},
			wantEnd: "2026-05-01T02:30:00+02:00",
		},
		{
			// 2026-03-08 02:30 does not exist in New York; time.Date gives
			// 01:30 EST there, tally 03:30 EDT as in Berlin.
			name: "New York skipped time moves forward", start: "2026-02-08T02:30:00-05:00", cadence: CadenceMonthly, loc: ny,
			from: "2026-02-08T07:30:00Z", to: "2026-03-09T00:00:00Z",
			want:    []string{"2026-02-08T02:30:00-05:00", "2026-03-08T03:30:00-04:00"},
			wantEnd: "2026-04-08T02:30:00-04:00",
		},
		{
			// 2026-10-25 02:30 occurs twice in Berlin: the earlier (CEST).
			name: "Berlin repeated time is the earlier", start: "2026-09-25T02:30:00+02:00", cadence: CadenceMonthly, loc: berlin,
			from: "2026-09-25T00:30:00Z", to: "2026-10-26T00:00:00Z",
			want:    []string{"2026-09-25T02:30:00+02:00", "2026-10-25T02:30:00+02:00"},
			wantEnd: "2026-11-25T02:30:00+01:00",
		},
		{
			name: "New York repeated time is the earlier", start: "2026-10-01T01:30:00-04:00", cadence: CadenceMonthly, anchor: AnchorCalendar, loc: ny,
			from: "2026-10-01T05:30:00Z", to: "2026-11-02T00:00:00Z",
			want:    []string{"2026-10-01T01:30:00-04:00", "2026-11-01T01:30:00-04:00"},
			wantEnd: "2026-12-01T01:30:00-05:00",
		},
		{
			// The start itself is the later 02:30 of the night; the first
			// period starts exactly there.
			name: "start at the repeated hour's second occurrence", start: "2026-10-25T02:30:00+01:00", cadence: CadenceMonthly, loc: berlin,
			from: "2026-10-25T01:30:00Z", to: "2026-11-26T00:00:00Z",
			want:    []string{"2026-10-25T02:30:00+01:00", "2026-11-25T02:30:00+01:00"},
			wantEnd: "2026-12-25T02:30:00+01:00",
		},
		{
			name: "empty range", start: "2026-01-01T00:00:00Z", cadence: CadenceMonthly,
			from: "2026-03-01T00:00:00Z", to: "2026-03-01T00:00:00Z",
		},
		{
			name: "range before the start", start: "2026-01-01T00:00:00Z", cadence: CadenceMonthly,
			from: "2025-01-01T00:00:00Z", to: "2026-01-01T00:00:00Z",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			loc := tt.loc
			if loc == nil {
				loc = time.UTC
			}
			ps, err := Periods(ts(t, tt.start), tt.cadence, tt.anchor, tt.loc, ts(t, tt.from), ts(t, tt.to))
			if err != nil {
				t.Fatal(err)
			}
			got := make([]string, len(ps))
			for i, p := range ps {
				got[i] = p.Start.In(loc).Format(time.RFC3339)
			}
			if diff := cmp.Diff(tt.want, got, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("period starts (-want +got):\n%s", diff)
			}
			if len(ps) > 0 {
				if got := ps[len(ps)-1].End.In(loc).Format(time.RFC3339); got != tt.wantEnd {
					t.Errorf("last End = %s, want %s", got, tt.wantEnd)
				}
			}
		})
	}
}

func TestPartialPeriod(t *testing.T) {
	tests := []struct {
		name         string
		start        string
		cadence      Cadence
		wantFull     string
		wantFraction string
	}{
		// Fractions that do not terminate have 30 decimal places.
		// June has 30 days; June 20 10:00 to July 1 10:00 is 11 of them.
		{"monthly", "2026-06-20T10:00:00Z", CadenceMonthly, "2026-06-01T10:00:00Z", "0.366666666666666666666666666667"},
		{"half of April", "2026-04-16T12:00:00Z", CadenceMonthly, "2026-04-01T12:00:00Z", "0.5"},
		// Q2 has 91 days; May 16 to July 1 is 46 of them.
		{"quarterly", "2026-05-16T12:00:00Z", CadenceQuarterly, "2026-04-01T12:00:00Z", "0.505494505494505494505494505495"},
		{"yearly", "2026-07-02T00:00:00Z", CadenceYearly, "2026-01-01T00:00:00Z", "0.50136986301369863013698630137"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := PeriodAt(ts(t, tt.start), tt.cadence, AnchorCalendar, time.UTC, ts(t, tt.start))
			if err != nil {
				t.Fatal(err)
			}
			if !p.Partial || !p.Start.Equal(ts(t, tt.start)) || !p.FullStart.Equal(ts(t, tt.wantFull)) {
				t.Errorf("got %+v, want a partial period from %s with FullStart %s", p, tt.start, tt.wantFull)
			}
			if got := p.Fraction().String(); got != tt.wantFraction {
				t.Errorf("Fraction = %s, want %s", got, tt.wantFraction)
			}
			next, err := PeriodAt(ts(t, tt.start), tt.cadence, AnchorCalendar, time.UTC, p.End)
			if err != nil {
				t.Fatal(err)
			}
			if next.Partial || !next.FullStart.Equal(next.Start) || next.Fraction().String() != "1" {
				t.Errorf("second period %+v is partial", next)
			}
		})
	}
}

func TestPeriodErrors(t *testing.T) {
	start := ts(t, "2026-06-20T10:00:00Z")
	tests := []struct {
		name    string
		cadence Cadence
		anchor  Anchor
		at      time.Time
		want    []string
	}{
		{"weekly", "P1W", AnchorAnniversary, start, []string{"cadence:", `"P1W"`}},
		{"days", "P30D", AnchorAnniversary, start, []string{"cadence:"}},
		{"P12M", "P12M", AnchorAnniversary, start, []string{"cadence:", "P1Y"}},
		{"empty cadence", "", AnchorAnniversary, start, []string{"cadence:"}},
		{"anchor", CadenceMonthly, "start", start, []string{"billingAnchor:", `"start"`}},
		{"both", "P1D", "x", start, []string{"cadence:", "billingAnchor:"}},
		{"before start", CadenceMonthly, AnchorAnniversary, start.Add(-time.Nanosecond), []string{"t:", "before"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := PeriodAt(start, tt.cadence, tt.anchor, nil, tt.at)
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

func TestParseCadenceAndAnchor(t *testing.T) {
	for _, c := range Cadences {
		t.Run(string(c), func(t *testing.T) {
			got, err := ParseCadence(string(c))
			if err != nil || got != c {
				t.Errorf("ParseCadence(%q) = %q, %v", c, got, err)
			}
		})
	}
	for _, s := range []string{"p1m", "P1W", "P0M", "P4M", "1M", "P1Y1M"} {
		t.Run(s, func(t *testing.T) {
			if _, err := ParseCadence(s); err == nil || !strings.HasPrefix(err.Error(), "cadence: ") {
				t.Errorf("ParseCadence(%q) error = %v", s, err)
			}
		})
	}
	for s, want := range map[string]Anchor{"": AnchorAnniversary, "anniversary": AnchorAnniversary, "calendar": AnchorCalendar} {
		if got, err := ParseAnchor(s); err != nil || got != want {
			t.Errorf("ParseAnchor(%q) = %q, %v", s, got, err)
		}
	}
	if _, err := ParseAnchor("Calendar"); err == nil {
		t.Error("ParseAnchor(Calendar): no error")
	}
}

// TestPeriodsProperty checks for random starts (weighted to the 28th-31st,
// leap days and DST nights) in UTC, Europe/Berlin and America/New_York that
// the periods of five years tile time without gap or overlap, that every
// boundary keeps the start's local time of day (or follows the DST rule) and
// its clamped day of month, and that PeriodAt agrees with Periods.
func TestPeriodsProperty(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 2026))
	locs := []*time.Location{time.UTC, mustLoc(t, "Europe/Berlin"), mustLoc(t, "America/New_York")}
	days := []int{1, 15, 28, 29, 29, 30, 30, 31, 31, 31}
	hours := []int{0, 1, 2, 2, 3, 10, 23}
	n := 400
	if testing.Short() {
		n = 50
	}
	for i := range n {
		loc := locs[i%len(locs)]
		y := 2019 + rng.IntN(12)
		mo := time.Month(1 + rng.IntN(12))
		d := days[rng.IntN(len(days))]
		if rng.IntN(4) == 0 {
			d = 1 + rng.IntN(31)
		}
		if d > daysIn(y, mo) {
			d = daysIn(y, mo)
		}
		start := time.Date(y, mo, d, hours[rng.IntN(len(hours))], 30*rng.IntN(2), rng.IntN(60), rng.IntN(1e9), loc)
		c := Cadences[rng.IntN(len(Cadences))]
		a := []Anchor{AnchorAnniversary, AnchorCalendar}[rng.IntN(2)]
		name := fmt.Sprintf("%s/%s/%s/%s", start.Format(time.RFC3339Nano), loc, c, a)
		t.Run(name, func(t *testing.T) {
			checkTiling(t, rng, start, c, a, loc)
		})
	}
}

func checkTiling(t *testing.T, rng *rand.Rand, start time.Time, c Cadence, a Anchor, loc *time.Location) {
	to := start.AddDate(5, 0, 0)
	ps, err := Periods(start, c, a, loc, start, to)
	if err != nil {
		t.Fatal(err)
	}
	if len(ps) == 0 || !ps[0].Start.Equal(start) {
		t.Fatalf("first period does not start at the start: %v", starts(ps))
	}
	if last := ps[len(ps)-1]; last.End.Before(to) {
		t.Fatalf("periods end at %s, before %s", last.End, to)
	}
	local := start.In(loc)
	sy, sm, sd := local.Date()
	hh, mm, ss := local.Clock()
	ns := local.Nanosecond()
	for k, p := range ps {
		if p.Index != k {
			t.Errorf("period %d has Index %d", k, p.Index)
		}
		if !p.Start.Before(p.End) {
			t.Errorf("period %d is empty or inverted: %s to %s", k, p.Start, p.End)
		}
		if k > 0 && !ps[k-1].End.Equal(p.Start) {
			t.Errorf("gap or overlap between period %d (end %s) and %d (start %s)", k-1, ps[k-1].End, k, p.Start)
		}
		if k > 0 && p.Partial {
			t.Errorf("period %d is partial", k)
		}
		// Boundary k+1 (each period's End) is computed from the start.
		var wy int
		var wm time.Month
		wd := 1
		if a == AnchorCalendar && ps[0].Partial {
			grid := min(c.Months(), 12)
			next := int(sm) - (int(sm)-1)%grid + grid
			wy, wm = normMonth(sy, next+k*c.Months())
		} else {
			wy, wm = normMonth(sy, int(sm)+(k+1)*c.Months())
			if a == AnchorAnniversary {
				wd = min(sd, daysIn(wy, wm))
			}
		}
		if a == AnchorCalendar && k == 0 && ps[0].Partial != (sd != 1 || (int(sm)-1)%min(c.Months(), 12) != 0) {
			t.Errorf("first period Partial = %v", ps[0].Partial)
		}
		checkBoundary(t, fmt.Sprintf("end of period %d", k), p.End, time.Date(wy, wm, wd, hh, mm, ss, ns, time.UTC), loc)
		// PeriodAt agrees for instants at, just before the end of, and
		// inside the period.
		inside := p.Start.Add(time.Duration(rng.Int64N(int64(p.Duration()))))
		for _, at := range []time.Time{p.Start, p.End.Add(-1), inside} {
			got, err := PeriodAt(start, c, a, loc, at)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(p, got); diff != "" {
				t.Fatalf("PeriodAt(%s) differs from Periods (-want +got):\n%s", at, diff)
			}
		}
	}
}

// checkBoundary checks that boundary b shows the wall clock want (given as
// UTC) in loc, or, when want does not exist in loc, that b is want read with
// the offset in force before the jump; and when want occurs twice, that b is
// the earlier instant (DST shifts in the zones tested are one hour).
func checkBoundary(t *testing.T, what string, b time.Time, want time.Time, loc *time.Location) {
	t.Helper()
	if wall(b.In(loc)).Equal(want) {
		if wall(b.Add(-time.Hour).In(loc)).Equal(want) {
			t.Errorf("%s: %s is the later of two instants showing %s", what, b, want.Format("2006-01-02 15:04:05.999999999"))
		}
		return
	}
	// Skipped time: the offset one day before applies.
	_, off := b.Add(-24 * time.Hour).In(loc).Zone()
	_, offAfter := b.Add(24 * time.Hour).In(loc).Zone()
	expect := want.Add(-time.Duration(off) * time.Second)
	for _, o := range []int{off, offAfter} {
		if u := want.Add(-time.Duration(o) * time.Second); wall(u.In(loc)).Equal(want) {
			t.Errorf("%s: %s does not show %s though %s does", what, b.In(loc), want.Format(time.DateTime), u.In(loc))
		}
	}
	if !b.Equal(expect) {
		t.Errorf("%s: %s, want %s (wall clock %s does not exist)", what, b.In(loc), expect.In(loc), want.Format(time.DateTime))
	}
}
