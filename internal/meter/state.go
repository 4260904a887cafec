package meter

import (
	"github.com/shopspring/decimal"
)

// AvgScale is the number of decimal places an AVG is rounded to (half away
// from zero),
// since a mean such as 1/3 has no finite decimal form.
const AvgScale = 20

// State is the mergeable aggregation state of a set of events: what a rollup
// row keeps for one meter, subject, group and minute. Every field is exact.
type State struct {
	Count int64
	Sum   decimal.Decimal
	Min   decimal.Decimal
	Max   decimal.Decimal
	// Latest is the value of the event with the greatest (LatestTime,
	// LatestSeq): event time in Unix microseconds, then ingestion order.
	Latest     decimal.Decimal
	LatestTime int64
	LatestSeq  int64
}

// AddCount counts one event that carries no value (COUNT, UNIQUE_COUNT).
func (s *State) AddCount() { s.Count++ }

// Add counts one event with value v, event time timeUS (Unix µs) and
// ingestion sequence seq.
func (s *State) Add(v decimal.Decimal, timeUS, seq int64) {
	if s.Count == 0 {
		s.Sum, s.Min, s.Max = v, v, v
		s.Latest, s.LatestTime, s.LatestSeq = v, timeUS, seq
		s.Count = 1
		return
	}
	s.Count++
	s.Sum = s.Sum.Add(v)
	if v.LessThan(s.Min) {
		s.Min = v
	}
	if v.GreaterThan(s.Max) {
		s.Max = v
	}
	if timeUS > s.LatestTime || (timeUS == s.LatestTime && seq > s.LatestSeq) {
		s.Latest, s.LatestTime, s.LatestSeq = v, timeUS, seq
	}
}

// Merge folds o into s. Merge is associative and commutative, so rollups can
// be combined in any order.
func (s *State) Merge(o State) {
	if o.Count == 0 {
		return
	}
	if s.Count == 0 {
		*s = o
		return
	}
	s.Count += o.Count
	s.Sum = s.Sum.Add(o.Sum)
	if o.Min.LessThan(s.Min) {
		s.Min = o.Min
	}
	if o.Max.GreaterThan(s.Max) {
		s.Max = o.Max
	}
	if o.LatestTime > s.LatestTime || (o.LatestTime == s.LatestTime && o.LatestSeq > s.LatestSeq) {
		s.Latest, s.LatestTime, s.LatestSeq = o.Latest, o.LatestTime, o.LatestSeq
	}
}

// Value is the meter's result for the events in s under aggregation a. It
// is not defined for UNIQUE_COUNT, whose result needs the distinct values.
func (s State) Value(a Aggregation) decimal.Decimal {
	switch a {
	case Count:
		return decimal.NewFromInt(s.Count)
	case Sum:
		return s.Sum
	case Avg:
		if s.Count == 0 {
			return decimal.Zero
		}
		return s.Sum.DivRound(decimal.NewFromInt(s.Count), AvgScale)
	case Min:
		return s.Min
	case Max:
		return s.Max
	case Latest:
		return s.Latest
	}
	return decimal.Zero
}

// Observe counts one event for aggregation a, keeping only the fields a
// reads (Sum for SUM and AVG, Min, Max, or Latest); the others stay zero.
// It is the cheap form of Add used on the ingest path; Value(a) is the same
// either way.
func (s *State) Observe(a Aggregation, v decimal.Decimal, timeUS, seq int64) {
	first := s.Count == 0
	s.Count++
	switch a {
	case Sum, Avg:
		if first {
			s.Sum = v
		} else {
			s.Sum = s.Sum.Add(v)
		}
	case Min:
		if first || v.LessThan(s.Min) {
			s.Min = v
		}
	case Max:
		if first || v.GreaterThan(s.Max) {
			s.Max = v
		}
	case Latest:
		if first || timeUS > s.LatestTime || (timeUS == s.LatestTime && seq > s.LatestSeq) {
			s.Latest, s.LatestTime, s.LatestSeq = v, timeUS, seq
		}
	}
}

// MergeFor folds o into s for aggregation a, touching only the fields a
// reads. Both states must have been built with Observe for a (or Add).
func (s *State) MergeFor(a Aggregation, o State) {
	if o.Count == 0 {
		return
	}
	if s.Count == 0 {
		*s = o
		return
	}
	s.Count += o.Count
	switch a {
	case Sum, Avg:
		s.Sum = s.Sum.Add(o.Sum)
	case Min:
		if o.Min.LessThan(s.Min) {
			s.Min = o.Min
		}
	case Max:
		if o.Max.GreaterThan(s.Max) {
			s.Max = o.Max
		}
	case Latest:
		if o.LatestTime > s.LatestTime || (o.LatestTime == s.LatestTime && o.LatestSeq > s.LatestSeq) {
			s.Latest, s.LatestTime, s.LatestSeq = o.Latest, o.LatestTime, o.LatestSeq
		}
	}
}
