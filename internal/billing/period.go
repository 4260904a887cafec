// Package billing is the pure core of tally's billing: billing periods,
// pricing models, rating usage into invoice lines, money rounding and
// proration. It does no I/O and never reads the clock; callers pass every
// instant in.
package billing

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/shopspring/decimal"

	// Embed the IANA time zone database so subscriptions in any zone work on
	// machines without /usr/share/zoneinfo.
	_ "time/tzdata"
)

// Cadence is how often a subscription is billed, as an ISO 8601 duration.
// Only whole-month cadences are supported: P1M, P3M, P6M, P1Y, P2Y and P3Y.
// Week and day cadences (P1W, P7D, …) are refused: the issue does not ask for
// them, and a calendar anchor for weeks would need a week-start convention
// tally does not have. Other spellings of a supported length (P12M, P1Y0M)
// are refused too, so a plan's cadence has exactly one spelling.
type Cadence string

// The supported cadences.
const (
	// CadenceMonthly bills every month.
	CadenceMonthly Cadence = "P1M"
	// CadenceQuarterly bills every three months.
	CadenceQuarterly Cadence = "P3M"
	// CadenceHalfYearly bills every six months (not in the list;
	// accepted because it is a whole number of months like the others).
	CadenceHalfYearly Cadence = "P6M"
	// CadenceYearly bills every year.
	CadenceYearly Cadence = "P1Y"
	// CadenceTwoYears bills every two years.
	CadenceTwoYears Cadence = "P2Y"
	// CadenceThreeYears bills every three years.
	CadenceThreeYears Cadence = "P3Y"
)

// Cadences lists every supported cadence, shortest first.
var Cadences = []Cadence{CadenceMonthly, CadenceQuarterly, CadenceHalfYearly, CadenceYearly, CadenceTwoYears, CadenceThreeYears}

// Months is the length of c in calendar months, or 0 when c is not supported.
func (c Cadence) Months() int {
	switch c {
	case CadenceMonthly:
		return 1
	case CadenceQuarterly:
		return 3
	case CadenceHalfYearly:
		return 6
	case CadenceYearly:
		return 12
	case CadenceTwoYears:
		return 24
	case CadenceThreeYears:
		return 36
	}
	return 0
}

// Validate reports whether c is one of Cadences; the error names the field
// "cadence".
func (c Cadence) Validate() error {
	if c.Months() == 0 {
		return fmt.Errorf("cadence: %q is not supported; use one of %s", string(c), joinCadences())
	}
	return nil
}

// ParseCadence reads an ISO 8601 duration and returns it as a Cadence when
// tally supports it (see Cadence).
func ParseCadence(s string) (Cadence, error) {
	c := Cadence(s)
	if err := c.Validate(); err != nil {
		return "", err
	}
	return c, nil
}

func joinCadences() string {
	s := make([]string, len(Cadences))
	for i, c := range Cadences {
		s[i] = string(c)
	}
	return strings.Join(s, ", ")
}

// Anchor says where a subscription's period boundaries fall.
type Anchor string

// The anchors. The empty Anchor means AnchorAnniversary.
const (
	// AnchorAnniversary starts every period on the subscription start's
	// day of month (clamped to the month's last day), every cadence.
	AnchorAnniversary Anchor = "anniversary"
	// AnchorCalendar starts periods on the first day of calendar months,
	// quarters (Jan, Apr, Jul, Oct), half-years (Jan, Jul) or years (Jan);
	// the first period runs from the start to the first such boundary.
	AnchorCalendar Anchor = "calendar"
)

// Validate reports whether a is a known anchor (the empty Anchor is, and
// means AnchorAnniversary); the error names the field "billingAnchor".
func (a Anchor) Validate() error {
	switch a {
	case "", AnchorAnniversary, AnchorCalendar:
		return nil
	}
	return fmt.Errorf("billingAnchor: %q is not one of %s, %s", string(a), AnchorAnniversary, AnchorCalendar)
}

// ParseAnchor reads an anchor; "" gives AnchorAnniversary.
func ParseAnchor(s string) (Anchor, error) {
	a := Anchor(s)
	if err := a.Validate(); err != nil {
		return "", err
	}
	if a == "" {
		a = AnchorAnniversary
	}
	return a, nil
}

