package report

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"slices"
	"time"

	"github.com/shopspring/decimal"
)

// Stream is the reporting state of one series of reports: one reporting
// entry (target and dimension) of one subscription's charge, for one
// resource. Its reports' quantities add up to what the subscription's
// usage makes billable in that dimension, cut to what the target accepts;
// the cut-off fraction is carried in Owed - Reported.
type Stream struct {
	// ID is deterministic: StreamID(Target, SubscriptionID, Subject, Dimension).
	ID             string
	Target         string
	SubscriptionID string
	CustomerID     string
	Dimension      string
	// Subject is set when the stream reports one deployment of the customer.
	Subject string
	// LastHour is the start of the last hour planned (zero before the first).
	LastHour time.Time
	// Reported is the sum of the quantities of the stream's reports that
	// were not expired, in target units.
	Reported decimal.Decimal
	// Settled is the reportable quantity (target units, exact) of segments
	// no longer tracked: those that ended more than the lookback before the
	// last planned hour. Late usage for them is not reported (it still
	// reaches the invoice as an adjustment).
	Settled decimal.Decimal
	// Segments are the tracked billing-period segments with the usage seen
	// in each up to the end of LastHour.
	Segments []SegmentState
	// Owed is, for one deployment's stream of a subscription reported per
	// deployment, the exact quantity shared out to it so far (what it
	// reports is Owed cut to the target's decimals).
	Owed decimal.Decimal
	// Excess is how much more the stream has reported than its usage now
	// makes reportable (usage corrected downwards), in target units. A
	// target that can take reports back (Stripe, within 24h) is asked to;
	// otherwise later growth is netted against it.
	Excess decimal.Decimal
	// PendingLate is late usage (meter units) seen while no hour was due,
	// to be named as late in the next report; PendingLateFrom says where
	// it came from (see PlanInput.LateFrom).
	PendingLate     decimal.Decimal
	PendingLateFrom []string `json:",omitempty"`
	// Refunded is the excess written off at segment ends for a target that
	// can neither take negative quantities nor take reports back: billed
	// there, and to be refunded by hand (target units).
	Refunded decimal.Decimal
	// Rounded is what settling carried fractions at segment ends changed
	// (target units): plus the part added by rounding up, minus the part
	// dropped. It counts as reportable, so neither is ever reported again.
	Rounded decimal.Decimal
	// UpdatedAt is when the stream was last planned.
	UpdatedAt time.Time
}

// SegmentState is the usage a stream has accounted for in one segment
// (a billing period, or the part of it on one plan version).
type SegmentState struct {
	Start time.Time       `json:"start"`
	End   time.Time       `json:"end"`
	Usage decimal.Decimal `json:"usage"`
}

// Band is the part of a segment's usage a stream reports: usage above Lo
// (the included quantity, plus a tier's lower bound for a tier mapped to its
// own dimension) and, when Hi is set, up to Hi, divided by UnitSize.
type Band struct {
	Lo       decimal.Decimal
	Hi       *decimal.Decimal
	UnitSize decimal.Decimal
}

// Reportable is the quantity, in target units, that usage u of a segment
// makes reportable in band b.
func (b Band) Reportable(u decimal.Decimal) decimal.Decimal {
	q := u.Sub(b.Lo)
	if q.Sign() <= 0 {
		return decimal.Zero
	}
	if b.Hi != nil {
		if width := b.Hi.Sub(b.Lo); q.GreaterThan(width) {
			q = width
		}
	}
	if b.UnitSize.Sign() > 0 && !b.UnitSize.Equal(decimal.NewFromInt(1)) {
		q = q.DivRound(b.UnitSize, 16)
	}
	return q
}

// SegmentInput is one segment the planner is to account for: its bounds,
// the band it reports, the usage already in it before From (Base), and
// its usage per UTC hour from From on (keyed by the hour's start, Unix
// seconds; an hour the segment covers only in part holds the usage of
// that part).
type SegmentInput struct {
	Start, End time.Time
	Band       Band
	// From is where Hours begins: the end of the stream's last planned
	// hour, or the segment's start. Base is the usage in [Start, From).
	From  time.Time
	Base  decimal.Decimal
	Hours map[int64]decimal.Decimal
}

// Planned is one report the planner asks for.
type Planned struct {
	Hour     time.Time
	Quantity decimal.Decimal
	// Usage is the meter usage of the hour itself (all of the stream's
	// segments), for the audit.
	Usage decimal.Decimal
	// Late is the usage, in meter units, that arrived after an earlier hour
	// of the stream was planned and is reported in this one (negative for
	// a correction); LateFrom names the hours it belongs to.
	Late     decimal.Decimal
	LateFrom []string
	// Refund marks a correction the target can't take (Quantity is
	// negative): billed there, it is to be refunded by hand, not sent.
	Refund bool
	// Rounding is the carried fraction settled in this hour: the part added
	// by rounding up to one more unit, or, negative, the part dropped.
	Rounding decimal.Decimal
}

