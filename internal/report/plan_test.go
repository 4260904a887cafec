package report

import (
	"testing"
	"time"

	"github.com/shopspring/decimal"
)

func d(s string) decimal.Decimal { return decimal.RequireFromString(s) }

func dp(s string) *decimal.Decimal { v := d(s); return &v }

var t0 = time.Date(2026, 6, 20, 10, 0, 0, 0, time.UTC)

func hours(vals ...string) map[int64]decimal.Decimal {
	m := map[int64]decimal.Decimal{}
	for i, v := range vals {
		if v != "" {
			m[t0.Add(time.Duration(i)*time.Hour).Unix()] = d(v)
		}
	}
	return m
}

type want struct {
	hour int // hours after t0
	qty  string
	late string
}

func check(t *testing.T, got []Planned, ws []want) {
	t.Helper()
	if len(got) != len(ws) {
		t.Fatalf("got %d reports %+v, want %d %+v", len(got), got, len(ws), ws)
	}
	for i, w := range ws {
		g := got[i]
		if !g.Hour.Equal(t0.Add(time.Duration(w.hour)*time.Hour)) || !g.Quantity.Equal(d(w.qty)) {
			t.Errorf("report %d: hour %s qty %s, want hour +%dh qty %s", i, g.Hour, g.Quantity, w.hour, w.qty)
		}
		wl := w.late
		if wl == "" {
			wl = "0"
		}
		if !g.Late.Equal(d(wl)) {
			t.Errorf("report %d: late %s, want %s", i, g.Late, wl)
		}
	}
}

func month() (time.Time, time.Time) { return t0, t0.AddDate(0, 1, 0) }

func TestPlanIncludedRunsOutMidHour(t *testing.T) {
	start, end := month()
	in := PlanInput{
		Stream:   Stream{},
		Segments: []SegmentInput{{Start: start, End: end, From: start, Band: Band{Lo: d("1000"), UnitSize: d("1")}, Hours: hours("600", "600", "0", "250")}},
		Through:  t0.Add(3 * time.Hour),
		Decimals: -1,
		Lookback: 24 * time.Hour,
	}
	st, got := PlanStream(in)
	// 600 (all included), 600 (400 included, 200 over), 0, 250.
	check(t, got, []want{{1, "200", ""}, {3, "250", ""}})
	if !st.Reported.Equal(d("450")) || !st.LastHour.Equal(t0.Add(3*time.Hour)) {
		t.Fatalf("state: reported %s last %s", st.Reported, st.LastHour)
	}
	if len(st.Segments) != 1 || !st.Segments[0].Usage.Equal(d("1450")) {
		t.Fatalf("segments: %+v", st.Segments)
	}
	// Planning again through the same hour changes nothing.
	in.Stream = st
	in.Segments[0].From, in.Segments[0].Base, in.Segments[0].Hours = t0.Add(4*time.Hour), d("1450"), nil
	st2, again := PlanStream(in)
	if len(again) != 0 || !st2.Reported.Equal(st.Reported) {
		t.Fatalf("replan: %+v %+v", again, st2)
	}
}

func TestPlanUnitSizeAndIntegerCarry(t *testing.T) {
	start, end := month()
	// Per 1,000 e-mails, integers only: 2,396 e-mails report 2, then the
	// 0.396 is carried: +700 makes 3.096 → 1 more.
	in := PlanInput{
		Segments: []SegmentInput{{Start: start, End: end, From: start, Band: Band{UnitSize: d("1000")}, Hours: hours("2396", "700", "3")}},
		Through:  t0.Add(2 * time.Hour), Decimals: 0, Lookback: time.Hour,
	}
	st, got := PlanStream(in)
	check(t, got, []want{{0, "2", ""}, {1, "1", ""}})
	if !st.Reported.Equal(d("3")) {
		t.Fatalf("reported %s", st.Reported)
	}
	// Decimal targets get the exact quantity.
	in.Decimals = -1
	_, got = PlanStream(in)
	check(t, got, []want{{0, "2.396", ""}, {1, "0.7", ""}, {2, "0.003", ""}})
}

func TestPlanLateUsageGoesToNextHour(t *testing.T) {
	start, end := month()
	in := PlanInput{
		Segments: []SegmentInput{{Start: start, End: end, From: start, Band: Band{Lo: d("100"), UnitSize: d("1")}, Hours: hours("150")}},
		Through:  t0, Decimals: -1, Lookback: time.Hour,
	}
	st, got := PlanStream(in)
	check(t, got, []want{{0, "50", ""}})
	// 30 late events arrive for hour 0; hour 1 has 5 of its own.
	in.Stream = st
	in.Segments[0].From, in.Segments[0].Base = t0.Add(time.Hour), d("180")
	in.Segments[0].Hours = map[int64]decimal.Decimal{t0.Add(time.Hour).Unix(): d("5")}
	in.Through = t0.Add(time.Hour)
	st, got = PlanStream(in)
	check(t, got, []want{{1, "35", "30"}})
	if !st.Reported.Equal(d("85")) {
		t.Fatalf("reported %s", st.Reported)
	}
}