// Period is one billing period, the half-open interval [Start, End).
type Period struct {
	// Index counts periods from 0, the period that begins at the
	// subscription start.
	Index int
	// Start is inclusive, End exclusive. Consecutive periods share the
	// boundary: one's End is the next one's Start.
	Start, End time.Time
	// Partial is true for a calendar-anchored first period that begins after
	// the calendar boundary. Only the first period can be partial.
	Partial bool
	// FullStart is where the full period that this one is part of starts:
	// Start, unless Partial, in which case it is the calendar boundary
	// before Start.
	FullStart time.Time
	// FullEnd is where the full period that this one is part of ends: the
	// zero time (meaning End) unless the period was cut short, by a
	// cancellation "now", in which case End is the cut and FullEnd the
	// period's scheduled end.
	FullEnd time.Time
}

// Duration is the period's length, End - Start.
func (p Period) Duration() time.Duration { return p.End.Sub(p.Start) }

// FullDuration is the length of the full period, FullEnd (End when unset)
// - FullStart; it equals Duration unless p is Partial or cut short.
func (p Period) FullDuration() time.Duration {
	end := p.End
	if !p.FullEnd.IsZero() {
		end = p.FullEnd
	}
	return end.Sub(p.FullStart)
}

// Prorated reports whether p covers less than its full period (it is
// Partial or cut short), so that its base fee is prorated by time.
func (p Period) Prorated() bool { return p.Duration() != p.FullDuration() }

// Fraction is the share of the full period that p covers, Duration /
// FullDuration: 1 for a full period. Prorate an amount with
// Prorate(amount, p.Duration(), p.FullDuration()) rather than multiplying by
// Fraction, which is rounded when the quotient does not terminate.
func (p Period) Fraction() decimal.Decimal {
	return Prorate(decimal.NewFromInt(1), p.Duration(), p.FullDuration())
}

// schedule computes the period boundaries of one subscription.
//
// Boundary k (k ≥ 1) is a local date and the start's local time of day in
// loc, resolved to an instant by localTime; boundary 0 is the start itself.
// Every boundary is computed from the start directly, never from the
// previous one, so days of month do not drift.
type schedule struct {
	start  time.Time // in loc
	loc    *time.Location
	months int
	// year, month and day of boundary 1 minus one cadence: boundary k is
	// (year, month + k*months, min(day, days in that month)).
	year  int
	month int // 1-based; may be any integer before normalisation
	day   int
	// partial: boundary 0 is not on the grid (calendar anchor, start not
	// on a grid day), so period 0 is partial.
	partial bool
	// the start's local time of day
	hh, mm, ss, ns int
}

func newSchedule(start time.Time, c Cadence, a Anchor, loc *time.Location) (schedule, error) {
	var errs []error
	if err := c.Validate(); err != nil {
		errs = append(errs, err)
	}
	if err := a.Validate(); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return schedule{}, err
	}
	if loc == nil {
		loc = time.UTC
	}
	start = start.In(loc)
	y, m, d := start.Date()
	s := schedule{start: start, loc: loc, months: c.Months(), year: y, month: int(m), day: d}
	s.hh, s.mm, s.ss = start.Clock()
	s.ns = start.Nanosecond()
	if a == AnchorCalendar {
		grid := min(s.months, 12) // multi-year cadences use the year grid
		s.day = 1
		if d != 1 || (s.month-1)%grid != 0 {
			// The first boundary is day 1 of the next grid month.
			s.partial = true
			next := s.month - (s.month-1)%grid + grid
			s.month = next - s.months
		}
	}
	return s, nil
}

// boundary returns boundary k (k ≥ 0) when k > 0 or the schedule is not
// partial; for k == 0 of a partial schedule it returns the calendar boundary
// before the start (the partial period's FullStart).
func (s schedule) boundary(k int) time.Time {
	if k == 0 && !s.partial {
		return s.start
	}
	y, m := normMonth(s.year, s.month+k*s.months)
	d := min(s.day, daysIn(y, m))
	return localTime(y, m, d, s.hh, s.mm, s.ss, s.ns, s.loc)
}

func (s schedule) period(k int) Period {
	p := Period{Index: k, Start: s.boundary(k), End: s.boundary(k + 1)}
	p.FullStart = p.Start
	if k == 0 && s.partial {
		p.Partial = true
		p.Start = s.start
	}
	return p
}

// index returns the k whose period contains t (t ≥ start).
func (s schedule) index(t time.Time) int {
	t = t.In(s.loc)
	ty, tm, _ := t.Date()
	// Months from the grid origin (boundary 1 minus one cadence) to t's
	// month; the period is within one of elapsed/months.
	elapsed := (ty-s.year)*12 + int(tm) - s.month
	k := max(elapsed/s.months, 0)
	for k > 0 && t.Before(s.boundary(k)) {
		k--
	}
	for !t.Before(s.boundary(k + 1)) {
		k++
	}
	return k
}