// PlanInput is everything PlanStream needs.
type PlanInput struct {
	Stream Stream
	// Segments are the segments to account for, in time order; each is
	// matched to the stream's tracked segment with the same Start.
	Segments []SegmentInput
	// Through is the start of the last hour to plan: every hour after the
	// stream's LastHour up to Through is planned.
	Through time.Time
	// Decimals is the target's precision (see Capabilities.Decimals).
	Decimals int32
	// Lookback is how long after a segment's end late usage for it is
	// still reported.
	Lookback time.Duration
	// Negative says the target takes negative quantities (a webhook
	// receiver): usage corrected downwards is reported as such.
	Negative bool
	// Refund says the target can neither take negative quantities nor
	// take reports back (Azure, AWS): an excess still un-netted when a
	// segment ends is planned as a refund.
	Refund bool
	// LateFrom names where late usage found now comes from (each an
	// RFC 3339 hour, or an RFC 3339 interval "start/end" of hours that were
	// recounted); it goes with the report that carries the late usage.
	LateFrom []string
}

// PlanStream plans the reports of the hours after in.Stream.LastHour up to
// in.Through and returns them with the stream's new state. It is pure.
//
// Each hour H reports the growth of the stream's cumulative reportable
// quantity: Settled plus, per segment, Band.Reportable(usage of the segment
// up to H's end), plus Rounded, minus what is billed already (Reported
// less Refunded), cut to the target's decimals (the fraction is carried to
// the next hour). Usage that consumes the included quantity consumes it in
// time order, so the hour in which it runs out reports only the part above
// it. Usage found in hours already planned (late events; a Base above the
// tracked usage) is reported in the first hour planned now, with its amount
// in Planned.Late and its origin (in.LateFrom) in Planned.LateFrom. Every
// segment the stream tracks must be among in.Segments.
//
// Negative growth (usage corrected downwards) is reported as a negative
// quantity to a target that takes one (in.Negative). Otherwise it is the
// stream's Excess, netted against later growth, and, with in.Refund, what
// is still un-netted when a segment ends (or when no segment is open any
// more) is written off into Refunded and planned as a refund: a Planned
// with Refund set and the negative quantity, which is not to be sent.
//
// The fraction carried for a target with limited decimals is settled at
// the end of the hour in which a segment ends (and in every hour planned
// when no segment is open any more): half a unit of the target's
// precision or more rounds up to one more unit in that hour's report,
// less is dropped; either way Rounded records the difference, so that the
// unit added is never billed again and the part dropped never resurfaces.
func PlanStream(in PlanInput) (Stream, []Planned) {
	st := in.Stream
	st.PendingLateFrom = slices.Clone(st.PendingLateFrom)
	tracked := make(map[int64]SegmentState, len(st.Segments))
	for _, s := range st.Segments {
		tracked[s.Start.Unix()] = s
	}
	first := in.Through.Add(time.Hour) // no hour to plan unless a segment says so
	if !st.LastHour.IsZero() {
		first = st.LastHour.Add(time.Hour)
	} else {
		for _, sg := range in.Segments {
			if h := hourOf(sg.Start); h.Before(first) {
				first = h
			}
		}
	}
	type live struct {
		in    SegmentInput
		usage decimal.Decimal // usage up to the end of the hour being planned
	}
	segs := make([]live, len(in.Segments))
	late := decimal.Zero
	for i, sg := range in.Segments {
		segs[i] = live{in: sg, usage: sg.Base}
		if old, ok := tracked[sg.Start.Unix()]; ok {
			late = late.Add(sg.Base.Sub(old.Usage))
		} else {
			late = late.Add(sg.Base)
		}
	}
	// position is how much more the stream's usage makes reportable than
	// the target bills now (negative: an excess).
	position := func() decimal.Decimal {
		total := st.Settled.Add(st.Rounded)
		for _, sg := range segs {
			total = total.Add(sg.in.Band.Reportable(sg.usage))
		}
		return total.Sub(st.Reported.Sub(st.Refunded))
	}
	if first.After(in.Through) {
		// No hour to plan: remember what late usage was seen, to report it
		// with the next hour, and how far the stream is above its usage
		// now (a correction a Canceler target can take back at once).
		st.Segments = slices.Clone(st.Segments)
		for i := range st.Segments {
			for _, sg := range segs {
				if sg.in.Start.Equal(st.Segments[i].Start) {
					st.Segments[i].Usage = sg.usage
				}
			}
		}
		st.PendingLate = st.PendingLate.Add(late)
		if !late.IsZero() {
			st.PendingLateFrom = mergeNames(st.PendingLateFrom, in.LateFrom)
		}
		st.Excess = decimal.Zero
		if q := position(); q.Sign() < 0 {
			st.Excess = q.Neg()
		}
		return st, nil
	}
	var out []Planned
	lateLeft := late.Add(st.PendingLate)
	lateFrom := st.PendingLateFrom
	if !late.IsZero() {
		lateFrom = mergeNames(lateFrom, in.LateFrom)
	}
	st.PendingLate, st.PendingLateFrom = decimal.Zero, nil
	unit := decimal.New(1, -in.Decimals)
	for h := first; !h.After(in.Through); h = h.Add(time.Hour) {
		hourUsage := decimal.Zero
		end := h.Add(time.Hour)
		settle, open := false, false
		for i := range segs {
			sg := &segs[i]
			if u, ok := sg.in.Hours[h.Unix()]; ok {
				sg.usage = sg.usage.Add(u)
				hourUsage = hourUsage.Add(u)
			}
			settle = settle || sg.in.End.After(h) && !sg.in.End.After(end)
			open = open || sg.in.End.After(end)
		}
		settle = settle || !open
		st.LastHour = h
		st.Excess = decimal.Zero
		p := Planned{Hour: h, Usage: hourUsage}
		q := position()
		switch {
		case q.Sign() < 0 && in.Negative:
		case q.Sign() < 0 && in.Refund && settle:
			// Nothing later in the period can net it: the target keeps
			// billing it unless a person refunds it.
			st.Refunded = st.Refunded.Add(q.Neg())
			p.Refund = true
			out = append(out, p.withQuantity(q))
			continue
		case q.Sign() < 0:
			st.Excess = q.Neg()
			continue
		}
		if in.Decimals >= 0 {
			exact := q
			q = q.Truncate(in.Decimals)
			if frac := exact.Sub(q); settle && frac.Sign() > 0 {
				if frac.GreaterThanOrEqual(unit.Div(decimal.NewFromInt(2))) {
					q = q.Add(unit)
					p.Rounding = unit.Sub(frac)
				} else {
					p.Rounding = frac.Neg()
				}
				st.Rounded = st.Rounded.Add(p.Rounding)
			}
		}
		if q.IsZero() {
			continue
		}
		if !lateLeft.IsZero() {
			p.Late, p.LateFrom, lateLeft, lateFrom = lateLeft, lateFrom, decimal.Zero, nil
		}
		st.Reported = st.Reported.Add(q)
		out = append(out, p.withQuantity(q))
	}
	// New tracked state: every input segment with the usage seen through
	// the last planned hour; segments past the lookback are settled.
	st.Segments = st.Segments[:0:0]
	horizon := st.LastHour.Add(time.Hour).Add(-in.Lookback)
	for _, sg := range segs {
		if !st.LastHour.IsZero() && !sg.in.End.After(horizon) {
			st.Settled = st.Settled.Add(sg.in.Band.Reportable(sg.usage))
			continue
		}
		st.Segments = append(st.Segments, SegmentState{Start: sg.in.Start, End: sg.in.End, Usage: sg.usage})
	}
	return st, out
}