func TestPlanTierBandsAndPeriodReset(t *testing.T) {
	p1s, p1e := month()
	p2e := p1e.AddDate(0, 1, 0)
	lastHour := p1e.Add(-time.Hour)
	// Tier 2 of a waterfall: billable units 100..300 above 50 included.
	band := Band{Lo: d("150"), Hi: dp("350"), UnitSize: d("1")}
	in := PlanInput{
		Stream: Stream{LastHour: lastHour.Add(-time.Hour), Segments: []SegmentState{{Start: p1s, End: p1e, Usage: d("140")}}},
		Segments: []SegmentInput{
			{Start: p1s, End: p1e, From: lastHour, Base: d("140"), Band: band, Hours: map[int64]decimal.Decimal{lastHour.Unix(): d("1000")}},
			{Start: p1e, End: p2e, From: p1e, Band: band, Hours: map[int64]decimal.Decimal{p1e.Unix(): d("160")}},
		},
		Through: p1e, Decimals: -1, Lookback: 24 * time.Hour,
	}
	st, got := PlanStream(in)
	if len(got) != 2 || !got[0].Quantity.Equal(d("200")) || !got[1].Quantity.Equal(d("10")) {
		t.Fatalf("got %+v, want 200 capped by the tier, then 10 in the new period", got)
	}
	if len(st.Segments) != 2 {
		t.Fatalf("both segments are tracked within the lookback: %+v", st.Segments)
	}
	// A day later the first segment is settled.
	in.Stream = st
	in.Segments[0].From, in.Segments[0].Base, in.Segments[0].Hours = p1e, d("1140"), nil
	in.Segments[1].From, in.Segments[1].Base, in.Segments[1].Hours = p1e.Add(time.Hour), d("160"), nil
	in.Through = p1e.Add(24 * time.Hour)
	st, got = PlanStream(in)
	if len(got) != 0 || len(st.Segments) != 1 || !st.Settled.Equal(d("200")) {
		t.Fatalf("got %+v, state %+v", got, st)
	}
}

func TestPlanNegativeGrowthNetsAgainstLaterHours(t *testing.T) {
	start, end := month()
	in := PlanInput{
		Segments: []SegmentInput{{Start: start, End: end, From: start, Band: Band{UnitSize: d("1")}, Hours: hours("10", "-4", "6")}},
		Through:  t0.Add(2 * time.Hour), Decimals: -1, Lookback: time.Hour,
	}
	_, got := PlanStream(in)
	check(t, got, []want{{0, "10", ""}, {2, "2", ""}})
}

func TestIDsAreDeterministic(t *testing.T) {
	a := ReportID("azure", "sub_1", "", "emails", t0)
	if a != ReportID("azure", "sub_1", "", "emails", t0.In(time.FixedZone("x", 3600))) {
		t.Fatal("same hour in another zone gave another id")
	}
	for _, other := range []string{
		ReportID("azure", "sub_1", "", "emails", t0.Add(time.Hour)),
		ReportID("aws", "sub_1", "", "emails", t0),
		ReportID("azure", "sub_1", "dep", "emails", t0),
		ReportID("azure", "sub_1e", "", "mails", t0),
	} {
		if other == a {
			t.Fatalf("collision: %s", a)
		}
	}
}

func TestPlanExcessIsRecomputedWhenNoHourIsDue(t *testing.T) {
	start, end := month()
	// 300, 50 and 20 were reported, then a correction of -60 made an
	// excess of 60, and the runner took back the 50 and the 20: Reported is
	// 300 and usage 310. A late event with no hour due must not leave the
	// old excess of 60 standing (it would take back the 300 too).
	in := PlanInput{
		Stream: Stream{LastHour: t0.Add(3 * time.Hour), Reported: d("300"), Excess: d("60"),
			Segments: []SegmentState{{Start: start, End: end, Usage: d("310")}}},
		Segments: []SegmentInput{{Start: start, End: end, From: t0.Add(4 * time.Hour), Base: d("315"), Band: Band{UnitSize: d("1")}}},
		Through:  t0.Add(3 * time.Hour), Decimals: 0, Lookback: time.Hour,
	}
	st, got := PlanStream(in)
	if len(got) != 0 || !st.Excess.IsZero() || !st.PendingLate.Equal(d("5")) {
		t.Fatalf("got %+v, excess %s, pending late %s; want no report, no excess, 5 pending", got, st.Excess, st.PendingLate)
	}
	// A correction found with no hour due is an excess at once.
	in.Segments[0].Base = d("250")
	if st, _ = PlanStream(in); !st.Excess.Equal(d("50")) {
		t.Fatalf("excess %s, want 50", st.Excess)
	}
}