// PeriodAt returns the billing period that contains t for a subscription
// that started at start, billed every c, anchored by a, in the time zone loc
// (nil means UTC).
//
// Boundaries keep the start's local time of day in loc. With the anniversary
// anchor, period k starts k cadences after the start on the start's day of
// month, clamped to the month's last day (a start on Jan 31 gives periods
// starting Feb 28 or 29, Mar 31, Apr 30, …), always computed from the start,
// so the day never drifts. With the calendar anchor, periods start on day 1
// of each calendar month, quarter, half-year or year (multi-year cadences:
// every N years from the first January 1 after the start); when the start is
// not on such a day, the first period runs from the start to the first
// boundary and is Partial.
//
// Where daylight saving time makes a boundary's local time not exist (the
// clock jumps over it), the boundary is that wall-clock time read with the
// offset in force before the jump, that is, later by the length of the jump
// (02:30 becomes 03:30 in Europe/Berlin and America/New_York). Where the local
// time occurs twice (the clock falls back), the boundary is the earlier
// instant. Go's time.Date leaves this choice open (and makes different
// choices east and west of UTC), so localTime fixes it. The first period
// always starts exactly at start.
//
// t before start is an error, as are an unsupported cadence or anchor.
func PeriodAt(start time.Time, c Cadence, a Anchor, loc *time.Location, t time.Time) (Period, error) {
	s, err := newSchedule(start, c, a, loc)
	if err != nil {
		return Period{}, err
	}
	if t.Before(start) {
		return Period{}, fmt.Errorf("t: %s is before the subscription start %s", t.Format(time.RFC3339Nano), start.Format(time.RFC3339Nano))
	}
	return s.period(s.index(t)), nil
}

// Periods returns, in order, every period (see PeriodAt) that overlaps
// [from, to). A from before start is taken as start; an empty or inverted
// range gives no periods.
func Periods(start time.Time, c Cadence, a Anchor, loc *time.Location, from, to time.Time) ([]Period, error) {
	s, err := newSchedule(start, c, a, loc)
	if err != nil {
		return nil, err
	}
	if from.Before(start) {
		from = start
	}
	if !from.Before(to) {
		return nil, nil
	}
	var ps []Period
	for k := s.index(from); ; k++ {
		p := s.period(k)
		if !p.Start.Before(to) {
			return ps, nil
		}
		ps = append(ps, p)
	}
}

// localTime is time.Date with a fixed rule for local times that DST makes
// non-existent or ambiguous (see PeriodAt): a skipped time is read with the
// offset before the jump; a repeated time gives the earlier instant.
func localTime(y int, m time.Month, d, hh, mm, ss, ns int, loc *time.Location) time.Time {
	t := time.Date(y, m, d, hh, mm, ss, ns, loc)
	want := time.Date(y, m, d, hh, mm, ss, ns, time.UTC) // wall clock as if UTC
	got := wall(t)
	if got.Before(want) {
		// Skipped time that time.Date read with the offset after the jump,
		// landing before it; t's offset is the one before the jump.
		return t.Add(want.Sub(got))
	}
	if got.After(want) {
		// Skipped time read with the offset before the jump: already the
		// rule's answer.
		return t
	}
	// The time exists; look for an earlier occurrence in the previous zone
	// period (a repeated time).
	zs, _ := t.ZoneBounds()
	if zs.IsZero() {
		return t
	}
	_, prevOff := zs.Add(-1).Zone()
	earlier := want.Add(-time.Duration(prevOff) * time.Second).In(loc)
	if earlier.Before(zs) && wall(earlier).Equal(want) {
		return earlier
	}
	return t
}

// wall returns t's local wall clock as a UTC time.
func wall(t time.Time) time.Time {
	_, off := t.Zone()
	return t.UTC().Add(time.Duration(off) * time.Second)
}

// normMonth normalises a 1-based month that may be out of range.
func normMonth(y, m int) (int, time.Month) {
	m-- // 0-based
	y += m / 12
	m %= 12
	if m < 0 {
		m += 12
		y--
	}
	return y, time.Month(m + 1)
}

func daysIn(y int, m time.Month) int {
	return time.Date(y, m+1, 0, 0, 0, 0, 0, time.UTC).Day()
}
