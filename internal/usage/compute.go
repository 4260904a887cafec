package usage

import (
	"encoding/binary"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/shopspring/decimal"

	"github.com/tally-metering/tally/internal/bounds"
	"github.com/tally-metering/tally/internal/meter"
	"github.com/tally-metering/tally/internal/store"
)

// Compute answers q from a meter's rollups: rows per window, subject and
// requested group, in order of window start, then subject, then group values
// (in GroupBy order; a missing value sorts first). Windows without usage are
// left out.
//
// For UNIQUE_COUNT meters it reads uniques (the distinct values per minute)
// and ignores rollups; for every other aggregation it reads rollups and
// ignores uniques. It applies every filter of q itself (From, To, Subjects,
// Within, FilterGroupBy), so the inputs may hold more than q asks for, but they must
// all belong to q.Meter.
func Compute(q Query, rollups []store.Rollup, uniques []store.UniqueValue) ([]Row, error) {
	if err := q.Validate(); err != nil {
		return nil, err
	}
	c := newComputer(q)
	if q.Meter.Aggregation == meter.UniqueCount {
		for _, u := range uniques {
			a, err := c.bucket(u.MeterID, u.Subject, u.GroupKey, u.Minute)
			if err != nil {
				return nil, err
			}
			if a == nil {
				continue
			}
			if a.uniques == nil {
				a.uniques = make(map[string]struct{})
			}
			a.uniques[u.Value] = struct{}{}
		}
	} else {
		for _, r := range rollups {
			if r.State.Count == 0 {
				continue
			}
			a, err := c.bucket(r.MeterID, r.Subject, r.GroupKey, r.Minute)
			if err != nil {
				return nil, err
			}
			if a == nil {
				continue
			}
			a.state.MergeFor(q.Meter.Aggregation, r.State)
		}
	}
	return c.rows(), nil
}

// computer groups inputs into buckets, one per output row.
type computer struct {
	q        Query
	loc      *time.Location
	from, to int64 // Unix seconds, valid when q.From / q.To are set
	subjects map[string]bool
	// within is q.Within as Unix seconds [from, to) per subject.
	within map[string][][2]int64
	// groupKeys are the requested meter group-by keys, deduplicated, in
	// request order; bySubject says whether "subject" was requested.
	groupKeys []string
	bySubject bool

	groups  map[string]*groupInfo // by store group key
	buckets map[string]*bucket
	keyBuf  []byte

	// The window last looked up, as Unix seconds [winStart, winEnd).
	haveWin          bool
	winStart, winEnd int64
	winStartT        time.Time
	winEndT          time.Time
}

// groupInfo is what a store group key means for this query.
type groupInfo struct {
	keep   bool
	values []*string // per c.groupKeys
}

type bucket struct {
	start, end time.Time // natural window bounds (windowed queries)
	subject    *string
	values     []*string
	// first and last minute with usage, Unix seconds.
	first, last int64
	state       meter.State
	uniques     map[string]struct{}
}

func newComputer(q Query) *computer {
	c := &computer{
		q:       q,
		loc:     orUTC(q.TimeZone),
		groups:  make(map[string]*groupInfo),
		buckets: make(map[string]*bucket),
	}
	if q.From != nil {
		c.from = q.From.Unix()
	}
	if q.To != nil {
		c.to = q.To.Unix()
	}
	if len(q.Subjects) > 0 {
		c.subjects = make(map[string]bool, len(q.Subjects))
		for _, s := range q.Subjects {
			c.subjects[s] = true
		}
	}
	if len(q.Within) > 0 {
		c.within = make(map[string][][2]int64, len(q.Within))
		for s, spans := range q.Within {
			w := make([][2]int64, len(spans))
			for i, sp := range spans {
				w[i] = [2]int64{ceilUnix(sp.From), ceilUnix(sp.To)}
			}
			c.within[s] = w
		}
	}
	seen := make(map[string]bool)
	for _, k := range q.GroupBy {
		if seen[k] {
			continue
		}
		seen[k] = true
		if k == SubjectGroup {
			c.bySubject = true
		} else {
			c.groupKeys = append(c.groupKeys, k)
		}
	}
	return c
}

// bucket returns the bucket usage of the given subject, group and minute
// goes in, or nil when the query filters it out.
func (c *computer) bucket(meterID, subject, groupKey string, minute int64) (*bucket, error) {
	if meterID != c.q.Meter.ID {
		return nil, fmt.Errorf("usage: got usage of meter %q for a query of meter %q", meterID, c.q.Meter.ID)
	}
	if (c.q.From != nil && minute < c.from) || (c.q.To != nil && minute >= c.to) {
		return nil, nil
	}
	if c.subjects != nil && !c.subjects[subject] {
		return nil, nil
	}
	if c.within != nil {
		if w, ok := c.within[subject]; ok && !inSpans(w, minute) {
			return nil, nil
		}
	}
	g, err := c.group(groupKey)
	if err != nil {
		return nil, err
	}
	if !g.keep {
		return nil, nil
	}

	var start time.Time
	b := c.keyBuf[:0]
	if c.q.WindowSize != "" {
		if !c.haveWin || minute < c.winStart || minute >= c.winEnd {
			c.haveWin = true
			c.winStartT = WindowStart(time.Unix(minute, 0), c.q.WindowSize, c.loc)
			c.winEndT = WindowEnd(c.winStartT, c.q.WindowSize, c.loc)
			c.winStart, c.winEnd = ceilUnix(c.winStartT), ceilUnix(c.winEndT)
		}
		start = c.winStartT
		b = binary.AppendVarint(b, start.Unix())
		b = binary.AppendVarint(b, int64(start.Nanosecond()))
	}
	if c.bySubject {
		b = appendPart(b, &subject)
	}
	for _, v := range g.values {
		b = appendPart(b, v)
	}
	c.keyBuf = b

	if a, ok := c.buckets[string(b)]; ok {
		a.first = min(a.first, minute)
		a.last = max(a.last, minute)
		return a, nil
	}
	a := &bucket{values: g.values, first: minute, last: minute}
	if c.q.WindowSize != "" {
		a.start, a.end = start, c.winEndT
	}
	if c.bySubject {
		s := subject
		a.subject = &s
	}
	c.buckets[string(b)] = a
	return a, nil
}

