package ingest

import (
	"cmp"
	"context"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/tally-metering/tally/internal/meter"
	"github.com/tally-metering/tally/internal/store"
)

// Difference is one place where a stored projection disagrees with the one
// recomputed from the raw events.
type Difference struct {
	Meter   string
	Subject string
	Group   string
	Minute  time.Time
	Stored  string
	Rebuilt string
}

func (d Difference) String() string {
	g := ""
	if d.Group != "" {
		g = " group " + d.Group
	}
	return fmt.Sprintf("meter %s subject %q%s window %s..%s: stored %s, recomputed from raw events %s",
		d.Meter, d.Subject, g, d.Minute.Format(time.RFC3339), d.Minute.Add(time.Minute).Format(time.RFC3339), d.Stored, d.Rebuilt)
}

// VerifyReport sums up a verification.
type VerifyReport struct {
	Meters      int
	Rollups     int
	Differences []Difference
}

// Verify recomputes every meter from the raw events (with their voids and
// amendments, and the cancellation rules in effect) and compares the result
// with the stored rollups and distinct values. It does not write; run it on
// a store no one is writing to, or expect the newest minute to differ.
func Verify(ctx context.Context, st Store) (VerifyReport, error) {
	var rep VerifyReport
	ms, err := st.ListMeters(ctx)
	if err != nil {
		return rep, err
	}
	rules, err := st.ListRules(ctx)
	if err != nil {
		return rep, err
	}
	for _, m := range ms {
		c, err := meter.Compile(m)
		if err != nil {
			return rep, fmt.Errorf("meter %s: %w", m.Slug, err)
		}
		proj, err := Project(ctx, st, c, rules)
		if err != nil {
			return rep, err
		}
		all := store.RollupQuery{MeterID: m.ID, From: math.MinInt64, To: math.MaxInt64}
		stored, err := st.QueryRollups(ctx, all)
		if err != nil {
			return rep, err
		}
		rep.Meters++
		rep.Rollups += len(stored)
		rep.Differences = append(rep.Differences, compareRollups(m, stored, proj.Rollups)...)
		if m.Aggregation == meter.UniqueCount {
			su, err := st.QueryUniqueValues(ctx, all)
			if err != nil {
				return rep, err
			}
			rep.Differences = append(rep.Differences, compareUniques(m, su, proj.Uniques)...)
		}
	}
	return rep, nil
}

type cellKey struct {
	subject, group string
	minute         int64
}

func describe(s *meter.State, agg meter.Aggregation) string {
	if s == nil {
		return "nothing"
	}
	if agg == meter.Count || agg == meter.UniqueCount {
		return fmt.Sprintf("count=%d", s.Count)
	}
	return fmt.Sprintf("count=%d sum=%s min=%s max=%s latest=%s@%d#%d", s.Count, s.Sum, s.Min, s.Max, s.Latest, s.LatestTime, s.LatestSeq)
}

func sameState(a, b *meter.State, agg meter.Aggregation) bool {
	if a == nil || b == nil {
		return a == b
	}
	if a.Count != b.Count {
		return false
	}
	if agg == meter.Count || agg == meter.UniqueCount {
		return true
	}
	return a.Sum.Equal(b.Sum) && a.Min.Equal(b.Min) && a.Max.Equal(b.Max) &&
		a.Latest.Equal(b.Latest) && a.LatestTime == b.LatestTime && a.LatestSeq == b.LatestSeq
}

func compareRollups(m meter.Meter, stored, rebuilt []store.Rollup) []Difference {
	sm := make(map[cellKey]*meter.State, len(stored))
	for i := range stored {
		// A cell can come twice: from the rollups table and from deltas
		// not yet flushed to it (see sqlite's overlay). Merge them.
		r := &stored[i]
		k := cellKey{r.Subject, r.GroupKey, r.Minute}
		if s, ok := sm[k]; ok {
			s.MergeFor(m.Aggregation, r.State)
			continue
		}
		st := r.State
		sm[k] = &st
	}
	rm := make(map[cellKey]*meter.State, len(rebuilt))
	for i := range rebuilt {
		r := &rebuilt[i]
		rm[cellKey{r.Subject, r.GroupKey, r.Minute}] = &r.State
	}
	var diffs []Difference
	for _, k := range unionKeys(sm, rm) {
		a, b := sm[k], rm[k]
		if !sameState(a, b, m.Aggregation) {
			diffs = append(diffs, Difference{Meter: m.Slug, Subject: k.subject, Group: k.group, Minute: time.Unix(k.minute, 0).UTC(),
				Stored: describe(a, m.Aggregation), Rebuilt: describe(b, m.Aggregation)})
		}
	}
	return diffs
}

func unionKeys(a, b map[cellKey]*meter.State) []cellKey {
	keys := make([]cellKey, 0, len(a))
	for k := range a {
		keys = append(keys, k)
	}
	for k := range b {
		if _, ok := a[k]; !ok {
			keys = append(keys, k)
		}
	}
	slices.SortFunc(keys, func(a, b cellKey) int {
		return cmp.Or(strings.Compare(a.subject, b.subject), cmp.Compare(a.minute, b.minute), strings.Compare(a.group, b.group))
	})
	return keys
}

func compareUniques(m meter.Meter, stored, rebuilt []store.UniqueValue) []Difference {
	count := func(us []store.UniqueValue) map[cellKey]map[string]bool {
		out := make(map[cellKey]map[string]bool)
		for _, u := range us {
			k := cellKey{u.Subject, u.GroupKey, u.Minute}
			if out[k] == nil {
				out[k] = map[string]bool{}
			}
			out[k][u.Value] = true
		}
		return out
	}
	sm, rm := count(stored), count(rebuilt)
	var diffs []Difference
	for k, vals := range rm {
		for v := range vals {
			if !sm[k][v] {
				diffs = append(diffs, Difference{Meter: m.Slug, Subject: k.subject, Group: k.group, Minute: time.Unix(k.minute, 0).UTC(),
					Stored: "no distinct value " + fmt.Sprintf("%q", v), Rebuilt: fmt.Sprintf("%q", v)})
			}
		}
	}
	for k, vals := range sm {
		for v := range vals {
			if !rm[k][v] {
				diffs = append(diffs, Difference{Meter: m.Slug, Subject: k.subject, Group: k.group, Minute: time.Unix(k.minute, 0).UTC(),
					Stored: fmt.Sprintf("%q", v), Rebuilt: "no distinct value " + fmt.Sprintf("%q", v)})
			}
		}
	}
	return diffs
}