func TestPlanCorrectionsByTarget(t *testing.T) {
	start, end := month()
	last := end.Add(-time.Hour)
	// 10 reported in hour 0, -4 in hour 1, nothing until the period's last
	// hour, which has 1.
	usage := hours("10", "-4")
	usage[last.Unix()] = d("1")
	base := PlanInput{
		Segments: []SegmentInput{{Start: start, End: end, From: start, Band: Band{UnitSize: d("1")}, Hours: usage}},
		Through:  last, Decimals: 0, Lookback: time.Hour,
	}
	t.Run("negative quantities", func(t *testing.T) {
		in := base
		in.Negative, in.Decimals = true, -1
		st, got := PlanStream(in)
		check(t, got, []want{{0, "10", ""}, {1, "-4", ""}, {int(last.Sub(t0) / time.Hour), "1", ""}})
		if !st.Reported.Equal(d("7")) || !st.Excess.IsZero() {
			t.Fatalf("reported %s excess %s", st.Reported, st.Excess)
		}
	})
	t.Run("refund at the period's end", func(t *testing.T) {
		in := base
		in.Refund = true
		st, got := PlanStream(in)
		if len(got) != 2 || !got[1].Refund || !got[1].Quantity.Equal(d("-3")) || !got[1].Hour.Equal(last) {
			t.Fatalf("got %+v, want 10 then a refund of 3 in the last hour", got)
		}
		if !st.Refunded.Equal(d("3")) || !st.Excess.IsZero() || !st.Reported.Equal(d("10")) {
			t.Fatalf("refunded %s excess %s reported %s", st.Refunded, st.Excess, st.Reported)
		}
		// The next period reports its usage in full.
		in.Stream = st
		next := end.AddDate(0, 1, 0)
		in.Segments = append(in.Segments, SegmentInput{Start: end, End: next, From: end, Band: Band{UnitSize: d("1")},
			Hours: map[int64]decimal.Decimal{end.Unix(): d("2")}})
		in.Segments[0].From, in.Segments[0].Base, in.Segments[0].Hours = end, d("7"), nil
		in.Through = end
		_, got = PlanStream(in)
		if len(got) != 1 || got[0].Refund || !got[0].Quantity.Equal(d("2")) {
			t.Fatalf("got %+v, want 2 in the next period", got)
		}
	})
	t.Run("netted without refund (Canceler)", func(t *testing.T) {
		st, got := PlanStream(base)
		check(t, got, []want{{0, "10", ""}})
		if !st.Excess.Equal(d("3")) {
			t.Fatalf("excess %s, want 3", st.Excess)
		}
	})
}

func TestPlanFractionSettledAtPeriodEnd(t *testing.T) {
	start, end := month()
	last := end.Add(-time.Hour)
	for _, tt := range []struct {
		name, carried string
		want          []want
		rounded       string
	}{
		{"half rounds up", "2.5", []want{{0, "2", ""}, {int(last.Sub(t0) / time.Hour), "1", ""}}, "0.5"},
		{"below half is dropped", "2.49", []want{{0, "2", ""}}, "-0.49"},
		{"no fraction", "2", []want{{0, "2", ""}}, "0"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			in := PlanInput{
				Segments: []SegmentInput{{Start: start, End: end, From: start, Band: Band{UnitSize: d("1")}, Hours: hours(tt.carried)}},
				Through:  last, Decimals: 0, Lookback: time.Hour,
			}
			st, got := PlanStream(in)
			check(t, got, tt.want)
			if !st.Rounded.Equal(d(tt.rounded)) {
				t.Fatalf("rounded %s, want %s", st.Rounded, tt.rounded)
			}
			// Nothing of it reaches the next period.
			in.Stream = st
			in.Segments[0].From, in.Segments[0].Base, in.Segments[0].Hours = end, d(tt.carried), nil
			in.Segments = append(in.Segments, SegmentInput{Start: end, End: end.AddDate(0, 1, 0), From: end, Band: Band{UnitSize: d("1")},
				Hours: map[int64]decimal.Decimal{end.Unix(): d("0.6")}})
			in.Through = end.Add(time.Hour)
			if _, got = PlanStream(in); len(got) != 0 {
				t.Fatalf("the next period reports %+v for 0.6 of its own", got)
			}
		})
	}
}