// inSpans says whether minute is in one of spans.
func inSpans(spans [][2]int64, minute int64) bool {
	for _, sp := range spans {
		if minute >= sp[0] && minute < sp[1] {
			return true
		}
	}
	return false
}

// ceilUnix is the least whole second at or after t. Rollup minutes are whole
// seconds, so minute m is in [start, end) exactly when m is in
// [ceilUnix(start), ceilUnix(end)).
func ceilUnix(t time.Time) int64 {
	s := t.Unix()
	if t.Nanosecond() > 0 {
		s++
	}
	return s
}

func appendPart(b []byte, v *string) []byte {
	if v == nil {
		return append(b, 0)
	}
	b = append(b, 1)
	b = binary.AppendUvarint(b, uint64(len(*v)))
	return append(b, *v...)
}

func (c *computer) group(key string) (*groupInfo, error) {
	if g, ok := c.groups[key]; ok {
		return g, nil
	}
	vals, err := meter.DecodeGroupKey(key)
	if err != nil {
		return nil, fmt.Errorf("usage: meter %s: %w", c.q.Meter.Slug, err)
	}
	g := &groupInfo{keep: true}
	for k, want := range c.q.FilterGroupBy {
		if v, ok := vals[k]; !ok || v != want {
			g.keep = false
		}
	}
	for _, k := range c.groupKeys {
		if v, ok := vals[k]; ok {
			g.values = append(g.values, &v)
		} else {
			g.values = append(g.values, nil)
		}
	}
	c.groups[key] = g
	return g, nil
}

func (c *computer) rows() []Row {
	rows := make([]Row, 0, len(c.buckets))
	for _, a := range c.buckets {
		var r Row
		if c.q.Meter.Aggregation == meter.UniqueCount {
			r.Value = decimal.NewFromInt(int64(len(a.uniques)))
		} else {
			r.Value = a.state.Value(c.q.Meter.Aggregation)
		}
		if c.q.WindowSize != "" {
			r.WindowStart, r.WindowEnd = a.start, a.end
			if c.q.From != nil && c.q.From.After(r.WindowStart) {
				r.WindowStart = *c.q.From
			}
			if c.q.To != nil && c.q.To.Before(r.WindowEnd) {
				r.WindowEnd = *c.q.To
			}
		} else {
			r.WindowStart = time.Unix(a.first, 0)
			if c.q.From != nil {
				r.WindowStart = *c.q.From
			}
			r.WindowEnd = time.Unix(a.last, 0).Add(time.Minute)
			if c.q.To != nil {
				r.WindowEnd = *c.q.To
			}
		}
		// A window can end past the last instant tally accepts (the minute
		// 9999-12-31T23:59 ends at 10000-01-01T00:00:00Z) or fall in year
		// 10000 on the zone's wall clock, which RFC 3339 can't write:
		// clamped, every row can be shown.
		r.WindowStart = bounds.ClampTime(r.WindowStart.In(c.loc))
		r.WindowEnd = bounds.ClampTime(r.WindowEnd.In(c.loc))
		r.Subject = a.subject
		r.GroupBy = make(map[string]*string, len(c.groupKeys))
		for i, k := range c.groupKeys {
			if v := a.values[i]; v != nil {
				s := *v
				r.GroupBy[k] = &s
			} else {
				r.GroupBy[k] = nil
			}
		}
		rows = append(rows, r)
	}
	sort.Slice(rows, func(i, j int) bool {
		a, b := rows[i], rows[j]
		if !a.WindowStart.Equal(b.WindowStart) {
			return a.WindowStart.Before(b.WindowStart)
		}
		if n := comparePtr(a.Subject, b.Subject); n != 0 {
			return n < 0
		}
		for _, k := range c.groupKeys {
			if n := comparePtr(a.GroupBy[k], b.GroupBy[k]); n != 0 {
				return n < 0
			}
		}
		return a.WindowEnd.Before(b.WindowEnd)
	})
	return rows
}

// comparePtr orders nil before every string, then strings bytewise.
func comparePtr(a, b *string) int {
	switch {
	case a == nil && b == nil:
		return 0
	case a == nil:
		return -1
	case b == nil:
		return 1
	}
	return strings.Compare(*a, *b)
}