func (p Planned) withQuantity(q decimal.Decimal) Planned {
	p.Quantity = q
	return p
}

// mergeNames is the sorted union of two lists of late-usage origins.
func mergeNames(a, b []string) []string {
	out := slices.Concat(a, b)
	slices.Sort(out)
	return slices.Compact(out)
}

// hourOf is the start of t's UTC hour.
func hourOf(t time.Time) time.Time { return t.UTC().Truncate(time.Hour) }

// StreamID is the deterministic identity of a stream.
func StreamID(target, subscriptionID, subject, dimension string) string {
	return "str_" + digest(target, subscriptionID, subject, dimension)
}

// ReportID is the deterministic identity of a report: the same target,
// subscription, deployment, dimension and hour always give the same id, so
// planning twice stores one report and a resend carries the same
// idempotency key.
func ReportID(target, subscriptionID, subject, dimension string, hour time.Time) string {
	return "rpt_" + digest(target, subscriptionID, subject, dimension, fmt.Sprint(hour.UTC().Unix()))
}

// RefundID is the deterministic identity of a refund record (a report in
// state refund) of the same stream and hour.
func RefundID(target, subscriptionID, subject, dimension string, hour time.Time) string {
	return "rfd_" + digest(target, subscriptionID, subject, dimension, fmt.Sprint(hour.UTC().Unix()), "refund")
}

func digest(parts ...string) string {
	h := sha256.New()
	for _, p := range parts {
		fmt.Fprintf(h, "%d:%s;", len(p), p)
	}
	return hex.EncodeToString(h.Sum(nil)[:16])
}
